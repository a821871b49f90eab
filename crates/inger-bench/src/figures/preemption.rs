//! Timer preemption: how long after its deadline an endless loop is back at its caller.

use std::hint::{black_box, spin_loop};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::floors::{DISTURBED_SHARE, SLICE, cpu_time_of, fixed_work_iterations};
use super::{BenchResult, Scale, broken};
use crate::report::{Figure, Unit};
use crate::stats::Samples;
use crate::timing::{collect, involuntary_switches, nanos};
use crate::work;

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
    static STOP: AtomicBool = AtomicBool::new(false);
    let stop = &STOP;
    let mut descheduled = 0u32;
    let stats_before = inger::stats();
    let samples = collect(scale.pick(1_000, 10_000), 20, || -> BenchResult<f64> {
        stop.store(false, Relaxed);
        let switches_before = involuntary_switches();
        let start = Instant::now();
        let mut linger = inger::launch(
            move || {
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
    let disturbed = f64::from(descheduled) > DISTURBED_SHARE * (samples.len() + 20) as f64;
    Ok(vec![
        Figure::new("preempt_overshoot", samples, Unit::Microseconds)
            .with_note(note)
            .disturbed_if(disturbed),
    ])
}

/// `preempt_cpu_cost`: CPU time one preemption adds to the thread. Each sample runs the same
/// fixed work as `signal_cpu_cost` (register-only arithmetic, about 20 ms) twice, in turn:
/// once directly, once as a preemptible function launched and resumed with 50 us budgets
/// until it completes; the sample is the difference in this thread's CPU time divided by the
/// preemptions counted (`inger::stats()`). It includes everything a preemption costs the
/// thread: the signal, the handler's check, both switches, the timer re-arm of each resume.
pub(super) fn preempt_cpu_cost(scale: Scale) -> BenchResult<Vec<Figure>> {
    let iterations = fixed_work_iterations();
    let mut per_run = Samples::new();
    let mut round = 0u32;
    let before_all = inger::stats();
    let samples = collect(scale.pick(15, 60), 2, || -> BenchResult<f64> {
        round += 1;
        let direct_run = || cpu_time_of(|| work::spin(black_box(iterations)));
        let early = round.is_multiple_of(2).then(direct_run);
        let before = inger::stats().preemptions;
        let (sliced, result) = cpu_time_of(|| -> BenchResult<u64> {
            let mut linger = inger::launch(move || work::spin(black_box(iterations)), SLICE)?;
            while linger.is_continuation() {
                linger.resume(SLICE)?;
            }
            linger
                .completion()
                .ok_or_else(|| broken("the sliced work did not complete"))
        });
        let preemptions = inger::stats().preemptions - before;
        let (direct, expected) = early.unwrap_or_else(direct_run);
        if result? != expected {
            return Err(broken("the sliced work gave another result"));
        }
        if preemptions == 0 {
            return Err(broken(
                "the sliced work was never preempted (is INGER_PREEMPT=0 set?)",
            ));
        }
        per_run.push(preemptions as f64);
        Ok((sliced - direct) / preemptions as f64)
    })?;
    let after_all = inger::stats();
    let note = format!(
        "fixed work of about {:.0} ms CPU run directly and at {} us slices; median {:.0} preemptions per run; deferrals {}, retries {}",
        nanos(super::floors::WORK) / 1e6,
        SLICE.as_micros(),
        per_run.median().unwrap_or(f64::NAN),
        total_deferrals(&after_all).saturating_sub(total_deferrals(&before_all)),
        after_all.retries.saturating_sub(before_all.retries),
    );
    Ok(vec![
        Figure::new("preempt_cpu_cost", samples, Unit::Microseconds).with_note(note),
    ])
}

/// Deferrals of every reason in `stats`.
pub(super) fn total_deferrals(stats: &inger::Stats) -> u64 {
    stats.deferred_nopreempt
        + stats.deferred_library
        + stats.deferred_std
        + stats.deferred_unknown
        + stats.deferred_unwind
}
