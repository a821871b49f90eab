//! Code in no known module (issue 4): a function that is already running loads a C library
//! (`tests/c/safepoint/busy.c`) with `dlopen` and calls into it in a loop, under slices of
//! 20–50 µs, on two threads at once. At first the library is in no module table the handler
//! knows, so a deadline that passes inside it is deferred (`deferred_unknown`) and a refresh
//! of the tables is requested; once the background thread has rebuilt them, the library is
//! ordinary preemptible code and the function is paused inside it.
//!
//! The scenario runs in a child process: there nothing else rebuilds the tables, so the only
//! way to a pause inside the library is the refresh that an unknown-code deferral requests,
//! and `deferred_unknown` must have grown.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::SeqCst};

use common::{BusySpin, Library};

/// Rounds of each C call (about a millisecond or two).
const C_ROUNDS: i64 = 1_500_000;
/// How many stops inside the library each caller waits for.
const PAUSES_INSIDE: u64 = 20;
/// The most C calls a function makes before giving up (several seconds of C code: a refresh
/// takes milliseconds).
const MAX_CALLS: u64 = 4000;
const STATS: &str = "@@late-stats";

/// Loads the library at `path` from inside the running function, then calls it until its
/// caller has seen it paused inside `PAUSES_INSIDE` times (or `MAX_CALLS` calls). Returns
/// the number of calls and a checksum of their results.
fn load_and_call(path: &Path, inside: &AtomicI32, seen_inside: &AtomicU64) -> (u64, i64) {
    assert!(inger::in_preemptible());
    let library = Library::open(path);
    // SAFETY: `sp_busy_spin` is defined in busy.c with exactly the signature of `BusySpin`.
    let spin_in_c = unsafe {
        core::mem::transmute::<*mut core::ffi::c_void, BusySpin>(library.address("sp_busy_spin"))
    };
    let mut calls = 0;
    let mut total = 0i64;
    while seen_inside.load(SeqCst) < PAUSES_INSIDE && calls < MAX_CALLS {
        // SAFETY: `inside` is a live int the C function may write.
        let c = unsafe { spin_in_c(inside.as_ptr(), C_ROUNDS + (calls % 7) as i64) };
        total = total.wrapping_mul(31).wrapping_add(c);
        calls += 1;
    }
    (calls, total)
}

fn expected(calls: u64) -> i64 {
    (0..calls).fold(0i64, |total, call| {
        total
            .wrapping_mul(31)
            .wrapping_add(common::busy_spin_in_rust(C_ROUNDS + (call % 7) as i64))
    })
}

fn child() {
    // Compiled by the caller beforehand: the function only loads it.
    let paths = [0, 1]
        .map(|thread| common::compile_c("safepoint/busy.c", &format!("libsp_late_{thread}"), &[]));
    // Start inger (and build its tables) before any of these libraries is loaded.
    assert!(
        inger::launch(|| (), std::time::Duration::MAX)
            .expect("launch")
            .is_completion()
    );
    let before = inger::stats();
    let results = common::on_two_threads(|thread| {
        let inside = AtomicI32::new(0);
        let seen_inside = AtomicU64::new(0);
        let ((calls, total), stops) = common::storm(
            || load_and_call(&paths[thread], &inside, &seen_inside),
            |_| {
                if inside.load(SeqCst) != 0 {
                    seen_inside.fetch_add(1, SeqCst);
                }
            },
        );
        assert_eq!(total, expected(calls), "thread {thread}'s result");
        assert!(
            seen_inside.load(SeqCst) >= PAUSES_INSIDE,
            "thread {thread}'s function was paused inside the library loaded after it started \
             only {} times in {calls} calls ({stops} stops): were the module tables refreshed?",
            seen_inside.load(SeqCst)
        );
        (calls, stops)
    });
    println!("@@late calls and stops {results:?}");
    common::print_stats(STATS, before);
}

#[test]
fn a_library_loaded_by_a_running_function_becomes_preemptible_after_a_refresh() {
    if common::child_mode().as_deref() == Some("late") {
        child();
        return;
    }
    let output = common::run_child(
        "a_library_loaded_by_a_running_function_becomes_preemptible_after_a_refresh",
        "late",
        &[],
    );
    output.assert_success();
    let deferred_unknown = output.counter(STATS, "deferred_unknown");
    assert!(
        deferred_unknown > 0,
        "the functions were paused inside the new library, yet no deferral for unknown code \
         preceded it (what refreshed the tables?): {}",
        output.describe()
    );
    println!(
        "late library: {deferred_unknown} deferred as unknown code, then {} preemptions",
        output.counter(STATS, "preemptions")
    );
}
