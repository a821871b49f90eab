//! Allocation storm (issue 4): two threads each run a function that allocates constantly
//! (vectors, hash maps, strings, JSON documents built, serialised and parsed back with
//! serde_json) under slices of 20–50 µs, while each caller allocates, formats and parses JSON
//! of its own between resumes. Both sides' results must equal a direct run: a function paused
//! inside the allocator (glibc's `malloc`, or the standard library's allocator entry points)
//! would leave the heap half-updated for the caller.

mod common;

use std::collections::HashMap;

use serde_json::{Value, json};

/// Rounds of allocation work per function.
const ROUNDS: u64 = 2500;

/// One round's JSON document.
fn document(seed: u64, round: u64) -> Value {
    let x = common::spin(seed ^ round, 8);
    json!({
        "round": round,
        "name": format!("item-{round}-{:x}", x & 0xffff),
        "tags": (0..(x % 7)).map(|i| format!("t{i}")).collect::<Vec<_>>(),
        "values": (0..(x % 40)).map(|i| (x >> (i % 60)) & 0xff).collect::<Vec<_>>(),
        "nested": { "flag": x.is_multiple_of(2), "ratio": (x % 1000) as f64 / 8.0 },
    })
}

/// Allocation-heavy deterministic work; returns a summary of the state it ends with.
fn churn(seed: u64) -> (u64, usize, String) {
    let mut ring: Vec<Vec<u64>> = vec![Vec::new(); 32];
    let mut map: HashMap<u64, String> = HashMap::new();
    let mut checksum = 0u64;
    for round in 0..ROUNDS {
        let x = common::spin(seed ^ round.rotate_left(17), 4);
        let len = (x % 1500) as usize;
        let vector: Vec<u64> = (0..len as u64).map(|i| i ^ x).collect();
        checksum = checksum.wrapping_add(vector.iter().fold(0, |a, b| a ^ b));
        ring[(round % 32) as usize] = vector;
        if x.is_multiple_of(3) {
            map.insert(x % 700, format!("{round}:{x:x}"));
        } else {
            map.remove(&(x % 700));
        }
        let text = serde_json::to_string(&document(seed, round)).expect("serialise");
        let parsed: Value = serde_json::from_str(&text).expect("parse back");
        checksum = checksum
            .wrapping_mul(31)
            .wrapping_add(text.len() as u64)
            .wrapping_add(parsed["values"].as_array().map_or(0, Vec::len) as u64)
            .wrapping_add(parsed["name"].as_str().map_or(0, str::len) as u64);
    }
    let mut keys: Vec<_> = map.keys().copied().collect();
    keys.sort_unstable();
    let sample = keys
        .iter()
        .step_by(50)
        .map(|k| map[k].as_str())
        .collect::<Vec<_>>()
        .join(",");
    (checksum, map.len(), sample)
}

/// What the caller does between resumes: allocation, formatting and JSON of its own, whose
/// result it checks at once and keeps a little of.
fn caller_allocates(thread: usize, stop: u64, kept: &mut Vec<String>) {
    let document = document(1000 + thread as u64, stop);
    let text = document.to_string();
    let back: Value = serde_json::from_str(&text).expect("caller parses its JSON");
    assert_eq!(
        back, document,
        "the caller's JSON round trip at stop {stop}"
    );
    let scratch: Vec<u64> = (0..(stop % 700)).collect();
    assert_eq!(
        scratch.iter().sum::<u64>(),
        (stop % 700) * (stop % 700).saturating_sub(1) / 2
    );
    kept.push(format!("{thread}:{stop}:{}", text.len()));
    if kept.len() > 200 {
        kept.drain(..100);
    }
}

#[test]
fn allocation_storm_on_two_threads_matches_a_direct_run() {
    let expected = [churn(0), churn(1)];
    let before = inger::stats();
    let results = common::on_two_threads(|thread| {
        let mut kept = Vec::new();
        let (value, stops) = common::storm(
            || churn(thread as u64),
            |stop| caller_allocates(thread, stop, &mut kept),
        );
        if stops > 0 {
            let last = kept.last().expect("the caller allocated");
            assert!(last.starts_with(&format!("{thread}:{}:", stops - 1)));
        }
        (value, stops)
    });
    let after = inger::stats();
    for (thread, (value, stops)) in results.iter().enumerate() {
        assert_eq!(value, &expected[thread], "thread {thread}'s result");
        assert!(*stops > 0, "thread {thread}'s function was never paused");
    }
    let deferred = (after.deferred_library - before.deferred_library)
        + (after.deferred_std - before.deferred_std);
    assert!(
        deferred > 0,
        "no deferral in the allocator over thousands of slices of allocation-heavy work"
    );
    println!(
        "allocation storm: stops {:?}, {} preemptions, {} deferred in libraries, {} in std sections",
        results.map(|(_, stops)| stops),
        after.preemptions - before.preemptions,
        after.deferred_library - before.deferred_library,
        after.deferred_std - before.deferred_std,
    );
}
