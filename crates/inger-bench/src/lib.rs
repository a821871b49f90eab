//! Timing, statistics and reporting for inger's benchmark programs (`inger-bench`, `hol`),
//! and the figures they measure.
//!
//! - [`stats::Samples`]: median and percentiles of a set of measurements;
//! - [`timing`]: batched timing of short operations, sampling with untimed set-up;
//! - [`work`]: synthetic CPU work whose speed does not depend on stack or heap placement;
//! - [`bare`]: a bare POSIX timer and signal handler, the machine's floor for preemption;
//! - [`report`]: figures, rows (`<name> <median> <p90> <p99> <unit>`), ratios, floors,
//!   PASS/MISS targets;
//! - [`figures`]: one function per figure and the list the program runs ([`figures::ALL`]);
//! - [`targets`]: the ratios printed, the floors, the validity checks and the targets;
//! - [`output`]: the summary after the table and the `--json` document;
//! - [`child`]: figures measured by a child process of the same run;
//! - [`machine`]: the CPU model and the rest of a run's header;
//! - [`procfs`]: resident set, page-table and address-space sizes of this process.

pub mod bare;
pub mod child;
pub mod figures;
pub mod machine;
pub mod output;
pub mod procfs;
pub mod report;
pub mod stats;
pub mod targets;
pub mod timing;
pub mod work;
