//! Printing from preemptible functions under preemption: `println!` (Rust's stdout, its
//! reentrant lock and line buffer) and C `printf` (glibc's `FILE` lock, keyed by the thread
//! descriptor, which is the function's own with private TLS). Each scenario runs in a child
//! process whose stdout is captured and compared with the expected text line by line.
//!
//! The caller never prints to stdout while a function is paused: a function paused inside
//! `println!` holds stdout's lock (the whole-stack safe-point rule of DESIGN.md §3 is not
//! this file's subject). C `printf` runs entirely inside libc, where a function is never
//! paused, so several functions may print with it in turn.

mod common;

use std::fmt::Write as _;
use std::time::Duration;

use common::{Stops, drive, preemptions, spin};

const SLICE: Duration = Duration::from_micros(100);

/// The text of line `index` of function `function` (long, so printing takes a while).
fn line_text(function: u64, index: u64) -> String {
    let mut text = format!("{function} {index}");
    for k in 0..12 {
        write!(
            text,
            " {:016x}",
            spin(function * 1_000_003 + index * 31 + k, 3)
        )
        .expect("fmt");
    }
    text
}

/// Runs `scenario` in a child process, or plays it if this is that child. Returns the child's
/// output.
fn in_child(test: &str, scenario: fn()) -> Option<common::ChildOutput> {
    if let Some(mode) = common::child_mode() {
        assert_eq!(mode, test);
        scenario();
        common::print_child_ok(test);
        return None;
    }
    let output = common::run_child(test, test, &[]);
    output.assert_child_ok(test);
    Some(output)
}

/// Checks that the lines of function `function` are exactly lines 0..n for some n ≥ `at_least`.
fn check_lines(output: &common::ChildOutput, prefix: &str, function: u64, at_least: u64) {
    let tag = format!("{function} ");
    let lines: Vec<String> = output
        .lines_with(prefix)
        .into_iter()
        .filter(|line| line.starts_with(&tag))
        .collect();
    assert!(
        lines.len() as u64 >= at_least,
        "function {function} printed {} lines",
        lines.len()
    );
    for (index, line) in lines.iter().enumerate() {
        assert_eq!(
            line,
            &line_text(function, index as u64),
            "function {function}, line {index}"
        );
    }
}

/// The child's preemption count, reported after everything was printed.
fn reported_preemptions(output: &common::ChildOutput) -> u64 {
    output
        .lines_with("tls-preemptions: ")
        .first()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no preemption count: {}", output.describe()))
}

const PRINTLN_FUNCTIONS: u64 = 3;
const PRINTLN_TARGET: u64 = 200;

#[test]
fn println_inside_functions_under_preemption() {
    let Some(output) = in_child("println_inside_functions_under_preemption", || {
        let before = preemptions();
        // One function at a time: a paused one may hold stdout's lock.
        for function in 0..PRINTLN_FUNCTIONS {
            let stops = Stops::leaked(PRINTLN_TARGET);
            let linger = inger::launch(
                move || {
                    let mut index = 0;
                    while !stops.done() || index < 100 {
                        println!("tls-println: {}", line_text(function, index));
                        spin(index, 2_000);
                        index += 1;
                    }
                },
                SLICE,
            )
            .expect("launch");
            let ((), resumes) = drive(linger, SLICE, |_| stops.record());
            assert!(resumes >= PRINTLN_TARGET);
        }
        println!("\ntls-preemptions: {}", preemptions() - before);
    }) else {
        return;
    };
    for function in 0..PRINTLN_FUNCTIONS {
        check_lines(&output, "tls-println: ", function, 100);
    }
    assert!(reported_preemptions(&output) >= PRINTLN_FUNCTIONS * PRINTLN_TARGET);
}

const PRINTF_FUNCTIONS: u64 = 3;
const PRINTF_TARGET: u64 = 300;

/// Prints one line with C `printf` (into glibc's stdout buffer).
fn printf_line(function: u64, index: u64) {
    let text = std::ffi::CString::new(line_text(function, index)).expect("no NUL");
    // SAFETY: a NUL-terminated format with one %s and a matching NUL-terminated argument.
    let written = unsafe { libc::printf(c"tls-printf: %s\n".as_ptr(), text.as_ptr()) };
    assert!(written > 0, "printf failed");
}

#[test]
fn printf_inside_several_functions_in_turn_under_preemption() {
    let Some(output) = in_child(
        "printf_inside_several_functions_in_turn_under_preemption",
        || {
            let stops = Stops::leaked(PRINTF_TARGET);
            let before = preemptions();
            let mut functions: Vec<_> = (0..PRINTF_FUNCTIONS)
                .map(|function| {
                    inger::launch(
                        move || {
                            let mut index = 0;
                            while !stops.done() || index < 100 {
                                printf_line(function, index);
                                spin(index, 2_000);
                                index += 1;
                            }
                        },
                        SLICE,
                    )
                    .expect("launch")
                })
                .collect();
            while functions.iter().any(inger::Linger::is_continuation) {
                stops.record();
                for linger in &mut functions {
                    inger::resume(linger, SLICE).expect("resume");
                }
            }
            // SAFETY: flushing all C streams has no preconditions.
            assert_eq!(unsafe { libc::fflush(core::ptr::null_mut()) }, 0);
            println!("\ntls-preemptions: {}", preemptions() - before);
        },
    ) else {
        return;
    };
    for function in 0..PRINTF_FUNCTIONS {
        check_lines(&output, "tls-printf: ", function, 100);
    }
    assert!(reported_preemptions(&output) >= PRINTF_TARGET);
}

#[test]
fn printf_and_println_from_a_function_that_migrates_between_threads() {
    // The stdout locks are keyed by the thread descriptor (C) and the thread id (Rust): both
    // belong to the function, which prints on whichever kernel thread runs it.
    let Some(output) = in_child(
        "printf_and_println_from_a_function_that_migrates_between_threads",
        || {
            let stops = Stops::leaked(100);
            let mut linger = inger::launch(
                || {
                    let mut index = 0;
                    while !stops.done() || index < 100 {
                        printf_line(7, index);
                        // Flushed at once, so the two streams never split each other's lines.
                        // SAFETY: flushing all C streams has no preconditions.
                        unsafe { libc::fflush(core::ptr::null_mut()) };
                        println!("tls-println: {}", line_text(8, index));
                        spin(index, 2_000);
                        index += 1;
                    }
                    // SAFETY: flushing all C streams has no preconditions.
                    unsafe { libc::fflush(core::ptr::null_mut()) }
                },
                SLICE,
            )
            .expect("launch");
            let mut hops = 0;
            while linger.is_continuation() {
                stops.record();
                hops += 1;
                linger = std::thread::scope(|scope| {
                    scope
                        .spawn(move || {
                            inger::resume(&mut linger, SLICE).expect("resume");
                            linger
                        })
                        .join()
                        .expect("thread")
                });
            }
            assert_eq!(linger.completion(), Some(0), "fflush");
            assert!(hops >= 100);
        },
    ) else {
        return;
    };
    check_lines(&output, "tls-printf: ", 7, 100);
    check_lines(&output, "tls-println: ", 8, 100);
}
