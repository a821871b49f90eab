//! Running a process to its end with a hang guard: its output captured, and the process
//! killed if it runs far longer than it should.
//!
//! This file uses nothing but `std` and no other file of the test support, because the C API
//! crate's tests include it too (`crates/inger-c/tests/common/mod.rs`, through `#[path]`):
//! one copy of the spawn, drain and kill logic for the whole workspace.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the output of a killed process is waited for: a grandchild that inherited the
/// pipes may keep them open after the process itself is gone.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(5);

/// Runs `command` with stdin from `/dev/null` and stdout and stderr captured (drained on
/// threads, so a chatty process never blocks on a full pipe). Returns its output once it has
/// exited, or, if it is still running after `hang_limit`, kills it and returns what it wrote
/// until then as the error (empty for a stream that a surviving grandchild still holds open
/// [`DRAIN_AFTER_KILL`] after the kill). `hang_limit` is a hang guard, not a timing
/// assertion: it should be many times what the process needs on a loaded machine.
pub(crate) fn run_with_hang_guard(
    command: &mut Command,
    hang_limit: Duration,
) -> Result<Output, Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
    let pipes: [Box<dyn Read + Send>; 2] = [
        Box::new(child.stdout.take().expect("piped stdout")),
        Box::new(child.stderr.take().expect("piped stderr")),
    ];
    let readers = pipes.map(|mut pipe| {
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = sender.send(bytes);
        });
        receiver
    });
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waiting for the process") {
            let [stdout, stderr] =
                readers.map(|reader| reader.recv().expect("an output reader died"));
            return Ok(Output {
                status,
                stdout,
                stderr,
            });
        }
        if started.elapsed() > hang_limit {
            let _ = child.kill();
            let status = child.wait().expect("reaping the killed process");
            let drained_by = Instant::now() + DRAIN_AFTER_KILL;
            let [stdout, stderr] = readers.map(|reader| {
                let left = drained_by.saturating_duration_since(Instant::now());
                reader.recv_timeout(left).unwrap_or_default()
            });
            return Err(Output {
                status,
                stdout,
                stderr,
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
