//! inger's cooperative operations: launching a function that completes, pausing and
//! resuming, and cancelling a paused function.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::{BenchResult, Scale, broken};
use crate::report::{Figure, Unit};
use crate::timing::{Plan, collect, nanos, time_batches};

/// A budget no measured operation comes near: the timer is armed (lazily, once) but never
/// interrupts anything.
pub(super) const GENEROUS: Duration = Duration::from_secs(1);

/// `launch_complete`: `inger::launch` of an empty closure with a generous budget, which
/// completes; per launch (including dropping the completed `Linger`).
pub(super) fn launch_complete(scale: Scale) -> BenchResult<Vec<Figure>> {
    let plan = Plan::new(scale.pick(2_000, 20_000), 100);
    let samples = time_batches(plan, || -> BenchResult<()> {
        let linger = inger::launch(|| {}, GENEROUS)?;
        if !black_box(&linger).is_completion() {
            return Err(broken("an empty closure did not complete"));
        }
        Ok(())
    })?;
    Ok(vec![Figure::new(
        "launch_complete",
        samples,
        Unit::Nanoseconds,
    )])
}

/// `pause_resume`: one round trip into a function that loops calling `inger::pause()`:
/// `resume` (generous budget) switches in, `pause` switches back out.
pub(super) fn pause_resume(scale: Scale) -> BenchResult<Vec<Figure>> {
    static STOP: AtomicBool = AtomicBool::new(false);
    let stop = &STOP;
    stop.store(false, Relaxed);
    let mut linger = inger::launch(
        move || {
            while !stop.load(Relaxed) {
                inger::pause();
            }
        },
        Duration::MAX,
    )?;
    if !linger.yielded() {
        return Err(broken("the pausing function did not pause"));
    }
    let plan = Plan::new(scale.pick(2_000, 20_000), 100);
    let samples = time_batches(plan, || linger.resume(GENEROUS))?;
    if !linger.yielded() {
        return Err(broken("the pausing function stopped pausing"));
    }
    // Let it return, so its stack goes back to the pool instead of being retired.
    stop.store(true, Relaxed);
    linger.resume(Duration::MAX)?;
    if !linger.is_completion() {
        return Err(broken("the pausing function did not finish when told to"));
    }
    Ok(vec![Figure::new(
        "pause_resume",
        samples,
        Unit::Nanoseconds,
    )])
}

/// Paused continuations dropped per `cancel_paused` sample.
const CANCELS_PER_SAMPLE: usize = 100;

/// `cancel_paused`: dropping a continuation paused inside its function (by `pause()`), which
/// ends it at `pause()` and returns its stack to the pool. No frame of `inger::pause` owns
/// anything, so it ends without raising the `Cancelled` panic.
pub(super) fn cancel_paused(scale: Scale) -> BenchResult<Vec<Figure>> {
    cancel_each("cancel_paused", scale, || {
        inger::launch(inger::pause, Duration::MAX)
    })
}

/// `cancel_paused_unwinding`: `cancel_paused` for a function whose frame owns a value when it
/// pauses, so cancelling it unwinds with the `Cancelled` panic and drops the value.
pub(super) fn cancel_paused_unwinding(scale: Scale) -> BenchResult<Vec<Figure>> {
    cancel_each("cancel_paused_unwinding", scale, || {
        inger::launch(
            || {
                let owned = String::from("dropped by the unwinding");
                inger::pause();
                black_box(owned);
            },
            Duration::MAX,
        )
    })
}

/// Per sample, `CANCELS_PER_SAMPLE` functions from `launch` are launched and paused untimed,
/// then dropped back to back under the clock; per drop.
fn cancel_each<T>(
    name: &'static str,
    scale: Scale,
    mut launch: impl FnMut() -> Result<inger::Linger<'static, T>, inger::Error>,
) -> BenchResult<Vec<Figure>> {
    let mut held = Vec::with_capacity(CANCELS_PER_SAMPLE);
    let samples = collect(scale.pick(200, 500), 5, || -> BenchResult<f64> {
        for _ in 0..CANCELS_PER_SAMPLE {
            let linger = launch()?;
            if !linger.yielded() {
                return Err(broken("a function that calls pause() did not pause"));
            }
            held.push(linger);
        }
        let start = Instant::now();
        held.clear();
        Ok(nanos(start.elapsed()) / CANCELS_PER_SAMPLE as f64)
    })?;
    Ok(vec![Figure::new(name, samples, Unit::Nanoseconds)])
}

/// `launch_complete_shared_tls`: `launch_complete` with the shared-TLS fallback
/// (`INGER_SHARED_TLS=1`), which is a process-wide setting, so it is measured by a child
/// process of this same run, which prints its figures for this one to parse (`crate::child`).
pub(super) fn launch_complete_shared_tls(scale: Scale) -> BenchResult<Vec<Figure>> {
    in_shared_tls_child(scale, "launch_complete", "launch_complete_shared_tls")
}

/// `pause_resume_shared_tls`: `pause_resume` with the shared-TLS fallback, measured the same
/// way.
pub(super) fn pause_resume_shared_tls(scale: Scale) -> BenchResult<Vec<Figure>> {
    in_shared_tls_child(scale, "pause_resume", "pause_resume_shared_tls")
}

fn in_shared_tls_child(scale: Scale, figure: &str, name: &'static str) -> BenchResult<Vec<Figure>> {
    let figures = crate::child::run(figure, scale == Scale::Quick, &[("INGER_SHARED_TLS", "1")])
        .map_err(broken)?;
    let measured = figures
        .into_iter()
        .find(|measured| measured.name == figure)
        .ok_or_else(|| broken(format!("the shared-TLS child did not measure {figure}")))?;
    Ok(vec![Figure::new(name, measured.samples, Unit::Nanoseconds)])
}
