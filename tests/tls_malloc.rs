//! `malloc` inside preemptible functions with private TLS: each function has its own malloc
//! thread cache (glibc's tcache lives in libc's TLS), several functions allocate in turn under
//! preemption while the caller allocates between resumes, memory allocated in one context is
//! freed in another, and pooled blocks keep their cache so running thousands of functions
//! does not leak one cache per function.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Stops, preemptions, spin};

const SLICE: Duration = Duration::from_micros(100);

/// Whether the first, middle and last bytes of a `size`-byte block still hold `byte`
/// (checking every byte is slow in debug builds).
fn intact(block: *const u8, size: usize, byte: u8) -> bool {
    // SAFETY: the callers pass a live block of `size` (> 0) bytes.
    unsafe {
        [0, size / 2, size - 1]
            .iter()
            .all(|&i| block.add(i).read() == byte)
    }
}

/// Allocation-heavy deterministic work with C `malloc`/`free` and Rust collections.
fn churn(seed: u64, rounds: u64) -> u64 {
    let mut held: Vec<(*mut u8, usize, u8)> = Vec::new();
    let mut map = BTreeMap::new();
    let mut checksum = 0u64;
    for round in 0..rounds {
        let x = spin(seed ^ round, 3);
        let size = 1 + (x % 3000) as usize;
        let byte = (x >> 24) as u8;
        // SAFETY: malloc has no preconditions; the result is checked below.
        let block = unsafe { libc::malloc(size) }.cast::<u8>();
        assert!(!block.is_null(), "malloc");
        // SAFETY: `block` holds `size` bytes.
        unsafe { block.write_bytes(byte, size) };
        held.push((block, size, byte));
        if held.len() > 40 || x.is_multiple_of(5) {
            let (block, size, byte) = held.swap_remove((x % held.len() as u64) as usize);
            assert!(
                intact(block, size, byte),
                "a malloc'ed block was overwritten"
            );
            checksum = checksum.wrapping_add(size as u64);
            // SAFETY: allocated by malloc above, freed once.
            unsafe { libc::free(block.cast()) };
        }
        let text = format!("{round}:{x:x}");
        if x.is_multiple_of(3) {
            map.insert(x % 512, text);
        } else {
            map.remove(&(x % 512));
        }
    }
    for (block, size, byte) in held {
        assert!(
            intact(block, size, byte),
            "a malloc'ed block was overwritten"
        );
        // SAFETY: as above.
        unsafe { libc::free(block.cast()) };
    }
    map.values()
        .fold(checksum, |acc, v| acc.rotate_left(5) ^ v.len() as u64)
}

#[test]
fn several_functions_allocate_in_turn_under_preemption_while_the_caller_allocates() {
    const FUNCTIONS: u64 = 4;
    const TARGET: u64 = 200;
    let stops = Stops::leaked(TARGET);
    let before = preemptions();
    // Each function churns in chunks until the caller has stopped TARGET times.
    let mut functions: Vec<_> = (0..FUNCTIONS)
        .map(|f| {
            inger::launch(
                move || {
                    let mut sums = Vec::new();
                    while !stops.done() {
                        sums.push(churn(f * 1_000_000 + sums.len() as u64, 200));
                    }
                    sums
                },
                SLICE,
            )
            .expect("launch")
        })
        .collect();
    let mut caller_sums = Vec::new();
    while functions.iter().any(inger::Linger::is_continuation) {
        caller_sums.push(churn(u64::MAX - stops.seen(), 20));
        stops.record();
        for linger in &mut functions {
            inger::resume(linger, SLICE).expect("resume");
        }
    }
    for (f, linger) in functions.into_iter().enumerate() {
        let sums = linger.completion().expect("completed");
        let expected: Vec<u64> = (0..sums.len() as u64)
            .map(|chunk| churn(f as u64 * 1_000_000 + chunk, 200))
            .collect();
        assert_eq!(sums, expected, "function {f}");
    }
    let caller_expected: Vec<u64> = (0..caller_sums.len() as u64)
        .map(|stop| churn(u64::MAX - stop, 20))
        .collect();
    assert_eq!(caller_sums, caller_expected);
    assert!(preemptions() - before >= TARGET, "they were preempted");
}

/// Blocks handed from one context to the other. Both sides touch it only briefly, and the
/// function only inside `nopreempt`, so it is never paused holding the lock. (A
/// `std::sync::mpsc` channel is not usable here: its receiver spins until a sender finishes
/// writing a slot, and a sender paused half-way on the same kernel thread never does.)
type Mailbox = std::sync::Mutex<Vec<Box<[u64]>>>;

#[test]
fn memory_allocated_in_one_context_is_freed_in_another() {
    const TARGET: u64 = 200;
    let stops = Stops::leaked(TARGET);
    // The caller hands the function blocks to free; the function hands back blocks it
    // allocated, which the caller frees.
    let to_function: &'static Mailbox = Box::leak(Box::default());
    let to_caller: &'static Mailbox = Box::leak(Box::default());
    let before = preemptions();
    let mut linger = inger::launch(
        move || {
            let mut freed = 0u64;
            let mut round = 0u64;
            while !stops.done() {
                let received =
                    inger::nopreempt(|| std::mem::take(&mut *to_function.lock().unwrap()));
                for block in received {
                    assert!(block.iter().all(|&v| v == block.len() as u64));
                    freed += 1;
                }
                let batch: Vec<Box<[u64]>> = (0..8)
                    .map(|k| {
                        let len = 1 + ((round * 8 + k) % 700) as usize;
                        vec![len as u64 + 1_000_000; len].into_boxed_slice()
                    })
                    .collect();
                inger::nopreempt(|| to_caller.lock().unwrap().extend(batch));
                spin(round, 3_000);
                round += 1;
            }
            freed
        },
        SLICE,
    )
    .expect("launch");
    let mut received = 0u64;
    let mut sent = 0u64;
    while linger.is_continuation() {
        for block in std::mem::take(&mut *to_caller.lock().unwrap()) {
            assert!(block.iter().all(|&v| v == block.len() as u64 + 1_000_000));
            received += 1;
        }
        let batch = (0..8).map(|k| {
            let len = 1 + ((sent + k) % 500) as usize;
            vec![len as u64; len].into_boxed_slice()
        });
        to_function.lock().unwrap().extend(batch);
        sent += 8;
        stops.record();
        inger::resume(&mut linger, SLICE).expect("resume");
    }
    let freed = linger.completion().expect("completed");
    assert!(
        freed > 0 && received > 0,
        "freed {freed}, received {received}"
    );
    assert!(preemptions() - before >= TARGET);
}

/// Bytes the allocator has handed out and not got back (all arenas; includes chunks parked
/// in thread caches).
fn in_use() -> usize {
    // SAFETY: mallinfo2 has no preconditions.
    unsafe { libc::mallinfo2() }.uordblks
}

#[test]
fn thousands_of_functions_do_not_leak_a_malloc_cache_each() {
    // A fresh TLS block would get a fresh tcache (and cached chunks) on its first allocation,
    // never returned: pooled blocks must keep theirs. Measured on a thread of its own, after a
    // warm-up, with functions that free everything they allocate.
    std::thread::spawn(|| {
        let run_batch = |count: u64, alive: usize| {
            for start in (0..count).step_by(alive) {
                let mut batch: Vec<_> = (start..(start + alive as u64).min(count))
                    .map(|i| {
                        inger::launch(
                            move || {
                                let value = churn(i, 50);
                                inger::pause();
                                value
                            },
                            Duration::MAX,
                        )
                        .expect("launch")
                    })
                    .collect();
                for linger in &mut batch {
                    inger::resume(linger, Duration::MAX).expect("resume");
                    assert!(linger.is_completion());
                }
            }
        };
        run_batch(200, 20);
        let before = in_use();
        run_batch(4000, 20);
        let after = in_use();
        let growth = after.saturating_sub(before);
        // One leaked cache with its parked chunks is several KiB; 4000 of them would be tens
        // of MiB. Allow a little slack for the allocator's own bookkeeping.
        assert!(
            growth < 2 << 20,
            "allocated memory grew by {growth} bytes over 4000 functions ({before} -> {after})"
        );
    })
    .join()
    .expect("thread");
}
