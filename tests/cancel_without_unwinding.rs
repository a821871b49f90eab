//! A cooperative cancellation whose unwinding would run nothing (no frame between the
//! cancellation point and the function's start owns anything) ends the function without
//! raising a panic; a frame that owns something, or catches, makes it unwind as before. Either
//! way the caller sees the same outcome, and the stack is reused.
//!
//! The whole test is one sequence in a binary of its own, so the process-wide counter and
//! hints it relies on are moved only by it.
//!
//! Documented semantics: `inger::Stats::cancels_without_unwinding`, `runtime::exit`.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;

/// Counts how often it is dropped.
struct Counted(&'static AtomicU32);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Relaxed);
    }
}

fn skipped() -> u64 {
    inger::stats().cancels_without_unwinding
}

fn paused<T>(f: impl FnOnce() -> T + Send + 'static) -> inger::Continuation<'static, T> {
    let linger = inger::launch(f, Duration::MAX).expect("launch");
    assert!(linger.yielded(), "the function paused");
    linger.continuation().expect("a paused function")
}

#[inline(never)]
fn pause_holding(guard: Counted) {
    inger::pause();
    drop(guard);
}

thread_local! {
    static PER_FUNCTION: Cell<Option<Counted>> = const { Cell::new(None) };
}

#[test]
fn a_cancellation_unwinds_only_when_some_frame_has_something_to_run() {
    static DROPS: AtomicU32 = AtomicU32::new(0);

    // Nothing owned between `pause` and the start: the unwinding is skipped.
    let before = skipped();
    assert_eq!(paused(inger::pause).cancel(), inger::CancelOutcome::Unwound);
    assert_eq!(skipped(), before + 1, "an empty unwinding is skipped");

    // A frame owns a value: it unwinds, and the value is dropped.
    let before = skipped();
    let cancelled = paused(|| pause_holding(Counted(&DROPS))).cancel();
    assert_eq!(cancelled, inger::CancelOutcome::Unwound);
    assert_eq!(
        DROPS.load(Relaxed),
        1,
        "the owned value was dropped by the unwinding"
    );
    assert_eq!(skipped(), before, "a frame with a landing pad is unwound");

    // A catch inside the function sees the cancellation, and the function then returns.
    let before = skipped();
    let caught = paused(|| {
        let result = catch_unwind(AssertUnwindSafe(inger::pause));
        result
            .err()
            .is_some_and(|payload| payload.is::<inger::Cancelled>())
    });
    assert_eq!(caught.cancel(), inger::CancelOutcome::Unwound);
    assert_eq!(skipped(), before, "a frame that catches is unwound");

    // Skipped or not, the function's thread-locals are destroyed as at its normal end.
    let before = skipped();
    let drops = DROPS.load(Relaxed);
    let with_local = paused(|| {
        PER_FUNCTION.with(|slot| slot.set(Some(Counted(&DROPS))));
        inger::pause();
    });
    assert_eq!(with_local.cancel(), inger::CancelOutcome::Unwound);
    assert_eq!(skipped(), before + 1);
    assert_eq!(
        DROPS.load(Relaxed),
        drops + 1,
        "the function's thread-local was destroyed"
    );

    // The stacks the skipped cancellations left are reused as after any end.
    for round in 0..200u32 {
        let linger = inger::launch(move || round * 2, Duration::MAX).expect("launch");
        assert_eq!(linger.completion(), Some(round * 2));
        let before = skipped();
        assert_eq!(paused(inger::pause).cancel(), inger::CancelOutcome::Unwound);
        assert_eq!(skipped(), before + 1);
    }

    // `cancel_cooperatively` reports the cancellation, not a completion.
    let before = skipped();
    let continuation = paused(|| {
        inger::pause();
        7u32
    });
    let outcome = continuation.cancel_cooperatively(Duration::from_secs(10));
    assert!(
        outcome.is_ok_and(|left| left.is_none()),
        "the function is gone"
    );
    assert_eq!(skipped(), before + 1);

    // One closure type, paused with or without an owned value. After a check that found
    // something to run, the thread launches the next 254 of that type the way that unwinds
    // fastest, unchecked (a check would probably be wasted): they unwind, dropping what they
    // own. The one after them is checked again.
    let either = |owning: bool| {
        paused(move || {
            if owning {
                pause_holding(Counted(&DROPS));
            } else {
                inger::pause();
            }
        })
    };
    assert_eq!(either(false).cancel(), inger::CancelOutcome::Unwound);
    let drops = DROPS.load(Relaxed);
    let before = skipped();
    assert_eq!(either(true).cancel(), inger::CancelOutcome::Unwound);
    assert_eq!(DROPS.load(Relaxed), drops + 1);
    for round in 0..254 {
        assert_eq!(
            either(round % 100 == 7).cancel(),
            inger::CancelOutcome::Unwound
        );
    }
    assert_eq!(
        DROPS.load(Relaxed),
        drops + 4,
        "the unchecked ones drop what they own"
    );
    assert_eq!(skipped(), before, "unwound without being checked");
    assert_eq!(either(false).cancel(), inger::CancelOutcome::Unwound);
    assert_eq!(skipped(), before + 1, "checked again");
}
