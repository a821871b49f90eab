//! Cancellation cannot break safe code (issue 11), one test per finding of the review:
//!
//! 1. a scoped thread started by a borrowing function cannot outlive the borrow: borrowing
//!    functions only run in an `inger::scope`, which finishes them before it returns (the
//!    `launch` of a borrowing closure does not compile: see the `compile_fail` examples in
//!    the docs of `inger::Continuation`);
//! 2. memory pinned on a discarded stack stays valid: a `tokio::sync::Notify` waiter linked
//!    from a discarded function is still there when the list is walked;
//! 3. a function nested in a cancelled one becomes a paused continuation of its own, which
//!    can be resumed and dropped;
//! 4. a `nopreempt` section of an outer function holds while a nested function runs;
//! 5. (the same-thread channel rule is in `tests/channel_same_thread.rs`);
//! 6. cancelling a million functions keeps page tables and address space flat, and a
//!    discarded stack costs a bounded amount;
//! 7. a preemptible future holding a `tokio::sync::Mutex` guard releases it when
//!    `tokio::time::timeout` drops it.

mod common;

use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use inger::CancelOutcome;

#[test]
fn finding_1_a_scoped_thread_finishes_before_the_borrow_ends() {
    const ROUNDS: u64 = 2_000;
    let mut data = vec![0u64; 256];
    let outcome = inger::scope(|s| {
        let linger = s
            .launch(
                || {
                    // The scoped thread writes through the borrow for a while; this function
                    // waits for it inside `std::thread::scope`, where it can be paused.
                    std::thread::scope(|threads| {
                        threads.spawn(|| {
                            for round in 1..=ROUNDS {
                                for slot in data.iter_mut() {
                                    *slot = round;
                                }
                                std::thread::sleep(Duration::from_micros(50));
                            }
                        });
                    });
                },
                Duration::from_millis(1),
            )
            .expect("launch");
        let paused = linger
            .continuation()
            .expect("the scoped thread finished within a millisecond");
        // Dropping it before the thread finished: it cannot unwind (it waits in a join), so
        // the scope keeps it and finishes it before returning.
        paused.cancel()
    });
    assert_eq!(outcome, CancelOutcome::LeftToScope);
    // The scope returned only once the thread had finished: nothing writes any more.
    assert!(
        data.iter().all(|&value| value == ROUNDS),
        "{:?}",
        &data[..4]
    );
    data.fill(7);
    std::thread::sleep(Duration::from_millis(5));
    assert!(
        data.iter().all(|&value| value == 7),
        "written after the scope ended"
    );
}

/// Polls a future once with a waker that does nothing; whether it was ready.
fn poll_once<F: std::future::Future>(future: std::pin::Pin<&mut F>) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    future.poll(&mut cx).is_ready()
}

#[test]
fn finding_2_a_pinned_waiter_on_a_discarded_stack_stays_valid() {
    let notify = Arc::new(tokio::sync::Notify::new());
    let registered = Arc::new(AtomicBool::new(false));
    let linger = inger::launch(
        {
            let notify = Arc::clone(&notify);
            let registered = Arc::clone(&registered);
            move || {
                // A waiter node pinned on this stack, linked into the Notify's list.
                let mut notified = pin!(notify.notified());
                notified.as_mut().enable();
                assert!(!poll_once(notified.as_mut()));
                registered.store(true, Relaxed);
                let mut x = 0u64;
                loop {
                    x = black_box(x.wrapping_add(1)); // no cancellation point: discarded
                }
            }
        },
        Duration::from_millis(2),
    )
    .expect("launch");
    assert!(registered.load(Relaxed), "the waiter was registered");
    let paused = linger.continuation().expect("an endless loop");
    assert_eq!(paused.cancel(), CancelOutcome::Discarded);
    // Walks the list through the discarded function's node: its memory must still be valid
    // (it was once made a guard region, and this segfaulted).
    notify.notify_waiters();
    notify.notify_waiters();
    notify.notify_one();
    // And new waiters still work.
    let mut waiter = pin!(notify.notified());
    waiter.as_mut().enable();
    notify.notify_waiters();
    assert!(poll_once(waiter));
}

#[test]
fn finding_3_a_function_nested_in_a_cancelled_one_becomes_its_own_continuation() {
    static INNER_STEPS: AtomicU64 = AtomicU64::new(0);
    let mut inner = inger::launch(
        || loop {
            INNER_STEPS.fetch_add(1, Relaxed);
            black_box(common::mix(1, 8));
            inger::checkpoint();
        },
        Duration::ZERO,
    )
    .expect("launch inner");
    inger::scope(|s| {
        let outer = s
            .launch(
                || {
                    // Resumes the inner function (borrowed) with no limit of its own: only the
                    // outer budget stops the chain.
                    inger::resume(&mut inner, Duration::MAX).map(|()| 0u64)
                },
                Duration::from_millis(1),
            )
            .expect("launch outer");
        let outer = outer
            .continuation()
            .expect("an endless inner loop completed");
        assert!(INNER_STEPS.load(Relaxed) > 0, "the chain ran");
        // Cancelling the outer function: the inner one yields back to it, the outer unwinds.
        assert_eq!(outer.cancel(), CancelOutcome::Unwound);
    });
    // The inner function is a paused continuation again, usable by its owner.
    assert!(inner.is_continuation());
    let steps = INNER_STEPS.load(Relaxed);
    inger::resume(&mut inner, Duration::from_millis(1)).expect("resume the inner function");
    assert!(INNER_STEPS.load(Relaxed) > steps, "it ran again");
    let inner = inner.continuation().expect("an endless loop");
    assert_eq!(inner.cancel(), CancelOutcome::Unwound);
}

#[test]
fn finding_4_an_outer_nopreempt_section_holds_while_a_nested_function_runs() {
    static IN_SECTION: AtomicBool = AtomicBool::new(false);
    let mut stops = 0u64;
    let mut inside_at_stops = 0u64;
    for round in 0..20u64 {
        let mut outer = inger::launch(
            move || {
                let mut total = 0u64;
                for step in 0..5u64 {
                    inger::nopreempt(|| {
                        IN_SECTION.store(true, Relaxed);
                        // A nested function with an unlimited budget, longer than the outer
                        // budget: the outer deadline passes while it runs.
                        let inner = inger::launch(
                            move || common::spin(round << 8 | step, 300_000),
                            Duration::MAX,
                        )
                        .expect("inner launch");
                        total = total.wrapping_add(inner.completion().expect("completed"));
                        IN_SECTION.store(false, Relaxed);
                    });
                    total = total.wrapping_add(common::spin(step, 50_000));
                }
                total
            },
            Duration::from_micros(100),
        )
        .expect("launch");
        while outer.is_continuation() {
            stops += 1;
            inside_at_stops += u64::from(IN_SECTION.load(Relaxed));
            inger::resume(&mut outer, Duration::from_micros(100)).expect("resume");
        }
    }
    assert!(stops > 0, "never paused at all");
    assert_eq!(
        inside_at_stops, 0,
        "paused inside its own nopreempt section {inside_at_stops} times out of {stops}"
    );
}

/// Resident set, page tables and address space of this process, in bytes.
fn memory() -> (u64, u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .unwrap_or_else(|| panic!("no {name} in /proc/self/status"))
    };
    (field("VmRSS:"), field("VmPTE:"), field("VmSize:"))
}

#[test]
fn finding_6_a_million_cancellations_keep_memory_flat() {
    // Each function dirties some stack, then pauses; dropping it unwinds it from `pause`
    // (a cancellation point), so its stack goes back to the pool.
    const CANCELS: u64 = 1_000_000;
    let launch_and_cancel = |i: u64| {
        let linger = inger::launch(
            move || {
                let buffer = black_box([i as u8; 4096]);
                inger::pause();
                buffer[0]
            },
            Duration::MAX,
        )
        .expect("launch");
        let paused = linger.continuation().expect("it pauses");
        assert_eq!(paused.cancel(), CancelOutcome::Unwound);
    };
    for i in 0..10_000 {
        launch_and_cancel(i); // warm the pools
    }
    let (rss, pte, size) = memory();
    for i in 0..CANCELS {
        launch_and_cancel(i);
    }
    let (rss_after, pte_after, size_after) = memory();
    let grew = |after: u64, before: u64| after.saturating_sub(before);
    assert!(
        grew(pte_after, pte) < 1 << 20,
        "page tables grew {} bytes",
        grew(pte_after, pte)
    );
    assert!(
        grew(size_after, size) < 64 << 20,
        "address space grew {} bytes",
        grew(size_after, size)
    );
    assert!(
        grew(rss_after, rss) < 16 << 20,
        "resident set grew {} bytes",
        grew(rss_after, rss)
    );
}

#[test]
fn finding_6_a_discarded_stack_costs_a_bounded_amount() {
    // Discarding keeps the live frames' pages (memory others may point into) and nothing
    // more: per discard, at most a few pages, a page-table page and one stack slot.
    const DISCARDS: u64 = 5_000;
    let discard = |i: u64| {
        let linger = inger::launch(
            move || {
                let buffer = black_box([i as u8; 4096]);
                let mut x = 0u64;
                loop {
                    x = black_box(x.wrapping_add(u64::from(buffer[(x % 4096) as usize])));
                }
            },
            Duration::from_micros(200),
        )
        .expect("launch");
        let paused = linger.continuation().expect("an endless loop");
        paused.discard();
    };
    for i in 0..100 {
        discard(i);
    }
    let (rss, pte, size) = memory();
    for i in 0..DISCARDS {
        discard(i);
    }
    let (rss_after, pte_after, size_after) = memory();
    let per = |after: u64, before: u64| after.saturating_sub(before) / DISCARDS;
    let slot = 4 << 20; // the default 2 MiB stack and its guard take a 4 MiB slot
    assert!(
        per(rss_after, rss) <= 32 << 10,
        "{} bytes resident per discard",
        per(rss_after, rss)
    );
    assert!(
        per(pte_after, pte) <= 12 << 10,
        "{} bytes of page tables per discard",
        per(pte_after, pte)
    );
    assert!(
        per(size_after, size) <= slot + (64 << 10),
        "{} bytes of address space per discard",
        per(size_after, size)
    );
}

/// Forwards polls to a preemptible future and records, when dropped, whether a poll of it
/// was paused at that moment.
struct Watched<F: std::future::Future>(inger::future::Preemptible<F>);

static DROPPED_WHILE_PAUSED: AtomicU64 = AtomicU64::new(0);

impl<F: std::future::Future> std::future::Future for Watched<F>
where
    F: Send,
    F::Output: Send,
{
    type Output = F::Output;
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<F: std::future::Future> Drop for Watched<F> {
    fn drop(&mut self) {
        DROPPED_WHILE_PAUSED.fetch_add(u64::from(self.0.is_paused()), Relaxed);
    }
}

#[test]
fn finding_7_a_timeout_releases_the_mutex_guard_of_a_preemptible_future() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut released = 0;
    for _ in 0..20 {
        released += u64::from(runtime.block_on(timeout_with_the_lock_held()));
    }
    assert_eq!(released, 20, "the guard leaked");
    assert!(
        DROPPED_WHILE_PAUSED.load(Relaxed) > 0,
        "the timeout never dropped the future in the middle of a poll"
    );
}

/// Whether the lock was free again after the timeout dropped the future holding it.
async fn timeout_with_the_lock_held() -> bool {
    use inger::future::PreemptibleExt;
    {
        let lock = Arc::new(tokio::sync::Mutex::new(0u64));
        let held = {
            let lock = Arc::clone(&lock);
            async move {
                let mut guard = lock.lock().await;
                loop {
                    // Computes for several slices within one poll (so it is almost always
                    // paused mid-poll), then awaits.
                    *guard = guard.wrapping_add(common::spin(*guard, 20_000));
                    tokio::task::yield_now().await;
                }
            }
            .preemptible(Duration::from_micros(20))
        };
        let timed_out = tokio::time::timeout(Duration::from_millis(3), Watched(held)).await;
        assert!(timed_out.is_err(), "an endless future completed");
        // The timeout dropped the wrapper, usually while a poll was paused: the poll was let
        // return at its next await, and the future (with its guard) dropped.
        lock.try_lock().is_ok()
    }
}
