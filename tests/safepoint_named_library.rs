//! Libraries named non-preemptible (issue 4): a C library (`tests/c/safepoint/busy.c`) whose
//! function computes for a few milliseconds is loaded with `dlopen` before any function is
//! launched and named with `inger::mark_non_preemptible` (or, in a child process, with
//! `INGER_NONPREEMPTIBLE`). Functions on two threads alternate between that C code and Rust
//! work under slices of 20–50 µs: they must never be paused while the C function runs (it
//! raises a flag the caller checks at every stop), the counters must show deferrals in
//! libraries, and the results must equal a direct run.
//!
//! A control loads another copy of the same library under a name nobody marked, and checks
//! that functions *are* paused inside it: the flag check can see such pauses, so its silence
//! for the marked copies means something. Each test loads its own copy (distinct file names
//! are distinct modules), so the tests do not depend on each other in one process.

mod common;

use std::sync::atomic::{AtomicI32, Ordering::SeqCst};

use common::BusySpin;

/// C calls per function, rounds of each (a few milliseconds), and Rust rounds between them.
const CALLS: i64 = 30;
const C_ROUNDS: i64 = 2_000_000;
const RUST_ROUNDS: u64 = 100_000;

/// The function's body: Rust work and a C call, `CALLS` times; `inside` is the flag the C
/// function raises while it runs.
fn alternate(spin_in_c: BusySpin, inside: &AtomicI32, thread: usize) -> i64 {
    let mut total = 0i64;
    for call in 0..CALLS {
        let rust = common::spin((thread as u64) << 32 | call as u64, RUST_ROUNDS);
        // SAFETY: `inside` is a live int the C function may write; `sp_busy_spin` has no
        // other preconditions.
        let c = unsafe { spin_in_c(inside.as_ptr(), C_ROUNDS + call) };
        total = total.wrapping_mul(31).wrapping_add(c ^ rust as i64);
    }
    total
}

/// `alternate` computed in Rust only.
fn expected(thread: usize) -> i64 {
    (0..CALLS).fold(0i64, |total, call| {
        let rust = common::spin((thread as u64) << 32 | call as u64, RUST_ROUNDS);
        let c = common::busy_spin_in_rust(C_ROUNDS + call);
        total.wrapping_mul(31).wrapping_add(c ^ rust as i64)
    })
}

/// Runs the storm on two threads with `spin_in_c`; returns per thread the number of stops and
/// how many of them found the function paused inside the C function.
fn storm(spin_in_c: BusySpin) -> [(u64, u64); 2] {
    common::on_two_threads(|thread| {
        let inside = AtomicI32::new(0);
        let mut inside_at_stops = 0;
        let (value, stops) = common::storm(
            || alternate(spin_in_c, &inside, thread),
            |_| inside_at_stops += u64::from(inside.load(SeqCst) != 0),
        );
        assert_eq!(value, expected(thread), "thread {thread}'s result");
        (stops, inside_at_stops)
    })
}

/// Checks a storm over a marked library: never paused inside, paused elsewhere.
fn assert_never_inside(results: [(u64, u64); 2], how: &str) {
    for (thread, (stops, inside)) in results.into_iter().enumerate() {
        assert_eq!(
            inside, 0,
            "thread {thread}'s function was paused inside a library marked through {how} \
             ({inside} of {stops} stops)"
        );
        assert!(
            stops > 0,
            "thread {thread}'s function was never paused (not even in its Rust parts)"
        );
    }
}

#[test]
fn a_library_marked_through_the_api_is_never_paused_inside() {
    let (library, spin_in_c) = common::load_busy("libsp_marked_api");
    inger::mark_non_preemptible("libsp_marked_api");
    let before = inger::stats();
    let results = storm(spin_in_c);
    let after = inger::stats();
    assert_never_inside(results, "inger::mark_non_preemptible");
    let deferred_library = after.deferred_library - before.deferred_library;
    assert!(
        deferred_library > 0,
        "no deferral in libraries, though most of the time was spent in {}",
        library.file_name()
    );
    println!("marked through the API: stops {results:?}, {deferred_library} deferred in libraries");
}

#[test]
fn a_library_named_in_the_environment_is_never_paused_inside() {
    const STATS: &str = "@@named-env-stats";
    if common::child_mode().as_deref() == Some("env") {
        // Loaded before the first launch, which builds the tables with the name from the
        // environment.
        let (_library, spin_in_c) = common::load_busy("libsp_marked_env");
        let before = inger::stats();
        assert_never_inside(storm(spin_in_c), "INGER_NONPREEMPTIBLE");
        common::print_stats(STATS, before);
        return;
    }
    let output = common::run_child(
        "a_library_named_in_the_environment_is_never_paused_inside",
        "env",
        &[(
            "INGER_NONPREEMPTIBLE",
            "libsomething-else, libsp_marked_env",
        )],
    );
    output.assert_success();
    let deferred_library = output.counter(STATS, "deferred_library");
    assert!(
        deferred_library > 0,
        "no deferral in libraries: {}",
        output.describe()
    );
    println!("named in INGER_NONPREEMPTIBLE: {deferred_library} deferred in libraries");
}

#[test]
fn control_an_unmarked_copy_of_the_library_is_paused_inside() {
    let (_library, spin_in_c) = common::load_busy("libsp_plain");
    let results = storm(spin_in_c);
    for (thread, (stops, inside)) in results.into_iter().enumerate() {
        assert!(
            inside > 0,
            "thread {thread}'s function was never seen paused inside an ordinary library \
             ({stops} stops): the checks of the marked copies would be blind"
        );
    }
    println!("unmarked control: (stops, paused inside) {results:?}");
}
