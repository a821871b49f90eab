//! Leaving a function: the switch from a function's stack back to whoever resumed it.
//!
//! Context: function stack, called from the function's own code (`pause`, `finish`, a
//! pending preemption) **and from the signal handler** running on that stack. Everything
//! here and everything it calls is therefore async-signal-safe: no allocation, no locks, no
//! thread-local access except the `CURRENT` slot (constant-initialised, no destructor) and,
//! only in a process with AddressSanitizer and shared TLS, the constant-initialised slots of
//! `sys::debug_tools`.
//!
//! Also here: what AddressSanitizer is told about the switches into and out of functions
//! ([`fiber_entering`], [`fiber_returned`], [`fiber_landed`]; see `sys::debug_tools` for why
//! only with shared TLS). Each costs one load and one never-taken branch without ASan.

use core::ffi::c_void;
use core::ptr::null_mut;
use core::sync::atomic::Ordering::Relaxed;

use super::control::{Lpf, NEVER, Runtime, set_current, state};
use crate::arch;
use crate::sys::clock::thread_cpu_ns;
use crate::sys::debug_tools;
use crate::sys::tls::Glibc;

// Unwinders find a running function's resumer through the word at the top of its stack,
// where its control block starts (see `arch::prepare_stack`): the resumer's saved stack
// pointer must be the block's first field.
const _: () = assert!(core::mem::offset_of!(Lpf, caller_sp) == 0);

/// Suspends the running `leaf` and returns control to the resumer of `outer` (the leaf
/// itself or an LPF enclosing it), leaving `outer` in `new_state`. Returns when resumed.
///
/// # Safety
/// Runs on `leaf`'s stack, with `leaf` the innermost running LPF of `rt`, `outer` on its
/// chain, and the caller already holding one unit of `leaf.nopreempt` (rule 1 of the
/// runtime's module docs).
// Inlined into its callers (`pause`, `finish`, the handler's pause): one frame fewer
// between the function's code and the switch, one mispredicted return fewer per resume.
#[inline(always)]
pub(crate) unsafe fn leave(rt: &Runtime, leaf: &Lpf, outer: &Lpf, new_state: u8, yielded: bool) {
    debug_assert!(leaf.nopreempt.load(Relaxed) > 0);
    debug_assert!(leaf.owns_stack_pointer(arch::stack_pointer()));
    debug_assert!(core::ptr::eq(rt.current.load(Relaxed), leaf));
    debug_assert!(!rt.busy.load(Relaxed));
    // Bookkeeping until the resumer lands in `resume` (which ends it).
    rt.busy.store(true, Relaxed);
    if new_state == state::PAUSED && !core::ptr::eq(leaf, outer) {
        keep_nested_cpu_budgets(leaf, outer);
    }
    let leaf_ptr = leaf as *const Lpf as *mut Lpf;
    outer.leaf.set(leaf_ptr);
    outer.yielded.set(yielded);
    outer.state.store(new_state, Relaxed);
    let resumer = outer.parent.load(Relaxed);
    rt.current.store(resumer, Relaxed);
    // SAFETY: a non-null resumer is live: it waits inside `resume` for this switch.
    let resumer_tls = rt.resumer_tls(unsafe { resumer.as_ref() });
    if resumer_tls != 0 {
        Glibc::propagate_multiple_threads(leaf.tls, resumer_tls);
    } else {
        set_current(resumer);
    }
    rt.install_tls(resumer_tls);
    let finished = matches!(new_state, state::COMPLETED | state::PANICKED);
    let mut fake_stack = null_mut();
    if debug_tools::asan_fibers() && leaf.tls == 0 {
        // SAFETY: as above, a non-null resumer is live.
        let to = unsafe { resumer.as_ref() }.map(stack_of);
        debug_tools::asan_start_switch((!finished).then_some(&mut fake_stack), to);
    }
    if finished {
        // Never continued: nothing to save (a constant in `finish`, where this is inlined).
        // SAFETY: as for the switch below; the finished function's frames own nothing
        // (its closure returned or unwound) and its stack is free once its resumer runs.
        unsafe { arch::jump(*outer.caller_sp.get()) };
    }
    // SAFETY: `outer.caller_sp` was saved by the `switch` in `resume`, whose context waits
    // for exactly this; `leaf.saved_sp` is ours to write.
    unsafe { arch::switch(leaf.saved_sp.get(), *outer.caller_sp.get()) };
    fiber_landed(leaf, fake_stack);
    // Resumed, perhaps on another thread: end that thread's resume bookkeeping.
    // SAFETY: the runtime of the thread that resumed us is live while we run on it.
    if let Some(rt) = unsafe { leaf.runtime.load(Relaxed).as_ref() } {
        rt.end_busy();
    }
}

/// The chain from `leaf` to `outer` is being paused: the functions nested in `outer` keep
/// what their CPU budgets have left, for the chain's resume (perhaps on another thread) to
/// restore. Reads the CPU clock only if one of them has a CPU budget. Async-signal-safe.
fn keep_nested_cpu_budgets(leaf: &Lpf, outer: &Lpf) {
    let nested = || leaf.chain().take_while(|node| !core::ptr::eq(*node, outer));
    if nested().all(|node| node.cpu_deadline.load(Relaxed) == NEVER) {
        return;
    }
    let cpu = thread_cpu_ns();
    for node in nested() {
        node.keep_cpu_budget(cpu);
    }
}

/// The lowest address and size of `lpf`'s stack, as AddressSanitizer wants them.
fn stack_of(lpf: &Lpf) -> (usize, usize) {
    (lpf.stack_low, lpf.stack_high - lpf.stack_low)
}

/// What [`fiber_returned`] needs: the resumer's fake stack, and whether ASan was told.
pub(super) struct FiberEntry {
    announced: bool,
    fake_stack: *mut c_void,
}

/// Before `resume` switches into `leaf` (resumed by `parent`, `None` for the thread's own
/// context): tells AddressSanitizer, if present and with shared TLS, which stack runs next.
/// Context: caller (the resumer).
#[inline(always)]
pub(super) fn fiber_entering(parent: Option<&Lpf>, leaf: &Lpf) -> FiberEntry {
    let mut entry = FiberEntry {
        announced: false,
        fake_stack: null_mut(),
    };
    if debug_tools::asan_fibers() && leaf.tls == 0 {
        match parent {
            Some(_) => {
                debug_tools::asan_start_switch(Some(&mut entry.fake_stack), Some(stack_of(leaf)))
            }
            None => debug_tools::asan_start_switch_from_root(&mut entry.fake_stack, stack_of(leaf)),
        }
        entry.announced = true;
    }
    entry
}

/// After the switch in `resume` came back: the resumer's side of the announcement.
/// Context: caller (the resumer).
#[inline(always)]
pub(super) fn fiber_returned(entry: &FiberEntry) {
    if entry.announced {
        debug_tools::asan_finish_switch(entry.fake_stack);
    }
}

/// Where `lpf` continues after a switch into it (its first instruction, or the return from
/// the switch in [`leave`]): completes the announcement, restoring the function's own fake
/// stack (`fake_stack`, null the first time). Context: function stack.
#[inline(always)]
pub(super) fn fiber_landed(lpf: &Lpf, fake_stack: *mut c_void) {
    if debug_tools::asan_fibers() && lpf.tls == 0 {
        debug_tools::asan_finish_switch(fake_stack);
    }
}
