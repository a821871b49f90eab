//! The whole-stack safe-point rule (issue 4): the cost of one check at a given stack depth,
//! and the preemption overshoot of a loop running deep in a stack.

use std::hint::{black_box, spin_loop};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::floors::DISTURBED_SHARE;
use super::{BenchResult, Scale, broken};
use crate::report::{Figure, Unit};
use crate::timing::{collect, involuntary_switches, nanos};

/// Checks timed back to back per sample (each sample launches one function).
const CHECKS_PER_SAMPLE: u64 = 100;

/// `safepoint_check_depth10`: one whole-stack check from a function 10 frames deep.
pub(super) fn safepoint_check_depth10(scale: Scale) -> BenchResult<Vec<Figure>> {
    check_at_depth("safepoint_check_depth10", 10, scale)
}

/// `safepoint_check_depth50`: one whole-stack check from a function 50 frames deep.
pub(super) fn safepoint_check_depth50(scale: Scale) -> BenchResult<Vec<Figure>> {
    check_at_depth("safepoint_check_depth50", 50, scale)
}

/// Times the check the preemption handler makes once a deadline has passed (walk every frame
/// of the function's stack and classify its code), through
/// `inger::bench_hooks::safepoint_checks_at_depth`: `CHECKS_PER_SAMPLE` checks per sample
/// from inside a function recursing `depth` frames (plus the runtime's entry frames), per
/// check. The per-thread unwind caches stay warm from one check to the next, as they do for
/// the handler's repeated checks in a long-running function.
fn check_at_depth(name: &'static str, depth: usize, scale: Scale) -> BenchResult<Vec<Figure>> {
    let samples = collect(scale.pick(300, 3_000), 30, || -> BenchResult<f64> {
        let (elapsed, pausable) =
            inger::bench_hooks::safepoint_checks_at_depth(depth, CHECKS_PER_SAMPLE)?;
        if !pausable {
            return Err(broken(format!(
                "the check at depth {depth} refused to pause plain Rust frames"
            )));
        }
        Ok(nanos(elapsed) / CHECKS_PER_SAMPLE as f64)
    })?;
    Ok(vec![
        Figure::new(name, samples, Unit::Nanoseconds).with_note(format!(
            "{CHECKS_PER_SAMPLE} checks per sample, {depth} frames of Rust recursion"
        )),
    ])
}

/// The budget of every `preempt_overshoot_depth50` sample.
const BUDGET: Duration = Duration::from_millis(1);

/// `preempt_overshoot_depth50`: as `preempt_overshoot`, but the spinning loop runs 50 frames
/// deep, so every preemption pays a 50-frame whole-stack walk. Time from the deadline (the
/// instant before `launch` plus 1 ms) to `launch` returning the continuation; the loop is then
/// stopped and resumed to completion. The note counts deferrals of every reason (none is
/// needed here: the loop is plain Rust) and retries.
pub(super) fn preempt_overshoot_depth50(scale: Scale) -> BenchResult<Vec<Figure>> {
    static STOP: AtomicBool = AtomicBool::new(false);
    let stop = &STOP;
    let before = inger::stats();
    let mut descheduled = 0u32;
    let samples = collect(scale.pick(500, 5_000), 20, || -> BenchResult<f64> {
        stop.store(false, Relaxed);
        let switches = involuntary_switches();
        let start = Instant::now();
        let mut linger = inger::launch(move || spin_deep(50, stop), BUDGET)?;
        let back = Instant::now();
        if involuntary_switches() != switches {
            descheduled += 1;
        }
        if !linger.is_continuation() || linger.yielded() {
            return Err(broken(
                "the deep loop was not preempted (is INGER_PREEMPT=0 set?)",
            ));
        }
        stop.store(true, Relaxed);
        linger.resume(Duration::MAX)?;
        if !linger.is_completion() {
            return Err(broken("the stopped deep loop did not finish"));
        }
        Ok(nanos(back.duration_since(start)) - nanos(BUDGET))
    })?;
    let after = inger::stats();
    let deferred = (after.deferred_nopreempt
        + after.deferred_library
        + after.deferred_std
        + after.deferred_unknown
        + after.deferred_unwind)
        .saturating_sub(
            before.deferred_nopreempt
                + before.deferred_library
                + before.deferred_std
                + before.deferred_unknown
                + before.deferred_unwind,
        );
    let note = format!(
        "{descheduled} of {} samples (with warm-up) were descheduled by the kernel; inger deferrals (all reasons) {deferred}, retries {}, preemptions {}",
        samples.len() + 20,
        after.retries.saturating_sub(before.retries),
        after.preemptions.saturating_sub(before.preemptions),
    );
    let disturbed = f64::from(descheduled) > DISTURBED_SHARE * (samples.len() + 20) as f64;
    Ok(vec![
        Figure::new("preempt_overshoot_depth50", samples, Unit::Microseconds)
            .with_note(note)
            .disturbed_if(disturbed),
    ])
}

/// Recurses `depth` frames, then spins until `stop` is set.
#[inline(never)]
fn spin_deep(depth: usize, stop: &AtomicBool) -> usize {
    if depth > 1 {
        return black_box(spin_deep(black_box(depth - 1), stop)) + 1;
    }
    while !stop.load(Relaxed) {
        spin_loop();
    }
    1
}
