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
//! Dropping a [`Continuation`] that never ran drops the closure normally. Dropping one that is
//! paused cancels it: its stack is discarded without running the destructors of its live
//! frames (what they own leaks; locks they hold stay held), as in the original libinger,
//! because unwinding from an arbitrary instruction is not possible in Rust. The discarded
//! stack is retired, never reused: a pointer into it that outlived the cancellation reaches
//! memory no other function uses, and soon after (see `stack`) faults.

use core::any::Any;
use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ptr::NonNull;
use core::sync::atomic::Ordering::Relaxed;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::time::Duration;

use crate::error::Error;
use crate::runtime::{self, Lpf, Outcome, state};
use crate::stack::{self, Stack};
use crate::sys::signal::abort_with;

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

    /// Continues a paused function for `budget` more; see [`resume`].
    pub fn resume(&mut self, budget: Duration) -> Result<(), Error> {
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
    /// Borrows of lifetime `'a` live in the closure; `*mut ()` keeps the type `!Send`/`!Sync`
    /// unless stated below.
    _marker: PhantomData<Marker<'a, T>>,
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
    pub fn resume(mut self, budget: Duration) -> Result<Linger<'a, T>, Error> {
        match self.run(budget)? {
            Some(value) => Ok(Linger::Completion(value)),
            None => Ok(Linger::Continuation(self)),
        }
    }

    /// Cancels the function: the same as dropping the continuation.
    pub fn cancel(self) {
        drop(self)
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
    pub fn cancel_cooperatively(mut self, budget: Duration) -> Result<Option<Self>, Error> {
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
    fn run(&mut self, budget: Duration) -> Result<Option<T>, Error> {
        match self.run_raw(budget)? {
            None => Ok(None),
            Some(Ok(value)) => Ok(Some(value)),
            Some(Err(payload)) if payload.is::<Cancelled>() => Err(Error::Cancelled),
            Some(Err(payload)) => resume_unwind(payload),
        }
    }

    /// Runs for `budget`; `Some(outcome)` once the function finished.
    fn run_raw(&mut self, budget: Duration) -> Result<Option<Finished<T>>, Error> {
        if self.stack.is_none() {
            return Err(Error::Finished);
        }
        // SAFETY: the control block is live while we hold its stack; its closure borrows data
        // for 'a, which outlives `self`; the continuation is !Send, so this is its thread.
        match unsafe { runtime::resume(self.lpf.as_ptr(), budget) }? {
            Outcome::Paused => Ok(None),
            Outcome::Finished => {
                // SAFETY: the function finished, so its slot holds the outcome, taken once.
                let outcome = unsafe { (self.take_outcome)(self.lpf) };
                if let Some(stack) = self.stack.take() {
                    give_back(stack);
                }
                Ok(Some(outcome))
            }
        }
    }
}

impl<T> Drop for Continuation<'_, T> {
    fn drop(&mut self) {
        let Some(stack) = self.stack.take() else {
            return;
        };
        // SAFETY: the control block is live while we held the stack.
        match unsafe { self.lpf.as_ref() }.state.load(Relaxed) {
            state::READY => {
                // SAFETY: never started: the slot still holds the closure.
                unsafe { (self.drop_unstarted)(self.lpf) };
                give_back(stack);
            }
            state::RUNNING => abort_with(
                b"inger: a running preemptible function's continuation was dropped from inside it\n",
            ),
            _ if runtime::refuse_in_signal_handler().is_err() => {
                // Discarding allocates and takes locks: inside a signal handler the function
                // and its stack are leaked instead, never reused.
                stack.leak();
            }
            _ => {
                // SAFETY: the control block of a paused function is live.
                let live_low = unsafe { self.lpf.as_ref() }.live_stack_pointer();
                match runtime::runtime_if_started() {
                    Some(rt) => rt.retire(stack, live_low),
                    // No runtime on this thread (it is exiting): the TLS block is abandoned.
                    None => stack::retire(stack, live_low),
                }
            }
        }
    }
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
pub fn resume<T>(linger: &mut Linger<'_, T>, budget: Duration) -> Result<(), Error> {
    let Linger::Continuation(continuation) = linger else {
        return Ok(());
    };
    if let Some(value) = continuation.run(budget)? {
        *linger = Linger::Completion(value);
    }
    Ok(())
}

/// Calls `f` on its own stack with a time budget.
///
/// Returns [`Linger::Completion`] if `f` returned within `budget`, else
/// [`Linger::Continuation`] once `f` has been paused at a safe point. `Duration::ZERO` only
/// prepares the call (nothing runs until [`resume`]); `Duration::MAX` runs it to completion.
/// `f` runs on the calling thread, so it deadlocks if it waits for a lock the caller holds.
/// A panic in `f` propagates out of `launch`.
///
/// ```
/// use std::time::Duration;
/// let linger = inger::launch(|| loop { std::hint::spin_loop() }, Duration::from_millis(5))?;
/// assert!(linger.is_continuation()); // the endless loop was paused; dropping it cancels it
/// # Ok::<(), inger::Error>(())
/// ```
///
/// # Errors
/// [`Error::StackAllocation`] if no stack could be mapped, [`Error::SignalInUse`] or
/// [`Error::System`] if preemption could not be set up on first use, [`Error::InvalidConfig`]
/// for a bad `INGER_*` variable.
pub fn launch<'a, F, T>(f: F, budget: Duration) -> Result<Linger<'a, T>, Error>
where
    F: FnOnce() -> T + Send + 'a,
{
    let rt = runtime::runtime()?;
    let stack = rt.take_stack()?;
    let frame = match place_frame::<F, T>(&stack) {
        Ok(frame) => frame,
        Err(error) => {
            rt.give_back(stack);
            return Err(error);
        }
    };
    // SAFETY: `frame` is aligned, inside `stack`, and not used by anything else.
    unsafe {
        frame.write(Frame {
            header: Lpf::new(run::<F, T>, &stack, rt),
            slot: UnsafeCell::new(Slot::Ready(f)),
        });
        let top = (frame as usize & !15) as *mut u8;
        runtime::prepare(frame.cast::<Lpf>(), top);
    }
    let mut continuation = Continuation {
        // SAFETY: `frame` is non-null (inside a mapped stack); the header is its first field.
        lpf: unsafe { NonNull::new_unchecked(frame.cast::<Lpf>()) },
        stack: Some(stack),
        take_outcome: take_outcome::<F, T>,
        drop_unstarted: drop_unstarted::<F, T>,
        _marker: PhantomData,
    };
    if budget.is_zero() {
        return Ok(Linger::Continuation(continuation));
    }
    match continuation.run(budget)? {
        Some(value) => Ok(Linger::Completion(value)),
        None => Ok(Linger::Continuation(continuation)),
    }
}

/// Returns a stack to the pool of the thread running this code (or the process-wide one).
fn give_back(stack: Stack) {
    match runtime::runtime_if_started() {
        Some(rt) => rt.give_back(stack),
        None => stack::give_back_global(stack),
    }
}

/// What sits at the top of a function's stack: its control block and its closure/result.
#[repr(C)]
struct Frame<F, T> {
    header: Lpf,
    slot: UnsafeCell<Slot<F, T>>,
}

enum Slot<F, T> {
    Ready(F),
    Running,
    Returned(T),
    Panicked(Box<dyn Any + Send>),
}

/// Where the frame goes: as high as possible, aligned, leaving most of the stack free.
fn place_frame<F, T>(stack: &Stack) -> Result<*mut Frame<F, T>, Error> {
    let size = size_of::<Frame<F, T>>();
    let align = align_of::<Frame<F, T>>().max(16);
    let room = stack.top() as usize - stack.base();
    if size > room / 2 {
        return Err(Error::InvalidConfig(format!(
            "the closure and its result take {size} bytes, more than half of the {room}-byte stack; \
             box them or raise INGER_STACK_SIZE"
        )));
    }
    let address = (stack.top() as usize - size) & !(align - 1);
    Ok(address as *mut Frame<F, T>)
}

/// Runs the closure on the function's stack and stores its outcome; true if it panicked.
///
/// # Safety
/// `lpf` must be the header of a `Frame<F, T>` in state READY with a `Ready` slot.
unsafe fn run<F: FnOnce() -> T, T>(lpf: *mut Lpf) -> bool {
    let frame = lpf.cast::<Frame<F, T>>();
    // SAFETY: per the contract; the slot is touched by nobody else while we run.
    let slot = unsafe { &mut *(*frame).slot.get() };
    let Slot::Ready(f) = core::mem::replace(slot, Slot::Running) else {
        abort_with(b"inger: a preemptible function was started twice\n")
    };
    let outcome = catch_unwind(AssertUnwindSafe(f));
    // The slot is written before the state says the function finished (see `finish`).
    *slot = match outcome {
        Ok(value) => Slot::Returned(value),
        Err(payload) => Slot::Panicked(payload),
    };
    matches!(slot, Slot::Panicked(_))
}

/// # Safety
/// `lpf` must be the header of a finished `Frame<F, T>` whose outcome was not taken yet.
unsafe fn take_outcome<F, T>(lpf: NonNull<Lpf>) -> Result<T, Box<dyn Any + Send>> {
    let frame = lpf.as_ptr().cast::<Frame<F, T>>();
    // SAFETY: per the contract the function finished, so nothing else touches the slot.
    let slot = unsafe { &mut *(*frame).slot.get() };
    match core::mem::replace(slot, Slot::Running) {
        Slot::Returned(value) => Ok(value),
        Slot::Panicked(payload) => Err(payload),
        _ => abort_with(b"inger: the outcome of a preemptible function was missing\n"),
    }
}

/// # Safety
/// `lpf` must be the header of a `Frame<F, T>` that never started.
unsafe fn drop_unstarted<F, T>(lpf: NonNull<Lpf>) {
    let frame = lpf.as_ptr().cast::<Frame<F, T>>();
    // SAFETY: per the contract the slot holds the closure and nothing else touches it.
    unsafe { core::ptr::drop_in_place((*frame).slot.get()) };
}
