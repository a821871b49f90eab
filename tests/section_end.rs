//! A deadline that passes inside a critical section takes effect when the section returns
//! (issue 12): the outermost non-preemptible frame's return is redirected to a stub, and the
//! function pauses there. These tests run C functions of a library named non-preemptible
//! (`tests/c/section_end/returns.c`), each computing for longer than a slice, under storms of
//! 20–50 µs slices, and check that:
//!
//! - every kind of return value survives: integer (`rax`), SSE (`xmm0`), both halves of a
//!   two-register struct (`rax:rdx`, `xmm0:xmm1`), a struct returned in memory, an x87
//!   `long double` (`st0`), and a return through a tail call;
//! - the values the caller keeps in callee-saved registers survive (the storm's results
//!   equal a direct run);
//! - a `longjmp` over a redirected frame still lets the function be preempted (the stub is
//!   never reached; the fallback check does it);
//! - the counters show pauses at section ends, not retries.
//!
//! Panics and backtraces through redirected frames, nesting, cancellation and migration are
//! in `tests/section_end_unwinding.rs`.

mod common;

use std::sync::OnceLock;

use common::{Library, as_fn};

/// Steps of each C call: about 100–300 µs, several slices.
const ROUNDS: i64 = 150_000;
/// C calls per function.
const CALLS: i64 = 40;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
struct PairD {
    a: f64,
    b: f64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PairL {
    a: i64,
    b: i64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Big {
    v: [i64; 6],
}

/// The C functions, from the non-preemptible library and its preemptible callers.
#[derive(Clone, Copy)]
struct Functions {
    int: unsafe extern "C" fn(i64, i64) -> i64,
    double: unsafe extern "C" fn(i64, i64) -> f64,
    pair_double: unsafe extern "C" fn(i64, i64) -> PairD,
    pair_long: unsafe extern "C" fn(i64, i64) -> PairL,
    big: unsafe extern "C" fn(i64, i64) -> Big,
    tail: unsafe extern "C" fn(i64, i64) -> i64,
    via_long_double: unsafe extern "C" fn(i64, i64) -> f64,
    jump_over: unsafe extern "C" fn(i64, i64) -> i64,
}

/// Loads both libraries once and names the computing one non-preemptible.
fn functions() -> Functions {
    static LOADED: OnceLock<(Library, Library, Functions)> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let returns_path = common::compile_c("section_end/returns.c", "section_returns", &[]);
            let callers_path = common::compile_c(
                "section_end/callers.c",
                "section_callers",
                // Before the source, so kept even though nothing needs it yet at that point.
                &[
                    "-Wl,--no-as-needed",
                    returns_path.to_str().expect("UTF-8 path"),
                ],
            );
            let returns = Library::open(&returns_path);
            let callers = Library::open(&callers_path);
            inger::mark_non_preemptible(&returns.file_name());
            // SAFETY: each symbol is defined in returns.c or callers.c with exactly the C
            // signature of the field it is stored in.
            let functions = unsafe {
                Functions {
                    int: as_fn(returns.address("se_int")),
                    double: as_fn(returns.address("se_double")),
                    pair_double: as_fn(returns.address("se_pair_double")),
                    pair_long: as_fn(returns.address("se_pair_long")),
                    big: as_fn(returns.address("se_big")),
                    tail: as_fn(returns.address("se_tail")),
                    via_long_double: as_fn(callers.address("se_via_long_double")),
                    jump_over: as_fn(callers.address("se_jump_over")),
                }
            };
            (returns, callers, functions)
        })
        .2
}

/// Every function's results for `CALLS` seeds, folded into one checksum per kind; the
/// running totals live in callee-saved registers of this frame across the calls.
fn all_returns(f: Functions, thread: u64) -> [u64; 8] {
    let mut sums = [0u64; 8];
    for call in 0..CALLS {
        let seed = (thread as i64) << 20 | call;
        // SAFETY: the C functions only compute on their arguments.
        unsafe {
            sums[0] = sums[0].rotate_left(5) ^ (f.int)(seed, ROUNDS) as u64;
            sums[1] = sums[1].rotate_left(5) ^ (f.double)(seed, ROUNDS).to_bits();
            let pd = (f.pair_double)(seed, ROUNDS);
            sums[2] = sums[2].rotate_left(5) ^ pd.a.to_bits() ^ pd.b.to_bits().rotate_left(17);
            let pl = (f.pair_long)(seed, ROUNDS);
            sums[3] = sums[3].rotate_left(5) ^ pl.a as u64 ^ (pl.b as u64).rotate_left(11);
            let big = (f.big)(seed, ROUNDS);
            sums[4] = big.v.iter().fold(sums[4].rotate_left(5), |s, &v| {
                s.wrapping_mul(31) ^ v as u64
            });
            sums[5] = sums[5].rotate_left(5) ^ (f.tail)(seed, ROUNDS) as u64;
            sums[6] = sums[6].rotate_left(5) ^ (f.via_long_double)(seed, ROUNDS).to_bits();
            sums[7] = sums[7].rotate_left(5) ^ (f.jump_over)(seed, ROUNDS) as u64;
        }
    }
    sums
}

#[test]
fn every_kind_of_return_value_survives_a_pause_at_the_section_end() {
    let f = functions();
    let expected = [all_returns(f, 0), all_returns(f, 1)];
    assert!(
        inger::capabilities().section_end_preemption,
        "{:?}",
        inger::capabilities()
    );
    let before = inger::stats();
    let results = common::on_two_threads(|thread| {
        let (sums, stops) = common::storm(move || all_returns(f, thread as u64), |_| {});
        (sums, stops)
    });
    let after = inger::stats();
    for (thread, (sums, stops)) in results.iter().enumerate() {
        assert_eq!(sums, &expected[thread], "thread {thread}'s results");
        assert!(*stops > 0, "thread {thread}'s function was never paused");
    }
    let at_end = after.paused_at_section_end - before.paused_at_section_end;
    assert!(
        at_end > 0,
        "no pause at a section's end in {} preemptions: {after:?}",
        after.preemptions - before.preemptions
    );
    assert!(after.redirects_reached > before.redirects_reached);
}

#[test]
fn a_longjmp_over_a_redirected_frame_still_lets_the_function_be_preempted() {
    let f = functions();
    // Each C call's frame is left by longjmp, never by its return, so a redirect of its
    // return is never reached; Rust work between the calls is where the fallback check (or
    // a deadline passing there) preempts the function.
    let jumps = move || {
        (0..CALLS * 4).fold(0i64, |total, call| {
            // SAFETY: as in `all_returns`.
            let value = unsafe { (f.jump_over)(call, ROUNDS) };
            let rust = common::spin(call as u64, 100_000) as i64;
            total.wrapping_mul(7).wrapping_add(value ^ rust)
        })
    };
    let expected = jumps();
    let before = inger::stats();
    let (value, stops) = common::storm(jumps, |_| {});
    let after = inger::stats();
    assert_eq!(value, expected);
    assert!(stops > 0, "never preempted");
    assert!(
        after.redirects > after.redirects_reached - before.redirects_reached + before.redirects,
        "some redirected frames were jumped over: {after:?}"
    );
}
