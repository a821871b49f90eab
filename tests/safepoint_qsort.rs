//! `qsort` storm (issue 4): two threads each run a function that sorts arrays again and again
//! with libc's `qsort` and a Rust comparator that does real work, under slices of 20–50 µs.
//! The comparator is ordinary (preemptible) Rust code, but `qsort`'s frame below it is libc's:
//! by the whole-stack rule the function must never be paused while the comparator runs.
//!
//! The comparator raises its thread's `IN_COMPARATOR` flag on entry and lowers it before it
//! returns; the caller asserts the flag is down every time it gets control back. A raised flag
//! at a stop can only mean a pause with the comparator (and so `qsort`) on the stack: the
//! flag under-reports (the few instructions around the stores) but never over-reports, so the
//! check cannot fail spuriously. Results are compared with a direct run, and the counters
//! must show deferrals in libraries.

mod common;

use core::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};

/// Arrays sorted per function, and their length.
const SORTS: u64 = 40;
const LENGTH: usize = 600;

/// Raised while the comparator of slot `i` runs (slots 0 and 1: the `qsort` storm's threads;
/// 2 and 3: the control run with Rust's own sort).
static IN_COMPARATOR: [AtomicBool; 4] = [const { AtomicBool::new(false) }; 4];
/// Comparator calls per slot.
static CALLS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// One array element: the key, and the slot of the function sorting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Element {
    key: u64,
    slot: u64,
}

/// The order the comparator sorts by: the key, scrambled by some real work.
fn rank(key: u64) -> u64 {
    common::spin(key, 64)
}

/// The comparator given to `qsort`.
unsafe extern "C" fn compare(a: *const c_void, b: *const c_void) -> c_int {
    // SAFETY: qsort passes pointers to two elements of the array we gave it.
    let (a, b) = unsafe { (&*a.cast::<Element>(), &*b.cast::<Element>()) };
    let slot = a.slot as usize % 4;
    IN_COMPARATOR[slot].store(true, SeqCst);
    CALLS[slot].fetch_add(1, SeqCst);
    let order = rank(a.key).cmp(&rank(b.key)).then(a.key.cmp(&b.key)) as c_int;
    IN_COMPARATOR[slot].store(false, SeqCst);
    order
}

/// The `sort`-th array of storm thread `thread`, for the comparator slot `slot`. Building it
/// takes a good share of the function's time, so that it is often paused between sorts.
fn array(thread: usize, slot: usize, sort: u64) -> Vec<Element> {
    (0..LENGTH as u64)
        .map(|i| Element {
            key: common::spin((sort << 20) ^ (i << 1) ^ (thread as u64) << 40, 300),
            slot: slot as u64,
        })
        .collect()
}

/// The function's body: build arrays in Rust, sort them with `qsort`; returns a checksum of
/// the sorted orders.
fn sort_many(thread: usize) -> u64 {
    let mut checksum = 0u64;
    for sort in 0..SORTS {
        let mut elements = array(thread, thread, sort);
        // SAFETY: `elements` is a valid array of LENGTH `Element`s of the size given, and
        // `compare` reads two such elements and returns their order.
        unsafe {
            libc::qsort(
                elements.as_mut_ptr().cast(),
                elements.len(),
                size_of::<Element>(),
                Some(compare),
            )
        };
        checksum = elements
            .iter()
            .fold(checksum, |sum, e| sum.rotate_left(3) ^ e.key);
    }
    checksum
}

/// `sort_many` with Rust's own sort.
fn expected(thread: usize) -> u64 {
    (0..SORTS).fold(0u64, |checksum, sort| {
        let mut elements = array(thread, thread, sort);
        elements.sort_by_key(|e| (rank(e.key), e.key));
        elements
            .iter()
            .fold(checksum, |sum, e| sum.rotate_left(3) ^ e.key)
    })
}

#[test]
fn qsort_storm_never_pauses_inside_qsort() {
    let expected = [expected(0), expected(1)];
    let before = inger::stats();
    let results = common::on_two_threads(|thread| {
        common::storm(
            || sort_many(thread),
            |stop| {
                assert!(
                    !IN_COMPARATOR[thread].load(SeqCst),
                    "thread {thread}'s function was paused inside qsort's comparator (stop {stop})"
                );
            },
        )
    });
    let after = inger::stats();
    for (thread, (value, stops)) in results.iter().enumerate() {
        assert_eq!(*value, expected[thread], "thread {thread}'s sorted arrays");
        assert!(*stops > 0, "thread {thread}'s function was never paused");
        assert!(CALLS[thread].load(SeqCst) > 0);
    }
    let deferred_library = after.deferred_library - before.deferred_library;
    assert!(
        deferred_library > 0,
        "no deferral in libraries, though most of the time was spent under qsort"
    );
    println!(
        "qsort storm: stops {:?}, {} preemptions, {deferred_library} deferred in libraries, comparator calls {:?}",
        results.map(|(_, stops)| stops),
        after.preemptions - before.preemptions,
        CALLS.each_ref().map(|calls| calls.load(SeqCst)),
    );
}

/// The control: the same comparator under Rust's own (preemptible) sort is paused inside it,
/// and the caller sees the raised flag. This shows the check above can see a pause inside
/// the comparator, so its silence there means something.
#[test]
fn the_same_comparator_under_a_rust_sort_is_paused_inside() {
    let expected = [expected(0), expected(1)];
    let results = common::on_two_threads(|thread| {
        let slot = 2 + thread;
        let mut seen_inside = 0u64;
        let (value, _) = common::storm(
            || {
                (0..SORTS).fold(0u64, |checksum, sort| {
                    let mut elements = array(thread, slot, sort);
                    elements.sort_by(|a, b| {
                        // SAFETY: two valid elements, as qsort would pass them.
                        let order = unsafe {
                            compare((a as *const Element).cast(), (b as *const Element).cast())
                        };
                        order.cmp(&0)
                    });
                    elements
                        .iter()
                        .fold(checksum, |sum, e| sum.rotate_left(3) ^ e.key)
                })
            },
            |_| seen_inside += u64::from(IN_COMPARATOR[slot].load(SeqCst)),
        );
        (value, seen_inside)
    });
    for (thread, (value, seen_inside)) in results.iter().enumerate() {
        assert_eq!(*value, expected[thread], "thread {thread}'s sorted arrays");
        assert!(
            *seen_inside > 0,
            "thread {thread}'s function was never seen paused inside the comparator under a \
             Rust sort: the qsort test's check would be blind"
        );
    }
    println!(
        "control: paused inside the comparator {:?} times",
        results.map(|(_, seen)| seen)
    );
}
