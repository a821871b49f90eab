//! The shared-TLS fallback, forced with `INGER_SHARED_TLS=1` (what inger does when glibc's
//! internals are not found): it is reported by `capabilities()`, functions share their
//! caller's thread-locals except errno, which is saved per function, and a continuation
//! resumed on another thread is refused with `Error::WrongThread` (and can still be resumed
//! on its own thread afterwards). Each scenario runs in a child process with the variable set.

mod common;

use std::cell::Cell;
use std::time::Duration;

use common::{Stops, drive, errno, preemptions, set_errno, spin};

const SLICE: Duration = Duration::from_micros(100);

thread_local! {
    static COUNTER: Cell<u64> = const { Cell::new(7) };
}

/// Runs `scenario` in a child process with shared TLS, or plays it if this is that child.
fn in_shared_tls_child(test: &str, scenario: fn()) {
    if let Some(mode) = common::child_mode() {
        assert_eq!(mode, test);
        scenario();
        common::print_child_ok(test);
        return;
    }
    common::run_child(test, test, &[("INGER_SHARED_TLS", "1")]).assert_child_ok(test);
}

#[test]
fn shared_tls_is_reported_and_thread_locals_are_shared() {
    in_shared_tls_child(
        "shared_tls_is_reported_and_thread_locals_are_shared",
        || {
            assert!(
                !inger::capabilities().private_tls,
                "{:?}",
                inger::capabilities()
            );
            COUNTER.with(|c| c.set(100));
            let seen = inger::launch(
                || {
                    let seen = COUNTER.with(Cell::get);
                    COUNTER.with(|c| c.set(200));
                    seen
                },
                Duration::MAX,
            )
            .expect("launch")
            .completion();
            assert_eq!(seen, Some(100), "documented: the caller's thread-locals");
            assert_eq!(COUNTER.with(Cell::get), 200);
        },
    );
}

/// Moves `linger` to a new thread, tries to resume it there, and brings it back.
fn resume_elsewhere<T: Send>(
    mut linger: inger::Linger<'static, T>,
) -> (inger::Linger<'static, T>, Result<(), inger::Error>) {
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let result = inger::resume(&mut linger, Duration::MAX);
                (linger, result)
            })
            .join()
            .expect("thread")
    })
}

#[test]
fn resuming_on_another_thread_is_refused_and_the_function_can_still_finish_at_home() {
    in_shared_tls_child(
        "resuming_on_another_thread_is_refused_and_the_function_can_still_finish_at_home",
        || {
            // Paused cooperatively.
            let linger = inger::launch(
                || {
                    inger::pause();
                    41
                },
                Duration::MAX,
            )
            .expect("launch");
            let (mut linger, result) = resume_elsewhere(linger);
            assert_eq!(result, Err(inger::Error::WrongThread));
            assert!(linger.is_continuation(), "untouched by the refusal");
            inger::resume(&mut linger, Duration::MAX).expect("resume at home");
            assert_eq!(linger.completion(), Some(41));

            // Paused by a preemption.
            static STOPS: Stops = Stops::new(1);
            let linger = inger::launch(
                || {
                    while !STOPS.done() {
                        spin(1, 1000);
                    }
                    42
                },
                SLICE,
            )
            .expect("launch");
            assert!(linger.is_continuation());
            let (linger, result) = resume_elsewhere(linger);
            assert_eq!(result, Err(inger::Error::WrongThread));
            STOPS.record();
            let (value, _) = drive(linger, Duration::MAX, |_| {});
            assert_eq!(value, 42);
        },
    );
}

#[test]
fn errno_is_kept_per_function_across_preemptions() {
    in_shared_tls_child("errno_is_kept_per_function_across_preemptions", || {
        const TARGET: u64 = 500;
        set_errno(libc::EINTR);
        let stops = Stops::leaked(TARGET);
        let before = preemptions();
        let linger = inger::launch(
            || {
                let mut wrong = Vec::new();
                let mut round = 0u64;
                while !stops.done() {
                    let value = 1000 + (round % 97) as i32;
                    set_errno(value);
                    spin(round, 5_000);
                    if errno() != value {
                        wrong.push((round, value, errno()));
                    }
                    round += 1;
                }
                wrong
            },
            SLICE,
        )
        .expect("launch");
        let mut caller_wrong = Vec::new();
        let mut expected = libc::EINTR;
        let (wrong, resumes) = drive(linger, SLICE, |stop| {
            if errno() != expected {
                caller_wrong.push((stop, expected, errno()));
            }
            expected = 5000 + (stop % 89) as i32;
            set_errno(expected);
            stops.record();
        });
        assert!(wrong.is_empty(), "the function's errno changed: {wrong:?}");
        assert!(
            caller_wrong.is_empty(),
            "the caller's errno changed: {caller_wrong:?}"
        );
        assert_eq!(errno(), expected);
        assert!(resumes >= TARGET);
        assert!(preemptions() - before >= TARGET);
    });
}

#[test]
fn paused_functions_each_keep_their_own_errno() {
    in_shared_tls_child("paused_functions_each_keep_their_own_errno", || {
        let make = |base: i32| {
            move || {
                let mut wrong = Vec::new();
                for step in 0..100 {
                    set_errno(base + step);
                    inger::pause();
                    if errno() != base + step {
                        wrong.push((step, errno()));
                    }
                }
                wrong
            }
        };
        let mut functions: Vec<_> = (1..=4)
            .map(|i| inger::launch(make(i * 10_000), Duration::MAX).expect("launch"))
            .collect();
        set_errno(7);
        while functions.iter().any(inger::Linger::is_continuation) {
            for linger in &mut functions {
                inger::resume(linger, Duration::MAX).expect("resume");
                assert_eq!(errno(), 7, "the caller's errno");
            }
        }
        for linger in functions {
            let wrong = linger.completion().expect("completed");
            assert!(wrong.is_empty(), "{wrong:?}");
        }
    });
}

/// The same fallback chosen in code, with `Config::private_tls(false)` (no environment
/// variable): each test runs in its own process, whose settings this installs first.
#[test]
fn config_private_tls_false_shares_the_callers_thread_locals() {
    inger::Config::new()
        .private_tls(false)
        .install()
        .expect("install");
    assert!(!inger::capabilities().private_tls);
    COUNTER.with(|counter| counter.set(41));
    let linger =
        inger::launch(|| COUNTER.with(|counter| counter.get() + 1), Duration::MAX).expect("launch");
    // With a private block the function would have seen the initial value, 7.
    assert_eq!(linger.completion(), Some(42));
}
