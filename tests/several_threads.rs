//! Preemptible functions launched from several threads at once: each thread has its own
//! timer and runtime, and each thread's functions are preempted and resumed independently.

mod common;

use std::time::Duration;

const THREADS: u64 = 4;
const PER_THREAD: u64 = 3;
const ROUNDS: u64 = 400_000;

/// Runs `PER_THREAD` functions round-robin on this thread; returns their results and how
/// many times one came back paused.
fn run_on_this_thread(thread: u64) -> (Vec<u64>, u64) {
    let mut lingers: Vec<_> = (0..PER_THREAD)
        .map(|i| {
            let seed = thread * 100 + i;
            inger::launch(
                move || common::mix(seed, ROUNDS),
                Duration::from_micros(200),
            )
            .expect("launch")
        })
        .collect();
    let mut paused = 0;
    while lingers.iter().any(|l| l.is_continuation()) {
        for linger in lingers.iter_mut() {
            if linger.is_continuation() {
                paused += 1;
                inger::resume(linger, Duration::from_micros(200)).expect("resume");
            }
        }
    }
    let results = lingers
        .into_iter()
        .map(|l| l.completion().expect("completed"))
        .collect();
    (results, paused)
}

#[test]
fn functions_on_several_threads_are_preempted_independently() {
    let before = common::preemptions();
    let outcomes: Vec<(Vec<u64>, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| scope.spawn(move || run_on_this_thread(thread)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    for (thread, (results, paused)) in outcomes.iter().enumerate() {
        let thread = thread as u64;
        let expected: Vec<u64> = (0..PER_THREAD)
            .map(|i| common::mix(thread * 100 + i, ROUNDS))
            .collect();
        assert_eq!(results, &expected, "thread {thread}");
        assert!(
            *paused >= PER_THREAD,
            "thread {thread}: its functions were never paused"
        );
    }
    let total: u64 = outcomes.iter().map(|(_, paused)| paused).sum();
    assert!(common::preemptions() - before >= total);
}

#[test]
fn threads_that_come_and_go_each_set_up_and_tear_down_their_runtime() {
    for round in 0..20u64 {
        std::thread::scope(|scope| {
            for t in 0..2u64 {
                scope.spawn(move || {
                    let seed = round * 10 + t;
                    let linger = inger::launch(
                        move || common::mix(seed, 200_000),
                        Duration::from_micros(100),
                    )
                    .expect("launch");
                    assert!(linger.is_continuation(), "long enough to be paused");
                    let (value, _) = common::finish(linger, Duration::from_micros(100), 10_000_000);
                    assert_eq!(value, common::mix(seed, 200_000));
                    // A paused function left behind at thread exit is cancelled with it.
                    let leftover = inger::launch(
                        || loop {
                            std::hint::spin_loop();
                        },
                        Duration::from_micros(100),
                    )
                    .expect("launch");
                    assert!(leftover.is_continuation());
                    drop(leftover);
                });
            }
        });
    }
}

#[test]
fn a_thread_can_launch_while_another_is_paused_inside_a_function() {
    // Thread A pauses a function and waits; thread B runs its own to completion meanwhile.
    let (to_b, from_a) = std::sync::mpsc::channel::<()>();
    let (to_a, from_b) = std::sync::mpsc::channel::<u64>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut linger = inger::launch(
                || {
                    inger::pause();
                    7u64
                },
                Duration::MAX,
            )
            .expect("launch");
            assert!(linger.yielded());
            to_b.send(()).expect("send");
            let from_b = from_b.recv().expect("recv");
            inger::resume(&mut linger, Duration::MAX).expect("resume");
            assert_eq!(linger.completion(), Some(7));
            assert_eq!(from_b, common::mix(1, 300_000));
        });
        scope.spawn(move || {
            from_a.recv().expect("recv");
            let linger = inger::launch(|| common::mix(1, 300_000), Duration::from_micros(100))
                .expect("launch");
            let (value, _) = common::finish(linger, Duration::from_micros(100), 10_000_000);
            to_a.send(value).expect("send");
        });
    });
}
