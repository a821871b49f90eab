//! The public state machine: [`launch`], [`Linger`], [`Continuation`], [`resume`].
//!
//! ```text
//!            launch(f, ZERO)                     launch(f, budget)
//!   f ───────────────────────► Continuation ◄──────────────────────── f
//!                              (ready)  │  ▲ budget expired / pause()      │ returned
//!                        resume(budget) │  │                               ▼
//!                                       ▼  │                          Completion(T)
//!                               running on its own stack ──returned──► Completion(T)
//!                                       │ panicked
//!                                       ▼
//!                  the panic propagates out of launch/resume; the Continuation is finished
//!                  (resume returns Error::Finished)
//! ```
//!
//! Context: caller (the thread's own context, or an enclosing function's stack for a nested
//! call); the function itself runs on its own stack.
//!
//! Cancellation and its soundness rules are specified in the docs of [`Continuation`]; its
//! code is in `cancel`, launching (the frame at the top of a fresh stack) in `launch`.

use core::any::Any;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::Ordering::Relaxed;
use std::panic::resume_unwind;

use crate::budget::Budget;

use crate::error::Error;
use crate::runtime::{self, Lpf, Outcome, state};
use crate::scope::{Orphan, Registry};
use crate::stack::Stack;

mod cancel;
mod launch;

pub use launch::launch;
pub(crate) use launch::{give_back, launch_in};

/// The result of [`launch`]: the function either finished in time or is waiting to be resumed.
#[must_use = "dropping a Linger that holds a continuation cancels the function"]
pub enum Linger<'a, T> {
    /// The function returned this value.
    Completion(T),
    /// The function was paused (its budget expired or it called [`pause`](crate::pause)).
    Continuation(Continuation<'a, T>),
}

impl<'a, T> Linger<'a, T> {
    /// Whether the function has returned.
    pub fn is_completion(&self) -> bool {
        matches!(self, Linger::Completion(_))
    }

    /// Whether the function is paused (or prepared and not started).
    pub fn is_continuation(&self) -> bool {
        matches!(self, Linger::Continuation(_))
    }

    /// Whether the function paused itself with [`pause`](crate::pause) (rather than running
    /// out of budget) the last time it stopped.
    pub fn yielded(&self) -> bool {
        match self {
            Linger::Completion(_) => false,
            Linger::Continuation(continuation) => continuation.yielded(),
        }
    }

    /// The returned value, if the function completed.
    pub fn completion(self) -> Option<T> {
        match self {
            Linger::Completion(value) => Some(value),
            Linger::Continuation(_) => None,
        }
    }

    /// The paused function, if it did not complete.
    ///
    /// Handy for functions that never return, whose `Completion` cannot happen:
    ///
    /// ```
    /// use std::time::Duration;
    /// let linger = inger::launch(|| loop { inger::pause() }, Duration::from_millis(1))?;
    /// let paused = linger.continuation().expect("an endless loop never completes");
    /// assert!(paused.yielded());
    /// # Ok::<(), inger::Error>(())
    /// ```
    pub fn continuation(self) -> Option<Continuation<'a, T>> {
        match self {
            Linger::Completion(_) => None,
            Linger::Continuation(continuation) => Some(continuation),
        }
    }

    /// Continues a paused function for `budget` more; see [`resume`].
    pub fn resume(&mut self, budget: impl Into<Budget>) -> Result<(), Error> {
        resume(self, budget)
    }
}

impl<T> core::fmt::Debug for Linger<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Linger::Completion(_) => f.write_str("Completion(..)"),
            Linger::Continuation(c) => f.debug_tuple("Continuation").field(c).finish(),
        }
    }
}

/// A paused preemptible function. Resume it with [`Continuation::resume`] or [`resume`];
/// drop it (or call [`Continuation::cancel`]) to cancel it.
///
/// # Cancellation and soundness
///
/// Dropping a [`Continuation`] (or [`Continuation::cancel`]) cancels the function, in this
/// order:
///
/// 1. never started: its closure is dropped;
/// 2. paused: it is resumed for the grace budget
///    ([`Config::cancel_grace`](crate::Config::cancel_grace), 1 ms by default) with a request
///    that makes its next cancellation point unwind its stack with a [`Cancelled`] payload, so
///    its destructors run and the locks it holds are released (and poisoned, as after any
///    panic). Cancellation points: [`pause`](crate::pause), [`checkpoint`](crate::checkpoint),
///    the end of a [`nopreempt`](crate::nopreempt) section, and a nested [`launch`](crate::launch)
///    or [`resume`], both before the nested function runs and when it returns (the nested
///    function yields to the one being cancelled). When no frame
///    between the cancellation point and the function's start owns anything or catches (the
///    exception tables the compiler wrote say so, frame by frame), that unwinding would run
///    nothing: the function then ends without raising the panic, at about half the cost,
///    with the same outcome ([`Stats::cancels_without_unwinding`](crate::Stats) counts them).
///    A thread that found something to drop when cancelling a closure type launches that
///    type unchecked for a while, the way that unwinds fastest;
/// 3. still there after the grace budget: a `'static` function (from [`launch`]) is
///    *discarded*: its stack is frozen, never run, reused or invalidated, so that values
///    pinned on it and data its activity borrows from it stay valid (Rust's `Pin` and borrow
///    rules allow leaking such memory, not freeing it). What its frames own leaks; locks they
///    hold stay held. Functions it was resuming become paused continuations of their own. A
///    scoped function (from [`Scope::launch`](crate::Scope::launch)) is never discarded: it
///    may hold borrows of its caller's data, so its scope finishes it before returning (see
///    [`scope`](crate::scope())).
///
/// This is why [`launch`] takes only `'static` closures, like `std::thread::spawn`: a
/// function that borrowed from its caller could start activity that uses the borrow (a
/// scoped thread) and be discarded while the borrow ends. Borrowing functions go through
/// [`scope`](crate::scope()), which, like `std::thread::scope`, does not return before they
/// are done:
///
/// ```compile_fail
/// let mut data = vec![1, 2, 3];
/// // error: the closure borrows `data`, which does not live for 'static
/// let linger = inger::launch(|| data.push(4), std::time::Duration::MAX);
/// ```
///
/// ```compile_fail
/// // error: a scoped continuation cannot leave its scope
/// let escaped = inger::scope(|s| s.launch(|| 1, std::time::Duration::ZERO).unwrap());
/// ```
///
/// ```compile_fail
/// // error: a scoped thread that borrows the caller's data cannot start in a discardable
/// // function
/// let mut total = 0u64;
/// let linger = inger::launch(|| {
///     std::thread::scope(|s| { s.spawn(|| total += 1); });
/// }, std::time::Duration::MAX);
/// ```
///
/// A discarded stack keeps its live pages resident, one page of page tables and its address
/// space (the stack size plus a guard) for good; cooperative cancellation costs nothing that
/// lasts. `inger-bench` measures both (`discard_cost`, `coop_cancel_cost`).
///
/// A continuation is `Send` when its result type is: it may be resumed on another thread,
/// since the function has its own thread-local storage (see [`capabilities`](crate::capabilities);
/// in the shared-TLS fallback, resuming elsewhere returns [`Error::WrongThread`]).
pub struct Continuation<'a, T> {
    /// The control block at the top of `stack`; dangling once `stack` is `None`.
    lpf: NonNull<Lpf>,
    /// The function's stack, until it finishes.
    stack: Option<Stack>,
    /// Takes the outcome out of the slot (monomorphised for the closure type).
    take_outcome: TakeOutcome<T>,
    /// Drops the closure of a function that never started.
    drop_unstarted: unsafe fn(NonNull<Lpf>),
    /// Drops the outcome of a finished function, returning its panic payload (for a scope
    /// that finishes the function after its continuation was dropped).
    drop_outcome: unsafe fn(NonNull<Lpf>) -> Option<Box<dyn Any + Send>>,
    /// The scope of a function launched with [`Scope::launch`](crate::Scope::launch), which
    /// must see it finish; `None` for [`launch`]'s `'static` functions, which may be
    /// discarded.
    scope: Option<ScopeLink<'a>>,
    /// Borrows of lifetime `'a` live in the closure; `*mut ()` keeps the type `!Send`/`!Sync`
    /// unless stated below.
    _marker: PhantomData<Marker<'a, T>>,
}

/// A scoped function's entry in its scope.
struct ScopeLink<'a> {
    registry: &'a Registry,
    id: u64,
}

/// What a finished function left: its value, or its panic payload.
type Finished<T> = Result<T, Box<dyn Any + Send>>;
/// Takes the outcome out of a finished function's slot.
type TakeOutcome<T> = unsafe fn(NonNull<Lpf>) -> Finished<T>;
/// Variance and auto-trait carrier of a continuation.
type Marker<'a, T> = (&'a mut (), *mut (), fn() -> T);

// SAFETY: the closure is `Send` (required by `launch`), the result `T` is `Send`, and the
// function's state (stack and private TLS block) moves with the continuation; `resume` fixes
// up the thread identity (thread id, runtime, signal mask) on the new thread, and refuses with
// `Error::WrongThread` when TLS is shared. Only `&mut self`/`self` methods touch the function,
// so it is not `Sync`.
unsafe impl<T: Send> Send for Continuation<'_, T> {}

impl<T> core::fmt::Debug for Continuation<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Continuation")
            .field("finished", &self.stack.is_none())
            .field("yielded", &self.yielded())
            .finish()
    }
}

impl<'a, T> Continuation<'a, T> {
    /// Continues the function for `budget` more (`Duration::MAX`: until it returns;
    /// `Duration::ZERO`: until the next preemption check, a few microseconds).
    ///
    /// A panic in the function propagates out of this call.
    ///
    /// # Errors
    /// [`Error::Finished`] if the function already finished; [`Error::AlreadyRunning`] if it
    /// is running (it tried to resume itself); set-up errors of the runtime on first use on
    /// this thread.
    pub fn resume(mut self, budget: impl Into<Budget>) -> Result<Linger<'a, T>, Error> {
        match self.run(budget.into())? {
            Some(value) => Ok(Linger::Completion(value)),
            None => Ok(Linger::Continuation(self)),
        }
    }

    /// Cancels the function, as dropping the continuation does (see the type's docs), and
    /// says how it went.
    ///
    /// ```
    /// use std::time::Duration;
    /// let linger = inger::launch(|| loop { inger::checkpoint() }, Duration::from_millis(1))?;
    /// if let inger::Linger::Continuation(paused) = linger {
    ///     assert_eq!(paused.cancel(), inger::CancelOutcome::Unwound);
    /// }
    /// # Ok::<(), inger::Error>(())
    /// ```
    pub fn cancel(mut self) -> CancelOutcome {
        self.cancel_now()
    }

    /// Whether the function paused itself with [`pause`](crate::pause) the last time.
    pub fn yielded(&self) -> bool {
        if self.stack.is_none() {
            return false;
        }
        // SAFETY: while `stack` is held the control block on it is live.
        unsafe { self.lpf.as_ref() }.yielded()
    }

    /// Whether the function has not started yet (launched with a zero budget).
    pub fn is_unstarted(&self) -> bool {
        // SAFETY: while `stack` is held the control block on it is live.
        self.stack.is_some() && unsafe { self.lpf.as_ref() }.state.load(Relaxed) == state::READY
    }

    /// Cancels the function cooperatively: resumes it for `budget` with a request that makes
    /// its next cancellation point ([`pause`](crate::pause), the end of a
    /// [`nopreempt`](crate::nopreempt) section, [`checkpoint`](crate::checkpoint)) unwind its
    /// stack, so that the destructors of its live frames and its thread-locals run and the
    /// locks it holds are released.
    ///
    /// Returns `Ok(None)` once the function is gone (it unwound, or it completed before
    /// reaching a cancellation point: its result is dropped), `Ok(Some(self))` if it is still
    /// paused after `budget` (no cancellation point was reached; the request stays, so resume
    /// or cancel it again, or drop it to discard its stack). A function launched with a zero
    /// budget that never ran is simply dropped.
    ///
    /// ```
    /// use std::time::Duration;
    /// struct Noisy;
    /// impl Drop for Noisy {
    ///     fn drop(&mut self) { println!("cleaned up"); }
    /// }
    /// let linger = inger::launch(|| { let _noisy = Noisy; loop { inger::pause() } }, Duration::MAX)?;
    /// if let inger::Linger::Continuation(paused) = linger {
    ///     assert!(paused.cancel_cooperatively(Duration::from_millis(10))?.is_none()); // prints "cleaned up"
    /// }
    /// # Ok::<(), inger::Error>(())
    /// ```
    ///
    /// # Errors
    /// As for [`resume`](Continuation::resume).
    pub fn cancel_cooperatively(
        mut self,
        budget: impl Into<Budget>,
    ) -> Result<Option<Self>, Error> {
        let budget = budget.into();
        if self.stack.is_none() || self.is_unstarted() {
            return Ok(None);
        }
        // SAFETY: while `stack` is held the control block on it is live.
        runtime::request_cancel(unsafe { self.lpf.as_ref() });
        match self.run_raw(budget)? {
            None => Ok(Some(self)),
            Some(Ok(value)) => {
                drop(value);
                Ok(None)
            }
            Some(Err(payload)) if payload.is::<Cancelled>() => Ok(None),
            Some(Err(payload)) => resume_unwind(payload),
        }
    }

    /// Runs for `budget`; `Some(value)` if the function returned. Propagates its panic; a
    /// function that unwound because of a cooperative cancellation gives [`Error::Cancelled`].
    ///
    /// This and the two below are inlined into the caller, so that one frame
    /// (`runtime::resume`) lies between the user's call and the switch: after a switch every
    /// return mispredicts until the side that runs makes calls of its own (the processor's
    /// return predictions are the other stack's), about 5 ns per frame here.
    #[inline(always)]
    fn run(&mut self, budget: Budget) -> Result<Option<T>, Error> {
        match self.run_raw(budget)? {
            None => Ok(None),
            Some(Ok(value)) => Ok(Some(value)),
            Some(Err(payload)) if payload.is::<Cancelled>() => Err(Error::Cancelled),
            Some(Err(payload)) => resume_unwind(payload),
        }
    }

    /// Runs for `budget`; `Some(outcome)` once the function finished. Inside a preemptible
    /// function that is being cancelled, returning here is a cancellation point (a nested
    /// function yields to its enclosing one when that one is cancelled).
    #[inline(always)]
    fn run_raw(&mut self, budget: Budget) -> Result<Option<Finished<T>>, Error> {
        // The call is a cancellation point too: a function cancelled while it was paused on
        // its way here (inside `launch`, say) would otherwise first run the nested one for
        // its whole budget, since the request to yield reached only the functions nested
        // in it at the time. The checkpoint also records that the function passes
        // cancellation points (cancelling it is then worth a grace budget).
        crate::checkpoint();
        let outcome = self.run_unchecked(budget);
        crate::checkpoint();
        outcome
    }

    /// Runs for `budget`; `Some(outcome)` once the function finished.
    #[inline(always)]
    fn run_unchecked(&mut self, budget: Budget) -> Result<Option<Finished<T>>, Error> {
        if self.stack.is_none() {
            return Err(Error::Finished);
        }
        // SAFETY: the control block is live while we hold its stack; its closure borrows data
        // for 'a, which outlives `self`.
        match unsafe { runtime::resume(self.lpf.as_ptr(), budget) }? {
            Outcome::Paused => Ok(None),
            Outcome::Finished => {
                // SAFETY: the function finished, so its slot holds the outcome, taken once.
                let outcome = unsafe { (self.take_outcome)(self.lpf) };
                self.release_stack();
                Ok(Some(outcome))
            }
        }
    }

    /// Returns the stack of a function that finished (or whose closure was dropped) to the
    /// pool, after leaving its scope.
    fn release_stack(&mut self) {
        if let Some(link) = &self.scope {
            link.registry.remove(link.id);
        }
        if let Some(stack) = self.stack.take() {
            give_back(stack);
        }
    }
}

/// How a cancellation went (see [`Continuation::cancel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelOutcome {
    /// The function is gone and its destructors ran: it unwound from a cancellation point
    /// within the grace budget, returned meanwhile, or had never started.
    Unwound,
    /// Its stack was discarded: its destructors never run, and its memory is kept as it was
    /// (see [`Continuation`]).
    Discarded,
    /// A scoped function that did not unwind within the grace budget: its scope finishes it
    /// before the scope returns (see [`scope`](crate::scope())).
    LeftToScope,
}

/// The panic payload with which a cooperatively cancelled function unwinds (see
/// [`Continuation::cancel_cooperatively`]). Code that catches panics inside a preemptible
/// function should let it continue (`std::panic::resume_unwind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

/// Resumes the function in `linger` for `budget` more; a no-op on a completion. On return,
/// `linger` holds the completion or the still-paused continuation.
///
/// ```
/// use std::time::Duration;
/// let mut linger = inger::launch(|| 6 * 7, Duration::ZERO)?; // prepared, not run
/// assert!(linger.is_continuation());
/// inger::resume(&mut linger, Duration::MAX)?;
/// assert_eq!(linger.completion(), Some(42));
/// # Ok::<(), inger::Error>(())
/// ```
///
/// # Errors
/// As for [`Continuation::resume`]. If the function panics, the panic propagates and
/// `linger` keeps a finished continuation: resuming it again returns [`Error::Finished`].
pub fn resume<T>(linger: &mut Linger<'_, T>, budget: impl Into<Budget>) -> Result<(), Error> {
    let Linger::Continuation(continuation) = linger else {
        return Ok(());
    };
    if let Some(value) = continuation.run(budget.into())? {
        *linger = Linger::Completion(value);
    }
    Ok(())
}
