//! Scenarios that change process-wide state (settings read once per process, signal
//! handlers, `LD_PRELOAD`, aborts) run in a child process: this test binary, re-run.
//!
//! The convention, the same in every test file:
//! - The parent calls [`run_child`]`(test, mode, env)`: the binary runs only `test`, with
//!   [`CHILD_ENV`]` = mode` and the extra environment `env` (the parent's own `INGER_*`
//!   variables removed first, so a setting of the outer run cannot leak in).
//! - The test first asks [`child_mode`]: `Some(mode)` means "you are that child: play the
//!   scenario `mode`", `None` means "you are the parent".
//! - A child that must prove it ran its scenario to the end prints [`print_child_ok`]`(mode)`,
//!   which the parent checks with [`ChildOutput::assert_child_ok`] (a child that ran no test
//!   at all cannot pass). Children that report figures print a line of counters
//!   ([`print_stats`]) that the parent reads with [`ChildOutput::counter`].

use std::path::Path;
use std::process::{Command, ExitStatus, Output};
use std::time::Duration;

use super::process::run_with_hang_guard;

/// The environment variable that tells a re-run test binary which child scenario to play.
pub const CHILD_ENV: &str = "INGER_TEST_CHILD";

/// How long a child may run before it is killed as hung. A hang guard, not a timing
/// assertion: the slowest child (a safe-point storm in a debug build) takes a few seconds on a
/// loaded two-core machine; the guard fires well before nextest's own limit, so the failure
/// shows what the child had written.
const CHILD_HANG_LIMIT: Duration = Duration::from_secs(120);

/// The marker a child prints when its scenario passed.
const CHILD_OK: &str = "child ok: ";

/// The child scenario this process was started for, if it is a child.
pub fn child_mode() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// Re-runs this test binary for the test `test_name` alone, with [`CHILD_ENV`]` = mode` and the
/// extra environment `env` (the parent's `INGER_*` variables are removed first), capturing
/// its output. Kills the child and panics if it has not finished after a generous limit.
pub fn run_child(test_name: &str, mode: &str, env: &[(&str, &str)]) -> ChildOutput {
    let exe = std::env::current_exe().expect("the test binary's own path");
    run_child_of(&exe, test_name, mode, env)
}

/// As [`run_child`], running the executable `exe` (a copy of this test binary).
pub fn run_child_of(exe: &Path, test_name: &str, mode: &str, env: &[(&str, &str)]) -> ChildOutput {
    let mut command = Command::new(exe);
    command.args([test_name, "--exact", "--nocapture", "--test-threads=1"]);
    for (key, _) in std::env::vars() {
        if key.starts_with("INGER_") {
            command.env_remove(key);
        }
    }
    command.env(CHILD_ENV, mode);
    for (key, value) in env {
        command.env(key, value);
    }
    match run_with_hang_guard(&mut command, CHILD_HANG_LIMIT) {
        Ok(output) => ChildOutput::from(output),
        Err(output) => panic!(
            "child {mode:?} hung (deadlock?) and was killed after {CHILD_HANG_LIMIT:?}: {}",
            ChildOutput::from(output).describe()
        ),
    }
}

/// Prints the marker that says the child's scenario `mode` passed, on a line of its own (the
/// test harness's "test name ... " has no newline before the test's own output).
pub fn print_child_ok(mode: &str) {
    println!("\n{CHILD_OK}{mode}");
}

/// Prints inger's counters (since `before`) on one line tagged `tag`, for a parent to read
/// with [`ChildOutput::counter`].
pub fn print_stats(tag: &str, before: inger::Stats) {
    let now = inger::stats();
    println!(
        "{tag} preemptions={} deferred_std={} deferred_library={} deferred_unknown={} deferred_unwind={} deferred_nopreempt={} retries={} longest_deferral_ns={}",
        now.preemptions - before.preemptions,
        now.deferred_std - before.deferred_std,
        now.deferred_library - before.deferred_library,
        now.deferred_unknown - before.deferred_unknown,
        now.deferred_unwind - before.deferred_unwind,
        now.deferred_nopreempt - before.deferred_nopreempt,
        now.retries - before.retries,
        now.longest_deferral_ns,
    );
}

/// What a child process did.
pub struct ChildOutput {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl From<Output> for ChildOutput {
    fn from(output: Output) -> ChildOutput {
        ChildOutput {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl ChildOutput {
    /// Describes the child's exit for assertion messages (output cut to its last 16 KiB).
    pub fn describe(&self) -> String {
        fn tail(text: &str) -> &str {
            let mut start = text.len().saturating_sub(16 * 1024);
            while !text.is_char_boundary(start) {
                start += 1;
            }
            &text[start..]
        }
        format!(
            "status {:?}\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
            self.status,
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }

    /// Asserts that the child exited successfully.
    pub fn assert_success(&self) {
        assert!(
            self.status.success(),
            "the child failed: {}",
            self.describe()
        );
    }

    /// Asserts that the child exited successfully after printing [`print_child_ok`]`(mode)`,
    /// once, and no other scenario's marker.
    pub fn assert_child_ok(&self, mode: &str) {
        self.assert_success();
        assert_eq!(
            self.lines_with(CHILD_OK),
            vec![mode.to_owned()],
            "the child's pass marker: {}",
            self.describe()
        );
    }

    /// The lines of stdout that contain `prefix`, with everything up to the end of the
    /// prefix removed (the test harness prints its own text around them, and its
    /// "test name ... " has no newline before the test's own output).
    pub fn lines_with(&self, prefix: &str) -> Vec<String> {
        self.stdout
            .lines()
            .filter_map(|line| {
                let start = line.find(prefix)?;
                Some(line[start + prefix.len()..].to_owned())
            })
            .collect()
    }

    /// The text written between the lines `begin` and `end` (exclusive; the marker lines
    /// themselves may carry the test harness's text before them).
    pub fn between(&self, begin: &str, end: &str) -> &str {
        let start =
            self.stdout.find(begin).unwrap_or_else(|| {
                panic!("no {begin:?} in the child's stdout: {}", self.describe())
            }) + begin.len();
        let length = self.stdout[start..]
            .find(end)
            .unwrap_or_else(|| panic!("no {end:?} in the child's stdout: {}", self.describe()));
        &self.stdout[start..start + length]
    }

    /// The value of `key=<u64>` on the child's line starting with (or containing) `tag`.
    pub fn counter(&self, tag: &str, key: &str) -> u64 {
        let line = self
            .stdout
            .lines()
            .find(|line| line.contains(tag))
            .unwrap_or_else(|| panic!("no {tag:?} line from the child: {}", self.describe()));
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {key}= on {line:?}"))
    }
}
