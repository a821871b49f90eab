//! Thousands of small resumes of a deterministic workload: preempted at arbitrary
//! instructions again and again, it must compute exactly what a direct call computes.

mod support;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

/// A workload touching registers, the stack, the heap and a standard collection.
fn workload(seed: u64) -> (u64, Vec<u64>, String) {
    let mut map = BTreeMap::new();
    let mut values = Vec::new();
    let mut x = seed;
    for i in 0..60_000u64 {
        x = support::mix(x ^ i, 8);
        values.push(x % 1000);
        *map.entry(x % 97).or_insert(0u64) += 1;
    }
    values.sort_unstable();
    values.dedup();
    let summary = map
        .iter()
        .take(5)
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(",");
    (black_box(x), values, summary)
}

#[test]
fn many_small_resumes_give_the_direct_result() {
    let expected = workload(5);
    let before = support::preemptions();
    let linger = inger::launch(|| workload(5), Duration::from_micros(100)).expect("launch");
    let (got, resumes) = support::finish(linger, Duration::from_micros(100), 10_000_000);
    assert_eq!(got, expected);
    let preempted = support::preemptions() - before;
    assert!(
        resumes >= 100,
        "only {resumes} resumes: the workload is too short to test much"
    );
    assert!(preempted >= 100, "only {preempted} preemptions");
}

#[test]
fn repeated_runs_with_different_slices_agree() {
    let expected = workload(9);
    for budget_us in [120u64, 370, 1500] {
        let linger =
            inger::launch(|| workload(9), Duration::from_micros(budget_us)).expect("launch");
        let (got, _) = support::finish(linger, Duration::from_micros(budget_us), 10_000_000);
        assert_eq!(got, expected, "slice {budget_us} us");
    }
}
