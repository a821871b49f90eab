//! `pause()` hands control back to the resumer at once; `yielded()` tells it from a timeout.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;

#[test]
fn pause_returns_a_continuation_that_reports_yielded() {
    static STEP: AtomicU32 = AtomicU32::new(0);
    let step = &STEP;
    let before = inger::stats().yields;
    let mut linger = inger::launch(
        move || {
            step.store(1, Relaxed);
            inger::pause();
            step.store(2, Relaxed);
            inger::pause();
            step.store(3, Relaxed);
            "finished"
        },
        Duration::MAX,
    )
    .expect("launch");
    assert!(linger.is_continuation());
    assert!(linger.yielded());
    assert_eq!(step.load(Relaxed), 1);

    inger::resume(&mut linger, Duration::MAX).expect("resume");
    assert!(linger.yielded());
    assert_eq!(step.load(Relaxed), 2);

    inger::resume(&mut linger, Duration::MAX).expect("resume");
    assert!(linger.is_completion());
    assert!(!linger.yielded(), "a completion never reports a yield");
    assert_eq!(step.load(Relaxed), 3);
    assert_eq!(linger.completion(), Some("finished"));
    assert!(inger::stats().yields >= before + 2);
}

#[test]
fn pause_outside_a_preemptible_function_does_nothing() {
    assert!(!inger::in_preemptible());
    inger::pause();
    inger::pause();
    // And after the runtime has started on this thread too.
    let linger = inger::launch(|| 1, Duration::MAX).expect("launch");
    assert_eq!(linger.completion(), Some(1));
    inger::pause();
}

#[test]
fn a_timeout_after_a_yield_is_not_reported_as_a_yield() {
    let mut linger = inger::launch(
        || {
            inger::pause();
            let mut n = 0u64;
            loop {
                n = black_box(n + 1);
            }
        },
        Duration::MAX,
    )
    .expect("launch");
    assert!(linger.yielded());
    let before = common::preemptions();
    inger::resume(&mut linger, Duration::from_micros(500)).expect("resume");
    assert!(linger.is_continuation());
    assert!(!linger.yielded(), "this pause was the timer's");
    assert!(common::preemptions() > before);
}

#[test]
fn a_yield_within_the_budget_is_reported_as_a_yield() {
    // Many yields, each well within the budget: every stop is a yield.
    let mut linger = inger::launch(
        || {
            for _ in 0..1000 {
                inger::pause();
            }
            7
        },
        common::GENEROUS,
    )
    .expect("launch");
    let mut yields = 0;
    while linger.is_continuation() {
        assert!(linger.yielded());
        yields += 1;
        inger::resume(&mut linger, common::GENEROUS).expect("resume");
    }
    assert_eq!(yields, 1000);
    assert_eq!(linger.completion(), Some(7));
}

#[test]
fn the_function_state_survives_cooperative_pauses() {
    let expected: Vec<u64> = (0..200).map(|i| common::mix(i, 100)).collect();
    let linger = inger::launch(
        || {
            let mut out = Vec::new();
            for i in 0..200 {
                out.push(common::mix(i, 100));
                inger::pause();
            }
            out
        },
        Duration::MAX,
    )
    .expect("launch");
    let (got, resumes) = common::finish(linger, Duration::MAX, 1_000);
    assert_eq!(resumes, 200);
    assert_eq!(got, expected);
}
