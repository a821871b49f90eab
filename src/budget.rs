//! Budgets: how long a preemptible function may run before it is paused, and on which clock.
//!
//! Context: caller (plain values).

use std::time::Duration;

/// The least wall-clock time the CPU-time part of a cancellation's grace may take.
const GRACE_WALL_CAP_MIN: Duration = Duration::from_millis(50);

/// The clock a [`Budget`] is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Clock {
    /// Monotonic wall-clock time from the launch or resume: time the thread spends blocked,
    /// asleep or descheduled counts. For a caller with a latency deadline ("answer within
    /// 10 ms, whatever happens").
    Wall,
    /// The thread's CPU time while the function (and any function nested in it) runs: time
    /// spent blocked, asleep or descheduled does not count. For bounding work ("this request
    /// may burn 10 ms of CPU"): a function that waits for I/O keeps its budget, a loaded
    /// machine does not make it time out early, and a function that only waits is never
    /// interrupted by the timer.
    Cpu,
}

/// How long a preemptible function may run before it is paused, on which [`Clock`].
///
/// A plain [`Duration`] converts into a wall-clock budget, so `launch(f,
/// Duration::from_millis(1))` keeps meaning what it always did; [`Budget::cpu`] measures the
/// thread's CPU time instead. `Duration::MAX` (or [`Budget::UNLIMITED`]) never expires.
///
/// ```
/// use std::time::Duration;
/// use inger::{Budget, Clock};
///
/// // The function's own CPU time: sleeping does not use it up.
/// let linger = inger::launch(
///     || {
///         std::thread::sleep(Duration::from_millis(20));
///         "rested"
///     },
///     Budget::cpu(Duration::from_millis(5)),
/// )?;
/// assert_eq!(linger.completion(), Some("rested"));
///
/// let wall: Budget = Duration::from_millis(5).into();
/// assert_eq!(wall.clock(), Clock::Wall);
/// # Ok::<(), inger::Error>(())
/// ```
///
/// # Precision
///
/// A wall-clock budget expires within the timer's lateness (a few to tens of microseconds on
/// a virtual machine; `inger-bench` measures it as `timer_floor`). A CPU budget is checked
/// with the same wall-clock timer while the function computes: the timer is set for the
/// remaining CPU time, and on expiry the runtime reads the thread's CPU clock and, if the
/// thread was descheduled meanwhile, sets it again for what is left, so the budget ends
/// within the same lateness of the CPU time it names. When the function turned out to be
/// mostly waiting (blocked, asleep), the runtime hands the rest of the budget to a timer on
/// the thread's CPU clock instead, which sends nothing while the thread waits; the kernel
/// checks such timers at its scheduler tick, so a budget whose end comes after a wait may
/// end up to one tick (1-4 ms, `CONFIG_HZ`) late. Starting a slice with a CPU budget reads
/// the thread's CPU clock, a system call (about 0.3-1.5 µs on a virtual machine): a
/// wall-clock budget costs no system call in steady state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Budget {
    duration: Duration,
    clock: Clock,
    /// For a CPU budget: wall-clock nanoseconds after which it counts as used up anyway
    /// (`u64::MAX`: none). Internal: bounds a cancellation's grace.
    wall_cap: u64,
}

impl Budget {
    /// A budget that never expires.
    pub const UNLIMITED: Budget = Budget::wall(Duration::MAX);

    /// `duration` of wall-clock time (the same as `Budget::from(duration)`).
    pub const fn wall(duration: Duration) -> Budget {
        Budget {
            duration,
            clock: Clock::Wall,
            wall_cap: u64::MAX,
        }
    }

    /// `duration` of the thread's CPU time while the function runs.
    pub const fn cpu(duration: Duration) -> Budget {
        Budget {
            duration,
            clock: Clock::Cpu,
            wall_cap: u64::MAX,
        }
    }

    /// How long.
    pub const fn duration(self) -> Duration {
        self.duration
    }

    /// On which clock.
    pub const fn clock(self) -> Clock {
        self.clock
    }

    /// Whether the budget never expires (its duration is `Duration::MAX`).
    pub fn is_unlimited(self) -> bool {
        self.duration == Duration::MAX
    }

    /// The same length on another clock.
    pub const fn on(self, clock: Clock) -> Budget {
        Budget {
            duration: self.duration,
            clock,
            wall_cap: self.wall_cap,
        }
    }

    /// The same CPU budget, used up after `wall` of wall-clock time at the latest.
    pub(crate) fn with_wall_cap(self, wall: Duration) -> Budget {
        Budget {
            wall_cap: u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX),
            ..self
        }
    }

    /// The CPU-time part of a cancellation's grace (see `Continuation::cancel` and the future
    /// wrapper's drop): `grace` of CPU time, given up after 100 times as much wall-clock time
    /// (at least [`GRACE_WALL_CAP_MIN`]) for a function that blocks instead and would use none.
    pub(crate) fn cpu_grace(grace: Duration) -> Budget {
        Budget::cpu(grace).with_wall_cap((grace * 100).max(GRACE_WALL_CAP_MIN))
    }

    /// The wall-clock cap of a CPU budget, in nanoseconds, if any.
    pub(crate) fn wall_cap_nanos(self) -> Option<u64> {
        (self.wall_cap != u64::MAX).then_some(self.wall_cap)
    }

    /// The same budget, raised to at least `least` (on its own clock).
    pub(crate) fn at_least(self, least: Duration) -> Budget {
        Budget {
            duration: self.duration.max(least),
            ..self
        }
    }

    /// The duration in nanoseconds, saturating (a budget too long to represent never
    /// expires).
    pub(crate) fn nanos(self) -> u64 {
        u64::try_from(self.duration.as_nanos()).unwrap_or(u64::MAX)
    }
}

impl From<Duration> for Budget {
    fn from(duration: Duration) -> Budget {
        Budget::wall(duration)
    }
}

impl core::fmt::Display for Budget {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.is_unlimited() {
            return f.write_str("unlimited");
        }
        let clock = match self.clock {
            Clock::Wall => "wall",
            Clock::Cpu => "CPU",
        };
        write!(f, "{:?} of {clock} time", self.duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_wall_budgets_and_max_is_unlimited() {
        let budget = Budget::from(Duration::from_millis(3));
        assert_eq!(budget.clock(), Clock::Wall);
        assert_eq!(budget.nanos(), 3_000_000);
        assert!(!budget.is_unlimited());
        assert!(Budget::from(Duration::MAX).is_unlimited());
        assert!(Budget::cpu(Duration::MAX).is_unlimited());
        assert_eq!(Budget::cpu(Duration::MAX).nanos(), u64::MAX);
        assert_eq!(budget.on(Clock::Cpu), Budget::cpu(Duration::from_millis(3)));
    }

    #[test]
    fn budgets_say_their_clock() {
        assert_eq!(
            Budget::cpu(Duration::from_micros(20)).to_string(),
            "20µs of CPU time"
        );
        assert_eq!(Budget::UNLIMITED.to_string(), "unlimited");
    }
}
