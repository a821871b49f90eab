//! Each misuse of the API that can happen in one process gives its error (the ones that
//! need a fresh process, such as bad environment settings, are in `config_errors.rs`).

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use inger::Error;

#[test]
fn resuming_a_finished_continuation_is_an_error() {
    let mut linger = inger::launch(
        || -> u8 {
            inger::pause();
            panic!("finish by panicking")
        },
        Duration::MAX,
    )
    .expect("launch");
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        inger::resume(&mut linger, Duration::MAX)
    }));
    assert!(panicked.is_err());
    for budget in [Duration::ZERO, Duration::from_millis(1), Duration::MAX] {
        assert_eq!(inger::resume(&mut linger, budget), Err(Error::Finished));
    }
    let inger::Linger::Continuation(continuation) = linger else {
        panic!("a panicked function is not a completion")
    };
    assert!(!continuation.is_unstarted());
    assert!(matches!(
        continuation.resume(Duration::MAX),
        Err(Error::Finished)
    ));
}

#[test]
fn installing_a_config_after_the_first_launch_is_an_error() {
    let linger = inger::launch(|| 1, Duration::MAX).expect("launch");
    assert_eq!(linger.completion(), Some(1));
    assert_eq!(
        inger::Config::new().install(),
        Err(Error::AlreadyInitialized)
    );
    let from_env = inger::Config::from_env().expect("the test environment sets no bad INGER_*");
    assert_eq!(from_env.install(), Err(Error::AlreadyInitialized));
    // And launching keeps working.
    assert_eq!(
        inger::launch(|| 2, Duration::MAX)
            .expect("launch")
            .completion(),
        Some(2)
    );
}

#[test]
fn a_closure_too_large_for_the_stack_is_an_error() {
    // 4 MiB of captured data: twice the default stack. Built on a thread with a big enough
    // stack of its own.
    let outcome = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(|| {
            let big = [7u8; 4 << 20];
            match inger::launch(
                move || big.iter().map(|&b| u64::from(b)).sum::<u64>(),
                Duration::MAX,
            ) {
                Err(Error::InvalidConfig(why)) => Ok(why),
                Err(other) => Err(format!("wrong error: {other:?}")),
                Ok(_) => Err(String::from("a 4 MiB closure was accepted")),
            }
        })
        .expect("spawn")
        .join()
        .expect("join");
    let why = outcome.expect("InvalidConfig");
    assert!(
        why.contains("INGER_STACK_SIZE"),
        "the message names the setting: {why}"
    );
    // A large value that fits still works (boxing is the documented way out, but 64 KiB is
    // fine on the default stack).
    let medium = [1u8; 64 * 1024];
    let linger = inger::launch(move || medium.len(), Duration::MAX).expect("launch");
    assert_eq!(linger.completion(), Some(64 * 1024));
}

#[test]
fn error_codes_are_distinct_and_messages_explain() {
    let errors = [
        Error::StackAllocation {
            errno: libc::ENOMEM,
        },
        Error::SignalInUse { signal: 60 },
        Error::System {
            call: "timer_create",
            errno: libc::EAGAIN,
        },
        Error::InvalidConfig(String::from("INGER_STACK_SIZE=\"lots\"")),
        Error::AlreadyInitialized,
        Error::Finished,
        Error::AlreadyRunning,
        Error::InSignalHandler,
    ];
    let mut codes: Vec<i32> = errors.iter().map(Error::code).collect();
    codes.sort_unstable();
    assert_eq!(codes, (1..=8).collect::<Vec<_>>());
    for error in &errors {
        let text = error.to_string();
        assert!(text.len() > 10, "{error:?} has a real message: {text:?}");
        let _: &dyn std::error::Error = error;
    }
    assert!(
        Error::SignalInUse { signal: 60 }
            .to_string()
            .contains("INGER_SIGNAL")
    );
}

#[test]
fn misuse_leaves_the_thread_usable() {
    let mut linger = inger::launch(|| -> u8 { panic!("gone") }, Duration::ZERO).expect("launch");
    assert!(
        catch_unwind(AssertUnwindSafe(|| inger::resume(
            &mut linger,
            Duration::MAX
        )))
        .is_err()
    );
    assert_eq!(
        inger::resume(&mut linger, Duration::MAX),
        Err(Error::Finished)
    );
    let expected = common::mix(2, 300_000);
    let linger =
        inger::launch(|| common::mix(2, 300_000), Duration::from_micros(100)).expect("launch");
    assert_eq!(
        common::finish(linger, Duration::from_micros(100), 1_000_000).0,
        expected
    );
}
