//! `INGER_PREEMPT=0` turns timer preemption off: budgets are ignored, functions run until
//! they return or pause, and no preemption is ever counted. Runs in child processes, since
//! the switch is read once per process.

mod common;

use std::time::Duration;

fn child(mode: &str) {
    assert!(
        !inger::preemption_enabled(),
        "{mode}: the kill switch is set"
    );
    let before = inger::stats();
    // Long enough to be preempted many times over with a 100 us budget, were it enabled.
    let linger =
        inger::launch(|| common::mix(8, 3_000_000), Duration::from_micros(100)).expect("launch");
    assert!(
        linger.is_completion(),
        "{mode}: ran to completion despite the budget"
    );
    assert_eq!(linger.completion(), Some(common::mix(8, 3_000_000)));
    // Cooperative pauses still work.
    let mut linger = inger::launch(
        || {
            inger::pause();
            9
        },
        Duration::from_micros(100),
    )
    .expect("launch");
    assert!(linger.yielded());
    inger::resume(&mut linger, Duration::from_micros(1)).expect("resume");
    assert_eq!(linger.completion(), Some(9));
    let after = inger::stats();
    assert_eq!(
        after.preemptions, before.preemptions,
        "{mode}: nothing was preempted"
    );
    assert_eq!(after.preemptions, 0);
    assert_eq!(after.yields, before.yields + 1);
    // The preemption signal was never claimed.
    // SAFETY: a zeroed sigaction is a valid out-parameter; querying changes nothing.
    let handler = unsafe {
        let mut current: libc::sigaction = core::mem::zeroed();
        assert_eq!(
            libc::sigaction(libc::SIGRTMAX() - 4, core::ptr::null(), &mut current),
            0
        );
        current.sa_sigaction
    };
    assert_eq!(
        handler,
        libc::SIG_DFL,
        "{mode}: no handler on the default signal"
    );
    common::print_child_ok(mode);
}

fn expect_child_ok(test: &str, mode: &str, value: &str) {
    common::run_child(test, mode, &[("INGER_PREEMPT", value)]).assert_child_ok(mode);
}

#[test]
fn inger_preempt_0_turns_preemption_off() {
    if let Some(mode) = common::child_mode() {
        return child(&mode);
    }
    expect_child_ok("inger_preempt_0_turns_preemption_off", "zero", "0");
}

#[test]
fn inger_preempt_off_turns_preemption_off() {
    if let Some(mode) = common::child_mode() {
        return child(&mode);
    }
    expect_child_ok("inger_preempt_off_turns_preemption_off", "off", "off");
}

#[test]
fn the_kill_switch_wins_over_the_builder() {
    if let Some(mode) = common::child_mode() {
        inger::Config::new()
            .preemption(true)
            .install()
            .expect("install");
        return child(&mode);
    }
    expect_child_ok("the_kill_switch_wins_over_the_builder", "builder", "false");
}
