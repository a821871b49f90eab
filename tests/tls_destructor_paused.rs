//! A function's thread-local destructors run in its own context after its closure returned:
//! a destructor may call `pause()`, or take longer than the budget. The function must still
//! complete, once, with its value, and the destructor must finish. (A pause or preemption
//! there once turned the finished function back into a paused one.)

mod common;

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use common::{drive, spin};

/// Calls `pause()` from its destructor, then counts itself.
struct PausesWhenDropped(&'static AtomicUsize);

impl Drop for PausesWhenDropped {
    fn drop(&mut self) {
        inger::pause();
        self.0.fetch_add(1, Relaxed);
    }
}

/// Computes for a while in its destructor (long enough to span many time slices), then
/// counts itself.
struct ComputesWhenDropped {
    drops: &'static AtomicUsize,
}

impl Drop for ComputesWhenDropped {
    fn drop(&mut self) {
        std::hint::black_box(spin(11, 3_000_000));
        self.drops.fetch_add(1, Relaxed);
    }
}

thread_local! {
    static PAUSES: RefCell<Option<PausesWhenDropped>> = const { RefCell::new(None) };
    static COMPUTES: RefCell<Option<ComputesWhenDropped>> = const { RefCell::new(None) };
}

#[test]
fn a_destructor_that_pauses_lets_the_function_complete() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    std::thread::spawn(|| {
        let linger = inger::launch(
            || {
                PAUSES.with_borrow_mut(|p| *p = Some(PausesWhenDropped(&DROPS)));
                42u32
            },
            Duration::MAX,
        )
        .expect("launch");
        // The closure returned; its destructor paused.
        assert!(linger.is_continuation(), "paused inside the destructor");
        assert!(linger.yielded());
        assert_eq!(DROPS.load(Relaxed), 0);
        let (value, stops) = drive(linger, Duration::MAX, |_| {});
        assert_eq!(value, 42);
        assert_eq!(stops, 1);
        assert_eq!(DROPS.load(Relaxed), 1);
    })
    .join()
    .expect("thread");
    assert_eq!(DROPS.load(Relaxed), 1);
}

#[test]
fn a_long_destructor_under_a_short_budget_lets_the_function_complete() {
    // Whether the destructor may be paused depends on the safe-point rule (libc's
    // `__call_tls_dtors` is below it on the stack); either way the function completes once.
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    std::thread::spawn(|| {
        let linger = inger::launch(
            || {
                COMPUTES.with_borrow_mut(|c| *c = Some(ComputesWhenDropped { drops: &DROPS }));
                String::from("done")
            },
            Duration::from_micros(100),
        )
        .expect("launch");
        let (value, _) = drive(linger, Duration::from_micros(100), |_| {});
        assert_eq!(value, "done");
        assert_eq!(DROPS.load(Relaxed), 1);
    })
    .join()
    .expect("thread");
    assert_eq!(DROPS.load(Relaxed), 1);
}
