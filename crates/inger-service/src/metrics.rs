//! Counters of what the service did, served at `/metrics` in Prometheus' text format
//! (version 0.0.4).
//!
//! | metric | type | meaning |
//! | --- | --- | --- |
//! | `inger_service_info{mode}` | gauge | 1, labelled with the protection mode |
//! | `inger_service_budget_seconds` | gauge | the per-request CPU budget |
//! | `inger_service_requests_total{endpoint,outcome}` | counter | work requests answered, by outcome: `answered` (200), `refused` (422), `over_budget` (503), `failed` (500), `shed` (503, no slot free within the queue timeout) |
//! | `inger_service_bad_requests_total` | counter | requests refused before any work (404, 405, 413, unreadable body) |
//! | `inger_service_request_duration_seconds{endpoint}` | histogram | wall time from the request's arrival to its answer |
//! | `inger_service_work_cpu_seconds_total{endpoint}` | counter | CPU time of the work, where the mode can measure it (not `process`) |
//! | `inger_service_cpu_after_deadline_seconds_total` | counter | CPU spent by over-budget work after its budget ran out (`blocking-timeout`: a lower bound; `process`: the time from the deadline to the kill) |
//! | `inger_service_stops_total{endpoint,how}` | counter | over-budget work by what became of it: `cooperative` (unwound, destructors ran), `discarded` (stack discarded), `killed` (worker process), `abandoned` (blocking thread left running) |
//! | `inger_service_in_progress`, `inger_service_waiting` | gauge | work requests holding one of the `--concurrency` slots, and waiting for one |
//! | `inger_service_abandoned_running` | gauge | abandoned blocking threads still running |
//! | `inger_service_slices_total` | counter | slices run by preemptible functions (`inger`) |
//! | `inger_service_worker_respawns_total`, `..._respawn_seconds_total` | counter | worker processes started to replace killed ones, and the time that took |
//! | `inger_preemptions_total`, `inger_yields_total`, `inger_deferrals_total{reason}`, `inger_retries_total`, `inger_longest_deferral_seconds` | counter, gauge | inger's own counters (`inger::stats`) |
//! | `process_cpu_seconds_total`, `process_resident_memory_bytes` | counter, gauge | the service process's CPU time and resident set |
//! | `inger_service_children_cpu_seconds_total` | counter | CPU time of reaped worker processes |

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::budget::Budget;
use crate::protect::{Mode, Outcome, Stop};
use crate::work::Kind;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The outcomes counted, in the order of [`outcome_index`].
const OUTCOMES: [&str; 5] = ["answered", "refused", "over_budget", "failed", "shed"];

fn outcome_index(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Answered(_) => 0,
        Outcome::Refused(_) => 1,
        Outcome::OverBudget => 2,
        Outcome::Failed(_) => 3,
        Outcome::Shed => 4,
    }
}

fn stop_index(stop: Stop) -> usize {
    Stop::ALL
        .iter()
        .position(|&other| other == stop)
        .unwrap_or(0)
}

fn kind_index(kind: Kind) -> usize {
    Kind::ALL
        .iter()
        .position(|&other| other == kind)
        .unwrap_or(0)
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.buckets[bucket].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(nanos(duration), Relaxed);
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn seconds_of(nanos: &AtomicU64) -> f64 {
    nanos.load(Relaxed) as f64 / 1e9
}

/// The service's counters.
#[derive(Debug)]
pub struct Metrics {
    mode: Mode,
    budget: Budget,
    requests: [[AtomicU64; OUTCOMES.len()]; Kind::ALL.len()],
    durations: [Histogram; Kind::ALL.len()],
    work_cpu_ns: [AtomicU64; Kind::ALL.len()],
    after_deadline_ns: AtomicU64,
    stops: [[AtomicU64; Stop::ALL.len()]; Kind::ALL.len()],
    abandoned_running: AtomicI64,
    slices: AtomicU64,
    respawns: AtomicU64,
    respawn_ns: AtomicU64,
    bad_requests: AtomicU64,
    in_progress: AtomicI64,
    waiting: AtomicI64,
}

impl Metrics {
    /// Fresh counters for a service in `mode` with `budget`.
    pub fn new(mode: Mode, budget: Budget) -> Metrics {
        Metrics {
            mode,
            budget,
            requests: Default::default(),
            durations: Default::default(),
            work_cpu_ns: Default::default(),
            after_deadline_ns: AtomicU64::new(0),
            stops: Default::default(),
            abandoned_running: AtomicI64::new(0),
            slices: AtomicU64::new(0),
            respawns: AtomicU64::new(0),
            respawn_ns: AtomicU64::new(0),
            bad_requests: AtomicU64::new(0),
            in_progress: AtomicI64::new(0),
            waiting: AtomicI64::new(0),
        }
    }

    /// The budget of the service these counters belong to.
    pub fn budget(&self) -> Budget {
        self.budget
    }

    pub(crate) fn count_outcome(&self, kind: Kind, outcome: &Outcome) {
        self.requests[kind_index(kind)][outcome_index(outcome)].fetch_add(1, Relaxed);
    }

    pub(crate) fn observe_duration(&self, kind: Kind, duration: Duration) {
        self.durations[kind_index(kind)].observe(duration);
    }

    pub(crate) fn in_progress(&self, change: i64) {
        self.in_progress.fetch_add(change, Relaxed);
    }

    pub(crate) fn waiting(&self, change: i64) {
        self.waiting.fetch_add(change, Relaxed);
    }

    pub(crate) fn count_bad_request(&self) {
        self.bad_requests.fetch_add(1, Relaxed);
    }

    pub(crate) fn charge_work(&self, kind: Kind, cpu: Duration) {
        self.work_cpu_ns[kind_index(kind)].fetch_add(nanos(cpu), Relaxed);
    }

    pub(crate) fn charge_after_deadline(&self, cpu: Duration) {
        if !cpu.is_zero() {
            self.after_deadline_ns.fetch_add(nanos(cpu), Relaxed);
        }
    }

    pub(crate) fn count_stop(&self, kind: Kind, stop: Stop) {
        self.stops[kind_index(kind)][stop_index(stop)].fetch_add(1, Relaxed);
    }

    pub(crate) fn abandoned_started(&self) {
        self.abandoned_running.fetch_add(1, Relaxed);
    }

    pub(crate) fn abandoned_finished(&self) {
        self.abandoned_running.fetch_sub(1, Relaxed);
    }

    pub(crate) fn count_slices(&self, slices: u32) {
        self.slices.fetch_add(u64::from(slices), Relaxed);
    }

    pub(crate) fn count_respawn(&self, took: Duration) {
        self.respawns.fetch_add(1, Relaxed);
        self.respawn_ns.fetch_add(nanos(took), Relaxed);
    }

    /// How many over-budget requests of `kind` were stopped in the way `stop` says.
    pub fn stops(&self, kind: Kind, stop: Stop) -> u64 {
        self.stops[kind_index(kind)][stop_index(stop)].load(Relaxed)
    }

    /// The counters in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut page = Page(String::new());
        let p = &mut page;
        p.family(
            "inger_service_info",
            "gauge",
            "The protection mode of this service.",
        );
        p.line(format!("inger_service_info{{mode=\"{}\"}} 1", self.mode));
        p.family(
            "inger_service_budget_seconds",
            "gauge",
            "The CPU budget of a request.",
        );
        p.line(format!(
            "inger_service_budget_seconds {}",
            self.budget.cpu.as_secs_f64()
        ));

        p.family(
            "inger_service_requests_total",
            "counter",
            "Work requests answered, by endpoint and outcome.",
        );
        for kind in Kind::ALL {
            for (index, outcome) in OUTCOMES.iter().enumerate() {
                let count = self.requests[kind_index(kind)][index].load(Relaxed);
                p.line(format!(
                    "inger_service_requests_total{{endpoint=\"{}\",outcome=\"{outcome}\"}} {count}",
                    kind.name()
                ));
            }
        }
        p.family(
            "inger_service_bad_requests_total",
            "counter",
            "Requests refused before any work.",
        );
        p.line(format!(
            "inger_service_bad_requests_total {}",
            self.bad_requests.load(Relaxed)
        ));

        p.family(
            "inger_service_request_duration_seconds",
            "histogram",
            "Wall time from a work request's arrival to its answer.",
        );
        for kind in Kind::ALL {
            let histogram = &self.durations[kind_index(kind)];
            let mut cumulative = 0;
            for (bound, bucket) in BUCKETS.iter().zip(&histogram.buckets) {
                cumulative += bucket.load(Relaxed);
                p.line(format!("inger_service_request_duration_seconds_bucket{{endpoint=\"{}\",le=\"{bound}\"}} {cumulative}", kind.name()));
            }
            let count = histogram.count.load(Relaxed);
            p.line(format!("inger_service_request_duration_seconds_bucket{{endpoint=\"{}\",le=\"+Inf\"}} {count}", kind.name()));
            p.line(format!(
                "inger_service_request_duration_seconds_sum{{endpoint=\"{}\"}} {}",
                kind.name(),
                seconds_of(&histogram.sum_ns)
            ));
            p.line(format!(
                "inger_service_request_duration_seconds_count{{endpoint=\"{}\"}} {count}",
                kind.name()
            ));
        }

        p.family(
            "inger_service_work_cpu_seconds_total",
            "counter",
            "CPU time of the work, where the mode can measure it.",
        );
        for kind in Kind::ALL {
            p.line(format!(
                "inger_service_work_cpu_seconds_total{{endpoint=\"{}\"}} {}",
                kind.name(),
                seconds_of(&self.work_cpu_ns[kind_index(kind)])
            ));
        }
        p.family(
            "inger_service_cpu_after_deadline_seconds_total",
            "counter",
            "CPU spent by over-budget work after its budget ran out.",
        );
        p.line(format!(
            "inger_service_cpu_after_deadline_seconds_total {}",
            seconds_of(&self.after_deadline_ns)
        ));

        p.family(
            "inger_service_stops_total",
            "counter",
            "Over-budget work, by what became of it.",
        );
        for kind in Kind::ALL {
            for stop in Stop::ALL {
                p.line(format!(
                    "inger_service_stops_total{{endpoint=\"{}\",how=\"{}\"}} {}",
                    kind.name(),
                    stop.name(),
                    self.stops(kind, stop)
                ));
            }
        }
        p.family(
            "inger_service_abandoned_running",
            "gauge",
            "Abandoned blocking threads still running their work.",
        );
        p.line(format!(
            "inger_service_abandoned_running {}",
            self.abandoned_running.load(Relaxed)
        ));
        p.family(
            "inger_service_slices_total",
            "counter",
            "Slices run by preemptible functions.",
        );
        p.line(format!(
            "inger_service_slices_total {}",
            self.slices.load(Relaxed)
        ));
        p.family(
            "inger_service_worker_respawns_total",
            "counter",
            "Worker processes started to replace killed or broken ones.",
        );
        p.line(format!(
            "inger_service_worker_respawns_total {}",
            self.respawns.load(Relaxed)
        ));
        p.family(
            "inger_service_worker_respawn_seconds_total",
            "counter",
            "Wall time spent starting replacement worker processes.",
        );
        p.line(format!(
            "inger_service_worker_respawn_seconds_total {}",
            seconds_of(&self.respawn_ns)
        ));

        let stats = inger::stats();
        p.family(
            "inger_preemptions_total",
            "counter",
            "Preemptible functions paused because their budget expired.",
        );
        p.line(format!("inger_preemptions_total {}", stats.preemptions));
        p.family(
            "inger_yields_total",
            "counter",
            "Cooperative pauses of preemptible functions.",
        );
        p.line(format!("inger_yields_total {}", stats.yields));
        p.family(
            "inger_deferrals_total",
            "counter",
            "Expiries deferred because the function was at an unsafe point, by reason.",
        );
        for (reason, count) in [
            ("nopreempt", stats.deferred_nopreempt),
            ("library", stats.deferred_library),
            ("std", stats.deferred_std),
            ("unknown", stats.deferred_unknown),
            ("unwind", stats.deferred_unwind),
        ] {
            p.line(format!(
                "inger_deferrals_total{{reason=\"{reason}\"}} {count}"
            ));
        }
        p.family(
            "inger_retries_total",
            "counter",
            "Timer re-arms after a deferral.",
        );
        p.line(format!("inger_retries_total {}", stats.retries));
        p.family(
            "inger_longest_deferral_seconds",
            "gauge",
            "Longest time from a deadline to the pause it caused.",
        );
        p.line(format!(
            "inger_longest_deferral_seconds {}",
            stats.longest_deferral_ns as f64 / 1e9
        ));

        let (own_cpu, children_cpu) = process_cpu();
        p.family(
            "process_cpu_seconds_total",
            "counter",
            "CPU time of the service process.",
        );
        p.line(format!(
            "process_cpu_seconds_total {}",
            own_cpu.as_secs_f64()
        ));
        p.family(
            "inger_service_children_cpu_seconds_total",
            "counter",
            "CPU time of reaped worker processes.",
        );
        p.line(format!(
            "inger_service_children_cpu_seconds_total {}",
            children_cpu.as_secs_f64()
        ));
        p.family(
            "process_resident_memory_bytes",
            "gauge",
            "Resident set of the service process.",
        );
        p.line(format!(
            "process_resident_memory_bytes {}",
            resident_bytes()
        ));
        page.0
    }
}

/// A page of metrics being written.
struct Page(String);

impl Page {
    /// Declares a metric family.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// Adds a sample line.
    fn line(&mut self, line: String) {
        self.0.push_str(&line);
        self.0.push('\n');
    }
}

/// CPU time (user + system) of this process and of its reaped children.
fn process_cpu() -> (Duration, Duration) {
    let usage = |who| {
        // SAFETY: all-zero is a valid `rusage`.
        let mut usage: libc::rusage = unsafe { core::mem::zeroed() };
        // SAFETY: `usage` is a valid out-parameter; `who` is a constant the kernel knows.
        if unsafe { libc::getrusage(who, &mut usage) } != 0 {
            return Duration::ZERO;
        }
        let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        time(usage.ru_utime) + time(usage.ru_stime)
    };
    (usage(libc::RUSAGE_SELF), usage(libc::RUSAGE_CHILDREN))
}

/// This process's resident set, from `/proc/self/statm`.
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

/// The value of the sample `name` (with its labels, exactly as rendered, e.g.
/// `inger_service_stops_total{how="cooperative"}`) in a page of metrics.
pub fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.parse().ok())?
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_belongs_to_a_declared_family_and_parses() {
        let metrics = Metrics::new(Mode::Inger, Budget::default());
        metrics.count_outcome(Kind::Grep, &Outcome::OverBudget);
        metrics.observe_duration(Kind::Grep, Duration::from_millis(3));
        metrics.count_stop(Kind::Grep, Stop::Cooperative);
        let page = metrics.render();
        let mut families = Vec::new();
        for line in page.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                families.push(name.to_string());
            } else if !line.starts_with("# HELP ") {
                let (key, value) = line.rsplit_once(' ').unwrap();
                value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
                let name = key.split('{').next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .filter(|base| families.iter().any(|f| f == base))
                    .unwrap_or(name);
                assert!(families.iter().any(|f| f == family), "undeclared: {line}");
            }
        }
        assert_eq!(
            sample(
                &page,
                "inger_service_requests_total{endpoint=\"grep\",outcome=\"over_budget\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &page,
                "inger_service_stops_total{endpoint=\"grep\",how=\"cooperative\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &page,
                "inger_service_request_duration_seconds_bucket{endpoint=\"grep\",le=\"0.0025\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &page,
                "inger_service_request_duration_seconds_bucket{endpoint=\"grep\",le=\"0.005\"}"
            ),
            Some(1.0)
        );
        assert!(sample(&page, "process_resident_memory_bytes").unwrap() > 0.0);
        assert_eq!(
            sample(&page, "inger_service_info{mode=\"inger\"}"),
            Some(1.0)
        );
    }
}
