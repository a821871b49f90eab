//! The per-thread POSIX timers that deliver the preemption signal to their own thread: one on
//! the monotonic clock (deadlines), one on the thread's CPU clock (CPU budgets that wait).

use core::ffi::c_void;

use crate::error::{Error, last_errno};

/// One POSIX timer whose expiry sends `signal` to the creating thread (`SIGEV_THREAD_ID`),
/// with `value` as the signal's `si_value`. Deleted on drop.
pub(crate) struct ThreadTimer {
    id: libc::timer_t,
}

impl ThreadTimer {
    /// Creates the timer for the calling thread on `clock` (`CLOCK_MONOTONIC`, or
    /// `CLOCK_THREAD_CPUTIME_ID` for the calling thread's CPU time). Not armed.
    pub(crate) fn new(clock: Clock, signal: i32, value: usize) -> Result<Self, Error> {
        // SAFETY: an all-zero sigevent is a valid starting value (plain integers and pointers).
        let mut event: libc::sigevent = unsafe { core::mem::zeroed() };
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = signal;
        event.sigev_value = libc::sigval {
            sival_ptr: value as *mut c_void,
        };
        // SAFETY: gettid has no preconditions.
        event.sigev_notify_thread_id = unsafe { libc::gettid() };
        let mut id: libc::timer_t = core::ptr::null_mut();
        let clock_id = match clock {
            Clock::Monotonic => libc::CLOCK_MONOTONIC,
            Clock::ThreadCpu => libc::CLOCK_THREAD_CPUTIME_ID,
        };
        // SAFETY: `event` and `id` are valid for the call.
        if unsafe { libc::timer_create(clock_id, &mut event, &mut id) } != 0 {
            return Err(Error::System {
                call: "timer_create",
                errno: last_errno(),
            });
        }
        Ok(ThreadTimer { id })
    }

    /// The kernel's id of the timer, which its signals carry in `si_timerid`. glibc hands it
    /// out as the `timer_t` itself for timers that signal a thread (not `SIGEV_THREAD`).
    pub(crate) fn kernel_id(&self) -> i32 {
        self.id as usize as i32
    }

    /// Disarms the timer. Async-signal-safe.
    pub(crate) fn disarm(&self) {
        self.set(0);
    }

    /// Arms the timer to expire once when its clock reads `deadline_ns` (at once if that has
    /// passed). Async-signal-safe.
    pub(crate) fn arm_at(&self, deadline_ns: u64) {
        self.set(deadline_ns.max(1));
    }

    /// Sets the absolute expiry (0 disarms).
    fn set(&self, deadline_ns: u64) {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: timespec(deadline_ns),
        };
        // SAFETY: `self.id` is a live timer; `spec` is valid. The only possible failure is
        // EINVAL for a bad id or value, which our invariants exclude.
        unsafe { libc::timer_settime(self.id, libc::TIMER_ABSTIME, &spec, core::ptr::null_mut()) };
    }
}

/// The clock a [`ThreadTimer`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Clock {
    /// `CLOCK_MONOTONIC`.
    Monotonic,
    /// The creating thread's CPU time.
    ThreadCpu,
}

impl Drop for ThreadTimer {
    fn drop(&mut self) {
        // SAFETY: `self.id` is a live timer created by us and deleted only here.
        unsafe { libc::timer_delete(self.id) };
    }
}

fn timespec(ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    }
}
