//! The preemptive pool: round-robin slicing, migration between workers, panics,
//! cancellation and shutdown.

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use inger::pool::{JoinError, Pool};

fn endless() -> u64 {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

fn preemption_on() -> bool {
    inger::capabilities().preemption && inger::capabilities().private_tls
}

#[test]
fn an_endless_loop_does_not_starve_a_one_thread_pool() {
    if !preemption_on() {
        return;
    }
    let pool = Pool::new(1);
    let looping = pool.spawn(endless);
    let answer = pool.spawn(|| 6 * 7);
    assert_eq!(answer.join().expect("the short task"), 42);
    assert!(!looping.is_finished());
    looping.cancel();
    assert!(pool.stats().requeued >= 1);
}

#[test]
fn paused_tasks_migrate_between_workers() {
    if !preemption_on() {
        return;
    }
    // Three long tasks on two workers: a task requeued by one worker is often taken by the
    // other. Each records the kernel thread ids it runs on (gettid is a system call, so it
    // reports the real thread even with private thread-locals); all stop once one task has
    // seen two (on a loaded machine one worker may run alone for a while).
    let pool = Pool::with_slice(2, Duration::from_micros(300));
    let migrated = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let migrated = Arc::clone(&migrated);
            pool.spawn(move || {
                let mut seen = HashSet::new();
                let mut spins = 0u64;
                while !migrated.load(SeqCst) && spins < 20_000_000_000 {
                    // SAFETY: gettid has no preconditions.
                    seen.insert(unsafe { libc::gettid() });
                    if seen.len() >= 2 {
                        migrated.store(true, SeqCst);
                    }
                    for _ in 0..1000 {
                        spins = black_box(spins + 1);
                    }
                }
                seen.len()
            })
        })
        .collect();
    let most = handles
        .into_iter()
        .map(|h| h.join().expect("a task"))
        .max()
        .unwrap();
    assert_eq!(most, 2, "no task ran on more than one worker");
}

#[test]
fn a_panic_is_returned_by_join() {
    let pool = Pool::new(2);
    let handle = pool.spawn(|| -> u32 {
        let x = black_box(3u32);
        if x == 3 {
            panic!("task failed: {x}");
        }
        x
    });
    let error = handle.join().expect_err("the task panicked");
    assert!(error.is_panic());
    assert_eq!(error.to_string(), "the pool task panicked: task failed: 3");
    let payload = error.into_panic().expect("a payload");
    assert_eq!(payload.downcast_ref::<String>().unwrap(), "task failed: 3");
    // The pool keeps working.
    assert_eq!(pool.spawn(|| 1 + 1).join().unwrap(), 2);
    assert_eq!(pool.stats().panicked, 1);
}

#[test]
fn dropping_the_pool_cancels_unfinished_tasks() {
    if !preemption_on() {
        return;
    }
    let pool = Pool::new(2);
    let loops: Vec<_> = (0..4).map(|_| pool.spawn(endless)).collect();
    let done = pool.spawn(|| "done");
    assert_eq!(done.join().unwrap(), "done");
    let queued_behind: Vec<_> = (0..4).map(|i| pool.spawn(move || i)).collect();
    drop(pool);
    for handle in loops {
        assert!(matches!(handle.join(), Err(JoinError::Cancelled)));
    }
    // Tasks still queued at shutdown either ran or were cancelled: never lost.
    for (i, handle) in queued_behind.into_iter().enumerate() {
        match handle.join() {
            Ok(value) => assert_eq!(value, i),
            Err(error) => assert!(error.is_cancelled(), "{error}"),
        }
    }
}

#[test]
fn dropping_a_handle_cancels_and_detach_does_not() {
    if !preemption_on() {
        return;
    }
    let pool = Pool::new(1);
    let progress = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&progress);
    drop(pool.spawn(move || {
        loop {
            counter.fetch_add(1, SeqCst);
        }
    }));
    // Once the pool has answered a later task, the cancelled loop is gone for good.
    for _ in 0..3 {
        assert_eq!(pool.spawn(|| 5).join().unwrap(), 5);
    }
    let frozen = progress.load(SeqCst);
    assert_eq!(pool.spawn(|| 6).join().unwrap(), 6);
    assert_eq!(progress.load(SeqCst), frozen);
    assert!(pool.stats().cancelled >= 1);

    let ran = Arc::new(AtomicU64::new(0));
    let flag = Arc::clone(&ran);
    pool.spawn(move || flag.store(1, SeqCst)).detach();
    // FIFO: a task spawned after it finishes after it has started.
    assert_eq!(pool.spawn(|| 7).join().unwrap(), 7);
    let mut waited = 0;
    while ran.load(SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
        waited += 1;
        assert!(waited < 10_000, "the detached task never ran");
    }
}

#[test]
fn zero_threads_is_an_error() {
    assert!(Pool::try_new(0, Duration::from_millis(1)).is_err());
}

#[test]
fn tasks_can_spawn_into_their_pool() {
    let pool = Arc::new(Pool::new(2));
    let inner_pool = Arc::clone(&pool);
    let outer = pool.spawn(move || {
        let handle = inner_pool.spawn(|| 20);
        handle.detach();
        22
    });
    assert_eq!(outer.join().unwrap(), 22);
}
