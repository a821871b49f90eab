//! Migration: a paused continuation moved to another thread and resumed there. The function
//! keeps its own identity (its thread-locals, errno, Rust `ThreadId`, `pthread_self()`),
//! while everything that belongs to the kernel thread now running it follows that thread:
//! `gettid()`, the signal mask and the alternate signal stack (which `sigreturn` would
//! otherwise bring over from the old thread), and the thread id glibc keeps in the thread
//! descriptor (used e.g. by `pthread_getaffinity_np(pthread_self())`).

mod common;

use std::cell::Cell;
use std::time::Duration;

use common::{
    Stops, Worker, allowed_cpus, errno, kernel_tid, pin_to, preemptions, set_errno, spin,
};

const SLICE: Duration = Duration::from_micros(100);

thread_local! {
    static COUNTER: Cell<u64> = const { Cell::new(7) };
}

/// What a function sees of its own identity and of the thread running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    rust_thread: std::thread::ThreadId,
    pthread: libc::pthread_t,
    kernel_tid: i32,
}

fn identity() -> Identity {
    Identity {
        rust_thread: std::thread::current().id(),
        // SAFETY: pthread_self has no preconditions.
        pthread: unsafe { libc::pthread_self() },
        kernel_tid: kernel_tid(),
    }
}

#[test]
fn private_tls_makes_migration_possible_here() {
    assert!(
        inger::capabilities().private_tls,
        "glibc's TLS internals were not found: {:?}",
        inger::capabilities()
    );
}

#[test]
fn a_function_keeps_its_identity_and_thread_locals_across_migrations() {
    const STEPS: usize = 12;
    let workers = [
        Worker::start("tls-mig-a", || {}),
        Worker::start("tls-mig-b", || {}),
        Worker::start("tls-mig-c", || {}),
    ];
    let mut linger = workers[0].run(|| {
        COUNTER.with(|c| c.set(1000)); // the worker's own value
        inger::launch(
            || {
                let mut seen = Vec::new();
                COUNTER.with(|c| c.set(1));
                set_errno(4242);
                for step in 1..STEPS as u64 {
                    seen.push((identity(), COUNTER.with(Cell::get), errno()));
                    inger::pause();
                    COUNTER.with(|c| c.set(c.get() + 1));
                    assert_eq!(COUNTER.with(Cell::get), step + 1);
                }
                seen.push((identity(), COUNTER.with(Cell::get), errno()));
                seen
            },
            Duration::MAX,
        )
        .expect("launch")
    });
    for step in 1..STEPS {
        linger = workers[step % 3].run(move || {
            inger::resume(&mut linger, Duration::MAX).expect("resume");
            linger
        });
    }
    let seen = linger.completion().expect("completed");
    assert_eq!(seen.len(), STEPS);
    let first = seen[0].0;
    for (step, (id, counter, errno)) in seen.iter().enumerate() {
        assert_eq!(id.rust_thread, first.rust_thread, "step {step}: ThreadId");
        assert_eq!(id.pthread, first.pthread, "step {step}: pthread_self");
        assert_eq!(
            id.kernel_tid,
            workers[step % 3].tid,
            "step {step}: gettid is the resuming thread's"
        );
        assert_eq!(*counter, step as u64 + 1, "step {step}: its thread-local");
        assert_eq!(*errno, 4242, "step {step}: its errno");
    }
    for (index, worker) in workers.iter().enumerate() {
        let (counter, rust_thread, pthread) = worker.run(|| {
            (
                COUNTER.with(Cell::get),
                std::thread::current().id(),
                // SAFETY: pthread_self has no preconditions.
                unsafe { libc::pthread_self() },
            )
        });
        let expected = if index == 0 { 1000 } else { 7 };
        assert_eq!(counter, expected, "worker {index}'s own thread-local");
        assert_ne!(rust_thread, first.rust_thread, "worker {index}'s ThreadId");
        assert_ne!(pthread, first.pthread, "worker {index}'s pthread_self");
    }
}

#[test]
fn a_preempted_function_migrates_between_threads_hundreds_of_times() {
    const TARGET: u64 = 400;
    static STOPS: Stops = Stops::new(TARGET);
    let workers = [
        Worker::start("tls-mig-a", || {}),
        Worker::start("tls-mig-b", || {}),
    ];
    let before = preemptions();
    let mut linger = inger::launch(
        || {
            let mut wrong = Vec::new();
            let mut tids = Vec::new();
            let mut round = 0u64;
            while !STOPS.done() {
                COUNTER.with(|c| c.set(round));
                set_errno(round as i32);
                spin(round, 5_000);
                if (COUNTER.with(Cell::get), errno()) != (round, round as i32) {
                    wrong.push((round, COUNTER.with(Cell::get), errno()));
                }
                let tid = kernel_tid();
                if tids.last() != Some(&tid) {
                    tids.push(tid);
                }
                round += 1;
            }
            (wrong, tids)
        },
        SLICE,
    )
    .expect("launch");
    let mut hops = 0;
    while linger.is_continuation() {
        STOPS.record();
        // This thread, worker a, worker b, this thread, ...
        linger = match hops % 3 {
            0 => {
                inger::resume(&mut linger, SLICE).expect("resume");
                linger
            }
            n => workers[n - 1].run(move || {
                inger::resume(&mut linger, SLICE).expect("resume");
                linger
            }),
        };
        hops += 1;
    }
    let (wrong, tids) = linger.completion().expect("completed");
    assert!(
        wrong.is_empty(),
        "values changed under the function: {wrong:?}"
    );
    let here = kernel_tid();
    let distinct: std::collections::BTreeSet<i32> = tids.iter().copied().collect();
    assert!(
        distinct.contains(&here) && distinct.contains(&workers[0].tid),
        "ran on this thread and on the workers: {distinct:?}"
    );
    assert!(preemptions() - before >= TARGET);
    assert_eq!(COUNTER.with(Cell::get), 7, "the caller's thread-local");
}

/// Whether SIGUSR1 is blocked for the calling kernel thread.
fn sigusr1_blocked() -> bool {
    // SAFETY: an all-zero sigset_t is a valid value to be overwritten.
    let mut set: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: a null new set only queries the mask into `set`.
    let result = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, core::ptr::null(), &mut set) };
    assert_eq!(result, 0);
    // SAFETY: a valid set and signal number.
    unsafe { libc::sigismember(&set, libc::SIGUSR1) == 1 }
}

fn block_sigusr1() {
    // SAFETY: an all-zero sigset_t is valid for sigemptyset to initialise.
    let mut set: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: a valid set and signal number; a null old set.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, core::ptr::null_mut()),
            0
        );
    }
}

/// The calling thread's alternate signal stack (its base, 0 if none).
fn altstack() -> usize {
    // SAFETY: an all-zero stack_t is a valid value to be overwritten.
    let mut current: libc::stack_t = unsafe { core::mem::zeroed() };
    // SAFETY: a null new stack only queries the current one.
    let result = unsafe { libc::sigaltstack(core::ptr::null(), &mut current) };
    assert_eq!(result, 0);
    if current.ss_flags & libc::SS_DISABLE != 0 {
        0
    } else {
        current.ss_sp as usize
    }
}

#[test]
fn the_signal_mask_and_alternate_stack_follow_the_resuming_thread() {
    const TARGET: u64 = 200;
    static STOPS: Stops = Stops::new(TARGET);
    // Worker a leaves SIGUSR1 unblocked, worker b blocks it; both have their own alternate
    // signal stacks (installed by the Rust runtime and by inger).
    let workers = [
        Worker::start("tls-sig-a", || {}),
        Worker::start("tls-sig-b", block_sigusr1),
    ];
    // Start inger on both, then note each thread's own state.
    let states: Vec<(bool, usize)> = workers
        .iter()
        .map(|w| {
            w.run(|| {
                let done = inger::launch(|| (), Duration::MAX).expect("launch");
                assert!(done.is_completion());
                (sigusr1_blocked(), altstack())
            })
        })
        .collect();
    assert_eq!((states[0].0, states[1].0), (false, true));
    assert_ne!(states[0].1, states[1].1, "distinct alternate stacks");
    let before = preemptions();
    // Phase `s` (the stop count) runs on worker s % 2; the function samples its view of the
    // thread's mask and alternate stack, and keeps running until a preemption pauses it (the
    // caller only gets control back through one), so every migration resumes a signal frame.
    let mut linger = workers[0].run(move || {
        inger::launch(
            move || {
                let mut samples = Vec::new();
                while !STOPS.done() {
                    let phase = STOPS.seen();
                    let sample = (sigusr1_blocked(), altstack());
                    // A pause between the two reads (the phase moved on) mixes two threads'
                    // states in one sample: it is not kept.
                    if STOPS.seen() == phase {
                        samples.push((phase, sample.0, sample.1));
                    }
                    while STOPS.seen() == phase {
                        spin(phase, 2_000);
                    }
                }
                samples
            },
            SLICE,
        )
        .expect("launch")
    });
    while linger.is_continuation() {
        STOPS.record();
        let worker = (STOPS.seen() % 2) as usize;
        let expected = states[worker];
        linger = workers[worker].run(move || {
            assert_eq!((sigusr1_blocked(), altstack()), expected, "before resuming");
            inger::resume(&mut linger, SLICE).expect("resume");
            assert_eq!(
                (sigusr1_blocked(), altstack()),
                expected,
                "the resuming thread's own state after the function paused again"
            );
            linger
        });
    }
    let samples = linger.completion().expect("completed");
    // (A phase may go unsampled if a preemption lands before or during its sample.)
    assert!(
        samples.iter().any(|s| s.0 % 2 == 1) && samples.iter().any(|s| s.0 > 0 && s.0 % 2 == 0),
        "samples taken after migrations both ways: {samples:?}"
    );
    for (phase, blocked, stack) in samples {
        let expected = states[(phase % 2) as usize];
        assert_eq!(
            (blocked, stack),
            expected,
            "phase {phase}: the function sees the mask and alternate stack of its thread"
        );
    }
    assert!(preemptions() - before >= TARGET);
    // The preemption signal is not left blocked on either worker.
    for worker in &workers {
        worker.run(|| {
            let endless = inger::launch(
                || loop {
                    std::hint::black_box(spin(1, 1000));
                },
                SLICE,
            )
            .expect("launch");
            assert!(endless.is_continuation(), "still preempted");
        });
    }
}

/// The CPU set glibc reports for `pthread_self()` (it asks the kernel for the thread id
/// stored in the thread descriptor).
fn affinity_of_pthread_self() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: a valid out-pointer of the size passed; pthread_self is a live thread.
    let result = unsafe {
        libc::pthread_getaffinity_np(libc::pthread_self(), size_of::<libc::cpu_set_t>(), &mut set)
    };
    assert_eq!(result, 0, "pthread_getaffinity_np");
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

#[test]
fn the_thread_descriptor_names_the_thread_now_running_the_function() {
    let cpus = allowed_cpus();
    let (a, b) = match cpus[..] {
        [a, b, ..] => (a, b),
        _ => {
            eprintln!("only one usable CPU: affinities cannot tell the threads apart");
            (cpus[0], cpus[0])
        }
    };
    let workers = [
        Worker::start("tls-aff-a", move || pin_to(a)),
        Worker::start("tls-aff-b", move || pin_to(b)),
    ];
    let mut linger = workers[0].run(|| {
        inger::launch(
            || {
                let mut seen = vec![affinity_of_pthread_self()];
                for _ in 0..5 {
                    inger::pause();
                    seen.push(affinity_of_pthread_self());
                }
                seen
            },
            Duration::MAX,
        )
        .expect("launch")
    });
    for step in 1..6 {
        linger = workers[step % 2].run(move || {
            inger::resume(&mut linger, Duration::MAX).expect("resume");
            linger
        });
    }
    let seen = linger.completion().expect("completed");
    let expected: Vec<Vec<usize>> = (0..6)
        .map(|step| vec![if step % 2 == 0 { a } else { b }])
        .collect();
    assert_eq!(seen, expected);
}
