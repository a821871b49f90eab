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

mod blocking;
mod direct;
mod preemptible;
pub mod process;

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;

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
}

impl Protection {
    /// Protection by `mode` with `budget`, counting into `metrics`. `pool` must be given for
    /// [`Mode::Process`] and is ignored otherwise.
    pub fn new(
        mode: Mode,
        budget: Budget,
        metrics: Arc<Metrics>,
        pool: Option<Arc<ProcessPool>>,
    ) -> Protection {
        Protection {
            mode,
            budget,
            metrics,
            pool,
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

    /// Runs `job` under this protection.
    pub async fn run(&self, job: Job) -> Outcome {
        let kind = job.kind;
        let outcome = match self.mode {
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
        };
        self.metrics.count_outcome(kind, &outcome);
        outcome
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
