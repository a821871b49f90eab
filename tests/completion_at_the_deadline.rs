//! Functions that return right around their deadline: the timer often fires while the
//! function is returning (its result stored, its stack about to be left). Whatever instant
//! it lands on, the caller gets the function's value exactly once, and the runtime's
//! bookkeeping stays consistent (a debug build checks the final state on the way out).

mod common;

use std::time::Duration;

/// Work that takes about as long as the budget (tens of microseconds) in this build.
const ROUNDS: u64 = if cfg!(debug_assertions) {
    3_000
} else {
    30_000
};

#[test]
fn functions_finishing_at_their_deadline_complete_once_with_their_value() {
    let budget = Duration::from_micros(60);
    let before = inger::stats();
    let mut paused = 0u64;
    for i in 0..8_000u64 {
        let rounds = ROUNDS / 2 + i % ROUNDS;
        let mut linger = inger::launch(move || common::mix(i, rounds), budget).expect("launch");
        while linger.is_continuation() {
            paused += 1;
            assert!(paused < 10_000_000, "runaway");
            inger::resume(&mut linger, budget).expect("resume");
        }
        assert_eq!(
            linger.completion(),
            Some(common::mix(i, rounds)),
            "function {i}"
        );
    }
    assert!(paused > 0);
    assert!(inger::stats().preemptions > before.preemptions);
}
