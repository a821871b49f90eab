//! The figures, one function each, and the list the program runs them from.
//!
//! To add a figure: write a function `fn(Scale) -> BenchResult<Vec<Figure>>` in the module
//! that fits (or a new one), and add it to [`ALL`] at the place it should run: figures that
//! leave memory behind (retired stacks) go late, so they do not slow down `fork_wait`.

mod baseline;
mod cancel;
mod floors;
mod libset;
mod lifecycle;
mod memory;
pub mod overshoot;
mod preemption;
mod safepoint;
pub mod workcheck;

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

/// Every figure, in the order they run: baselines and the machine's floors first, then the
/// check of the synthetic work, then inger's operations, then the figures that leave memory
/// behind, then the fork cost with that memory in place.
pub const ALL: &[Entry] = &[
    entry("direct_call", baseline::direct_call),
    entry("thread_spawn_join", baseline::thread_spawn_join),
    // Before inger maps any stack: every stack the process has had makes each later fork
    // slower (see `fork_wait_at_end`), so this is the fork cost of the process itself.
    entry("fork_wait", baseline::fork_wait),
    entry("context_switch", baseline::context_switch),
    entry("context_switch_tls", baseline::context_switch_tls),
    entry("panic_unwind", baseline::panic_unwind),
    entry("timer_floor", floors::timer_floor),
    entry("signal_cpu_cost", floors::signal_cpu_cost),
    entry("work_check", workcheck::work_check),
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
    entry("preempt_cpu_cost", preemption::preempt_cpu_cost),
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
    entry(overshoot::SPIN.row, |scale| {
        overshoot::measure(&overshoot::SPIN, scale)
    }),
    entry(overshoot::ALLOC.row, |scale| {
        overshoot::measure(&overshoot::ALLOC, scale)
    }),
    entry(overshoot::HASHMAP.row, |scale| {
        overshoot::measure(&overshoot::HASHMAP, scale)
    }),
    entry(overshoot::FORMAT.row, |scale| {
        overshoot::measure(&overshoot::FORMAT, scale)
    }),
    entry(overshoot::PRINT.row, |scale| {
        overshoot::measure(&overshoot::PRINT, scale)
    }),
    entry(overshoot::FILE_WRITE.row, |scale| {
        overshoot::measure(&overshoot::FILE_WRITE, scale)
    }),
    entry(overshoot::SORT_STRINGS.row, |scale| {
        overshoot::measure(&overshoot::SORT_STRINGS, scale)
    }),
    entry(overshoot::COPY_64MIB.row, |scale| {
        overshoot::measure(&overshoot::COPY_64MIB, scale)
    }),
    entry(overshoot::SERDE_JSON.row, |scale| {
        overshoot::measure(&overshoot::SERDE_JSON, scale)
    }),
    entry("cancel_paused", lifecycle::cancel_paused),
    entry(
        "cancel_paused_unwinding",
        lifecycle::cancel_paused_unwinding,
    ),
    entry("libset_call_overhead", libset::libset_call_overhead),
    entry("libset_first_use", libset::libset_first_use),
    entry("libset_renew", libset::libset_renew),
    entry("rss_per_paused", memory::rss_per_paused),
    entry("discard_cost", cancel::discard_cost),
    entry("fork_wait_at_end", baseline::fork_wait_at_end),
];

/// Entries a child process of the run measures (see [`crate::child`]); not run by themselves.
pub const CHILD_ONLY: &[Entry] = &[
    entry("work_check_samples", workcheck::work_check_samples),
    entry("discard_cost_samples", cancel::discard_cost_samples),
];

/// What a child process asked to measure `name` (see [`crate::child`]) runs: a workload's
/// row in this process, else the entry of that name. `None` for an unknown name.
pub fn run_in_child(name: &str, scale: Scale) -> Option<BenchResult<Vec<Figure>>> {
    if let Some(workload) = overshoot::by_row(name) {
        return Some(overshoot::measure_here(workload, scale));
    }
    find(name).map(|entry| (entry.measure)(scale))
}

/// The entry called `name`, in [`ALL`] or [`CHILD_ONLY`].
pub fn find(name: &str) -> Option<&'static Entry> {
    ALL.iter()
        .chain(CHILD_ONLY)
        .find(|entry| entry.name == name)
}

/// An error with a message, for a measurement whose premise broke (an endless loop that
/// completed, a child that exited badly).
pub fn broken(message: impl Into<String>) -> BenchError {
    message.into().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_unique_and_every_workload_runs() {
        let mut names: Vec<&str> = ALL.iter().chain(CHILD_ONLY).map(|e| e.name).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "duplicate entry names");
        for workload in overshoot::WORKLOADS {
            assert!(
                ALL.iter().any(|entry| entry.name == workload.row),
                "{} has no entry",
                workload.row
            );
        }
        assert!(find("work_check_samples").is_some());
        assert!(overshoot::by_row("preempt_overshoot_print").is_some());
        assert!(overshoot::by_row("print").is_none());
        assert!(find("nonexistent").is_none());
    }
}
