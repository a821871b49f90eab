//! What code inside a function calls: [`pause`], [`checkpoint`], [`nopreempt`] and its guard
//! [`NoPreempt`], [`in_preemptible`], and the runtime's own deferral around bookkeeping.
//!
//! Context: function stack (each is a no-op, or just calls its closure, outside any
//! function). Never called from the signal handler.

use core::sync::atomic::Ordering::Relaxed;

use super::control::{Lpf, cancel, current_lpf, with_running};
use super::ending::{release_nopreempt, yield_now};
use super::exit::cancel_without_unwinding;

/// Returns control to whoever launched or resumed the calling preemptible function, at once.
/// The [`Linger`](crate::Linger) they get reports [`yielded`](crate::Linger::yielded).
/// Outside a preemptible function, does nothing.
///
/// ```
/// let mut linger = inger::launch(
///     || {
///         let mut steps = 1;
///         inger::pause();
///         steps += 1;
///         steps
///     },
///     std::time::Duration::MAX,
/// )?;
/// assert!(linger.yielded());
/// inger::resume(&mut linger, std::time::Duration::MAX)?;
/// assert_eq!(linger.completion(), Some(2));
/// # Ok::<(), inger::Error>(())
/// ```
// Inlined into the caller (a few hundred bytes of code): the switch back is then called from
// the caller's own frame, and no `ret` mispredicts when the function is resumed (see
// `runtime::call::resume`).
#[inline]
pub fn pause() {
    let requested = with_running(|this| {
        this.checks_cancellation.set(true);
        yield_now(this);
        this.cancel.load(Relaxed) != cancel::NONE
    });
    if requested == Some(true) {
        checkpoint();
    }
}

/// A cancellation point: if the caller asked to cancel the running function cooperatively
/// ([`Continuation::cancel_cooperatively`](crate::Continuation::cancel_cooperatively)), unwinds
/// its stack from here with a [`Cancelled`](crate::Cancelled) payload, so that destructors
/// run. [`pause`] and the end of a [`nopreempt`] section are cancellation points too. Outside
/// a preemptible function, or while already unwinding, does nothing.
///
/// Call it in long loops that should be cancellable with their destructors run.
// Inlined down to the look at the running function: outside one (every `launch` and `resume`
// from a thread's own context passes here) it costs a thread-local load.
#[inline]
pub fn checkpoint() {
    // Not `with_running`: in an unoptimised build its `map` adds frames between the caller and
    // `checkpoint_in`, which the cancellation walk from there must then judge.
    // SAFETY: a non-null current LPF is the one running this code (see `with_running`).
    if let Some(this) = unsafe { current_lpf().as_ref() } {
        checkpoint_in(this);
    }
}

/// [`checkpoint`] inside the running function `this`.
#[inline(never)]
fn checkpoint_in(this: &Lpf) {
    this.checks_cancellation.set(true);
    if this.nopreempt.load(Relaxed) != 0 {
        return; // a section's end will check again
    }
    let unwind = match this.cancel.load(Relaxed) {
        cancel::UNWIND => true,
        cancel::YIELD => {
            // An enclosing function is being cancelled: give control back to it (its
            // `resume` of us is its cancellation point), once.
            this.cancel.store(cancel::NONE, Relaxed);
            yield_now(this);
            this.cancel.load(Relaxed) == cancel::UNWIND
        }
        _ => false,
    };
    if unwind && !std::thread::panicking() {
        // Ends the function here if the unwinding would run nothing, else returns.
        cancel_without_unwinding();
        std::panic::resume_unwind(Box::new(crate::Cancelled));
    }
}

/// Pauses the running function as [`pause`] does, but is no cancellation point: it never
/// unwinds. For runtime code that cannot unwind (a routed library call waiting for a copy of
/// its library). Outside a function, does nothing.
pub(crate) fn yield_without_unwinding() {
    with_running(yield_now);
}

/// Whether the caller runs inside a preemptible function (on this thread's innermost one).
pub fn in_preemptible() -> bool {
    !current_lpf().is_null()
}

/// Runs `f` with preemption deferred: if the budget expires meanwhile, the function is paused
/// as soon as `f` returns. Use it around code that must not be paused half-way, such as a
/// critical section shared with the caller. Costs a few instructions; outside a preemptible
/// function it just calls `f`.
///
/// ```
/// let total = inger::nopreempt(|| 2 + 2);
/// assert_eq!(total, 4);
/// ```
pub fn nopreempt<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoPreempt::new();
    f()
}

/// Guard form of [`nopreempt`]: preemption of the current function is deferred while it lives.
///
/// The guard applies to the function that is running when it is dropped; create and drop it
/// in the same function (it is `!Send`, and moving it elsewhere only mis-attributes the count).
///
/// ```
/// {
///     let _guard = inger::NoPreempt::new();
///     // ... not paused in here ...
/// }
/// ```
#[must_use = "preemption is deferred only while the guard lives"]
pub struct NoPreempt {
    _not_send: core::marker::PhantomData<*mut ()>,
}

impl NoPreempt {
    /// Defers preemption of the running function until the guard is dropped.
    #[inline]
    pub fn new() -> Self {
        with_running(Lpf::hold_nopreempt);
        NoPreempt {
            _not_send: core::marker::PhantomData,
        }
    }
}

impl Default for NoPreempt {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NoPreempt {
    #[inline]
    fn drop(&mut self) {
        let released = with_running(|this| {
            let held = this.nopreempt.load(Relaxed) > 0;
            if held {
                release_nopreempt(this);
            }
            held
        });
        if released == Some(true) {
            checkpoint();
        }
    }
}

/// Defers preemption of the running function (if any) around runtime bookkeeping, without
/// the cancellation checkpoint of the public [`NoPreempt`] guard.
pub(crate) struct RuntimeSection(*mut Lpf);

impl RuntimeSection {
    /// Enters the section.
    #[inline]
    pub(crate) fn enter() -> Self {
        let running = current_lpf();
        // SAFETY: a non-null running LPF is live while its code runs, as this code does.
        if let Some(this) = unsafe { running.as_ref() } {
            this.hold_nopreempt();
        }
        RuntimeSection(running)
    }
}

impl Drop for RuntimeSection {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the section never outlives the function it was entered in, whose control
        // block is live while its code runs.
        if let Some(this) = unsafe { self.0.as_ref() } {
            release_nopreempt(this);
        }
    }
}
