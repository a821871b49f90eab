//! The figures, one function each, and the list the program runs them from.
//!
//! To add a figure: write a function `fn(Scale) -> BenchResult<Vec<Figure>>` in the module
//! that fits (or a new one), and add it to [`ALL`] at the place it should run: figures that
//! leave memory behind (retired stacks) go late, so they do not slow down `fork_wait`.

mod baseline;
pub mod lifecycle;
mod memory;
mod preemption;
mod safepoint;

use crate::report::Figure;

/// Any error a figure can stop with (an inger error, an OS error, a broken expectation).
pub type BenchError = Box<dyn std::error::Error>;

/// The result of measuring something.
pub type BenchResult<T> = Result<T, BenchError>;

/// How many samples to take: `--quick` (under a minute on 2 shared cores) or a full run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Enough samples for stable medians; the whole program well under 60 s.
    Quick,
    /// More samples, for steadier tails (p99).
    Full,
}

impl Scale {
    /// `quick` for a quick run, `full` for a full one.
    pub fn pick<T>(self, quick: T, full: T) -> T {
        match self {
            Scale::Quick => quick,
            Scale::Full => full,
        }
    }
}

/// One entry of the benchmark program.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Name of the (first) figure it measures; `--only` selects by it.
    pub name: &'static str,
    /// Measures it.
    pub measure: fn(Scale) -> BenchResult<Vec<Figure>>,
}

const fn entry(name: &'static str, measure: fn(Scale) -> BenchResult<Vec<Figure>>) -> Entry {
    Entry { name, measure }
}

/// Every figure, in the order they run: baselines first, then inger's operations, then the
/// figures that leave memory behind, then the fork cost with that memory in place.
pub const ALL: &[Entry] = &[
    entry("direct_call", baseline::direct_call),
    entry("thread_spawn_join", baseline::thread_spawn_join),
    // Before inger maps any stack: every stack the process has had makes each later fork
    // slower (see `fork_wait_at_end`), so this is the fork cost of the process itself.
    entry("fork_wait", baseline::fork_wait),
    entry("context_switch", baseline::context_switch),
    entry("launch_complete", lifecycle::launch_complete),
    entry(
        "launch_complete_shared_tls",
        lifecycle::launch_complete_shared_tls,
    ),
    entry("pause_resume", lifecycle::pause_resume),
    entry(
        "pause_resume_shared_tls",
        lifecycle::pause_resume_shared_tls,
    ),
    entry("preempt_overshoot", preemption::preempt_overshoot),
    entry(
        "safepoint_check_depth10",
        safepoint::safepoint_check_depth10,
    ),
    entry(
        "safepoint_check_depth50",
        safepoint::safepoint_check_depth50,
    ),
    entry(
        "preempt_overshoot_depth50",
        safepoint::preempt_overshoot_depth50,
    ),
    entry("cancel_paused", lifecycle::cancel_paused),
    entry("rss_per_paused", memory::rss_per_paused),
    entry("fork_wait_at_end", baseline::fork_wait_at_end),
];

/// An error with a message, for a measurement whose premise broke (an endless loop that
/// completed, a child that exited badly).
pub fn broken(message: impl Into<String>) -> BenchError {
    message.into().into()
}
