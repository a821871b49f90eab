//! A tour of inger: completion, timeout and resume, cooperative pause, cancellation, nesting,
//! migration to another thread, and what it all costs next to a plain call and a thread.
//!
//! Run it with `cargo run --release --example tour`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use inger::Linger;

fn main() -> Result<(), inger::Error> {
    println!("inger tour: {:?}\n", inger::capabilities());

    // 1. A call that finishes within its budget returns its value at once.
    let linger = inger::launch(|| fibonacci(20), Duration::from_millis(10))?;
    println!(
        "1. completed within budget: fib(20) = {:?}",
        linger.completion()
    );

    // 2. A call that outlives its budget is paused; resume it until it finishes.
    let started = Instant::now();
    let mut linger = inger::launch(|| count_primes(3_000_000), Duration::from_millis(1))?;
    let first_pause = started.elapsed();
    let mut resumes = 0;
    while linger.is_continuation() {
        inger::resume(&mut linger, Duration::from_millis(1))?;
        resumes += 1;
    }
    println!(
        "2. timed out after {first_pause:.2?} (budget 1 ms), resumed {resumes} times: {} primes below 3,000,000",
        linger.completion().unwrap_or_default()
    );

    // 3. A function can give control back by itself with pause().
    let mut linger = inger::launch(
        || {
            let halfway = fibonacci(10);
            inger::pause();
            halfway + fibonacci(11)
        },
        Duration::MAX,
    )?;
    println!("3. paused itself: yielded = {}", linger.yielded());
    linger.resume(Duration::MAX)?;
    println!("   resumed to completion: {:?}", linger.completion());

    // 4. Dropping a paused call cancels it: it never runs again.
    let linger = inger::launch(
        || loop {
            black_box(())
        },
        Duration::from_millis(2),
    )?;
    println!(
        "4. an endless loop was paused at its deadline: {}",
        linger.is_continuation()
    );
    drop(linger);
    println!("   ... and cancelled by dropping it");

    // 5. Nesting: an inner budget never outlives the outer one.
    let mut outer = inger::launch(
        || {
            let inner = inger::launch(
                || loop {
                    black_box(())
                },
                Duration::from_secs(3600),
            )
            .expect("inner launch");
            inner.is_continuation()
        },
        Duration::from_millis(5),
    )?;
    println!(
        "5. outer budget 5 ms, inner 1 hour: outer paused = {}",
        outer.is_continuation()
    );
    // The inner endless loop keeps the outer paused; cancel the whole chain by dropping it.
    if let Linger::Continuation(continuation) =
        std::mem::replace(&mut outer, Linger::Completion(false))
    {
        continuation.cancel();
    }

    // 6. A paused call can move to another thread and finish there.
    let linger = inger::launch(|| count_primes(1_000_000), Duration::from_micros(500))?;
    let result = std::thread::spawn(move || -> Result<usize, inger::Error> {
        let mut linger = linger;
        while linger.is_continuation() {
            inger::resume(&mut linger, Duration::from_millis(1))?;
        }
        Ok(linger.completion().unwrap_or_default())
    })
    .join()
    .expect("worker thread");
    match result {
        Ok(primes) => println!("6. resumed on another thread: {primes} primes below 1,000,000"),
        Err(error) => println!("6. migration unavailable here: {error}"),
    }

    costs()?;
    let stats = inger::stats();
    println!(
        "\ncounters: {} preemptions, {} yields, {} deferrals (nopreempt), {} deferrals (library), longest deferral {:.1} us",
        stats.preemptions,
        stats.yields,
        stats.deferred_nopreempt,
        stats.deferred_library,
        stats.longest_deferral_ns as f64 / 1000.0
    );
    Ok(())
}

/// A small table of costs, each the median of many batches, measured here and now.
fn costs() -> Result<(), inger::Error> {
    let call: fn() -> u64 = || black_box(1);
    let direct = median_ns(200, 1000, || {
        black_box(black_box(call)());
    });
    let launch = median_ns(200, 1000, || {
        let linger = inger::launch(|| black_box(1u64), Duration::MAX).expect("launch");
        black_box(linger.completion());
    });
    let mut pauser = inger::launch(
        || loop {
            inger::pause()
        },
        Duration::MAX,
    )?;
    let pause_resume = median_ns(200, 1000, || {
        pauser.resume(Duration::MAX).expect("resume");
    });
    drop(pauser);
    let spawn = median_ns(50, 10, || {
        std::thread::spawn(|| black_box(1u64))
            .join()
            .expect("thread");
    });
    println!("\ncost (median)                      ns      vs plain call");
    for (name, ns) in [
        ("plain function call", direct),
        ("launch, completes at once", launch),
        ("pause + resume round trip", pause_resume),
        ("thread spawn + join", spawn),
    ] {
        println!("{name:<32} {ns:>8.1}  {:>10.0}x", ns / direct.max(0.1));
    }
    println!(
        "launch is {:.0}x cheaper than a thread spawn + join",
        spawn / launch
    );
    Ok(())
}

/// Median over `samples` of the mean time of `batch` calls, in nanoseconds.
fn median_ns(samples: usize, batch: u32, mut op: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                op();
            }
            start.elapsed().as_nanos() as f64 / f64::from(batch)
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn fibonacci(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fibonacci(n - 1) + fibonacci(n - 2)
    }
}

fn count_primes(below: usize) -> usize {
    (2..below)
        .filter(|&n| (2..).take_while(|d| d * d <= n).all(|d| n % d != 0))
        .count()
}
