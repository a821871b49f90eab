//! A function that outlives its first budget is resumed until it returns, with its result
//! exactly what a direct call gives.

mod common;

use std::time::Duration;

const ROUNDS: u64 = 3_000_000;

#[test]
fn a_long_function_is_resumed_to_completion() {
    let expected = common::mix(11, ROUNDS);
    let before = common::preemptions();
    let mut linger =
        inger::launch(|| common::mix(11, ROUNDS), Duration::from_micros(200)).expect("launch");
    assert!(
        linger.is_continuation(),
        "the workload takes far longer than 200 us"
    );
    let mut resumes = 0u64;
    while linger.is_continuation() {
        assert!(!linger.yielded());
        inger::resume(&mut linger, Duration::from_micros(500)).expect("resume");
        resumes += 1;
        assert!(resumes < 1_000_000, "runaway");
    }
    assert_eq!(linger.completion(), Some(expected));
    assert!(resumes >= 1);
    assert!(common::preemptions() > before);
}

#[test]
fn the_continuation_api_also_resumes_to_completion() {
    let expected = common::mix(12, ROUNDS);
    let mut linger =
        inger::launch(|| common::mix(12, ROUNDS), Duration::from_micros(200)).expect("launch");
    let mut resumes = 0u64;
    let value = loop {
        match linger {
            inger::Linger::Completion(value) => break value,
            inger::Linger::Continuation(continuation) => {
                assert!(!continuation.is_unstarted());
                linger = continuation
                    .resume(Duration::from_micros(500))
                    .expect("resume");
                resumes += 1;
            }
        }
    };
    assert_eq!(value, expected);
    assert!(resumes >= 1);
}

#[test]
fn a_final_unlimited_resume_finishes_the_function() {
    let expected = common::mix(13, ROUNDS);
    let mut linger =
        inger::launch(|| common::mix(13, ROUNDS), Duration::from_micros(200)).expect("launch");
    assert!(linger.is_continuation());
    inger::resume(&mut linger, Duration::MAX).expect("resume");
    assert_eq!(linger.completion(), Some(expected));
}
