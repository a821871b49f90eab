//! Cooperative cancellation: a paused function asked to cancel unwinds from its next
//! cancellation point (`pause`, the end of a `nopreempt` section, `checkpoint`), so the
//! destructors of its frames and of its thread-locals run and its locks are released.

use std::cell::Cell;
use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use inger::{Continuation, Error, Linger};

/// Counts its drops in the given counter.
struct DropCounter<'a>(&'a AtomicUsize);

impl Drop for DropCounter<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn paused<'a, T>(linger: Linger<'a, T>) -> Continuation<'a, T> {
    match linger {
        Linger::Continuation(continuation) => continuation,
        Linger::Completion(_) => panic!("expected the function to be paused"),
    }
}

#[test]
fn a_function_paused_by_pause_unwinds_and_runs_its_destructors() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let drops = &DROPS;
    let linger = inger::launch(
        move || {
            let _guard = DropCounter(drops);
            loop {
                inger::pause();
            }
        },
        Duration::MAX,
    )
    .expect("launch");
    let continuation = paused(linger);
    assert_eq!(drops.load(SeqCst), 0);
    let left = continuation
        .cancel_cooperatively(Duration::from_secs(10))
        .expect("cancel");
    assert!(left.is_none(), "the function unwound");
    assert_eq!(drops.load(SeqCst), 1, "its frame's destructor ran once");
}

#[test]
fn a_preempted_function_unwinds_at_its_next_checkpoint_and_releases_its_lock() {
    static DROPS_2: AtomicUsize = AtomicUsize::new(0);
    let drops = &DROPS_2;
    static LOCK: Mutex<u64> = Mutex::new(0u64);
    let lock = &LOCK;
    let before = inger::stats().preemptions;
    let mut linger = inger::launch(
        move || {
            let _guard = DropCounter(drops);
            let mut held = lock.lock().expect("lock");
            loop {
                for i in 0..10_000u64 {
                    *held = black_box(held.wrapping_add(i));
                }
                inger::checkpoint();
            }
        },
        Duration::from_micros(200),
    )
    .expect("launch");
    // Let the timer (not a pause) stop it at least once.
    let mut stops = 0;
    while inger::stats().preemptions == before && stops < 100_000 {
        linger.resume(Duration::from_micros(200)).expect("resume");
        stops += 1;
    }
    assert!(
        inger::stats().preemptions > before,
        "the timer never paused it"
    );
    let continuation = paused(linger);
    assert!(
        lock.try_lock().is_err(),
        "the function holds the lock while paused"
    );
    let left = continuation
        .cancel_cooperatively(Duration::from_secs(10))
        .expect("cancel");
    assert!(left.is_none());
    assert_eq!(drops.load(SeqCst), 1);
    // Released by unwinding (and poisoned, as after any panic while it was held).
    assert!(
        !matches!(lock.try_lock(), Err(std::sync::TryLockError::WouldBlock)),
        "the lock was released by unwinding"
    );
    assert!(lock.is_poisoned());
}

#[test]
fn a_function_with_no_cancellation_point_stays_paused_and_can_be_discarded() {
    let linger = inger::launch(
        move || {
            let mut x = 0u64;
            loop {
                x = black_box(x.wrapping_add(1));
            }
        },
        Duration::from_millis(1),
    )
    .expect("launch");
    let continuation = paused(linger);
    let still = continuation
        .cancel_cooperatively(Duration::from_millis(2))
        .expect("cancel");
    let still = still.expect("no checkpoint was reached: still paused");
    drop(still); // discards its stack
}

#[test]
fn a_function_that_completes_first_is_simply_gone() {
    static DROPS_3: AtomicUsize = AtomicUsize::new(0);
    let drops = &DROPS_3;
    let linger = inger::launch(
        move || {
            inger::pause();
            DropCounter(drops)
        },
        Duration::MAX,
    )
    .expect("launch");
    // The pause is a checkpoint only after the request: here the request comes while it is
    // paused inside `pause`, so it unwinds from there and never builds its result.
    let left = paused(linger)
        .cancel_cooperatively(Duration::from_secs(10))
        .expect("cancel");
    assert!(left.is_none());
    assert_eq!(drops.load(SeqCst), 0, "the result was never built");
}

#[test]
fn resuming_normally_after_a_request_reports_the_cancellation() {
    let linger = inger::launch(
        move || {
            let mut spins = 0u64;
            loop {
                spins = black_box(spins + 1);
                if spins.is_multiple_of(1000) {
                    inger::checkpoint();
                }
            }
        },
        Duration::from_millis(1),
    )
    .expect("launch");
    let continuation = paused(linger);
    // A zero budget: the request is made, the function runs only until the next expiry.
    let outcome = continuation.cancel_cooperatively(Duration::ZERO);
    match outcome.expect("cancel") {
        None => {} // it reached a checkpoint within that short time
        Some(continuation) => {
            let mut linger = Linger::Continuation(continuation);
            let mut result = Ok(());
            for _ in 0..10_000 {
                result = inger::resume(&mut linger, Duration::from_millis(1));
                if result.is_err() {
                    break;
                }
            }
            assert_eq!(result, Err(Error::Cancelled));
            assert_eq!(
                inger::resume(&mut linger, Duration::MAX),
                Err(Error::Finished)
            );
        }
    }
}

thread_local! {
    static TLS_DROPS: Cell<usize> = const { Cell::new(0) };
}

struct CountsIntoStatic(&'static AtomicUsize);

impl Drop for CountsIntoStatic {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

thread_local! {
    static OWNED: std::cell::RefCell<Option<CountsIntoStatic>> = const { std::cell::RefCell::new(None) };
}

#[test]
fn thread_local_destructors_run_after_a_cooperative_cancellation() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    if !inger::capabilities().private_tls {
        eprintln!(
            "note: shared TLS in this process; the function's thread-locals are the caller's"
        );
        return;
    }
    let linger = inger::launch(
        move || {
            OWNED.with_borrow_mut(|owned| *owned = Some(CountsIntoStatic(&DROPS)));
            TLS_DROPS.with(|count| count.set(1));
            loop {
                inger::pause();
            }
        },
        Duration::MAX,
    )
    .expect("launch");
    let left = paused(linger)
        .cancel_cooperatively(Duration::from_secs(10))
        .expect("cancel");
    assert!(left.is_none());
    assert_eq!(
        DROPS.load(SeqCst),
        1,
        "the function's thread-local was destroyed"
    );
    assert_eq!(
        TLS_DROPS.with(Cell::get),
        0,
        "the caller's copy was never touched"
    );
}

#[test]
fn a_nested_chain_unwinds_as_a_whole() {
    static DROPS_4: AtomicUsize = AtomicUsize::new(0);
    let drops = &DROPS_4;
    let linger = inger::launch(
        move || {
            let _outer = DropCounter(drops);
            let inner = inger::launch(
                || {
                    let _inner = DropCounter(drops);
                    let mut x = 0u64;
                    loop {
                        x = black_box(x.wrapping_add(1));
                        if x.is_multiple_of(4096) {
                            inger::checkpoint();
                        }
                    }
                },
                Duration::from_secs(3600),
            );
            // Only reached if the inner function stopped by itself (it does not).
            drop(inner);
        },
        Duration::from_millis(2),
    )
    .expect("launch");
    let continuation = paused(linger);
    let left = continuation
        .cancel_cooperatively(Duration::from_secs(10))
        .expect("cancel");
    assert!(left.is_none(), "the chain unwound");
    assert_eq!(drops.load(SeqCst), 2, "both frames' destructors ran");
}

#[test]
fn a_nested_function_made_to_yield_does_not_count_as_overshooting_a_budget() {
    let linger = inger::launch(
        move || {
            // Never reaches a cancellation point: the timer pauses it when told to yield.
            let inner = inger::launch(
                || {
                    let mut x = 0u64;
                    loop {
                        x = black_box(x.wrapping_add(1));
                    }
                },
                Duration::from_secs(3600),
            );
            drop(inner);
        },
        Duration::from_millis(2),
    )
    .expect("launch");
    let continuation = paused(linger);
    let before = inger::stats().preemptions;
    let left = continuation
        .cancel_cooperatively(Duration::from_secs(10))
        .expect("cancel");
    assert!(left.is_none(), "the chain unwound");
    let stats = inger::stats();
    assert!(
        stats.preemptions > before,
        "the inner function was never preempted: {stats:?}"
    );
    // The yield's forced deadline is not a budget: nothing was late by anything like the
    // machine's uptime.
    assert!(
        stats.longest_deferral_ns < 1_000_000_000 && stats.longest_wait_ns < 1_000_000_000,
        "{stats:?}"
    );
}

#[test]
fn a_function_cancelled_on_its_way_to_a_nested_resume_unwinds_there_without_running_it() {
    // The function is preempted after launching a nested function (unstarted) and before
    // resuming it; the cancellation request then reaches only the function itself. The
    // nested resume is a cancellation point before the nested function runs: without that,
    // the nested one would run for the whole grace budget (it never reaches a cancellation
    // point of its own) and the cancellation would come back unfinished.
    static DROPS_5: AtomicUsize = AtomicUsize::new(0);
    static CANCEL_SENT: AtomicUsize = AtomicUsize::new(0);
    static NESTED_RAN: AtomicUsize = AtomicUsize::new(0);
    let drops = &DROPS_5;
    let linger = inger::launch(
        move || {
            let _outer = DropCounter(drops);
            let nested = inger::launch(
                || {
                    NESTED_RAN.fetch_add(1, SeqCst);
                    let mut x = 0u64;
                    loop {
                        x = black_box(x.wrapping_add(1));
                    }
                },
                Duration::ZERO, // created, not run
            )
            .expect("nested launch");
            // Preemptible code without a cancellation point, until the caller has asked.
            while CANCEL_SENT.load(SeqCst) == 0 {
                black_box(());
            }
            let nested = paused(nested);
            let _ = nested.resume(Duration::from_secs(3600));
        },
        Duration::from_millis(1),
    )
    .expect("launch");
    let continuation = paused(linger);
    CANCEL_SENT.store(1, SeqCst);
    let left = continuation
        .cancel_cooperatively(Duration::from_secs(10))
        .expect("cancel");
    assert!(left.is_none(), "the function unwound at the nested resume");
    assert_eq!(drops.load(SeqCst), 1, "its destructor ran");
    assert_eq!(NESTED_RAN.load(SeqCst), 0, "the nested function never ran");
}
