//! The clocks budgets are measured on: the monotonic clock of every deadline, and the
//! thread's CPU clock of CPU-time budgets.
//!
//! Reading `CLOCK_MONOTONIC` costs a TSC read, about 30-40 ns on the virtual machines inger
//! is developed on: as much as a whole pause/resume round trip otherwise. Long budgets do not
//! need that precision, so a deadline for a budget of at least [`COARSE_MIN_BUDGET`] is
//! computed from `CLOCK_MONOTONIC_COARSE` (same timeline, about 7 ns to read) plus a margin
//! of [`COARSE_MARGIN_TICKS`] clock ticks. The coarse clock lags the precise one by up to a
//! few ticks (3-10 ms measured here with 4 ms ticks), so such a deadline is late by at most
//! the margin (16 ms with 4 ms ticks: under 2% of the budget), and early only if the coarse
//! clock lags by more than the margin, which happens when a virtual CPU was descheduled for
//! longer than that just before the resume.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Budgets of at least this use the coarse clock.
pub(crate) const COARSE_MIN_BUDGET: u64 = 1_000_000_000;
/// Ticks added to a coarse deadline to cover the coarse clock's lag.
pub(crate) const COARSE_MARGIN_TICKS: u64 = 4;

/// Resolution of `CLOCK_MONOTONIC_COARSE` in nanoseconds; 0 until measured.
static COARSE_TICK: AtomicU64 = AtomicU64::new(0);

/// Nanoseconds on `CLOCK_MONOTONIC`. Async-signal-safe (the vDSO reads shared memory).
pub(crate) fn now_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC)
}

/// Nanoseconds of CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`). A system
/// call: the vDSO does not serve thread CPU clocks (0.3-1.5 µs on a virtual machine).
/// Async-signal-safe.
pub(crate) fn thread_cpu_ns() -> u64 {
    read(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn read(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-parameter; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Measures the coarse clock's resolution (call once, outside signal handlers).
pub(crate) fn calibrate() {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-parameter.
    let tick = if unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } == 0 {
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    } else {
        0
    };
    // A zero or absurd resolution disables the coarse path.
    COARSE_TICK.store(
        if tick > 0 && tick <= 100_000_000 {
            tick
        } else {
            u64::MAX
        },
        Relaxed,
    );
}

/// The deadline `budget` from now, saturating: a budget too large to represent never expires.
pub(crate) fn deadline_after(budget: Duration) -> u64 {
    let budget = u64::try_from(budget.as_nanos()).unwrap_or(u64::MAX);
    let tick = COARSE_TICK.load(Relaxed);
    if budget >= COARSE_MIN_BUDGET && tick != 0 && tick != u64::MAX {
        let margin = tick * COARSE_MARGIN_TICKS;
        return read(libc::CLOCK_MONOTONIC_COARSE)
            .saturating_add(margin)
            .saturating_add(budget);
    }
    now_ns().saturating_add(budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_deadlines_are_at_most_the_margin_late() {
        calibrate();
        let tick = COARSE_TICK.load(Relaxed);
        let budget = Duration::from_secs(10);
        let deadline = deadline_after(budget);
        let after = now_ns();
        if tick != u64::MAX {
            let latest = after + 10_000_000_000 + COARSE_MARGIN_TICKS * tick;
            assert!(
                deadline <= latest,
                "deadline {deadline} later than {latest}"
            );
        }
    }

    #[test]
    fn short_budgets_use_the_precise_clock() {
        calibrate();
        let before = now_ns();
        let deadline = deadline_after(Duration::from_micros(100));
        let after = now_ns();
        assert!(deadline >= before + 100_000 && deadline <= after + 100_000);
    }
}
