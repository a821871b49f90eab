//! Timing, statistics and reporting for inger's benchmark program (`inger-bench`), and the
//! figures it measures.
//!
//! - [`stats::Samples`]: median and percentiles of a set of measurements;
//! - [`timing`]: batched timing of short operations, sampling with untimed set-up;
//! - [`report`]: figures, rows (`<name> <median> <p99> <unit>`), ratios, PASS/MISS targets;
//! - [`figures`]: one function per figure and the list the program runs ([`figures::ALL`]);
//! - [`targets`]: the ratios printed and the targets checked;
//! - [`procfs`]: resident set and page-table sizes of this process.

pub mod figures;
pub mod procfs;
pub mod report;
pub mod stats;
pub mod targets;
pub mod timing;
