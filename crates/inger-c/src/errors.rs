//! Error codes of the C API and their descriptions (`inger_strerror`).
//!
//! Codes 1 to 18 are [`inger_core::Error::code`] values, passed through unchanged; codes from
//! 64 up belong to the C API alone. `include/libinger.h` repeats every constant as a
//! `#define`; a test fails if the two drift apart.

use core::ffi::{c_char, c_int};

use inger_core::Error;

/// Success.
pub const INGER_OK: c_int = 0;
/// No stack could be mapped for the function ([`Error::StackAllocation`]).
pub const INGER_ESTACK: c_int = 1;
/// Another handler owns inger's preemption signal ([`Error::SignalInUse`]).
pub const INGER_ESIGNALINUSE: c_int = 2;
/// A system call needed for preemption failed ([`Error::System`]).
pub const INGER_ESYSTEM: c_int = 3;
/// An `INGER_*` environment variable is invalid ([`Error::InvalidConfig`]).
pub const INGER_ECONFIG: c_int = 4;
/// Settings were installed after the runtime started ([`Error::AlreadyInitialized`]).
pub const INGER_EINITIALIZED: c_int = 5;
/// The function already finished: nothing to resume ([`Error::Finished`]).
pub const INGER_EFINISHED: c_int = 6;
/// The function is running right now: it (or something it called) tried to resume or cancel
/// itself or a caller ([`Error::AlreadyRunning`]).
pub const INGER_ERUNNING: c_int = 7;
/// Called from inside a signal handler ([`Error::InSignalHandler`]).
pub const INGER_EINHANDLER: c_int = 8;
/// Resumed on another thread than the launching one while thread-local storage is shared
/// ([`Error::WrongThread`]).
pub const INGER_EWRONGTHREAD: c_int = 9;
/// The function was cancelled cooperatively and unwound ([`Error::Cancelled`]; the C API has
/// no cooperative cancellation yet, so only Rust callers sharing a handle see it).
pub const INGER_ECANCELLED: c_int = 10;
/// The preemption signal's handler was reset or replaced (`signal`/`sigaction` on it), so
/// arming the timer would kill the process; nothing was run ([`Error::HandlerReplaced`]).
pub const INGER_EHANDLER: c_int = 11;
/// The library named to `inger_libset_open` could not be loaded ([`Error::LibraryNotFound`]).
pub const INGER_ELIBNOTFOUND: c_int = 12;
/// The libset's library defines no such symbol ([`Error::SymbolNotFound`]).
pub const INGER_ESYMBOL: c_int = 13;
/// Every copy of the library is held by another function ([`Error::CopyLimit`]).
pub const INGER_ECOPYLIMIT: c_int = 14;
/// The library uses initial-exec TLS and cannot be copied ([`Error::InitialExecTls`]).
pub const INGER_ESTATICTLS: c_int = 15;
/// A copy of the library could not be made ([`Error::CopyFailed`]).
pub const INGER_ECOPY: c_int = 16;
/// Routing would silently fail: another module uses the library's data directly
/// ([`Error::Unroutable`]).
pub const INGER_EUNROUTABLE: c_int = 17;
/// Every routing stub is taken ([`Error::TooManyRoutes`]).
pub const INGER_EROUTES: c_int = 18;
/// A required pointer argument was NULL.
pub const INGER_ENULL: c_int = 64;
/// The handle was not made by `inger_launch`, or was already cancelled (best effort).
pub const INGER_EBADHANDLE: c_int = 65;
/// A bug in inger: a Rust panic was caught at the C boundary (the message went to stderr).
pub const INGER_EINTERNAL: c_int = 66;

/// The code of a core error. Codes the C API does not know yet pass through unchanged
/// (`inger_strerror` then says so).
pub(crate) fn code_of(error: &Error) -> c_int {
    error.code()
}

/// The description of `code`, NUL-terminated.
fn describe(code: c_int) -> &'static [u8] {
    match code {
        INGER_OK => b"success\0",
        INGER_ESTACK => b"could not allocate a stack for a preemptible function (lower INGER_STACK_SIZE or free memory)\0",
        INGER_ESIGNALINUSE => b"inger's preemption signal already has another handler (choose another one with INGER_SIGNAL)\0",
        INGER_ESYSTEM => b"a system call needed for preemption failed\0",
        INGER_ECONFIG => b"invalid inger setting (check the INGER_* environment variables)\0",
        INGER_EINITIALIZED => b"inger's settings can only be installed before the first launch\0",
        INGER_EFINISHED => b"the preemptible function already finished: there is nothing to resume\0",
        INGER_ERUNNING => b"the preemptible function is running or in use by another call (it cannot resume or cancel itself)\0",
        INGER_EINHANDLER => b"preemptible functions cannot be launched, resumed or cancelled from a signal handler\0",
        INGER_EWRONGTHREAD => b"this function can only be resumed on the thread that launched it: private thread-local storage is unavailable (see inger_capabilities)\0",
        INGER_ECANCELLED => b"the preemptible function was cancelled cooperatively and unwound\0",
        INGER_EHANDLER => b"the handler of inger's preemption signal was reset or replaced, so arming its timer would kill the process (leave that signal alone or choose another with INGER_SIGNAL)\0",
        INGER_ELIBNOTFOUND => b"the library given to inger_libset_open could not be found or loaded\0",
        INGER_ESYMBOL => b"the libset's library defines no symbol of that name\0",
        INGER_ECOPYLIMIT => b"every copy of the libset's library is held by another preemptible function (raise its maximum)\0",
        INGER_ESTATICTLS => b"the library uses initial-exec thread-local storage (DF_STATIC_TLS), so it cannot be given copies\0",
        INGER_ECOPY => b"a copy of the library could not be made, or it is one that cannot be copied (libc, the loader)\0",
        INGER_EUNROUTABLE => b"calls into the library cannot be routed: another module uses its data or thread-local variables directly\0",
        INGER_EROUTES => b"every libset routing stub is taken: too many distinct library functions routed\0",
        INGER_ENULL => b"a required pointer argument was NULL\0",
        INGER_EBADHANDLE => b"not a live handle from inger_launch (already cancelled?)\0",
        INGER_EINTERNAL => b"internal error in inger (a bug: please report it with the message printed on stderr)\0",
        _ => b"unknown inger error code\0",
    }
}

/// Describes an error code returned by this API. Never NULL; the string is static.
#[unsafe(no_mangle)]
pub extern "C" fn inger_strerror(code: c_int) -> *const c_char {
    describe(code).as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_codes_match_the_constants() {
        let pairs = [
            (Error::StackAllocation { errno: 12 }, INGER_ESTACK),
            (Error::SignalInUse { signal: 60 }, INGER_ESIGNALINUSE),
            (
                Error::System {
                    call: "timer_create",
                    errno: 22,
                },
                INGER_ESYSTEM,
            ),
            (Error::InvalidConfig(String::from("x")), INGER_ECONFIG),
            (Error::AlreadyInitialized, INGER_EINITIALIZED),
            (Error::Finished, INGER_EFINISHED),
            (Error::AlreadyRunning, INGER_ERUNNING),
            (Error::InSignalHandler, INGER_EINHANDLER),
            (Error::WrongThread, INGER_EWRONGTHREAD),
            (Error::Cancelled, INGER_ECANCELLED),
            (Error::HandlerReplaced { signal: 60 }, INGER_EHANDLER),
            (
                Error::LibraryNotFound {
                    library: String::from("x"),
                    reason: String::from("y"),
                },
                INGER_ELIBNOTFOUND,
            ),
            (
                Error::SymbolNotFound {
                    library: String::from("x"),
                    symbol: String::from("y"),
                },
                INGER_ESYMBOL,
            ),
            (
                Error::CopyLimit {
                    library: String::from("x"),
                    max_copies: 1,
                },
                INGER_ECOPYLIMIT,
            ),
            (
                Error::InitialExecTls {
                    library: String::from("x"),
                },
                INGER_ESTATICTLS,
            ),
            (
                Error::CopyFailed {
                    library: String::from("x"),
                    reason: String::from("y"),
                },
                INGER_ECOPY,
            ),
            (
                Error::Unroutable {
                    library: String::from("x"),
                    module: String::from("y"),
                    symbol: String::from("z"),
                    reason: "r",
                },
                INGER_EUNROUTABLE,
            ),
            (Error::TooManyRoutes { limit: 1 }, INGER_EROUTES),
        ];
        for (error, constant) in pairs {
            assert_eq!(code_of(&error), constant, "{error:?}");
        }
    }

    #[test]
    fn every_known_code_has_its_own_description() {
        let unknown = describe(-1);
        let codes = [
            INGER_OK,
            INGER_ESTACK,
            INGER_ESIGNALINUSE,
            INGER_ESYSTEM,
            INGER_ECONFIG,
            INGER_EINITIALIZED,
            INGER_EFINISHED,
            INGER_ERUNNING,
            INGER_EINHANDLER,
            INGER_EWRONGTHREAD,
            INGER_ECANCELLED,
            INGER_EHANDLER,
            INGER_ELIBNOTFOUND,
            INGER_ESYMBOL,
            INGER_ECOPYLIMIT,
            INGER_ESTATICTLS,
            INGER_ECOPY,
            INGER_EUNROUTABLE,
            INGER_EROUTES,
            INGER_ENULL,
            INGER_EBADHANDLE,
            INGER_EINTERNAL,
        ];
        let mut seen = std::collections::HashSet::new();
        for code in codes {
            let text = describe(code);
            assert_ne!(text, unknown, "code {code}");
            assert_eq!(text.iter().filter(|&&b| b == 0).count(), 1, "code {code}");
            assert_eq!(text.last(), Some(&0));
            assert!(seen.insert(text), "code {code} shares its description");
        }
    }
}
