//! An endless loop is paused when its budget runs out: `launch` returns a continuation.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

#[test]
fn an_endless_loop_comes_back_as_a_continuation() {
    let before = common::preemptions();
    let linger = inger::launch(
        || -> u64 {
            let mut n = 0u64;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        },
        Duration::from_micros(500),
    )
    .expect("launch");
    assert!(linger.is_continuation());
    assert!(!linger.is_completion());
    assert!(!linger.yielded(), "a timeout is not a yield");
    assert!(
        common::preemptions() > before,
        "the pause must have been a preemption"
    );
    assert!(!inger::in_preemptible(), "control is back in the caller");
    // Dropping it cancels the loop.
}

#[test]
fn the_loop_made_progress_before_the_pause_and_none_after() {
    static PROGRESS: AtomicU64 = AtomicU64::new(0);
    let progress = &PROGRESS;
    let mut linger = inger::launch(
        move || loop {
            progress.fetch_add(1, Relaxed);
        },
        Duration::from_millis(1),
    )
    .expect("launch");
    assert!(linger.is_continuation());
    // Had the thread been descheduled for the whole budget, the loop may not have started:
    // give it budgets until it has.
    let mut resumes = 0;
    while progress.load(Relaxed) == 0 {
        inger::resume(&mut linger, Duration::from_micros(300)).expect("resume");
        resumes += 1;
        assert!(resumes < 10_000, "the loop never ran");
    }
    let seen = progress.load(Relaxed);
    // While paused, nothing runs.
    for _ in 0..1_000_000 {
        black_box(0);
    }
    assert_eq!(
        progress.load(Relaxed),
        seen,
        "a paused function does not run"
    );
    // More budget: it runs again and is paused again.
    let mut resumes = 0;
    while progress.load(Relaxed) == seen {
        inger::resume(&mut linger, Duration::from_micros(300)).expect("resume");
        assert!(linger.is_continuation());
        assert!(!linger.yielded());
        resumes += 1;
        assert!(resumes < 10_000, "resuming never continued the loop");
    }
}

#[test]
fn endless_loops_are_paused_every_time() {
    let before = common::preemptions();
    for budget_us in [100u64, 250, 1000, 2000] {
        let linger = inger::launch(
            || loop {
                std::hint::spin_loop();
            },
            Duration::from_micros(budget_us),
        )
        .expect("launch");
        assert!(linger.is_continuation(), "budget {budget_us} us");
        drop(linger);
    }
    assert!(common::preemptions() >= before + 4);
}
