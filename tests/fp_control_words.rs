//! The floating-point control words (MXCSR and the x87 control word) are per function: a
//! rounding mode set inside a preemptible function survives its preemptions and pauses,
//! and never leaks into the caller (nor the caller's into it while it runs).

mod common;

use core::arch::asm;
use std::hint::black_box;
use std::time::Duration;

use common::GENEROUS;

/// MXCSR after reset: all exceptions masked, round to nearest.
const MXCSR_DEFAULT: u32 = 0x1f80;
/// MXCSR rounding-control field (bits 13-14).
const MXCSR_RC_MASK: u32 = 0x6000;
/// All exceptions masked, round toward zero.
const MXCSR_TOWARD_ZERO: u32 = MXCSR_DEFAULT | 0x6000;
/// All exceptions masked, round up (toward +infinity).
const MXCSR_UP: u32 = MXCSR_DEFAULT | 0x4000;
/// x87 control word rounding field (bits 10-11).
const X87_RC_MASK: u16 = 0x0c00;
/// x87 rounding toward zero (the rest of the control word is kept).
const X87_TOWARD_ZERO: u16 = 0x0c00;

/// MXCSR's control bits (bits 6-15: DAZ, exception masks, rounding, FTZ), without the
/// sticky exception flags (bits 0-5) that arithmetic sets.
const MXCSR_CONTROL: u32 = 0xffc0;

/// The control bits of MXCSR.
fn mxcsr() -> u32 {
    let mut value = 0u32;
    // SAFETY: stores MXCSR into a local.
    unsafe { asm!("stmxcsr [{}]", in(reg) &mut value, options(nostack, preserves_flags)) };
    value & MXCSR_CONTROL
}

fn set_mxcsr(value: u32) {
    // SAFETY: loads a valid MXCSR value (reserved bits zero; callers pass masked-exception
    // values) from a local.
    unsafe { asm!("ldmxcsr [{}]", in(reg) &value, options(nostack, preserves_flags)) };
}

fn x87_control_word() -> u16 {
    let mut value = 0u16;
    // SAFETY: stores the x87 control word into a local.
    unsafe { asm!("fnstcw [{}]", in(reg) &mut value, options(nostack, preserves_flags)) };
    value
}

fn set_x87_control_word(value: u16) {
    // SAFETY: loads an x87 control word (exceptions stay masked: callers only change the
    // rounding field) from a local.
    unsafe { asm!("fldcw [{}]", in(reg) &value, options(nostack, preserves_flags)) };
}

/// Adds `step` to `sum` `iterations` times with `addsd`, in the current SSE rounding mode.
/// The arithmetic stays inside assembly: Rust code assumes the default mode.
fn sse_accumulate(sum: f64, step: f64, iterations: u64) -> f64 {
    let mut sum = sum;
    // SAFETY: register-only SSE2 arithmetic.
    unsafe {
        asm!(
            "2:",
            "addsd {sum}, {step}",
            "dec {n}",
            "jnz 2b",
            sum = inout(xmm_reg) sum,
            step = in(xmm_reg) step,
            n = inout(reg) iterations => _,
            options(nomem, nostack),
        );
    }
    sum
}

/// Divides 1 by 3 with `fdiv` in the current x87 rounding mode (64-bit precision), and
/// returns the 80-bit result's low 64 bits (the mantissa), which the rounding mode decides.
fn x87_one_third() -> u64 {
    let (one, three) = (1.0f64, 3.0f64);
    let mut result = [0u8; 10];
    // SAFETY: the x87 stack is declared clobbered and left empty; memory operands are locals.
    unsafe {
        asm!(
            "fld qword ptr [{one}]",
            "fdiv qword ptr [{three}]",
            "fstp tbyte ptr [{out}]",
            one = in(reg) &one,
            three = in(reg) &three,
            out = in(reg) &mut result,
            out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
            out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
            options(nostack),
        );
    }
    u64::from_le_bytes(result[..8].try_into().expect("8 bytes"))
}

/// What the function computes: chunks of `addsd` under whatever mode is in force, checking
/// between chunks that its own control words are still the ones it set.
fn accumulate_in_mode(chunks: u64, per_chunk: u64) -> (u64, bool, u64) {
    let mxcsr_at_start = mxcsr();
    let x87_at_start = x87_control_word();
    let mut sum = 0.0f64;
    let mut intact = true;
    for _ in 0..chunks {
        sum = sse_accumulate(sum, 0.1, black_box(per_chunk));
        intact &= mxcsr() == mxcsr_at_start && x87_control_word() == x87_at_start;
    }
    (sum.to_bits(), intact, x87_one_third())
}

/// Runs `accumulate_in_mode` with round-toward-zero in both units, restoring the old words.
fn in_toward_zero(chunks: u64, per_chunk: u64) -> (u64, bool, u64) {
    let (old_mxcsr, old_x87) = (mxcsr(), x87_control_word());
    set_mxcsr(MXCSR_TOWARD_ZERO);
    set_x87_control_word((old_x87 & !X87_RC_MASK) | X87_TOWARD_ZERO);
    let result = accumulate_in_mode(chunks, per_chunk);
    set_x87_control_word(old_x87);
    set_mxcsr(old_mxcsr);
    result
}

#[test]
fn a_rounding_mode_set_inside_survives_preemption_and_stays_inside() {
    let (chunks, per_chunk) = (2000, 100_000);
    let nearest = accumulate_in_mode(chunks, per_chunk);
    let toward_zero = in_toward_zero(chunks, per_chunk);
    assert_ne!(
        nearest.0, toward_zero.0,
        "the rounding mode changes the sum"
    );
    assert_ne!(
        nearest.2, toward_zero.2,
        "the x87 rounding mode changes 1/3"
    );
    assert_eq!(
        mxcsr() & MXCSR_RC_MASK,
        0,
        "the direct run restored the mode"
    );

    let caller_mxcsr = mxcsr();
    let caller_x87 = x87_control_word();
    let before = common::preemptions();
    let mut linger = inger::launch(
        move || in_toward_zero(chunks, per_chunk),
        Duration::from_micros(100),
    )
    .expect("launch");
    let mut stops = 0u64;
    while linger.is_continuation() {
        stops += 1;
        assert_eq!(
            mxcsr(),
            caller_mxcsr,
            "the function's MXCSR leaked into the caller"
        );
        assert_eq!(
            x87_control_word(),
            caller_x87,
            "the function's x87 word leaked"
        );
        inger::resume(&mut linger, Duration::from_micros(100)).expect("resume");
    }
    let (sum, intact, third) = linger.completion().expect("completed");
    assert!(intact, "the function saw its control words change");
    assert_eq!(
        sum, toward_zero.0,
        "the sum differs from a direct run in the same mode"
    );
    assert_eq!(third, toward_zero.2);
    assert!(stops >= 1000, "only {stops} preemptions");
    assert!(common::preemptions() - before >= stops);
    assert_eq!(mxcsr(), caller_mxcsr);
    assert_eq!(x87_control_word(), caller_x87);
}

#[test]
fn the_callers_mode_and_the_functions_mode_stay_apart_across_pauses() {
    // The function sets round-toward-zero and pauses; the caller runs in round-up. Each
    // side checks its own mode after every switch, cooperative or preempted.
    let (old_mxcsr, old_x87) = (mxcsr(), x87_control_word());
    let mut linger = inger::launch(
        || {
            set_mxcsr(MXCSR_TOWARD_ZERO);
            let mut intact = true;
            for round in 0..2000u64 {
                if round % 2 == 0 {
                    inger::pause();
                } else {
                    // Long enough to be preempted now and then.
                    sse_accumulate(0.0, 0.1, black_box(20_000));
                }
                intact &= mxcsr() == MXCSR_TOWARD_ZERO;
            }
            set_mxcsr(MXCSR_DEFAULT);
            intact
        },
        Duration::from_micros(100),
    )
    .expect("launch");
    set_mxcsr(MXCSR_UP);
    let mut caller_intact = true;
    let mut stops = 0u64;
    while linger.is_continuation() {
        caller_intact &= mxcsr() == MXCSR_UP && x87_control_word() == old_x87;
        stops += 1;
        let _ = inger::resume(&mut linger, Duration::from_micros(100));
    }
    caller_intact &= mxcsr() == MXCSR_UP;
    set_mxcsr(old_mxcsr);
    assert!(caller_intact, "the caller's MXCSR changed across a switch");
    assert_eq!(
        linger.completion(),
        Some(true),
        "the function's MXCSR changed"
    );
    assert!(stops >= 1000);
}

/// The caller's words while the test runs in a non-default mode: round-up in SSE, toward zero
/// in x87. Restores the old words when dropped, even if an assertion fails.
struct CallerMode {
    old: (u32, u16),
}

impl CallerMode {
    fn set() -> CallerMode {
        let old = (mxcsr(), x87_control_word());
        set_mxcsr(MXCSR_UP);
        set_x87_control_word((old.1 & !X87_RC_MASK) | X87_TOWARD_ZERO);
        CallerMode { old }
    }

    fn x87(&self) -> u16 {
        (self.old.1 & !X87_RC_MASK) | X87_TOWARD_ZERO
    }
}

impl Drop for CallerMode {
    fn drop(&mut self) {
        set_x87_control_word(self.old.1);
        set_mxcsr(self.old.0);
    }
}

/// Sets round-toward-zero in SSE and round-up in x87: the opposite of `CallerMode`.
fn set_function_mode() {
    set_mxcsr(MXCSR_TOWARD_ZERO);
    set_x87_control_word((x87_control_word() & !X87_RC_MASK) | 0x0800);
}

#[test]
fn a_function_starts_with_its_callers_words() {
    let mode = CallerMode::set();
    let expected = (mxcsr(), mode.x87());
    let linger = inger::launch(|| (mxcsr(), x87_control_word()), GENEROUS).expect("launch");
    assert_eq!(linger.completion(), Some(expected));
    // Nested: the inner function starts with the words the outer one set.
    let linger = inger::launch(
        || {
            set_function_mode();
            let set = (mxcsr(), x87_control_word());
            let inner = inger::launch(|| (mxcsr(), x87_control_word()), GENEROUS)
                .expect("nested launch")
                .completion();
            (set, inner)
        },
        GENEROUS,
    )
    .expect("launch");
    let (set, inner) = linger.completion().expect("completed");
    assert_eq!(inner, Some(set), "the nested function did not inherit");
    assert_eq!((mxcsr(), x87_control_word()), expected);
}

#[test]
fn a_function_prepared_with_no_budget_starts_with_its_first_resumers_words() {
    let mut linger =
        inger::launch(|| (mxcsr(), x87_control_word()), Duration::ZERO).expect("launch");
    assert!(linger.is_continuation());
    let mode = CallerMode::set();
    inger::resume(&mut linger, GENEROUS).expect("resume");
    assert_eq!(linger.completion(), Some((MXCSR_UP, mode.x87())));
}

#[test]
fn the_callers_words_come_back_when_a_function_ends_in_its_own_mode() {
    let mode = CallerMode::set();
    let expected = (mxcsr(), mode.x87());
    // Returns without restoring what it set.
    let linger = inger::launch(set_function_mode, GENEROUS).expect("launch");
    assert_eq!(linger.completion(), Some(()));
    assert_eq!((mxcsr(), x87_control_word()), expected, "after a return");
    // Panics without restoring.
    let panicked = std::panic::catch_unwind(|| {
        inger::launch(
            || {
                set_function_mode();
                panic!("in its own mode")
            },
            GENEROUS,
        )
    });
    assert!(panicked.is_err());
    assert_eq!((mxcsr(), x87_control_word()), expected, "after a panic");
    // Paused (and resumed) in its own mode, then finishes in it.
    let mut linger = inger::launch(
        || {
            set_function_mode();
            inger::pause();
            mxcsr()
        },
        GENEROUS,
    )
    .expect("launch");
    assert_eq!((mxcsr(), x87_control_word()), expected, "after a pause");
    inger::resume(&mut linger, GENEROUS).expect("resume");
    assert_eq!(linger.completion(), Some(MXCSR_TOWARD_ZERO));
    assert_eq!((mxcsr(), x87_control_word()), expected, "after the resume");
}

#[test]
fn the_callers_words_come_back_when_a_function_in_its_own_mode_is_cancelled() {
    let mode = CallerMode::set();
    let expected = (mxcsr(), mode.x87());
    let before = inger::stats().cancels_without_unwinding;
    // Owns nothing at its pause: cancelled without unwinding, through a fresh context.
    let linger = inger::launch(
        || {
            set_function_mode();
            loop {
                inger::pause();
            }
        },
        GENEROUS,
    )
    .expect("launch");
    assert!(linger.is_continuation());
    drop(linger);
    assert_eq!(
        (mxcsr(), x87_control_word()),
        expected,
        "after a cancellation"
    );
    // Owns a value at its pause: cancelled by unwinding.
    let linger = inger::launch(
        || {
            set_function_mode();
            let owned = vec![1u8; 16];
            loop {
                inger::pause();
                black_box(&owned);
            }
        },
        GENEROUS,
    )
    .expect("launch");
    drop(linger);
    assert_eq!(
        (mxcsr(), x87_control_word()),
        expected,
        "after an unwinding"
    );
    assert!(
        inger::stats().cancels_without_unwinding > before,
        "the first cancellation was meant to skip the unwinding"
    );
}
