//! `process`: a pool of worker processes, each this same executable started with `--worker`,
//! serving one job at a time over its standard input and output. At the deadline (the budget,
//! as wall-clock time) the worker is killed with `SIGKILL` and a new one is started in the
//! background; the pool is one worker short until it is ready.
//!
//! Wire format, both ways: one byte (a job's [`Kind`] code; an answer's status: 0 answered,
//! 1 invalid input, 2 over a limit, 3 the work panicked), a little-endian `u32` length, then
//! that many bytes (the request body; the answer body or the error message).

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::budget::Budget;
use crate::metrics::Metrics;
use crate::work::{self, Job, Kind, Output, WorkError};

use super::{Outcome, Stop, guarded};

/// The largest frame accepted from a peer (larger than any request or answer the work makes).
const MAX_FRAME: usize = 64 << 20;

/// A pool of worker processes.
#[derive(Debug)]
pub struct ProcessPool {
    program: PathBuf,
    idle: Mutex<Vec<Worker>>,
    slots: Arc<Semaphore>,
    size: usize,
}

#[derive(Debug)]
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

impl ProcessPool {
    /// Starts `size` workers running `program --worker` (`program` is normally this
    /// executable).
    ///
    /// # Errors
    /// If a worker cannot be started.
    pub fn start(program: PathBuf, size: usize) -> io::Result<ProcessPool> {
        let size = size.max(1);
        let workers = (0..size)
            .map(|_| spawn_worker(&program))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(ProcessPool {
            program,
            idle: Mutex::new(workers),
            slots: Arc::new(Semaphore::new(size)),
            size,
        })
    }

    /// The number of workers.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Runs `job` in a worker, killing the worker if it takes longer than the budget.
    pub(super) async fn run(
        self: &Arc<Self>,
        job: Job,
        budget: Budget,
        metrics: &Arc<Metrics>,
    ) -> Outcome {
        let Ok(permit) = self.slots.clone().acquire_owned().await else {
            return Outcome::Failed("the worker pool is closed".into());
        };
        let Some(mut worker) = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
        else {
            return Outcome::Failed("no idle worker behind a free slot".into());
        };
        // The deadline counts from when a worker takes the job, as in the other modes.
        let deadline = tokio::time::Instant::now() + budget.cpu;
        let exchange = async {
            write_frame_async(&mut worker.stdin, job.kind.code(), &job.body).await?;
            read_frame_async(&mut worker.stdout).await
        };
        match tokio::time::timeout_at(deadline, exchange).await {
            Ok(Ok((status, body))) => {
                self.give_back(worker, permit);
                decode_answer(job.kind, status, body)
            }
            Ok(Err(error)) => {
                self.replace(worker, permit, metrics.clone());
                Outcome::Failed(format!("the worker process failed: {error}"))
            }
            Err(_elapsed) => {
                let late = tokio::time::Instant::now().saturating_duration_since(deadline);
                let _ = worker.child.start_kill();
                // The worker ran at most this long after its deadline.
                metrics.charge_after_deadline(late);
                metrics.count_stop(job.kind, Stop::Killed);
                self.replace(worker, permit, metrics.clone());
                Outcome::OverBudget
            }
        }
    }

    fn give_back(&self, worker: Worker, permit: OwnedSemaphorePermit) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(worker);
        drop(permit);
    }

    /// Reaps a killed or broken worker and starts its replacement in the background; the slot
    /// is free again once the replacement is ready.
    fn replace(
        self: &Arc<Self>,
        mut worker: Worker,
        permit: OwnedSemaphorePermit,
        metrics: Arc<Metrics>,
    ) {
        let pool = self.clone();
        tokio::spawn(async move {
            let _ = worker.child.start_kill();
            let _ = worker.child.wait().await;
            let started = Instant::now();
            match spawn_worker(&pool.program) {
                Ok(fresh) => {
                    metrics.count_respawn(started.elapsed());
                    pool.give_back(fresh, permit);
                }
                Err(error) => {
                    eprintln!("inger-service: cannot start a worker process: {error}");
                    // The slot stays taken: the pool shrinks rather than failing every request.
                    permit.forget();
                }
            }
        });
    }
}

fn spawn_worker(program: &PathBuf) -> io::Result<Worker> {
    let mut child = Command::new(program)
        .arg("--worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let missing = || io::Error::other("the worker's pipes were not set up");
    let stdin = child.stdin.take().ok_or_else(missing)?;
    let stdout = child.stdout.take().ok_or_else(missing)?;
    Ok(Worker {
        child,
        stdin,
        stdout,
    })
}

fn decode_answer(kind: Kind, status: u8, body: Vec<u8>) -> Outcome {
    let text = || String::from_utf8_lossy(&body).into_owned();
    match status {
        0 => Outcome::Answered(Output {
            content_type: work::content_type(kind),
            body,
        }),
        1 => Outcome::Refused(WorkError::Invalid(text())),
        2 => Outcome::Refused(WorkError::Limit(text())),
        3 => Outcome::Failed(text()),
        other => Outcome::Failed(format!("the worker answered with status {other}")),
    }
}

/// The worker's side: serves jobs from standard input until it closes. Never returns an
/// answer to a job it cannot read: a malformed frame ends the worker.
///
/// # Errors
/// If standard input or output fail, or a frame is malformed.
pub fn serve_worker() -> io::Result<()> {
    let mut input = io::stdin().lock();
    let mut output = io::stdout().lock();
    loop {
        let Some((code, body)) = read_frame(&mut input)? else {
            return Ok(());
        };
        let kind = Kind::from_code(code).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("job kind {code}"))
        })?;
        let (status, answer) = match guarded(Job { kind, body }) {
            Outcome::Answered(out) => (0, out.body),
            Outcome::Refused(WorkError::Invalid(why)) => (1, why.into_bytes()),
            Outcome::Refused(WorkError::Limit(why)) => (2, why.into_bytes()),
            Outcome::Failed(why) => (3, why.into_bytes()),
            Outcome::OverBudget | Outcome::Shed => (3, b"not run in a worker".to_vec()),
        };
        write_frame(&mut output, status, &answer)?;
        output.flush()?;
    }
}

fn header(code: u8, len: usize) -> io::Result<[u8; 5]> {
    let len = u32::try_from(len)
        .ok()
        .filter(|&len| len as usize <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut header = [code, 0, 0, 0, 0];
    header[1..].copy_from_slice(&len.to_le_bytes());
    Ok(header)
}

fn frame_len(header: &[u8; 5]) -> io::Result<usize> {
    let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    Ok(len)
}

fn write_frame(out: &mut impl Write, code: u8, body: &[u8]) -> io::Result<()> {
    out.write_all(&header(code, body.len())?)?;
    out.write_all(body)
}

/// Reads a frame; `None` at a clean end of input.
fn read_frame(input: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0u8; 5];
    match input.read_exact(&mut header) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let mut body = vec![0u8; frame_len(&header)?];
    input.read_exact(&mut body)?;
    Ok(Some((header[0], body)))
}

async fn write_frame_async(out: &mut ChildStdin, code: u8, body: &[u8]) -> io::Result<()> {
    out.write_all(&header(code, body.len())?).await?;
    out.write_all(body).await?;
    out.flush().await
}

async fn read_frame_async(input: &mut ChildStdout) -> io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; 5];
    input.read_exact(&mut header).await?;
    let mut body = vec![0u8; frame_len(&header)?];
    input.read_exact(&mut body).await?;
    Ok((header[0], body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_a_clean_end_is_none() {
        let mut wire = Vec::new();
        write_frame(&mut wire, 2, b"pattern\nline").unwrap();
        write_frame(&mut wire, 3, b"").unwrap();
        let mut input = &wire[..];
        assert_eq!(
            read_frame(&mut input).unwrap(),
            Some((2, b"pattern\nline".to_vec()))
        );
        assert_eq!(read_frame(&mut input).unwrap(), Some((3, Vec::new())));
        assert_eq!(read_frame(&mut input).unwrap(), None);
    }

    #[test]
    fn oversized_or_truncated_frames_are_errors() {
        let mut input: &[u8] = &[1, 0xff, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut input).is_err());
        let mut input: &[u8] = &[1, 10, 0, 0, 0, b'x'];
        assert!(read_frame(&mut input).is_err());
    }
}
