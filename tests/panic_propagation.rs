//! A panic inside a preemptible function propagates out of the `launch` or `resume` that was
//! running it; the `Linger` is then finished and resuming it returns `Error::Finished`.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind, panic_any};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

fn message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        String::from("<not a string>")
    }
}

#[test]
fn a_panic_propagates_out_of_launch() {
    let caught =
        catch_unwind(|| inger::launch(|| -> u32 { panic!("boom in launch") }, Duration::MAX));
    let payload = caught.expect_err("the panic must propagate");
    assert_eq!(message(&*payload), "boom in launch");
    assert!(!inger::in_preemptible());
}

#[test]
fn the_payload_keeps_its_type() {
    let caught = catch_unwind(|| inger::launch(|| panic_any(0xdead_u32), common::GENEROUS));
    let payload = caught.expect_err("the panic must propagate");
    assert_eq!(payload.downcast_ref::<u32>(), Some(&0xdead));
}

#[test]
fn a_panic_after_a_pause_propagates_out_of_resume_and_leaves_a_finished_linger() {
    let mut linger = inger::launch(
        || -> u32 {
            inger::pause();
            panic!("boom in resume")
        },
        Duration::MAX,
    )
    .expect("launch");
    assert!(linger.yielded());
    let caught = catch_unwind(AssertUnwindSafe(|| {
        inger::resume(&mut linger, Duration::MAX)
    }));
    let payload = caught.expect_err("the panic must propagate out of resume");
    assert_eq!(message(&*payload), "boom in resume");
    assert!(
        linger.is_continuation(),
        "the linger keeps a finished continuation"
    );
    assert!(!linger.yielded());
    assert_eq!(
        inger::resume(&mut linger, Duration::MAX),
        Err(inger::Error::Finished)
    );
    assert_eq!(
        linger.resume(Duration::from_millis(1)),
        Err(inger::Error::Finished)
    );
}

#[test]
fn a_panic_after_preemptions_propagates_out_of_resume() {
    static STOP: AtomicBool = AtomicBool::new(false);
    let stop = &STOP;
    let mut linger = inger::launch(
        || -> u64 {
            let mut n = 0u64;
            while !stop.load(Relaxed) {
                n = std::hint::black_box(n + 1);
            }
            panic!("boom after {} iterations", n.min(1))
        },
        Duration::from_micros(300),
    )
    .expect("launch");
    assert!(linger.is_continuation());
    for _ in 0..20 {
        inger::resume(&mut linger, Duration::from_micros(100)).expect("resume");
        assert!(linger.is_continuation());
    }
    stop.store(true, Relaxed);
    let caught = catch_unwind(AssertUnwindSafe(|| {
        inger::resume(&mut linger, common::GENEROUS)
    }));
    assert_eq!(
        message(&*caught.expect_err("must propagate")),
        "boom after 1 iterations"
    );
    assert_eq!(
        inger::resume(&mut linger, Duration::MAX),
        Err(inger::Error::Finished)
    );
}

#[test]
fn a_panic_propagates_out_of_continuation_resume() {
    let linger = inger::launch(
        || -> u8 {
            inger::pause();
            panic_any(String::from("owned payload"))
        },
        Duration::MAX,
    )
    .expect("launch");
    let inger::Linger::Continuation(continuation) = linger else {
        panic!("completed early")
    };
    let caught = catch_unwind(AssertUnwindSafe(move || continuation.resume(Duration::MAX)));
    assert_eq!(
        message(&*caught.expect_err("must propagate")),
        "owned payload"
    );
}

#[test]
fn the_thread_keeps_working_after_panics() {
    for i in 0..200u64 {
        let caught = catch_unwind(move || {
            inger::launch(move || -> u64 { panic!("boom {i}") }, Duration::MAX)
        });
        assert!(caught.is_err());
    }
    let expected = common::mix(3, 1_000_000);
    let linger =
        inger::launch(|| common::mix(3, 1_000_000), Duration::from_micros(200)).expect("launch");
    let (value, _) = common::finish(linger, Duration::from_micros(200), 1_000_000);
    assert_eq!(value, expected);
    assert!(!inger::in_preemptible());
}

#[test]
fn a_nested_panic_can_be_caught_by_the_outer_function() {
    let linger = inger::launch(
        || {
            let inner =
                catch_unwind(|| inger::launch(|| -> u8 { panic!("inner boom") }, Duration::MAX));
            let payload = inner.expect_err("inner panic propagates to the outer function");
            assert!(
                inger::in_preemptible(),
                "the outer function is still running"
            );
            message(&*payload)
        },
        Duration::MAX,
    )
    .expect("launch");
    assert_eq!(linger.completion().as_deref(), Some("inner boom"));
}
