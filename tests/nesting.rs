//! Preemptible functions launched inside preemptible functions: an inner budget never
//! outlives the outer one, and the chain pauses and resumes together.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

#[test]
fn an_inner_function_completes_inside_an_outer_one() {
    let linger = inger::launch(
        || {
            let inner = inger::launch(|| 20 + 1, common::GENEROUS).expect("inner launch");
            assert!(inger::in_preemptible());
            inner.completion().expect("inner completed") * 2
        },
        common::GENEROUS,
    )
    .expect("outer launch");
    assert_eq!(linger.completion(), Some(42));
}

#[test]
fn an_outer_budget_bounds_an_inner_endless_loop() {
    static STOP: AtomicBool = AtomicBool::new(false);
    let stop = &STOP;
    static INNER_PROGRESS: AtomicU64 = AtomicU64::new(0);
    let inner_progress = &INNER_PROGRESS;
    static OUTER_AFTER_INNER: AtomicBool = AtomicBool::new(false);
    let outer_after_inner = &OUTER_AFTER_INNER;
    let before = common::preemptions();
    let mut outer = inger::launch(
        || {
            // The inner function asks for an unlimited budget: only the outer one bounds it.
            let inner = inger::launch(
                || {
                    while !stop.load(Relaxed) {
                        inner_progress.fetch_add(1, Relaxed);
                    }
                    inner_progress.load(Relaxed)
                },
                Duration::MAX,
            )
            .expect("inner launch");
            outer_after_inner.store(true, Relaxed);
            inner
                .completion()
                .expect("an unlimited inner budget runs to completion")
                + 1
        },
        Duration::from_micros(500),
    )
    .expect("outer launch");
    assert!(
        outer.is_continuation(),
        "the outer launch returns when its budget expires"
    );
    assert!(!outer.yielded());
    assert!(common::preemptions() > before);
    assert!(!inger::in_preemptible());
    // Had the thread been descheduled for the whole budget, the inner loop may not have
    // started yet: give the outer budgets until it has.
    let mut resumes = 0;
    while inner_progress.load(Relaxed) == 0 {
        inger::resume(&mut outer, Duration::from_micros(200)).expect("resume");
        assert!(outer.is_continuation());
        resumes += 1;
        assert!(resumes < 10_000, "the inner loop never ran");
    }
    assert!(
        !outer_after_inner.load(Relaxed),
        "the inner function was paused with the chain, not returned to the outer"
    );

    // Resuming the outer continues the inner loop where it was, and the outer budget keeps
    // bounding it.
    let seen = inner_progress.load(Relaxed);
    let mut resumes = 0;
    while inner_progress.load(Relaxed) == seen || resumes < 10 {
        inger::resume(&mut outer, Duration::from_micros(200)).expect("resume");
        assert!(outer.is_continuation());
        assert!(!outer.yielded());
        assert!(!outer_after_inner.load(Relaxed));
        resumes += 1;
        assert!(
            resumes < 10_000,
            "resuming the outer never continued the inner loop"
        );
    }

    stop.store(true, Relaxed);
    inger::resume(&mut outer, Duration::MAX).expect("resume");
    let final_progress = inner_progress.load(Relaxed);
    assert_eq!(outer.completion(), Some(final_progress + 1));
    assert!(outer_after_inner.load(Relaxed));
}

#[test]
fn an_inner_timeout_returns_to_the_outer_function_which_resumes_it() {
    let expected = common::mix(21, 2_000_000);
    let linger = inger::launch(
        || {
            let mut inner =
                inger::launch(|| common::mix(21, 2_000_000), Duration::from_micros(100))
                    .expect("inner launch");
            let mut inner_pauses = 0u64;
            while inner.is_continuation() {
                assert!(inger::in_preemptible());
                inner_pauses += 1;
                inger::resume(&mut inner, Duration::from_micros(100)).expect("inner resume");
            }
            (inner.completion().expect("inner completed"), inner_pauses)
        },
        Duration::from_micros(300),
    )
    .expect("outer launch");
    // The outer budget may also expire while the inner function runs (how often each budget
    // wins is a matter of timing, so not asserted); either way the result is the direct one.
    let ((value, inner_pauses), _outer_resumes) =
        common::finish(linger, Duration::from_micros(300), 10_000_000);
    assert_eq!(value, expected);
    assert!(inner_pauses >= 1, "the inner budget was the smaller one");
}

#[test]
fn an_inner_pause_yields_to_the_outer_function_only() {
    let linger = inger::launch(
        || {
            let mut inner = inger::launch(
                || {
                    inger::pause();
                    "inner done"
                },
                Duration::MAX,
            )
            .expect("inner launch");
            assert!(
                inner.yielded(),
                "the inner pause returned here, to the outer"
            );
            inger::resume(&mut inner, Duration::MAX).expect("inner resume");
            inner.completion()
        },
        Duration::MAX,
    )
    .expect("outer launch");
    assert!(linger.is_completion(), "the outer function never paused");
    assert_eq!(linger.completion(), Some(Some("inner done")));
}

#[test]
fn three_levels_pause_and_resume_together() {
    static STOP_2: AtomicBool = AtomicBool::new(false);
    let stop = &STOP_2;
    static DEPTH_REACHED: AtomicU64 = AtomicU64::new(0);
    let depth_reached = &DEPTH_REACHED;
    let mut outer = inger::launch(
        || {
            let middle = inger::launch(
                || {
                    let inner = inger::launch(
                        || {
                            depth_reached.store(3, Relaxed);
                            let mut n = 0u64;
                            while !stop.load(Relaxed) {
                                n = black_box(n + 1);
                            }
                            30
                        },
                        Duration::from_secs(3600),
                    )
                    .expect("inner launch");
                    inner.completion().expect("inner budget is huge") + 2
                },
                Duration::from_secs(3600),
            )
            .expect("middle launch");
            middle.completion().expect("middle budget is huge") + 10
        },
        Duration::from_micros(400),
    )
    .expect("outer launch");
    assert!(outer.is_continuation());
    let mut resumes = 0;
    while depth_reached.load(Relaxed) != 3 {
        inger::resume(&mut outer, Duration::from_micros(100)).expect("resume");
        assert!(outer.is_continuation());
        resumes += 1;
        assert!(resumes < 10_000, "the innermost function never ran");
    }
    for _ in 0..20 {
        inger::resume(&mut outer, Duration::from_micros(100)).expect("resume");
        assert!(outer.is_continuation());
    }
    stop.store(true, Relaxed);
    inger::resume(&mut outer, Duration::MAX).expect("resume");
    assert_eq!(outer.completion(), Some(42));
}

#[test]
fn an_outer_function_may_cancel_its_paused_inner_function() {
    let linger = inger::launch(
        || {
            let inner = inger::launch(
                || loop {
                    std::hint::spin_loop();
                },
                Duration::from_micros(200),
            )
            .expect("inner launch");
            let paused = inner.is_continuation();
            drop(inner);
            paused
        },
        Duration::from_secs(60),
    )
    .expect("outer launch");
    assert_eq!(linger.completion(), Some(true));
}
