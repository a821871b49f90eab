//! Panic storm: two threads each run a function that panics and catches its own panics over
//! and over (the default hook writing each message to stderr), under slices of 20–50 µs,
//! while each caller panics and catches too between resumes. The panic machinery (the hook,
//! the panic count, stderr's lock) is one of the standard library's critical sections
//! (issue 4), and unwinding runs in libgcc_s: a function paused there would leave stderr's
//! lock held (the caller's next panic message would deadlock or cut into the function's).
//! The storm runs in a child process whose stderr the parent checks: every message whole,
//! each exactly once and in order.

mod common;

use std::panic::catch_unwind;

/// Panics per function (and rounds of work between them).
const PANICS: u64 = 800;
const STATS: &str = "@@panics-stats";

/// The function's body: work, then a panic caught at once, `PANICS` times. Returns a checksum
/// of the work and the number of panics caught.
fn panic_often(thread: usize) -> (u64, u64) {
    let mut checksum = 0u64;
    let mut caught = 0u64;
    for round in 0..PANICS {
        checksum = checksum.rotate_left(7) ^ common::spin(checksum ^ round, 1500);
        let result = catch_unwind(|| {
            if common::spin(round, 3) != 0 {
                panic!("@F{thread} {round} {checksum:016x}");
            }
            round
        });
        caught += u64::from(result.is_err());
    }
    (checksum, caught)
}

fn expected_checksum() -> u64 {
    (0..PANICS).fold(0u64, |checksum, round| {
        checksum.rotate_left(7) ^ common::spin(checksum ^ round, 1500)
    })
}

fn child() {
    let before = inger::stats();
    let results = common::on_two_threads(|thread| {
        common::storm(
            || panic_often(thread),
            |stop| {
                let result = catch_unwind(|| panic!("@C{thread} {stop}"));
                assert!(result.is_err());
            },
        )
    });
    for (thread, ((checksum, caught), stops)) in results.into_iter().enumerate() {
        assert_eq!(checksum, expected_checksum(), "thread {thread}'s result");
        assert_eq!(caught, PANICS, "thread {thread}'s caught panics");
        println!("@@panics-stops thread={thread} stops={stops}");
    }
    common::print_stats(STATS, before);
}

#[test]
fn panic_storm_on_two_threads_keeps_every_message_whole() {
    if common::child_mode().as_deref() == Some("panics") {
        child();
        return;
    }
    let output = common::run_child(
        "panic_storm_on_two_threads_keeps_every_message_whole",
        "panics",
        &[("RUST_BACKTRACE", "0")],
    );
    output.assert_success();
    let mut next_function = [0u64; 2];
    let mut next_caller = [0u64; 2];
    let mut checksums = [0u64; 2];
    for line in output.stderr.lines().filter(|line| line.contains("@")) {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            [who, round, checksum] if who.starts_with("@F") => {
                let thread: usize = who[2..].parse().expect("a thread number");
                let round: u64 = round.parse().expect("a round");
                assert_eq!(round, next_function[thread], "{line:?} out of order");
                checksums[thread] = checksums[thread].rotate_left(7)
                    ^ common::spin(checksums[thread] ^ round, 1500);
                assert_eq!(*checksum, format!("{:016x}", checksums[thread]), "{line:?}");
                next_function[thread] += 1;
            }
            [who, stop] if who.starts_with("@C") => {
                let thread: usize = who[2..].parse().expect("a thread number");
                let stop: u64 = stop.parse().expect("a stop");
                assert_eq!(stop, next_caller[thread], "{line:?} out of order");
                next_caller[thread] += 1;
            }
            _ => panic!("a broken panic message: {line:?}"),
        }
    }
    assert_eq!(
        next_function, [PANICS; 2],
        "every function panic reported once"
    );
    for (thread, messages) in next_caller.into_iter().enumerate() {
        let stops = output.counter(&format!("@@panics-stops thread={thread}"), "stops");
        assert_eq!(messages, stops, "every caller panic reported once");
    }
    assert!(output.counter(STATS, "preemptions") > 0, "never preempted");
    println!(
        "panic storm: {} preemptions, {} deferred in std sections, {} in libraries",
        output.counter(STATS, "preemptions"),
        output.counter(STATS, "deferred_std"),
        output.counter(STATS, "deferred_library"),
    );
}
