//! The protection modes: how the service runs a request's work so that one request cannot take
//! more than its budget. The same binary runs any of them (`--mode`), so they can be compared
//! under the same load.
//!
//! | mode | how the work runs | what happens at the budget |
//! | --- | --- | --- |
//! | `none` | on the async worker thread, directly | nothing: it runs to the end and blocks the worker meanwhile |
//! | `tokio-timeout` | the same, inside `tokio::time::timeout` | nothing: the timeout is only checked when the synchronous work returns |
//! | `blocking-timeout` | on tokio's blocking pool (`spawn_blocking`), awaited with a timeout | the client gets the over-budget answer on time, but the thread cannot be stopped and runs to the end |
//! | `process` | in a pool of worker processes (this executable with `--worker`), over pipes | the worker is killed (`SIGKILL`) and replaced |
//! | `inger` | in a preemptible function on the async worker thread, one slice at a time, yielding the thread to other requests between slices | cancelled cooperatively (it unwinds at its next cancellation point, freeing its memory); if it reaches none within the grace budget, its stack is discarded |
//!
//! In every mode at most `concurrency` requests are in progress at once; the others wait, in
//! arrival order, for a slot. Without that bound, time slicing admits every request at once:
//! each paused request holds its memory (a decompression bomb, 64 MiB), each waits for a turn
//! among all the others, and an overloaded service ends up with thousands of paused requests
//! and gigabytes resident (seen: 18 GB after a few minutes at 10 % hostile requests). A slot
//! is held until the request is answered: in `blocking-timeout` an abandoned thread no longer
//! holds one (it cannot be stopped, so the bound cannot cover it). A request that waits longer
//! than the queue timeout for a slot is shed: answered `503` as overloaded, without any work
//! (its client has probably given up by then), so that the queue of an overloaded service stays
//! bounded too.

mod blocking;
mod direct;
mod preemptible;
pub mod process;

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::time::Duration;

use crate::budget::Budget;
use crate::metrics::Metrics;
use crate::work::{self, Job, Output, WorkError};

pub use process::ProcessPool;

/// Which protection the service applies (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// No protection.
    None,
    /// `tokio::time::timeout` around the handler.
    TokioTimeout,
    /// `spawn_blocking` awaited with a timeout.
    BlockingTimeout,
    /// A worker process, killed at the deadline.
    Process,
    /// A preemptible function with a CPU budget.
    Inger,
}

impl Mode {
    /// Every mode, from the least to the most protective.
    pub const ALL: [Mode; 5] = [
        Mode::None,
        Mode::TokioTimeout,
        Mode::BlockingTimeout,
        Mode::Process,
        Mode::Inger,
    ];

    /// The mode's name on the command line and in the metrics.
    pub fn name(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::TokioTimeout => "tokio-timeout",
            Mode::BlockingTimeout => "blocking-timeout",
            Mode::Process => "process",
            Mode::Inger => "inger",
        }
    }
}

impl core::fmt::Display for Mode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for Mode {
    type Err = String;

    fn from_str(name: &str) -> Result<Mode, String> {
        Mode::ALL
            .into_iter()
            .find(|mode| mode.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Mode::ALL.iter().map(|mode| mode.name()).collect();
                format!("unknown mode {name:?}; one of: {}", names.join(", "))
            })
    }
}

/// What the work of one request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It finished with an answer.
    Answered(Output),
    /// It finished and refused the input (malformed, or over a library's limit): `422`.
    Refused(WorkError),
    /// It ran out of budget and was stopped (or, in `blocking-timeout`, abandoned): `503`.
    OverBudget,
    /// The work panicked, or a worker process died or could not be started: `500`.
    Failed(String),
    /// No slot was free within the queue timeout; no work was done: `503`.
    Shed,
}

/// What became of the work of an over-budget request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stop {
    /// A preemptible function unwound from a cancellation point: its destructors ran.
    Cooperative,
    /// A preemptible function reached no cancellation point within the grace budget: its stack
    /// was discarded (what its frames owned is leaked).
    Discarded,
    /// The worker process was killed.
    Killed,
    /// The blocking thread was left running to the end (it cannot be stopped).
    Abandoned,
}

impl Stop {
    /// Every kind of stop.
    pub const ALL: [Stop; 4] = [
        Stop::Cooperative,
        Stop::Discarded,
        Stop::Killed,
        Stop::Abandoned,
    ];

    /// The label used in the metrics.
    pub fn name(self) -> &'static str {
        match self {
            Stop::Cooperative => "cooperative",
            Stop::Discarded => "discarded",
            Stop::Killed => "killed",
            Stop::Abandoned => "abandoned",
        }
    }
}

/// How the service protects its work: the mode, the budget, and the state the mode needs.
#[derive(Debug, Clone)]
pub struct Protection {
    mode: Mode,
    budget: Budget,
    metrics: Arc<Metrics>,
    pool: Option<Arc<ProcessPool>>,
    slots: Arc<tokio::sync::Semaphore>,
    queue_timeout: Duration,
}

impl Protection {
    /// Protection by `mode` with `budget`, counting into `metrics`, with at most
    /// `concurrency` requests in progress and requests shed after waiting `queue_timeout` for
    /// a slot. `pool` must be given for [`Mode::Process`] and is ignored otherwise.
    pub fn new(
        mode: Mode,
        budget: Budget,
        concurrency: usize,
        queue_timeout: Duration,
        metrics: Arc<Metrics>,
        pool: Option<Arc<ProcessPool>>,
    ) -> Protection {
        Protection {
            mode,
            budget,
            metrics,
            pool,
            slots: Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))),
            queue_timeout,
        }
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The budget.
    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// Runs `job` under this protection, once a slot is free.
    pub async fn run(&self, job: Job) -> Outcome {
        let kind = job.kind;
        self.metrics.waiting(1);
        let slot = tokio::time::timeout(self.queue_timeout, self.slots.acquire()).await;
        self.metrics.waiting(-1);
        let _slot = match slot {
            Ok(Ok(slot)) => slot,
            Ok(Err(_closed)) => return Outcome::Failed("the service is shutting down".into()),
            Err(_elapsed) => {
                self.metrics.count_outcome(kind, &Outcome::Shed);
                return Outcome::Shed;
            }
        };
        self.metrics.in_progress(1);
        let outcome = self.run_now(job).await;
        self.metrics.in_progress(-1);
        self.metrics.count_outcome(kind, &outcome);
        outcome
    }

    async fn run_now(&self, job: Job) -> Outcome {
        match self.mode {
            Mode::None => direct::run(job, self.budget, &self.metrics),
            Mode::TokioTimeout => {
                let budget = self.budget;
                let metrics = self.metrics.clone();
                let work = async move { direct::run(job, budget, &metrics) };
                match tokio::time::timeout(self.budget.cpu, work).await {
                    Ok(outcome) => outcome,
                    Err(_elapsed) => Outcome::OverBudget,
                }
            }
            Mode::BlockingTimeout => blocking::run(job, self.budget, &self.metrics).await,
            Mode::Process => match &self.pool {
                Some(pool) => pool.run(job, self.budget, &self.metrics).await,
                None => Outcome::Failed("process mode without a worker pool".into()),
            },
            Mode::Inger => preemptible::run(job, self.budget, &self.metrics).await,
        }
    }
}

/// The work, with a panic turned into [`Outcome::Failed`]. The unwinding of a cooperative
/// cancellation ([`inger::Cancelled`]) is passed on, not caught.
pub fn guarded(job: Job) -> Outcome {
    match catch_unwind(AssertUnwindSafe(|| work::run(job))) {
        Ok(Ok(output)) => Outcome::Answered(output),
        Ok(Err(refused)) => Outcome::Refused(refused),
        Err(payload) if payload.is::<inger::Cancelled>() => resume_unwind(payload),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|text| text.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            Outcome::Failed(format!("the work panicked: {message}"))
        }
    }
}
