//! The report's counters for one process, or summed over several: inger's own and the timer
//! signal's (see the `signals` module), in the fixed order a ledger slot stores them.

use crate::ledger::COUNTERS;
use crate::signals;

/// What one report counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) preemptions: u64,
    pub(crate) yields: u64,
    pub(crate) deferred_nopreempt: u64,
    pub(crate) deferred_library: u64,
    pub(crate) deferred_std: u64,
    pub(crate) deferred_unknown: u64,
    pub(crate) deferred_unwind: u64,
    pub(crate) retries: u64,
    /// The longest of all (summing takes the maximum).
    pub(crate) longest_deferral_ns: u64,
    /// Deliveries of inger's timer signal from its own timers.
    pub(crate) timer_signals: u64,
    /// Deferrals that found `main` blocked in a system call (waiting, not working).
    pub(crate) deferred_waiting: u64,
    /// The longest preemption delay spent waiting in a system call (a maximum, like
    /// `longest_deferral_ns`).
    pub(crate) longest_wait_ns: u64,
    /// System calls inger's signal interrupted that inger's handler ran again.
    pub(crate) restarted_calls: u64,
    /// System calls inger's signal interrupted that kept their `EINTR` (the `shield` module
    /// keeps the signal out of those it knows).
    pub(crate) interrupted_calls: u64,
    /// Calls the `shield` module ran with the timer signal blocked.
    pub(crate) shielded_calls: u64,
    pub(crate) signals: signals::Counts,
    /// Processes whose thread running `main` had the signal blocked at their end.
    pub(crate) blocked_at_end: u64,
}

impl Totals {
    /// This process's counters now. Reads inger's statistics, which take a lock inside the
    /// core (see the crate docs for what that means for `_exit` in a signal handler).
    pub(crate) fn of_this_process() -> Totals {
        let stats = inger::stats();
        Totals {
            preemptions: stats.preemptions,
            yields: stats.yields,
            deferred_nopreempt: stats.deferred_nopreempt,
            deferred_library: stats.deferred_library,
            deferred_std: stats.deferred_std,
            deferred_unknown: stats.deferred_unknown,
            deferred_unwind: stats.deferred_unwind,
            retries: stats.retries,
            longest_deferral_ns: stats.longest_deferral_ns,
            timer_signals: stats.timer_signals,
            deferred_waiting: stats.deferred_waiting,
            longest_wait_ns: stats.longest_wait_ns,
            restarted_calls: stats.restarted_calls,
            interrupted_calls: stats.interrupted_calls,
            #[cfg(not(test))]
            shielded_calls: crate::shield::shielded_calls(),
            #[cfg(test)]
            shielded_calls: 0,
            signals: signals::counts(),
            blocked_at_end: u64::from(signals::on_main_thread() && signals::blocked_here() != 0),
        }
    }

    /// Adds `other` (the maximum for the longest deferral and wait).
    pub(crate) fn add(&mut self, other: &Totals) {
        let mut mine = self.to_array();
        for (index, (value, theirs)) in mine.iter_mut().zip(other.to_array()).enumerate() {
            *value = if MAXIMA.contains(&index) {
                (*value).max(theirs)
            } else {
                value.saturating_add(theirs)
            };
        }
        *self = Totals::from_array(&mine);
    }

    /// The counters in ledger order.
    pub(crate) fn to_array(self) -> [u64; COUNTERS] {
        let s = &self.signals;
        let mut values = [0; COUNTERS];
        values[..USED].copy_from_slice(&[
            self.preemptions,
            self.yields,
            self.deferred_nopreempt,
            self.deferred_library,
            self.deferred_std,
            self.deferred_unknown,
            self.deferred_unwind,
            self.retries,
            self.longest_deferral_ns,
            s.handler_set,
            s.delivered,
            s.ignored,
            s.blocked,
            s.blocked_at_start,
            self.blocked_at_end,
            self.timer_signals,
            self.deferred_waiting,
            self.longest_wait_ns,
            self.restarted_calls,
            self.interrupted_calls,
            self.shielded_calls,
        ]);
        values
    }

    /// The counters from ledger order.
    pub(crate) fn from_array(values: &[u64; COUNTERS]) -> Totals {
        Totals {
            preemptions: values[0],
            yields: values[1],
            deferred_nopreempt: values[2],
            deferred_library: values[3],
            deferred_std: values[4],
            deferred_unknown: values[5],
            deferred_unwind: values[6],
            retries: values[7],
            longest_deferral_ns: values[8],
            timer_signals: values[15],
            deferred_waiting: values[16],
            longest_wait_ns: values[17],
            restarted_calls: values[18],
            interrupted_calls: values[19],
            shielded_calls: values[20],
            signals: signals::Counts {
                handler_set: values[9],
                delivered: values[10],
                ignored: values[11],
                blocked: values[12],
                blocked_at_start: values[13],
            },
            blocked_at_end: values[14],
        }
    }

    /// All deferrals, whatever their reason.
    pub(crate) fn deferred(&self) -> u64 {
        self.deferred_nopreempt
            + self.deferred_library
            + self.deferred_std
            + self.deferred_unknown
            + self.deferred_unwind
    }
}

/// Counters in use (the rest of a slot's room is spare).
const USED: usize = 21;
/// The counters that are maxima (`longest_deferral_ns`, `longest_wait_ns`), not sums.
const MAXIMA: [usize; 2] = [8, 17];
const _: () = assert!(USED <= COUNTERS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_round_trip_and_sum() {
        let mut a = Totals::from_array(&core::array::from_fn(|i| i as u64 + 1));
        assert_eq!(Totals::from_array(&a.to_array()), a);
        assert_eq!(a.signals.blocked_at_start, 14);
        let b = a;
        a.add(&b);
        assert_eq!(a.preemptions, 2);
        assert_eq!(a.blocked_at_end, 30);
        assert_eq!(
            a.longest_deferral_ns, 9,
            "the longest is a maximum, not a sum"
        );
        assert_eq!(a.longest_wait_ns, 18, "a maximum too");
        assert_eq!(a.shielded_calls, 42);
    }
}
