//! The library's settings: read from the environment the command prepared, then removed from
//! it; and the inger configuration derived from them.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

use crate::protocol;

/// What the command asked for.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Budget of each run of `main` before it is preempted.
    pub(crate) slice: Duration,
    /// The clock `slice` is measured on: `main`'s CPU time unless the command asked for
    /// wall-clock slices.
    pub(crate) clock: inger::Clock,
    /// Print the counters at exit.
    pub(crate) stats: bool,
    /// Write the report to this file instead of stderr.
    pub(crate) stats_file: Option<CString>,
    /// One report line per process after the summed report.
    pub(crate) per_process: bool,
    /// Leave the environment alone, so child processes run under inger too.
    pub(crate) inherit: bool,
    /// Give `main` a private TLS block rather than the main thread's.
    pub(crate) private_tls: bool,
    /// The ledger shared by the processes of the run (with `inherit` and `stats`).
    pub(crate) ledger: Option<CString>,
    /// The pid of the program inger-run ran (0 if unknown).
    pub(crate) root_pid: i32,
    /// The named program, when it was a `#!` script this process interprets.
    pub(crate) script: Option<CString>,
}

impl Settings {
    /// The budget of each run of `main`.
    pub(crate) fn budget(&self) -> inger::Budget {
        inger::Budget::wall(self.slice).on(self.clock)
    }

    /// Reads the settings; an error message for a malformed value.
    pub(crate) fn from_env() -> Result<Settings, String> {
        let slice_ns = match std::env::var(protocol::SLICE_NS) {
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(ns) if ns > 0 => ns,
                _ => {
                    return Err(format!(
                        "{}={text:?} is not a positive number of nanoseconds",
                        protocol::SLICE_NS
                    ));
                }
            },
            Err(_) => protocol::DEFAULT_SLICE_NS,
        };
        let stats_file = text(protocol::STATS_FILE);
        Ok(Settings {
            slice: Duration::from_nanos(slice_ns),
            clock: if flag(protocol::WALL_SLICES) {
                inger::Clock::Wall
            } else {
                inger::Clock::Cpu
            },
            stats: flag(protocol::STATS) || stats_file.is_some(),
            stats_file,
            per_process: flag(protocol::STATS_PER_PROCESS),
            inherit: flag(protocol::INHERIT),
            private_tls: flag(protocol::PRIVATE_TLS),
            ledger: text(protocol::LEDGER),
            root_pid: std::env::var(protocol::ROOT_PID)
                .ok()
                .and_then(|pid| pid.parse().ok())
                .unwrap_or(0),
            script: text(protocol::SCRIPT),
        })
    }
}

fn flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|value| value == OsStr::new("1"))
}

/// A non-empty variable as a C string.
fn text(name: &str) -> Option<CString> {
    let value = std::env::var_os(name).filter(|value| !value.is_empty())?;
    CString::new(value.into_vec()).ok()
}

/// Gives the environment back the shape it had before `inger-run`: `LD_PRELOAD` as it was
/// (or unset) and none of the `INGER_RUN_*` variables.
///
/// glibc edits the `environ` array in place for both calls used here (an existing variable
/// is replaced in its slot, a removed one shifts the rest down), so the `envp` glibc later
/// passes to `main` sees the result too.
///
/// # Safety
/// No other thread may read or write the environment meanwhile.
pub(crate) unsafe fn restore_environment() {
    let saved = std::env::var_os(protocol::SAVED_LD_PRELOAD);
    // SAFETY: per the contract, nothing else touches the environment now.
    unsafe {
        match saved {
            Some(value) => std::env::set_var("LD_PRELOAD", value),
            None => std::env::remove_var("LD_PRELOAD"),
        }
        for name in protocol::ALL {
            std::env::remove_var(name);
        }
    }
}

/// Removes what describes this process alone ([`protocol::SCRIPT`]), when the rest of the
/// environment stays for the descendants.
///
/// # Safety
/// No other thread may read or write the environment meanwhile.
pub(crate) unsafe fn remove_own_variables() {
    // SAFETY: per the contract, nothing else touches the environment now.
    unsafe { std::env::remove_var(protocol::SCRIPT) };
}

/// Settles inger's process-wide configuration before the first launch: the `INGER_*`
/// variables as usual, except that the stack defaults to the main thread's stack limit, so
/// `main` has the room it would have had, and that `main` shares the main thread's
/// thread-local storage unless `private_tls` (whatever `INGER_SHARED_TLS` says).
///
/// Why shared by default: `main` *is* the main thread's code, and the only other code on that
/// thread (the loop that resumes it) touches no thread-local state of the program, so sharing
/// is exact, whereas a private block makes `pthread_self()` and other per-thread identities
/// differ between `main` and the program's exit handlers. inger settles the mode with its
/// settings, installed here ([`inger::Config::private_tls`]).
///
/// # Safety
/// No other thread may read or write the environment meanwhile.
pub(crate) unsafe fn configure_inger(private_tls: bool) -> Result<(), inger::Error> {
    let mut config = inger::Config::from_env()?.private_tls(private_tls);
    if std::env::var_os("INGER_STACK_SIZE").is_none() {
        config = config.stack_size(main_stack_size());
    }
    match config.install() {
        // Someone (a constructor of the program) launched a function already: their
        // settings stay.
        Ok(()) | Err(inger::Error::AlreadyInitialized) => {}
        Err(error) => return Err(error),
    }
    // Fixes the TLS mode for the rest of the process.
    let _ = inger::capabilities();
    Ok(())
}

/// Smallest and largest stack derived from the limit, and the one used when it is unlimited.
const MIN_STACK: u64 = 2 << 20;
const MAX_STACK: u64 = 1 << 30;
const UNLIMITED_STACK: u64 = 256 << 20;

/// The soft `RLIMIT_STACK`, clamped to a sensible range.
fn main_stack_size() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid out-parameter.
    let bytes = if unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut limit) } != 0 {
        MIN_STACK
    } else if limit.rlim_cur == libc::RLIM_INFINITY {
        UNLIMITED_STACK
    } else {
        limit.rlim_cur.clamp(MIN_STACK, MAX_STACK)
    };
    usize::try_from(bytes).unwrap_or(usize::MAX)
}
