//! Lazy-initialisation storm (issue 4): two threads each run a function, under slices of
//! 20–50 µs, that forces a `LazyLock` of its own and one shared by both, each with an
//! initialiser that computes for many slices. The callers touch the same `LazyLock`s between
//! resumes and afterwards.
//!
//! A function paused inside an initialiser would leave the `Once` in its "running" state:
//! every other access, from any thread, would then wait for an initialisation that only a
//! resume can finish. So between resumes, once the function has started an initialiser, its
//! caller forces that `LazyLock` from a helper thread and waits for the answer for at most
//! 30 s: a pause inside the initialiser shows as a clear failure instead of a silent hang.
//! The initialiser also raises an `inside` flag for its duration, checked at every stop.
//! Forcing from a helper thread (not the caller itself) keeps the check from hanging the
//! test; the storm still runs in a child process, under a hang guard, because the *other*
//! thread's function would wait forever for the shared initialiser.

mod common;

use std::cell::Cell;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;

/// Rounds of each initialiser: many slices' worth, even in an optimised build.
const INIT_ROUNDS: u64 = 4_000_000;
/// Rounds of work before and after the initialisation.
const WORK_ROUNDS: u64 = 1_500_000;
/// Index of the shared `LazyLock` in the flag arrays.
const SHARED_INDEX: usize = 2;
const STATS: &str = "@@lazy-stats";

/// Set when initialiser `k` starts (and stays set).
static STARTED: [AtomicBool; 3] = [const { AtomicBool::new(false) }; 3];
/// Set while initialiser `k` runs user code.
static INSIDE: [AtomicBool; 3] = [const { AtomicBool::new(false) }; 3];
/// 1 + the storm thread whose function ran initialiser `k` (0: not started).
static INITIALISER: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];

thread_local! {
    /// 1 + the storm thread the running function belongs to (each function has its own
    /// thread-locals, so this is the function's, set when it starts).
    static ME: Cell<usize> = const { Cell::new(0) };
}

/// What initialiser `which` computes.
fn init_value(which: usize) -> u64 {
    common::spin(0x5eed_0000 + which as u64, INIT_ROUNDS)
}

fn slow_init(which: usize) -> u64 {
    INITIALISER[which].store(ME.with(Cell::get), SeqCst);
    STARTED[which].store(true, SeqCst);
    INSIDE[which].store(true, SeqCst);
    let value = init_value(which);
    INSIDE[which].store(false, SeqCst);
    value
}

fn init_own_0() -> u64 {
    slow_init(0)
}

fn init_own_1() -> u64 {
    slow_init(1)
}

fn init_shared() -> u64 {
    slow_init(SHARED_INDEX)
}

static OWN: [LazyLock<u64>; 2] = [
    LazyLock::new(init_own_0 as fn() -> u64),
    LazyLock::new(init_own_1 as fn() -> u64),
];
static SHARED: LazyLock<u64> = LazyLock::new(init_shared);

/// The function's body: work, both initialisations, more work using their values.
fn body(thread: usize) -> u64 {
    ME.with(|me| me.set(thread + 1));
    let before = common::spin(thread as u64, WORK_ROUNDS);
    let own = *OWN[thread];
    let shared = *SHARED;
    common::spin(before ^ own ^ shared.rotate_left(7), WORK_ROUNDS)
}

/// `body` computed directly, without any `LazyLock`.
fn expected(thread: usize) -> u64 {
    let before = common::spin(thread as u64, WORK_ROUNDS);
    common::spin(
        before ^ init_value(thread) ^ init_value(SHARED_INDEX).rotate_left(7),
        WORK_ROUNDS,
    )
}

fn lazy(which: usize) -> &'static LazyLock<u64> {
    if which == SHARED_INDEX {
        &SHARED
    } else {
        &OWN[which]
    }
}

/// A helper thread that forces the `LazyLock`s it is sent and answers with their values.
/// Detached, so a probe stuck on an initialisation that never finishes cannot hold up the
/// failure it causes.
struct Prober {
    requests: mpsc::Sender<usize>,
    answers: mpsc::Receiver<u64>,
}

impl Prober {
    fn start() -> Prober {
        let (requests, inbox) = mpsc::channel::<usize>();
        let (reply, answers) = mpsc::channel();
        std::thread::Builder::new()
            .name("lazy-prober".into())
            .spawn(move || {
                for which in inbox {
                    if reply.send(*LazyLock::force(lazy(which))).is_err() {
                        return;
                    }
                }
            })
            .expect("spawning the prober");
        Prober { requests, answers }
    }

    /// Forces `LazyLock` `which` on the helper thread; panics if that takes forever.
    fn force(&self, which: usize, thread: usize, stop: u64) -> u64 {
        self.requests.send(which).expect("the prober is alive");
        common::recv_or_deadlock(
            &self.answers,
            &format!(
                "forcing LazyLock {which} while thread {thread}'s function was paused (stop \
                 {stop}) never returned: the function was paused inside its initialiser"
            ),
        )
    }
}

/// Checks between resumes of `thread`'s function (paused now); `values` are the initialisers'
/// values, computed directly beforehand.
fn between(thread: usize, stop: u64, prober: &Prober, values: &[u64; 3]) {
    for which in [thread, SHARED_INDEX] {
        if INITIALISER[which].load(SeqCst) != thread + 1 {
            continue; // not started, or started by the other thread's function
        }
        assert!(
            !INSIDE[which].load(SeqCst),
            "thread {thread}'s function was paused inside initialiser {which} (stop {stop})"
        );
        assert_eq!(prober.force(which, thread, stop), values[which]);
    }
}

fn child() {
    let values = [0, 1, SHARED_INDEX].map(init_value);
    let before = inger::stats();
    let results = common::on_two_threads(|thread| {
        let prober = Prober::start();
        let (value, stops) = common::storm(
            || body(thread),
            |stop| between(thread, stop, &prober, &values),
        );
        // The caller uses the same LazyLocks afterwards, directly.
        assert_eq!(*OWN[thread], values[thread]);
        assert_eq!(*SHARED, values[SHARED_INDEX]);
        (value, stops)
    });
    for (thread, (value, stops)) in results.into_iter().enumerate() {
        assert_eq!(value, expected(thread), "thread {thread}'s result");
        println!("@@lazy-stops thread={thread} stops={stops}");
    }
    for (which, started) in STARTED.iter().enumerate() {
        assert!(started.load(SeqCst), "initialiser {which} ran");
    }
    common::print_stats(STATS, before);
}

#[test]
fn lazy_initialisation_storm_on_two_threads() {
    if common::child_mode().as_deref() == Some("lazy") {
        child();
        return;
    }
    let output = common::run_child("lazy_initialisation_storm_on_two_threads", "lazy", &[]);
    output.assert_success();
    for thread in 0..2 {
        let stops = output.counter(&format!("@@lazy-stops thread={thread}"), "stops");
        assert!(stops > 0, "thread {thread}'s function was never paused");
    }
    let deferred_std = output.counter(STATS, "deferred_std");
    assert!(
        deferred_std > 0,
        "no deferral in std sections, though each initialiser spanned many slices: {}",
        output.describe()
    );
    println!(
        "lazy storm: {} preemptions, {deferred_std} deferrals in std sections",
        output.counter(STATS, "preemptions")
    );
}
