//! A function that allocates and frees constantly is preempted thousands of times while the
//! caller allocates and frees between resumes: both heaps' contents come out right.
//! (Preempting inside `malloc` and then allocating in the caller would corrupt the heap;
//! the runtime defers preemption while the interrupted code is in libc.)

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::Stops;

/// Allocation-heavy deterministic work: vectors of varying sizes kept in a ring, boxed
/// slices, formatted strings and a hash map with insertions and removals. Runs rounds while
/// `go_on(round)` says so; returns how many it ran and a summary of the resulting state.
fn churn(seed: u64, mut go_on: impl FnMut(u64) -> bool) -> (u64, (u64, usize, String)) {
    let mut ring: Vec<Vec<u64>> = (0..64).map(|_| Vec::new()).collect();
    let mut map: HashMap<u64, String> = HashMap::new();
    let mut checksum = 0u64;
    let mut round = 0u64;
    while go_on(round) {
        let x = common::mix(seed ^ round, 2);
        let len = (x % 2048) as usize;
        let mut v: Vec<u64> = Vec::with_capacity(len);
        v.extend((0..len as u64).map(|i| i ^ x));
        checksum = checksum.wrapping_add(v.iter().fold(0, |a, b| a ^ b));
        ring[(round % 64) as usize] = v; // frees the old vector
        let boxed: Box<[u8]> = vec![(x & 0xff) as u8; (x % 300) as usize].into_boxed_slice();
        checksum = checksum.wrapping_add(boxed.len() as u64);
        if x.is_multiple_of(3) {
            map.insert(x % 1000, format!("{round}:{x:x}"));
        } else {
            map.remove(&(x % 1000));
        }
        round += 1;
    }
    let mut keys: Vec<_> = map.keys().copied().collect();
    keys.sort_unstable();
    let sample = keys
        .iter()
        .take(3)
        .map(|k| map[k].clone())
        .collect::<Vec<_>>()
        .join(",");
    (round, (checksum, map.len(), sample))
}

/// `churn` for exactly `rounds` rounds.
fn churn_for(seed: u64, rounds: u64) -> (u64, usize, String) {
    churn(seed, |round| round < rounds).1
}

#[test]
fn an_allocation_loop_preempted_thousands_of_times_while_the_caller_allocates() {
    // The function keeps going until the caller has seen it preempted `TARGET` times (so
    // the test means the same in debug and optimised builds); a direct run of as many
    // rounds must then give the same result.
    const TARGET: u64 = 2000;
    let stops = Stops::leaked(TARGET);
    let before = inger::stats();
    let mut linger =
        inger::launch(|| churn(17, |_| !stops.done()), Duration::from_micros(100)).expect("launch");
    let mut caller_heap: Vec<String> = Vec::new();
    while linger.is_continuation() {
        // The caller allocates and frees between resumes, while the function is paused.
        let resumes = stops.seen();
        stops.record();
        caller_heap.push(format!("resume {resumes}"));
        let scratch: Vec<u64> = (0..(resumes % 500)).collect();
        assert_eq!(scratch.len() as u64, resumes % 500);
        if caller_heap.len() > 100 {
            caller_heap.drain(..50);
        }
        inger::resume(&mut linger, Duration::from_micros(100)).expect("resume");
    }
    let (rounds, got) = linger.completion().expect("completed");
    assert_eq!(got, churn_for(17, rounds), "after {rounds} rounds");
    let after = inger::stats();
    assert!(after.preemptions - before.preemptions >= TARGET);
    let last = caller_heap.last().expect("caller allocated").clone();
    assert_eq!(last, format!("resume {}", stops.seen() - 1));
}

#[test]
fn several_allocating_functions_interleaved_on_one_thread() {
    let expected: Vec<_> = (0..4).map(|seed| churn_for(seed, 5_000)).collect();
    let mut lingers: Vec<_> = (0..4)
        .map(|seed| inger::launch(move || churn_for(seed, 5_000), Duration::ZERO).expect("launch"))
        .collect();
    let mut rounds = 0;
    while lingers.iter().any(|l| l.is_continuation()) {
        for linger in lingers.iter_mut() {
            inger::resume(linger, Duration::from_micros(150)).expect("resume");
        }
        rounds += 1;
        assert!(rounds < 1_000_000, "runaway");
    }
    let got: Vec<_> = lingers
        .into_iter()
        .map(|l| l.completion().expect("completed"))
        .collect();
    assert_eq!(got, expected);
}
