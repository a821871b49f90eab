//! The monotonic clock all deadlines are measured on.

/// Nanoseconds on `CLOCK_MONOTONIC`. Async-signal-safe (the vDSO reads shared memory).
pub(crate) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-parameter; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `now + budget`, saturating: a budget too large to represent never expires.
pub(crate) fn deadline_after(now: u64, budget: std::time::Duration) -> u64 {
    let budget = u64::try_from(budget.as_nanos()).unwrap_or(u64::MAX);
    now.saturating_add(budget)
}
