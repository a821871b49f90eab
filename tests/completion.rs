//! A function that returns within its budget completes: `launch` hands back its value.

mod common;

use std::time::Duration;

use inger::Linger;

#[test]
fn a_short_function_completes_with_its_value() {
    let linger = inger::launch(|| 6 * 7, common::GENEROUS).expect("launch");
    assert!(linger.is_completion());
    assert!(!linger.is_continuation());
    assert!(!linger.yielded());
    assert_eq!(linger.completion(), Some(42));
}

#[test]
fn an_unlimited_budget_runs_a_long_function_to_completion() {
    let before = common::preemptions();
    let linger = inger::launch(|| common::mix(7, 2_000_000), Duration::MAX).expect("launch");
    assert_eq!(linger.completion(), Some(common::mix(7, 2_000_000)));
    // Other tests of this binary may run meanwhile, so only a sanity bound: the counter moves
    // forwards.
    assert!(common::preemptions() >= before);
}

#[test]
fn the_function_may_borrow_and_mutate_the_callers_data() {
    let mut numbers = vec![3u32, 1, 2];
    let text = String::from("borrowed");
    let sum = inger::scope(|s| {
        let linger = s
            .launch(
                || {
                    numbers.sort_unstable();
                    numbers.push(text.len() as u32);
                    numbers.iter().sum::<u32>()
                },
                common::GENEROUS,
            )
            .expect("launch");
        linger.completion()
    });
    assert_eq!(sum, Some(1 + 2 + 3 + 8));
    assert_eq!(numbers, [1, 2, 3, 8]);
}

#[test]
fn the_function_knows_it_is_preemptible_and_its_caller_does_not() {
    assert!(!inger::in_preemptible());
    let linger = inger::launch(inger::in_preemptible, common::GENEROUS).expect("launch");
    assert_eq!(linger.completion(), Some(true));
    assert!(!inger::in_preemptible());
}

#[test]
fn resuming_a_completion_is_a_no_op() {
    let mut linger = inger::launch(|| String::from("done"), common::GENEROUS).expect("launch");
    inger::resume(&mut linger, Duration::from_millis(1)).expect("resume of a completion");
    linger
        .resume(Duration::MAX)
        .expect("resume of a completion");
    match linger {
        Linger::Completion(text) => assert_eq!(text, "done"),
        Linger::Continuation(_) => panic!("a completion turned into a continuation"),
    }
}

#[test]
fn many_launches_in_a_row_reuse_stacks_and_all_complete() {
    for i in 0..10_000u64 {
        let linger = inger::launch(move || i * 3, common::GENEROUS).expect("launch");
        assert_eq!(linger.completion(), Some(i * 3));
    }
}

#[test]
fn values_with_destructors_come_back_intact() {
    let linger = inger::launch(|| vec![String::from("a"); 1000], Duration::MAX).expect("launch");
    let values = linger.completion().expect("completed");
    assert_eq!(values.len(), 1000);
    assert!(values.iter().all(|v| v == "a"));
}
