//! What the `inger-run` command tells the preload library, through the environment.
//!
//! Compiled into both artifacts (`#[path]` module), so the two sides cannot disagree on a name.
//! The library removes every one of these variables (and its own `LD_PRELOAD` entry) before the
//! program's code runs, unless [`INHERIT`] is set, so the program sees the environment it
//! would have had without `inger-run` and its child processes run normally.

#![allow(
    dead_code,
    reason = "shared by the command and the library; each uses a subset"
)]

/// File name of the preload library.
pub(crate) const LIBRARY_FILE: &str = "libinger_preload.so";

/// The time slice, in nanoseconds (decimal).
pub(crate) const SLICE_NS: &str = "INGER_RUN_SLICE_NS";

/// `1`: slices are wall-clock time; otherwise (the default) they are `main`'s CPU time.
pub(crate) const WALL_SLICES: &str = "INGER_RUN_WALL_SLICES";

/// `1`: print the preemption counters to stderr at exit.
pub(crate) const STATS: &str = "INGER_RUN_STATS";

/// An absolute path: write the report there instead of stderr (implies [`STATS`]).
pub(crate) const STATS_FILE: &str = "INGER_RUN_STATS_FILE";

/// `1`: after the summed report, one line per process.
pub(crate) const STATS_PER_PROCESS: &str = "INGER_RUN_STATS_PER_PROCESS";

/// With [`INHERIT`] and [`STATS`]: the path of the ledger file in which every process under
/// inger keeps its counters, so that the top-level process prints one summed report (see
/// `ledger.rs`).
pub(crate) const LEDGER: &str = "INGER_RUN_LEDGER";

/// The process id of the program inger-run execs (the top of the tree).
pub(crate) const ROOT_PID: &str = "INGER_RUN_ROOT_PID";

/// The named program when it is a `#!` script (its path): the report says which interpreter
/// ran under inger. Removed from the environment even with [`INHERIT`]: it describes the
/// first program only.
pub(crate) const SCRIPT: &str = "INGER_RUN_SCRIPT";

/// `1`: leave the environment as it is, so that descendant processes run under inger too.
pub(crate) const INHERIT: &str = "INGER_RUN_INHERIT";

/// `1`: give `main` its own thread-local storage (inger's private TLS) instead of the main
/// thread's.
pub(crate) const PRIVATE_TLS: &str = "INGER_RUN_PRIVATE_TLS";

/// The value `LD_PRELOAD` had before `inger-run` added the library; absent when it was unset.
pub(crate) const SAVED_LD_PRELOAD: &str = "INGER_RUN_SAVED_LD_PRELOAD";

/// Every variable above, which the library removes from the environment unless [`INHERIT`]
/// (and then only [`SCRIPT`]).
pub(crate) const ALL: [&str; 11] = [
    SLICE_NS,
    WALL_SLICES,
    STATS,
    STATS_FILE,
    STATS_PER_PROCESS,
    LEDGER,
    ROOT_PID,
    SCRIPT,
    INHERIT,
    PRIVATE_TLS,
    SAVED_LD_PRELOAD,
];

/// Where the command looks for the library before its default places (a path).
pub(crate) const PRELOAD_PATH: &str = "INGER_RUN_PRELOAD";

/// The slice used when none is given.
pub(crate) const DEFAULT_SLICE_NS: u64 = 50_000;
