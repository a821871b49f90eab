//! Leaving a function: the switch from a function's stack back to whoever resumed it.
//!
//! Context: function stack, called from the function's own code (`pause`, `finish`, a
//! pending preemption) **and from the signal handler** running on that stack. Everything
//! here and everything it calls is therefore async-signal-safe: no allocation, no locks, no
//! thread-local access except the `CURRENT` slot (constant-initialised, no destructor).

use core::sync::atomic::Ordering::Relaxed;

use super::control::{Lpf, NEVER, Runtime, set_current, state};
use crate::arch;
use crate::sys::clock::thread_cpu_ns;
use crate::sys::tls::Glibc;

/// Suspends the running `leaf` and returns control to the resumer of `outer` (the leaf
/// itself or an LPF enclosing it), leaving `outer` in `new_state`. Returns when resumed.
///
/// # Safety
/// Runs on `leaf`'s stack, with `leaf` the innermost running LPF of `rt`, `outer` on its
/// chain, and the caller already holding one unit of `leaf.nopreempt` (rule 1 of the
/// runtime's module docs).
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
    // SAFETY: `outer.caller_sp` was saved by the `switch` in `resume`, whose context waits
    // for exactly this; `leaf.saved_sp` is ours to write.
    unsafe { arch::switch(leaf.saved_sp.get(), *outer.caller_sp.get()) };
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
