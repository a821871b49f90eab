//! Libsets: per-function copies of a named library (see `inger::Libset`).

use core::ffi::{c_char, c_int, c_void};
use std::ffi::CStr;

use inger_core::Libset;

use crate::boundary::guarded;
use crate::errors::{INGER_ENULL, INGER_OK, code_of};

/// The opaque handle of a libset, `inger_libset` in the header. Handles live for the
/// process (as libsets do) and are never freed.
pub struct inger_libset(Libset);

/// Counters of one libset, as in `struct inger_libset_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct inger_libset_stats {
    /// Copies loaded so far (they stay loaded).
    pub copies_loaded: u64,
    /// Copies held by functions right now.
    pub copies_in_use: u64,
    /// Copies renewed after a function was cancelled (or panicked) holding them.
    pub copies_renewed: u64,
    /// Times a function took a copy.
    pub copies_taken: u64,
    /// Times a routed call found every copy held and paused its function to wait.
    pub copy_waits: u64,
    /// Distinct functions of the library routed.
    pub routed_functions: u64,
    /// References rewritten by routing.
    pub routed_references: u64,
}

/// Opens the libset of `library` (a soname or a path) with at most `max_copies` copies and
/// stores its handle in `*out`.
///
/// # Safety
/// `library` must be NULL or a NUL-terminated string; `out` NULL or valid for writing a
/// pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn inger_libset_open(
    library: *const c_char,
    max_copies: usize,
    out: *mut *mut inger_libset,
) -> c_int {
    guarded(|| {
        if library.is_null() || out.is_null() {
            return INGER_ENULL;
        }
        // SAFETY: non-null and NUL-terminated (the caller's contract).
        let name = unsafe { CStr::from_ptr(library) }.to_string_lossy();
        match Libset::open(&name, max_copies) {
            Ok(libset) => {
                let handle = Box::into_raw(Box::new(inger_libset(libset)));
                // SAFETY: non-null and valid for writes (the caller's contract).
                unsafe { out.write(handle) };
                INGER_OK
            }
            Err(error) => code_of(&error),
        }
    })
}

/// The libset of a handle from `inger_libset_open`, or None for NULL.
///
/// # Safety
/// `libset` must be NULL or a handle from `inger_libset_open`.
unsafe fn handle<'a>(libset: *const inger_libset) -> Option<&'a Libset> {
    // SAFETY: handles are never freed (the caller's contract says it is one).
    unsafe { libset.as_ref() }.map(|handle| &handle.0)
}

/// Routes the calls the program and its other libraries make into the libset's library
/// through their PLT/GOT to the running function's copy.
///
/// # Safety
/// `libset` must be NULL or a handle from `inger_libset_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn inger_libset_route(libset: *mut inger_libset) -> c_int {
    guarded(|| {
        // SAFETY: the caller's contract.
        let Some(libset) = (unsafe { handle(libset) }) else {
            return INGER_ENULL;
        };
        match libset.route() {
            Ok(_) => INGER_OK,
            Err(error) => code_of(&error),
        }
    })
}

/// Stores in `*out` the address of `symbol` in the running function's copy of the library
/// (taking a copy if it holds none), or in the original outside any function.
///
/// # Safety
/// `libset` must be NULL or a handle from `inger_libset_open`; `symbol` NULL or a
/// NUL-terminated string; `out` NULL or valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn inger_libset_symbol(
    libset: *mut inger_libset,
    symbol: *const c_char,
    out: *mut *mut c_void,
) -> c_int {
    guarded(|| {
        // SAFETY: the caller's contract.
        let Some(libset) = (unsafe { handle(libset) }) else {
            return INGER_ENULL;
        };
        if symbol.is_null() || out.is_null() {
            return INGER_ENULL;
        }
        // SAFETY: non-null and NUL-terminated (the caller's contract).
        let name = unsafe { CStr::from_ptr(symbol) }.to_string_lossy();
        match libset.symbol(&name) {
            Ok(address) => {
                // SAFETY: non-null and valid for writes (the caller's contract).
                unsafe { out.write(address) };
                INGER_OK
            }
            Err(error) => code_of(&error),
        }
    })
}

/// Copies the libset's counters into `*out`.
///
/// # Safety
/// `libset` must be NULL or a handle from `inger_libset_open`; `out` NULL or valid for
/// writing a `struct inger_libset_stats`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn inger_libset_stats(
    libset: *const inger_libset,
    out: *mut inger_libset_stats,
) -> c_int {
    guarded(|| {
        // SAFETY: the caller's contract.
        let Some(libset) = (unsafe { handle(libset) }) else {
            return INGER_ENULL;
        };
        if out.is_null() {
            return INGER_ENULL;
        }
        let stats = libset.stats();
        let copy = inger_libset_stats {
            copies_loaded: stats.copies_loaded,
            copies_in_use: stats.copies_in_use,
            copies_renewed: stats.copies_renewed,
            copies_taken: stats.copies_taken,
            copy_waits: stats.copy_waits,
            routed_functions: stats.routed_functions,
            routed_references: stats.routed_references,
        };
        // SAFETY: non-null and valid for writes (the caller's contract).
        unsafe { out.write(copy) };
        INGER_OK
    })
}
