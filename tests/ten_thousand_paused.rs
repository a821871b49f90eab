//! 10,000 paused continuations alive at once on one thread, all resumed to completion with
//! the right results: there is no fixed cap on concurrent preemptible functions.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

const COUNT: u64 = 10_000;

/// Each function keeps state in locals across its pause, then finishes from it.
fn body(i: u64, release: &AtomicBool) -> u64 {
    let first = common::mix(i, 16);
    let local = [i, first, i.wrapping_mul(31)];
    if i.is_multiple_of(2) {
        // Paused by the timer: spin until the caller releases everyone.
        let mut spins = 0u64;
        while !release.load(Relaxed) {
            spins = black_box(spins + 1);
        }
    } else {
        inger::pause();
    }
    local[0] ^ common::mix(local[1], 16) ^ local[2]
}

fn expected(i: u64) -> u64 {
    i ^ common::mix(common::mix(i, 16), 16) ^ i.wrapping_mul(31)
}

#[test]
fn ten_thousand_paused_functions_on_one_thread() {
    static RELEASE: AtomicBool = AtomicBool::new(false);
    let release = &RELEASE;
    let before = inger::stats();
    let mut lingers = Vec::with_capacity(COUNT as usize);
    for i in 0..COUNT {
        let release = &RELEASE;
        // The timer pauses the even ones; the odd ones pause themselves (with no budget, so
        // that a descheduled thread cannot turn their pause into a timeout).
        let budget = if i.is_multiple_of(2) {
            Duration::from_micros(100)
        } else {
            Duration::MAX
        };
        let linger = inger::launch(move || body(i, release), budget).expect("launch");
        assert!(linger.is_continuation(), "function {i} finished early");
        assert_eq!(linger.yielded(), i % 2 == 1, "function {i}");
        lingers.push(linger);
    }
    let after = inger::stats();
    assert!(after.preemptions - before.preemptions >= COUNT / 2);
    assert!(after.yields - before.yields >= COUNT / 2);

    release.store(true, Relaxed);
    // Resume in an interleaved order: odd ones first, from the back.
    for i in (0..COUNT)
        .rev()
        .filter(|i| i % 2 == 1)
        .chain((0..COUNT).filter(|i| i % 2 == 0))
    {
        let linger = &mut lingers[i as usize];
        inger::resume(linger, Duration::MAX).expect("resume");
        assert!(linger.is_completion(), "function {i} did not finish");
    }
    for (i, linger) in lingers.into_iter().enumerate() {
        assert_eq!(
            linger.completion(),
            Some(expected(i as u64)),
            "function {i}"
        );
    }
}
