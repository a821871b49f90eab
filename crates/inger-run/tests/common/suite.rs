//! Running a foreign test suite twice, directly and under `inger-run`, and comparing the
//! results program by program: bounded parallelism, a timeout per run, and a list of known
//! differences that must keep differing in the stated way (so that it cannot go stale).

use std::fmt::Write as _;
use std::io::Read;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{Report, describe, split_reports};

/// What one run of one test program did. Two outcomes are the same when their status and
/// streams are; the detail is for people only.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    /// `exit N`, `signal N`, `timed out after N s`, or a suite's own word for a result.
    pub(crate) status: String,
    pub(crate) stdout: Vec<u8>,
    /// Standard error, less any `--stats` reports.
    pub(crate) stderr: Vec<u8>,
    /// What else helps to understand the result (not compared).
    pub(crate) detail: String,
}

impl PartialEq for Outcome {
    fn eq(&self, other: &Outcome) -> bool {
        (&self.status, &self.stdout, &self.stderr) == (&other.status, &other.stdout, &other.stderr)
    }
}

impl Outcome {
    /// The status and both streams, as text for a failure message (long streams are cut).
    pub(crate) fn show(&self) -> String {
        let mut text = self.status.clone();
        if !self.stdout.is_empty() {
            text += &format!("; stdout: {}", excerpt(&self.stdout));
        }
        if !self.stderr.is_empty() {
            text += &format!("; stderr: {}", excerpt(&self.stderr));
        }
        if !self.detail.is_empty() {
            text += &format!(" ({})", self.detail);
        }
        text
    }
}

/// At most 600 bytes of a stream, quoted, with a note of what was cut.
fn excerpt(bytes: &[u8]) -> String {
    const LIMIT: usize = 600;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(LIMIT)]);
    if bytes.len() > LIMIT {
        format!("{text:?} (and {} more bytes)", bytes.len() - LIMIT)
    } else {
        format!("{text:?}")
    }
}

/// A run's outcome and the `--stats` reports found in its standard error.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(crate) outcome: Outcome,
    pub(crate) reports: Vec<Report>,
    pub(crate) elapsed: Duration,
}

/// Makes a pipe for a program's standard error and says which file it is (`dev:ino`, as
/// `stat -L -c %d:%i` prints it), so that a wrapper inside a test script can tell whether
/// the program it starts writes to the stream the suite captures.
pub(crate) fn stderr_pipe() -> (std::io::PipeReader, std::io::PipeWriter, String) {
    let (reader, writer) = std::io::pipe().expect("create a pipe");
    let metadata =
        std::fs::metadata(format!("/proc/self/fd/{}", writer.as_raw_fd())).expect("stat the pipe");
    let identity = format!("{}:{}", metadata.dev(), metadata.ino());
    (reader, writer, identity)
}

/// Runs `command` (standard input from `/dev/null`) with standard error on the write end of
/// `pipe` (from [`stderr_pipe`]) in a process group of its own, so that a timeout ends the
/// program and every process it started. Splits the `--stats` reports out of standard error.
pub(crate) fn run_captured(
    mut command: Command,
    pipe: (std::io::PipeReader, std::io::PipeWriter),
    timeout: Duration,
) -> Run {
    let (mut err_reader, err_writer) = pipe;
    let start = Instant::now();
    let spawned = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err_writer)
        .process_group(0)
        .spawn();
    let mut child = spawned.unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    // `command` holds the parent's copy of the write end: drop it so that the reader sees
    // end-of-file once the program and everything it started are done with the pipe.
    drop(command);
    let mut out_reader = child.stdout.take().expect("a piped stdout");
    let (stdout, stderr, status) = std::thread::scope(|scope| {
        let out = scope.spawn(move || {
            let mut bytes = Vec::new();
            let _ = out_reader.read_to_end(&mut bytes);
            bytes
        });
        let err = scope.spawn(move || {
            let mut bytes = Vec::new();
            let _ = err_reader.read_to_end(&mut bytes);
            bytes
        });
        let status = wait_with_timeout(&mut child, timeout);
        (
            out.join().expect("stdout reader"),
            err.join().expect("stderr reader"),
            status,
        )
    });
    let elapsed = start.elapsed();
    let (stderr, reports) = split_reports(&stderr);
    Run {
        outcome: Outcome {
            status,
            stdout,
            stderr,
            detail: String::new(),
        },
        reports,
        elapsed,
    }
}

/// Waits for `child`; past `timeout`, kills its process group and says so.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait().expect("wait for the program") {
            Some(status) => {
                // Leftover processes of the group (a script's background jobs) would keep
                // the pipes open: end them too.
                kill_group(child);
                return describe(status);
            }
            None if Instant::now() >= deadline => {
                kill_group(child);
                let _ = child.wait();
                return format!("timed out after {} s", timeout.as_secs());
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Sends SIGKILL to the process group led by `child` (which this module created).
fn kill_group(child: &Child) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill has no memory-safety preconditions; the group is the one `run_captured`
    // created for this child, so no other process is signalled.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
}

/// Calls `work` on every item with at most `workers` calls at a time; returns the results in
/// the items' order.
pub(crate) fn parallel<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else { break };
                    let result = work(item);
                    results.lock().expect("no worker panicked")[index] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("no worker panicked")
        .into_iter()
        .map(|result| result.expect("every item was run"))
        .collect()
}

/// How many programs to run at once: the machine's cores, at least 2 (many test programs
/// sleep) and at most 4 (the suites share the machine with the rest of the tests).
pub(crate) fn workers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, usize::from)
        .clamp(2, 4)
}

/// How a known difference shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shows {
    /// On every run: the program must differ, in the stated way.
    Always,
    /// On some runs only (the program races against inger's signal): the program must either
    /// match or differ in the stated way.
    Sometimes,
}

/// A test program whose result under `inger-run` is known to differ from a direct run
/// because of an open issue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KnownDifference {
    /// The program as the suite names it.
    pub(crate) program: &'static str,
    /// The issue that will fix it.
    pub(crate) issue: u32,
    /// What happens and why.
    pub(crate) symptom: &'static str,
    /// The known ways it differs: texts one of which the run under `inger-run` shows (in its
    /// status, streams or detail) when it differs.
    pub(crate) under_shows: &'static [&'static str],
    pub(crate) shows: Shows,
}

/// One program's two runs.
#[derive(Debug, Clone)]
pub(crate) struct Comparison {
    pub(crate) program: String,
    pub(crate) direct: Outcome,
    pub(crate) under: Outcome,
}

/// Checks every comparison against `known`: identical outcomes for every program that is not
/// on the list; for every program on it, a difference in the stated way (or a match, for
/// [`Shows::Sometimes`]). Panics with every violation, each naming the program and both
/// results. Returns the programs that differed in a known way.
pub(crate) fn assert_same_results(
    suite: &str,
    comparisons: &[Comparison],
    known: &[KnownDifference],
) -> Vec<String> {
    let mut problems = String::new();
    let mut known_seen = Vec::new();
    for entry in known {
        assert!(
            comparisons.iter().any(|c| c.program == entry.program),
            "{suite}: KNOWN_DIFFERENCES names {}, which the suite did not run",
            entry.program
        );
    }
    for comparison in comparisons {
        let same = comparison.direct == comparison.under;
        let entry = known.iter().find(|k| k.program == comparison.program);
        match (entry, same) {
            (None, true) => {}
            (None, false) => {
                let _ = writeln!(
                    problems,
                    "- {} differs:\n    direct:     {}\n    inger-run:  {}",
                    comparison.program,
                    comparison.direct.show(),
                    comparison.under.show()
                );
            }
            (Some(entry), true) if entry.shows == Shows::Always => {
                let _ = writeln!(
                    problems,
                    "- {} now matches, but KNOWN_DIFFERENCES lists it (issue {}: {}): remove it \
                     from the list\n    both:       {}",
                    comparison.program,
                    entry.issue,
                    entry.symptom,
                    comparison.direct.show()
                );
            }
            (Some(_), true) => {}
            (Some(entry), false) => {
                let under = &comparison.under;
                let shown = [
                    under.status.as_bytes(),
                    under.stdout.as_slice(),
                    under.stderr.as_slice(),
                ]
                .into_iter()
                .chain(std::iter::once(under.detail.as_bytes()))
                .any(|bytes| {
                    let text = String::from_utf8_lossy(bytes);
                    entry.under_shows.iter().any(|shown| text.contains(shown))
                });
                if shown {
                    known_seen.push(comparison.program.clone());
                } else {
                    let _ = writeln!(
                        problems,
                        "- {} differs, but not in the way KNOWN_DIFFERENCES says (issue {}: \
                         {}; expected one of {:?} under inger-run):\n    direct:     {}\n    \
                         inger-run:  {}",
                        comparison.program,
                        entry.issue,
                        entry.symptom,
                        entry.under_shows,
                        comparison.direct.show(),
                        under.show()
                    );
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{suite}: results under inger-run differ from direct runs:\n{problems}"
    );
    known_seen
}

/// The release build of `inger-run` and its preload library, as users run them: built by
/// `cargo build --release -p inger-run` into this test's own target directory (nothing to do
/// after `scripts/test`'s release build; concurrent test processes wait for cargo's lock).
/// The suites run hundreds of programs at a 20 µs slice, where the unoptimised library of
/// the test profile spends an order of magnitude more per preemption than the release one.
pub(crate) fn release_inger_run() -> &'static ReleaseBuild {
    static BUILT: std::sync::OnceLock<ReleaseBuild> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("the target directory")
            .to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let output = Command::new(cargo)
            .args([
                "build",
                "--release",
                "--package",
                "inger-run",
                "--manifest-path",
            ])
            .arg(root.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .stdin(Stdio::null())
            .output()
            .expect("run cargo");
        assert!(
            output.status.success(),
            "cargo build --release -p inger-run failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let dir = target.join("release");
        let build = ReleaseBuild {
            command: dir.join("inger-run"),
            preload: dir.join("libinger_preload.so"),
        };
        for file in [&build.command, &build.preload] {
            assert!(file.is_file(), "{} was not built", file.display());
        }
        build
    })
}

/// Where the release build of `inger-run` is.
#[derive(Debug)]
pub(crate) struct ReleaseBuild {
    pub(crate) command: PathBuf,
    pub(crate) preload: PathBuf,
}

impl ReleaseBuild {
    /// `inger-run --preload LIB --slice SLICE --stats --`, ready for the program.
    pub(crate) fn with_stats(&self) -> Command {
        let mut command = Command::new(&self.command);
        // Wall-clock slices: the suites are stress tests, and a program that mostly waits
        // (most of them) is preempted while it waits only on wall-clock slices.
        command.arg("--preload").arg(&self.preload).args([
            "--slice",
            super::SLICE,
            super::STORM_CLOCK,
            "--stats",
            "--",
        ]);
        command
    }
}

/// A directory under the target directory for the suites' builds and scratch files.
pub(crate) fn target_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// A short, stable hexadecimal digest of `text` (FNV-1a, 64 bits): names cache directories.
pub(crate) fn digest(text: &str) -> String {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}
