//! No blocking call returns early or fails with `EINTR` because of inger's timer signal:
//! `tests/c/blocking_calls.c` makes one call per mode (`pause` after `alarm`, `sigsuspend`,
//! `sigtimedwait`, `epoll_wait`, `poll`, `select`, `nanosleep`, `accept` and `read` with
//! `SO_RCVTIMEO`, ...), checks its result and that it waited as long as asked, and is run
//! directly, under `inger-run` (CPU-time slices) and under `inger-run --wall-slices`, where
//! the timer signal keeps arriving while the call waits.

mod common;

use std::process::{Command, Output, Stdio};

use common::{c_program, debian_program, inger_run, split_reports};

fn run(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .expect("run the test program")
}

fn modes() -> Vec<String> {
    let output = run(Command::new(c_program("blocking_calls")).arg("list"));
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .expect("mode names")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Runs `mode` under `inger-run --stats` with `options`; asserts it succeeded; returns the
/// report's count of timer signals.
fn check(mode: &str, options: &[&str]) -> u64 {
    // A call whose wake-up was lost waits for ever (pause after alarm did, under
    // --wall-slices): coreutils' timeout turns that into a failure (exit 124).
    let inger = inger_run();
    let mut command = Command::new(debian_program("timeout", "coreutils"));
    command
        .arg("30")
        .arg(inger.get_program())
        .envs(
            inger
                .get_envs()
                .filter_map(|(name, value)| Some((name, value?))),
        )
        .args(["--stats", "--slice", common::SLICE])
        .args(options)
        .arg("--")
        .arg(c_program("blocking_calls"))
        .arg(mode);
    let output = run(&mut command);
    let (stderr, reports) = split_reports(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout == format!("{mode}: ok\n"),
        "{mode} under inger-run {options:?}: {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&stderr)
    );
    assert_eq!(
        reports.len(),
        1,
        "{mode}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    reports[0].timer_signals
}

#[test]
fn every_call_behaves_as_without_inger() {
    let modes = modes();
    assert!(modes.len() >= 15, "{modes:?}");
    for mode in &modes {
        let direct = run(Command::new(c_program("blocking_calls")).arg(mode));
        assert!(
            direct.status.success(),
            "{mode} fails even without inger: {direct:?}"
        );
    }
    // Two at a time: each mode mostly waits.
    std::thread::scope(|scope| {
        for half in modes.chunks(modes.len().div_ceil(2)) {
            scope.spawn(move || {
                for mode in half {
                    check(mode, &[]);
                    let signals = check(mode, &["--wall-slices"]);
                    // With wall-clock slices the signal kept coming while the call waited
                    // (150 ms at 20 us: thousands when the machine is idle).
                    assert!(signals >= 10, "{mode}: only {signals} timer signals");
                }
            });
        }
    });
}
