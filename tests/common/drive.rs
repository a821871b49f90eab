//! Driving a `Linger` to completion: with one budget and a runaway limit ([`finish`]), with a
//! callback between resumes ([`drive`]), or as a safe-point storm of 20–50 µs slices
//! ([`storm`]); and [`Stops`], which keeps a function running until its caller has got
//! control back a given number of times, whatever the speed of the build.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A budget that a short function cannot plausibly exhaust, even on a loaded machine that
/// deschedules the test thread for a while: for tests that expect a completion.
pub const GENEROUS: Duration = Duration::from_secs(10);

/// The most resumes a storm may take before it is called a runaway.
const STORM_MAX_RESUMES: u64 = 10_000_000;

/// The one resume loop: until `linger` completes, calls `between(stop)` (stop = 0, 1, ...)
/// and resumes it with `budget(stop + 1)`; panics before the resume after `max_resumes`.
/// Returns the value and how many resumes it took.
fn resume_until_done<T>(
    mut linger: inger::Linger<'_, T>,
    max_resumes: u64,
    budget: impl Fn(u64) -> inger::Budget,
    mut between: impl FnMut(u64),
) -> (T, u64) {
    let mut stops = 0;
    while linger.is_continuation() {
        assert!(
            stops < max_resumes,
            "still not finished after {stops} resumes (a runaway?)"
        );
        between(stops);
        stops += 1;
        inger::resume(&mut linger, budget(stops)).expect("resume");
    }
    (linger.completion().expect("completed"), stops)
}

/// Resumes `linger` with `budget` until it completes; returns the value and how many resumes
/// it took. Panics after `max_resumes` (a runaway function is a test failure, not a hang).
pub fn finish<T>(
    linger: inger::Linger<'_, T>,
    budget: impl Into<inger::Budget>,
    max_resumes: u64,
) -> (T, u64) {
    let budget = budget.into();
    resume_until_done(linger, max_resumes, |_| budget, |_| {})
}

/// Resumes `linger` with `budget` until it completes, calling `between(stop_number)` each
/// time it comes back paused, before resuming it. Returns the value and how many stops there
/// were. Panics on a resume error.
pub fn drive<T>(
    linger: inger::Linger<'_, T>,
    budget: impl Into<inger::Budget>,
    between: impl FnMut(u64),
) -> (T, u64) {
    let budget = budget.into();
    resume_until_done(linger, u64::MAX, |_| budget, between)
}

/// The slice of the `stop`-th resume of a storm: 20 to 50 µs, varying from one resume to the
/// next so that deadlines land at ever different places.
pub fn storm_slice(stop: u64) -> Duration {
    Duration::from_micros(20 + (stop * 7919) % 31)
}

/// Launches `f` with a storm slice (in a scope, so `f` may borrow) and resumes it with storm
/// slices until it completes, calling `between(stop)` each time it comes back paused (before
/// resuming it). Returns the value and the number of stops. Panics on an inger error or a
/// runaway.
pub fn storm<'a, T>(f: impl FnOnce() -> T + Send + 'a, between: impl FnMut(u64)) -> (T, u64) {
    inger::scope(|s| {
        let linger = s.launch(f, storm_slice(0)).expect("launch");
        resume_until_done(
            linger,
            STORM_MAX_RESUMES,
            |stop| storm_slice(stop).into(),
            between,
        )
    })
}

/// The process-wide preemption counter, for deltas.
pub fn preemptions() -> u64 {
    inger::stats().preemptions
}

/// Counts how often the caller got control back, so a function can keep running until it has
/// been paused a given number of times, whatever the speed of the build.
pub struct Stops {
    count: AtomicU64,
    target: u64,
}

impl Stops {
    /// A counter that is done after `target` stops.
    pub const fn new(target: u64) -> Stops {
        Stops {
            count: AtomicU64::new(0),
            target,
        }
    }

    /// A counter for a `'static` function (one launched with `inger::launch`): leaked, as
    /// test code may be.
    pub fn leaked(target: u64) -> &'static Stops {
        Box::leak(Box::new(Stops::new(target)))
    }

    /// How many times the caller got control back so far.
    pub fn seen(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Whether the function should stop now.
    pub fn done(&self) -> bool {
        self.seen() >= self.target
    }

    /// Records that the caller got control back.
    pub fn record(&self) {
        self.count.fetch_add(1, Relaxed);
    }
}
