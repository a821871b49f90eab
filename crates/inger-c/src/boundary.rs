//! No Rust panic may unwind into C: every exported function runs its body through these.
//!
//! None of the C API's code is expected to panic; if it does (a bug), the panic message goes
//! to stderr through the default hook and the caller gets `INGER_EINTERNAL` (or the neutral
//! answer of a query) instead of undefined behaviour.

use core::ffi::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::errors::INGER_EINTERNAL;

/// Runs `body`, turning a panic into `INGER_EINTERNAL`.
pub(crate) fn guarded(body: impl FnOnce() -> c_int) -> c_int {
    guarded_or(INGER_EINTERNAL, body)
}

/// Runs `body`, turning a panic into `fallback`.
pub(crate) fn guarded_or<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    // AssertUnwindSafe: after a caught panic the C caller only receives the fallback; no
    // state observed half-updated by the panic is handed back to it.
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}
