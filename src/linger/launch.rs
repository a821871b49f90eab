//! Launching: placing a function's control block and closure at the top of a fresh stack,
//! and the monomorphised code that runs the closure and hands its outcome over.
//!
//! Context: caller; [`run`] runs on the function's own stack.

use core::any::Any;
use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ptr::NonNull;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::{Continuation, Linger, ScopeLink};
use crate::budget::Budget;
use crate::error::Error;
use crate::runtime::{self, Lpf};
use crate::scope::Registry;
use crate::stack::{self, Stack};
use crate::sys::signal::abort_with;

/// Calls `f` on its own stack with a time budget.
///
/// Returns [`Linger::Completion`] if `f` returned within `budget`, else
/// [`Linger::Continuation`] once `f` has been paused at a safe point. `Duration::ZERO` only
/// prepares the call (nothing runs until [`resume`](crate::resume)); `Duration::MAX` runs it
/// to completion. `f` runs on the calling thread, so it deadlocks if it waits for a lock the
/// caller holds. A panic in `f` propagates out of `launch`.
///
/// The floating-point control words (SSE's MXCSR and the x87 control word: rounding modes,
/// exception masks, flush-to-zero) belong to each function, as the ABI makes them
/// callee-saved: `f` starts with those of the thread that first runs it (the caller, unless
/// `budget` is zero), keeps the ones it sets across pauses, preemptions and migrations, and
/// never changes its caller's.
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
pub fn launch<F, T>(f: F, budget: impl Into<Budget>) -> Result<Linger<'static, T>, Error>
where
    F: FnOnce() -> T + Send + 'static,
{
    launch_in(f, budget.into(), None)
}

/// [`launch`] for a closure that lives for `'a`: `'static` (no scope) or a scope's lifetime
/// (registered with that scope, which sees it finish).
pub(crate) fn launch_in<'a, F, T>(
    f: F,
    budget: Budget,
    scope: Option<&'a Registry>,
) -> Result<Linger<'a, T>, Error>
where
    F: FnOnce() -> T + Send + 'a,
{
    // Preemption of the running function (for a nested launch) is deferred from before the
    // runtime is looked up until the continuation exists: paused in between, it could be
    // resumed on another thread with this thread's runtime (and its stack pool) in hand.
    let section = runtime::RuntimeSection::enter();
    let rt = runtime::runtime()?;
    let stack = rt.take_stack(&section)?;
    let frame = match place_frame::<F, T>(&stack) {
        Ok(frame) => frame,
        Err(error) => {
            rt.give_back(stack, &section);
            return Err(error);
        }
    };
    // SAFETY: `frame` is aligned, inside `stack`, and not used by anything else.
    unsafe {
        frame.write(Frame {
            header: Lpf::new(run::<F, T>, store_cancelled::<F, T>, &stack, rt),
            slot: UnsafeCell::new(Slot::Ready(f)),
        });
        let top = (frame as usize & !15) as *mut u8;
        runtime::prepare(frame.cast::<Lpf>(), top);
    }
    // SAFETY: `frame` is non-null (inside a mapped stack); the header is its first field.
    let lpf = unsafe { NonNull::new_unchecked(frame.cast::<Lpf>()) };
    let mut continuation = Continuation {
        lpf,
        stack: Some(stack),
        take_outcome: take_outcome::<F, T>,
        drop_unstarted: drop_unstarted::<F, T>,
        drop_outcome: drop_outcome::<F, T>,
        scope: scope.map(|registry| ScopeLink {
            registry,
            id: registry.add(lpf),
        }),
        _marker: PhantomData,
    };
    drop(section);
    if budget.duration().is_zero() {
        return Ok(Linger::Continuation(continuation));
    }
    match continuation.run(budget)? {
        Some(value) => Ok(Linger::Completion(value)),
        None => Ok(Linger::Continuation(continuation)),
    }
}

/// Returns a stack to the pool of the thread running this code (or the process-wide one).
#[inline]
pub(crate) fn give_back(stack: Stack) {
    // Deferred before the lookup, as in `launch_in`: the runtime must be this thread's.
    let section = runtime::RuntimeSection::enter();
    match runtime::runtime_if_started() {
        Some(rt) => rt.give_back(stack, &section),
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
    let top = stack.top() as usize - crate::stack::TOP_RESERVED;
    let room = top - stack.base();
    if size > room / 2 {
        return Err(Error::InvalidConfig(format!(
            "the closure and its result take {size} bytes, more than half of the {room}-byte stack; \
             box them or raise INGER_STACK_SIZE"
        )));
    }
    let address = (top - size) & !(align - 1);
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
    // SAFETY: per the contract `lpf` is this frame's live header.
    let this = unsafe { &*lpf };
    let outcome = if runtime::calls_closure_directly(this) {
        // Cancelling this closure type recently had to unwind (or it is never checked): the
        // closure runs in the catching frame, which unwinds fastest.
        catch_unwind(AssertUnwindSafe(f))
    } else {
        catch_unwind(AssertUnwindSafe(|| {
            // The frames below this one are those a cancellation unwinds: the closure's,
            // called through a frame of its own (never inlined here, where its values would
            // share a frame with the catch, out of the check's sight; see `runtime::exit`).
            let anchor = 0u8;
            this.set_unwind_anchor(core::hint::black_box(&anchor) as *const u8 as usize);
            call_closure(f)
        }))
    };
    // From here on (thread-local destructors, which may pause) nothing is checked.
    this.set_unwind_anchor(0);
    // The slot is written before the state says the function finished (see `finish`).
    *slot = match outcome {
        Ok(value) => Slot::Returned(value),
        Err(payload) => Slot::Panicked(payload),
    };
    matches!(slot, Slot::Panicked(_))
}

/// Calls the closure in a frame of its own, below the frame whose address `run` records.
#[inline(never)]
fn call_closure<F: FnOnce() -> T, T>(f: F) -> T {
    f()
}

/// Stores the outcome of a cooperative cancellation that needed no unwinding: what the
/// catch in [`run`] would have stored for a [`Cancelled`](crate::Cancelled) panic.
///
/// # Safety
/// `lpf` must be the header of a `Frame<F, T>` whose closure is running (its slot holds no
/// value), on the function's own stack.
unsafe fn store_cancelled<F, T>(lpf: *mut Lpf) {
    let frame = lpf.cast::<Frame<F, T>>();
    // SAFETY: per the contract; the running function is the only one touching its slot.
    let slot = unsafe { &mut *(*frame).slot.get() };
    *slot = Slot::Panicked(Box::new(crate::Cancelled));
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
/// As for [`take_outcome`].
unsafe fn drop_outcome<F, T>(lpf: NonNull<Lpf>) -> Option<Box<dyn Any + Send>> {
    // SAFETY: per the contract.
    unsafe { take_outcome::<F, T>(lpf) }.err()
}

/// # Safety
/// `lpf` must be the header of a `Frame<F, T>` that never started.
unsafe fn drop_unstarted<F, T>(lpf: NonNull<Lpf>) {
    let frame = lpf.as_ptr().cast::<Frame<F, T>>();
    // SAFETY: per the contract the slot holds the closure and nothing else touches it.
    unsafe { core::ptr::drop_in_place((*frame).slot.get()) };
}
