//! The handler's last step: a system call that the preemption signal made fail with `EINTR`
//! runs again where that keeps its meaning (which calls and arguments: `sys::restart`), unless
//! the program's own signal is the reason to see it end.
//!
//! Context: **signal handler**, at its end (async-signal-safe: a few raw system calls).

use core::ffi::c_void;
use core::sync::atomic::Ordering::Relaxed;

use crate::arch;
use crate::safepoint;
use crate::stats::COUNTERS;
use crate::sys::{restart, signal};

/// If the context our signal (`own`) interrupted is a system call that failed with `EINTR`
/// because of it, makes it run again when that keeps its meaning (see `sys::restart`) and no
/// program signal is pending that the program would expect to end the call. Context: signal
/// handler, at its end (it returns after this).
///
/// `paused`: the function was paused in the call by this very delivery (and has been resumed).
///
/// # Safety
/// `ucontext` is the running handler's, which returns after this call.
pub(super) unsafe fn restart_interrupted_call(ucontext: *mut c_void, own: i32, paused: bool) {
    // SAFETY: per the contract.
    let arch::SystemCall::Interrupted { number } =
        (unsafe { arch::interrupted_system_call(ucontext) })
    else {
        return;
    };
    // Only glibc's wrappers, where the number loaded just before the instruction is the one
    // the call used (no `syscall` instruction of glibc 2.36 is a jump target; other code
    // could jump there with another number).
    // SAFETY: per the contract.
    let ip = unsafe { arch::interrupted_registers(ucontext) }.ip;
    let in_library = safepoint::tables::current()
        .is_some_and(|tables| tables.classify(ip - 2) == safepoint::tables::Class::Library);
    if !in_library {
        COUNTERS.interrupted_calls.fetch_add(1, Relaxed);
        return;
    }
    // SAFETY: per the contract.
    let arguments = unsafe { arch::system_call_arguments(ucontext) };
    // A call whose own mask blocks our signal was not ended by it: a pending expiry was
    // delivered after the program's signal ended the call (and ran its handler).
    // SAFETY: `number` and `arguments` are those of the call that just failed with EINTR.
    let masked_us = number
        .and_then(|number| unsafe { restart::installed_mask(number, arguments) })
        .is_some_and(|mask| mask & (1 << (own - 1)) != 0);
    match number.and_then(|number| Some((number, restart::restart_arguments(number, arguments)?))) {
        // Paused in a call that waits for a signal handler (`pause`, `sigsuspend`): a program
        // signal that arrived meanwhile ran its handler in the code running on the thread
        // then, and nothing tells whether one did. The call ends with EINTR, as after a
        // signal: a wait that returns early is what every caller of these calls handles, a
        // wait past its signal would be for ever.
        Some((number, _)) if paused && restart::waits_for_a_handler(number) => {
            COUNTERS.interrupted_calls.fetch_add(1, Relaxed);
        }
        Some(_) if masked_us => {
            COUNTERS.interrupted_calls.fetch_add(1, Relaxed);
        }
        // A program signal about to be delivered (or one that arrived while this handler ran,
        // held back from here on) is the program's reason to see this call end.
        // SAFETY: per the contract; the handler returns after this.
        Some(_) if unsafe { signal::program_signal_pending(ucontext, own) } => {
            COUNTERS.interrupted_calls.fetch_add(1, Relaxed);
        }
        Some((number, arguments)) => {
            // SAFETY: per the contract; the context is an interrupted system call (checked).
            unsafe { arch::restart_system_call(ucontext, number, arguments) };
            COUNTERS.restarted_calls.fetch_add(1, Relaxed);
        }
        None => {
            COUNTERS.interrupted_calls.fetch_add(1, Relaxed);
        }
    }
}
