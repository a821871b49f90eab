//! Deterministic CPU-bound workloads: same input, same output, on any stack, so a function
//! preempted anywhere must compute exactly what a direct call computes.
//!
//! Two mixing functions, kept apart on purpose: [`mix`] works on a small array in memory (the
//! stack of whoever runs it), [`spin`] stays in one register and touches no thread-local and no
//! libc state. Tests size their rounds for one or the other, so neither replaces the other.

/// `rounds` steps of a 64-bit mixing function (splitmix64's finaliser) over a small array,
/// returning a checksum.
pub fn mix(seed: u64, rounds: u64) -> u64 {
    let mut state = [
        seed,
        seed ^ 0x9e37_79b9_7f4a_7c15,
        seed.rotate_left(17),
        !seed,
    ];
    for round in 0..rounds {
        let i = (round % 4) as usize;
        let x = std::hint::black_box(state[i]);
        let x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        state[i] = x ^ (x >> 31) ^ state[(i + 1) % 4];
    }
    state.iter().fold(0, |acc, v| acc.rotate_left(13) ^ v)
}

/// `rounds` steps of xorshift from `seed`, touching no thread-local, no libc state and no
/// library.
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

/// What `sp_busy_spin(_, rounds)` of `tests/c/safepoint/busy.c` computes (the same xorshift,
/// seeded with `rounds`), for comparing results.
pub fn busy_spin_in_rust(rounds: i64) -> i64 {
    let rounds = u64::try_from(rounds).expect("a non-negative number of rounds");
    spin(rounds, rounds) as i64
}
