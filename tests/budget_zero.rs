//! A zero budget only prepares the call: nothing runs until the first resume.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::time::Duration;

#[test]
fn a_zero_budget_prepares_without_running() {
    static RAN: AtomicBool = AtomicBool::new(false);
    let ran = &RAN;
    let mut linger = inger::launch(
        || {
            ran.store(true, Relaxed);
            String::from("ran")
        },
        Duration::ZERO,
    )
    .expect("launch");
    assert!(linger.is_continuation());
    assert!(!linger.yielded());
    match &linger {
        inger::Linger::Continuation(c) => assert!(c.is_unstarted()),
        inger::Linger::Completion(_) => unreachable!(),
    }
    assert!(
        !ran.load(Relaxed),
        "the closure must not run before a resume"
    );

    inger::resume(&mut linger, Duration::MAX).expect("resume");
    assert!(ran.load(Relaxed));
    assert_eq!(linger.completion().as_deref(), Some("ran"));
}

#[test]
fn a_prepared_call_runs_on_resume_with_a_budget_and_can_be_preempted() {
    let mut linger = inger::launch(
        || loop {
            std::hint::spin_loop()
        },
        Duration::ZERO,
    )
    .expect("launch");
    let before = inger::stats().preemptions;
    inger::resume(&mut linger, Duration::from_micros(300)).expect("resume");
    assert!(linger.is_continuation());
    match &linger {
        inger::Linger::Continuation(c) => assert!(!c.is_unstarted(), "it started on the resume"),
        inger::Linger::Completion(_) => unreachable!(),
    }
    assert!(inger::stats().preemptions > before);
}

#[test]
fn the_continuation_api_starts_a_prepared_call() {
    let linger = inger::launch(|| 5u8, Duration::ZERO).expect("launch");
    let inger::Linger::Continuation(continuation) = linger else {
        panic!("prepared call completed")
    };
    let linger = continuation.resume(common::GENEROUS).expect("resume");
    assert_eq!(linger.completion(), Some(5));
}

/// Counts how often it is dropped.
struct Counted<'a>(&'a AtomicU32);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Relaxed);
    }
}

#[test]
fn dropping_a_prepared_call_drops_the_closure_without_running_it() {
    static DROPS: AtomicU32 = AtomicU32::new(0);
    let drops = &DROPS;
    static RAN: AtomicBool = AtomicBool::new(false);
    let ran = &RAN;
    let owned = Counted(drops);
    let ran_flag = ran;
    let linger = inger::launch(
        move || {
            let _keep = &owned;
            ran_flag.store(true, Relaxed);
        },
        Duration::ZERO,
    )
    .expect("launch");
    assert_eq!(drops.load(Relaxed), 0);
    drop(linger);
    assert_eq!(
        drops.load(Relaxed),
        1,
        "the closure's captures are dropped exactly once"
    );
    assert!(!ran.load(Relaxed));
}

#[test]
fn many_prepared_calls_can_wait_and_then_run_in_any_order() {
    let mut lingers: Vec<_> = (0..500u64)
        .map(|i| inger::launch(move || i * i, Duration::ZERO).expect("launch"))
        .collect();
    for (i, linger) in lingers.iter_mut().enumerate().rev() {
        assert!(linger.is_continuation());
        inger::resume(linger, Duration::MAX).expect("resume");
        assert!(linger.is_completion(), "call {i}");
    }
    for (i, linger) in lingers.into_iter().enumerate() {
        assert_eq!(linger.completion(), Some((i * i) as u64));
    }
}
