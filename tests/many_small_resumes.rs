//! Thousands of small resumes of a deterministic workload: preempted at arbitrary
//! instructions again and again, it must compute exactly what a direct call computes.

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use common::Stops;

/// A workload touching registers, the stack, the heap and a standard collection. Runs steps
/// while `go_on(step)` says so; returns how many it ran and a summary of the result.
fn workload(seed: u64, mut go_on: impl FnMut(u64) -> bool) -> (u64, (u64, Vec<u64>, String)) {
    let mut map = BTreeMap::new();
    let mut values = Vec::new();
    let mut x = seed;
    let mut i = 0u64;
    while go_on(i) {
        x = common::mix(x ^ i, 8);
        values.push(x % 1000);
        *map.entry(x % 97).or_insert(0u64) += 1;
        i += 1;
    }
    values.sort_unstable();
    values.dedup();
    let summary = map
        .iter()
        .take(5)
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(",");
    (i, (black_box(x), values, summary))
}

/// `workload` for exactly `steps` steps.
fn workload_for(seed: u64, steps: u64) -> (u64, Vec<u64>, String) {
    workload(seed, |i| i < steps).1
}

#[test]
fn many_small_resumes_give_the_direct_result() {
    // The function keeps going until it has been stopped `TARGET` times (the same in debug
    // and optimised builds); a direct run of as many steps must give the same result.
    const TARGET: u64 = 1000;
    let stops = Stops::leaked(TARGET);
    let before = common::preemptions();
    let mut linger = inger::launch(
        || workload(5, |_| !stops.done()),
        Duration::from_micros(100),
    )
    .expect("launch");
    while linger.is_continuation() {
        assert!(!linger.yielded());
        stops.record();
        inger::resume(&mut linger, Duration::from_micros(100)).expect("resume");
    }
    let (steps, got) = linger.completion().expect("completed");
    assert_eq!(got, workload_for(5, steps), "after {steps} steps");
    assert!(common::preemptions() - before >= TARGET);
}

#[test]
fn repeated_runs_with_different_slices_agree() {
    let expected = workload_for(9, 60_000);
    for budget_us in [120u64, 370, 1500] {
        let linger = inger::launch(|| workload_for(9, 60_000), Duration::from_micros(budget_us))
            .expect("launch");
        let (got, _) = common::finish(linger, Duration::from_micros(budget_us), 10_000_000);
        assert_eq!(got, expected, "slice {budget_us} us");
    }
}
