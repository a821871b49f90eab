//! `inger::future` on tokio's multi-thread runtime: CPU bursts between timers and channels,
//! migration between workers, cancellation by abort and by timeout, panics, and freedom from
//! head-of-line blocking. Needs the `tokio` feature (tokio's context inside the polls).
//! Preemption is proved by counters, never by timing.

#![cfg(feature = "tokio")]

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::ThreadId;
use std::time::Duration;

use inger::future::{
    Preemptible, PreemptibleExt, PreemptiveHandle, spawn_preemptible, spawn_preemptible_with,
};

const SLICE: Duration = Duration::from_micros(500);

/// A CPU-bound computation with a known result.
fn crunch(seed: u64, rounds: u64) -> u64 {
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    for i in 0..rounds {
        x = black_box(x.rotate_left(11) ^ i).wrapping_mul(0x2545_f491_4f6c_dd1d);
    }
    x
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn preemption_works() -> bool {
    inger::future::preemption_available() && inger::capabilities().preemption
}

/// One poll of an [`Observed`] wrapper, seen from outside the preemptible function (so the
/// thread is the executor's worker, not the poll's private thread-locals).
#[derive(Debug, Clone, Copy)]
struct PollRecord {
    thread: ThreadId,
    /// The poll resumed a paused poll of the inner future.
    resumed: bool,
}

/// Records every poll of a preemptible future.
struct Observed<F: Future> {
    inner: Preemptible<F>,
    log: Arc<Mutex<Vec<PollRecord>>>,
    expired: Arc<AtomicU64>,
}

impl<F: Future> Observed<F> {
    fn new(inner: Preemptible<F>) -> Self {
        Observed {
            inner,
            log: Arc::default(),
            expired: Arc::default(),
        }
    }
}

impl<F> Future for Observed<F>
where
    F: Future + Send,
    F::Output: Send,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let resumed = this.inner.is_paused();
        let thread = std::thread::current().id();
        let poll = Pin::new(&mut this.inner).poll(cx);
        this.log
            .lock()
            .unwrap()
            .push(PollRecord { thread, resumed });
        this.expired.store(this.inner.expired_polls(), SeqCst);
        poll
    }
}

#[test]
fn cpu_bursts_between_timers_and_channels_give_the_right_result() {
    let rounds = 2_000_000;
    let expected_sent: Vec<u64> = (0..6).map(|round| crunch(round, rounds)).collect();
    let expected_total = expected_sent
        .iter()
        .map(|&v| crunch(v, rounds / 2))
        .fold(0, |a, b| a ^ b);
    let before = inger::stats().preemptions;
    let rt = runtime(2);
    let (total, sent, spawned, expired) = rt.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(2);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        // Awaits of tokio's primitives are wrapped in `nopreempt` as the module docs advise.
        let producer = Observed::new(
            async move {
                let mut sent = Vec::new();
                for round in 0..6 {
                    let value = crunch(round, rounds);
                    tokio::time::sleep(Duration::from_millis(1))
                        .nopreempt()
                        .await;
                    tx.send(value)
                        .nopreempt()
                        .await
                        .expect("the consumer is alive");
                    sent.push(value);
                }
                let helper = inger::nopreempt(|| tokio::spawn(async { 5u64 }));
                let spawned = helper.nopreempt().await.expect("the helper task");
                (sent, spawned)
            }
            .preemptible(SLICE),
        );
        let expired = Arc::clone(&producer.expired);
        let consumer = spawn_preemptible_with(
            async move {
                let mut total = 0;
                while let Some(value) = rx.recv().nopreempt().await {
                    total ^= crunch(value, rounds / 2);
                    tokio::task::yield_now().nopreempt().await;
                }
                inger::nopreempt(|| done_tx.send(total)).expect("the receiver is alive");
            },
            SLICE,
        );
        let (sent, spawned) = tokio::spawn(producer).await.expect("the producer");
        consumer.await.expect("the consumer");
        let total = done_rx.await.expect("the consumer's total");
        (total, sent, spawned, expired.load(SeqCst))
    });
    assert_eq!(sent, expected_sent);
    assert_eq!(total, expected_total);
    assert_eq!(spawned, 5);
    if preemption_works() {
        assert!(
            expired >= 2,
            "the producer's bursts must have been preempted"
        );
        assert!(inger::stats().preemptions - before >= expired);
    }
}

#[test]
fn a_task_paused_on_one_worker_resumes_on_another() {
    if !preemption_works() {
        return;
    }
    // tokio moves a task between workers when an idle worker steals it, which depends on
    // scheduling: run rounds of a few CPU-heavy tasks until one migrates mid-poll.
    let rt = runtime(2);
    let expected: Vec<u64> = (0..4).map(|seed| crunch(seed, 3_000_000)).collect();
    let mut resumed_polls = 0;
    for _round in 0..50 {
        let logs = rt.block_on(async {
            // Spawned back to back, so that they compete for the two workers.
            let tasks: Vec<_> = (0..4)
                .map(|seed| {
                    let observed =
                        Observed::new(async move { crunch(seed, 3_000_000) }.preemptible(SLICE));
                    let log = Arc::clone(&observed.log);
                    (tokio::spawn(observed), log)
                })
                .collect();
            let mut logs = Vec::new();
            for ((task, log), expected) in tasks.into_iter().zip(&expected) {
                assert_eq!(task.await.expect("a task"), *expected);
                logs.push(log.lock().unwrap().clone());
            }
            logs
        });
        resumed_polls += logs.iter().flatten().filter(|poll| poll.resumed).count();
        let migrated = logs.iter().any(|log| {
            log.windows(2)
                .any(|pair| pair[1].resumed && pair[0].thread != pair[1].thread)
        });
        if migrated {
            return;
        }
    }
    panic!(
        "no paused poll was ever resumed on another worker in 50 rounds ({resumed_polls} polls resumed a paused one)"
    );
}

#[test]
fn aborting_an_endless_task_cancels_it_and_the_runtime_stays_healthy() {
    if !preemption_works() {
        return;
    }
    let rt = runtime(1);
    rt.block_on(async {
        let progress = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&progress);
        let observed = Observed::new(
            async move {
                loop {
                    counter.fetch_add(1, SeqCst);
                }
            }
            .preemptible(SLICE),
        );
        let expired = Arc::clone(&observed.expired);
        let task = tokio::spawn(observed);
        while expired.load(SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        task.abort();
        let error = task.await.expect_err("aborted");
        assert!(error.is_cancelled());
        let frozen = progress.load(SeqCst);
        // The single worker is free again: plain and preemptible tasks run.
        assert_eq!(tokio::spawn(async { 42 }).await.unwrap(), 42);
        assert_eq!(
            spawn_preemptible(async { crunch(1, 1000) }).await.unwrap(),
            crunch(1, 1000)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(progress.load(SeqCst), frozen, "the loop was cancelled");
    });
}

#[test]
fn a_timeout_stops_an_endless_preemptible_future() {
    if !preemption_works() {
        return;
    }
    let rt = runtime(1);
    // Inside a task on the only worker: without preemption this would never return.
    let outcome = rt.block_on(async {
        tokio::spawn(async {
            let endless = async {
                let mut n = 0u64;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            };
            tokio::time::timeout(Duration::from_millis(20), endless.preemptible(SLICE)).await
        })
        .await
        .expect("the task")
    });
    assert!(outcome.is_err(), "the timeout elapsed");
}

#[test]
fn panics_propagate_as_join_errors() {
    let rt = runtime(2);
    rt.block_on(async {
        let quick = spawn_preemptible(async {
            if black_box(true) {
                panic!("boom");
            }
        });
        let error = quick.await.expect_err("it panicked");
        assert!(error.is_panic());
        assert_eq!(*error.into_panic().downcast::<&str>().unwrap(), "boom");

        // A panic after several preemptions.
        let late = spawn_preemptible_with(
            async {
                let x = crunch(7, 3_000_000);
                if black_box(x) != 0 {
                    panic!("late boom");
                }
                x
            },
            SLICE,
        );
        assert!(late.await.expect_err("it panicked").is_panic());
        // The runtime still works.
        assert_eq!(spawn_preemptible(async { 3 }).await.unwrap(), 3);
    });
}

#[test]
fn an_endless_task_does_not_block_a_single_worker() {
    if !preemption_works() {
        return;
    }
    let rt = runtime(1);
    let handle = PreemptiveHandle::new(rt.handle().clone(), SLICE);
    let endless = handle.spawn(async {
        let mut n = 0u64;
        loop {
            n = black_box(n.wrapping_add(1));
        }
    });
    for i in 0..20u64 {
        let short = handle.spawn(async move { crunch(i, 1000) });
        assert_eq!(rt.block_on(short).unwrap(), crunch(i, 1000));
    }
    endless.abort();
    assert!(rt.block_on(endless).unwrap_err().is_cancelled());
    assert_eq!(handle.block_on(async { 6 * 7 }), 42);
}

#[test]
fn a_preempted_task_lets_ready_tasks_run_first() {
    if !preemption_works() {
        return;
    }
    // One worker, an endless preemptible loop, then ten plain CPU-bound tasks spawned at
    // once. A preempted poll is resumed only after the ready tasks (tokio's yield), so the
    // loop gets at most a slice or two while the ten run; with a plain wake it would get a
    // slice between every two of them.
    let rt = runtime(1);
    let observed = Observed::new(
        async {
            let mut n = 0u64;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
        .preemptible(SLICE),
    );
    let expired = Arc::clone(&observed.expired);
    let endless = rt.spawn(observed);
    while expired.load(SeqCst) < 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let shorts: Vec<_> = (0..10u64)
        .map(|i| {
            let expired = Arc::clone(&expired);
            rt.spawn(async move {
                let seen = expired.load(SeqCst);
                black_box(crunch(i, 300_000));
                seen
            })
        })
        .collect();
    let seen: Vec<u64> = shorts
        .into_iter()
        .map(|task| rt.block_on(task).expect("a short task"))
        .collect();
    let spread = seen.iter().max().unwrap() - seen.iter().min().unwrap();
    assert!(
        spread <= 2,
        "the preempted loop got {spread} slices among ten ready tasks: {seen:?}"
    );
    endless.abort();
    assert!(rt.block_on(endless).unwrap_err().is_cancelled());
}
