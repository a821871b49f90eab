//! Helpers shared by the integration tests: driving a `Linger` to completion, a deterministic
//! CPU-bound workload, and re-running the test binary as a child process for scenarios that
//! change process-wide state (environment settings, signal handlers, aborts).

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of these helpers"
)]

use std::process::{Command, Output};
use std::time::Duration;

/// A budget that a short function cannot plausibly exhaust, even on a loaded machine that
/// deschedules the test thread for a while: for tests that expect a completion.
pub(crate) const GENEROUS: Duration = Duration::from_secs(10);

/// The environment variable that tells a re-run test binary which child scenario to play.
pub(crate) const CHILD_ENV: &str = "INGER_TEST_CHILD";

/// The child scenario this process was started for, if it is a child.
pub(crate) fn child_mode() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// Re-runs this test binary, running only the test `test_name`, with `CHILD_ENV=mode` and the
/// extra environment `env` (every `INGER_*` variable of ours is removed first).
pub(crate) fn run_child(test_name: &str, mode: &str, env: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().expect("the test binary's own path");
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
    command.output().expect("re-running the test binary")
}

/// Describes a child's exit for assertion messages.
pub(crate) fn describe(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Resumes `linger` with `budget` until it completes; returns the value and how many resumes
/// it took. Panics after `max_resumes` (a runaway function is a test failure, not a hang).
pub(crate) fn finish<T>(
    mut linger: inger::Linger<'_, T>,
    budget: Duration,
    max_resumes: u64,
) -> (T, u64) {
    let mut resumes = 0;
    while linger.is_continuation() {
        assert!(
            resumes < max_resumes,
            "still not finished after {resumes} resumes"
        );
        inger::resume(&mut linger, budget).expect("resume");
        resumes += 1;
    }
    (linger.completion().expect("completed"), resumes)
}

/// A deterministic CPU-bound workload: `rounds` steps of a 64-bit mixing function over a small
/// array, returning a checksum. Same input, same output, on any stack.
pub(crate) fn mix(seed: u64, rounds: u64) -> u64 {
    let mut state = [
        seed,
        seed ^ 0x9e37_79b9_7f4a_7c15,
        seed.rotate_left(17),
        !seed,
    ];
    for round in 0..rounds {
        let i = (round % 4) as usize;
        let x = std::hint::black_box(state[i]);
        let x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        state[i] = x ^ (x >> 31) ^ state[(i + 1) % 4];
    }
    state.iter().fold(0, |acc, v| acc.rotate_left(13) ^ v)
}

/// The preemption counters now, for deltas.
pub(crate) fn preemptions() -> u64 {
    inger::stats().preemptions
}
