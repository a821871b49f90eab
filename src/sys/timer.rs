//! The per-thread POSIX timer that delivers the preemption signal to its own thread.

use core::ffi::c_void;

use crate::error::{Error, last_errno};

/// One `CLOCK_MONOTONIC` POSIX timer whose expiry sends `signal` to the creating thread
/// (`SIGEV_THREAD_ID`), with `value` as the signal's `si_value`. Deleted on drop.
pub(crate) struct ThreadTimer {
    id: libc::timer_t,
}

impl ThreadTimer {
    /// Creates the timer for the calling thread. Not armed.
    pub(crate) fn new(signal: i32, value: *mut c_void) -> Result<Self, Error> {
        // SAFETY: an all-zero sigevent is a valid starting value (plain integers and pointers).
        let mut event: libc::sigevent = unsafe { core::mem::zeroed() };
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = signal;
        event.sigev_value = libc::sigval { sival_ptr: value };
        // SAFETY: gettid has no preconditions.
        event.sigev_notify_thread_id = unsafe { libc::gettid() };
        let mut id: libc::timer_t = core::ptr::null_mut();
        // SAFETY: `event` and `id` are valid for the call.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut id) } != 0 {
            return Err(Error::System {
                call: "timer_create",
                errno: last_errno(),
            });
        }
        Ok(ThreadTimer { id })
    }

    /// Arms the timer to expire once at absolute monotonic time `deadline_ns`
    /// (at once if that has passed). Async-signal-safe.
    pub(crate) fn arm_at(&self, deadline_ns: u64) {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: timespec(deadline_ns.max(1)),
        };
        // SAFETY: `self.id` is a live timer; `spec` is valid. The only possible failure is
        // EINVAL for a bad id or value, which our invariants exclude.
        unsafe { libc::timer_settime(self.id, libc::TIMER_ABSTIME, &spec, core::ptr::null_mut()) };
    }
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
