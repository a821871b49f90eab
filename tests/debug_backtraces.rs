//! Backtraces taken inside a preemptible function (`std::backtrace::Backtrace`, which uses
//! libgcc's unwinder like panics do, and the panic hook's `RUST_BACKTRACE=1` trace) show the
//! function's frames, then the entry trampoline, then the frames of whoever launched or
//! resumed it *this* time: through nested functions, after a timer preemption, and after a
//! migration to another thread. Without the trampoline's unwind information they ended at
//! the trampoline (libgcc) or went on into garbage (gdb).

mod common;

use std::backtrace::Backtrace;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use common::{GENEROUS, Worker, child_mode, print_child_ok, run_child};

/// The symbol of the outermost frame of every function's stack.
const TRAMPOLINE: &str = "inger_entry_trampoline";

/// The function names of a backtrace, outermost last.
fn frame_names(backtrace: &Backtrace) -> Vec<String> {
    // The Display form lists one "  N: name" line per frame (inlined frames included),
    // followed by "at file:line" lines.
    format!("{backtrace}")
        .lines()
        .filter_map(|line| {
            let (number, name) = line.trim_start().split_once(": ")?;
            number.parse::<usize>().ok()?;
            Some(name.to_owned())
        })
        .collect()
}

/// Asserts that `names` contains frames matching each of `expected`, in that order (each a
/// substring of one frame's name), and no unresolved frame in between.
fn assert_in_order(names: &[String], expected: &[&str]) {
    let mut from = 0;
    for wanted in expected {
        match names[from..].iter().position(|name| name.contains(wanted)) {
            Some(at) => from += at + 1,
            None => panic!(
                "no frame {wanted:?} after frame {from} (expected {expected:?} in this order):\n{}",
                names.join("\n")
            ),
        }
    }
    let unknown: Vec<_> = names[..from]
        .iter()
        .filter(|name| name.contains("<unknown>"))
        .collect();
    assert!(
        unknown.is_empty(),
        "unresolved frames before the last expected one:\n{}",
        names.join("\n")
    );
}

#[inline(never)]
fn capture_inside() -> Backtrace {
    assert!(inger::in_preemptible());
    // The trampoline is marked as a signal frame for gdb; the runtime's own detection of
    // signal handlers must not take it for one.
    assert!(!inger::in_signal_handler());
    black_box(Backtrace::force_capture())
}

#[inline(never)]
fn launcher_of_one() -> Backtrace {
    let linger = inger::launch(capture_inside, GENEROUS).expect("launch");
    black_box(linger.completion().expect("completed"))
}

#[test]
fn a_backtrace_goes_from_the_function_into_its_launcher() {
    let names = frame_names(&launcher_of_one());
    assert_in_order(
        &names,
        &[
            "debug_backtraces::capture_inside",
            "inger::runtime::call::lpf_entry",
            TRAMPOLINE,
            "inger::runtime::call::resume",
            "inger::launch",
            "debug_backtraces::launcher_of_one",
            "debug_backtraces::a_backtrace_goes_from_the_function_into_its_launcher",
        ],
    );
}

#[inline(never)]
fn middle_of_three() -> Backtrace {
    launcher_of_one()
}

#[inline(never)]
fn outer_launcher() -> Backtrace {
    let linger = inger::launch(middle_of_three, GENEROUS).expect("launch");
    black_box(linger.completion().expect("completed"))
}

#[test]
fn a_backtrace_crosses_every_function_of_a_nested_chain() {
    let names = frame_names(&outer_launcher());
    assert_in_order(
        &names,
        &[
            "debug_backtraces::capture_inside",
            TRAMPOLINE,
            "debug_backtraces::launcher_of_one",
            "debug_backtraces::middle_of_three",
            TRAMPOLINE,
            "debug_backtraces::outer_launcher",
            "debug_backtraces::a_backtrace_crosses_every_function_of_a_nested_chain",
        ],
    );
    assert_eq!(
        names
            .iter()
            .filter(|name| name.contains(TRAMPOLINE))
            .count(),
        2
    );
}

/// Spins until the timer has paused it at least once, then captures a backtrace.
#[inline(never)]
fn preempted_then_capture(preempted: &'static AtomicBool) -> Backtrace {
    while !preempted.load(Relaxed) {
        black_box(());
    }
    capture_inside()
}

#[inline(never)]
fn launcher_that_gives_up(preempted: &'static AtomicBool) -> inger::Linger<'static, Backtrace> {
    let linger = inger::launch(
        move || preempted_then_capture(preempted),
        Duration::from_millis(1),
    )
    .expect("launch");
    assert!(linger.is_continuation(), "the spin loop outlives 1 ms");
    linger
}

#[inline(never)]
fn resumer_on_another_thread(mut linger: inger::Linger<'static, Backtrace>) -> Backtrace {
    inger::resume(&mut linger, GENEROUS).expect("resume");
    black_box(linger.completion().expect("completed"))
}

#[test]
fn after_a_preemption_and_a_migration_the_backtrace_shows_the_new_resumer() {
    static PREEMPTED: AtomicBool = AtomicBool::new(false);
    let linger = launcher_that_gives_up(&PREEMPTED);
    PREEMPTED.store(true, Relaxed);
    let worker = Worker::start("resumer", || {});
    let backtrace = worker.run(move || resumer_on_another_thread(linger));
    let names = frame_names(&backtrace);
    assert_in_order(
        &names,
        &[
            "debug_backtraces::capture_inside",
            "debug_backtraces::preempted_then_capture",
            TRAMPOLINE,
            "inger::runtime::call::resume",
            "debug_backtraces::resumer_on_another_thread",
        ],
    );
    assert!(
        !names
            .iter()
            .any(|name| name == "debug_backtraces::launcher_that_gives_up"),
        "the launcher's frames are gone; the resumer's must be shown instead:\n{}",
        names.join("\n")
    );
}

#[inline(never)]
fn panicking_inside() {
    panic!("a panic inside a preemptible function");
}

#[inline(never)]
fn launcher_of_a_panic() {
    let _ = inger::launch(panicking_inside, GENEROUS);
}

#[test]
fn a_panic_backtrace_shows_the_launcher() {
    if let Some(mode) = child_mode() {
        launcher_of_a_panic();
        print_child_ok(&mode);
        return;
    }
    let child = run_child(
        "a_panic_backtrace_shows_the_launcher",
        "panic",
        &[("RUST_BACKTRACE", "1")],
    );
    // The panic propagates out of `launch` and fails the child's test; the hook printed the
    // backtrace first (the short form, which ends at the test harness's start marker).
    assert!(!child.status.success(), "{}", child.describe());
    assert!(
        child
            .stderr
            .contains("a panic inside a preemptible function"),
        "{}",
        child.describe()
    );
    let trace: Vec<String> = child
        .stderr
        .lines()
        .skip_while(|line| !line.starts_with("stack backtrace:"))
        .filter_map(|line| {
            let (number, name) = line.trim_start().split_once(": ")?;
            number.parse::<usize>().ok()?;
            Some(name.to_owned())
        })
        .collect();
    assert_in_order(
        &trace,
        &[
            "debug_backtraces::panicking_inside",
            TRAMPOLINE,
            "debug_backtraces::launcher_of_a_panic",
            "debug_backtraces::a_panic_backtrace_shows_the_launcher",
        ],
    );
}
