//! The program's signal calls, interposed: on an emulated signal, dispositions are read and
//! written in the program's view (with glibc's semantics for each function); masks go to the
//! kernel, counted when they block the signal on the thread running `main`. Every other
//! signal goes straight to glibc.

use core::ffi::c_int;
use core::sync::atomic::Ordering::Relaxed;

use super::action::{Action, SA_INTERRUPT, bit, first_word, set_of};
use super::table::{self, Emulated, RESTORER};
use crate::real;

type Handler = libc::sighandler_t;

/// glibc's `SIG_ERR`.
const SIG_ERR: Handler = !0;
/// System V's `SIG_HOLD` (glibc's value), for `sigset`.
const SIG_HOLD: Handler = 2;

fn set_errno(value: c_int) {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() = value };
}

/// Sets the program's disposition of an emulated signal; returns the old one.
fn set_disposition(entry: &Emulated, handler: Handler, flags: c_int, mask: u64) -> Action {
    table::count_handler_set();
    entry.program.replace(Action::as_installed(
        handler,
        flags,
        mask,
        RESTORER.load(Relaxed),
    ))
}

/// `sigaction`.
///
/// # Safety
/// As glibc's `sigaction`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigaction(
    signal: c_int,
    act: *const libc::sigaction,
    oldact: *mut libc::sigaction,
) -> c_int {
    let Some(entry) = table::emulated(signal) else {
        // SAFETY: forwarding the caller's own arguments.
        return unsafe { real::sigaction()(signal, act, oldact) };
    };
    // SAFETY: per the contract, `act` is null or valid; read before anything changes, as
    // `act` and `oldact` may be the same structure.
    let old = match unsafe { act.as_ref() } {
        Some(act) => set_disposition(
            entry,
            act.sa_sigaction,
            act.sa_flags,
            first_word(&act.sa_mask),
        ),
        None => entry.program.load(),
    };
    // SAFETY: per the contract, `oldact` is null or valid.
    if let Some(out) = unsafe { oldact.as_mut() } {
        old.write_to(out);
    }
    0
}

/// `__sigaction`, glibc's other name for `sigaction`.
///
/// # Safety
/// As glibc's `sigaction`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __sigaction(
    signal: c_int,
    act: *const libc::sigaction,
    oldact: *mut libc::sigaction,
) -> c_int {
    // SAFETY: same contract.
    unsafe { sigaction(signal, act, oldact) }
}

/// BSD `signal` as glibc implements it: the signal blocked during its handler, system calls
/// restarted unless `siginterrupt` said otherwise.
fn bsd_disposition(entry: &Emulated, signal: c_int, handler: Handler) -> Handler {
    if handler == SIG_ERR {
        set_errno(libc::EINVAL);
        return SIG_ERR;
    }
    let flags = if entry.interrupt.load(Relaxed) {
        0
    } else {
        libc::SA_RESTART
    };
    set_disposition(entry, handler, flags, bit(signal)).handler
}

/// `signal`.
///
/// # Safety
/// As glibc's `signal`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal(signal: c_int, handler: Handler) -> Handler {
    match table::emulated(signal) {
        Some(entry) => bsd_disposition(entry, signal, handler),
        // SAFETY: forwarding the caller's own arguments.
        None => unsafe { real::signal()(signal, handler) },
    }
}

/// `bsd_signal` (glibc's `signal` under another name).
///
/// # Safety
/// As glibc's `bsd_signal`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bsd_signal(signal: c_int, handler: Handler) -> Handler {
    match table::emulated(signal) {
        Some(entry) => bsd_disposition(entry, signal, handler),
        // SAFETY: forwarding the caller's own arguments.
        None => unsafe { real::bsd_signal()(signal, handler) },
    }
}

/// `ssignal` (in glibc, `signal` under another name).
///
/// # Safety
/// As glibc's `ssignal`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ssignal(signal: c_int, handler: Handler) -> Handler {
    match table::emulated(signal) {
        Some(entry) => bsd_disposition(entry, signal, handler),
        // SAFETY: forwarding the caller's own arguments.
        None => unsafe { real::ssignal()(signal, handler) },
    }
}

/// System V `signal` as glibc implements it: one-shot, not blocked during its handler,
/// system calls interrupted.
fn sysv_disposition(entry: &Emulated, handler: Handler) -> Handler {
    if handler == SIG_ERR {
        set_errno(libc::EINVAL);
        return SIG_ERR;
    }
    let flags = (libc::SA_RESETHAND | libc::SA_NODEFER | SA_INTERRUPT) & !libc::SA_RESTART;
    set_disposition(entry, handler, flags, 0).handler
}

/// `sysv_signal`.
///
/// # Safety
/// As glibc's `sysv_signal`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sysv_signal(signal: c_int, handler: Handler) -> Handler {
    match table::emulated(signal) {
        Some(entry) => sysv_disposition(entry, handler),
        // SAFETY: forwarding the caller's own arguments.
        None => unsafe { real::sysv_signal()(signal, handler) },
    }
}

/// `__sysv_signal`, glibc's other name for `sysv_signal`.
///
/// # Safety
/// As glibc's `sysv_signal`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __sysv_signal(signal: c_int, handler: Handler) -> Handler {
    // SAFETY: same contract.
    unsafe { sysv_signal(signal, handler) }
}

/// System V `sigset` as glibc implements it: `SIG_HOLD` blocks the signal (for real, like
/// every mask), anything else installs it with no flags and unblocks it; the result is
/// `SIG_HOLD` if it was blocked, else the old handler.
///
/// # Safety
/// As glibc's `sigset`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigset(signal: c_int, handler: Handler) -> Handler {
    let Some(entry) = table::emulated(signal) else {
        // SAFETY: forwarding the caller's own arguments.
        return unsafe { real::sigset()(signal, handler) };
    };
    let only = set_of(bit(signal));
    // SAFETY: an all-zero sigset_t is a valid out-parameter.
    let mut old_mask: libc::sigset_t = unsafe { core::mem::zeroed() };
    let how = if handler == SIG_HOLD {
        libc::SIG_BLOCK
    } else {
        libc::SIG_UNBLOCK
    };
    let old_action = if handler == SIG_HOLD {
        None
    } else {
        Some(set_disposition(entry, handler, 0, 0))
    };
    // SAFETY: valid sets; our own interposer, so that a block is counted like any other.
    if unsafe { sigprocmask(how, &only, &mut old_mask) } != 0 {
        return SIG_ERR;
    }
    if first_word(&old_mask) & bit(signal) != 0 {
        SIG_HOLD
    } else {
        old_action.unwrap_or_else(|| entry.program.load()).handler
    }
}

/// `sigignore`.
///
/// # Safety
/// As glibc's `sigignore`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigignore(signal: c_int) -> c_int {
    match table::emulated(signal) {
        Some(entry) => {
            set_disposition(entry, libc::SIG_IGN, 0, 0);
            0
        }
        // SAFETY: forwarding the caller's own argument.
        None => unsafe { real::sigignore()(signal) },
    }
}

/// `siginterrupt`: clears or sets `SA_RESTART` in the program's disposition, and remembers
/// the choice for later `signal` calls.
///
/// # Safety
/// As glibc's `siginterrupt`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn siginterrupt(signal: c_int, interrupt: c_int) -> c_int {
    let Some(entry) = table::emulated(signal) else {
        // SAFETY: forwarding the caller's own arguments.
        return unsafe { real::siginterrupt()(signal, interrupt) };
    };
    entry.interrupt.store(interrupt != 0, Relaxed);
    table::count_handler_set();
    entry.program.update(|mut action| {
        if interrupt != 0 {
            action.flags &= !libc::SA_RESTART;
        } else {
            action.flags |= libc::SA_RESTART;
        }
        action
    });
    0
}

/// Counts a mask change that blocks an emulated signal on the thread running `main`.
/// `requested` holds the emulated signals of the new set, read before the call.
fn note_mask_change(how: c_int, requested: u64, old: &libc::sigset_t) {
    if how == libc::SIG_UNBLOCK || requested & !first_word(old) == 0 {
        return;
    }
    // Only now the thread's identity (a system call).
    if table::on_main_thread() {
        table::count_blocked();
    }
}

/// `sigprocmask`: the real one, counted (see the module docs).
///
/// # Safety
/// As glibc's `sigprocmask`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigprocmask(
    how: c_int,
    set: *const libc::sigset_t,
    oldset: *mut libc::sigset_t,
) -> c_int {
    // SAFETY: per the contract.
    unsafe { counted_mask_change(real::sigprocmask(), how, set, oldset) }
}

/// `pthread_sigmask`: the real one, counted (see the module docs).
///
/// # Safety
/// As glibc's `pthread_sigmask`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_sigmask(
    how: c_int,
    set: *const libc::sigset_t,
    oldset: *mut libc::sigset_t,
) -> c_int {
    // SAFETY: per the contract.
    unsafe { counted_mask_change(real::pthread_sigmask(), how, set, oldset) }
}

/// A mask change through `real` (glibc's `sigprocmask` or `pthread_sigmask`, both 0 on
/// success), counted when it names an emulated signal.
///
/// # Safety
/// As the real function's: `set` null or valid, `oldset` null or valid for a write.
unsafe fn counted_mask_change(
    real: unsafe extern "C" fn(c_int, *const libc::sigset_t, *mut libc::sigset_t) -> c_int,
    how: c_int,
    set: *const libc::sigset_t,
    oldset: *mut libc::sigset_t,
) -> c_int {
    // SAFETY: per the contract, `set` is null or valid; read before the call, which may
    // overwrite it when it is also `oldset`.
    let requested = unsafe { set.as_ref() }.map_or(0, table::emulated_in);
    if requested == 0 {
        // SAFETY: forwarding the caller's own arguments.
        return unsafe { real(how, set, oldset) };
    }
    // SAFETY: an all-zero sigset_t is a valid out-parameter.
    let mut own_old: libc::sigset_t = unsafe { core::mem::zeroed() };
    let old_out = if oldset.is_null() {
        &raw mut own_old
    } else {
        oldset
    };
    // SAFETY: forwarding the caller's arguments, with an old-set buffer that is valid.
    let result = unsafe { real(how, set, old_out) };
    if result == 0 {
        // SAFETY: the call succeeded, so it filled `old_out`.
        note_mask_change(how, requested, unsafe { &*old_out });
    }
    result
}
