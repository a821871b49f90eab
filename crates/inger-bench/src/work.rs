//! Synthetic CPU work whose speed does not depend on where the stack or the heap lies.
//!
//! A loop like `x = black_box(x ^ i)` stores `x` to a stack slot and loads it back on every
//! iteration; its speed then depends on the processor's store forwarding, which on some AMD
//! machines varies by a factor of two with the slot's address (a few hundred bytes of stack
//! padding were enough). Such a loop measures the stack's placement, not inger. [`spin`]
//! keeps its whole state in registers: the optimisation barrier is an empty `asm!` block that
//! takes the accumulator as a register operand and declares that it touches no memory, so the
//! compiler can neither fold the loop away nor spill the value to make the barrier see it.
//!
//! [`with_stack_padding`] runs a closure below a frame of a chosen size, so that a benchmark
//! can check that its work really runs at the same speed whatever the stack offset.

use std::hint::black_box;
use std::time::Instant;

/// Runs `iterations` steps of register-only arithmetic (a serial dependency chain: rotate,
/// xor, multiply) and returns the result, which depends on every step.
///
/// The loop's body touches no memory, so its speed is the same at any stack or heap address;
/// it is a plain Rust loop, so a preemptible function running it can be paused anywhere in it.
#[inline(never)]
pub fn spin(iterations: u64) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut i = 0u64;
    while i < iterations {
        x = step(x, i);
        barrier(&mut x);
        i += 1;
    }
    x
}

/// One step of [`spin`]'s chain.
#[inline(always)]
fn step(x: u64, i: u64) -> u64 {
    (x ^ i).rotate_left(5).wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// An optimisation barrier on a register: the compiler must assume the value was read and
/// changed, but no memory was touched, so the value stays in its register.
#[inline(always)]
fn barrier(x: &mut u64) {
    // SAFETY: an empty instruction sequence; it only names a register operand, touches no
    // memory or stack (`nomem`, `nostack`) and keeps the flags.
    unsafe {
        core::arch::asm!(
            "/* {0} */",
            inout(reg) * x,
            options(nomem, nostack, preserves_flags)
        )
    };
}

/// [`spin`]'s result computed without the barrier (for tests: the barrier changes nothing).
pub fn spin_reference(iterations: u64) -> u64 {
    (0..iterations).fold(0x9e37_79b9_7f4a_7c15u64, step)
}

/// Bytes of stack each padding frame of [`with_stack_padding`] holds at least.
pub const PADDING_FRAME: usize = 128;

/// Stack paddings (in frames of at least [`PADDING_FRAME`] bytes) at which benchmarks check
/// that their work runs at the same speed: irregular steps from nothing to about 12 KiB.
/// (A loop that spills to the stack was seen to run at full speed at some offsets and at
/// half speed at others, in stretches of one to several KiB.)
pub const STACK_PADDINGS: [usize; 12] = [0, 3, 7, 12, 18, 25, 33, 42, 52, 63, 75, 88];

/// Calls `f` below `frames` frames of at least [`PADDING_FRAME`] bytes each, so that the
/// stack pointer `f` sees is that much lower.
pub fn with_stack_padding<R>(frames: usize, f: impl FnOnce() -> R) -> R {
    padded(frames, f)
}

/// How far (bytes) `frames` padding frames move the stack pointer, measured.
pub fn padding_bytes(frames: usize) -> usize {
    with_stack_padding(0, stack_address) - with_stack_padding(frames, stack_address)
}

/// The address of a local of a frame of its own.
#[inline(never)]
fn stack_address() -> usize {
    let marker = 0u8;
    black_box(&marker) as *const u8 as usize
}

#[inline(never)]
fn padded<R, F: FnOnce() -> R>(frames: usize, f: F) -> R {
    if frames == 0 {
        return f();
    }
    let pad = [0u8; PADDING_FRAME];
    black_box(&pad);
    let result = padded(black_box(frames - 1), f);
    black_box(&pad);
    result
}

/// Iterations of [`spin`] per nanosecond on the calling thread: the fastest of `tries` runs of
/// `iterations` (the one least disturbed by other processes).
pub fn calibrate(iterations: u64, tries: u32) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..tries.max(1) {
        let start = Instant::now();
        black_box(spin(black_box(iterations)));
        best = best.min(start.elapsed().as_nanos() as f64);
    }
    iterations as f64 / best.max(1.0)
}

/// Iterations of [`spin`] that take about `nanos` on this thread, given `per_ns` from
/// [`calibrate`].
pub fn iterations_for(nanos: f64, per_ns: f64) -> u64 {
    (nanos * per_ns).max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_barrier_does_not_change_the_result() {
        for n in [0, 1, 2, 7, 1_000, 123_457] {
            assert_eq!(spin(n), spin_reference(n), "{n} iterations");
        }
        assert_ne!(spin(1_000), spin(1_001));
    }

    #[test]
    fn padding_moves_the_stack_and_returns_the_value() {
        let base = with_stack_padding(0, stack_address);
        let mut previous = base;
        for frames in STACK_PADDINGS.into_iter().skip(1) {
            let deep = with_stack_padding(frames, stack_address);
            assert!(
                base - deep >= frames * PADDING_FRAME,
                "{frames} frames moved the stack by {} bytes",
                base - deep
            );
            assert!(deep < previous, "paddings must go deeper");
            assert_eq!(padding_bytes(frames), base - deep);
            previous = deep;
        }
        assert_eq!(with_stack_padding(5, || 42), 42);
    }

    #[test]
    fn calibration_is_positive_and_sizes_work() {
        let per_ns = calibrate(100_000, 2);
        assert!(per_ns > 0.0 && per_ns.is_finite());
        assert_eq!(iterations_for(1_000.0, 0.5), 500);
        assert_eq!(iterations_for(0.0, 0.5), 1);
    }
}
