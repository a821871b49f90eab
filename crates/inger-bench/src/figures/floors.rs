//! The machine's floors for preemption, measured with a bare POSIX timer (see [`crate::bare`]):
//! how late such a timer's handler runs, and what CPU time one signal delivery costs.

use std::hint::{black_box, spin_loop};
use std::sync::OnceLock;
use std::time::Duration;

use super::{BenchResult, Scale, broken};
use crate::bare::{BareTimer, monotonic_ns, thread_cpu_ns};
use crate::report::{Figure, Unit};
use crate::stats::Samples;
use crate::timing::{collect, involuntary_switches};
use crate::work;

/// How far ahead each `timer_floor` sample arms the timer: the budget of the
/// `preempt_overshoot_<workload>` rows, whose lateness is set against this floor.
pub(super) const FLOOR_DISTANCE: Duration = Duration::from_millis(2);

/// A latency figure with more than this share of its samples descheduled by the kernel is
/// marked disturbed (its verdicts are not meaningful).
pub(super) const DISTURBED_SHARE: f64 = 0.1;

/// A timer that has not fired this long after its deadline is broken.
const GIVE_UP: Duration = Duration::from_secs(2);

/// `timer_floor`: a bare POSIX timer (`CLOCK_MONOTONIC`, `SIGEV_THREAD_ID` to this thread,
/// absolute expiry 2 ms ahead) while this thread busy-loops; the handler notes the time. One
/// sample is the handler's lateness after the deadline. The note gives the time until the
/// busy loop saw the handler's mark (what a caller regaining control would pay at least).
pub(super) fn timer_floor(scale: Scale) -> BenchResult<Vec<Figure>> {
    let timer = BareTimer::new()?;
    let mut back = Samples::new();
    let mut descheduled = 0u32;
    let count = scale.pick(300, 2_000);
    let warmup = 10;
    let samples = collect(count, warmup, || -> BenchResult<f64> {
        let sample = floor_sample(&timer)?;
        back.push(sample.back);
        descheduled += u32::from(sample.descheduled);
        Ok(sample.lateness)
    })?;
    let note = format!(
        "signal {}; deadline {} ms ahead; back in the busy loop after median {:.2} us; {descheduled} of {} samples (with warm-up) descheduled by the kernel",
        signal_name(timer.signal()),
        FLOOR_DISTANCE.as_millis(),
        back.median().unwrap_or(f64::NAN) / 1e3,
        count + warmup,
    );
    let disturbed = f64::from(descheduled) > DISTURBED_SHARE * (count + warmup) as f64;
    Ok(vec![
        Figure::new("timer_floor", samples, Unit::Microseconds)
            .with_note(note)
            .disturbed_if(disturbed),
    ])
}

/// One sample of the bare timer's lateness.
pub(super) struct FloorSample {
    /// Nanoseconds from the deadline to the handler.
    pub(super) lateness: f64,
    /// Nanoseconds from the deadline to the busy loop seeing the handler's mark.
    pub(super) back: f64,
    /// Whether the kernel descheduled the thread meanwhile.
    pub(super) descheduled: bool,
}

/// Arms `timer` [`FLOOR_DISTANCE`] ahead and busy-loops until its handler has run.
pub(super) fn floor_sample(timer: &BareTimer) -> BenchResult<FloorSample> {
    let switches = involuntary_switches();
    let deadline = monotonic_ns() + FLOOR_DISTANCE.as_nanos() as u64;
    timer.arm_at(deadline)?;
    let fired = loop {
        if let Some(at) = timer.fired_at() {
            break at;
        }
        if monotonic_ns() > deadline + GIVE_UP.as_nanos() as u64 {
            return Err(broken("the bare timer did not fire"));
        }
        spin_loop();
    };
    let back = monotonic_ns().saturating_sub(deadline) as f64;
    if fired < deadline {
        return Err(broken("the bare timer fired before its deadline"));
    }
    Ok(FloorSample {
        lateness: (fired - deadline) as f64,
        back,
        descheduled: involuntary_switches() != switches,
    })
}

/// The interval of the bare signal in `signal_cpu_cost` and the slice of `preempt_cpu_cost`.
pub(super) const SLICE: Duration = Duration::from_micros(50);

/// Nominal CPU time of the fixed work in the CPU-cost figures.
pub(super) const WORK: Duration = Duration::from_millis(20);

/// Iterations of [`work::spin`] in the CPU-cost figures' fixed work (about [`WORK`] on this
/// machine), calibrated once per process.
pub(super) fn fixed_work_iterations() -> u64 {
    static ITERATIONS: OnceLock<u64> = OnceLock::new();
    *ITERATIONS.get_or_init(|| {
        let per_ns = work::calibrate(2_000_000, 7);
        work::iterations_for(WORK.as_nanos() as f64, per_ns)
    })
}

/// CPU time (this thread's clock) of `f`, in nanoseconds.
pub(super) fn cpu_time_of<R>(f: impl FnOnce() -> R) -> (f64, R) {
    let before = thread_cpu_ns();
    let result = f();
    (thread_cpu_ns().saturating_sub(before) as f64, result)
}

/// `signal_cpu_cost`: CPU time one bare timer signal adds to the thread it interrupts. Each
/// sample runs the same fixed work (register-only arithmetic, about 20 ms) twice, in turn:
/// once with nothing else, once with a bare timer firing every 50 us at a handler that only
/// counts; the sample is the difference in this thread's CPU time divided by the signals
/// counted. `preempt_cpu_cost` is measured the same way with inger's preemption instead.
pub(super) fn signal_cpu_cost(scale: Scale) -> BenchResult<Vec<Figure>> {
    let iterations = fixed_work_iterations();
    let timer = BareTimer::new()?;
    let mut per_run = Samples::new();
    let mut round = 0u32;
    let samples = collect(scale.pick(15, 60), 2, || -> BenchResult<f64> {
        // Alternate which run goes first, so a drift (frequency, a neighbour) cancels out.
        round += 1;
        let direct_run = || cpu_time_of(|| work::spin(black_box(iterations)));
        let early = round.is_multiple_of(2).then(direct_run);
        let fired_before = timer.fired();
        timer.arm_periodic(SLICE)?;
        let (signalled, result) = cpu_time_of(|| work::spin(black_box(iterations)));
        timer.disarm()?;
        let (direct, expected) = early.unwrap_or_else(direct_run);
        if result != expected {
            return Err(broken("the work gave another result under signals"));
        }
        let signals = timer.fired() - fired_before;
        if signals == 0 {
            return Err(broken("the bare timer never fired during the work"));
        }
        per_run.push(signals as f64);
        Ok((signalled - direct) / signals as f64)
    })?;
    let note = format!(
        "fixed work of {:.1} ms CPU with and without a no-op signal every {} us; median {:.0} signals per run",
        WORK.as_secs_f64() * 1e3,
        SLICE.as_micros(),
        per_run.median().unwrap_or(f64::NAN)
    );
    Ok(vec![
        Figure::new("signal_cpu_cost", samples, Unit::Microseconds).with_note(note),
    ])
}

/// `SIGRTMIN+n` or `SIGRTMAX-n` for a real-time signal, else the number.
fn signal_name(signal: libc::c_int) -> String {
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    if signal >= min && signal <= max {
        if max - signal <= signal - min {
            format!("SIGRTMAX-{}", max - signal)
        } else {
            format!("SIGRTMIN+{}", signal - min)
        }
    } else {
        signal.to_string()
    }
}
