//! The cancellation check learns: once a thread's walk with the system unwinder has judged the
//! frames between a cancellation point and a function's start, later cancellations through
//! the same frames are judged from what it learned, without that walk. What it learned never
//! decides for frames it has not seen: a chain that shares its inner frames with a clean one
//! but has an outer frame that owns a value is still unwound, and the value dropped.
//!
//! One sequence in a binary of its own, so that the process-wide counters move only by it.
//!
//! Documented semantics: `inger::Stats::cancel_checks_cached`, `safepoint::cancel`.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;

/// Counts how often it is dropped.
struct Counted(&'static AtomicU32);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Relaxed);
    }
}

static DROPS: AtomicU32 = AtomicU32::new(0);

/// The innermost frame below the cancellation point, shared by both chains.
#[inline(never)]
fn wait_forever() {
    loop {
        inger::pause();
    }
}

/// Owns nothing across its call.
#[inline(never)]
fn through_a_clean_frame() {
    wait_forever();
    std::hint::black_box(());
}

/// Owns a value across its call: unwinding through it drops the value.
#[inline(never)]
fn through_a_frame_that_owns(guard: Counted) {
    wait_forever();
    drop(std::hint::black_box(guard));
}

fn cancel_paused<T: 'static>(f: impl FnOnce() -> T + Send + 'static) {
    let linger = inger::launch(f, Duration::MAX).expect("launch");
    let continuation = linger.continuation().expect("the function paused");
    assert_eq!(continuation.cancel(), inger::CancelOutcome::Unwound);
}

#[test]
fn later_checks_of_the_same_frames_are_answered_from_what_the_first_learned_on_each_thread() {
    let start = inger::stats();
    let rounds = 50;
    for _ in 0..rounds {
        cancel_paused(through_a_clean_frame);
    }
    let after_clean = inger::stats();
    assert_eq!(
        after_clean.cancels_without_unwinding - start.cancels_without_unwinding,
        rounds,
        "every cancellation through clean frames skipped the unwinding"
    );
    let cached = after_clean.cancel_checks_cached - start.cancel_checks_cached;
    assert!(
        cached >= rounds - 1,
        "only {cached} of {rounds} checks were answered from the learned verdicts"
    );

    // Same closure shape, same innermost frames, a new outer frame that owns a value: what
    // was learned about `wait_forever` must not answer for it.
    for round in 1..=rounds as u32 {
        cancel_paused(|| through_a_frame_that_owns(Counted(&DROPS)));
        assert_eq!(
            DROPS.load(Relaxed),
            round,
            "the value owned by the outer frame was dropped"
        );
    }
    let after_owned = inger::stats();
    assert_eq!(
        after_owned.cancels_without_unwinding, after_clean.cancels_without_unwinding,
        "no cancellation through the owning frame skipped the unwinding"
    );

    // And the clean chain is still judged clean after the other was learned, from learned
    // verdicts. The verdicts are kept in small sets chosen by return address, and where the
    // loader put the code decides whether the other chain's frames pushed one of the clean
    // chain's out of its set (1 run in 5 once a change moved this binary's code, when a set
    // had one slot): then the first check walks with libgcc and learns again, and the second
    // is answered from the cache.
    cancel_paused(through_a_clean_frame);
    cancel_paused(through_a_clean_frame);
    let last = inger::stats();
    assert_eq!(
        last.cancels_without_unwinding,
        after_owned.cancels_without_unwinding + 2
    );
    assert!(
        last.cancel_checks_cached > after_owned.cancel_checks_cached,
        "the clean chain's check was answered from its learned verdicts: {last:?}"
    );

    // A fresh thread has learned nothing: its first check walks, the next ones need not.
    std::thread::spawn(|| {
        let start = inger::stats();
        cancel_paused(through_a_clean_frame);
        let first = inger::stats();
        assert_eq!(
            first.cancel_checks_cached, start.cancel_checks_cached,
            "a thread's first check cannot be answered from verdicts it never learned"
        );
        cancel_paused(through_a_clean_frame);
        assert_eq!(
            inger::stats().cancel_checks_cached,
            first.cancel_checks_cached + 1
        );
    })
    .join()
    .expect("the thread's checks");
}
