//! The per-request CPU budget: how much CPU a request may use, in what slices a preemptible
//! function runs, and how its spending is counted.
//!
//! All of the budget logic is here, so that it can switch to CPU-time budgets in the core once
//! inger has them. Until then a request's CPU is the sum, over the slices its preemptible
//! function ran, of this thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`) read before and after
//! each `launch`/`resume`: the function runs on the calling thread, so that is exactly its CPU
//! time plus a few hundred nanoseconds of switching, and time the thread spent descheduled (the
//! machine is shared) is not charged to the request.

use std::time::Duration;

/// How much CPU a request may use and how a preemptible function spends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// CPU time a request may use before it is stopped (`--budget`). The modes that cannot
    /// measure a request's CPU (`tokio-timeout`, `blocking-timeout`, `process`) use it as a
    /// wall-clock deadline from the start of the work, which is never more generous.
    pub cpu: Duration,
    /// How long a preemptible function runs before it yields its worker thread to other
    /// requests (`--slice`, `inger` mode).
    pub slice: Duration,
    /// How long an over-budget preemptible function may run on to reach a cancellation point
    /// and unwind from it (running its destructors, freeing its memory) before its stack is
    /// discarded (`--grace`). Unwinding is part of it: through the hundreds of frames of a
    /// deeply nested JSON document it takes about a millisecond, and a grace that runs out
    /// half-way through discards the rest. The grace is a limit, not a cost: a function that
    /// reaches a cancellation point sooner uses less. Counted in CPU time, like the budget.
    pub grace: Duration,
}

impl Default for Budget {
    /// 20 ms of CPU in slices of 1 ms, with 5 ms of grace.
    fn default() -> Self {
        Budget {
            cpu: Duration::from_millis(20),
            slice: Duration::from_millis(1),
            grace: Duration::from_millis(5),
        }
    }
}

/// The CPU time this thread has used (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid out-parameter; the clock id is a constant the kernel knows.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if result != 0 {
        // Cannot happen for the calling thread's own clock; count nothing rather than abort.
        return Duration::ZERO;
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// What one request has spent of its budget.
#[derive(Debug, Clone)]
pub struct CpuAccount {
    budget: Budget,
    used: Duration,
    slices: u32,
}

impl CpuAccount {
    /// A fresh account for one request.
    pub fn new(budget: Budget) -> Self {
        CpuAccount {
            budget,
            used: Duration::ZERO,
            slices: 0,
        }
    }

    /// The budget of the next slice: the slice length, or what is left of the budget if less;
    /// `None` once the budget is spent.
    pub fn next_slice(&self) -> Option<Duration> {
        let left = self.budget.cpu.checked_sub(self.used)?;
        if left.is_zero() {
            return None;
        }
        Some(left.min(self.budget.slice))
    }

    /// Runs `slice` (a launch or resume that runs the function on this thread) and charges the
    /// CPU time it took to the request.
    pub fn charge<R>(&mut self, slice: impl FnOnce() -> R) -> R {
        let before = thread_cpu_time();
        let result = slice();
        self.used += thread_cpu_time().saturating_sub(before);
        self.slices += 1;
        result
    }

    /// CPU charged so far.
    pub fn used(&self) -> Duration {
        self.used
    }

    /// Slices run so far.
    pub fn slices(&self) -> u32 {
        self.slices
    }

    /// CPU charged beyond the budget (the last slice's overshoot, plus any grace spent).
    pub fn over_budget(&self) -> Duration {
        self.used.saturating_sub(self.budget.cpu)
    }

    /// The budget this account is kept against.
    pub fn budget(&self) -> Budget {
        self.budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(cpu: Duration) {
        let start = thread_cpu_time();
        while thread_cpu_time() - start < cpu {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn slices_shrink_to_what_is_left_and_stop_when_spent() {
        let budget = Budget {
            cpu: Duration::from_millis(5),
            slice: Duration::from_millis(2),
            grace: Duration::ZERO,
        };
        let mut account = CpuAccount::new(budget);
        assert_eq!(account.next_slice(), Some(Duration::from_millis(2)));
        account.charge(|| spin(Duration::from_millis(4)));
        assert!(account.used() >= Duration::from_millis(4));
        assert!(account.next_slice().unwrap() <= Duration::from_millis(1));
        account.charge(|| spin(Duration::from_millis(2)));
        assert_eq!(account.next_slice(), None);
        assert!(account.over_budget() >= Duration::from_millis(1));
        assert_eq!(account.slices(), 2);
    }

    #[test]
    fn sleeping_is_not_charged() {
        let mut account = CpuAccount::new(Budget::default());
        account.charge(|| std::thread::sleep(Duration::from_millis(30)));
        assert!(
            account.used() < Duration::from_millis(20),
            "{:?}",
            account.used()
        );
    }
}
