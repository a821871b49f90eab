//! The one real handler of an emulated signal: inger's expiries go to the core's handler,
//! every other delivery to the program's disposition, as the kernel would have acted on it.
//!
//! Runs in signal context (on whatever stack the kernel chose: for the core's flags, the
//! interrupted one): async-signal-safe only.

use core::ffi::{c_int, c_void};

use super::action::{Action, bit, set_of};
use super::table::{self, Emulated};
use crate::real;

/// A handler taking the `siginfo_t` and `ucontext`.
type InfoHandler = unsafe extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void);
/// A handler taking only the signal number.
type PlainHandler = unsafe extern "C" fn(c_int);

/// The handler installed for real on every emulated signal.
///
/// # Safety
/// Called by the kernel only, with the arguments of an `SA_SIGINFO` handler.
pub(crate) unsafe extern "C" fn on_signal(
    signal: c_int,
    info: *mut libc::siginfo_t,
    ucontext: *mut c_void,
) {
    let Some(entry) = table::slot(signal) else {
        return;
    };
    // SAFETY: `info` is the kernel's, for this delivery.
    if unsafe { table::is_inger_expiry(signal, info) } {
        let core = entry.core.load();
        if core.is_function() {
            // SAFETY: the core installed this handler with these flags, for this signal; it
            // may switch stacks from inside and come back later, which leaves this frame
            // suspended above the kernel's signal frame, as it would be without us.
            unsafe { call(core, signal, info, ucontext) };
        }
        // An expiry after the core let go of its signal is dropped: never the program's.
        return;
    }
    // SAFETY: as above.
    unsafe { deliver_to_program(entry, signal, info, ucontext) };
}

/// Acts on a delivery as the program's disposition says.
///
/// # Safety
/// In the handler of `signal`, with the kernel's arguments.
unsafe fn deliver_to_program(
    entry: &Emulated,
    signal: c_int,
    info: *mut libc::siginfo_t,
    ucontext: *mut c_void,
) {
    let action = entry.program.load();
    match action.handler {
        libc::SIG_IGN => table::count_ignored(),
        libc::SIG_DFL => die_of(signal),
        _ => {
            table::count_delivered();
            if action.flags & libc::SA_RESETHAND != 0 {
                entry.program.update(|mut current| {
                    current.handler = libc::SIG_DFL;
                    current
                });
            }
            // The kernel blocks the handler's mask and, without SA_NODEFER, the signal
            // itself, for the handler's run; returning to the kernel (sigreturn) restores the
            // interrupted mask from the frame, as it would after the program's own handler.
            let mut mask = action.mask;
            if action.flags & libc::SA_NODEFER == 0 {
                mask |= bit(signal);
            }
            if mask != 0 {
                let set = set_of(mask);
                // SAFETY: a valid set; glibc's own function (the mask is real).
                unsafe { real::pthread_sigmask()(libc::SIG_BLOCK, &set, core::ptr::null_mut()) };
            }
            // SAFETY: the program installed this handler for this signal, with these flags.
            unsafe { call(action, signal, info, ucontext) };
        }
    }
}

/// Calls `action`'s handler the way the kernel would, per its `SA_SIGINFO` flag.
///
/// # Safety
/// `action.handler` must be a function of the kind its flags say, and the other arguments
/// the kernel's for this delivery.
unsafe fn call(action: Action, signal: c_int, info: *mut libc::siginfo_t, ucontext: *mut c_void) {
    if action.flags & libc::SA_SIGINFO != 0 {
        // SAFETY: per the contract, an SA_SIGINFO handler.
        let handler = unsafe { core::mem::transmute::<usize, InfoHandler>(action.handler) };
        // SAFETY: the kernel's own arguments.
        unsafe { handler(signal, info, ucontext) };
    } else {
        // SAFETY: per the contract, a one-argument handler.
        let handler = unsafe { core::mem::transmute::<usize, PlainHandler>(action.handler) };
        // SAFETY: as above.
        unsafe { handler(signal) };
    }
}

/// The default action of a real-time signal: the process ends, killed by it (no core dump).
/// Gives the signal its default disposition for real, unblocks it and sends it to this
/// thread again; the kernel acts on it as soon as this system call returns.
fn die_of(signal: c_int) {
    // SAFETY: a zeroed sigaction with SIG_DFL is the default action.
    let mut default: libc::sigaction = unsafe { core::mem::zeroed() };
    default.sa_sigaction = libc::SIG_DFL;
    let only = set_of(bit(signal));
    // SAFETY: valid arguments; glibc's own functions; tgkill to our own thread.
    unsafe {
        real::sigaction()(signal, &default, core::ptr::null_mut());
        real::pthread_sigmask()(libc::SIG_UNBLOCK, &only, core::ptr::null_mut());
        libc::tgkill(libc::getpid(), libc::gettid(), signal);
    }
}
