//! The preemption signal in a process that touches it (issue 17): a handler reset to its
//! default makes the next launch that would arm the timer fail with
//! [`inger::Error::HandlerReplaced`] instead of killing the process at the expiry, and a timer
//! of someone else's that sends the same signal is ignored (its value is not taken for
//! inger's). Both run in a child process, since they change process-wide signal state.

mod common;

use std::time::Duration;

/// The signal the children use, named explicitly so that the scenarios can touch it.
const SIGNAL_SETTING: (&str, &str) = ("INGER_SIGNAL", "SIGRTMAX-4");

fn preemption_signal() -> i32 {
    libc::SIGRTMAX() - 4
}

#[test]
fn a_reset_handler_makes_the_next_armed_launch_fail_instead_of_killing() {
    const MODE: &str = "reset";
    if common::child_mode().as_deref() == Some(MODE) {
        // Start the runtime without arming the timer (no budget), then reset the handler.
        let linger = inger::launch(|| 1, Duration::MAX).expect("launch");
        assert_eq!(linger.completion(), Some(1));
        // SAFETY: resetting a signal to its default action has no preconditions.
        unsafe { libc::signal(preemption_signal(), libc::SIG_DFL) };
        let refused = inger::launch(|| 2, Duration::from_millis(1));
        match refused {
            Err(inger::Error::HandlerReplaced { signal }) => {
                assert_eq!(signal, preemption_signal());
            }
            other => panic!("expected HandlerReplaced, got {other:?}"),
        }
        // Launches that arm nothing still work.
        let linger = inger::launch(|| 3, Duration::MAX).expect("launch without a budget");
        assert_eq!(linger.completion(), Some(3));
        // Give a wrongly armed timer the time to kill us.
        std::thread::sleep(Duration::from_millis(20));
        common::print_child_ok(MODE);
        return;
    }
    common::run_child(
        "a_reset_handler_makes_the_next_armed_launch_fail_instead_of_killing",
        MODE,
        &[SIGNAL_SETTING],
    )
    .assert_child_ok(MODE);
}

#[test]
fn a_foreign_timer_on_the_preemption_signal_is_ignored() {
    const MODE: &str = "foreign";
    if common::child_mode().as_deref() == Some(MODE) {
        let linger = inger::launch(|| 0, Duration::MAX).expect("start the runtime");
        assert_eq!(linger.completion(), Some(0));
        // Someone else's periodic timer on the same signal, with a value that would be a wild
        // pointer if taken for a runtime's.
        // SAFETY: an all-zero sigevent is a valid starting value.
        let mut event: libc::sigevent = unsafe { core::mem::zeroed() };
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = preemption_signal();
        event.sigev_value = libc::sigval {
            sival_ptr: 0xdead_beef_usize as *mut libc::c_void,
        };
        event.sigev_notify_thread_id = common::kernel_tid();
        let mut id: libc::timer_t = core::ptr::null_mut();
        // SAFETY: valid out-parameters.
        let created = unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut id) };
        assert_eq!(created, 0);
        let every = libc::timespec {
            tv_sec: 0,
            tv_nsec: 200_000,
        };
        let spec = libc::itimerspec {
            it_interval: every,
            it_value: every,
        };
        // SAFETY: a live timer, a valid spec.
        let set = unsafe { libc::timer_settime(id, 0, &spec, core::ptr::null_mut()) };
        assert_eq!(set, 0);
        let before = inger::stats();
        let mut total = 0u64;
        for round in 0..20u64 {
            let linger = inger::launch(
                move || common::mix(round, 200_000),
                Duration::from_millis(1),
            )
            .expect("launch");
            let (value, _) = common::finish(linger, Duration::from_millis(1), 100_000);
            total = total.wrapping_add(value);
        }
        // SAFETY: a live timer.
        unsafe { libc::timer_delete(id) };
        let expected = (0..20u64).fold(0u64, |sum, round| {
            sum.wrapping_add(common::mix(round, 200_000))
        });
        assert_eq!(total, expected);
        let after = inger::stats();
        assert!(
            after.foreign_timer_signals > before.foreign_timer_signals,
            "the foreign timer's signals were not seen: {after:?}"
        );
        common::print_child_ok(MODE);
        return;
    }
    common::run_child(
        "a_foreign_timer_on_the_preemption_signal_is_ignored",
        MODE,
        &[SIGNAL_SETTING],
    )
    .assert_child_ok(MODE);
}
