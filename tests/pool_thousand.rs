//! The pool runs 1,000 closures, some of them endless loops that are cancelled, and every
//! other closure returns the right result. Time slicing is proved by counters.

use std::hint::black_box;
use std::time::Duration;

use inger::pool::{JoinHandle, Pool};

/// A CPU-bound computation with a known result.
fn crunch(seed: u64, rounds: u64) -> u64 {
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    for i in 0..rounds {
        x = black_box(x.rotate_left(5) ^ i).wrapping_mul(0x2545_f491_4f6c_dd1d);
    }
    x
}

enum Job {
    Value(u64, JoinHandle<u64>),
    Endless(JoinHandle<u64>),
}

#[test]
fn a_thousand_closures_with_cancelled_endless_loops() {
    let pool = Pool::with_slice(2, Duration::from_micros(500));
    let mut jobs = Vec::new();
    for i in 0..1000u64 {
        if i % 50 == 7 {
            jobs.push(Job::Endless(pool.spawn(|| {
                let mut n = 0u64;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            })));
        } else {
            // Most are short; every 20th runs for many slices.
            let rounds = if i % 20 == 0 { 500_000 } else { 1_000 + i };
            jobs.push(Job::Value(
                crunch(i, rounds),
                pool.spawn(move || crunch(i, rounds)),
            ));
        }
    }
    let mut endless = 0;
    for job in jobs {
        match job {
            Job::Value(expected, handle) => {
                assert_eq!(handle.join().expect("a finite task"), expected)
            }
            Job::Endless(handle) => {
                endless += 1;
                assert!(!handle.is_finished());
                handle.cancel();
            }
        }
    }
    assert_eq!(endless, 20);
    let stats = pool.stats();
    assert_eq!(stats.spawned, 1000);
    assert_eq!(stats.completed, 980);
    assert_eq!(stats.panicked, 0);
    if inger::capabilities().preemption {
        assert!(
            stats.requeued > 0,
            "long tasks and endless loops must have been time-sliced: {stats:?}"
        );
    }
    drop(pool); // the cancelled loops are discarded; this must not hang
}
