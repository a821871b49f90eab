//! CPU-time budgets (issue 17): a budget measured on the thread's CPU clock is not used up by
//! sleeping, waiting or being descheduled, and each slice of a computing function uses at
//! least its whole budget, also for a nested function whose enclosing chain is paused and
//! resumed on other threads. No elapsed time is asserted: the properties are counts that a
//! CPU clock guarantees (a slice cannot end before its budget of CPU time is used).

mod common;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use inger::{Budget, Clock};

/// The calling thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Computes for `amount` of CPU time; returns a checksum. The time is summed step by step
/// from the thread's CPU clock, leaving out a step in which the function moved to another
/// thread (whose clock reads differently).
fn compute_for(amount: Duration) -> u64 {
    let mut used = Duration::ZERO;
    let mut last = thread_cpu();
    let mut x = 1u64;
    while used < amount {
        x = common::mix(x, 2_000);
        let now = thread_cpu();
        if let Some(step) = now.checked_sub(last)
            && step < Duration::from_millis(1)
        {
            used += step;
        }
        last = now;
    }
    x
}

/// Two threads that keep both cores busy while they live, so that the test's thread is
/// descheduled for whole time slices of the kernel's scheduler.
struct Contention {
    stop: &'static AtomicBool,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Contention {
    fn start() -> Contention {
        let stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
        let threads = (0..2)
            .map(|i| {
                std::thread::spawn(move || {
                    let mut x = i;
                    while !stop.load(Relaxed) {
                        x = common::mix(x, 1_000);
                    }
                    std::hint::black_box(x);
                })
            })
            .collect();
        Contention { stop, threads }
    }
}

impl Drop for Contention {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        for thread in self.threads.drain(..) {
            thread.join().expect("contention thread");
        }
    }
}

#[test]
fn sleeping_does_not_use_up_a_cpu_budget() {
    let before = inger::stats();
    let linger = inger::launch(
        || {
            std::thread::sleep(Duration::from_millis(40));
            7
        },
        Budget::cpu(Duration::from_millis(5)),
    )
    .expect("launch");
    assert_eq!(
        linger.completion(),
        Some(7),
        "a CPU budget of 5 ms ran out during a 40 ms sleep"
    );
    // The same sleep with a wall-clock budget is paused in it.
    let linger = inger::launch(
        || {
            std::thread::sleep(Duration::from_millis(40));
            8
        },
        Duration::from_millis(5),
    )
    .expect("launch");
    assert!(
        linger.is_continuation(),
        "a 5 ms wall budget outlived a 40 ms sleep"
    );
    let (value, _) = common::finish(linger, Duration::from_millis(10), 1_000);
    assert_eq!(value, 8);
    let after = inger::stats();
    assert!(
        after.paused_in_blocking_call > before.paused_in_blocking_call,
        "{after:?}"
    );
}

#[test]
fn every_slice_of_a_cpu_budget_uses_the_whole_budget_even_when_descheduled() {
    const BUDGET: Duration = Duration::from_millis(4);
    const WORK: Duration = Duration::from_millis(120);
    // Warm up first: the first preemption builds the module tables, which takes a slice's
    // CPU time on its own.
    let warm_up = inger::launch(|| compute_for(BUDGET * 3), Budget::cpu(BUDGET)).expect("launch");
    common::finish(warm_up, Budget::cpu(BUDGET), 1_000);
    let _contention = Contention::start();
    let mut linger = inger::launch(|| compute_for(WORK), Budget::cpu(BUDGET)).expect("launch");
    let mut slices = 1u32;
    while linger.is_continuation() {
        inger::resume(&mut linger, Budget::cpu(BUDGET)).expect("resume");
        slices += 1;
    }
    assert!(linger.completion().is_some());
    // Each slice but the last used at least BUDGET of CPU time.
    let most = WORK.as_nanos() / BUDGET.as_nanos() + 1;
    assert!(
        u128::from(slices) <= most,
        "{slices} slices for {WORK:?} of CPU work in {BUDGET:?} slices: some ended early"
    );
    assert!(
        slices >= 2,
        "never paused: the budget did not run out: {:?}",
        inger::stats()
    );
}

#[test]
fn a_nested_cpu_budget_is_kept_while_its_chain_is_paused_and_moved_between_threads() {
    const INNER_BUDGET: Duration = Duration::from_millis(5);
    const INNER_WORK: Duration = Duration::from_millis(40);
    const OUTER_SLICE: Duration = Duration::from_micros(700);
    let outer = inger::launch(
        || {
            let mut inner = inger::launch(|| compute_for(INNER_WORK), Budget::cpu(INNER_BUDGET))
                .expect("inner launch");
            let mut inner_slices = 1u32;
            while inner.is_continuation() {
                inner
                    .resume(Budget::cpu(INNER_BUDGET))
                    .expect("inner resume");
                inner_slices += 1;
            }
            inner_slices
        },
        OUTER_SLICE,
    )
    .expect("outer launch");
    // Resume the outer chain on a fresh thread every time: each has its own CPU clock.
    let mut outer = outer;
    let mut moves = 0u32;
    while outer.is_continuation() {
        outer = std::thread::spawn(move || {
            let mut outer = outer;
            inger::resume(&mut outer, OUTER_SLICE).expect("outer resume");
            outer
        })
        .join()
        .expect("resumer thread");
        moves += 1;
    }
    let inner_slices = outer.completion().expect("completed");
    // The inner budget also pays for the outer chain's preemptions (their handlers run on the
    // thread while it runs): allow it twice the slices the work alone would take. A budget
    // cut at every move of the chain would take one slice per move.
    let most = 2 * (INNER_WORK.as_nanos() / INNER_BUDGET.as_nanos()) + 1;
    assert!(
        u128::from(moves) > most,
        "the chain moved only {moves} times: the test proves nothing"
    );
    assert!(
        u128::from(inner_slices) <= most,
        "the inner function had {inner_slices} slices of a {INNER_BUDGET:?} CPU budget for \
         {INNER_WORK:?} of work: its budget was cut short while its chain moved"
    );
    assert!(
        inner_slices >= 2,
        "the inner function's CPU budget never ran out while its chain moved"
    );
}

#[test]
fn a_function_that_only_waits_sends_no_signals_after_the_first_look() {
    // A CPU budget of 1 ms around 60 ms of waiting in a condition variable: the first
    // wall-clock check finds the function waiting and leaves the budget to the CPU timer,
    // which fires only once the thread has computed for that long.
    let before = inger::stats();
    let linger = inger::launch(
        || {
            let pair =
                std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
            let waker = {
                let pair = std::sync::Arc::clone(&pair);
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(60));
                    *pair.0.lock().unwrap() = true;
                    pair.1.notify_one();
                })
            };
            let mut ready = pair.0.lock().unwrap();
            while !*ready {
                ready = pair.1.wait(ready).unwrap();
            }
            drop(ready);
            waker.join().unwrap();
            "woken"
        },
        Budget::cpu(Duration::from_millis(1)),
    )
    .expect("launch");
    let after = inger::stats();
    assert_eq!(linger.completion(), Some("woken"));
    assert!(
        after.cpu_timer_handoffs > before.cpu_timer_handoffs,
        "{after:?}"
    );
    // One wall-clock look (maybe a couple, if the thread computed right then), not one per
    // millisecond of waiting.
    let signals = after.timer_signals - before.timer_signals;
    assert!(signals <= 5, "{signals} timer signals while waiting 60 ms");
}

#[test]
fn budgets_convert_from_durations_and_name_their_clock() {
    let budget: Budget = Duration::from_millis(2).into();
    assert_eq!(budget.clock(), Clock::Wall);
    let linger = inger::launch(|| 1, Budget::cpu(Duration::ZERO)).expect("launch");
    assert!(
        linger.is_continuation(),
        "a zero budget only prepares the call"
    );
    let (value, _) = common::finish(linger, Duration::from_millis(1), 100);
    assert_eq!(value, 1);
    let linger = inger::launch(|| 2, Budget::UNLIMITED).expect("launch");
    assert_eq!(linger.completion(), Some(2));
}
