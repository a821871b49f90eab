//! errno is per function with private TLS: a function that sets errno keeps its value across
//! many preemptions while its caller sets a different errno between resumes, and each sees
//! only its own. A new function starts with errno 0, like a new thread.

mod common;

use std::time::Duration;

use common::{Stops, drive, errno, preemptions, set_errno, spin};

const SLICE: Duration = Duration::from_micros(100);

#[test]
fn function_and_caller_keep_their_own_errno_across_preemptions() {
    const TARGET: u64 = 1000;
    set_errno(libc::EINTR);
    let stops = Stops::leaked(TARGET);
    let before = preemptions();
    let linger = inger::launch(
        || {
            let initial = errno();
            let mut wrong = Vec::new();
            let mut round = 0u64;
            while !stops.done() {
                let value = 1000 + (round % 97) as i32;
                set_errno(value);
                spin(round, 5_000);
                let seen = errno();
                if seen != value {
                    wrong.push((round, value, seen));
                }
                round += 1;
            }
            (initial, wrong)
        },
        SLICE,
    )
    .expect("launch");
    let mut caller_wrong = Vec::new();
    let mut expected = libc::EINTR;
    let ((initial, wrong), resumes) = drive(linger, SLICE, |stop| {
        let seen = errno();
        if seen != expected {
            caller_wrong.push((stop, expected, seen));
        }
        expected = 5000 + (stop % 89) as i32;
        set_errno(expected);
        stops.record();
    });
    assert_eq!(initial, 0, "a new function starts with errno 0");
    assert!(wrong.is_empty(), "the function's errno changed: {wrong:?}");
    assert!(
        caller_wrong.is_empty(),
        "the caller's errno changed: {caller_wrong:?}"
    );
    assert_eq!(errno(), expected);
    assert!(resumes >= TARGET);
    assert!(preemptions() - before >= TARGET);
}

#[test]
fn errno_from_failing_calls_stays_with_whoever_made_them() {
    // The function's system calls fail with EBADF, the caller's with ENOENT.
    const TARGET: u64 = 300;
    let stops = Stops::leaked(TARGET);
    let linger = inger::launch(
        || {
            let mut seen = Vec::new();
            while !stops.done() {
                // SAFETY: closing an invalid descriptor fails with EBADF and has no effect.
                assert_eq!(unsafe { libc::close(-1) }, -1);
                spin(1, 20_000);
                seen.push(errno());
            }
            seen
        },
        SLICE,
    )
    .expect("launch");
    let mut caller_seen = Vec::new();
    let (seen, _) = drive(linger, SLICE, |_| {
        if !caller_seen.is_empty() {
            caller_seen.push(errno());
        }
        // SAFETY: a NUL-terminated path that does not exist; access only inspects it.
        let result = unsafe { libc::access(c"/nonexistent/inger/tls".as_ptr(), libc::F_OK) };
        assert_eq!(result, -1);
        caller_seen.push(errno());
        stops.record();
    });
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|&e| e == libc::EBADF), "function: {seen:?}");
    assert!(
        caller_seen.iter().all(|&e| e == libc::ENOENT),
        "caller: {caller_seen:?}"
    );
}

#[test]
fn paused_functions_each_keep_their_own_errno() {
    let make = |base: i32| {
        move || {
            let mut wrong = Vec::new();
            for step in 0..100 {
                set_errno(base + step);
                inger::pause();
                if errno() != base + step {
                    wrong.push((step, errno()));
                }
            }
            wrong
        }
    };
    let mut functions: Vec<_> = (1..=4)
        .map(|i| inger::launch(make(i * 10_000), Duration::MAX).expect("launch"))
        .collect();
    set_errno(7);
    while functions.iter().any(inger::Linger::is_continuation) {
        for linger in &mut functions {
            inger::resume(linger, Duration::MAX).expect("resume");
            assert_eq!(errno(), 7, "the caller's errno");
        }
    }
    for linger in functions {
        let wrong = linger.completion().expect("completed");
        assert!(wrong.is_empty(), "{wrong:?}");
    }
}
