//! The pool in the shared-TLS fallback (`INGER_SHARED_TLS=1`, run in a child process): a
//! paused task can only be resumed on the worker that started it, so it stays pinned there,
//! and time slicing still works.

mod common;

use std::hint::black_box;
use std::time::Duration;

use inger::pool::Pool;

#[test]
fn tasks_stay_on_their_worker_and_are_still_time_sliced() {
    if common::child_mode().is_none() {
        let output = common::run_child(
            "tasks_stay_on_their_worker_and_are_still_time_sliced",
            "shared-tls",
            &[("INGER_SHARED_TLS", "1")],
        );
        output.assert_success();
        return;
    }
    assert!(
        !inger::capabilities().private_tls,
        "the fallback is in force"
    );
    let pool = Pool::with_slice(2, Duration::from_micros(300));
    let loops: Vec<_> = (0..3)
        .map(|_| {
            pool.spawn(|| {
                let mut n = 0u64;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            })
        })
        .collect();
    let work: Vec<_> = (0..40u64)
        .map(|i| {
            (
                common::mix(i, 200_000),
                pool.spawn(move || common::mix(i, 200_000)),
            )
        })
        .collect();
    for (expected, handle) in work {
        // A task resumed on the wrong thread would fail with `Error::WrongThread`.
        assert_eq!(handle.join().expect("a finite task"), expected);
    }
    for handle in loops {
        handle.cancel();
    }
    if inger::capabilities().preemption {
        assert!(pool.stats().requeued > 0, "{:?}", pool.stats());
    }
}
