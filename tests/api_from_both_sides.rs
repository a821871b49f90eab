//! inger's own functions that take a lock (`stats`, `mark_non_preemptible_symbols`, a scope's
//! `launch`) called both inside a preemptible function and by its caller on the same thread,
//! between resumes, under a storm of 20–50 µs slices. A function paused while it held such a lock
//! left its caller blocked on it for good (found as an `inger-run` hang: the program's `_exit`
//! read the statistics inside `main`'s function, and the loop resuming `main` read them too),
//! the deadlock the README warns users about for their own locks. inger's functions must not
//! set that trap: they hold their locks with preemption deferred.
//!
//! A watchdog turns a deadlock into a failure with a message instead of a test killed by the
//! harness's timeout minutes later.

mod common;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

/// Calls of each function inside the preemptible function.
const CALLS: u64 = 4_000;

/// Aborts the process with `what` unless `done` is set within a generous bound (minutes:
/// only a deadlock takes that long, never a slow machine).
fn watchdog(done: &'static AtomicBool, what: &'static str) {
    std::thread::spawn(move || {
        for _ in 0..1200 {
            std::thread::sleep(Duration::from_millis(100));
            if done.load(Relaxed) {
                return;
            }
        }
        eprintln!("deadlock: {what} is still blocked after 2 minutes");
        std::process::abort();
    });
}

#[test]
fn stats_inside_a_function_and_in_its_caller_never_deadlock() {
    static DONE: AtomicBool = AtomicBool::new(false);
    watchdog(&DONE, "stats() inside a function and in its caller");
    let mut seen = 0u64;
    let (yields, stops) = common::storm(
        || {
            let mut yields = 0;
            for call in 0..CALLS {
                yields = yields.max(inger::stats().yields);
                common::spin(call, 20);
            }
            yields
        },
        |_| seen = seen.max(inger::stats().preemptions),
    );
    DONE.store(true, Relaxed);
    assert!(stops > 0, "the storm paused the function");
    assert!(seen > 0, "the caller read the counters between resumes");
    let _ = yields;
}

#[test]
fn marking_symbols_inside_a_function_and_in_its_caller_never_deadlocks() {
    static DONE: AtomicBool = AtomicBool::new(false);
    watchdog(
        &DONE,
        "mark_non_preemptible_symbols inside a function and in its caller",
    );
    // Known already after the first call: later calls only take the lock and compare.
    inger::mark_non_preemptible_symbols(&["api_from_both_sides::never_called"]);
    let (calls, stops) = common::storm(
        || {
            for call in 0..CALLS {
                inger::mark_non_preemptible_symbols(&["api_from_both_sides::never_called"]);
                common::spin(call, 20);
            }
            CALLS
        },
        |_| inger::mark_non_preemptible_symbols(&["api_from_both_sides::never_called"]),
    );
    DONE.store(true, Relaxed);
    assert_eq!(calls, CALLS);
    assert!(stops > 0, "the storm paused the function");
}

#[test]
fn a_scope_launched_from_inside_its_function_and_by_its_owner_never_deadlocks() {
    static DONE: AtomicBool = AtomicBool::new(false);
    watchdog(
        &DONE,
        "Scope::launch inside a scoped function and by the scope's owner",
    );
    let (inner, outer, stops) = inger::scope(|s| {
        let mut linger = s
            .launch(
                || {
                    let mut completed = 0u64;
                    for call in 0..CALLS {
                        // Registered with the scope and removed again when it completes.
                        let inner = s.launch(move || common::spin(call, 20), Duration::MAX);
                        completed += u64::from(inner.expect("launch").completion().is_some());
                    }
                    completed
                },
                common::storm_slice(0),
            )
            .expect("launch");
        let (mut outer, mut stops) = (0u64, 0u64);
        while linger.is_continuation() {
            stops += 1;
            let side = s.launch(move || stops, Duration::MAX).expect("launch");
            outer += u64::from(side.completion() == Some(stops));
            inger::resume(&mut linger, common::storm_slice(stops)).expect("resume");
        }
        (linger.completion().expect("completed"), outer, stops)
    });
    DONE.store(true, Relaxed);
    assert_eq!(inner, CALLS, "every nested launch completed");
    assert!(stops > 0, "the storm paused the function");
    assert_eq!(outer, stops, "every launch between resumes completed");
}
