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

/// `1`: print the preemption counters to stderr at exit.
pub(crate) const STATS: &str = "INGER_RUN_STATS";

/// `1`: leave the environment as it is, so that descendant processes run under inger too.
pub(crate) const INHERIT: &str = "INGER_RUN_INHERIT";

/// `1`: give `main` its own thread-local storage (inger's private TLS) instead of the main
/// thread's.
pub(crate) const PRIVATE_TLS: &str = "INGER_RUN_PRIVATE_TLS";

/// The value `LD_PRELOAD` had before `inger-run` added the library; absent when it was unset.
pub(crate) const SAVED_LD_PRELOAD: &str = "INGER_RUN_SAVED_LD_PRELOAD";

/// Where the command looks for the library before its default places (a path).
pub(crate) const PRELOAD_PATH: &str = "INGER_RUN_PRELOAD";

/// The slice used when none is given.
pub(crate) const DEFAULT_SLICE_NS: u64 = 50_000;
