//! The machine's own floors for preemption, set up with `libc` alone: a bare POSIX timer that
//! signals the calling thread, with a handler that only notes the time and counts.
//!
//! inger's preemption is such a timer (`CLOCK_MONOTONIC`, `SIGEV_THREAD_ID`) plus a handler
//! that decides and switches; the bare timer measured the same way shows what the kernel and
//! the hypervisor cost by themselves, which differs by up to ten times between machines of
//! the same kind.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Time (`CLOCK_MONOTONIC`, ns) at which the handler last ran; 0 until it runs.
static FIRED_AT: AtomicU64 = AtomicU64::new(0);
/// Times the handler ran since the timer was created.
static FIRED: AtomicU64 = AtomicU64::new(0);
/// Only one bare timer exists at a time (the handler's statics are shared).
static IN_USE: AtomicBool = AtomicBool::new(false);

/// Nanoseconds on `CLOCK_MONOTONIC` (the timeline of inger's timer and of `Instant`).
/// Async-signal-safe.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CPU time of the calling thread in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`: user and
/// system time, including the kernel's signal delivery on this thread).
pub fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-parameter; both clocks exist on every Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The handler: notes the time and counts. Async-signal-safe (a vDSO clock read and two
/// atomic stores; errno is untouched by a successful `clock_gettime`, and saved anyway).
extern "C" fn on_signal(
    _signal: libc::c_int,
    _info: *mut libc::siginfo_t,
    _ctx: *mut libc::c_void,
) {
    // SAFETY: __errno_location returns this thread's errno slot.
    let errno = unsafe { *libc::__errno_location() };
    FIRED_AT.store(monotonic_ns(), Relaxed);
    FIRED.fetch_add(1, Relaxed);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// A POSIX timer on `CLOCK_MONOTONIC` that sends a real-time signal to the thread that
/// created it, handled by a handler that only records the time. The signal's previous
/// disposition is restored on drop.
pub struct BareTimer {
    id: libc::timer_t,
    signal: libc::c_int,
    previous: libc::sigaction,
}

impl BareTimer {
    /// Creates the timer for the calling thread, on a real-time signal that nobody handles
    /// (searched downwards from `SIGRTMAX-7`, clear of inger's default `SIGRTMAX-4`).
    ///
    /// # Errors
    /// If another bare timer exists, no free signal is found, or a system call fails.
    pub fn new() -> io::Result<Self> {
        if IN_USE.swap(true, Relaxed) {
            return Err(io::Error::other("a bare timer already exists"));
        }
        let made = Self::make();
        if made.is_err() {
            IN_USE.store(false, Relaxed);
        }
        made
    }

    fn make() -> io::Result<Self> {
        let signal = free_signal()?;
        // SAFETY: an all-zero sigaction is a valid starting value.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        // SAFETY: an all-zero sigaction is a valid out-parameter.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: `action` is initialised; sa_mask is empty (zeroed); the handler is
        // async-signal-safe.
        if unsafe { libc::sigaction(signal, &action, &mut previous) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: an all-zero sigevent is a valid starting value.
        let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = signal;
        // SAFETY: gettid has no preconditions.
        event.sigev_notify_thread_id = unsafe { libc::gettid() };
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: `event` and `id` are valid for the call.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut id) } != 0 {
            let error = io::Error::last_os_error();
            // SAFETY: restores the disposition saved above.
            unsafe { libc::sigaction(signal, &previous, std::ptr::null_mut()) };
            return Err(error);
        }
        FIRED_AT.store(0, Relaxed);
        FIRED.store(0, Relaxed);
        Ok(BareTimer {
            id,
            signal,
            previous,
        })
    }

    /// The signal number in use.
    pub fn signal(&self) -> libc::c_int {
        self.signal
    }

    /// Arms the timer to expire once at `deadline_ns` (`CLOCK_MONOTONIC`), forgetting the
    /// previous expiry time.
    pub fn arm_at(&self, deadline_ns: u64) -> io::Result<()> {
        FIRED_AT.store(0, Relaxed);
        self.set(libc::TIMER_ABSTIME, timespec(deadline_ns), timespec(0))
    }

    /// Arms the timer to expire every `interval`, first after one interval.
    pub fn arm_periodic(&self, interval: Duration) -> io::Result<()> {
        let ns = interval.as_nanos().max(1) as u64;
        self.set(0, timespec(ns), timespec(ns))
    }

    /// Disarms the timer.
    pub fn disarm(&self) -> io::Result<()> {
        self.set(0, timespec(0), timespec(0))
    }

    fn set(
        &self,
        flags: libc::c_int,
        value: libc::timespec,
        interval: libc::timespec,
    ) -> io::Result<()> {
        let spec = libc::itimerspec {
            it_interval: interval,
            it_value: value,
        };
        // SAFETY: `self.id` is a live timer; `spec` is valid.
        if unsafe { libc::timer_settime(self.id, flags, &spec, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// When the handler last ran (`CLOCK_MONOTONIC`, ns) since the last [`arm_at`](Self::arm_at),
    /// or `None`.
    pub fn fired_at(&self) -> Option<u64> {
        Some(FIRED_AT.load(Relaxed)).filter(|&at| at != 0)
    }

    /// Times the handler ran since the timer was created.
    pub fn fired(&self) -> u64 {
        FIRED.load(Relaxed)
    }
}

impl Drop for BareTimer {
    fn drop(&mut self) {
        // SAFETY: `self.id` is our live timer, deleted only here; deleting it cancels any
        // expiry not yet delivered.
        unsafe { libc::timer_delete(self.id) };
        // A signal already queued would still arrive after the handler is gone and, under the
        // default disposition of a real-time signal, end the process: take it first.
        drain_pending(self.signal);
        // SAFETY: restores the disposition saved at creation.
        unsafe { libc::sigaction(self.signal, &self.previous, std::ptr::null_mut()) };
        IN_USE.store(false, Relaxed);
    }
}

/// Accepts any instance of `signal` already pending for this thread (without blocking).
fn drain_pending(signal: libc::c_int) {
    // SAFETY: sigset operations on local sets; sigtimedwait with a zero timeout only takes a
    // pending signal (it is blocked around the call, as sigtimedwait requires).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        while libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) == signal {}
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
}

/// The first real-time signal from `SIGRTMAX-7` down to `SIGRTMIN+2` whose disposition is the
/// default (nobody handles or ignores it).
fn free_signal() -> io::Result<libc::c_int> {
    let (low, high) = (libc::SIGRTMIN() + 2, libc::SIGRTMAX() - 7);
    for signal in (low..=high).rev() {
        // SAFETY: an all-zero sigaction is a valid out-parameter.
        let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: querying only (null new action).
        if unsafe { libc::sigaction(signal, std::ptr::null(), &mut current) } == 0
            && current.sa_sigaction == libc::SIG_DFL
        {
            return Ok(signal);
        }
    }
    Err(io::Error::other(
        "no free real-time signal for the bare timer",
    ))
}

fn timespec(ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespecs_split_seconds_and_nanoseconds() {
        let ts = timespec(3_000_000_123);
        assert_eq!((ts.tv_sec, ts.tv_nsec), (3, 123));
        let ts = timespec(999_999_999);
        assert_eq!((ts.tv_sec, ts.tv_nsec), (0, 999_999_999));
    }
}
