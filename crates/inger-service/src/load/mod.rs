//! The load generator: runs the service binary in each mode, sends it an open-loop stream of
//! benign requests with a share of hostile ones (loopback only, bounded in count and time),
//! and reports what each mode did. `inger-load --help` for the options.
//!
//! Requests arrive as a Poisson process at a fixed rate from a seeded generator, so every mode
//! gets the same schedule. A request's latency counts from its *scheduled* time, so a stalled
//! service is charged for the requests it kept waiting (no coordinated omission). A request
//! unanswered after the client timeout, or not sent because too many were in flight, counts as
//! unanswered, with an infinite latency in the percentiles.

pub mod plot;
pub mod process;
pub mod report;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::Client;
use crate::inputs::{self, Rng};
use crate::work::Kind;

/// The request stream of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Requests sent (benign and hostile).
    pub requests: usize,
    /// Mean arrival rate, requests per second.
    pub rate: f64,
    /// Probability that a request is hostile.
    pub hostile_share: f64,
    /// Seed of the schedule.
    pub seed: u64,
    /// How long the client waits for an answer.
    pub timeout: Duration,
    /// Requests in flight at most; a request due while this many wait is not sent.
    pub max_in_flight: usize,
}

/// The bodies sent: a few benign variants per kind, one hostile body per kind.
#[derive(Debug, Clone)]
pub struct Bodies {
    benign: Vec<(Kind, Bytes)>,
    hostile: Vec<(Kind, Bytes)>,
}

impl Bodies {
    /// The standard bodies ([`inputs::benign`] and [`inputs::hostile`]).
    pub fn standard() -> Bodies {
        let benign = [
            (Kind::Thumbnail, 0),
            (Kind::Thumbnail, 1),
            (Kind::Grep, 0),
            (Kind::Json, 0),
        ]
        .into_iter()
        .map(|(kind, variant)| (kind, Bytes::from(inputs::benign(kind, variant).body)))
        .collect();
        let hostile = Kind::ALL
            .into_iter()
            .map(|kind| (kind, Bytes::from(inputs::hostile(kind).body)))
            .collect();
        Bodies { benign, hostile }
    }
}

/// What happened to one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When it was due, from the start of the run.
    pub due: Duration,
    /// Its kind.
    pub kind: Kind,
    /// Whether it was hostile.
    pub hostile: bool,
    /// Its status and latency, if it was answered.
    pub answer: Option<(u16, Duration)>,
}

/// One request of the schedule.
#[derive(Debug, Clone)]
struct Due {
    at: Duration,
    kind: Kind,
    hostile: bool,
    body: Bytes,
}

fn schedule(plan: &Plan, bodies: &Bodies) -> Vec<Due> {
    let mut rng = Rng::new(plan.seed);
    let mut at = Duration::ZERO;
    let mut hostile_turn = 0;
    (0..plan.requests)
        .map(|_| {
            // Exponential inter-arrival times: a Poisson process.
            let gap = -(1.0 - rng.unit()).ln() / plan.rate;
            at += Duration::from_secs_f64(gap);
            let hostile = rng.unit() < plan.hostile_share;
            let (kind, body) = if hostile {
                hostile_turn += 1;
                bodies.hostile[hostile_turn % bodies.hostile.len()].clone()
            } else {
                bodies.benign[rng.below(bodies.benign.len() as u64) as usize].clone()
            };
            Due {
                at,
                kind,
                hostile,
                body,
            }
        })
        .collect()
}

/// Sends the plan's requests to `client` and returns one sample per request, in schedule
/// order. Ends at most `plan.timeout` after the last request was due.
pub async fn drive(client: &Client, plan: &Plan, bodies: &Bodies) -> Vec<Sample> {
    let start = tokio::time::Instant::now();
    let slots = Arc::new(Semaphore::new(plan.max_in_flight.max(1)));
    let mut tasks = JoinSet::new();
    let mut samples = Vec::with_capacity(plan.requests);
    for (index, due) in schedule(plan, bodies).into_iter().enumerate() {
        let due_at = start + due.at;
        tokio::time::sleep_until(due_at).await;
        samples.push(Sample {
            due: due.at,
            kind: due.kind,
            hostile: due.hostile,
            answer: None,
        });
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let client = client.clone();
        let timeout = plan.timeout;
        tasks.spawn(async move {
            let answer = tokio::time::timeout(timeout, client.post(due.kind, due.body)).await;
            drop(slot);
            let latency = due_at.elapsed();
            match answer {
                Ok(Ok(answer)) => (index, Some((answer.status, latency))),
                _ => (index, None),
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Ok((index, answer)) = joined {
            samples[index].answer = answer;
        }
    }
    samples
}
