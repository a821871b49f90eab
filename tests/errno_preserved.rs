//! `errno` survives preemption: a value set inside a preemptible function (directly or by a
//! failing system call) is still there after many preemptions, whatever the signal handler
//! and the runtime did in between.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

fn errno() -> i32 {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

fn set_errno(value: i32) {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() = value };
}

/// Spins for a while without touching errno.
fn spin(rounds: u64) {
    black_box(common::mix(rounds, rounds));
}

#[test]
fn errno_set_inside_survives_thousands_of_preemptions() {
    // The function keeps going until the caller has seen it preempted `TARGET` times, so the
    // test means the same in debug and optimised builds.
    const TARGET: u64 = 2000;
    let stops = AtomicU64::new(0);
    let before = common::preemptions();
    let mut linger = inger::launch(
        || {
            let mut wrong = Vec::new();
            let mut round = 0u64;
            while stops.load(Relaxed) < TARGET {
                let value = 1000 + (round % 97) as i32;
                set_errno(value);
                spin(5_000);
                let seen = errno();
                if seen != value {
                    wrong.push((round, value, seen));
                }
                round += 1;
            }
            wrong
        },
        Duration::from_micros(100),
    )
    .expect("launch");
    while linger.is_continuation() {
        stops.fetch_add(1, Relaxed);
        inger::resume(&mut linger, Duration::from_micros(100)).expect("resume");
    }
    let wrong = linger.completion().expect("completed");
    assert!(
        wrong.is_empty(),
        "errno changed under the function: {wrong:?}"
    );
    assert!(common::preemptions() - before >= TARGET);
}

#[test]
fn errno_from_a_failing_system_call_survives_preemption() {
    const TARGET: u64 = 500;
    let stops = AtomicU64::new(0);
    let mut linger = inger::launch(
        || {
            let mut seen = Vec::new();
            while stops.load(Relaxed) < TARGET {
                // SAFETY: closing an invalid descriptor fails with EBADF and has no effect.
                let result = unsafe { libc::close(-1) };
                assert_eq!(result, -1);
                spin(20_000);
                seen.push(errno());
            }
            seen
        },
        Duration::from_micros(100),
    )
    .expect("launch");
    while linger.is_continuation() {
        stops.fetch_add(1, Relaxed);
        inger::resume(&mut linger, Duration::from_micros(100)).expect("resume");
    }
    let seen = linger.completion().expect("completed");
    assert!(
        seen.iter().all(|&e| e == libc::EBADF),
        "errno values seen: {seen:?}"
    );
}

#[test]
fn errno_survives_cooperative_pauses() {
    let linger = inger::launch(
        || {
            set_errno(libc::EAGAIN);
            for _ in 0..100 {
                inger::pause();
            }
            errno()
        },
        Duration::MAX,
    )
    .expect("launch");
    let (seen, resumes) = common::finish(linger, Duration::MAX, 1000);
    assert_eq!(resumes, 100);
    assert_eq!(seen, libc::EAGAIN);
}
