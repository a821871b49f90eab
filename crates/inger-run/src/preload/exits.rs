//! `exit`, `_exit` and `_Exit`, interposed so that the `--stats` report is printed when the
//! program ends by calling one of them, before any of its own exit handlers run (they may
//! close stderr). Each then hands over to glibc's function of the same name.
//!
//! glibc's own internal calls (from `__libc_start_main` after `main` returns, or from `exit`
//! to `_exit`) bind directly inside libc and never come here; the report is printed once
//! whatever path is taken.

use core::ffi::c_int;

use crate::{real, report};

/// Prints the report (once, if asked for), then calls glibc's `exit`.
///
/// # Safety
/// As glibc's `exit`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn exit(status: c_int) -> ! {
    report::print_once();
    // SAFETY: forwarding the caller's own request.
    unsafe { real::exit()(status) }
}

/// Prints the report (once, if asked for), then calls glibc's `_exit`. Async-signal-safe
/// (glibc's function was looked up when the library was loaded).
///
/// # Safety
/// As glibc's `_exit`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _exit(status: c_int) -> ! {
    report::print_once();
    // SAFETY: forwarding the caller's own request.
    unsafe { real::underscore_exit()(status) }
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
