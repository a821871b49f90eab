//! Counters of what the preemption machinery did, and their public snapshot [`Stats`].
//!
//! Context: the counters are bumped by the signal handler and by functions' own stacks
//! (relaxed atomics, no locks); [`stats`] and the thread registry run in the caller's
//! context. A leaf module: it knows nothing of the runtime.
//!
//! Most counters are process-wide atomics, bumped only on slow paths (an expiry, a deferral).
//! Cooperative pauses are on the fast path, so each thread counts its own in its
//! [`ThreadCounters`] with plain loads and stores; [`stats`] sums the live threads' counters
//! and those of exited threads, folded in at their exit.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Process-wide counters.
pub(crate) struct Counters {
    pub(crate) preemptions: AtomicU64,
    yields: AtomicU64,
    pub(crate) deferred_nopreempt: AtomicU64,
    pub(crate) deferred_library: AtomicU64,
    pub(crate) deferred_std: AtomicU64,
    pub(crate) deferred_unknown: AtomicU64,
    pub(crate) deferred_unwind: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) longest_deferral_ns: AtomicU64,
    pub(crate) timer_signals: AtomicU64,
    pub(crate) redirects: AtomicU64,
    pub(crate) redirects_reached: AtomicU64,
    pub(crate) redirects_skipped: AtomicU64,
    pub(crate) paused_at_section_end: AtomicU64,
    pub(crate) paused_at_nopreempt_end: AtomicU64,
    pub(crate) paused_in_pure_routine: AtomicU64,
    pub(crate) paused_in_blocking_call: AtomicU64,
    pub(crate) paused_by_retry: AtomicU64,
    pub(crate) foreign_timer_signals: AtomicU64,
    pub(crate) deferred_waiting: AtomicU64,
    pub(crate) longest_wait_ns: AtomicU64,
    pub(crate) cpu_budget_rechecks: AtomicU64,
    pub(crate) cpu_timer_handoffs: AtomicU64,
    pub(crate) restarted_calls: AtomicU64,
    pub(crate) interrupted_calls: AtomicU64,
    pub(crate) cancels_without_unwinding: AtomicU64,
    pub(crate) cancel_checks_cached: AtomicU64,
}

/// The process-wide counters.
pub(crate) static COUNTERS: Counters = Counters {
    preemptions: AtomicU64::new(0),
    yields: AtomicU64::new(0),
    deferred_nopreempt: AtomicU64::new(0),
    deferred_library: AtomicU64::new(0),
    deferred_std: AtomicU64::new(0),
    deferred_unknown: AtomicU64::new(0),
    deferred_unwind: AtomicU64::new(0),
    retries: AtomicU64::new(0),
    longest_deferral_ns: AtomicU64::new(0),
    timer_signals: AtomicU64::new(0),
    redirects: AtomicU64::new(0),
    redirects_reached: AtomicU64::new(0),
    redirects_skipped: AtomicU64::new(0),
    paused_at_section_end: AtomicU64::new(0),
    paused_at_nopreempt_end: AtomicU64::new(0),
    paused_in_pure_routine: AtomicU64::new(0),
    paused_in_blocking_call: AtomicU64::new(0),
    paused_by_retry: AtomicU64::new(0),
    foreign_timer_signals: AtomicU64::new(0),
    deferred_waiting: AtomicU64::new(0),
    longest_wait_ns: AtomicU64::new(0),
    cpu_budget_rechecks: AtomicU64::new(0),
    cpu_timer_handoffs: AtomicU64::new(0),
    restarted_calls: AtomicU64::new(0),
    interrupted_calls: AtomicU64::new(0),
    cancels_without_unwinding: AtomicU64::new(0),
    cancel_checks_cached: AtomicU64::new(0),
};

/// Counters one thread bumps on its fast paths, written only by that thread.
#[derive(Debug, Default)]
pub(crate) struct ThreadCounters {
    yields: AtomicU64,
}

impl ThreadCounters {
    /// Counts one cooperative pause. Context: function stack, on the owning thread only
    /// (a load and a store, no locked instruction).
    #[inline]
    pub(crate) fn count_yield(&self) {
        self.yields.store(self.yields.load(Relaxed) + 1, Relaxed);
    }
}

/// Live threads' counters, as addresses of [`ThreadCounters`] registered with [`register`].
static LIVE: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// Registers a thread's counters, which must stay at this address until [`unregister`].
pub(crate) fn register(counters: &ThreadCounters) {
    let mut live = LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    live.push(counters as *const ThreadCounters as usize);
}

/// Unregisters a thread's counters at its exit, folding them into the process totals.
pub(crate) fn unregister(counters: &ThreadCounters) {
    let mut live = LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    live.retain(|&other| other != counters as *const ThreadCounters as usize);
    COUNTERS
        .yields
        .fetch_add(counters.yields.load(Relaxed), Relaxed);
}

/// The yields counted by live threads. The lock is held with preemption deferred: a function
/// paused while it held it would block its own caller's next `stats()` for good.
fn live_yields() -> u64 {
    let _section = crate::runtime::RuntimeSection::enter();
    let live = LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    live.iter()
        .map(|&counters| {
            // SAFETY: registered counters stay valid until `unregister` removes them, which
            // takes this lock first.
            let counters = unsafe { &*(counters as *const ThreadCounters) };
            counters.yields.load(Relaxed)
        })
        .sum()
}

/// A snapshot of the process-wide preemption counters (see [`stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Functions paused because a deadline passed.
    pub preemptions: u64,
    /// Cooperative pauses ([`pause`](crate::pause)).
    pub yields: u64,
    /// Expiries deferred because the function was in a `nopreempt` section or runtime code.
    pub deferred_nopreempt: u64,
    /// Expiries deferred because a frame of the function was in a non-preemptible library
    /// (the loader, libc, libgcc_s, libstdc++, or one named by the user).
    pub deferred_library: u64,
    /// Expiries deferred because a frame was in one of the standard library's critical
    /// sections (stdio printing, one-time initialisation, panics, the environment, ...).
    pub deferred_std: u64,
    /// Expiries deferred because a frame was in code of no known module (JIT code, or a
    /// library loaded after the module tables were last refreshed).
    pub deferred_unknown: u64,
    /// Expiries deferred because the stack could not be walked to its base.
    pub deferred_unwind: u64,
    /// Timer re-arms after a deferral that could not wait for the critical section's end
    /// (see `redirects`).
    pub retries: u64,
    /// Longest time from a deadline to the pause it caused, in nanoseconds, for functions
    /// that computed inside non-preemptible code meanwhile (waits in a system call count in
    /// `longest_wait_ns` instead).
    pub longest_deferral_ns: u64,
    /// Deliveries of the timer signal (every expiry, including those that found nothing to
    /// do): with `preemptions`, the signals a preemption cost.
    pub timer_signals: u64,
    /// Critical sections whose end was armed to pause the function (their outermost frame's
    /// return redirected), instead of retrying.
    pub redirects: u64,
    /// Redirected returns that were reached.
    pub redirects_reached: u64,
    /// Redirects found skipped at a later check (a `longjmp` or a panic left the frame), after
    /// which that check retried instead.
    pub redirects_skipped: u64,
    /// Preemptions that took effect when a library or standard-library critical section
    /// returned (a redirect).
    pub paused_at_section_end: u64,
    /// Preemptions that took effect when a `nopreempt` section (or runtime code) ended.
    pub paused_at_nopreempt_end: u64,
    /// Preemptions inside one of libc's pure memory and string routines.
    pub paused_in_pure_routine: u64,
    /// Preemptions of a function blocked in a system call at a cancellation point.
    pub paused_in_blocking_call: u64,
    /// Preemptions that a retry found possible, after deferrals.
    pub paused_by_retry: u64,
    /// Deliveries of the preemption signal by a timer that is not inger's (another timer
    /// created on the same signal), ignored.
    pub foreign_timer_signals: u64,
    /// Deferrals of a function that was waiting in a system call inside non-preemptible code (a
    /// blocking call the safe-point rule does not recognise, or one made with a lock held, such
    /// as `fgets` on a pipe).
    pub deferred_waiting: u64,
    /// Longest time from a deadline to the pause it caused, in nanoseconds, for functions that
    /// were waiting in a system call all that time (see `longest_deferral_ns` for those that
    /// computed).
    pub longest_wait_ns: u64,
    /// Expiries of a CPU-time budget's deadline that found CPU time left (the thread had been
    /// descheduled or had waited), after which the deadline moved.
    pub cpu_budget_rechecks: u64,
    /// CPU-time budgets handed to the thread's CPU-clock timer because the function was mostly
    /// waiting.
    pub cpu_timer_handoffs: u64,
    /// System calls that inger's signal interrupted (they would have failed with `EINTR`) and
    /// that the handler made run again, their meaning unchanged.
    pub restarted_calls: u64,
    /// System calls that inger's signal interrupted and that keep their `EINTR`: a relative
    /// timeout the kernel does not update (`poll` with a timeout, `usleep`), which a restart
    /// would lengthen, or a call whose number could not be read. Under `inger-run` these are
    /// restarted by the interposed calls.
    pub interrupted_calls: u64,
    /// Cooperative cancellations that ended the function without raising a panic, because
    /// no frame between its cancellation point and its start had anything to drop: the
    /// outcome is the same as an unwinding's, at a fraction of the cost.
    pub cancels_without_unwinding: u64,
    /// Checks of a cooperative cancellation (whether any frame has something to drop) answered
    /// from what earlier checks on the same thread learned about the same frames, without the
    /// system unwinder's walk (a tenth of its cost).
    pub cancel_checks_cached: u64,
}

/// Reads the process-wide preemption counters.
///
/// ```
/// let before = inger::stats();
/// inger::launch(|| inger::pause(), std::time::Duration::MAX)?;
/// assert!(inger::stats().yields > before.yields);
/// # Ok::<(), inger::Error>(())
/// ```
pub fn stats() -> Stats {
    let c = &COUNTERS;
    Stats {
        preemptions: c.preemptions.load(Relaxed),
        yields: c.yields.load(Relaxed) + live_yields(),
        deferred_nopreempt: c.deferred_nopreempt.load(Relaxed),
        deferred_library: c.deferred_library.load(Relaxed),
        deferred_std: c.deferred_std.load(Relaxed),
        deferred_unknown: c.deferred_unknown.load(Relaxed),
        deferred_unwind: c.deferred_unwind.load(Relaxed),
        retries: c.retries.load(Relaxed),
        longest_deferral_ns: c.longest_deferral_ns.load(Relaxed),
        timer_signals: c.timer_signals.load(Relaxed),
        redirects: c.redirects.load(Relaxed),
        redirects_reached: c.redirects_reached.load(Relaxed),
        redirects_skipped: c.redirects_skipped.load(Relaxed),
        paused_at_section_end: c.paused_at_section_end.load(Relaxed),
        paused_at_nopreempt_end: c.paused_at_nopreempt_end.load(Relaxed),
        paused_in_pure_routine: c.paused_in_pure_routine.load(Relaxed),
        paused_in_blocking_call: c.paused_in_blocking_call.load(Relaxed),
        paused_by_retry: c.paused_by_retry.load(Relaxed),
        foreign_timer_signals: c.foreign_timer_signals.load(Relaxed),
        deferred_waiting: c.deferred_waiting.load(Relaxed),
        longest_wait_ns: c.longest_wait_ns.load(Relaxed),
        cpu_budget_rechecks: c.cpu_budget_rechecks.load(Relaxed),
        cpu_timer_handoffs: c.cpu_timer_handoffs.load(Relaxed),
        restarted_calls: c.restarted_calls.load(Relaxed),
        interrupted_calls: c.interrupted_calls.load(Relaxed),
        cancels_without_unwinding: c.cancels_without_unwinding.load(Relaxed),
        cancel_checks_cached: c.cancel_checks_cached.load(Relaxed),
    }
}
