//! Timer preemption: how long after its deadline an endless loop is back at its caller.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::{BenchResult, Scale, broken};
use crate::report::{Figure, Unit};
use crate::timing::{collect, nanos};

/// The budget of every `preempt_overshoot` sample.
const BUDGET: Duration = Duration::from_millis(1);

/// `preempt_overshoot`: launch a loop that spins until told to stop with a 1 ms budget, and
/// measure from the deadline (the instant before `launch` plus 1 ms) to control back at the
/// caller. The runtime's own deadline is a few tens of nanoseconds later than the one used
/// here, so the figure errs on the high side. Each sample then stops the loop and resumes it
/// to completion, so its stack is reused rather than retired.
pub(super) fn preempt_overshoot(scale: Scale) -> BenchResult<Vec<Figure>> {
    let stop = AtomicBool::new(false);
    let samples = collect(scale.pick(1_000, 10_000), 20, || -> BenchResult<f64> {
        stop.store(false, Relaxed);
        let start = Instant::now();
        let mut linger = inger::launch(
            || {
                while !stop.load(Relaxed) {
                    spin_loop();
                }
            },
            BUDGET,
        )?;
        let back = Instant::now();
        if !linger.is_continuation() || linger.yielded() {
            return Err(broken(
                "the endless loop was not preempted (is INGER_PREEMPT=0 set?)",
            ));
        }
        let overshoot = nanos(back.duration_since(start)) - nanos(BUDGET);
        stop.store(true, Relaxed);
        linger.resume(Duration::MAX)?;
        if !linger.is_completion() {
            return Err(broken("the stopped loop did not finish"));
        }
        Ok(overshoot)
    })?;
    Ok(vec![Figure::new(
        "preempt_overshoot",
        samples,
        Unit::Microseconds,
    )])
}
