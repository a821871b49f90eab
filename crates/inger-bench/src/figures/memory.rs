//! Memory held by paused functions.

use std::time::Duration;

use super::{BenchResult, Scale, broken};
use crate::procfs::{page_table_bytes, resident_bytes};
use crate::report::{Figure, Unit};
use crate::stats::Samples;

/// Paused functions alive at once per `rss_per_paused` round (in quick runs too).
const PAUSED: usize = 100_000;

/// `rss_per_paused`: resident memory per paused function with 100,000 paused at once: the
/// growth of `/proc/self/statm`'s resident set across creating them, divided by their count.
/// It includes the caller's `Linger` handles (in a vector sized beforehand), which a program
/// holding that many paused functions pays too. Also reports `page_tables_per_paused`, the
/// growth of the kernel's page tables (`VmPTE`), which the resident set does not count.
///
/// Each round resumes the functions to completion afterwards, so their stacks go back to
/// the pools (and their pages to the kernel) instead of being retired.
pub(super) fn rss_per_paused(scale: Scale) -> BenchResult<Vec<Figure>> {
    let rounds = scale.pick(1, 3);
    let mut rss = Samples::with_capacity(rounds);
    let mut page_tables = Samples::with_capacity(rounds);
    for _ in 0..rounds {
        let (rss_growth, page_table_growth) = one_round()?;
        rss.push(rss_growth / PAUSED as f64);
        page_tables.push(page_table_growth / PAUSED as f64);
    }
    Ok(vec![
        Figure::new("rss_per_paused", rss, Unit::Bytes),
        Figure::new("page_tables_per_paused", page_tables, Unit::Bytes),
    ])
}

/// Creates `PAUSED` paused functions; returns the growth of (resident set, page tables).
fn one_round() -> BenchResult<(f64, f64)> {
    let mut held = Vec::with_capacity(PAUSED);
    let rss_before = resident_bytes()?;
    let page_tables_before = page_table_bytes()?;
    for _ in 0..PAUSED {
        let linger = inger::launch(inger::pause, Duration::MAX)?;
        if !linger.yielded() {
            return Err(broken("a function that calls pause() did not pause"));
        }
        held.push(linger);
    }
    let rss_after = resident_bytes()?;
    let page_tables_after = page_table_bytes()?;
    for linger in &mut held {
        linger.resume(Duration::MAX)?;
        if !linger.is_completion() {
            return Err(broken("a paused function did not finish when resumed"));
        }
    }
    drop(held);
    let growth = |before: u64, after: u64| after as f64 - before as f64;
    Ok((
        growth(rss_before, rss_after),
        growth(page_tables_before, page_tables_after),
    ))
}
