//! Timer preemption: how long after its deadline an endless loop is back at its caller.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::{BenchResult, Scale, broken};
use crate::report::{Figure, Unit};
use crate::timing::{collect, nanos};

/// The budget of every `preempt_overshoot` sample.
const BUDGET: Duration = Duration::from_millis(1);

/// `preempt_overshoot`: launch a loop that spins until told to stop with a 1 ms budget, and
/// measure from the deadline (the instant before `launch` plus 1 ms) to control back at the
/// caller. The runtime's own deadline is a few tens of nanoseconds later than the one used
/// here, so the figure errs on the high side. Each sample then stops the loop and resumes it
/// to completion, so its stack is reused rather than retired.
///
/// On a shared machine the tail is mostly the scheduler: the note counts the samples during
/// which this thread was preempted by the kernel (an involuntary context switch), and the
/// deferrals and retries inger itself reported.
pub(super) fn preempt_overshoot(scale: Scale) -> BenchResult<Vec<Figure>> {
    let stop = AtomicBool::new(false);
    let mut descheduled = 0u32;
    let stats_before = inger::stats();
    let samples = collect(scale.pick(1_000, 10_000), 20, || -> BenchResult<f64> {
        stop.store(false, Relaxed);
        let switches_before = involuntary_switches();
        let start = Instant::now();
        let mut linger = inger::launch(
            || {
                while !stop.load(Relaxed) {
                    spin_loop();
                }
            },
            BUDGET,
        )?;
        let back = Instant::now();
        if involuntary_switches() != switches_before {
            descheduled += 1;
        }
        if !linger.is_continuation() || linger.yielded() {
            return Err(broken(
                "the endless loop was not preempted (is INGER_PREEMPT=0 set?)",
            ));
        }
        let overshoot = nanos(back.duration_since(start)) - nanos(BUDGET);
        stop.store(true, Relaxed);
        linger.resume(Duration::MAX)?;
        if !linger.is_completion() {
            return Err(broken("the stopped loop did not finish"));
        }
        Ok(overshoot)
    })?;
    let stats = inger::stats();
    let note = format!(
        "{} of {} samples (with warm-up) were descheduled by the kernel; inger deferrals {}, retries {}",
        descheduled,
        samples.len() + 20,
        (stats.deferred_nopreempt + stats.deferred_library)
            .saturating_sub(stats_before.deferred_nopreempt + stats_before.deferred_library),
        stats.retries.saturating_sub(stats_before.retries),
    );
    Ok(vec![
        Figure::new("preempt_overshoot", samples, Unit::Microseconds).with_note(note),
    ])
}

/// Involuntary context switches of the calling thread so far (0 if unavailable).
fn involuntary_switches() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid out-parameter; RUSAGE_THREAD reports on the calling thread.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) } != 0 {
        return 0;
    }
    // SAFETY: getrusage succeeded, so it filled the structure (zeroed before, in any case).
    unsafe { usage.assume_init() }.ru_nivcsw
}
