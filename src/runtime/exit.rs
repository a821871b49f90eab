//! The end of a function: what runs once its closure has returned or unwound (the destructors
//! of its thread-locals, its library copies, the last switch out), and a cooperative
//! cancellation that needs no unwinding.
//!
//! # Cancelling without unwinding
//!
//! A cancellation point asked to unwind raises a [`Cancelled`](crate::Cancelled) panic, which
//! the runtime's `catch_unwind` at the top of the function's stack catches. When no frame in
//! between has a landing pad at the call it is suspended in, that unwinding would run no code
//! (`sys::unwind` tells, from the frames' exception tables): [`cancel_without_unwinding`]
//! then stores the outcome the catch would have stored, starts a fresh context at the top of
//! the stack that runs the rest of the function's end ([`after_run`]), and switches to it. The
//! abandoned frames owned nothing (that is what a frame without a landing pad means), so
//! nothing on the stack stays referenced and the stack is reused as after an unwinding. It
//! costs one walk of the stack instead of a raised exception's two walks, its allocation and
//! the panic count; and once the thread's walks have judged the frames on the way, that walk
//! is the safe-point unwinder's, answered from what they learned (`safepoint::cancel`). The
//! check needs the closure in a frame of its own, which makes an unwinding dearer, so the
//! closure types whose last check found something to run are launched without it for a
//! while ([`hint_slot`]). The panic is always raised under
//! AddressSanitizer (which unpoisons the abandoned frames only when it sees an exception
//! thrown) and in a build with `panic = "abort"` (where the tables say nothing about what
//! frames own).
//!
//! Context: function stack.

use core::cell::Cell;
use core::ffi::c_void;
use core::sync::atomic::Ordering::Relaxed;

use super::control::{CANCEL_HINTS, Lpf, current_lpf, state};
use super::ending::release_nopreempt;
use super::transfer::leave;
use crate::arch;
use crate::safepoint;
use crate::stats::COUNTERS;
use crate::sys::{debug_tools, signal::abort_with, unwind};

/// Everything after the closure: the destructors of the function's thread-locals (like a
/// thread exit), its library copies, and the final switch to its resumer. `panicked` says
/// whether the slot holds a panic's payload.
pub(super) fn after_run(this: &Lpf, panicked: bool) -> ! {
    if this.tls != 0 {
        // Like a thread exit: destructors of the function's thread-locals run in its context.
        // SAFETY: a non-null runtime pointer is live while we run on its thread.
        if let Some(glibc) = unsafe { this.runtime.load(Relaxed).as_ref() }.and_then(|rt| rt.glibc)
        {
            glibc.run_tls_destructors();
        }
    }
    if !this.libset.get().is_null() {
        // The library copies it held go back to their pools (renewed after a panic or a
        // cooperative cancellation, which may have stopped half-way through one).
        crate::libset::function_finished(this, panicked);
    }
    finish(this, panicked)
}

/// Leaves a finished LPF for good; its stack may be reused once the resumer sees the state.
/// The state says so only from here, with preemption deferred: a timer expiry on the way
/// out must not turn the finished function back into a paused one.
fn finish(this: &Lpf, panicked: bool) -> ! {
    this.hold_nopreempt();
    let final_state = if panicked {
        state::PANICKED
    } else {
        state::COMPLETED
    };
    // SAFETY: the runtime of the thread running us outlives the run.
    let rt = unsafe { this.runtime.load(Relaxed).as_ref() }
        .unwrap_or_else(|| abort_with(b"inger: runtime vanished under a running function\n"));
    // SAFETY: we hold a unit of our counter; `this` is the innermost running LPF.
    unsafe { leave(rt, this, this, final_state, false) };
    abort_with(b"inger: a finished preemptible function was resumed\n")
}

/// At a cancellation point of the running function, asked to unwind: ends the function as
/// the unwinding would, without raising anything, if no frame between here and the closure's
/// catch has code to run (see the module docs). Returns only if some frame has (or the walk
/// cannot tell, or no function runs); the caller then raises the panic.
///
/// The control block is looked up here rather than passed through a closure: a frame that
/// holds a closure has a landing pad in an unoptimised build, which would make every walk
/// through it fail. Inlined into the cancellation point, for the same reason as the walk.
#[inline(always)]
pub(super) fn cancel_without_unwinding() {
    // SAFETY: a non-null current LPF is the one running this code, whose control block lives
    // at the top of its own stack until it finishes.
    let Some(this) = (unsafe { current_lpf().as_ref() }) else {
        return;
    };
    let anchor = this.unwind_anchor.get();
    if anchor == 0 {
        // Launched with the closure in the catching frame, never to be checked (see
        // `calls_closure_directly`): it unwinds.
        return;
    }
    // Preemption is deferred from the walk to the switch, as it is during an unwinding (an
    // unwinder's frames are never paused): a function cancelled under a wall-clock grace
    // then cannot be paused half-way through its cancellation, when its thread is
    // descheduled, and risk being discarded. The walk is bounded (a few microseconds).
    this.hold_nopreempt();
    let clean = frames_are_clean(this, anchor);
    checked(this, clean);
    if !clean {
        release_nopreempt(this);
        return;
    }
    COUNTERS.cancels_without_unwinding.fetch_add(1, Relaxed);
    let lpf = this as *const Lpf as *mut Lpf;
    // SAFETY: `cancelled` is the monomorphised writer for this function's slot, which holds
    // no value while the closure runs (it was moved out), and nothing else touches it.
    unsafe { (this.cancelled)(lpf) };
    // The fresh context releases the unit held since the walk when it lands, as a
    // function's entry does.
    let top = this.walk_base.get() as *mut u8;
    // SAFETY: `top` is where the function's first context started: 16-byte aligned, with
    // the control block (holding the resumer's saved stack pointer, as the fresh context's
    // unwind information expects) just above it. The bytes below it belong to frames of
    // this stack that are never continued: the ones being abandoned, above the code
    // running here, which own nothing (the walk said so). `cancelled_entry` never returns;
    // it starts with the function's floating-point control words, as the unwinding would.
    unsafe {
        let to = arch::prepare_stack(top, cancelled_entry, lpf.cast());
        arch::jump(to)
    }
}

/// Whether the frames from the caller (the cancellation point it is inlined into) up to the
/// one holding `anchor` have nothing to run if unwound: from what earlier checks on this
/// thread learned, when they know every frame (`safepoint::cancel`), else by libgcc's walk,
/// which teaches them. Inlined, so that both walks start in the cancellation point's frame.
/// Context: function stack, `this` running with its preemption deferred.
#[inline(always)]
fn frames_are_clean(this: &Lpf, anchor: usize) -> bool {
    let registers = arch::caller_registers();
    // SAFETY: a non-null runtime pointer is live while its thread runs the function.
    let rt = unsafe { this.runtime.load(Relaxed).as_ref() };
    if let Some(rt) = rt {
        // SAFETY: the function's stack is mapped while it runs, and `registers` were captured
        // on it just now; its deferred preemption keeps the handler off the thread's cache.
        let known = unsafe {
            safepoint::cancel::frames_are_clean(
                rt.unwind_cache(),
                registers,
                this.stack_low,
                this.stack_high,
                anchor,
            )
        };
        if let Some(clean) = known {
            COUNTERS.cancel_checks_cached.fetch_add(1, Relaxed);
            return clean;
        }
    }
    let mut learned = unwind::Learned::new();
    let clean = unwind::frames_are_clean(anchor, &mut learned);
    if let Some(rt) = rt {
        // SAFETY: as above, the handler stays off the cache.
        safepoint::cancel::learn(unsafe { rt.unwind_cache() }, registers, &learned);
    }
    clean
}

/// Launches of a closure type made the direct way after a check of its cancellation found a
/// frame with something to run.
const DIRECT_LAUNCHES: usize = 255;

/// Which closure types to launch with the closure called from the catching frame itself, per
/// thread (`Runtime::cancel_hints`).
///
/// A cancellation can only be checked if the closure runs in a frame of its own, below the
/// frame that catches its panics (see `linger::launch`); but that frame makes an unwinding
/// through it dearer (its landing pad resumes the unwinding, which starts the unwinder over:
/// about a fifth of a short unwinding), and a check that finds a frame with something to run
/// is wasted work on top. So once a check of a closure type finds such a frame, the thread
/// launches functions of that type the old way, the closure inlined into the catching frame
/// and never checked, all but one in `DIRECT_LAUNCHES`, which is checked if it is cancelled
/// (a clean check ends the hint).
/// Functions that own values when they are cancelled then cost what they did before the
/// check existed, nearly always, and those that own nothing skip the unwinding.
///
/// An entry holds the address of a closure type's runner (`Lpf::run`, one per type) shifted
/// left by eight, plus the direct launches left. Direct-mapped by address: a collision only
/// costs a check, or an unwinding that could have been skipped, never a wrong verdict.
#[inline]
fn hint_slot(this: &Lpf) -> Option<(&Cell<usize>, usize)> {
    let key = this.run as usize;
    // SAFETY: a non-null runtime pointer is live while its thread runs the function.
    let rt = unsafe { this.runtime.load(Relaxed).as_ref() }?;
    Some((&rt.cancel_hints[(key >> 4) % CANCEL_HINTS], key))
}

/// Whether the function `this`, about to call its closure, should call it from the catching
/// frame, unchecked (see [`hint_slot`]); counts the launch. Context: function stack, before the
/// closure starts.
///
/// Always, in a build with `panic = "abort"` (frames have no landing pads even where they own
/// values, so a clean-looking stack proves nothing, and the panic raised instead aborts, as
/// any panic there does) and under AddressSanitizer (which unpoisons abandoned frames only
/// when it sees an exception thrown): their cancellations are never checked, so they are
/// launched without the frame the check needs.
#[inline]
pub(crate) fn calls_closure_directly(this: &Lpf) -> bool {
    if !cfg!(panic = "unwind") || debug_tools::asan_fibers() {
        return true;
    }
    let Some((slot, key)) = hint_slot(this) else {
        return false;
    };
    let hint = slot.get();
    if hint >> 8 != key {
        return false;
    }
    if hint & 0xff > 1 {
        slot.set(hint - 1);
        return true;
    }
    // This one is launched to be checked; until a check says otherwise, the hint stands for
    // the launches after it (whether this one is cancelled or not).
    slot.set((key << 8) | DIRECT_LAUNCHES);
    false
}

/// Records what the check of `this`'s cancellation found.
fn checked(this: &Lpf, clean: bool) {
    let Some((slot, key)) = hint_slot(this) else {
        return;
    };
    if !clean {
        slot.set((key << 8) | DIRECT_LAUNCHES);
    } else if slot.get() >> 8 == key {
        slot.set(0);
    }
}

/// The fresh context [`cancel_without_unwinding`] switches to, at the top of the stack.
///
/// # Safety
/// Entered only through the entry trampoline, with the running LPF's control block as `arg`,
/// holding a unit of its counter.
unsafe extern "C" fn cancelled_entry(arg: *mut c_void) -> ! {
    // SAFETY: `arg` is the live control block at the top of this very stack.
    let this = unsafe { &*arg.cast::<Lpf>() };
    release_nopreempt(this);
    after_run(this, true)
}
