//! Rust `thread_local!` inside preemptible functions: each function has its own copy, distinct
//! from its caller's and from every other function's, starting from the initial value even
//! when its (pooled) block was used by an earlier function; a `RefCell` borrowed across a
//! preemption does not collide with the caller's use of the same thread-local; and the
//! function's thread-local destructors run exactly once, in the function's context, when it
//! completes (never again at thread exit, never for a cancelled function).

mod common;

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use common::{Stops, drive, preemptions, spin};

const SLICE: Duration = Duration::from_micros(100);

thread_local! {
    static COUNTER: Cell<u64> = const { Cell::new(7) };
    static LAZY: RefCell<String> = RefCell::new(String::from("initial"));
    static LOG: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    /// Which context this is, as set by the test code running in it (read by destructors).
    static CONTEXT: Cell<u64> = const { Cell::new(0) };
}

#[test]
fn private_tls_is_available_on_this_system() {
    // Every other test in this file is about private TLS; make its absence a clear failure.
    assert!(
        inger::capabilities().private_tls,
        "glibc's TLS internals were not found: {:?}",
        inger::capabilities()
    );
}

#[test]
fn caller_and_function_see_their_own_values_across_preemptions() {
    const TARGET: u64 = 300;
    COUNTER.with(|c| c.set(100));
    LAZY.with_borrow_mut(|s| s.push_str(" (caller)"));
    let stops = Stops::leaked(TARGET);
    let before = preemptions();
    let linger = inger::launch(
        || {
            let first = (COUNTER.with(Cell::get), LAZY.with_borrow(String::clone));
            LAZY.with_borrow_mut(|s| *s = String::from("function"));
            let mut wrong = Vec::new();
            let mut round = 0u64;
            while !stops.done() {
                let value = 1_000_000 + round;
                COUNTER.with(|c| c.set(value));
                spin(round, 5_000);
                let seen = COUNTER.with(Cell::get);
                if seen != value {
                    wrong.push((round, value, seen));
                }
                round += 1;
            }
            (first, wrong, LAZY.with_borrow(String::clone))
        },
        SLICE,
    )
    .expect("launch");
    let mut caller_wrong = Vec::new();
    let ((first, wrong, lazy), resumes) = drive(linger, SLICE, |stop| {
        let expected = if stop == 0 { 100 } else { 100 + stop - 1 };
        let seen = COUNTER.with(Cell::get);
        if seen != expected {
            caller_wrong.push((stop, expected, seen));
        }
        COUNTER.with(|c| c.set(100 + stop));
        stops.record();
    });
    assert_eq!(
        first,
        (7, String::from("initial")),
        "the function starts with the initial values, not the caller's"
    );
    assert!(
        wrong.is_empty(),
        "the function's thread-local changed under it: {wrong:?}"
    );
    assert!(
        caller_wrong.is_empty(),
        "the caller's thread-local changed: {caller_wrong:?}"
    );
    assert_eq!(lazy, "function");
    assert_eq!(LAZY.with_borrow(String::clone), "initial (caller)");
    // (It may be preempted again after its loop, on its way out.)
    assert!(resumes >= TARGET);
    assert!(preemptions() - before >= TARGET, "it was really preempted");
}

#[test]
fn two_paused_functions_have_separate_copies() {
    let make = |id: u64| {
        move || {
            let start = COUNTER.with(Cell::get);
            COUNTER.with(|c| c.set(id));
            LOG.with_borrow_mut(|log| log.push(id));
            for _ in 0..50 {
                inger::pause();
                COUNTER.with(|c| c.set(c.get() + id));
                LOG.with_borrow_mut(|log| log.push(id));
            }
            (start, COUNTER.with(Cell::get), LOG.with_borrow(Vec::clone))
        }
    };
    let mut a = inger::launch(make(1), Duration::MAX).expect("launch a");
    let mut b = inger::launch(make(1000), Duration::MAX).expect("launch b");
    while a.is_continuation() || b.is_continuation() {
        inger::resume(&mut a, Duration::MAX).expect("resume a");
        inger::resume(&mut b, Duration::MAX).expect("resume b");
    }
    let (a_start, a_end, a_log) = a.completion().expect("a completed");
    let (b_start, b_end, b_log) = b.completion().expect("b completed");
    assert_eq!((a_start, b_start), (7, 7));
    assert_eq!(a_end, 51);
    assert_eq!(b_end, 51_000);
    assert_eq!(a_log, vec![1; 51]);
    assert_eq!(b_log, vec![1000; 51]);
    assert!(
        LOG.with_borrow(Vec::is_empty),
        "the caller's log is untouched"
    );
}

#[test]
fn a_reused_block_starts_from_the_initial_values() {
    // Blocks are pooled: after a function finished (or was cancelled), the next one on this
    // thread gets the same block, re-initialised.
    for round in 0..200u64 {
        let seen = inger::launch(
            move || {
                let seen = (
                    COUNTER.with(Cell::get),
                    LAZY.with_borrow(String::clone),
                    LOG.with_borrow(Vec::len),
                );
                COUNTER.with(|c| c.set(round + 500));
                LAZY.with_borrow_mut(|s| *s = format!("changed {round}"));
                LOG.with_borrow_mut(|log| log.extend(0..round));
                seen
            },
            Duration::MAX,
        )
        .expect("launch")
        .completion()
        .expect("completed");
        assert_eq!(seen, (7, String::from("initial"), 0), "round {round}");
    }
    // A function preempted after changing its thread-locals, then cancelled.
    for round in 0..20u64 {
        let paused = inger::launch(
            move || {
                COUNTER.with(|c| c.set(round + 9000));
                LAZY.with_borrow_mut(|s| *s = String::from("cancelled"));
                loop {
                    std::hint::black_box(spin(round, 1000));
                }
            },
            SLICE,
        )
        .expect("launch");
        assert!(paused.is_continuation());
        drop(paused);
        let seen = inger::launch(
            || (COUNTER.with(Cell::get), LAZY.with_borrow(String::clone)),
            Duration::MAX,
        )
        .expect("launch")
        .completion()
        .expect("completed");
        assert_eq!(seen, (7, String::from("initial")), "after cancel {round}");
    }
    assert_eq!(COUNTER.with(Cell::get), 7, "the caller's own value");
    assert_eq!(LAZY.with_borrow(String::clone), "initial");
}

#[test]
fn a_refcell_borrowed_across_preemptions_while_the_caller_borrows_it_too() {
    // With shared thread-locals the caller's borrow_mut would panic ("already borrowed")
    // while the function is paused inside its own borrow.
    const TARGET: u64 = 300;
    let stops = Stops::leaked(TARGET);
    let before = preemptions();
    let linger = inger::launch(
        || {
            LOG.with_borrow_mut(|log| {
                let mut round = 0;
                while !stops.done() {
                    log.push(round);
                    spin(round, 5_000);
                    round += 1;
                }
                log.clone()
            })
        },
        SLICE,
    )
    .expect("launch");
    let (function_log, resumes) = drive(linger, SLICE, |stop| {
        LOG.with_borrow_mut(|log| log.push(1_000_000 + stop));
        stops.record();
    });
    assert!(resumes >= TARGET);
    assert!(preemptions() - before >= TARGET);
    assert!(!function_log.is_empty());
    assert!(
        function_log
            .iter()
            .copied()
            .eq(0..function_log.len() as u64),
        "the function's log holds only its own entries"
    );
    let caller_log = LOG.with_borrow_mut(std::mem::take);
    assert!(
        caller_log
            .iter()
            .copied()
            .eq((0..resumes).map(|s| 1_000_000 + s)),
        "the caller's log holds only its own entries"
    );
}

/// Counts destructor runs and checks where they ran.
struct Tally {
    drops: AtomicUsize,
    /// Drops that found themselves inside a preemptible function with the right `CONTEXT`.
    in_own_context: AtomicUsize,
}

impl Tally {
    const fn new() -> Tally {
        Tally {
            drops: AtomicUsize::new(0),
            in_own_context: AtomicUsize::new(0),
        }
    }
}

/// A value whose destructor counts itself in `tally`.
struct Counted {
    tally: &'static Tally,
    /// The `CONTEXT` of the function that created it.
    context: u64,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.tally.drops.fetch_add(1, Relaxed);
        // CONTEXT is a const-initialised Cell without a destructor: still readable here.
        if inger::in_preemptible() && CONTEXT.with(Cell::get) == self.context {
            self.tally.in_own_context.fetch_add(1, Relaxed);
        }
    }
}

thread_local! {
    static GUARD: RefCell<Option<Counted>> = const { RefCell::new(None) };
    /// Lazily initialised (its registration happens on first access, inside the function).
    static LAZY_GUARD: RefCell<Vec<Counted>> = RefCell::new(Vec::with_capacity(1));
}

/// Registers one counted thread-local value in the running function (two thread-locals: a
/// const-initialised one and a lazily initialised one).
fn register(tally: &'static Tally, context: u64) {
    CONTEXT.with(|c| c.set(context));
    GUARD.with_borrow_mut(|g| *g = Some(Counted { tally, context }));
    LAZY_GUARD.with_borrow_mut(|g| g.push(Counted { tally, context }));
}

#[test]
fn destructors_run_once_at_completion_in_the_function() {
    static TALLY: Tally = Tally::new();
    std::thread::spawn(|| {
        let linger = inger::launch(
            || {
                register(&TALLY, 41);
                inger::pause();
                41
            },
            Duration::MAX,
        )
        .expect("launch");
        assert!(linger.is_continuation());
        assert_eq!(TALLY.drops.load(Relaxed), 0, "not while paused");
        let (value, _) = drive(linger, Duration::MAX, |_| {});
        assert_eq!(value, 41);
        assert_eq!(TALLY.drops.load(Relaxed), 2, "at completion");
        assert_eq!(TALLY.in_own_context.load(Relaxed), 2, "in the function");
        assert!(
            GUARD.with_borrow(Option::is_none),
            "not in the caller's copy"
        );
    })
    .join()
    .expect("thread");
    assert_eq!(TALLY.drops.load(Relaxed), 2, "and not again at thread exit");
}

#[test]
fn destructors_run_once_for_each_of_many_functions() {
    static TALLY: Tally = Tally::new();
    const FUNCTIONS: usize = 1000;
    std::thread::spawn(|| {
        // Sequential ones (reusing one pooled block) and a batch alive at the same time.
        for i in 0..FUNCTIONS / 2 {
            let context = 10_000 + i as u64;
            inger::launch(move || register(&TALLY, context), Duration::MAX)
                .expect("launch")
                .completion()
                .expect("completed");
        }
        assert_eq!(TALLY.drops.load(Relaxed), FUNCTIONS);
        let mut batch: Vec<_> = (0..FUNCTIONS / 2)
            .map(|i| {
                let context = 20_000 + i as u64;
                inger::launch(
                    move || {
                        register(&TALLY, context);
                        inger::pause();
                    },
                    Duration::MAX,
                )
                .expect("launch")
            })
            .collect();
        assert_eq!(TALLY.drops.load(Relaxed), FUNCTIONS, "none while paused");
        for linger in &mut batch {
            inger::resume(linger, Duration::MAX).expect("resume");
            assert!(linger.is_completion());
        }
        assert_eq!(TALLY.drops.load(Relaxed), 2 * FUNCTIONS);
        assert_eq!(TALLY.in_own_context.load(Relaxed), 2 * FUNCTIONS);
    })
    .join()
    .expect("thread");
    assert_eq!(
        TALLY.drops.load(Relaxed),
        2 * FUNCTIONS,
        "none at thread exit"
    );
}

#[test]
fn destructors_run_once_for_a_function_launched_with_zero_budget() {
    static TALLY: Tally = Tally::new();
    std::thread::spawn(|| {
        let mut linger = inger::launch(|| register(&TALLY, 77), Duration::ZERO).expect("launch");
        assert!(linger.is_continuation());
        assert_eq!(TALLY.drops.load(Relaxed), 0);
        inger::resume(&mut linger, Duration::MAX).expect("resume");
        assert!(linger.is_completion());
        assert_eq!(TALLY.drops.load(Relaxed), 2);
        assert_eq!(TALLY.in_own_context.load(Relaxed), 2);
    })
    .join()
    .expect("thread");
    assert_eq!(TALLY.drops.load(Relaxed), 2);
}

#[test]
fn destructors_run_once_for_a_preempted_function_that_completes() {
    static TALLY: Tally = Tally::new();
    const TARGET: u64 = 100;
    std::thread::spawn(|| {
        let stops = Stops::leaked(TARGET);
        static RETURNING: AtomicBool = AtomicBool::new(false);
        let returning = &RETURNING;
        let before = preemptions();
        let linger = inger::launch(
            move || {
                register(&TALLY, 5);
                while !stops.done() {
                    spin(3, 5_000);
                }
                returning.store(true, Relaxed);
            },
            SLICE,
        )
        .expect("launch");
        let ((), resumes) = drive(linger, SLICE, |_| {
            // (Destructors run in the function's context, where they may be preempted too.)
            if !returning.load(Relaxed) {
                assert_eq!(
                    TALLY.drops.load(Relaxed),
                    0,
                    "not before the function returns"
                );
            }
            stops.record();
        });
        assert!(resumes >= TARGET);
        assert!(preemptions() - before >= TARGET);
        assert_eq!(TALLY.drops.load(Relaxed), 2);
        assert_eq!(TALLY.in_own_context.load(Relaxed), 2);
    })
    .join()
    .expect("thread");
    assert_eq!(TALLY.drops.load(Relaxed), 2);
}

#[test]
fn destructors_of_a_discarded_function_never_run() {
    // Discarding drops the function's stack and everything it owned (`inger::Continuation`):
    // its thread-local destructors are dropped from the list, not run later by someone else.
    static TALLY: Tally = Tally::new();
    std::thread::spawn(|| {
        let linger = inger::launch(
            || {
                register(&TALLY, 9);
                inger::pause();
            },
            Duration::MAX,
        )
        .expect("launch");
        let inger::Linger::Continuation(paused) = linger else {
            panic!("completed early")
        };
        paused.discard();
        // The block is reused by the next function, which completes normally.
        inger::launch(|| register(&TALLY, 10), Duration::MAX)
            .expect("launch")
            .completion()
            .expect("completed");
        assert_eq!(
            TALLY.drops.load(Relaxed),
            2,
            "only the completed function's"
        );
    })
    .join()
    .expect("thread");
    assert_eq!(TALLY.drops.load(Relaxed), 2);
    assert_eq!(TALLY.in_own_context.load(Relaxed), 2);
}

#[test]
fn destructors_of_a_cancelled_function_run_as_it_unwinds() {
    // Dropping a paused function lets it unwind first: its thread-local destructors run, in
    // its own context, as at a thread's exit.
    static TALLY: Tally = Tally::new();
    std::thread::spawn(|| {
        let linger = inger::launch(
            || {
                register(&TALLY, 11);
                inger::pause();
            },
            Duration::MAX,
        )
        .expect("launch");
        assert!(linger.is_continuation());
        drop(linger);
        assert_eq!(
            TALLY.drops.load(Relaxed),
            2,
            "both of its thread-locals' destructors"
        );
        assert_eq!(
            TALLY.in_own_context.load(Relaxed),
            2,
            "in the function's context (they saw its own values)"
        );
    })
    .join()
    .expect("thread");
}
