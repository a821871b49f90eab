//! Libsets used transparently (issue 13): a C library with global state
//! (`tests/c/libset/counter.c`) called by another library (`driver.c`) that knows nothing
//! of inger, through its PLT (lazily bound), its GOT without a PLT, an address taken at run
//! time and a pointer in a static table. Once the counter library's libset is routed, every
//! such call made inside a preemptible function reaches that function's own copy, the
//! caller keeps the original, a completed function's copy is reused as it was left, a
//! cancelled one's is renewed, the original is never paused inside while the copies are,
//! and a function that finds every copy taken waits for one.
//!
//! Each test loads its own counter library (a distinct file: a distinct module).

mod common;

use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use common::{Counter, GENEROUS, read_flag};
use inger::{Libset, Linger};

/// Opens and routes the libset of a fresh counter library under `stem`.
fn routed(stem: &str, max_copies: usize) -> (Counter, Libset) {
    let counter = Counter::load(stem);
    let libset = Libset::open(counter.name(), max_copies).expect("open the libset");
    let routing = libset.route().expect("route");
    // add, get, grind and history_length: four functions, at least one reference each (the
    // linker may fold the table, the taken address and the PLT call of counter_add into one
    // GOT entry).
    assert_eq!(routing.functions, 4, "{routing:?}");
    assert!(routing.references >= 4, "{routing:?}");
    assert_eq!(libset.route().expect("route again").references, 0);
    (counter, libset)
}

/// Leaks `value` for a `'static` function.
fn leak<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

#[test]
fn routed_calls_inside_a_function_reach_its_own_copy_and_the_caller_keeps_the_original() {
    let (counter, libset) = routed("libset_transparent_own", 4);
    let counter = leak(counter);
    assert_eq!(counter.add(1), 1, "the caller's original starts at 0");
    let mut linger = inger::launch(
        move || {
            assert!(inger::in_preemptible());
            let mut seen = vec![counter.add(10)]; // a fresh copy starts at 0 too
            seen.push(counter.get());
            seen.push(counter.table_add(1));
            seen.push(counter.add_through_address(1));
            assert!(libset.holds_copy());
            inger::pause();
            seen.push(counter.get()); // nothing the caller did meanwhile reached this copy
            seen
        },
        GENEROUS,
    )
    .expect("launch");
    assert!(linger.yielded());
    assert!(!libset.holds_copy(), "the caller holds no copy");
    assert_eq!(
        counter.get(),
        1,
        "the function's additions stayed in its copy"
    );
    assert_eq!(counter.add(2), 3);
    assert_eq!(
        counter.table_add(3),
        6,
        "the static table reaches the original here"
    );
    assert_eq!(libset.stats().copies_in_use, 1);
    inger::resume(&mut linger, GENEROUS).expect("resume");
    assert_eq!(linger.completion(), Some(vec![10, 10, 11, 12, 12]));
    let stats = libset.stats();
    assert_eq!(stats.copies_in_use, 0, "{stats:?}");
    assert_eq!(stats.copies_taken, 1, "{stats:?}");
    assert_eq!(stats.routed_functions, 4, "{stats:?}");
    assert_eq!(counter.get(), 6);
}

#[test]
fn a_completed_copy_is_reused_as_left_and_a_cancelled_one_is_renewed() {
    let (counter, libset) = routed("libset_transparent_reuse", 1);
    let counter = leak(counter);
    let run = |f: fn(&'static Counter) -> i64| {
        inger::launch(move || f(counter), GENEROUS)
            .expect("launch")
            .completion()
            .expect("completed")
    };
    assert_eq!(run(|c| c.add(5)), 5);
    assert_eq!(
        run(|c| c.get()),
        5,
        "the one copy, as the last function left it"
    );

    // Cancelled at a cancellation point: it unwinds, and its copy is renewed.
    let linger = inger::launch(
        move || {
            counter.add(7);
            loop {
                inger::pause();
            }
        },
        GENEROUS,
    )
    .expect("launch");
    let paused = linger.continuation().expect("paused");
    assert_eq!(paused.cancel(), inger::CancelOutcome::Unwound);
    assert_eq!(libset.stats().copies_renewed, 1);
    assert_eq!(run(|c| c.get()), 0, "renewed after the cancellation");

    // Discarded while it computes inside its copy (no cancellation point): renewed too.
    let inside = leak(AtomicUsize::new(0));
    let linger = inger::launch(
        move || {
            counter.add(9);
            let busy = libset.symbol("counter_busy").expect("counter_busy");
            inside.store(busy as usize, SeqCst);
            loop {
                counter.grind(1_000_000);
            }
        },
        Duration::from_millis(20),
    )
    .expect("launch");
    let paused = linger.continuation().expect("an endless loop is paused");
    assert_ne!(inside.load(SeqCst), 0);
    assert_eq!(paused.cancel(), inger::CancelOutcome::Discarded);
    assert_eq!(libset.stats().copies_renewed, 2);
    assert_eq!(
        read_flag(inside.load(SeqCst) as *mut _),
        0,
        "the copy's flag was renewed"
    );
    assert_eq!(run(|c| c.get()), 0, "renewed after the discard");
    assert_eq!(run(|c| c.add(1)), 1);
    assert_eq!(counter.get(), 0, "the caller's original was never touched");
    assert_eq!(libset.stats().copies_loaded, 1, "one copy did it all");
}

#[test]
fn functions_are_preempted_inside_their_copies_never_inside_the_original() {
    const CALLS: i64 = 40;
    const ROUNDS: i64 = 400_000;
    let (counter, libset) = routed("libset_transparent_preempt", 4);
    let original_busy = libset.symbol("counter_busy").expect("the original's flag");
    let original_grind: unsafe extern "C" fn(i64) -> i64 = {
        let address = libset
            .symbol("counter_grind")
            .expect("the original's grind");
        // SAFETY: `long counter_grind(long)`.
        unsafe { core::mem::transmute::<*mut core::ffi::c_void, _>(address) }
    };
    let copy_busy = AtomicUsize::new(0);
    let expected = (0..CALLS).fold(0, |total, call| {
        let total = total + call;
        total + counter.grind_effect(total, ROUNDS)
    });
    let mut root_total = counter.get();
    let (mut inside_copy, mut inside_original) = (0u64, 0u64);
    // Through routed calls: paused inside the copy while the caller uses the original.
    let (result, stops) = common::storm(
        || {
            copy_busy.store(libset.symbol("counter_busy").unwrap() as usize, SeqCst);
            for call in 0..CALLS {
                counter.add(call);
                counter.grind(ROUNDS);
            }
            counter.get()
        },
        |_| {
            let busy = copy_busy.load(SeqCst);
            if busy != 0 && read_flag(busy as *mut _) != 0 {
                inside_copy += 1;
            }
            assert_eq!(read_flag(original_busy), 0);
            root_total = counter.add(1);
        },
    );
    assert_eq!(
        result, expected,
        "the function's copy saw only its own calls"
    );
    assert_eq!(counter.get(), root_total);
    assert!(
        inside_copy > 0,
        "never paused inside its copy in {stops} stops: copies must be preemptible"
    );
    // Through the original itself (a pointer taken outside any function): never paused
    // inside it, since the original is non-preemptible.
    let deferred_before = inger::stats().deferred_library;
    let original_flag = AtomicI32::new(0);
    let (_, stops) = common::storm(
        || {
            for _ in 0..CALLS / 4 {
                // SAFETY: `long counter_grind(long)` of the original.
                unsafe { original_grind(ROUNDS) };
            }
        },
        |_| {
            let busy = read_flag(original_busy);
            original_flag.fetch_max(busy, SeqCst);
            inside_original += u64::from(busy != 0);
        },
    );
    assert_eq!(
        inside_original, 0,
        "paused inside the original in {stops} stops"
    );
    assert!(
        inger::stats().deferred_library > deferred_before,
        "no deferral inside the original"
    );
    println!("inside its copy at {inside_copy} stops; the original: never in {stops} stops");
}

#[test]
fn a_function_that_finds_every_copy_taken_waits_for_one() {
    let (counter, libset) = routed("libset_transparent_limit", 2);
    let counter = leak(counter);
    let holders: Vec<Linger<'static, i64>> = (0..2)
        .map(|index| {
            inger::launch(
                move || {
                    counter.add(100 + index);
                    inger::pause();
                    counter.get()
                },
                GENEROUS,
            )
            .expect("launch")
        })
        .collect();
    assert_eq!(libset.stats().copies_in_use, 2);
    // Explicitly: an error.
    let refused = inger::launch(move || libset.acquire(), GENEROUS)
        .expect("launch")
        .completion()
        .expect("completed");
    assert!(
        matches!(refused, Err(inger::Error::CopyLimit { max_copies: 2, .. })),
        "{refused:?}"
    );
    // Transparently: the routed call waits (its function yields) until a copy is free.
    let attempts = leak(AtomicU64::new(0));
    let mut waiter = inger::launch(
        move || {
            attempts.fetch_add(1, SeqCst);
            counter.add(1)
        },
        GENEROUS,
    )
    .expect("launch");
    assert!(
        waiter.yielded(),
        "the waiting function came back as a yield"
    );
    inger::resume(&mut waiter, GENEROUS).expect("resume");
    assert!(waiter.is_continuation(), "still no copy free");
    assert!(libset.stats().copy_waits >= 2);
    let mut holders = holders.into_iter();
    let mut first = holders.next().expect("first holder");
    inger::resume(&mut first, GENEROUS).expect("resume");
    assert_eq!(first.completion(), Some(100));
    inger::resume(&mut waiter, GENEROUS).expect("resume");
    assert_eq!(
        waiter.completion(),
        Some(101),
        "the freed copy, as its function left it"
    );
    assert_eq!(
        attempts.load(SeqCst),
        1,
        "the function ran once, it only waited"
    );
    let mut second = holders.next().expect("second holder");
    inger::resume(&mut second, GENEROUS).expect("resume");
    assert_eq!(second.completion(), Some(101));
}

#[test]
fn misuse_and_unsupported_libraries_are_refused_clearly() {
    let missing = Libset::open("libinger-test-does-not-exist.so.7", 2).unwrap_err();
    assert!(
        matches!(&missing, inger::Error::LibraryNotFound { library, .. } if library.contains("does-not-exist")),
        "{missing:?}"
    );
    assert!(matches!(
        Libset::open("libc.so.6", 2),
        Err(inger::Error::CopyFailed { .. })
    ));
    let counter = Counter::load("libset_transparent_misuse");
    assert!(matches!(
        Libset::open(counter.name(), 0),
        Err(inger::Error::InvalidConfig(_))
    ));
    let static_tls = common::compile_c("libset/static_tls.c", "libset_static_tls", &[]);
    let refused = Libset::open(static_tls.to_str().unwrap(), 2).unwrap_err();
    assert!(
        matches!(refused, inger::Error::InitialExecTls { .. }),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("initial-exec"), "{refused}");

    let libset = Libset::open(counter.name(), 2).expect("open");
    assert_eq!(Libset::open(counter.name(), 5).expect("again"), libset);
    assert_eq!(libset.max_copies(), 5, "the larger maximum wins");
    for symbol in ["no_such_function", "malloc"] {
        let error = libset.symbol(symbol).unwrap_err();
        assert!(
            matches!(&error, inger::Error::SymbolNotFound { symbol: s, .. } if s == symbol),
            "{symbol}: {error:?}"
        );
    }
    // A module that reads the library's global variable directly: refused, nothing changed.
    let data_user = common::compile_c_linked(
        "libset/data_user.c",
        "libset_transparent_data_user",
        &counter.path,
    );
    let _data_user = common::Library::open(&data_user);
    let refused = libset.route().unwrap_err();
    match &refused {
        inger::Error::Unroutable { symbol, module, .. } => {
            assert_eq!(symbol, "counter_total");
            assert!(module.contains("data_user"), "{module}");
        }
        other => panic!("expected Unroutable, got {other:?}"),
    }
    assert_eq!(libset.stats().routed_references, 0);
    let counter = leak(counter);
    counter.add(3);
    let inside = inger::launch(move || counter.get(), GENEROUS)
        .expect("launch")
        .completion();
    assert_eq!(
        inside,
        Some(3),
        "unrouted: the function still reaches the original"
    );
}
