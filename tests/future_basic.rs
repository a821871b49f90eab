//! `inger::future::Preemptible` without any executor: hand-rolled polling on plain threads.
//! Preemption is proved by counters (the wrapper's and inger's), never by timing.

use std::future::Future;
use std::hint::black_box;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use inger::future::{Preemptible, PreemptibleExt, preemptible};

const SLICE: Duration = Duration::from_micros(500);

/// A CPU-bound computation with a known result, long enough to outlast many slices.
fn crunch(rounds: u64) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..rounds {
        x = black_box(x.rotate_left(7) ^ i).wrapping_mul(0x2545_f491_4f6c_dd1d);
    }
    x
}

/// Counts its wakes.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// Polls until ready (at most `max_polls` times); returns the output and the poll count.
fn drive<F: Future + Unpin>(future: &mut F, max_polls: u64) -> (F::Output, u64) {
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    for polls in 1..=max_polls {
        if let Poll::Ready(output) = Pin::new(&mut *future).poll(&mut cx) {
            return (output, polls);
        }
    }
    panic!("not ready after {max_polls} polls");
}

fn preemption_works() -> bool {
    inger::future::preemption_available() && inger::capabilities().preemption
}

#[test]
fn a_cpu_heavy_future_is_sliced_and_gives_the_right_result() {
    let rounds = 30_000_000;
    let expected = crunch(rounds);
    let before = inger::stats().preemptions;
    let mut future = async move { crunch(rounds) }.preemptible(SLICE);
    let (value, polls) = drive(&mut future, 1_000_000);
    assert_eq!(value, expected);
    assert!(future.is_finished());
    if preemption_works() {
        assert!(
            future.expired_polls() >= 2,
            "expected several expired slices, got {future:?}"
        );
        assert_eq!(polls, future.polls());
        assert!(inger::stats().preemptions - before >= future.expired_polls());
    }
}

#[test]
fn an_expired_slice_wakes_the_task_and_the_next_poll_resumes_the_same_poll() {
    if !preemption_works() {
        return;
    }
    let started = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&started);
    // Each poll of the inner future counts itself; one poll never returns Pending, so all
    // progress must come from resuming that same poll.
    let inner = std::future::poll_fn(move |_cx| {
        counter.fetch_add(1, SeqCst);
        Poll::Ready(crunch(20_000_000))
    });
    let mut future = preemptible(inner, SLICE);
    let waker = Arc::new(CountingWaker::default());
    let waker_handle = Waker::from(Arc::clone(&waker));
    let mut cx = Context::from_waker(&waker_handle);
    let mut pendings = 0;
    let value = loop {
        match Pin::new(&mut future).poll(&mut cx) {
            Poll::Ready(value) => break value,
            Poll::Pending => {
                pendings += 1;
                assert!(future.is_paused());
                assert_eq!(
                    waker.0.load(SeqCst),
                    pendings,
                    "each expired slice wakes the task"
                );
            }
        }
    };
    assert_eq!(value, crunch(20_000_000));
    assert!(pendings >= 2, "expected several expired slices");
    assert_eq!(
        started.load(SeqCst),
        1,
        "the inner future was polled exactly once"
    );
}

#[test]
fn the_proxy_waker_forwards_to_the_latest_poll_waker() {
    // The inner future keeps the first waker it sees and returns Pending until woken
    // through it; by then the wrapper has been polled with another waker.
    let stored: Arc<std::sync::Mutex<Option<Waker>>> = Arc::default();
    let flag = Arc::new(AtomicUsize::new(0));
    let (stored_in, flag_in) = (Arc::clone(&stored), Arc::clone(&flag));
    let inner = std::future::poll_fn(move |cx| {
        if flag_in.load(SeqCst) > 0 {
            return Poll::Ready("woken");
        }
        stored_in
            .lock()
            .unwrap()
            .get_or_insert_with(|| cx.waker().clone());
        Poll::Pending
    });
    let mut future = preemptible(inner, Duration::from_secs(10));
    let first = Arc::new(CountingWaker::default());
    let second = Arc::new(CountingWaker::default());
    let first_waker = Waker::from(Arc::clone(&first));
    let second_waker = Waker::from(Arc::clone(&second));

    assert!(
        Pin::new(&mut future)
            .poll(&mut Context::from_waker(&first_waker))
            .is_pending()
    );
    assert!(
        Pin::new(&mut future)
            .poll(&mut Context::from_waker(&second_waker))
            .is_pending()
    );
    let kept = stored
        .lock()
        .unwrap()
        .take()
        .expect("the inner future kept a waker");
    flag.store(1, SeqCst);
    kept.wake();
    assert_eq!(first.0.load(SeqCst), 0, "the stale waker is not used");
    assert_eq!(second.0.load(SeqCst), 1, "the latest waker is woken");
    let (value, _) = drive(&mut future, 10);
    assert_eq!(value, "woken");
}

#[test]
fn a_paused_poll_resumes_on_another_thread() {
    if !preemption_works() {
        return;
    }
    let rounds = 40_000_000;
    let expected = crunch(rounds);
    let mut future: Preemptible<_> = async move { crunch(rounds) }.preemptible(SLICE);
    // Poll on this thread until a poll is paused, then finish on another thread.
    let mut cx = Context::from_waker(Waker::noop());
    while !future.is_paused() {
        assert!(
            Pin::new(&mut future).poll(&mut cx).is_pending(),
            "finished too soon"
        );
    }
    let here = std::thread::current().id();
    let (value, there, resumed_paused) = std::thread::spawn(move || {
        let resumed_paused = future.is_paused();
        let (value, _) = drive(&mut future, 1_000_000);
        (value, std::thread::current().id(), resumed_paused)
    })
    .join()
    .expect("the other thread");
    assert!(resumed_paused);
    assert_ne!(here, there);
    assert_eq!(value, expected);
}

#[test]
fn a_panic_in_the_inner_poll_propagates_and_poisons_the_wrapper() {
    let mut future = async {
        let x = crunch(5_000_000);
        if black_box(x) != 0 {
            panic!("inner future failed");
        }
        x
    }
    .preemptible(SLICE);
    let mut cx = Context::from_waker(Waker::noop());
    let payload = loop {
        match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut future).poll(&mut cx))) {
            Ok(Poll::Pending) => continue,
            Ok(Poll::Ready(_)) => panic!("should have panicked"),
            Err(payload) => break payload,
        }
    };
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"inner future failed"));
    let again = catch_unwind(AssertUnwindSafe(|| Pin::new(&mut future).poll(&mut cx)));
    assert!(again.is_err(), "polling after a panic panics");
    drop(future); // dropping a panicked wrapper is fine
}

#[test]
fn dropping_a_paused_wrapper_cancels_the_endless_poll() {
    if !preemption_works() {
        return;
    }
    let progress = Arc::new(AtomicU64::new(0));
    let inner_progress = Arc::clone(&progress);
    let mut future = async move {
        loop {
            inner_progress.fetch_add(1, SeqCst);
        }
    }
    .preemptible(SLICE);
    let mut cx = Context::from_waker(Waker::noop());
    while future.expired_polls() < 3 {
        assert!(Pin::new(&mut future).poll(&mut cx).is_pending());
    }
    assert!(future.is_paused());
    drop(future);
    let after_drop = progress.load(SeqCst);
    // Nothing runs the loop any more, and preemptible functions still work.
    let (value, _) = drive(&mut async { crunch(1000) }.preemptible(SLICE), 1_000_000);
    assert_eq!(value, crunch(1000));
    assert_eq!(progress.load(SeqCst), after_drop);
}

#[test]
fn an_idle_wrapper_drops_its_future() {
    struct Droppy(Arc<AtomicUsize>);
    impl Drop for Droppy {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let guard = Droppy(Arc::clone(&drops));
    let mut future = async move {
        let _guard = guard;
        std::future::pending::<()>().await;
    }
    .preemptible(SLICE);
    assert!(
        Pin::new(&mut future)
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending()
    );
    assert!(!future.is_paused());
    assert_eq!(drops.load(SeqCst), 0);
    drop(future);
    assert_eq!(drops.load(SeqCst), 1);
}

#[test]
fn a_nopreempt_section_inside_is_not_paused() {
    if !preemption_works() {
        return;
    }
    let before = inger::stats().deferred_nopreempt;
    // The inner poll computes for many slices inside a non-preemptible section: it must run
    // in one go (the deferral is counted), then the wrapper's slice expiry takes effect.
    let mut future = async { async { crunch(20_000_000) }.nopreempt().await }.preemptible(SLICE);
    let (value, _) = drive(&mut future, 1_000_000);
    assert_eq!(value, crunch(20_000_000));
    assert!(inger::stats().deferred_nopreempt > before);
}

#[test]
fn pause_inside_a_preemptible_future_yields_to_the_executor() {
    if !inger::future::preemption_available() {
        return; // the fallback polls directly: pause() is a no-op there
    }
    let steps = Arc::new(AtomicUsize::new(0));
    let inner_steps = Arc::clone(&steps);
    let mut future = async move {
        for _ in 0..3 {
            inner_steps.fetch_add(1, SeqCst);
            inger::pause();
        }
        "done"
    }
    .preemptible(Duration::from_secs(10));
    let mut cx = Context::from_waker(Waker::noop());
    for expected in 1..=3 {
        assert!(Pin::new(&mut future).poll(&mut cx).is_pending());
        assert_eq!(steps.load(SeqCst), expected);
        assert!(future.is_paused());
    }
    assert_eq!(Pin::new(&mut future).poll(&mut cx), Poll::Ready("done"));
}

#[test]
fn wrappers_are_send_when_their_futures_are() {
    fn send<T: Send>(_: &T) {}
    let future = async { 1 }.preemptible(SLICE);
    send(&future);
}

#[test]
fn a_wake_during_a_paused_inner_poll_leads_to_a_new_inner_poll() {
    if !inger::future::preemption_available() {
        return;
    }
    // The inner future wakes itself and is paused before returning Pending (as when a slice
    // expires right after `yield_now` woke the task): the resuming poll of the wrapper used
    // up the executor's wake, so the wrapper must wake the task again.
    let mut state = 0;
    let inner = std::future::poll_fn(move |cx| {
        if state == 1 {
            return Poll::Ready("second inner poll");
        }
        state = 1;
        cx.waker().wake_by_ref();
        inger::pause();
        Poll::Pending
    });
    let mut future = preemptible(inner, Duration::from_secs(10));
    let waker = Arc::new(CountingWaker::default());
    let waker_handle = Waker::from(Arc::clone(&waker));
    let mut cx = Context::from_waker(&waker_handle);
    assert!(Pin::new(&mut future).poll(&mut cx).is_pending());
    assert!(future.is_paused());
    let before = waker.0.load(SeqCst);
    assert!(Pin::new(&mut future).poll(&mut cx).is_pending());
    assert!(!future.is_paused());
    assert!(
        waker.0.load(SeqCst) > before,
        "the resumed inner poll returned Pending after a wake: the task must be woken again"
    );
    assert_eq!(
        Pin::new(&mut future).poll(&mut cx),
        Poll::Ready("second inner poll")
    );
}
