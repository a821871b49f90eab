//! The figures, one function each, and the list the program runs them from.
//!
//! To add a figure: write a function `fn(Scale) -> BenchResult<Vec<Figure>>` in the module
//! that fits (or a new one), and add it to [`ALL`] at the place it should run: figures that
//! leave memory behind (retired stacks) go late, so they do not slow down `fork_wait`.

mod baseline;
mod lifecycle;
mod memory;
mod preemption;

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

/// Every figure, in the order they run: baselines first, then inger's operations, then the
/// figures that leave memory behind.
pub const ALL: &[Entry] = &[
    Entry {
        name: "direct_call",
        measure: baseline::direct_call,
    },
    Entry {
        name: "context_switch",
        measure: baseline::context_switch,
    },
    Entry {
        name: "thread_spawn_join",
        measure: baseline::thread_spawn_join,
    },
    Entry {
        name: "fork_wait",
        measure: baseline::fork_wait,
    },
    Entry {
        name: "launch_complete",
        measure: lifecycle::launch_complete,
    },
    Entry {
        name: "pause_resume",
        measure: lifecycle::pause_resume,
    },
    Entry {
        name: "preempt_overshoot",
        measure: preemption::preempt_overshoot,
    },
    Entry {
        name: "cancel_paused",
        measure: lifecycle::cancel_paused,
    },
    Entry {
        name: "rss_per_paused",
        measure: memory::rss_per_paused,
    },
];

/// An error with a message, for a measurement whose premise broke (an endless loop that
/// completed, a child that exited badly).
pub fn broken(message: impl Into<String>) -> BenchError {
    message.into().into()
}
