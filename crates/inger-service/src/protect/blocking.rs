//! `blocking-timeout`: the work runs on tokio's blocking pool and the request awaits it with a
//! timeout. At the deadline the client gets its over-budget answer, but the thread cannot be
//! stopped: it runs the work to the end and its result is dropped. The CPU it burns after the
//! deadline is estimated when it finishes, from its CPU clock: its total CPU minus the wall
//! time it had run by the deadline (a lower bound, since it cannot have used more CPU than
//! that before the deadline).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::budget::{Budget, thread_cpu_time};
use crate::metrics::Metrics;
use crate::work::Job;

use super::{Outcome, Stop, guarded};

/// What the request and its blocking thread tell each other.
#[derive(Debug, Default)]
struct Shared {
    /// When the thread started the work.
    started: Option<Instant>,
    /// Set by the thread when it is done.
    finished: bool,
    /// Set by the request at its deadline, when it stops waiting.
    abandoned_at: Option<Instant>,
}

/// Runs `job` on the blocking pool, waiting at most the budget (as wall-clock time).
pub(super) async fn run(job: Job, budget: Budget, metrics: &Arc<Metrics>) -> Outcome {
    let kind = job.kind;
    let shared = Arc::new(Mutex::new(Shared::default()));
    let thread_shared = shared.clone();
    let thread_metrics = metrics.clone();
    let mut handle = tokio::task::spawn_blocking(move || {
        let before = thread_cpu_time();
        lock(&thread_shared).started = Some(Instant::now());
        let outcome = guarded(job);
        let cpu = thread_cpu_time().saturating_sub(before);
        thread_metrics.charge_work(kind, cpu);
        let mut state = lock(&thread_shared);
        state.finished = true;
        if let (Some(started), Some(deadline)) = (state.started, state.abandoned_at) {
            let ran_by_deadline = deadline.saturating_duration_since(started);
            thread_metrics.charge_after_deadline(cpu.saturating_sub(ran_by_deadline));
            thread_metrics.abandoned_finished();
        }
        outcome
    });
    match tokio::time::timeout(budget.cpu, &mut handle).await {
        Ok(joined) => joined_outcome(joined),
        Err(_elapsed) => {
            let finished_meanwhile = {
                let mut state = lock(&shared);
                if !state.finished {
                    state.abandoned_at = Some(Instant::now());
                    metrics.abandoned_started();
                }
                state.finished
            };
            if finished_meanwhile {
                return joined_outcome(handle.await);
            }
            metrics.count_stop(kind, Stop::Abandoned);
            Outcome::OverBudget
        }
    }
}

fn joined_outcome(joined: Result<Outcome, tokio::task::JoinError>) -> Outcome {
    joined.unwrap_or_else(|error| Outcome::Failed(format!("the blocking task failed: {error}")))
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}
