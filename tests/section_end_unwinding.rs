//! Redirected returns (issue 12) and everything that walks or leaves a stack: a panic raised
//! by user code inside a critical section propagates through the redirected frame, a
//! backtrace taken there shows the frames beyond it, a chain pauses at an inner function's
//! section end, a function paused at a section end can be cancelled (cooperatively or by
//! discarding it) and resumed on another thread, functions that read their own return
//! address (the `dl*` family) keep working, and with `INGER_REDIRECT=0` preemption falls
//! back to retries and says so.

mod common;

use std::fmt;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A value whose `Display` computes for a while (inside `print!`, under stdout's lock: a
/// standard-library critical section) and, when told to, panics there or takes a backtrace.
struct Slow {
    rounds: u64,
    panic: bool,
    backtrace: bool,
}

/// Backtraces taken by the `Display` of a `Slow` while its `print!` frame's return was
/// redirected, and how many of them named the function that printed (a frame beyond the
/// redirected one).
static BACKTRACES_WHILE_REDIRECTED: AtomicU64 = AtomicU64::new(0);
static NAMED_THE_CALLER: AtomicU64 = AtomicU64::new(0);

impl fmt::Display for Slow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redirects = inger::stats().redirects;
        let value = common::spin(self.rounds, self.rounds);
        // A redirect armed while this ran was armed on a frame of this print!, which has not
        // returned yet (one redirect at a time per stack, and this thread's function is the
        // only one that prints slowly).
        if self.backtrace && inger::stats().redirects > redirects {
            let trace = std::backtrace::Backtrace::force_capture().to_string();
            BACKTRACES_WHILE_REDIRECTED.fetch_add(1, Relaxed);
            if trace.contains("print_slowly_in_a_function") {
                NAMED_THE_CALLER.fetch_add(1, Relaxed);
            }
        }
        if self.panic {
            panic!("panicked inside print! after {value}");
        }
        write!(f, "{}", value & 1)
    }
}

/// Prints slow values to a sink-like stderr substitute: `print!` to stdout, which the test
/// harness captures. Returns how many printed.
#[inline(never)]
fn print_slowly_in_a_function(rounds: u64, times: u64, panic: bool, backtrace: bool) -> u64 {
    let mut printed = 0;
    for time in 0..times {
        let value = Slow {
            rounds: rounds + time % 7,
            panic,
            backtrace,
        };
        if panic {
            let caught = std::panic::catch_unwind(|| print!("{value}\r"));
            assert!(caught.is_err(), "the Display impl panicked");
        } else {
            print!("{value}\r");
        }
        printed += 1;
    }
    printed
}

#[test]
fn a_panic_inside_a_redirected_section_propagates_as_before() {
    let before = inger::stats();
    std::panic::set_hook(Box::new(|_| {})); // the panics are expected: keep stderr quiet
    let (printed, stops) = common::storm(
        || print_slowly_in_a_function(30_000, 400, true, false),
        |_| {},
    );
    let _ = std::panic::take_hook();
    let after = inger::stats();
    assert_eq!(printed, 400);
    // (It may never be paused: it lives in print! and in the panic machinery.)
    let _ = stops;
    assert!(
        after.redirects > before.redirects,
        "deadlines passed inside print!: {after:?}"
    );
}

#[test]
fn a_backtrace_inside_a_redirected_section_shows_the_frames_beyond_it() {
    let before = inger::stats();
    let (printed, _) = common::storm(
        || print_slowly_in_a_function(60_000, 150, false, true),
        |_| {},
    );
    let after = inger::stats();
    assert_eq!(printed, 150);
    assert!(after.redirects > before.redirects, "{after:?}");
    let taken = BACKTRACES_WHILE_REDIRECTED.load(Relaxed);
    assert!(
        taken > 0,
        "no backtrace was taken while a redirect was pending"
    );
    assert_eq!(
        NAMED_THE_CALLER.load(Relaxed),
        taken,
        "a backtrace taken inside a redirected print! did not reach the function that called it"
    );
}

#[test]
fn a_chain_pauses_at_the_end_of_an_inner_functions_section() {
    // The outer budget expires while the inner function (unlimited budget) is inside
    // print!: the chain pauses when that section ends.
    let before = inger::stats();
    let outer = inger::launch(
        || {
            let inner = inger::launch(
                || print_slowly_in_a_function(200_000, 100, false, false),
                Duration::MAX,
            )
            .expect("inner launch");
            inner
                .completion()
                .expect("an unlimited inner budget runs to completion")
        },
        Duration::from_micros(200),
    )
    .expect("launch");
    let (printed, stops) = common::finish(outer, Duration::from_micros(200), 1_000_000);
    let after = inger::stats();
    assert_eq!(printed, 100);
    assert!(stops > 0);
    assert!(
        after.paused_at_section_end > before.paused_at_section_end,
        "the chain never paused at a section end: {after:?}"
    );
}

/// Launches a function that prints slow values forever, checking for cancellation between
/// lines, and resumes it until it is paused at a section's end.
fn paused_at_a_section_end() -> inger::Continuation<'static, u64> {
    let mut linger = inger::launch(
        || {
            let mut printed = 0u64;
            loop {
                print!(
                    "{}\r",
                    Slow {
                        rounds: 200_000,
                        panic: false,
                        backtrace: false
                    }
                );
                printed += 1;
                inger::checkpoint();
                black_box(printed);
            }
        },
        Duration::from_micros(100),
    )
    .expect("launch");
    for _ in 0..100_000 {
        let before = inger::stats().paused_at_section_end;
        inger::resume(&mut linger, Duration::from_micros(100)).expect("resume");
        if inger::stats().paused_at_section_end > before {
            break;
        }
    }
    match linger {
        inger::Linger::Continuation(paused) => paused,
        inger::Linger::Completion(_) => unreachable!("an endless loop"),
    }
}

#[test]
fn a_function_paused_at_a_section_end_is_cancelled_cooperatively() {
    let paused = paused_at_a_section_end();
    assert_eq!(
        paused.cancel(),
        inger::CancelOutcome::Unwound,
        "it goes on from the section's end to its next checkpoint, and unwinds there"
    );
}

#[test]
fn a_function_paused_at_a_section_end_can_be_discarded() {
    paused_at_a_section_end().discard();
    // The thread carries on: stdout's lock was released when the section ended.
    println!("stdout is free");
}

#[test]
fn a_function_paused_at_a_section_end_resumes_on_another_thread() {
    let paused = paused_at_a_section_end();
    std::thread::spawn(move || {
        let before = inger::stats().paused_at_section_end;
        let mut linger = inger::Linger::Continuation(paused);
        for _ in 0..200 {
            inger::resume(&mut linger, Duration::from_micros(100)).expect("resume elsewhere");
        }
        assert!(linger.is_continuation());
        assert!(inger::stats().paused_at_section_end > before);
        drop(linger);
    })
    .join()
    .expect("the other thread");
}

#[test]
fn functions_that_read_their_own_return_address_keep_working() {
    // dladdr and dlsym find their caller's module from their return address; they are never
    // redirected, and their results stay right under a storm. Some Rust work between the
    // calls gives the deferred deadlines a preemptible place to land even in an optimised
    // build, where the loop is otherwise nearly all loader code.
    let own = functions_that_read_their_own_return_address_keep_working as *const () as usize;
    let work = move || {
        let own = own as *const libc::c_void;
        let mut found = 0u64;
        for round in 0..20_000u64 {
            std::hint::black_box(common::spin(round, 100));
            // SAFETY: dladdr with a valid out-parameter; dlsym with a NUL-terminated name.
            unsafe {
                let mut info: libc::Dl_info = core::mem::zeroed();
                assert_ne!(libc::dladdr(own, &mut info), 0);
                let next = libc::dlsym(libc::RTLD_NEXT, c"malloc".as_ptr());
                assert!(!next.is_null(), "round {round}");
                found += u64::from(!info.dli_fname.is_null());
            }
        }
        found
    };
    let (found, stops) = common::storm(work, |_| {});
    assert_eq!(found, 20_000);
    assert!(stops > 0);
}

#[test]
fn without_redirects_preemption_falls_back_to_retries() {
    if let Some(mode) = common::child_mode() {
        assert_eq!(mode, "no-redirect");
        assert!(!inger::capabilities().section_end_preemption);
        let before = inger::stats();
        // Rust work between the prints, where a retry can land.
        let work = || {
            (0..200u64).fold(0, |total, line| {
                total
                    + print_slowly_in_a_function(30_000, 1, false, false)
                    + common::spin(line, 30_000) % 2
            })
        };
        let (printed, stops) = common::storm(work, |_| {});
        let after = inger::stats();
        assert!(printed >= 200);
        assert!(stops > 0);
        assert_eq!(after.redirects, before.redirects);
        assert!(after.retries > before.retries);
        common::print_child_ok(&mode);
        return;
    }
    let output = common::run_child(
        "without_redirects_preemption_falls_back_to_retries",
        "no-redirect",
        &[("INGER_REDIRECT", "0")],
    );
    output.assert_child_ok("no-redirect");
}
