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
        }
    }
}

impl std::error::Error for Error {}

/// The `errno` of the last failed libc call on this thread.
pub(crate) fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}
