//! Where a critical section ends and a pending preemption takes effect: the end of a
//! `nopreempt` section (or of runtime bookkeeping), and the return of a redirected
//! non-preemptible frame (the stub calls [`redirect_reached`]).
//!
//! A redirected return is a point where the function may be *paused* (it is as safe as a
//! preemption there), never one where a cancellation *unwinds*: the frame that returned has
//! done all it does, and the caller's landing pad would treat the call as failed. A test
//! unwinding there freed a block twice: `realloc` had freed the old buffer and returned the
//! new one, and the vector being grown, never told of the move, freed the old one again
//! while unwinding. Unwinding stays at the points where a panic is possible by
//! construction: `pause`, `checkpoint`, the end of a `nopreempt` section, a nested resume.
//!
//! Context: function stack (`release_nopreempt` also runs in a resumer's `resume`, on its own
//! stack); `redirect_reached` runs on the function's stack inside a redirect stub, with every
//! register a return may carry saved by the stub.

use core::sync::atomic::{
    Ordering::{Relaxed, SeqCst},
    compiler_fence,
};

use super::control::{Lpf, cancel, state, with_running};
use super::deadlines::{Decision, decide, effective_deadline};
use super::preempt::{PausedBy, check_running_stack, count_preemption, defer, set_redirect_stub};
use super::transfer::leave;
use crate::arch;
use crate::stats::COUNTERS;
use crate::sys::clock::now_ns;

/// Releases one unit of `lpf`'s counter; at zero, acts on a pending preemption.
/// Context: function stack (`lpf` running, or its resumer's code inside `resume`).
#[inline]
pub(crate) fn release_nopreempt(lpf: &Lpf) {
    compiler_fence(SeqCst);
    let held = lpf.nopreempt.load(Relaxed);
    lpf.nopreempt.store(held - 1, Relaxed);
    // The pending flag is read after the store: an expiry between the two sees a non-zero
    // count and sets the flag, which is then seen here.
    compiler_fence(SeqCst);
    if held == 1 && lpf.pending.load(Relaxed) {
        lpf.pending.store(false, Relaxed);
        preempt_if_due(lpf, PausedBy::SectionEnd, arch::caller_registers());
    }
}

/// The return of a redirected critical section: pauses the running function if a deadline
/// on its chain has passed and its whole stack now allows it. Called by the redirect stubs
/// only (see `arch::redirect`), which restore every return register afterwards.
///
/// # Safety
/// Only the stubs call it, on the stack of the running function whose frame returned.
pub(super) unsafe extern "C-unwind" fn redirect_reached() {
    let registers = arch::caller_registers();
    with_running(|lpf| {
        COUNTERS.redirects_reached.fetch_add(1, Relaxed);
        lpf.redirect_armed.set(false);
        preempt_if_due(lpf, PausedBy::Redirect, registers);
        // A pause here is as safe as a preemption here; an unwind is not (see the module
        // docs): a function nested in one being cancelled yields, nothing unwinds.
        if lpf.nopreempt.load(Relaxed) == 0 {
            checkpoint_yield(lpf);
        }
    });
}

/// A critical section of the running `lpf` ended (the caller is at `registers`, on `lpf`'s
/// stack): pause it if a deadline on its chain has really passed and the whole-stack rule
/// agrees, else make sure the timer is armed (or defer again). Context: function stack.
#[cold]
fn preempt_if_due(lpf: &Lpf, how: PausedBy, registers: arch::Registers) {
    debug_assert!(lpf.owns_stack_pointer(arch::stack_pointer()));
    // SAFETY: the runtime of the thread running us outlives the run.
    let Some(rt) = (unsafe { lpf.runtime.load(Relaxed).as_ref() }) else {
        return;
    };
    if !core::ptr::eq(rt.current.load(Relaxed), lpf) {
        return;
    }
    if lpf.nopreempt.load(Relaxed) > 0 {
        // A section (or runtime code) is open around this point: its end decides.
        lpf.pending.store(true, Relaxed);
        return;
    }
    let now = now_ns();
    let expired = match decide(lpf, now) {
        Decision::Pause(expired) => expired,
        Decision::Deferred => return, // an enclosing function's section covers it
        Decision::NotExpired => {
            rt.arm(effective_deadline(lpf));
            return;
        }
    };
    // The whole-stack rule applies here too: the section that just ended may sit inside a
    // critical section further down the stack. Walk from this very frame.
    if let Err(blocked) = check_running_stack(rt, lpf, expired, registers) {
        defer(rt, lpf, now, blocked, false);
        return;
    }
    count_preemption(lpf, expired, now, how);
    lpf.retries.set(0);
    lpf.hold_nopreempt();
    // SAFETY: on our own stack, holding a unit of the counter.
    unsafe { leave(rt, lpf, expired, state::PAUSED, false) };
    release_nopreempt(lpf);
}

/// Turns redirects on for stacks in slots of `slot_size` bytes (call once, outside any
/// handler, before the first launch), unless `wanted` is false or the process runs with a
/// hardware shadow stack (a redirected return would not match it). Whether they are on.
pub(super) fn enable_redirects(slot_size: usize, wanted: bool) -> bool {
    // The query fails with EINVAL on kernels without shadow stacks: keep the caller's errno.
    let saved_errno = crate::sys::signal::errno();
    let shadow_stack = arch::shadow_stack_enabled();
    crate::sys::signal::set_errno(saved_errno);
    if !wanted || shadow_stack {
        return false;
    }
    let Some(stub) = arch::redirect::stub_for(slot_size.trailing_zeros()) else {
        return false;
    };
    arch::redirect::init_save_area();
    arch::redirect::set_redirect_handler(redirect_reached);
    set_redirect_stub(stub);
    true
}

/// Yields the running `this` to an enclosing function being cancelled (its request, once),
/// as `checkpoint` does for a nested function. Context: function stack.
pub(super) fn checkpoint_yield(this: &Lpf) {
    if this.cancel.load(Relaxed) == cancel::YIELD {
        this.cancel.store(cancel::NONE, Relaxed);
        yield_now(this);
    }
}

/// Pauses the running `this` as `pause` does, and returns when it is resumed. Inlined, as
/// [`leave`] is, so that `pause` switches from its own frame (see `Continuation::run`).
#[inline(always)]
pub(super) fn yield_now(this: &Lpf) {
    // SAFETY: the runtime of the thread running us outlives the run.
    let Some(rt) = (unsafe { this.runtime.load(Relaxed).as_ref() }) else {
        return;
    };
    this.hold_nopreempt();
    rt.counters.count_yield();
    // SAFETY: on our own stack, holding a unit of the counter (rule 1).
    unsafe { leave(rt, this, this, state::PAUSED, true) };
    release_nopreempt(this);
}
