//! A function's thread-local destructors run in its own context after its closure returned,
//! and that context is an ordinary preemptible one: a destructor may be preempted (it is
//! user code, possibly long) or may call `pause()`. The function must still complete, once,
//! with its value, and the destructor must finish.

mod tls_support;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use tls_support::{Stops, drive, preemptions, spin};

/// Calls `pause()` from its destructor, then counts itself.
struct PausesWhenDropped(&'static AtomicUsize);

impl Drop for PausesWhenDropped {
    fn drop(&mut self) {
        inger::pause();
        self.0.fetch_add(1, Relaxed);
    }
}

/// Spins in its destructor until the caller has seen `stops` stops, then counts itself.
struct SpinsWhenDropped {
    stops: &'static Stops,
    started: &'static AtomicBool,
    drops: &'static AtomicUsize,
}

impl Drop for SpinsWhenDropped {
    fn drop(&mut self) {
        self.started.store(true, Relaxed);
        while !self.stops.done() {
            spin(11, 5_000);
        }
        self.drops.fetch_add(1, Relaxed);
    }
}

thread_local! {
    static PAUSES: RefCell<Option<PausesWhenDropped>> = const { RefCell::new(None) };
    static SPINS: RefCell<Option<SpinsWhenDropped>> = const { RefCell::new(None) };
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
fn a_destructor_preempted_many_times_lets_the_function_complete() {
    const TARGET: u64 = 100;
    static STOPS: Stops = Stops::new(TARGET);
    static STARTED: AtomicBool = AtomicBool::new(false);
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    std::thread::spawn(|| {
        let before = preemptions();
        let linger = inger::launch(
            || {
                SPINS.with_borrow_mut(|s| {
                    *s = Some(SpinsWhenDropped {
                        stops: &STOPS,
                        started: &STARTED,
                        drops: &DROPS,
                    })
                });
                String::from("done")
            },
            Duration::from_micros(100),
        )
        .expect("launch");
        let (value, stops) = drive(linger, Duration::from_micros(100), |_| STOPS.record());
        assert_eq!(value, "done");
        assert!(stops >= TARGET);
        assert!(STARTED.load(Relaxed));
        assert!(preemptions() - before >= TARGET);
        assert_eq!(DROPS.load(Relaxed), 1);
    })
    .join()
    .expect("thread");
    assert_eq!(DROPS.load(Relaxed), 1);
}
