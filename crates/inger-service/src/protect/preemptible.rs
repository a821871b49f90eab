//! `inger`: the work runs as a preemptible function on the async worker thread, one slice at a
//! time. Between slices the request yields the thread (`tokio::task::yield_now`), so other
//! requests are served while a long one waits for its next slice; the paused function may be
//! resumed on another worker thread. When its CPU budget is spent it is cancelled
//! cooperatively: it unwinds from its next cancellation point within the grace budget,
//! running its destructors (its memory is freed). One that reaches no cancellation point in
//! time is discarded.

use std::time::Duration;

use inger::{Continuation, Linger};

use crate::budget::{Budget, CpuAccount};
use crate::metrics::Metrics;
use crate::work::Job;

use super::{Outcome, Stop, guarded};

/// Runs `job` as a preemptible function within `budget`.
pub(super) async fn run(job: Job, budget: Budget, metrics: &Metrics) -> Outcome {
    let kind = job.kind;
    let mut account = CpuAccount::new(budget);
    let first = account.next_slice().unwrap_or(Duration::ZERO);
    // The closure owns its input ('static), so the function may be cancelled or discarded
    // without anything it borrows going away under it.
    let launched = account.charge(|| inger::launch(move || guarded(job), first));
    let mut linger = match launched {
        Ok(linger) => linger,
        Err(error) => return Outcome::Failed(format!("inger::launch: {error}")),
    };
    let outcome = loop {
        let paused = match linger {
            Linger::Completion(outcome) => break outcome,
            Linger::Continuation(paused) => paused,
        };
        let Some(slice) = account.next_slice() else {
            let at_budget = account.used();
            let stop = cancel(paused, &mut account);
            metrics.count_stop(kind, stop);
            if log_enabled() {
                eprintln!(
                    "inger-service: {} over budget after {} slices: {at_budget:?} of CPU at the budget, {:?} after cancelling; {}",
                    kind.name(),
                    account.slices(),
                    account.used(),
                    stop.name()
                );
            }
            break Outcome::OverBudget;
        };
        tokio::task::yield_now().await;
        let before = account.used();
        linger = match account.charge(|| paused.resume(slice)) {
            Ok(linger) => linger,
            Err(error) => break Outcome::Failed(format!("inger resume: {error}")),
        };
        let took = account.used() - before;
        if log_enabled() && took > 10 * slice && took > Duration::from_millis(1) {
            eprintln!(
                "inger-service: {} slice of {slice:?} took {took:?} of CPU (slice {}); inger stats: {:?}",
                kind.name(),
                account.slices(),
                inger::stats()
            );
        }
    };
    metrics.charge_work(kind, account.used());
    metrics.charge_after_deadline(account.over_budget());
    metrics.count_slices(account.slices());
    outcome
}

/// Whether `INGER_SERVICE_LOG=1`: one line on stderr per over-budget request.
fn log_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os("INGER_SERVICE_LOG").is_some_and(|value| value == "1"))
}

/// Cancels an over-budget function: cooperatively, within a grace of CPU time (charged to the
/// request), else by discarding its stack. `cancel_cooperatively` takes a wall-clock budget; a
/// thread descheduled meanwhile (the machine is shared) gets more rounds until the function
/// has had its grace of CPU, so that a busy machine does not turn cancellations into discards.
fn cancel(mut paused: Continuation<'static, Outcome>, account: &mut CpuAccount) -> Stop {
    let grace = account.budget().grace;
    let start = account.used();
    loop {
        let remaining = grace.saturating_sub(account.used() - start);
        if remaining.is_zero() {
            drop(paused);
            return Stop::Discarded;
        }
        match account.charge(|| paused.cancel_cooperatively(remaining)) {
            Ok(None) => return Stop::Cooperative,
            Ok(Some(still_paused)) => paused = still_paused,
            // The function could not be resumed for the cancellation (a set-up error of the
            // runtime): it was consumed, so its stack is gone as if discarded.
            Err(_) => return Stop::Discarded,
        }
    }
}
