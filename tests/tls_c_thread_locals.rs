//! C thread-local state inside preemptible functions: `__thread` variables of a C library
//! loaded at start-up, and pthread keys (below and above 32). The caller and each function see
//! their own values across many preemptions (some landing inside the C code), and a function
//! on a reused block starts from the initial values. The library (`tests/c/tls/thread_vars.c`)
//! is compiled by the test and preloaded into a child process (this test binary, re-run), so
//! its TLS sits in the static TLS block like that of any library linked into a program.

mod common;

use core::ffi::{c_char, c_int, c_long};
use std::time::Duration;

use common::{Stops, as_fn, drive, global_address, preemptions, spin};

const SLICE: Duration = Duration::from_micros(100);

/// The C library's functions, found with `dlsym(RTLD_DEFAULT)` in the child.
#[derive(Clone, Copy)]
struct ThreadVars {
    int_get: unsafe extern "C" fn() -> c_int,
    int_set: unsafe extern "C" fn(c_int),
    text_get: unsafe extern "C" fn(*mut c_char),
    text_set: unsafe extern "C" fn(*const c_char),
    int_churn: unsafe extern "C" fn(c_int, c_long) -> c_long,
    keys_create: unsafe extern "C" fn() -> c_int,
    keys_set: unsafe extern "C" fn(isize, isize) -> c_int,
    keys_get: unsafe extern "C" fn(*mut isize, *mut isize),
}

// The wrappers below call into tests/c/tls/thread_vars.c, whose functions have exactly these
// signatures and no preconditions beyond valid pointers, which the wrappers provide.
impl ThreadVars {
    fn find() -> ThreadVars {
        // SAFETY: each type matches the C definition of the symbol in thread_vars.c.
        unsafe {
            ThreadVars {
                int_get: as_fn(global_address("tls_int_get")),
                int_set: as_fn(global_address("tls_int_set")),
                text_get: as_fn(global_address("tls_text_get")),
                text_set: as_fn(global_address("tls_text_set")),
                int_churn: as_fn(global_address("tls_int_churn")),
                keys_create: as_fn(global_address("tls_keys_create")),
                keys_set: as_fn(global_address("tls_keys_set")),
                keys_get: as_fn(global_address("tls_keys_get")),
            }
        }
    }

    fn int(&self) -> i32 {
        // SAFETY: see the impl comment.
        unsafe { (self.int_get)() }
    }

    fn set_int(&self, value: i32) {
        // SAFETY: see the impl comment.
        unsafe { (self.int_set)(value) }
    }

    fn text(&self) -> String {
        let mut buffer = [0u8; 32];
        // SAFETY: tls_text_get writes exactly 32 bytes, NUL-terminated.
        unsafe { (self.text_get)(buffer.as_mut_ptr().cast()) };
        let end = buffer.iter().position(|&b| b == 0).expect("NUL-terminated");
        String::from_utf8_lossy(&buffer[..end]).into_owned()
    }

    fn set_text(&self, text: &std::ffi::CStr) {
        // SAFETY: a NUL-terminated string; the C side copies at most 31 bytes.
        unsafe { (self.text_set)(text.as_ptr()) }
    }

    /// Runs the C loop that re-reads `tls_int`; returns how often it changed under it.
    fn churn(&self, value: i32, rounds: i64) -> i64 {
        // SAFETY: see the impl comment.
        unsafe { (self.int_churn)(value, rounds) }
    }

    fn create_keys(&self) -> i32 {
        // SAFETY: see the impl comment.
        unsafe { (self.keys_create)() }
    }

    fn set_keys(&self, low: isize, high: isize) {
        // SAFETY: see the impl comment (the keys were created first).
        let result = unsafe { (self.keys_set)(low, high) };
        assert_eq!(result, 0, "pthread_setspecific");
    }

    fn keys(&self) -> (isize, isize) {
        let (mut low, mut high) = (0, 0);
        // SAFETY: two valid out-pointers.
        unsafe { (self.keys_get)(&mut low, &mut high) };
        (low, high)
    }
}

/// Runs `scenario` in a child process with the C library preloaded, or plays it if this is
/// that child.
fn in_child_with_library(test: &str, scenario: fn(ThreadVars)) {
    if let Some(mode) = common::child_mode() {
        assert_eq!(mode, test);
        scenario(ThreadVars::find());
        common::print_child_ok(test);
        return;
    }
    let library = common::compile_c("tls/thread_vars.c", "thread_vars", &[]);
    let output = common::run_child(
        test,
        test,
        &[("LD_PRELOAD", library.to_str().expect("UTF-8 path"))],
    );
    output.assert_child_ok(test);
}

#[test]
fn c_thread_variables_are_isolated_across_preemptions() {
    in_child_with_library("c_thread_variables_are_isolated_across_preemptions", |c| {
        const TARGET: u64 = 300;
        c.set_int(100);
        c.set_text(c"caller");
        let stops = Stops::leaked(TARGET);
        let before = preemptions();
        let linger = inger::launch(
            move || {
                let first = (c.int(), c.text());
                c.set_text(c"function");
                let mut wrong = Vec::new();
                let mut round = 0;
                while !stops.done() {
                    let value = 1000 + round;
                    let changed = c.churn(value, 20_000);
                    if changed != 0 || c.int() != value {
                        wrong.push((round, changed, c.int()));
                    }
                    round += 1;
                }
                (first, wrong, c.text())
            },
            SLICE,
        )
        .expect("launch");
        let mut caller_wrong = Vec::new();
        let mut expected = 100;
        let ((first, wrong, text), resumes) = drive(linger, SLICE, |stop| {
            if (c.int(), c.text()) != (expected, String::from("caller")) {
                caller_wrong.push((stop, c.int(), c.text()));
            }
            expected = 100 + stop as i32;
            c.set_int(expected);
            stops.record();
        });
        assert_eq!(first, (42, String::from("initial")), "initial values");
        assert!(wrong.is_empty(), "the function's values changed: {wrong:?}");
        assert!(
            caller_wrong.is_empty(),
            "the caller's values changed: {caller_wrong:?}"
        );
        assert_eq!(text, "function");
        assert_eq!((c.int(), c.text()), (expected, String::from("caller")));
        assert!(resumes >= TARGET);
        assert!(preemptions() - before >= TARGET);
    });
}

#[test]
fn c_thread_variables_start_from_their_initial_values_in_a_reused_block() {
    in_child_with_library(
        "c_thread_variables_start_from_their_initial_values_in_a_reused_block",
        |c| {
            c.set_int(-1);
            for round in 0..100 {
                let seen = inger::launch(
                    move || {
                        let seen = (c.int(), c.text());
                        c.set_int(round);
                        c.set_text(c"changed");
                        seen
                    },
                    Duration::MAX,
                )
                .expect("launch")
                .completion()
                .expect("completed");
                assert_eq!(seen, (42, String::from("initial")), "round {round}");
            }
            // Cancelled while preempted inside the C loop, after changing both.
            for round in 0..10 {
                let paused = inger::launch(
                    move || {
                        c.set_text(c"cancelled");
                        loop {
                            c.churn(round, 1_000_000);
                        }
                    },
                    SLICE,
                )
                .expect("launch");
                assert!(paused.is_continuation());
                drop(paused);
                let seen = inger::launch(move || (c.int(), c.text()), Duration::MAX)
                    .expect("launch")
                    .completion()
                    .expect("completed");
                assert_eq!(seen, (42, String::from("initial")), "after cancel {round}");
            }
            assert_eq!((c.int(), c.text()), (-1, String::from("initial")));
        },
    );
}

#[test]
fn pthread_keys_are_isolated_and_cleared_for_the_next_function() {
    in_child_with_library(
        "pthread_keys_are_isolated_and_cleared_for_the_next_function",
        |c| {
            const TARGET: u64 = 200;
            let high = c.create_keys();
            assert!(high >= 32, "a key at or above 32 was created ({high})");
            c.set_keys(1, 2);
            let stops = Stops::leaked(TARGET);
            let make = |id: isize| {
                move || {
                    let first = c.keys();
                    let mut wrong = Vec::new();
                    let mut round = 0;
                    while !stops.done() {
                        let values = (id * 1000 + round, id * 1000 + round + 1);
                        c.set_keys(values.0, values.1);
                        spin(round as u64, 5_000);
                        if c.keys() != values {
                            wrong.push((round, c.keys()));
                        }
                        round += 1;
                    }
                    (first, wrong)
                }
            };
            let before = preemptions();
            let mut a = inger::launch(make(1), SLICE).expect("launch a");
            let mut b = inger::launch(make(2), SLICE).expect("launch b");
            let mut caller_wrong = Vec::new();
            let mut expected = (1, 2);
            let mut stop = 0;
            while a.is_continuation() || b.is_continuation() {
                if c.keys() != expected {
                    caller_wrong.push((stop, c.keys()));
                }
                expected = (-stop, -stop - 1);
                c.set_keys(expected.0, expected.1);
                stops.record();
                stop += 1;
                inger::resume(&mut a, SLICE).expect("resume a");
                inger::resume(&mut b, SLICE).expect("resume b");
            }
            for (name, linger) in [("a", a), ("b", b)] {
                let (first, wrong) = linger.completion().expect("completed");
                assert_eq!(first, (0, 0), "{name} starts with no values");
                assert!(wrong.is_empty(), "{name}'s values changed: {wrong:?}");
            }
            assert!(
                caller_wrong.is_empty(),
                "the caller's values changed: {caller_wrong:?}"
            );
            assert!(preemptions() - before >= TARGET);
            // The next functions reuse those blocks: no values left over.
            for round in 0..50 {
                let first = inger::launch(
                    move || {
                        let first = c.keys();
                        c.set_keys(round, round);
                        first
                    },
                    Duration::MAX,
                )
                .expect("launch")
                .completion()
                .expect("completed");
                assert_eq!(first, (0, 0), "round {round}");
            }
            assert_eq!(c.keys(), expected);
        },
    );
}
