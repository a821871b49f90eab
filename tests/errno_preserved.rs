//! `errno` survives preemption: a value set inside a preemptible function (directly or by a
//! failing system call) is still there after many preemptions, whatever the signal handler
//! and the runtime did in between.

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{Stops, errno, set_errno};

/// Spins for a while without touching errno.
fn spin(rounds: u64) {
    black_box(common::mix(rounds, rounds));
}

#[test]
fn errno_set_inside_survives_thousands_of_preemptions() {
    // The function keeps going until the caller has seen it preempted `TARGET` times, so the
    // test means the same in debug and optimised builds.
    const TARGET: u64 = 2000;
    let stops = Stops::leaked(TARGET);
    let before = common::preemptions();
    let linger = inger::launch(
        || {
            let mut wrong = Vec::new();
            let mut round = 0u64;
            while !stops.done() {
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
    let (wrong, _) = common::drive(linger, Duration::from_micros(100), |_| stops.record());
    assert!(
        wrong.is_empty(),
        "errno changed under the function: {wrong:?}"
    );
    assert!(common::preemptions() - before >= TARGET);
}

#[test]
fn errno_from_a_failing_system_call_survives_preemption() {
    const TARGET: u64 = 500;
    let stops = Stops::leaked(TARGET);
    let linger = inger::launch(
        || {
            let mut seen = Vec::new();
            while !stops.done() {
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
    let (seen, _) = common::drive(linger, Duration::from_micros(100), |_| stops.record());
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
