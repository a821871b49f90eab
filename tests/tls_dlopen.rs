//! A C library with thread-local variables (`tests/c/tls/dynamic_tls.c`, global-dynamic
//! model) loaded with `dlopen` after inger started, used inside preemptible functions under
//! preemption: the caller and each function get their own copy, allocated on first access
//! from the module's image, including a function whose block existed before the library was
//! loaded; a reused block starts from the image again; and a paused function keeps working
//! while more and more such modules are loaded (its DTV must grow).
//!
//! Each test loads its own copies of the library (distinct files are distinct modules), so
//! the tests do not depend on each other even when they share a process.

mod common;

use core::ffi::{c_int, c_long, c_uchar};
use std::sync::OnceLock;
use std::time::Duration;

use common::{Library, Stops, as_fn, preemptions};

const SLICE: Duration = Duration::from_micros(100);

/// One loaded copy of the library.
#[derive(Clone, Copy)]
struct DynTls {
    get: unsafe extern "C" fn() -> c_long,
    set: unsafe extern "C" fn(c_long),
    pattern_is_initial: unsafe extern "C" fn() -> c_int,
    pattern_scribble: unsafe extern "C" fn(c_uchar),
    churn: unsafe extern "C" fn(c_long, c_long) -> c_long,
}

// The wrappers call functions of dynamic_tls.c, which have exactly these signatures and no
// preconditions.
impl DynTls {
    /// Compiles (once) and `dlopen`s a copy named `copy`.
    fn load(copy: &str) -> DynTls {
        let path = common::compile_c("tls/dynamic_tls.c", copy, &["-ftls-model=global-dynamic"]);
        let library = Library::open(&path);
        // SAFETY: each type matches the C definition of the symbol in dynamic_tls.c.
        unsafe {
            DynTls {
                get: as_fn(library.address("dyn_get")),
                set: as_fn(library.address("dyn_set")),
                pattern_is_initial: as_fn(library.address("dyn_pattern_is_initial")),
                pattern_scribble: as_fn(library.address("dyn_pattern_scribble")),
                churn: as_fn(library.address("dyn_churn")),
            }
        }
    }

    fn get(&self) -> i64 {
        // SAFETY: see the impl comment.
        unsafe { (self.get)() }
    }

    fn set(&self, value: i64) {
        // SAFETY: see the impl comment.
        unsafe { (self.set)(value) }
    }

    /// This context's value and whether its pattern is still the image's.
    fn state(&self) -> (i64, bool) {
        // SAFETY: see the impl comment.
        (self.get(), unsafe { (self.pattern_is_initial)() } == 1)
    }

    fn scribble(&self, byte: u8) {
        // SAFETY: see the impl comment.
        unsafe { (self.pattern_scribble)(byte) }
    }

    fn churn(&self, value: i64, rounds: i64) -> i64 {
        // SAFETY: see the impl comment.
        unsafe { (self.churn)(value, rounds) }
    }
}

/// What a function saw: its first state, values that changed under it, its final state.
type Seen = ((i64, bool), Vec<(i64, i64)>, (i64, bool));

/// The body of a function using the library until the caller has stopped `stops` times.
fn use_library(library: DynTls, id: i64, stops: &Stops) -> Seen {
    let first = library.state();
    library.scribble(id as u8);
    let mut wrong = Vec::new();
    let mut round = 0;
    while !stops.done() {
        let value = id * 1_000_000 + round;
        let changed = library.churn(value, 20_000);
        if changed != 0 || library.get() != value {
            wrong.push((round, library.get()));
        }
        round += 1;
    }
    (first, wrong, library.state())
}

#[test]
fn a_library_loaded_after_start_up_has_a_copy_per_function_and_for_the_caller() {
    const TARGET: u64 = 200;
    // inger is running, and a function's block exists before the library is loaded.
    let started = inger::launch(|| (), Duration::MAX).expect("launch");
    assert!(started.is_completion());
    let loaded: &'static OnceLock<DynTls> = Box::leak(Box::new(OnceLock::new()));
    let stops = Stops::leaked(TARGET);
    let mut early = inger::launch(
        move || {
            inger::pause();
            use_library(*loaded.get().expect("loaded"), 3, stops)
        },
        Duration::MAX,
    )
    .expect("launch early");
    assert!(early.yielded());

    let library = DynTls::load("dynamic_tls_per_function");
    loaded.set(library).ok().expect("set once");
    assert_eq!(library.state(), (7, true), "the caller's first access");
    library.set(100);
    let before = preemptions();
    let mut a = inger::launch(move || use_library(library, 1, stops), SLICE).expect("launch a");
    let mut b = inger::launch(move || use_library(library, 2, stops), SLICE).expect("launch b");
    let mut caller_wrong = Vec::new();
    let mut expected = 100;
    let mut stop = 0;
    while a.is_continuation() || b.is_continuation() || early.is_continuation() {
        if library.state() != (expected, true) {
            caller_wrong.push((stop, library.state()));
        }
        expected = 100 + stop;
        library.set(expected);
        stops.record();
        stop += 1;
        for linger in [&mut early, &mut a, &mut b] {
            inger::resume(linger, SLICE).expect("resume");
        }
    }
    for (id, linger) in [(3, early), (1, a), (2, b)] {
        let (first, wrong, last) = linger.completion().expect("completed");
        assert_eq!(first, (7, true), "function {id} starts from the image");
        assert!(wrong.is_empty(), "function {id}'s value changed: {wrong:?}");
        assert!(!last.1, "function {id} saw its own scribbles");
    }
    assert!(
        caller_wrong.is_empty(),
        "the caller's copy changed: {caller_wrong:?}"
    );
    assert!(preemptions() - before >= TARGET);

    // Reused blocks: the next functions start from the image again.
    for round in 0..50 {
        let first = inger::launch(
            move || {
                let first = library.state();
                library.set(round);
                library.scribble(0xee);
                first
            },
            Duration::MAX,
        )
        .expect("launch")
        .completion()
        .expect("completed");
        assert_eq!(first, (7, true), "round {round}");
    }
    assert_eq!(library.state(), (expected, true));
}

#[test]
fn a_paused_function_uses_modules_loaded_one_after_another() {
    // More modules with TLS than glibc's spare DTV slots: the function's DTV must grow.
    const MODULES: usize = 24;
    let started = inger::launch(|| (), Duration::MAX).expect("launch");
    assert!(started.is_completion());
    let slots: &'static [OnceLock<DynTls>; MODULES] =
        Box::leak(Box::new(std::array::from_fn(|_| OnceLock::new())));
    let mut linger = inger::launch(
        move || {
            let mut firsts = Vec::new();
            let mut wrong = Vec::new();
            for k in 0..MODULES {
                let library = loop {
                    match slots[k].get() {
                        Some(library) => break *library,
                        None => inger::pause(),
                    }
                };
                firsts.push(library.state());
                library.scribble(k as u8 + 1);
                let value = k as i64 * 10 + 1;
                if library.churn(value, 50_000) != 0 {
                    wrong.push((k, library.get()));
                }
                for (j, earlier) in slots[..=k].iter().enumerate() {
                    let earlier = earlier.get().expect("loaded");
                    if earlier.get() != j as i64 * 10 + 1 {
                        wrong.push((j, earlier.get()));
                    }
                }
            }
            (firsts, wrong)
        },
        Duration::MAX,
    )
    .expect("launch");
    assert!(linger.yielded(), "waiting for the first module");
    for (k, slot) in slots.iter().enumerate() {
        let library = DynTls::load(&format!("dynamic_tls_growing_{k}"));
        library.set(k as i64 * 10 + 2);
        slot.set(library).ok().expect("set once");
        // Run it (preempted or not) until it waits for the next module or finishes.
        loop {
            inger::resume(&mut linger, SLICE).expect("resume");
            if linger.is_completion() || linger.yielded() {
                break;
            }
        }
    }
    let (firsts, wrong) = linger.completion().expect("completed");
    assert_eq!(
        firsts,
        vec![(7, true); MODULES],
        "each module's first access"
    );
    assert!(wrong.is_empty(), "values changed: {wrong:?}");
    let libraries: Vec<DynTls> = slots.iter().map(|s| *s.get().expect("loaded")).collect();
    for (k, library) in libraries.iter().enumerate() {
        assert_eq!(
            library.state(),
            (k as i64 * 10 + 2, true),
            "caller, module {k}"
        );
    }
    // The block is reused: every module starts from its image again.
    let seen = inger::launch(
        move || libraries.iter().map(DynTls::state).collect::<Vec<_>>(),
        Duration::MAX,
    )
    .expect("launch")
    .completion()
    .expect("completed");
    assert_eq!(seen, vec![(7, true); MODULES]);
}
