//! C code compiled with `-fstack-protector-all` (`tests/c/tls/stack_protector.c`) called
//! inside preemptible functions: protected frames that a preemption interrupts, frames that
//! span a cooperative pause, frames in the caller that span a resume, and frames of a function
//! that migrates to another thread. Every frame checks its canary (read from the installed
//! thread control block) on return, so a block with the wrong canary aborts with "stack
//! smashing detected". Each scenario runs in a child process so such an abort is reported
//! as the child's failure with its message.

mod common;

use std::cell::Cell;
use std::path::PathBuf;
use std::time::Duration;

use common::{Library, Stops, as_fn, preemptions};

const SLICE: Duration = Duration::from_micros(100);

type Recurse = unsafe extern "C" fn(i32, u64) -> u64;
type WithCallback = unsafe extern "C" fn(i32, u64, extern "C" fn()) -> u64;

/// The protected C functions.
#[derive(Clone, Copy)]
struct Protected {
    recurse: Recurse,
    with_callback: WithCallback,
}

// The wrappers call the functions of stack_protector.c, which have exactly these signatures
// and no preconditions (the callback is a plain function).
impl Protected {
    /// Compiles (once) the protected library.
    fn compile() -> PathBuf {
        common::compile_c(
            "tls/stack_protector.c",
            "stack_protector",
            &["-fstack-protector-all"],
        )
    }

    fn load() -> Protected {
        let library = Library::open(&Protected::compile());
        // SAFETY: the types match the C definitions.
        unsafe {
            Protected {
                recurse: as_fn(library.address("sp_recurse")),
                with_callback: as_fn(library.address("sp_with_callback")),
            }
        }
    }

    fn recurse(&self, depth: i32, seed: u64) -> u64 {
        // SAFETY: see the impl comment.
        unsafe { (self.recurse)(depth, seed) }
    }

    fn with_callback(&self, depth: i32, seed: u64, callback: extern "C" fn()) -> u64 {
        // SAFETY: see the impl comment.
        unsafe { (self.with_callback)(depth, seed, callback) }
    }
}

/// Runs `scenario` in a child process, or plays it if this is that child.
fn in_child(test: &str, scenario: fn(Protected)) {
    if let Some(mode) = common::child_mode() {
        assert_eq!(mode, test);
        scenario(Protected::load());
        common::print_child_ok(test);
        return;
    }
    // Compile in the parent, so a compiler failure is reported as such.
    let _ = Protected::compile();
    let output = common::run_child(test, test, &[]);
    assert!(
        !output.stderr.contains("stack smashing detected"),
        "a canary check failed: {}",
        output.describe()
    );
    output.assert_child_ok(test);
}

#[test]
fn protected_frames_interrupted_by_thousands_of_preemptions() {
    in_child(
        "protected_frames_interrupted_by_thousands_of_preemptions",
        |c| {
            const TARGET: u64 = 1000;
            let stops = Stops::leaked(TARGET);
            let before = preemptions();
            let mut linger = inger::launch(
                move || {
                    let mut hash = 0u64;
                    let mut calls = 0u64;
                    while !stops.done() {
                        hash ^= c.recurse(12, calls);
                        calls += 1;
                    }
                    (calls, hash)
                },
                SLICE,
            )
            .expect("launch");
            while linger.is_continuation() {
                stops.record();
                // The caller runs protected frames too, between resumes.
                std::hint::black_box(c.recurse(2, stops.seen()));
                inger::resume(&mut linger, SLICE).expect("resume");
            }
            let (calls, hash) = linger.completion().expect("completed");
            let expected = (0..calls).fold(0u64, |h, i| h ^ c.recurse(12, i));
            assert_eq!(hash, expected);
            assert!(preemptions() - before >= TARGET);
        },
    );
}

extern "C" fn pause_here() {
    inger::pause();
}

thread_local! {
    /// The continuation that `resume_here` resumes (set around the call that uses it).
    static TO_RESUME: Cell<*mut inger::Linger<'static, (Vec<u64>, u64)>> =
        const { Cell::new(core::ptr::null_mut()) };
}

extern "C" fn resume_here() {
    let linger = TO_RESUME.with(Cell::get);
    // SAFETY: set by the caller to a live Linger, not otherwise accessed during this call.
    let linger = unsafe { linger.as_mut() }.expect("a continuation to resume");
    inger::resume(linger, SLICE).expect("resume");
}

#[test]
fn protected_frames_spanning_pauses_resumes_and_migrations() {
    in_child(
        "protected_frames_spanning_pauses_resumes_and_migrations",
        |c| {
            const TARGET: u64 = 300;
            static STOPS: Stops = Stops::new(TARGET);
            let before = inger::stats();
            let mut linger: inger::Linger<'static, (Vec<u64>, u64)> = inger::launch(
                move || {
                    let mut hash = 0u64;
                    let mut preempted_calls = Vec::new();
                    while !STOPS.done() {
                        let seed = preempted_calls.len() as u64;
                        // Eight protected frames span a cooperative pause...
                        hash ^= c.with_callback(8, seed, pause_here);
                        // ...then protected frames run until a preemption lands (the caller
                        // only gets control back through one).
                        let resumed_at = STOPS.seen();
                        let mut calls = 0;
                        while STOPS.seen() == resumed_at {
                            hash ^= c.recurse(12, seed + calls);
                            calls += 1;
                        }
                        preempted_calls.push(calls);
                    }
                    (preempted_calls, hash)
                },
                SLICE,
            )
            .expect("launch");
            let mut stop = 0u64;
            while linger.is_continuation() {
                STOPS.record();
                match stop % 3 {
                    0 => inger::resume(&mut linger, SLICE).expect("resume"),
                    1 => {
                        // Resumed from inside protected frames of the caller.
                        TO_RESUME.with(|r| r.set(&mut linger));
                        std::hint::black_box(c.with_callback(6, stop, resume_here));
                        TO_RESUME.with(|r| r.set(core::ptr::null_mut()));
                    }
                    _ => {
                        // Resumed on another thread.
                        linger = std::thread::spawn(move || {
                            inger::resume(&mut linger, SLICE).expect("resume");
                            linger
                        })
                        .join()
                        .expect("thread");
                    }
                }
                stop += 1;
            }
            let (preempted_calls, hash) = linger.completion().expect("completed");
            // Outside a function, pause_here does nothing: the same calls give the same hash.
            let expected =
                preempted_calls
                    .iter()
                    .enumerate()
                    .fold(0u64, |mut h, (seed, &calls)| {
                        let seed = seed as u64;
                        h ^= c.with_callback(8, seed, pause_here);
                        (0..calls).fold(h, |h, k| h ^ c.recurse(12, seed + k))
                    });
            assert_eq!(hash, expected);
            let after = inger::stats();
            let iterations = preempted_calls.len() as u64;
            assert!(
                after.yields - before.yields >= iterations,
                "paused inside protected frames"
            );
            assert!(
                after.preemptions - before.preemptions >= iterations,
                "and preempted"
            );
        },
    );
}
