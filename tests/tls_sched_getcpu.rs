//! `sched_getcpu()` inside preemptible functions. glibc answers it from the rseq area of the
//! thread control block, which the kernel keeps up to date only for the real thread's block:
//! a function's block must make glibc ask the kernel instead, or the function would see a
//! stale CPU. Checked under preemption, after the caller moves its thread to another CPU
//! between resumes, and after the function migrates to a thread on another CPU. (The pinning
//! parts need two usable CPUs; with one, only the range checks remain, and a note says so.)

mod common;

use std::time::Duration;

use common::{
    Stops, Worker, allowed_cpus, configured_cpus, current_cpu, pin_to, preemptions, spin,
};

const SLICE: Duration = Duration::from_micros(100);

/// Two CPUs to alternate between, if the process may use two.
fn two_cpus(test: &str) -> Option<[usize; 2]> {
    match allowed_cpus()[..] {
        [a, b, ..] => Some([a, b]),
        _ => {
            eprintln!("{test}: only one usable CPU; the CPU-change checks are skipped");
            None
        }
    }
}

#[test]
fn a_valid_cpu_under_preemption() {
    const TARGET: u64 = 300;
    let cpus = configured_cpus();
    let stops = Stops::leaked(TARGET);
    let before = preemptions();
    let mut linger = inger::launch(
        || {
            let mut seen = Vec::new();
            while !stops.done() {
                seen.push(current_cpu());
                spin(1, 5_000);
            }
            seen
        },
        SLICE,
    )
    .expect("launch");
    while linger.is_continuation() {
        stops.record();
        inger::resume(&mut linger, SLICE).expect("resume");
    }
    let seen = linger.completion().expect("completed");
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|&cpu| cpu < cpus),
        "CPUs out of range (< {cpus}): {seen:?}"
    );
    assert!(preemptions() - before >= TARGET);
}

#[test]
fn the_cpu_follows_the_callers_thread_between_resumes() {
    let Some(cpus) = two_cpus("the_cpu_follows_the_callers_thread_between_resumes") else {
        return;
    };
    const TARGET: u64 = 100;
    // On a thread of its own, since it changes the thread's affinity.
    std::thread::spawn(move || {
        static STOPS: Stops = Stops::new(TARGET);
        // During phase `s` (the caller's stop count) the thread is pinned to cpus[s % 2].
        pin_to(cpus[0]);
        let before = preemptions();
        let mut linger = inger::launch(
            move || {
                let mut wrong = Vec::new();
                let mut samples = 0u64;
                while !STOPS.done() {
                    let phase = STOPS.seen();
                    let cpu = current_cpu();
                    if STOPS.seen() == phase {
                        samples += 1;
                        if cpu != cpus[(phase % 2) as usize] {
                            wrong.push((phase, cpu));
                        }
                    }
                    spin(phase, 2_000);
                }
                (samples, wrong)
            },
            SLICE,
        )
        .expect("launch");
        while linger.is_continuation() {
            pin_to(cpus[((STOPS.seen() + 1) % 2) as usize]);
            STOPS.record();
            inger::resume(&mut linger, SLICE).expect("resume");
        }
        let (samples, wrong) = linger.completion().expect("completed");
        assert!(samples > 0);
        assert!(wrong.is_empty(), "stale CPUs (phase, cpu): {wrong:?}");
        assert!(preemptions() - before >= TARGET);
    })
    .join()
    .expect("thread");
}

#[test]
fn the_cpu_after_migrating_to_a_thread_on_another_cpu() {
    let cpus = match two_cpus("the_cpu_after_migrating_to_a_thread_on_another_cpu") {
        Some(cpus) => cpus,
        None => [allowed_cpus()[0]; 2],
    };
    let workers = [
        Worker::start("tls-cpu-a", move || pin_to(cpus[0])),
        Worker::start("tls-cpu-b", move || pin_to(cpus[1])),
    ];
    // Cooperative pauses: each step reads the CPU once, on the thread that resumed it.
    let mut linger = workers[0].run(|| {
        inger::launch(
            || {
                let mut seen = vec![current_cpu()];
                for _ in 0..9 {
                    inger::pause();
                    seen.push(current_cpu());
                }
                seen
            },
            Duration::MAX,
        )
        .expect("launch")
    });
    for step in 1..10 {
        linger = workers[step % 2].run(move || {
            inger::resume(&mut linger, Duration::MAX).expect("resume");
            linger
        });
    }
    let seen = linger.completion().expect("completed");
    let expected: Vec<usize> = (0..10).map(|step| cpus[step % 2]).collect();
    assert_eq!(seen, expected, "CPU at each step (worker a, b, a, ...)");

    // Preempted, then migrated: samples taken while on each worker.
    const TARGET: u64 = 100;
    static STOPS: Stops = Stops::new(TARGET);
    let before = preemptions();
    let mut linger = workers[0].run(move || {
        inger::launch(
            move || {
                let mut wrong = Vec::new();
                while !STOPS.done() {
                    let phase = STOPS.seen();
                    let cpu = current_cpu();
                    if STOPS.seen() == phase && cpu != cpus[(phase % 2) as usize] {
                        wrong.push((phase, cpu));
                    }
                    spin(phase, 2_000);
                }
                wrong
            },
            SLICE,
        )
        .expect("launch")
    });
    while linger.is_continuation() {
        STOPS.record();
        linger = workers[(STOPS.seen() % 2) as usize].run(move || {
            inger::resume(&mut linger, SLICE).expect("resume");
            linger
        });
    }
    let wrong = linger.completion().expect("completed");
    assert!(wrong.is_empty(), "stale CPUs (phase, cpu): {wrong:?}");
    assert!(preemptions() - before >= TARGET);
}
