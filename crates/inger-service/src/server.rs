//! The HTTP service (hyper, HTTP/1.1, on the current tokio runtime, loopback only).
//!
//! | request | answer |
//! | --- | --- |
//! | `POST /thumbnail`, `/grep`, `/json` | `200` with the work's answer; `422` if the input is malformed or over a library's limit; `503` if the work ran out of its CPU budget and was stopped, or (with `Retry-After`) if the service was too busy to start it; `500` if it failed; `413` if the body is over the endpoint's size limit |
//! | `GET /metrics` | the counters, Prometheus text format ([`crate::metrics`]) |
//! | `GET /health` | `200 ok` |

use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::budget::Budget;
use crate::metrics::Metrics;
use crate::protect::{Mode, Outcome, ProcessPool, Protection};
use crate::work::{Job, Kind};

/// The status of an answer whose work ran out of budget.
pub const OVER_BUDGET: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

/// How to run the service.
#[derive(Debug, Clone)]
pub struct Config {
    /// The protection mode.
    pub mode: Mode,
    /// The per-request budget.
    pub budget: Budget,
    /// The port on 127.0.0.1 (0: any free port).
    pub port: u16,
    /// Worker processes in `process` mode.
    pub processes: usize,
    /// Requests in progress at most; others wait for a slot (see [`crate::protect`]).
    pub concurrency: usize,
    /// How long a request may wait for a slot before it is shed.
    pub queue_timeout: std::time::Duration,
    /// The program the worker processes run with `--worker` (the service's own executable).
    pub worker_program: PathBuf,
}

impl Config {
    /// A configuration for `mode` with the default budget, on any free port, whose workers
    /// (in `process` mode) run `worker_program`.
    pub fn new(mode: Mode, worker_program: PathBuf) -> Config {
        Config {
            mode,
            budget: Budget::default(),
            port: 0,
            processes: 4,
            concurrency: 8,
            queue_timeout: std::time::Duration::from_secs(1),
            worker_program,
        }
    }
}

/// A running service; dropping it stops it (its connections are closed).
#[derive(Debug)]
pub struct Server {
    address: SocketAddr,
    metrics: Arc<Metrics>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds 127.0.0.1 on the configured port and serves on the current tokio runtime.
    ///
    /// # Errors
    /// If the port cannot be bound or, in `process` mode, the workers cannot be started.
    pub async fn start(config: Config) -> io::Result<Server> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, config.port)).await?;
        let address = listener.local_addr()?;
        if config.mode == Mode::Inger {
            // inger builds its safe-point tables (from the executable's symbol table) at its
            // first use in a process: tens of milliseconds for this executable. Do it now
            // rather than inside the first request's budget.
            let _ = inger::capabilities();
        }
        let metrics = Arc::new(Metrics::new(config.mode, config.budget));
        let pool = match config.mode {
            Mode::Process => Some(Arc::new(ProcessPool::start(
                config.worker_program.clone(),
                config.processes,
            )?)),
            _ => None,
        };
        let protection = Protection::new(
            config.mode,
            config.budget,
            config.concurrency,
            config.queue_timeout,
            metrics.clone(),
            pool,
        );
        let state = Arc::new(State {
            protection,
            metrics: metrics.clone(),
        });
        let task = tokio::spawn(accept(listener, state));
        Ok(Server {
            address,
            metrics,
            task,
        })
    }

    /// The address served.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The service's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The per-request budget.
    pub fn budget(&self) -> Budget {
        self.metrics.budget()
    }

    /// Serves until the task is stopped (never returns on its own).
    pub async fn run(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct State {
    protection: Protection,
    metrics: Arc<Metrics>,
}

async fn accept(listener: TcpListener, state: Arc<State>) {
    // Dropping the set (when this task is aborted) aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                // Out of descriptors, typically: wait a little rather than spin.
                eprintln!("inger-service: accept: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| handle(state.clone(), request));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

type Answer = Response<Full<Bytes>>;

async fn handle(state: Arc<State>, request: Request<Incoming>) -> Result<Answer, Infallible> {
    let arrived = Instant::now();
    let path = request.uri().path().to_owned();
    let answer = match (request.method(), path.as_str()) {
        (&Method::GET, "/metrics") => text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            state.metrics.render(),
        ),
        (&Method::GET, "/health") => plain(StatusCode::OK, "ok\n".into()),
        (method, _) => match Kind::from_path(&path) {
            None => {
                state.metrics.count_bad_request();
                plain(StatusCode::NOT_FOUND, format!("no such endpoint: {path}\n"))
            }
            Some(_) if method != Method::POST => {
                state.metrics.count_bad_request();
                let mut answer = plain(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{path} takes POST\n"),
                );
                answer
                    .headers_mut()
                    .insert(ALLOW, "POST".parse().expect("a valid header"));
                answer
            }
            Some(kind) => work(&state, kind, request.into_body(), arrived).await,
        },
    };
    Ok(answer)
}

async fn work(state: &State, kind: Kind, body: Incoming, arrived: Instant) -> Answer {
    let body = match Limited::new(body, kind.max_body()).collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(error) => {
            state.metrics.count_bad_request();
            return if error.downcast_ref::<LengthLimitError>().is_some() {
                plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "/{} accepts at most {} bytes\n",
                        kind.name(),
                        kind.max_body()
                    ),
                )
            } else {
                plain(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the body: {error}\n"),
                )
            };
        }
    };
    let outcome = state.protection.run(Job { kind, body }).await;
    state.metrics.observe_duration(kind, arrived.elapsed());
    match outcome {
        Outcome::Answered(output) => {
            let mut answer = Response::new(Full::new(Bytes::from(output.body)));
            answer.headers_mut().insert(
                CONTENT_TYPE,
                output.content_type.parse().expect("a valid header"),
            );
            answer
        }
        Outcome::Refused(why) => plain(StatusCode::UNPROCESSABLE_ENTITY, format!("{why}\n")),
        Outcome::OverBudget => plain(OVER_BUDGET, over_budget_message(state.protection.budget())),
        Outcome::Failed(why) => plain(StatusCode::INTERNAL_SERVER_ERROR, format!("{why}\n")),
        Outcome::Shed => {
            let mut answer = plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded: no slot for this request freed up in time; try again later\n".into(),
            );
            answer.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                "1".parse().expect("a valid header"),
            );
            answer
        }
    }
}

/// The body of an over-budget answer.
pub fn over_budget_message(budget: Budget) -> String {
    format!(
        "over budget: the request used up its CPU budget of {:?} and was stopped\n",
        budget.cpu
    )
}

fn plain(status: StatusCode, body: String) -> Answer {
    text(status, "text/plain; charset=utf-8", body)
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(body)));
    *answer.status_mut() = status;
    answer
        .headers_mut()
        .insert(CONTENT_TYPE, content_type.parse().expect("a valid header"));
    answer
}
