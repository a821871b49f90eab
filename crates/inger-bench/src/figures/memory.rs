//! Memory held by paused functions.

use std::time::Duration;

use super::{BenchResult, Scale, broken};
use crate::procfs::{page_table_bytes, resident_bytes};
use crate::report::{Figure, Unit};

/// Paused functions alive at once (in quick runs too).
const PAUSED: usize = 100_000;

/// `rss_per_paused`: resident memory per paused function with 100,000 paused at once: the
/// growth of `/proc/self/statm`'s resident set across creating them, divided by their count.
/// It includes the caller's `Linger` handles (in a vector sized beforehand), which a program
/// holding that many paused functions pays too. Also reports `page_tables_per_paused`, the
/// growth of the kernel's page tables (`VmPTE`), which the resident set does not count.
///
/// One measurement, on a thread of its own: inger pools stacks and TLS blocks per thread
/// (including blocks of cancelled functions), so on the main thread, after the other
/// figures, part of the cost would already be resident before the count starts; a second
/// round on the same thread would likewise count only what the first did not keep. Both
/// statistics of the row are that one value. The functions are resumed to completion
/// afterwards.
pub(super) fn rss_per_paused(_scale: Scale) -> BenchResult<Vec<Figure>> {
    let (rss_growth, page_table_growth) = std::thread::spawn(one_round)
        .join()
        .map_err(|_| broken("the measuring thread panicked"))?
        .map_err(|error| broken(error.to_string()))?;
    let per_paused = |growth: f64| [growth / PAUSED as f64].into_iter().collect();
    Ok(vec![
        Figure::new("rss_per_paused", per_paused(rss_growth), Unit::Bytes),
        Figure::new(
            "page_tables_per_paused",
            per_paused(page_table_growth),
            Unit::Bytes,
        ),
    ])
}

/// Creates `PAUSED` paused functions; returns the growth of (resident set, page tables).
/// Errors are turned into strings, which can cross the thread boundary.
fn one_round() -> Result<(f64, f64), String> {
    let mut held = Vec::with_capacity(PAUSED);
    let growth = |before: u64, after: u64| after as f64 - before as f64;
    let measure = || -> BenchResult<(u64, u64)> { Ok((resident_bytes()?, page_table_bytes()?)) };
    let (rss_before, page_tables_before) = measure().map_err(|e| e.to_string())?;
    for _ in 0..PAUSED {
        let linger = inger::launch(inger::pause, Duration::MAX).map_err(|e| e.to_string())?;
        if !linger.yielded() {
            return Err("a function that calls pause() did not pause".into());
        }
        held.push(linger);
    }
    let (rss_after, page_tables_after) = measure().map_err(|e| e.to_string())?;
    for linger in &mut held {
        linger.resume(Duration::MAX).map_err(|e| e.to_string())?;
        if !linger.is_completion() {
            return Err("a paused function did not finish when resumed".into());
        }
    }
    Ok((
        growth(rss_before, rss_after),
        growth(page_tables_before, page_tables_after),
    ))
}
