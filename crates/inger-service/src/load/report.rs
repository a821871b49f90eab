//! One row per run: latency percentiles and counts from the client's samples, the service's
//! own counters from `/metrics`, and its resident set and CPU time from `/proc`; the table and
//! the targets of issue 15.

use std::fmt::Write as _;
use std::time::Duration;

use crate::metrics::sample;
use crate::protect::{Mode, Stop};
use crate::server::OVER_BUDGET;
use crate::work::Kind;

use super::Sample;

/// What one run of one mode came to.
#[derive(Debug, Clone)]
pub struct Row {
    /// The protection mode.
    pub mode: Mode,
    /// The share of hostile requests.
    pub hostile_share: f64,
    /// The budget of a request.
    pub budget: Duration,
    /// The client's samples.
    pub samples: Vec<Sample>,
    /// The service's `/metrics` page at the end, if it answered.
    pub metrics: Option<String>,
    /// Resident set of the service (and its workers) at the end, bytes.
    pub rss_end: u64,
    /// Resident set samples over the run: (seconds from the start, bytes).
    pub rss_over_time: Vec<(f64, u64)>,
    /// CPU time of the service (and its workers) over the run.
    pub server_cpu: Duration,
}

/// `q`-quantile of latencies where `None` is infinite (unanswered).
pub fn quantile(latencies: &[Option<Duration>], q: f64) -> Option<Option<Duration>> {
    if latencies.is_empty() {
        return None;
    }
    let mut sorted: Vec<Option<Duration>> = latencies.to_vec();
    sorted.sort_by_key(|latency| latency.unwrap_or(Duration::MAX));
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

impl Row {
    fn benign(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(|sample| !sample.hostile)
    }

    fn hostile(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(|sample| sample.hostile)
    }

    /// Latencies of benign requests that got a `200`; others (errors, unanswered) count as
    /// infinite.
    pub fn benign_latencies(&self) -> Vec<Option<Duration>> {
        self.benign()
            .map(|sample| match sample.answer {
                Some((200, latency)) => Some(latency),
                _ => None,
            })
            .collect()
    }

    /// Benign p50 and p99 (`None` inside: infinite).
    pub fn benign_percentiles(&self) -> (Option<Duration>, Option<Duration>) {
        let latencies = self.benign_latencies();
        (
            quantile(&latencies, 0.50).flatten(),
            quantile(&latencies, 0.99).flatten(),
        )
    }

    /// Benign requests answered `200` per second of the run.
    pub fn benign_throughput(&self) -> f64 {
        let ok = self.benign_latencies().iter().flatten().count();
        let span = self
            .samples
            .last()
            .map_or(Duration::ZERO, |last| last.due)
            .as_secs_f64()
            .max(1e-3);
        ok as f64 / span
    }

    /// Benign requests not answered `200`: (answered otherwise, unanswered).
    pub fn benign_failures(&self) -> (usize, usize) {
        let other = self
            .benign()
            .filter(|sample| matches!(sample.answer, Some((status, _)) if status != 200))
            .count();
        let unanswered = self
            .benign()
            .filter(|sample| sample.answer.is_none())
            .count();
        (other, unanswered)
    }

    /// Hostile requests sent, and those answered with the over-budget status.
    pub fn hostile_stopped(&self) -> (usize, usize) {
        let sent = self.hostile().count();
        let stopped = self
            .hostile()
            .filter(|sample| {
                matches!(sample.answer, Some((status, _)) if status == OVER_BUDGET.as_u16())
            })
            .count();
        (sent, stopped)
    }

    /// Median time to an answer of the hostile requests (infinite if unanswered).
    pub fn hostile_p50(&self) -> Option<Duration> {
        let latencies: Vec<Option<Duration>> = self
            .hostile()
            .map(|sample| sample.answer.map(|(_, latency)| latency))
            .collect();
        quantile(&latencies, 0.5).flatten()
    }

    fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.as_deref().and_then(|page| sample(page, name))
    }

    /// CPU seconds spent after deadlines (from the service's counters).
    pub fn after_deadline(&self) -> Option<f64> {
        self.metric("inger_service_cpu_after_deadline_seconds_total")
    }

    /// [`Row::after_deadline`] as a share of the hostile requests' budgets.
    pub fn after_deadline_share(&self) -> Option<f64> {
        let (sent, _) = self.hostile_stopped();
        let budgets = sent as f64 * self.budget.as_secs_f64();
        self.after_deadline().map(|seconds| {
            if budgets > 0.0 {
                seconds / budgets
            } else {
                0.0
            }
        })
    }

    /// How many over-budget requests were stopped in the way `stop` says (all endpoints).
    pub fn stops(&self, stop: Stop) -> Option<f64> {
        Kind::ALL
            .into_iter()
            .map(|kind| {
                self.metric(&format!(
                    "inger_service_stops_total{{endpoint=\"{}\",how=\"{}\"}}",
                    kind.name(),
                    stop.name()
                ))
            })
            .sum()
    }

    /// Requests shed (no slot free within the queue timeout), all endpoints.
    pub fn shed(&self) -> Option<f64> {
        Kind::ALL
            .into_iter()
            .map(|kind| {
                self.metric(&format!(
                    "inger_service_requests_total{{endpoint=\"{}\",outcome=\"shed\"}}",
                    kind.name()
                ))
            })
            .sum()
    }

    /// A short label: the mode and its hostile share.
    pub fn label(&self) -> String {
        format!("{} ({} % hostile)", self.mode, percent(self.hostile_share))
    }
}

fn percent(share: f64) -> String {
    let value = share * 100.0;
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

fn millis(latency: Option<Duration>) -> String {
    match latency {
        Some(latency) => format!("{:.2}", latency.as_secs_f64() * 1e3),
        None => "∞".into(),
    }
}

fn or_na(value: Option<f64>, format: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "n/a".into(), format)
}

/// The results table (Markdown), then the stops and inger's counters.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("| mode | hostile | benign p50 ms | benign p99 ms | benign ok/s | benign not ok (answered/unanswered) | hostile stopped | hostile answer p50 ms | CPU after deadlines s (% of budgets) | service CPU s | RSS end MiB |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for row in rows {
        let (p50, p99) = row.benign_percentiles();
        let (other, unanswered) = row.benign_failures();
        let (sent, stopped) = row.hostile_stopped();
        let after = match (row.after_deadline(), row.after_deadline_share()) {
            (Some(seconds), Some(share)) => format!("{seconds:.3} ({:.1} %)", share * 100.0),
            _ => "n/a".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} % | {} | {} | {:.1} | {other}/{unanswered} | {stopped}/{sent} | {} | {after} | {:.2} | {:.1} |",
            row.mode,
            percent(row.hostile_share),
            millis(p50),
            millis(p99),
            row.benign_throughput(),
            millis(row.hostile_p50()),
            row.server_cpu.as_secs_f64(),
            row.rss_end as f64 / (1 << 20) as f64,
        );
    }
    out.push('\n');
    out.push_str("| mode | hostile | stops: cooperative | discarded | killed | abandoned (still running at the end) | shed | slices | preemptions | longest deferral ms | RSS MiB at 10 % → 50 % → 100 % of the run (max) |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for row in rows {
        let count = |value: Option<f64>| or_na(value, |v| format!("{v:.0}"));
        let rss = rss_summary(&row.rss_over_time);
        let _ = writeln!(
            out,
            "| {} | {} % | {} | {} | {} | {} ({}) | {} | {} | {} | {} | {rss} |",
            row.mode,
            percent(row.hostile_share),
            count(row.stops(Stop::Cooperative)),
            count(row.stops(Stop::Discarded)),
            count(row.stops(Stop::Killed)),
            count(row.stops(Stop::Abandoned)),
            count(row.metric("inger_service_abandoned_running")),
            count(row.shed()),
            count(row.metric("inger_service_slices_total")),
            count(row.metric("inger_preemptions_total")),
            or_na(row.metric("inger_longest_deferral_seconds"), |s| format!(
                "{:.2}",
                s * 1e3
            )),
        );
    }
    out
}

/// The resident set at 10 %, 50 % and 100 % of the run, and its maximum, in MiB.
fn rss_summary(samples: &[(f64, u64)]) -> String {
    let Some(&(end, last)) = samples.last() else {
        return "n/a".into();
    };
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    let at = |fraction: f64| {
        samples
            .iter()
            .find(|&&(time, _)| time >= fraction * end)
            .map_or(last, |&(_, bytes)| bytes)
    };
    let max = samples
        .iter()
        .map(|&(_, bytes)| bytes)
        .max()
        .unwrap_or(last);
    format!(
        "{:.1} → {:.1} → {:.1} ({:.1})",
        mib(at(0.1)),
        mib(at(0.5)),
        mib(last),
        mib(max)
    )
}

/// The targets of issue 15 that these rows can check, one line each, `PASS` or `MISS`.
pub fn targets(rows: &[Row]) -> String {
    let mut out = String::new();
    let find = |mode: Mode, hostile: bool| {
        rows.iter()
            .find(|row| row.mode == mode && (row.hostile_share > 0.0) == hostile)
    };
    let verdict = |pass: bool| if pass { "PASS" } else { "MISS" };
    let p99 = |row: &Row| row.benign_percentiles().1;
    let Some(baseline) = find(Mode::None, false) else {
        out.push_str("# targets: no run without hostile requests to compare with\n");
        return out;
    };
    let Some(reference) = p99(baseline) else {
        out.push_str("# targets: the run without hostile requests had no finite p99\n");
        return out;
    };
    let ratio = |row: &Row| p99(row).map(|p| p.as_secs_f64() / reference.as_secs_f64());
    let show = |ratio: Option<f64>| ratio.map_or("∞".into(), |r| format!("{r:.2}"));
    if let Some(row) = find(Mode::Inger, true) {
        let r = ratio(row);
        let _ = writeln!(
            out,
            "{} inger benign p99 / no-hostile p99 (none, 0 %) = {} (target ≤ 2)",
            verdict(r.is_some_and(|r| r <= 2.0)),
            show(r)
        );
        if let Some(own) = find(Mode::Inger, false).and_then(p99) {
            let r = p99(row).map(|p| p.as_secs_f64() / own.as_secs_f64());
            let _ = writeln!(
                out,
                "{} inger benign p99 / inger's own no-hostile p99 = {} (target ≤ 2)",
                verdict(r.is_some_and(|r| r <= 2.0)),
                show(r)
            );
        }
        if let Some(share) = row.after_deadline_share() {
            let _ = writeln!(
                out,
                "{} inger CPU after deadlines = {:.2} % of the hostile requests' budgets (target ≤ 5 %)",
                verdict(share <= 0.05),
                share * 100.0
            );
        }
    }
    for mode in [Mode::None, Mode::TokioTimeout] {
        if let Some(row) = find(mode, true) {
            let r = ratio(row);
            let _ = writeln!(
                out,
                "{} {mode} benign p99 / no-hostile p99 = {} (target ≥ 20, or no answer)",
                verdict(r.is_none_or(|r| r >= 20.0)),
                show(r)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(hostile: bool, answer: Option<(u16, u64)>) -> Sample {
        Sample {
            due: Duration::from_secs(1),
            kind: Kind::Json,
            hostile,
            answer: answer.map(|(status, ms)| (status, Duration::from_millis(ms))),
        }
    }

    #[test]
    fn quantiles_count_unanswered_as_infinite() {
        let ms = |v| Some(Duration::from_millis(v));
        let latencies = [ms(1), ms(2), ms(3), None];
        assert_eq!(quantile(&latencies, 0.5), Some(ms(2)));
        assert_eq!(quantile(&latencies, 0.99), Some(None));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn rows_count_failures_and_stops() {
        let row = Row {
            mode: Mode::Inger,
            hostile_share: 0.5,
            budget: Duration::from_millis(20),
            samples: vec![
                sample(false, Some((200, 3))),
                sample(false, Some((503, 20))),
                sample(false, None),
                sample(true, Some((503, 21))),
                sample(true, Some((200, 900))),
            ],
            metrics: Some("inger_service_cpu_after_deadline_seconds_total 0.002\n".into()),
            rss_end: 0,
            rss_over_time: Vec::new(),
            server_cpu: Duration::ZERO,
        };
        assert_eq!(row.benign_failures(), (1, 1));
        assert_eq!(row.hostile_stopped(), (2, 1));
        assert_eq!(row.benign_percentiles(), (None, None));
        assert!((row.after_deadline_share().unwrap() - 0.05).abs() < 1e-9);
        assert!(table(&[row]).contains("| inger | 50 % |"));
    }
}
