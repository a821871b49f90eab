//! `exit`, `_exit` and `_Exit`, interposed so that the `--stats` report is printed when the
//! program ends by calling one of them, before any of its own exit handlers run (they may
//! close stderr). Each then hands over to glibc's function of the same name.
//!
//! glibc's own internal calls (from `__libc_start_main` after `main` returns, or from `exit`
//! to `_exit`) bind directly inside libc and never come here; the report is printed once
//! whatever path is taken.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicPtr, Ordering::Relaxed};

use crate::report;

type ExitFn = unsafe extern "C" fn(c_int) -> !;

static REAL_EXIT: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
static REAL_UNDERSCORE_EXIT: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());

/// Looks up glibc's functions ahead of time, so that `_exit` never calls `dlsym` (it may be
/// called from a signal handler). Called by the `__libc_start_main` hook.
pub(crate) fn resolve() {
    lookup(&REAL_EXIT, c"exit");
    lookup(&REAL_UNDERSCORE_EXIT, c"_exit");
}

fn lookup(slot: &AtomicPtr<c_void>, name: &core::ffi::CStr) -> *mut c_void {
    let known = slot.load(Relaxed);
    if !known.is_null() {
        return known;
    }
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name has no other precondition.
    let found = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    slot.store(found, Relaxed);
    found
}

/// Prints the report (once, if asked for), then calls glibc's `exit`.
///
/// # Safety
/// As glibc's `exit`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn exit(status: c_int) -> ! {
    report::print_once();
    let real = lookup(&REAL_EXIT, c"exit");
    if real.is_null() {
        exit_group(status);
    }
    // SAFETY: glibc's `exit` has this signature.
    let real = unsafe { core::mem::transmute::<*mut c_void, ExitFn>(real) };
    // SAFETY: forwarding the caller's own request.
    unsafe { real(status) }
}

/// Prints the report (once, if asked for), then calls glibc's `_exit`. Async-signal-safe once
/// [`resolve`] has run (before the program's `main`).
///
/// # Safety
/// As glibc's `_exit`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _exit(status: c_int) -> ! {
    report::print_once();
    let real = REAL_UNDERSCORE_EXIT.load(Relaxed);
    if real.is_null() {
        exit_group(status);
    }
    // SAFETY: glibc's `_exit` has this signature.
    let real = unsafe { core::mem::transmute::<*mut c_void, ExitFn>(real) };
    // SAFETY: forwarding the caller's own request.
    unsafe { real(status) }
}

/// `_Exit` is `_exit` under its C99 name.
///
/// # Safety
/// As glibc's `_Exit`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _Exit(status: c_int) -> ! {
    // SAFETY: same contract.
    unsafe { _exit(status) }
}

/// Ends the process without glibc (only if glibc's function could not be found).
fn exit_group(status: c_int) -> ! {
    loop {
        // SAFETY: exit_group takes the status and does not return.
        unsafe { libc::syscall(libc::SYS_exit_group, status) };
    }
}
