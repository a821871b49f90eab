//! Floating-point and SIMD state survives thousands of preemptions bit for bit: the signal
//! frame holds the whole XSAVE area, and resuming restores it with `sigreturn`.
//!
//! Three workloads, each compared with a direct call: a numeric loop written so that LLVM
//! vectorises it (in optimised builds), and hand-written assembly loops that keep all sixteen
//! XMM registers, all sixteen YMM registers (when the CPU has AVX2) and the x87 stack live
//! across the preemptions (so the test means the same in debug builds, where spilled
//! locals would otherwise hide lost registers).

mod common;

use core::arch::asm;
use core::arch::x86_64::{__m128i, __m256i};
use std::hint::black_box;
use std::time::Duration;

const SLICE: Duration = Duration::from_micros(100);

/// Runs `f` as a preemptible function in `SLICE`s until it returns; the value and the number
/// of preemptions it took (the function never pauses itself, so every stop is a timeout).
fn preempted<T: Send>(f: impl FnOnce() -> T + Send) -> (T, u64) {
    inger::scope(|s| {
        let linger = s.launch(f, SLICE).expect("launch");
        let (value, resumes) = common::finish(linger, SLICE, 100_000_000);
        (value, resumes + 1)
    })
}

/// f64 and f32 dot products, square roots and updates over arrays, in fixed-width chunks
/// (`chunks_exact`) that LLVM turns into packed SSE/AVX instructions. Returns the bits.
fn vectorised(seed: u32, rounds: usize) -> (u64, u32, u64, u32) {
    const N: usize = 1024;
    let a: Vec<f64> = (0..N)
        .map(|i| 1.0 + i as f64 * 1e-3 + f64::from(seed))
        .collect();
    let mut b: Vec<f64> = (0..N).map(|i| 2.0 - i as f64 * 1e-4).collect();
    let af: Vec<f32> = (0..N).map(|i| 0.5 + i as f32 * 1e-3).collect();
    let mut bf: Vec<f32> = (0..N)
        .map(|i| 1.5 - i as f32 * 1e-4 + seed as f32)
        .collect();
    let (mut acc, mut accf) = (0.0f64, 0.0f32);
    for _ in 0..rounds {
        let mut sums = [0.0f64; 4];
        for (x, y) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
            for k in 0..4 {
                sums[k] += x[k] * y[k];
            }
        }
        for (y, x) in b.chunks_exact_mut(4).zip(a.chunks_exact(4)) {
            for k in 0..4 {
                y[k] = (y[k] * 0.999 + x[k].sqrt() * 1e-3).sqrt();
            }
        }
        let mut sumsf = [0.0f32; 8];
        for (x, y) in af.chunks_exact(8).zip(bf.chunks_exact(8)) {
            for k in 0..8 {
                sumsf[k] += x[k] * y[k];
            }
        }
        for (y, x) in bf.chunks_exact_mut(8).zip(af.chunks_exact(8)) {
            for k in 0..8 {
                y[k] = (y[k] * 0.999 + x[k].sqrt() * 1e-3).sqrt();
            }
        }
        acc = acc * 0.5 + sums.iter().sum::<f64>();
        accf = accf * 0.5 + sumsf.iter().sum::<f32>();
    }
    let fold = b.iter().fold(0u64, |h, v| h.rotate_left(5) ^ v.to_bits());
    let foldf = bf.iter().fold(0u32, |h, v| h.rotate_left(5) ^ v.to_bits());
    (acc.to_bits(), accf.to_bits(), fold, foldf)
}

#[test]
fn a_vectorised_numeric_loop_gives_the_direct_result_bit_for_bit() {
    // Optimised code runs this loop about 20 times faster: keep thousands of preemptions.
    let rounds = if cfg!(debug_assertions) { 3000 } else { 60_000 };
    let expected = vectorised(3, rounds);
    let (got, stops) = preempted(|| vectorised(3, rounds));
    assert_eq!(got, expected);
    assert!(
        stops >= 1000,
        "only {stops} preemptions: the workload is too short"
    );
}

/// Sixteen XMM registers' worth of state, as 64-bit lanes.
type XmmState = [[u64; 2]; 16];

fn to_xmm(lanes: [u64; 2]) -> __m128i {
    // SAFETY: both types are 16 plain bytes.
    unsafe { core::mem::transmute::<[u64; 2], __m128i>(lanes) }
}

fn from_xmm(value: __m128i) -> [u64; 2] {
    // SAFETY: both types are 16 plain bytes.
    unsafe { core::mem::transmute::<__m128i, [u64; 2]>(value) }
}

/// `iterations` steps of a loop that keeps every XMM register live: xmm0-3 run xorshift per
/// 64-bit lane, xmm4-5 do packed f64 arithmetic fed by them (including `sqrtpd`), xmm6-11
/// accumulate, xmm12-13 hold constants, xmm14-15 are scratch (also carried in and out).
fn xmm_loop(state: &mut XmmState, iterations: u64) {
    let mut r = state.map(to_xmm);
    // SAFETY: register-only SSE2 arithmetic on the named registers (SSE2 is part of
    // x86-64); no memory is touched and the stack is not used.
    unsafe {
        asm!(
            "2:",
            // xorshift64 on each lane of xmm0..xmm3: x ^= x << 13; x ^= x >> 7; x ^= x << 17
            "movdqa xmm14, xmm0", "psllq xmm14, 13", "pxor xmm0, xmm14",
            "movdqa xmm14, xmm0", "psrlq xmm14, 7", "pxor xmm0, xmm14",
            "movdqa xmm14, xmm0", "psllq xmm14, 17", "pxor xmm0, xmm14",
            "movdqa xmm14, xmm1", "psllq xmm14, 13", "pxor xmm1, xmm14",
            "movdqa xmm14, xmm1", "psrlq xmm14, 7", "pxor xmm1, xmm14",
            "movdqa xmm14, xmm1", "psllq xmm14, 17", "pxor xmm1, xmm14",
            "paddq xmm2, xmm0", "pxor xmm3, xmm1", "pshufd xmm3, xmm3, 0x4e",
            // f64: xmm4 = xmm4 * 0.5 + double(int32 lanes of xmm0)
            "cvtdq2pd xmm15, xmm0", "mulpd xmm4, xmm12", "addpd xmm4, xmm15",
            // f64: xmm5 = sqrt(xmm5 * xmm5 + t * t) * 0.5, t from xmm1
            "cvtdq2pd xmm15, xmm1", "mulpd xmm15, xmm15", "mulpd xmm5, xmm5",
            "addpd xmm5, xmm15", "sqrtpd xmm5, xmm5", "mulpd xmm5, xmm12",
            // accumulators
            "paddq xmm6, xmm0", "paddq xmm7, xmm1", "paddq xmm8, xmm2", "pxor xmm9, xmm3",
            "movdqa xmm15, xmm4", "pxor xmm10, xmm15", "addpd xmm11, xmm13",
            "movdqa xmm15, xmm5", "pxor xmm11, xmm15",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) iterations => _,
            inout("xmm0") r[0], inout("xmm1") r[1], inout("xmm2") r[2], inout("xmm3") r[3],
            inout("xmm4") r[4], inout("xmm5") r[5], inout("xmm6") r[6], inout("xmm7") r[7],
            inout("xmm8") r[8], inout("xmm9") r[9], inout("xmm10") r[10], inout("xmm11") r[11],
            inout("xmm12") r[12], inout("xmm13") r[13], inout("xmm14") r[14], inout("xmm15") r[15],
            options(nomem, nostack),
        );
    }
    *state = r.map(from_xmm);
}

fn xmm_initial() -> XmmState {
    let mut state = [[0u64; 2]; 16];
    for (i, lanes) in state.iter_mut().enumerate() {
        *lanes = [
            common::mix(i as u64, 3) | 1,
            common::mix(i as u64 + 100, 3) | 1,
        ];
    }
    state[4] = [1.0f64.to_bits(), 2.0f64.to_bits()];
    state[5] = [3.0f64.to_bits(), 4.0f64.to_bits()];
    state[11] = [0.0f64.to_bits(), 0.0f64.to_bits()];
    state[12] = [0.5f64.to_bits(), 0.5f64.to_bits()];
    state[13] = [1.0e-3f64.to_bits(), 3.0e-3f64.to_bits()];
    state
}

fn xmm_run(chunks: u64, per_chunk: u64) -> XmmState {
    let mut state = xmm_initial();
    for _ in 0..chunks {
        xmm_loop(&mut state, black_box(per_chunk));
    }
    state
}

#[test]
fn all_xmm_registers_survive_preemption_bit_for_bit() {
    let (chunks, per_chunk) = (400, 100_000);
    let expected = xmm_run(chunks, per_chunk);
    let (got, stops) = preempted(|| xmm_run(chunks, per_chunk));
    assert!(
        stops >= 1000,
        "only {stops} preemptions: the workload is too short"
    );
    for (i, (g, e)) in got.iter().zip(expected.iter()).enumerate() {
        assert_eq!(g, e, "xmm{i} differs after {stops} preemptions");
    }
}

/// Sixteen YMM registers' worth of state, as 64-bit lanes.
type YmmState = [[u64; 4]; 16];

/// The AVX2 analogue of [`xmm_loop`]: all sixteen YMM registers live, upper halves included.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
unsafe fn ymm_loop(state: &mut YmmState, iterations: u64) {
    // SAFETY: both types are 32 plain bytes.
    let mut r = state.map(|lanes| unsafe { core::mem::transmute::<[u64; 4], __m256i>(lanes) });
    // SAFETY: register-only AVX2 arithmetic (the caller guarantees AVX2); no memory, no stack.
    unsafe {
        asm!(
            "2:",
            "vpsllq ymm14, ymm0, 13", "vpxor ymm0, ymm0, ymm14",
            "vpsrlq ymm14, ymm0, 7", "vpxor ymm0, ymm0, ymm14",
            "vpsllq ymm14, ymm0, 17", "vpxor ymm0, ymm0, ymm14",
            "vpsllq ymm14, ymm1, 13", "vpxor ymm1, ymm1, ymm14",
            "vpsrlq ymm14, ymm1, 7", "vpxor ymm1, ymm1, ymm14",
            "vpsllq ymm14, ymm1, 17", "vpxor ymm1, ymm1, ymm14",
            "vpaddq ymm2, ymm2, ymm0", "vpxor ymm3, ymm3, ymm1", "vpermq ymm3, ymm3, 0x4e",
            "vcvtdq2pd ymm15, xmm0", "vmulpd ymm4, ymm4, ymm12", "vaddpd ymm4, ymm4, ymm15",
            "vcvtdq2pd ymm15, xmm1", "vmulpd ymm15, ymm15, ymm15", "vmulpd ymm5, ymm5, ymm5",
            "vaddpd ymm5, ymm5, ymm15", "vsqrtpd ymm5, ymm5", "vmulpd ymm5, ymm5, ymm12",
            "vpaddq ymm6, ymm6, ymm0", "vpaddq ymm7, ymm7, ymm1", "vpaddq ymm8, ymm8, ymm2",
            "vpxor ymm9, ymm9, ymm3", "vpxor ymm10, ymm10, ymm4", "vaddpd ymm11, ymm11, ymm13",
            "vpxor ymm11, ymm11, ymm5",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) iterations => _,
            inout("ymm0") r[0], inout("ymm1") r[1], inout("ymm2") r[2], inout("ymm3") r[3],
            inout("ymm4") r[4], inout("ymm5") r[5], inout("ymm6") r[6], inout("ymm7") r[7],
            inout("ymm8") r[8], inout("ymm9") r[9], inout("ymm10") r[10], inout("ymm11") r[11],
            inout("ymm12") r[12], inout("ymm13") r[13], inout("ymm14") r[14], inout("ymm15") r[15],
            options(nomem, nostack),
        );
    }
    // SAFETY: both types are 32 plain bytes.
    *state = r.map(|value| unsafe { core::mem::transmute::<__m256i, [u64; 4]>(value) });
}

/// # Safety
/// The CPU must support AVX2.
unsafe fn ymm_run(chunks: u64, per_chunk: u64) -> YmmState {
    let mut state = [[0u64; 4]; 16];
    for (i, lanes) in state.iter_mut().enumerate() {
        for (j, lane) in lanes.iter_mut().enumerate() {
            *lane = common::mix((i * 4 + j) as u64, 3) | 1;
        }
    }
    state[4] = [1.0f64, 2.0, 3.0, 4.0].map(f64::to_bits);
    state[5] = [5.0f64, 6.0, 7.0, 8.0].map(f64::to_bits);
    state[11] = [0.0f64; 4].map(f64::to_bits);
    state[12] = [0.5f64; 4].map(f64::to_bits);
    state[13] = [1e-3f64, 2e-3, 3e-3, 4e-3].map(f64::to_bits);
    for _ in 0..chunks {
        // SAFETY: the caller guarantees AVX2.
        unsafe { ymm_loop(&mut state, black_box(per_chunk)) };
    }
    state
}

#[test]
fn all_ymm_registers_survive_preemption_bit_for_bit() {
    if !std::arch::is_x86_feature_detected!("avx2") {
        eprintln!("this CPU has no AVX2: the YMM registers are not exercised");
        return;
    }
    let (chunks, per_chunk) = (400, 100_000);
    // SAFETY: AVX2 was detected above.
    let expected = unsafe { ymm_run(chunks, per_chunk) };
    // SAFETY: AVX2 was detected above; the function runs on this same CPU.
    let (got, stops) = preempted(|| unsafe { ymm_run(chunks, per_chunk) });
    assert!(
        stops >= 1000,
        "only {stops} preemptions: the workload is too short"
    );
    for (i, (g, e)) in got.iter().zip(expected.iter()).enumerate() {
        assert_eq!(g, e, "ymm{i} differs after {stops} preemptions");
    }
}

/// `iterations` steps of x = (x + sqrt(x * x + c)) / 2 on the x87 stack, in 80-bit extended
/// precision; returns x rounded to f64 and the extra register st(1) kept live throughout.
fn x87_loop(x: f64, c: f64, iterations: u64) -> (f64, f64) {
    let half = 0.5f64;
    let (mut out, mut side) = (0.0f64, 0.0f64);
    // SAFETY: the x87 stack is empty on entry (all st registers are declared clobbered) and
    // is emptied again before the block ends; the memory operands point to live locals.
    unsafe {
        asm!(
            "fld qword ptr [{c}]",      // st0 = c (kept live as st1 below)
            "fld qword ptr [{x}]",      // st0 = x, st1 = c
            "2:",
            "fld st(0)",                // x, x, c
            "fmul st(0), st(1)",        // x*x, x, c
            "fadd st(0), st(2)",        // x*x+c, x, c
            "fsqrt",                    // s, x, c
            "faddp st(1), st(0)",       // x+s, c
            "fmul qword ptr [{half}]",  // new x, c
            "dec {n}",
            "jnz 2b",
            "fstp qword ptr [{out}]",   // c
            "fstp qword ptr [{side}]",  // empty
            x = in(reg) &x,
            c = in(reg) &c,
            half = in(reg) &half,
            out = in(reg) &mut out,
            side = in(reg) &mut side,
            n = inout(reg) iterations => _,
            out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
            out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
            options(nostack),
        );
    }
    (out, side)
}

fn x87_run(chunks: u64, per_chunk: u64) -> Vec<u64> {
    let mut x = 1.0f64;
    let mut trace = Vec::new();
    for i in 0..chunks {
        let (next, side) = x87_loop(x, 1.0 + i as f64 * 1e-3, black_box(per_chunk));
        trace.push(next.to_bits() ^ side.to_bits());
        x = next;
    }
    trace
}

#[test]
fn the_x87_stack_survives_preemption_bit_for_bit() {
    let (chunks, per_chunk) = (300, 200_000);
    let expected = x87_run(chunks, per_chunk);
    let (got, stops) = preempted(|| x87_run(chunks, per_chunk));
    assert!(
        stops >= 1000,
        "only {stops} preemptions: the workload is too short"
    );
    assert_eq!(got, expected);
}
