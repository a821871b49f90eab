//! The check that the benchmarks' synthetic work measures inger, not the stack's placement
//! (issue 16): the same work timed outside and inside a preemptible function, at several
//! stack offsets, in a child process of the same run with `INGER_PREEMPT=0` (no timer at all),
//! must run at the same speed within 5 %, or the run is invalid.

use std::hint::black_box;
use std::time::{Duration, Instant};

use super::{BenchResult, Scale, broken};
use crate::report::{Figure, Unit};
use crate::stats::Samples;
use crate::timing::nanos;
use crate::work::{self, STACK_PADDINGS};

/// Iterations of [`work::spin`] per sample (a few hundred microseconds on a 3 GHz core).
const ITERATIONS: u64 = 200_000;

/// Child side (`work_check_samples`, run with `INGER_PREEMPT=0`): rounds of the work at every
/// stack padding, directly and inside `inger::launch`, interleaved so that a drift of the
/// machine's speed affects both alike. Figures `work_direct@<padding>` and
/// `work_in_launch@<padding>`, one sample per round, in nanoseconds.
pub(super) fn work_check_samples(scale: Scale) -> BenchResult<Vec<Figure>> {
    if inger::capabilities().preemption {
        return Err(broken(
            "the work check must run with INGER_PREEMPT=0, and preemption is on",
        ));
    }
    let rounds = scale.pick(40, 200);
    let mut direct: Vec<Samples> = STACK_PADDINGS.iter().map(|_| Samples::new()).collect();
    let mut launched = direct.clone();
    let timed = |padding: usize| {
        work::with_stack_padding(padding, || {
            let start = Instant::now();
            black_box(work::spin(black_box(ITERATIONS)));
            nanos(start.elapsed())
        })
    };
    for round in 0..rounds + 2 {
        for (index, &padding) in STACK_PADDINGS.iter().enumerate() {
            let outside = timed(padding);
            let inside = inger::launch(move || timed(padding), Duration::MAX)?
                .completion()
                .ok_or_else(|| broken("the work did not complete inside launch"))?;
            // The first two rounds warm up the caches and inger's pools.
            if round >= 2 {
                direct[index].push(outside);
                launched[index].push(inside);
            }
        }
    }
    let mut figures = Vec::new();
    for (index, padding) in STACK_PADDINGS.iter().enumerate() {
        figures.push(Figure::new(
            format!("work_direct@{padding}"),
            direct[index].clone(),
            Unit::Nanoseconds,
        ));
        figures.push(Figure::new(
            format!("work_in_launch@{padding}"),
            launched[index].clone(),
            Unit::Nanoseconds,
        ));
    }
    Ok(figures)
}

/// Parent side (`work_check`): runs [`work_check_samples`] in a child with `INGER_PREEMPT=0`
/// and summarises it as `work_direct` and `work_in_launch` (every padding's samples; the
/// ratio of their medians must be within 5 % of 1) and `work_padding_spread` (the largest over
/// the smallest of the per-padding fastest runs of both: at most 1.05). The spread uses each
/// padding's fastest run because other load on the machine only ever slows a run down, while
/// a placement effect slows every run at that padding.
pub(super) fn work_check(scale: Scale) -> BenchResult<Vec<Figure>> {
    let figures = crate::child::run(
        "work_check_samples",
        scale == Scale::Quick,
        &[("INGER_PREEMPT", "0")],
    )
    .map_err(broken)?;
    summarise(
        &figures,
        &format!("{ITERATIONS} iterations of register-only work per sample"),
    )
}

/// The summary figures of the child's per-padding figures (see [`work_check`]).
/// `what` says what one sample is, for the note.
pub fn summarise(figures: &[Figure], what: &str) -> BenchResult<Vec<Figure>> {
    let mut direct = Samples::new();
    let mut launched = Samples::new();
    let mut fastest_runs = Vec::new();
    let mut per_padding = Vec::new();
    for figure in figures {
        let (target, label) = if figure.name.starts_with("work_direct@") {
            (&mut direct, "direct")
        } else if figure.name.starts_with("work_in_launch@") {
            (&mut launched, "in launch")
        } else {
            continue;
        };
        for &value in figure.samples.values() {
            target.push(value);
        }
        if let Some(fastest) = figure.samples.min() {
            fastest_runs.push(fastest);
            let padding = figure.name.split_once('@').map_or("?", |(_, p)| p);
            per_padding.push(format!("{label} @{padding} {:.1}", fastest / 1e3));
        }
    }
    if direct.is_empty() || launched.is_empty() {
        return Err(broken("the work check child measured nothing"));
    }
    let smallest = fastest_runs.iter().copied().fold(f64::INFINITY, f64::min);
    let largest = fastest_runs.iter().copied().fold(0.0, f64::max);
    let spread: Samples = [largest / smallest].into_iter().collect();
    let bytes: Vec<usize> = STACK_PADDINGS
        .iter()
        .map(|&frames| work::padding_bytes(frames))
        .collect();
    let note =
        format!("{what}, in a child with INGER_PREEMPT=0, at stack paddings of {bytes:?} bytes");
    Ok(vec![
        Figure::new("work_direct", direct, Unit::Microseconds).with_note(note),
        Figure::new("work_in_launch", launched, Unit::Microseconds),
        Figure::new("work_padding_spread", spread, Unit::Ratio).with_note(format!(
            "largest / smallest of the fastest run at each padding (us): {}",
            per_padding.join(", ")
        )),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(name: &str, values: &[f64]) -> Figure {
        Figure::new(name, values.iter().copied().collect(), Unit::Nanoseconds)
    }

    #[test]
    fn summary_pools_paddings_and_measures_their_spread() {
        let figures = [
            figure("work_direct@0", &[100.0, 150.0, 100.0]),
            figure("work_in_launch@0", &[101.0, 101.0, 300.0]),
            figure("work_direct@72", &[100.0, 100.0, 100.0]),
            figure("work_in_launch@72", &[110.0, 120.0, 110.0]),
            figure("something_else", &[1.0]),
        ];
        let summary = summarise(&figures, "test work").unwrap();
        let names: Vec<&str> = summary.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["work_direct", "work_in_launch", "work_padding_spread"]
        );
        assert_eq!(summary[0].samples.len(), 6);
        assert_eq!(summary[1].samples.len(), 6);
        assert!((summary[2].median() - 1.1).abs() < 1e-12);
        assert!(
            summary[0]
                .note
                .as_deref()
                .unwrap()
                .starts_with("test work, in a child")
        );
        assert!(
            summary[2]
                .note
                .as_deref()
                .unwrap()
                .contains("in launch @72 0.1")
        );
    }

    #[test]
    fn an_empty_child_is_an_error() {
        assert!(summarise(&[figure("work_direct@0", &[1.0])], "").is_err());
        assert!(summarise(&[], "").is_err());
    }
}
