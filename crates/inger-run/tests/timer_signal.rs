//! A program may do what it likes with inger's timer signal: its view of the signal is
//! emulated (see `src/preload/signals/mod.rs`). Each test runs `tests/c/timer_signal.c` in
//! one mode directly and under `inger-run --stats`: the program must print the same things
//! (what it set, what its handler saw) and end the same way, and be preempted all along.

mod common;

use std::process::{Command, Output, Stdio};

use common::{Report, c_program, describe, inger_run, split_reports};

/// inger's default timer signal, `SIGRTMAX-4`, on Linux with glibc.
const DEFAULT_SIGNAL: i32 = 60;

fn run(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .expect("run the test program")
}

/// Runs `mode` directly and under inger-run; asserts the same stdout and exit status;
/// returns the stderr of the run under inger-run and its report, if any.
fn both(mode: &str, signal: i32, env: &[(&str, &str)]) -> (String, Option<Report>) {
    let program = c_program("timer_signal");
    let configure = |command: &mut Command| {
        command.args([mode, &signal.to_string()]);
        for (name, value) in env {
            command.env(name, value);
        }
    };
    let mut direct = Command::new(&program);
    configure(&mut direct);
    let direct = run(&mut direct);
    let mut under = inger_run();
    under
        .args([
            "--stats",
            "--slice",
            common::SLICE,
            common::STORM_CLOCK,
            "--",
        ])
        .arg(&program);
    configure(&mut under);
    let under = run(&mut under);
    let stderr = String::from_utf8_lossy(&under.stderr).into_owned();
    assert_eq!(
        describe(under.status),
        describe(direct.status),
        "{mode}: exit status differs; stderr under inger-run:\n{stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&under.stdout),
        String::from_utf8_lossy(&direct.stdout),
        "{mode}: stdout differs; stderr under inger-run:\n{stderr}"
    );
    let report = split_reports(&under.stderr).1.first().copied();
    (stderr, report)
}

/// The least a mode with ~0.1 s of CPU work per step is preempted at the test slice (the
/// measured figures are thousands).
const SOME: u64 = 100;

fn assert_preempted(mode: &str, report: Option<Report>, stderr: &str) {
    let report = report.unwrap_or_else(|| panic!("{mode}: no report:\n{stderr}"));
    assert!(
        report.preemptions >= SOME,
        "{mode}: preemption stopped: {report:?}\n{stderr}"
    );
}

#[test]
fn a_program_that_resets_the_signal_to_its_default_completes() {
    // Before this emulation, the first expiry after the reset killed the program (exit 188,
    // "Real-time signal 26").
    for mode in ["reset", "reset-all"] {
        let (stderr, report) = both(mode, DEFAULT_SIGNAL, &[]);
        assert_preempted(mode, report, &stderr);
        assert!(
            stderr.contains("set by the program") && stderr.contains("inger's handler stayed"),
            "{mode}: --stats should say what the program did:\n{stderr}"
        );
    }
}

#[test]
fn a_reset_in_a_constructor_before_main_is_emulated_too() {
    let signal = DEFAULT_SIGNAL.to_string();
    let (stderr, report) = both(
        "work",
        DEFAULT_SIGNAL,
        &[("TIMER_SIGNAL_RESET_IN_CONSTRUCTOR", &signal)],
    );
    assert_preempted("constructor", report, &stderr);
}

#[test]
fn the_programs_own_handler_gets_the_signals_not_sent_by_inger() {
    // raise, sigqueue (with its value), SA_SIGINFO and plain handlers, SIG_IGN, the handler's
    // mask: all as in a direct run; inger's own expiries never reach the handler (its call
    // count would differ).
    let (stderr, report) = both("handler", DEFAULT_SIGNAL, &[]);
    assert_preempted("handler", report, &stderr);
    assert!(stderr.contains("passed to its handler"), "{stderr}");
    assert!(stderr.contains("dropped, as it ignores it"), "{stderr}");
}

#[test]
fn system_v_and_bsd_functions_keep_their_semantics() {
    // sysv_signal is one-shot, siginterrupt drops SA_RESTART, sigset(SIG_HOLD) really
    // blocks (the raised signal waits until sigset releases it), sigignore ignores.
    let (stderr, report) = both("oneshot", DEFAULT_SIGNAL, &[]);
    assert_preempted("oneshot", report, &stderr);
}

#[test]
fn the_programs_own_timer_on_the_signal_reaches_its_handler() {
    // Both timers send SI_TIMER; only inger's carry inger's value.
    let (stderr, report) = both("timer", DEFAULT_SIGNAL, &[]);
    assert_preempted("timer", report, &stderr);
}

#[test]
fn blocking_every_signal_holds_preemption_back_and_says_so() {
    let (stderr, report) = both("block", DEFAULT_SIGNAL, &[]);
    // The work done while the signal was unblocked was preempted.
    assert_preempted("block", report, &stderr);
    assert!(
        stderr.contains("blocked by the program")
            && stderr.contains("preemption waits while it is blocked"),
        "{stderr}"
    );
}

#[test]
fn a_sent_signal_at_its_default_action_still_kills() {
    let (stderr, report) = both("default", DEFAULT_SIGNAL, &[]);
    assert!(
        report.is_none(),
        "a process killed by a signal prints no report:\n{stderr}"
    );
}

#[test]
fn another_timer_signal_chosen_with_inger_signal_is_emulated() {
    let signal = libc::SIGRTMIN() + 3;
    let (stderr, report) = both("reset", signal, &[("INGER_SIGNAL", "SIGRTMIN+3")]);
    assert_preempted("reset with INGER_SIGNAL", report, &stderr);
    assert!(
        stderr.contains(&format!("SIGRTMIN+3 ({signal})")),
        "{stderr}"
    );
}
