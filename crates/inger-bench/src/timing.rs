//! Collecting timed samples.
//!
//! An operation that takes tens of nanoseconds cannot be timed one at a time: reading the
//! clock costs about as much. [`time_batches`] therefore times a batch of back-to-back
//! operations per sample and records the mean of the batch; the median and p99 of a figure
//! are then taken over those per-batch means. Slow operations (a thread spawn, a fork) use a
//! batch of one.

use std::time::{Duration, Instant};

use crate::stats::Samples;

/// How to sample one figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Samples recorded.
    pub samples: usize,
    /// Operations timed back to back per sample.
    pub batch: u32,
    /// Batches run and thrown away first (pools filled, code and data in cache).
    pub warmup: usize,
}

impl Plan {
    /// `samples` samples of `batch` operations, after a warm-up of a tenth of the samples
    /// (at least one).
    pub fn new(samples: usize, batch: u32) -> Self {
        Plan {
            samples,
            batch: batch.max(1),
            warmup: (samples / 10).max(1),
        }
    }
}

/// Nanoseconds in `elapsed`, as a float.
pub fn nanos(elapsed: Duration) -> f64 {
    elapsed.as_nanos() as f64
}

/// Times `plan.batch` calls of `op` per sample and records nanoseconds per call.
///
/// Stops at the first error `op` returns.
pub fn time_batches<E>(plan: Plan, mut op: impl FnMut() -> Result<(), E>) -> Result<Samples, E> {
    let mut run_batch = || -> Result<f64, E> {
        let start = Instant::now();
        for _ in 0..plan.batch {
            op()?;
        }
        Ok(nanos(start.elapsed()) / f64::from(plan.batch))
    };
    for _ in 0..plan.warmup {
        run_batch()?;
    }
    let mut samples = Samples::with_capacity(plan.samples);
    for _ in 0..plan.samples {
        samples.push(run_batch()?);
    }
    Ok(samples)
}

/// Records `warmup + samples` values from `sample`, keeping the last `samples`. For figures
/// whose timed region needs untimed set-up around it: `sample` does both and returns the
/// value to record (nanoseconds per operation, bytes, ...).
pub fn collect<E>(
    samples: usize,
    warmup: usize,
    mut sample: impl FnMut() -> Result<f64, E>,
) -> Result<Samples, E> {
    for _ in 0..warmup {
        sample()?;
    }
    let mut recorded = Samples::with_capacity(samples);
    for _ in 0..samples {
        recorded.push(sample()?);
    }
    Ok(recorded)
}

/// Involuntary context switches of the calling thread so far (0 if unavailable): a sample
/// during which this changed was interrupted by the kernel's scheduler.
pub fn involuntary_switches() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid out-parameter; RUSAGE_THREAD reports on the calling thread.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) } != 0 {
        return 0;
    }
    // SAFETY: getrusage succeeded, so it filled the structure (zeroed before, in any case).
    unsafe { usage.assume_init() }.ru_nivcsw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_batches_runs_warmup_plus_samples_times_batch() {
        let mut calls = 0u32;
        let plan = Plan {
            samples: 5,
            batch: 7,
            warmup: 2,
        };
        let samples = time_batches(plan, || -> Result<(), ()> {
            calls += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(samples.len(), 5);
        assert_eq!(calls, (5 + 2) * 7);
        assert!(samples.values().iter().all(|&ns| ns >= 0.0));
    }

    #[test]
    fn time_batches_stops_at_the_first_error() {
        let mut calls = 0;
        let result = time_batches(Plan::new(10, 10), || {
            calls += 1;
            if calls == 3 { Err("boom") } else { Ok(()) }
        });
        assert_eq!(result, Err("boom"));
        assert_eq!(calls, 3);
    }

    #[test]
    fn collect_keeps_only_the_recorded_values() {
        let mut next = 0.0;
        let samples = collect(3, 2, || -> Result<f64, ()> {
            next += 1.0;
            Ok(next)
        })
        .unwrap();
        assert_eq!(samples.values(), &[3.0, 4.0, 5.0]);
    }

    #[test]
    fn plan_always_warms_up_and_batches_at_least_once() {
        let plan = Plan::new(3, 0);
        assert_eq!(plan.batch, 1);
        assert_eq!(plan.warmup, 1);
        assert_eq!(Plan::new(1000, 100).warmup, 100);
    }
}
