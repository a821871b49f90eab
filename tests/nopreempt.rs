//! A `nopreempt` section that spans a deadline is never paused inside; the pause happens
//! as soon as the section ends, and the deferral is counted.
//!
//! How the test knows the section spans the deadline without timing anything: inside the
//! section the function waits until `stats().deferred_nopreempt` grows, which happens only
//! when the timer fired, found the deadline passed, and deferred because of the section.
//! This file holds one test, so no other function in the process moves that counter.

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Where the function is, as the caller sees it when it gets control back.
const BEFORE_SECTION: u32 = 0;
const IN_SECTION: u32 = 1;
/// The section has ended (its last statement ran) but no code after it has run yet.
const SECTION_ENDED: u32 = 2;
const AFTER_SECTION: u32 = 3;

/// Inside a section: waits until the preemption it defers has been counted.
fn wait_for_a_deferral() {
    let seen = inger::stats().deferred_nopreempt;
    let mut spins = 0u64;
    while inger::stats().deferred_nopreempt == seen {
        spins = black_box(spins + 1);
        assert!(
            spins < 50_000_000_000,
            "the deadline never fired inside the section"
        );
    }
}

/// `rounds` sections, in turn with `nopreempt(..)`, the `NoPreempt` guard, and a section
/// nested in another (whose inner end must not pause: the outer section is still open).
fn sections(rounds: u32, phase: &AtomicU32, completed: &AtomicU32) {
    for round in 0..rounds {
        phase.store(BEFORE_SECTION, Relaxed);
        match round % 3 {
            0 => inger::nopreempt(|| {
                phase.store(IN_SECTION, Relaxed);
                wait_for_a_deferral();
                phase.store(SECTION_ENDED, Relaxed);
            }),
            1 => {
                let guard = inger::NoPreempt::new();
                phase.store(IN_SECTION, Relaxed);
                wait_for_a_deferral();
                phase.store(SECTION_ENDED, Relaxed);
                drop(guard);
            }
            _ => {
                let outer = inger::NoPreempt::new();
                phase.store(IN_SECTION, Relaxed);
                inger::nopreempt(wait_for_a_deferral);
                // Still inside the outer section: the pending pause must wait.
                black_box(a_little_work());
                phase.store(SECTION_ENDED, Relaxed);
                drop(outer);
            }
        }
        phase.store(AFTER_SECTION, Relaxed);
        completed.fetch_add(1, Relaxed);
    }
}

/// A little work between the inner and the outer end of a nested section.
fn a_little_work() -> u64 {
    (0..10_000u64).fold(0, |acc, i| black_box(acc ^ i))
}

#[test]
fn a_section_spanning_the_deadline_pauses_right_after_it_ends() {
    const ROUNDS: u32 = 60;
    static PHASE: AtomicU32 = AtomicU32::new(BEFORE_SECTION);
    let phase = &PHASE;
    static COMPLETED: AtomicU32 = AtomicU32::new(0);
    let completed = &COMPLETED;
    let paused_at_section_end = AtomicU64::new(0);
    let before = inger::stats();
    let mut linger = inger::launch(
        move || sections(ROUNDS, phase, completed),
        Duration::from_micros(500),
    )
    .expect("launch");
    let mut stops = 0u64;
    while linger.is_continuation() {
        stops += 1;
        assert!(!linger.yielded());
        let at = phase.load(Relaxed);
        assert_ne!(
            at, IN_SECTION,
            "paused inside a nopreempt section (stop {stops})"
        );
        if at == SECTION_ENDED {
            paused_at_section_end.fetch_add(1, Relaxed);
        }
        inger::resume(&mut linger, Duration::from_micros(500)).expect("resume");
    }
    assert_eq!(completed.load(Relaxed), ROUNDS);
    // Every section waited for a deferral, so every section's end had a pending preemption
    // and must have paused right there, before the next statement.
    assert_eq!(paused_at_section_end.load(Relaxed), u64::from(ROUNDS));
    let after = inger::stats();
    assert!(after.deferred_nopreempt - before.deferred_nopreempt >= u64::from(ROUNDS));
    assert!(after.preemptions - before.preemptions >= u64::from(ROUNDS));
}
