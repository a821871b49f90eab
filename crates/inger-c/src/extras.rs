//! The rest of the API: cooperative pause, queries, deferred preemption and counters.

use core::ffi::{c_int, c_void};

use crate::boundary::{guarded, guarded_or};
use crate::errors::{INGER_ENULL, INGER_OK};

/// Returns control at once to whoever launched or resumed the calling preemptible function
/// (which then sees `inger_yielded` true). Outside a preemptible function, does nothing.
#[unsafe(no_mangle)]
pub extern "C" fn inger_pause() {
    guarded_or((), inger_core::pause)
}

/// Whether the caller runs inside a preemptible function.
#[unsafe(no_mangle)]
pub extern "C" fn inger_in_preemptible() -> bool {
    guarded_or(false, inger_core::in_preemptible)
}

/// Calls `function(argument)` with preemption deferred: a budget that expires meanwhile pauses
/// the calling preemptible function as soon as `function` returns. Outside a preemptible
/// function it just calls `function`. Returns `INGER_ENULL` for a NULL `function`.
///
/// # Safety
/// `function(argument)` must be safe to call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn inger_nopreempt(
    function: Option<unsafe extern "C" fn(*mut c_void)>,
    argument: *mut c_void,
) -> c_int {
    guarded(|| {
        let Some(function) = function else {
            return INGER_ENULL;
        };
        // SAFETY: the caller's contract; an unwinding C function aborts the process rather
        // than unwinding through Rust (`extern "C"`).
        inger_core::nopreempt(|| unsafe { function(argument) });
        INGER_OK
    })
}

/// Process-wide counters of the preemption machinery, as in `struct inger_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct inger_stats {
    /// Functions paused because a deadline passed.
    pub preemptions: u64,
    /// Cooperative pauses (`inger_pause`).
    pub yields: u64,
    /// Expiries deferred because the function was in a no-preemption section or in inger.
    pub deferred_nopreempt: u64,
    /// Expiries deferred because the function was inside a non-preemptible library.
    pub deferred_library: u64,
    /// Timer re-arms after a deferral.
    pub retries: u64,
    /// Longest time from a deadline to the pause it caused, in nanoseconds.
    pub longest_deferral_ns: u64,
}

/// Copies the process-wide preemption counters into `*out`. Returns `INGER_ENULL` for NULL.
///
/// # Safety
/// `out` must be NULL or valid for writing a `struct inger_stats`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn inger_stats(out: *mut inger_stats) -> c_int {
    guarded(|| {
        if out.is_null() {
            return INGER_ENULL;
        }
        let stats = inger_core::stats();
        let copy = inger_stats {
            preemptions: stats.preemptions,
            yields: stats.yields,
            deferred_nopreempt: stats.deferred_nopreempt,
            deferred_library: stats.deferred_library,
            retries: stats.retries,
            longest_deferral_ns: stats.longest_deferral_ns,
        };
        // SAFETY: non-null (checked) and valid for writes (the caller's contract).
        unsafe { out.write_unaligned(copy) };
        INGER_OK
    })
}

/// What this process's inger can do, as in `struct inger_capabilities`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct inger_capabilities {
    /// Each function has its own thread-local storage, and a paused function may be resumed
    /// on any thread. False in the fallback (glibc internals not found, or
    /// `INGER_SHARED_TLS=1`): thread-locals except `errno` are shared with the caller, and a
    /// function can be resumed only on the thread that launched it.
    pub private_tls: bool,
    /// The fs base is switched with `wrfsbase` rather than a system call.
    pub fast_tls_switch: bool,
    /// Timer preemption is on (false under `INGER_PREEMPT=0`).
    pub preemption: bool,
}

/// Fills `*out` with what this process's inger can do. Returns `INGER_ENULL` for NULL.
///
/// # Safety
/// `out` must be NULL or valid for writing a `struct inger_capabilities`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn inger_capabilities(out: *mut inger_capabilities) -> c_int {
    guarded(|| {
        if out.is_null() {
            return INGER_ENULL;
        }
        let capabilities = inger_core::capabilities();
        let copy = inger_capabilities {
            private_tls: capabilities.private_tls,
            fast_tls_switch: capabilities.fast_tls_switch,
            preemption: capabilities.preemption,
        };
        // SAFETY: non-null (checked) and valid for writes (the caller's contract).
        unsafe { out.write_unaligned(copy) };
        INGER_OK
    })
}
