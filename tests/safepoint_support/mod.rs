//! Helpers for the safe-point storm tests (`tests/safepoint_*.rs`, issue 4): the storm driver
//! (slices of 20–50 µs, resumed until done), running one function per thread on two threads
//! at once, re-running the test binary as a child process with a hang guard, compiling and
//! loading the C libraries under `tests/c/safepoint/`, and bounded waits that fail with a
//! message instead of hanging.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a different subset of these helpers"
)]

#[path = "../common/mod.rs"]
mod common;

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// The environment variable that tells a re-run test binary which child scenario to play.
pub const CHILD_ENV: &str = "INGER_SAFEPOINT_TEST_CHILD";

/// How long anything that should finish "soon" may take before the test calls it a deadlock.
/// A hang guard, not a timing assertion: everything it guards finishes in well under a second
/// when things work, even in a debug build on a loaded two-core machine.
pub const HANG_LIMIT: Duration = Duration::from_secs(30);

/// How long a child process may run before it is killed as hung (its storms take a few
/// seconds in a debug build).
const CHILD_HANG_LIMIT: Duration = Duration::from_secs(120);

/// The most resumes a storm may take before it is called a runaway.
const MAX_RESUMES: u64 = 10_000_000;

/// The slice of the `stop`-th resume of a storm: 20 to 50 µs, varying from one resume to the
/// next so that deadlines land at ever different places.
pub fn slice(stop: u64) -> Duration {
    Duration::from_micros(20 + (stop * 7919) % 31)
}

/// Launches `f` with a storm slice and resumes it with storm slices until it completes,
/// calling `between(stop)` each time it comes back paused (before resuming it). Returns the
/// value and the number of stops. Panics on an inger error or a runaway.
pub fn storm<'a, T>(f: impl FnOnce() -> T + Send + 'a, between: impl FnMut(u64)) -> (T, u64) {
    let linger = inger::launch(f, slice(0)).expect("launch");
    drive(linger, between)
}

/// Resumes `linger` with storm slices until it completes; see [`storm`].
pub fn drive<T>(mut linger: inger::Linger<'_, T>, mut between: impl FnMut(u64)) -> (T, u64) {
    let mut stops = 0;
    while linger.is_continuation() {
        assert!(stops < MAX_RESUMES, "runaway: {stops} resumes");
        between(stops);
        stops += 1;
        inger::resume(&mut linger, slice(stops)).expect("resume");
    }
    (linger.completion().expect("completed"), stops)
}

/// Runs `body(0)` and `body(1)` on two threads at once (scoped, so they may borrow) and
/// returns both results. A panic on either thread fails the caller with that panic.
pub fn on_two_threads<R: Send>(body: impl Fn(usize) -> R + Sync) -> [R; 2] {
    std::thread::scope(|scope| {
        let body = &body;
        let threads = [0, 1].map(|id| {
            std::thread::Builder::new()
                .name(format!("storm-{id}"))
                .spawn_scoped(scope, move || body(id))
                .expect("spawning a storm thread")
        });
        threads.map(|thread| match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    })
}

/// Waits for a message on `receiver` for at most [`HANG_LIMIT`]; panics with `what` (which
/// should say what a hang here means) if none comes.
pub fn recv_or_deadlock<T>(receiver: &Receiver<T>, what: &str) -> T {
    match receiver.recv_timeout(HANG_LIMIT) {
        Ok(value) => value,
        Err(RecvTimeoutError::Timeout) => {
            panic!("no answer after {HANG_LIMIT:?}: {what}")
        }
        Err(RecvTimeoutError::Disconnected) => {
            panic!("the helper thread died (see its panic above): {what}")
        }
    }
}

/// A deterministic CPU-bound workload touching no library: `rounds` steps of xorshift from
/// `seed`.
pub fn spin(seed: u64, rounds: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = std::hint::black_box(x);
    }
    x
}

/// The child scenario this process was started for, if it is a child.
pub fn child_mode() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

#[allow(unused_imports, reason = "not every test binary loads a library")]
pub use common::{ChildOutput, Library};

/// Prints inger's counters on one line tagged `tag`, for a parent to read with
/// [`ChildOutput::counter`].
pub fn print_stats(tag: &str, before: inger::Stats) {
    let now = inger::stats();
    println!(
        "{tag} preemptions={} deferred_std={} deferred_library={} deferred_unknown={} deferred_unwind={} deferred_nopreempt={} retries={} longest_deferral_ns={}",
        now.preemptions - before.preemptions,
        now.deferred_std - before.deferred_std,
        now.deferred_library - before.deferred_library,
        now.deferred_unknown - before.deferred_unknown,
        now.deferred_unwind - before.deferred_unwind,
        now.deferred_nopreempt - before.deferred_nopreempt,
        now.retries - before.retries,
        now.longest_deferral_ns,
    );
}

/// Re-runs this test binary (or `exe`, if given) for the test `test_name` alone, with
/// `CHILD_ENV=mode` and the extra environment `env` (the parent's `INGER_*` variables are
/// removed first), capturing its output. Kills the child and panics if it has not finished
/// after a generous limit.
pub fn run_child(test_name: &str, mode: &str, env: &[(&str, &str)]) -> ChildOutput {
    let exe = std::env::current_exe().expect("the test binary's own path");
    run_child_of(&exe, test_name, mode, env)
}

/// As [`run_child`], running the executable `exe` (a copy of this test binary).
pub fn run_child_of(exe: &Path, test_name: &str, mode: &str, env: &[(&str, &str)]) -> ChildOutput {
    common::run_child(exe, CHILD_ENV, CHILD_HANG_LIMIT, test_name, mode, env)
}

/// Compiles `tests/c/safepoint/<name>.c` into a shared library named
/// `<output_stem>-<hash>.so` and returns its path (see [`common::compile_c`]). Distinct stems
/// give distinct modules.
pub fn compile_c(name: &str, output_stem: &str) -> PathBuf {
    common::compile_c("safepoint", name, output_stem, &[])
}

/// `long sp_busy_spin(volatile int *inside, long rounds)` of `tests/c/safepoint/busy.c`.
pub type BusySpin = unsafe extern "C" fn(*mut i32, i64) -> i64;

/// Compiles (once) and loads a copy of `busy.c` named `<stem>-<hash>.so`, returning the
/// library and its `sp_busy_spin`.
pub fn load_busy(stem: &str) -> (Library, BusySpin) {
    let library = Library::open(&compile_c("busy", stem));
    let address = library.address("sp_busy_spin");
    // SAFETY: `sp_busy_spin` is defined in busy.c with exactly the signature of `BusySpin`.
    let spin = unsafe { core::mem::transmute::<*mut c_void, BusySpin>(address) };
    (library, spin)
}

/// The same computation as `sp_busy_spin` in `busy.c`, for comparing results.
pub fn busy_spin_in_rust(rounds: i64) -> i64 {
    let mut x = (rounds as u64) | 1;
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x as i64
}
