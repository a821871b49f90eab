//! What a cancellation costs (issue 11): dropping a paused continuation, which discards its
//! stack without running destructors, against a cooperative cancellation, which unwinds it.
//! Per cancel: time, and the growth of resident memory, page tables and address space.

use std::hint::black_box;
use std::time::{Duration, Instant};

use super::{BenchResult, Scale, broken};
use crate::procfs::{address_space_bytes, page_table_bytes, resident_bytes};
use crate::report::{Figure, Unit};
use crate::stats::Samples;
use crate::timing::nanos;

/// Functions launched and cancelled per timed batch.
const BATCH: usize = 100;

/// Bytes of stack each cancelled function touches before pausing (so the discarded stack has
/// dirty pages, as a real one would).
const TOUCHED: usize = 16 * 1024;

/// Budget a cooperative cancellation gets to unwind (it needs far less: the function is
/// paused in `pause()`, a cancellation point).
const GRACE: Duration = Duration::from_millis(100);

/// How a batch is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Drop the continuation: the stack is discarded.
    Discard,
    /// `cancel_cooperatively`: the stack unwinds from `pause()`.
    Cooperative,
}

/// Touches `TOUCHED` bytes of its stack, then pauses until cancelled.
#[inline(never)]
fn paused_function() {
    let mut frame = [0u8; TOUCHED];
    for page in frame.chunks_mut(4096) {
        page[0] = 1;
    }
    black_box(&mut frame);
    loop {
        inger::pause();
    }
}

/// `discard_cost` and `coop_cancel_cost`, each with its memory growth per cancel, measured by
/// a child process of the run: stacks and their page tables that earlier figures left mapped
/// (inger keeps stack chunks for reuse) would otherwise absorb part of the growth, so the
/// figures would depend on what ran before.
pub(super) fn discard_cost(scale: Scale) -> BenchResult<Vec<Figure>> {
    crate::child::run("discard_cost_samples", scale == Scale::Quick, &[]).map_err(broken)
}

/// Child side of [`discard_cost`]: both modes, each on a fresh thread.
pub(super) fn discard_cost_samples(scale: Scale) -> BenchResult<Vec<Figure>> {
    let cancels = scale.pick(10_000, 50_000);
    let mut figures = Vec::new();
    for (mode, prefix) in [
        (Mode::Discard, "discard"),
        (Mode::Cooperative, "coop_cancel"),
    ] {
        // A thread of its own: inger pools stacks per thread, so each mode starts from the
        // same state and the other figures' pools do not count.
        let round = std::thread::spawn(move || one_mode(mode, cancels).map_err(|e| e.to_string()))
            .join()
            .map_err(|_| broken("the cancelling thread panicked"))?
            .map_err(broken)?;
        let per_cancel = |growth: f64| [growth / cancels as f64].into_iter().collect::<Samples>();
        let how = match mode {
            Mode::Discard => "dropping a paused continuation (its stack is discarded)",
            Mode::Cooperative => {
                "cancel_cooperatively of a function paused in pause() (it unwinds)"
            }
        };
        figures.push(
            Figure::new(format!("{prefix}_cost"), round.times, Unit::Nanoseconds).with_note(
                format!(
                    "{how}; {cancels} cancels in batches of {BATCH}, each function touched {} KiB of stack",
                    TOUCHED / 1024
                ),
            ),
        );
        let growth =
            |what: &str| format!("growth of {what} over the {cancels} cancels, per cancel");
        figures.push(
            Figure::new(format!("{prefix}_rss"), per_cancel(round.rss), Unit::Bytes)
                .with_note(growth("the resident set (statm)")),
        );
        figures.push(
            Figure::new(
                format!("{prefix}_page_tables"),
                per_cancel(round.page_tables),
                Unit::Bytes,
            )
            .with_note(growth("the page tables (VmPTE)")),
        );
        figures.push(
            Figure::new(
                format!("{prefix}_address_space"),
                per_cancel(round.address_space),
                Unit::Bytes,
            )
            .with_note(growth("the address space (VmSize)")),
        );
    }
    Ok(figures)
}

/// What one mode measured: ns per cancel per batch, and the growth (bytes) of the resident
/// set, page tables and address space over all cancels.
struct Round {
    times: Samples,
    rss: f64,
    page_tables: f64,
    address_space: f64,
}

fn one_mode(mode: Mode, cancels: usize) -> BenchResult<Round> {
    let batches = cancels.div_ceil(BATCH);
    let mut held = Vec::with_capacity(BATCH);
    let mut times = Samples::with_capacity(batches);
    let mut batch = |record: bool| -> BenchResult<()> {
        for _ in 0..BATCH {
            match inger::launch(paused_function, Duration::MAX)? {
                inger::Linger::Continuation(paused) if paused.yielded() => held.push(paused),
                _ => return Err(broken("the function did not pause")),
            }
        }
        let start = Instant::now();
        match mode {
            Mode::Discard => held.clear(),
            Mode::Cooperative => {
                for paused in held.drain(..) {
                    if paused.cancel_cooperatively(GRACE)?.is_some() {
                        return Err(broken("a cooperative cancellation did not unwind"));
                    }
                }
            }
        }
        if record {
            times.push(nanos(start.elapsed()) / BATCH as f64);
        }
        Ok(())
    };
    // One batch first: the thread's runtime, its pools and the vector reach their steady size.
    batch(false)?;
    let measure = || -> BenchResult<[u64; 3]> {
        Ok([
            resident_bytes()?,
            page_table_bytes()?,
            address_space_bytes()?,
        ])
    };
    let before = measure()?;
    for _ in 0..batches {
        batch(true)?;
    }
    let after = measure()?;
    let growth = |i: usize| after[i] as f64 - before[i] as f64;
    Ok(Round {
        times,
        rss: growth(0),
        page_tables: growth(1),
        address_space: growth(2),
    })
}
