//! The one error type of the crate.

use std::fmt;

/// Everything that can go wrong when launching, resuming or configuring a preemptible function.
///
/// The C API maps each variant to a stable integer code (see [`Error::code`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The operating system refused memory for a stack (`mmap` failed with this `errno`).
    StackAllocation {
        /// The `errno` reported by `mmap` or `madvise`.
        errno: i32,
    },
    /// The timer signal is already handled by someone else in this process.
    SignalInUse {
        /// The signal number that inger wanted to use.
        signal: i32,
    },
    /// A system call needed to set up preemption failed.
    System {
        /// What was being attempted.
        call: &'static str,
        /// The `errno` it failed with.
        errno: i32,
    },
    /// A setting (from [`Config`](crate::Config) or an environment variable) is invalid.
    InvalidConfig(String),
    /// [`Config::install`](crate::Config::install) was called after the runtime had started.
    AlreadyInitialized,
    /// The function already finished (it completed, panicked or was cancelled): there is
    /// nothing left to resume.
    Finished,
    /// The continuation is running right now (a function tried to resume itself or one of
    /// its callers).
    AlreadyRunning,
    /// Preemptible functions cannot be launched or resumed from inside inger's own signal
    /// handler.
    InSignalHandler,
    /// The continuation was paused on another thread, and this process runs with shared
    /// thread-local storage (see [`capabilities`](crate::capabilities)), so it can only be
    /// resumed on the thread that launched it.
    WrongThread,
    /// The function was cancelled cooperatively and has unwound (see
    /// [`Continuation::cancel_cooperatively`](crate::Continuation::cancel_cooperatively)).
    Cancelled,
    /// The library named to [`Libset::open`](crate::Libset::open) is not loaded and the
    /// dynamic loader could not load it.
    LibraryNotFound {
        /// The name or path given.
        library: String,
        /// The loader's message.
        reason: String,
    },
    /// The libset's library defines no symbol of that name.
    SymbolNotFound {
        /// The library.
        library: String,
        /// The symbol asked for.
        symbol: String,
    },
    /// Every copy of the libset's library is held by another preemptible function, and the
    /// libset already has its maximum number of copies.
    CopyLimit {
        /// The library.
        library: String,
        /// The libset's maximum number of copies.
        max_copies: usize,
    },
    /// The library uses the initial-exec TLS model (`DF_STATIC_TLS`): every instance needs
    /// its own part of the static TLS area, which glibc sizes at start-up, so it cannot be
    /// given copies.
    InitialExecTls {
        /// The library.
        library: String,
    },
    /// A copy of the library could not be made (the in-memory file, the loader's refusal),
    /// or the library is one that cannot be copied (libc, the loader, the executable).
    CopyFailed {
        /// The library.
        library: String,
        /// What failed.
        reason: String,
    },
    /// Routing a libset's library would silently fail: another module uses the library's
    /// writable data or thread-local variables directly, which a function's copy cannot
    /// replace (its reads and writes would reach the original's, not the copy's).
    Unroutable {
        /// The library.
        library: String,
        /// The module that refers to it (`"the executable"` for the program).
        module: String,
        /// The symbol it refers to.
        symbol: String,
        /// What kind of reference it is.
        reason: &'static str,
    },
    /// Routing needs more stubs than exist: at most this many distinct functions of named
    /// libraries can be routed in one process.
    TooManyRoutes {
        /// The number of stubs.
        limit: usize,
    },
    /// The preemption signal's handler is no longer inger's: the program (or a library) reset
    /// it to its default action or installed another, so a timer expiry would kill the
    /// process or reach the wrong handler. No timer was armed; preemption stays off until
    /// inger's handler is back (a program that must reset every signal can run under
    /// `inger-run`, which emulates the signal for it, or pick another with `INGER_SIGNAL`).
    HandlerReplaced {
        /// The preemption signal.
        signal: i32,
    },
}

impl Error {
    /// A stable, positive integer identifying the kind of error, used by the C API.
    pub fn code(&self) -> i32 {
        match self {
            Error::StackAllocation { .. } => 1,
            Error::SignalInUse { .. } => 2,
            Error::System { .. } => 3,
            Error::InvalidConfig(_) => 4,
            Error::AlreadyInitialized => 5,
            Error::Finished => 6,
            Error::AlreadyRunning => 7,
            Error::InSignalHandler => 8,
            Error::WrongThread => 9,
            Error::Cancelled => 10,
            Error::HandlerReplaced { .. } => 11,
            Error::LibraryNotFound { .. } => 12,
            Error::SymbolNotFound { .. } => 13,
            Error::CopyLimit { .. } => 14,
            Error::InitialExecTls { .. } => 15,
            Error::CopyFailed { .. } => 16,
            Error::Unroutable { .. } => 17,
            Error::TooManyRoutes { .. } => 18,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::StackAllocation { errno } => write!(
                f,
                "could not allocate a stack for a preemptible function: {} (lower INGER_STACK_SIZE or free memory)",
                std::io::Error::from_raw_os_error(*errno)
            ),
            Error::SignalInUse { signal } => write!(
                f,
                "signal {signal} already has a handler installed by someone else; choose another \
                 real-time signal with INGER_SIGNAL (e.g. INGER_SIGNAL=SIGRTMAX-2)"
            ),
            Error::System { call, errno } => write!(
                f,
                "{call} failed: {}",
                std::io::Error::from_raw_os_error(*errno)
            ),
            Error::InvalidConfig(why) => write!(f, "invalid inger setting: {why}"),
            Error::AlreadyInitialized => write!(
                f,
                "inger's configuration can only be installed before the first launch"
            ),
            Error::Finished => write!(
                f,
                "the preemptible function already finished (completed, panicked or cancelled)"
            ),
            Error::AlreadyRunning => {
                write!(
                    f,
                    "the preemptible function is running and cannot be resumed now"
                )
            }
            Error::InSignalHandler => write!(
                f,
                "preemptible functions cannot be launched or resumed from a signal handler"
            ),
            Error::Cancelled => write!(
                f,
                "the preemptible function was cancelled cooperatively and unwound"
            ),
            Error::HandlerReplaced { signal } => write!(
                f,
                "the handler of inger's preemption signal {signal} was replaced or reset (by \
                 signal() or sigaction()), so arming its timer would kill the process; leave \
                 that signal alone, or choose another one with INGER_SIGNAL"
            ),
            Error::WrongThread => write!(
                f,
                "this continuation can only be resumed on the thread that launched it: private \
                 thread-local storage is unavailable (see inger::capabilities)"
            ),
            Error::LibraryNotFound { library, reason } => {
                write!(f, "library {library} could not be loaded: {reason}")
            }
            Error::SymbolNotFound { library, symbol } => {
                write!(f, "library {library} defines no symbol {symbol}")
            }
            Error::CopyLimit {
                library,
                max_copies,
            } => write!(
                f,
                "all {max_copies} copies of {library} are held by other preemptible functions \
                 (raise the libset's maximum, or let some of them finish)"
            ),
            Error::InitialExecTls { library } => write!(
                f,
                "{library} uses initial-exec thread-local storage (DF_STATIC_TLS): its copies \
                 would each need static TLS space, which glibc reserves at start-up, so it \
                 cannot be given to a libset"
            ),
            Error::CopyFailed { library, reason } => {
                write!(f, "could not make a copy of {library}: {reason}")
            }
            Error::Unroutable {
                library,
                module,
                symbol,
                reason,
            } => write!(
                f,
                "calls into {library} cannot be routed: {module} uses {symbol}, {reason}, \
                 directly, and a preemptible function's copy of the library would not see it \
                 (give the library an accessor function, or use Libset::symbol)"
            ),
            Error::TooManyRoutes { limit } => write!(
                f,
                "routing needs more than {limit} stubs: at most {limit} distinct functions of \
                 named libraries can be routed in one process"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// The `errno` of the last failed libc call on this thread.
pub(crate) fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}
