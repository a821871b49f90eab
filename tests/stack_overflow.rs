//! A stack overflow inside a preemptible function prints a message naming the cause and the
//! setting to raise, then aborts. Faults that are not inger's still reach their previous
//! handlers. Each case runs in a child process (this test binary, re-run).

mod common;

use std::hint::black_box;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

const MESSAGE: &str = "stack overflow in a preemptible function";

/// Recurses until the stack runs out (the condition is never true, but the compiler cannot
/// know that, so it can turn neither the recursion into a loop nor the frame into nothing).
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 64]);
    if black_box(depth) == u64::MAX {
        return frame[0];
    }
    recurse(depth + 1).wrapping_add(frame[1])
}

/// Like [`recurse`], with some work in every frame, so that the timer fires many times
/// before the stack runs out.
fn slow_recurse(depth: u64) -> u64 {
    let frame = black_box([common::mix(depth, 2_000); 64]);
    if black_box(depth) == u64::MAX {
        return frame[0];
    }
    slow_recurse(depth + 1).wrapping_add(frame[1])
}

/// Plays the child's part for `mode`; returns only if the expected crash did not happen.
fn child(mode: &str) {
    match mode {
        "overflow" => {
            let _ = inger::launch(|| recurse(0), Duration::MAX);
        }
        "overflow-preemptible" => {
            // Slow recursion, preempted many times on its way to the guard page.
            let budget = Duration::from_micros(100);
            let mut linger = inger::launch(|| slow_recurse(0), budget).expect("launch");
            while linger.is_continuation() {
                inger::resume(&mut linger, budget).expect("resume");
            }
        }
        "overflow-nested" => {
            let _ = inger::launch(
                || inger::launch(|| recurse(0), Duration::MAX).map(|l| l.completion()),
                Duration::MAX,
            );
        }
        "overflow-outside" => {
            // inger's fault handler is installed by the first launch; an overflow of the
            // thread's own stack afterwards must still get Rust's own report.
            let _ = inger::launch(|| 1, Duration::MAX);
            black_box(recurse(0));
        }
        "segfault-outside" => {
            let _ = inger::launch(|| 1, Duration::MAX);
            // SAFETY: deliberately not safe: writes to an unmapped address to check that a
            // fault unrelated to inger keeps its default action (the process dies of SIGSEGV).
            unsafe { core::ptr::write_volatile(black_box(16usize) as *mut u64, 1) };
        }
        other => panic!("unknown child mode {other}"),
    }
    println!("child survived: {mode}");
}

#[test]
fn an_overflow_inside_a_function_is_reported_and_aborts() {
    if let Some(mode) = common::child_mode() {
        return child(&mode);
    }
    let output = common::run_child(
        "an_overflow_inside_a_function_is_reported_and_aborts",
        "overflow",
        &[],
    );
    let (why, stderr) = (output.describe(), &output.stderr);
    assert_eq!(output.status.signal(), Some(libc::SIGABRT), "{why}");
    assert!(stderr.contains(MESSAGE), "{why}");
    assert!(
        stderr.contains("INGER_STACK_SIZE"),
        "names the setting to raise: {why}"
    );
}

#[test]
fn an_overflow_with_a_budget_and_a_small_stack_is_reported() {
    if let Some(mode) = common::child_mode() {
        return child(&mode);
    }
    let output = common::run_child(
        "an_overflow_with_a_budget_and_a_small_stack_is_reported",
        "overflow-preemptible",
        &[("INGER_STACK_SIZE", "128K")],
    );
    let (why, stderr) = (output.describe(), &output.stderr);
    assert_eq!(output.status.signal(), Some(libc::SIGABRT), "{why}");
    assert!(stderr.contains(MESSAGE), "{why}");
    // 128 KiB and the 64 KiB guard take a 256 KiB slot: the stack is 192 KiB.
    assert!(
        stderr.contains("196608 bytes"),
        "reports the stack size: {why}"
    );
}

#[test]
fn an_overflow_in_a_nested_function_is_reported() {
    if let Some(mode) = common::child_mode() {
        return child(&mode);
    }
    let output = common::run_child(
        "an_overflow_in_a_nested_function_is_reported",
        "overflow-nested",
        &[],
    );
    let (why, stderr) = (output.describe(), &output.stderr);
    assert_eq!(output.status.signal(), Some(libc::SIGABRT), "{why}");
    assert!(stderr.contains(MESSAGE), "{why}");
}

#[test]
fn an_overflow_outside_any_function_gets_rusts_own_report() {
    if let Some(mode) = common::child_mode() {
        return child(&mode);
    }
    let output = common::run_child(
        "an_overflow_outside_any_function_gets_rusts_own_report",
        "overflow-outside",
        &[],
    );
    let (why, stderr) = (output.describe(), &output.stderr);
    assert_eq!(output.status.signal(), Some(libc::SIGABRT), "{why}");
    assert!(stderr.contains("has overflowed its stack"), "{why}");
    assert!(!stderr.contains(MESSAGE), "{why}");
}

#[test]
fn an_unrelated_segfault_keeps_its_default_action() {
    if let Some(mode) = common::child_mode() {
        return child(&mode);
    }
    let output = common::run_child(
        "an_unrelated_segfault_keeps_its_default_action",
        "segfault-outside",
        &[],
    );
    let (why, stderr) = (output.describe(), &output.stderr);
    assert_eq!(output.status.signal(), Some(libc::SIGSEGV), "{why}");
    assert!(!stderr.contains(MESSAGE), "{why}");
}
