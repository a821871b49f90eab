//! Cancelling a paused continuation: a function that reaches a cancellation point within the
//! grace budget unwinds (its destructors run); one that does not is discarded (its
//! destructors never run, its stack is frozen, never reused), as is one cancelled with
//! `discard`. The thread carries on normally, even after thousands of them.
//!
//! Documented semantics: `inger::Continuation` ("Cancellation and soundness").

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Counts how often it is dropped.
struct Counted(&'static AtomicU32);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Relaxed);
    }
}

fn endless(progress: &AtomicU64) -> u64 {
    loop {
        progress.fetch_add(1, Relaxed);
        black_box(common::mix(1, 4));
    }
}

#[test]
fn discarding_a_preempted_continuation_runs_nothing_more_of_it() {
    static PROGRESS: AtomicU64 = AtomicU64::new(0);
    static DROPS: AtomicU32 = AtomicU32::new(0);
    let guard = Counted(&DROPS);
    let before = common::preemptions();
    let linger = inger::launch(
        move || {
            let _live_frame_value = guard;
            endless(&PROGRESS)
        },
        Duration::from_micros(300),
    )
    .expect("launch");
    assert!(common::preemptions() > before);
    let paused = linger.continuation().expect("an endless loop completed");
    let seen = PROGRESS.load(Relaxed);
    paused.discard();
    assert_eq!(
        DROPS.load(Relaxed),
        0,
        "destructors of a discarded function's live frames do not run"
    );
    assert_eq!(
        PROGRESS.load(Relaxed),
        seen,
        "a discarded function never runs again"
    );
    assert!(!inger::in_preemptible());
    // The thread still launches, preempts and completes functions.
    let expected = common::mix(4, 500_000);
    let linger =
        inger::launch(|| common::mix(4, 500_000), Duration::from_micros(100)).expect("launch");
    assert_eq!(
        common::finish(linger, Duration::from_micros(100), 1_000_000).0,
        expected
    );
}

#[test]
fn dropping_a_function_with_no_cancellation_point_discards_it_after_the_grace() {
    static PROGRESS: AtomicU64 = AtomicU64::new(0);
    static DROPS: AtomicU32 = AtomicU32::new(0);
    let guard = Counted(&DROPS);
    let linger = inger::launch(
        move || {
            let _live_frame_value = guard;
            endless(&PROGRESS)
        },
        Duration::from_micros(300),
    )
    .expect("launch");
    let paused = linger.continuation().expect("an endless loop completed");
    assert_eq!(paused.cancel(), inger::CancelOutcome::Discarded);
    assert_eq!(
        DROPS.load(Relaxed),
        0,
        "it was never asked to unwind in vain"
    );
    let seen = PROGRESS.load(Relaxed);
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(
        PROGRESS.load(Relaxed),
        seen,
        "a discarded function never runs again"
    );
}

#[test]
fn dropping_a_preempted_function_that_reaches_a_checkpoint_unwinds_it() {
    static DROPS: AtomicU32 = AtomicU32::new(0);
    let guard = Counted(&DROPS);
    let linger = inger::launch(
        move || {
            let _live_frame_value = guard;
            loop {
                black_box(common::mix(1, 4));
                inger::checkpoint();
            }
        },
        Duration::from_micros(300),
    )
    .expect("launch");
    let paused = linger.continuation().expect("an endless loop completed");
    assert_eq!(paused.cancel(), inger::CancelOutcome::Unwound);
    assert_eq!(
        DROPS.load(Relaxed),
        1,
        "the live frame's destructor ran once"
    );
}

#[test]
fn cancel_unwinds_a_yielded_continuation_without_running_the_rest() {
    static AFTER_PAUSE: AtomicU32 = AtomicU32::new(0);
    static DROPS: AtomicU32 = AtomicU32::new(0);
    let guard = Counted(&DROPS);
    let linger = inger::launch(
        move || {
            let _guard = guard;
            inger::pause();
            AFTER_PAUSE.fetch_add(1, Relaxed);
        },
        Duration::MAX,
    )
    .expect("launch");
    let continuation = linger.continuation().expect("completed early");
    assert!(continuation.yielded());
    assert_eq!(continuation.cancel(), inger::CancelOutcome::Unwound);
    assert_eq!(AFTER_PAUSE.load(Relaxed), 0, "nothing after the pause ran");
    assert_eq!(DROPS.load(Relaxed), 1, "its destructors ran");
}

#[test]
fn borrowed_data_is_usable_again_after_a_scoped_function_unwinds() {
    let mut data = vec![0u64; 1024];
    inger::scope(|s| {
        let linger = s
            .launch(
                || loop {
                    for slot in data.iter_mut() {
                        *slot = black_box(*slot + 1);
                    }
                    inger::checkpoint();
                },
                Duration::from_micros(300),
            )
            .expect("launch");
        let paused = linger.continuation().expect("an endless loop completed");
        assert_eq!(paused.cancel(), inger::CancelOutcome::Unwound);
    });
    data.fill(7); // compiles only because the scope ended the function's borrow
    assert!(data.iter().all(|&v| v == 7));
}

#[test]
fn dropping_thousands_of_paused_continuations() {
    static PROGRESS: AtomicU64 = AtomicU64::new(0);
    let before = common::preemptions();
    for round in 0..4 {
        let mut lingers = Vec::new();
        // Half preempted by the timer (discarded after the grace), half paused
        // cooperatively (they unwind).
        for i in 0..500u64 {
            let progress = &PROGRESS;
            let linger = if i % 2 == 0 {
                inger::launch(move || endless(progress), Duration::from_micros(100))
            } else {
                inger::launch(
                    move || {
                        let owned = vec![i; 64];
                        inger::pause();
                        owned.iter().sum::<u64>()
                    },
                    Duration::MAX,
                )
            }
            .expect("launch");
            assert!(linger.is_continuation(), "round {round} function {i}");
            lingers.push(linger);
        }
        // Drop in an order unrelated to the launch order.
        let mut order: Vec<usize> = (0..lingers.len()).collect();
        order.sort_by_key(|&i| common::mix(i as u64 + round, 2));
        let mut slots: Vec<Option<_>> = lingers.into_iter().map(Some).collect();
        for i in order {
            drop(slots[i].take());
        }
    }
    assert!(common::preemptions() >= before + 1000);
    assert!(!inger::in_preemptible());
    let expected = common::mix(5, 500_000);
    let linger =
        inger::launch(|| common::mix(5, 500_000), Duration::from_micros(100)).expect("launch");
    assert_eq!(
        common::finish(linger, Duration::from_micros(100), 1_000_000).0,
        expected
    );
}
