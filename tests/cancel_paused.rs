//! Dropping (or cancelling) a paused continuation discards the function; the thread carries
//! on normally, even after thousands of them.
//!
//! Documented semantics (DESIGN.md §6, `linger` module docs): the destructors of the
//! cancelled function's live frames do not run (what they own leaks), and its stack is
//! retired, never reused.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Counts how often it is dropped.
struct Counted<'a>(&'a AtomicU32);

impl Drop for Counted<'_> {
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
fn dropping_a_preempted_continuation_discards_it() {
    let progress = AtomicU64::new(0);
    let drops = AtomicU32::new(0);
    let guard = Counted(&drops);
    let before = common::preemptions();
    let linger = inger::launch(
        || {
            let _live_frame_value = guard;
            endless(&progress)
        },
        Duration::from_micros(300),
    )
    .expect("launch");
    assert!(linger.is_continuation());
    assert!(common::preemptions() > before);
    let seen = progress.load(Relaxed);
    drop(linger);
    assert_eq!(
        drops.load(Relaxed),
        0,
        "destructors of a cancelled function's live frames do not run"
    );
    assert_eq!(
        progress.load(Relaxed),
        seen,
        "a cancelled function never runs again"
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
fn cancel_discards_a_yielded_continuation() {
    let after_pause = AtomicU32::new(0);
    let linger = inger::launch(
        || {
            inger::pause();
            after_pause.fetch_add(1, Relaxed);
        },
        Duration::MAX,
    )
    .expect("launch");
    let inger::Linger::Continuation(continuation) = linger else {
        panic!("completed early")
    };
    assert!(continuation.yielded());
    continuation.cancel();
    assert_eq!(after_pause.load(Relaxed), 0);
    assert_eq!(
        after_pause.load(Relaxed),
        0,
        "still zero after the cancellation"
    );
}

#[test]
fn the_borrowed_data_is_usable_again_after_a_cancellation() {
    let mut data = vec![0u64; 1024];
    let linger = inger::launch(
        || loop {
            for slot in data.iter_mut() {
                *slot = black_box(*slot + 1);
            }
        },
        Duration::from_micros(300),
    )
    .expect("launch");
    assert!(linger.is_continuation());
    drop(linger);
    data.fill(7); // compiles only because the cancelled function's borrow is over
    assert!(data.iter().all(|&v| v == 7));
}

#[test]
fn dropping_thousands_of_paused_continuations() {
    let progress = AtomicU64::new(0);
    let before = common::preemptions();
    for round in 0..4 {
        let mut lingers = Vec::new();
        // Half preempted by the timer, half paused cooperatively.
        for i in 0..500u64 {
            let progress = &progress;
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
