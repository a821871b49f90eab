//! `none` and `tokio-timeout`: the work runs directly on the async worker thread. Its CPU is
//! measured around the call, so the metrics show how far past the budget it went.

use crate::budget::{Budget, thread_cpu_time};
use crate::metrics::Metrics;
use crate::work::Job;

use super::{Outcome, guarded};

/// Runs `job` to the end on this thread and charges its CPU.
pub(super) fn run(job: Job, budget: Budget, metrics: &Metrics) -> Outcome {
    let kind = job.kind;
    let before = thread_cpu_time();
    let outcome = guarded(job);
    let cpu = thread_cpu_time().saturating_sub(before);
    metrics.charge_work(kind, cpu);
    metrics.charge_after_deadline(cpu.saturating_sub(budget.cpu));
    outcome
}
