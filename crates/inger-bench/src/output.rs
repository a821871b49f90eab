//! A whole run's results: the text printed after the table, and the JSON document of
//! `--json` (every figure, ratio, floor comparison, validity check and target).

use serde_json::{Value, json};

use crate::machine::Machine;
use crate::report::{Figure, FloorComparison, Ratio, Report, Verdict};
use crate::targets::{RATIOS, TargetGroup, VALIDITY, floors, target_groups};

/// Version of the JSON document's layout; bumped when a field changes meaning or goes away.
pub const JSON_SCHEMA: &str = "inger-bench/1";

/// The checked results of a run.
#[derive(Debug)]
pub struct Summary {
    /// Ratio lines (`a / b = 3.2x`) with their values.
    pub ratios: Vec<(Ratio, f64)>,
    /// Each inger figure against its floor.
    pub floors: Vec<FloorComparison>,
    /// Checks that make the run valid; any failure makes it invalid.
    pub validity: Vec<Verdict>,
    /// The targets, per issue.
    pub targets: Vec<(TargetGroup, Vec<Verdict>)>,
    /// Entries that failed (name, error): their figures, and the targets on them, are
    /// missing.
    pub failures: Vec<(String, String)>,
}

impl Summary {
    /// Checks everything that can be checked in `report` (what needs an unmeasured figure
    /// is left out).
    pub fn of(report: &Report) -> Self {
        Summary {
            ratios: RATIOS
                .iter()
                .filter_map(|&ratio| Some((ratio, report.ratio(ratio)?)))
                .collect(),
            floors: floors()
                .into_iter()
                .filter_map(|floor| floor.compare(report))
                .collect(),
            validity: VALIDITY
                .iter()
                .filter_map(|check| check.check(report))
                .collect(),
            targets: target_groups()
                .into_iter()
                .map(|group| {
                    let verdicts = group
                        .targets
                        .iter()
                        .filter_map(|target| target.check(report))
                        .collect();
                    (group, verdicts)
                })
                .collect(),
            failures: Vec::new(),
        }
    }

    /// Whether every validity check that could be made passed.
    pub fn valid(&self) -> bool {
        self.validity.iter().all(|check| check.pass)
    }

    /// The text printed after the table: ratios, floors, validity, targets (each section only
    /// if something in it could be checked).
    pub fn text(&self) -> String {
        let mut sections: Vec<String> = Vec::new();
        push_section(
            &mut sections,
            "# failures (their figures and the targets on them are missing)",
            self.failures
                .iter()
                .map(|(name, error)| {
                    let error = error.split_whitespace().collect::<Vec<_>>().join(" ");
                    format!("FAILED {name}: {error}")
                })
                .collect(),
        );
        let ratios: Vec<String> = self
            .ratios
            .iter()
            .map(|(ratio, value)| {
                format!(
                    "{} / {} = {}x",
                    ratio.numerator,
                    ratio.denominator,
                    crate::report::format_ratio(*value)
                )
            })
            .collect();
        push_section(&mut sections, "# ratios of medians", ratios);
        push_section(
            &mut sections,
            "# against the machine's own floors (same run)",
            self.floors.iter().map(ToString::to_string).collect(),
        );
        let mut validity: Vec<String> = self
            .validity
            .iter()
            .map(|check| {
                let verdict = if check.pass { "VALID" } else { "INVALID" };
                format!("{verdict} {}", check.description)
            })
            .collect();
        if !self.valid() {
            validity.push(
                "INVALID RUN: the synthetic work's speed depends on where it runs, so the figures that use it (signal_cpu_cost, preempt_cpu_cost, preempt_overshoot_spin) are not meaningful".to_owned(),
            );
        }
        push_section(
            &mut sections,
            "# validity (issue 16): the synthetic work runs at the same speed everywhere",
            validity,
        );
        for (group, verdicts) in &self.targets {
            push_section(
                &mut sections,
                &format!("# targets ({}: {})", group.source, group.about),
                verdicts.iter().map(ToString::to_string).collect(),
            );
        }
        sections.join("\n")
    }

    /// The whole run as one JSON document. Figures are in their stored unit (`ns` for every
    /// time, `bytes`, `count`, `x`), with the display unit alongside.
    pub fn json(&self, machine: &Machine, mode: &str, report: &Report, elapsed_s: f64) -> Value {
        let caps = inger::capabilities();
        json!({
            "schema": JSON_SCHEMA,
            "mode": mode,
            "machine": {
                "cpu_model": machine.cpu_model,
                "cpus": machine.cpus,
                "kernel": machine.kernel,
                "load_average": machine.load_average,
            },
            "capabilities": {
                "private_tls": caps.private_tls,
                "fast_tls_switch": caps.fast_tls_switch,
                "preemption": caps.preemption,
                "std_critical_sections": caps.std_critical_sections,
            },
            "figures": report.figures().iter().map(figure_json).collect::<Vec<_>>(),
            "ratios": self.ratios.iter().map(|(ratio, value)| json!({
                "numerator": ratio.numerator,
                "denominator": ratio.denominator,
                "value": number(*value),
            })).collect::<Vec<_>>(),
            "floors": self.floors.iter().map(|comparison| json!({
                "figure": comparison.floor.figure,
                "floor": comparison.floor.floor,
                "ratio": number(comparison.ratio),
                "excess": comparison.excess.map(|[median, p90, p99]| json!({
                    "median": number(median),
                    "p90": number(p90),
                    "p99": number(p99),
                })),
            })).collect::<Vec<_>>(),
            "valid": self.valid(),
            "validity": self.validity.iter().map(verdict_json).collect::<Vec<_>>(),
            "targets": self.targets.iter().flat_map(|(group, verdicts)| {
                verdicts.iter().map(|verdict| {
                    let mut value = verdict_json(verdict);
                    value["source"] = json!(group.source);
                    value
                }).collect::<Vec<_>>()
            }).collect::<Vec<_>>(),
            "failures": self.failures.iter().map(|(name, error)| json!({
                "entry": name,
                "error": error,
            })).collect::<Vec<_>>(),
            "elapsed_s": number(elapsed_s),
        })
    }
}

/// Adds a heading and its lines (each line ends with a newline), unless there are none.
fn push_section(sections: &mut Vec<String>, heading: &str, lines: Vec<String>) {
    if lines.is_empty() {
        return;
    }
    let mut section = format!("{heading}\n");
    for line in lines {
        section.push_str(&line);
        section.push('\n');
    }
    sections.push(section);
}

/// A finite number, or `null` (JSON has no NaN).
fn number(value: f64) -> Value {
    if value.is_finite() {
        json!(value)
    } else {
        Value::Null
    }
}

fn figure_json(figure: &Figure) -> Value {
    json!({
        "name": figure.name,
        "unit": figure.unit.stored_symbol(),
        "display_unit": figure.unit.symbol(),
        "samples": figure.samples.len(),
        "median": number(figure.median()),
        "p90": number(figure.p90()),
        "p99": number(figure.p99()),
        "min": figure.samples.min().map_or(Value::Null, number),
        "max": figure.samples.max().map_or(Value::Null, number),
        "note": figure.note,
        "disturbed": figure.disturbed,
    })
}

fn verdict_json(verdict: &Verdict) -> Value {
    json!({
        "pass": verdict.pass,
        "description": verdict.description,
        "value": number(verdict.value),
        "bound": number(verdict.bound),
        "disturbed": verdict.disturbed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Unit;

    fn report() -> Report {
        let mut report = Report::new();
        let mut add = |name: &str, values: &[f64], unit| {
            report.push(Figure::new(name, values.iter().copied().collect(), unit));
        };
        add("context_switch", &[30.0, 31.0], Unit::Nanoseconds);
        add("launch_complete", &[200.0, 210.0], Unit::Nanoseconds);
        add("direct_call", &[2.0], Unit::Nanoseconds);
        add("timer_floor", &[15_000.0, 20_000.0], Unit::Microseconds);
        add(
            "preempt_overshoot_spin",
            &[16_000.0, 22_000.0],
            Unit::Microseconds,
        );
        add("signals_per_preempt_spin", &[1.0, 1.0], Unit::Count);
        add(
            "timer_floor_spin",
            &[15_000.0, 20_000.0],
            Unit::Microseconds,
        );
        add("work_direct", &[500.0, 502.0], Unit::Microseconds);
        add("work_in_launch", &[540.0, 545.0], Unit::Microseconds);
        add("empty", &[], Unit::Bytes);
        report
    }

    #[test]
    fn json_has_every_part_and_no_nan() {
        let report = report();
        let mut summary = Summary::of(&report);
        summary
            .failures
            .push(("broken_row".into(), "it\ncrashed".into()));
        let machine = Machine {
            cpu_model: "Test CPU".into(),
            cpus: 2,
            kernel: "6.0".into(),
            load_average: None,
        };
        let value = summary.json(&machine, "quick", &report, 1.5);
        assert_eq!(value["schema"], JSON_SCHEMA);
        assert_eq!(value["machine"]["cpu_model"], "Test CPU");
        assert!(value["machine"]["load_average"].is_null());
        let figures = value["figures"].as_array().unwrap();
        assert_eq!(figures.len(), report.figures().len());
        let timer = figures.iter().find(|f| f["name"] == "timer_floor").unwrap();
        assert_eq!(timer["unit"], "ns");
        assert_eq!(timer["display_unit"], "us");
        assert_eq!(timer["median"], 17_500.0);
        assert_eq!(timer["samples"], 2);
        assert_eq!(timer["disturbed"], false);
        let empty = figures.iter().find(|f| f["name"] == "empty").unwrap();
        assert!(empty["median"].is_null() && empty["min"].is_null());
        // launch_complete / context_switch = 205 / 30.5.
        let ratio = value["floors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["figure"] == "launch_complete")
            .unwrap();
        assert!((ratio["ratio"].as_f64().unwrap() - 205.0 / 30.5).abs() < 1e-9);
        assert!(ratio["excess"].is_null());
        let spin = value["floors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["figure"] == "preempt_overshoot_spin")
            .unwrap();
        assert_eq!(spin["excess"]["median"], 1_500.0);
        // 540..545 over 500..502 is 8 % off: invalid.
        assert_eq!(value["valid"], false);
        assert_eq!(value["validity"][0]["pass"], false);
        let targets = value["targets"].as_array().unwrap();
        let issue16 = targets.iter().find(|t| t["source"] == "issue 16").unwrap();
        assert_eq!(issue16["pass"], false); // 6.7x > 4x
        assert!((issue16["value"].as_f64().unwrap() - 205.0 / 30.5).abs() < 1e-9);
        assert_eq!(issue16["bound"], 4.0);
        assert_eq!(issue16["disturbed"], false);
        assert!(
            targets
                .iter()
                .any(|t| t["source"] == "issue 12" && t["pass"] == true)
        );
        assert_eq!(value["failures"][0]["entry"], "broken_row");
        assert_eq!(value["failures"][0]["error"], "it\ncrashed");
        assert!(summary.text().contains("FAILED broken_row: it crashed\n"));
        // It is valid JSON text too.
        let text = serde_json::to_string(&value).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
    }

    #[test]
    fn text_names_an_invalid_run_and_lists_the_targets() {
        let summary = Summary::of(&report());
        assert!(!summary.valid());
        let text = summary.text();
        assert!(text.contains("INVALID work_in_launch / work_direct"));
        assert!(text.contains("INVALID RUN"));
        assert!(text.contains("MISS launch_complete / context_switch 6.72x <= 4.00x"));
        assert!(text.contains(
            "PASS preempt_overshoot_spin median 19.00 us <= timer_floor_spin median 17.50 us + 20.00 us"
        ));
        assert!(text.contains("launch_complete / direct_call = 102x"));
    }

    #[test]
    fn a_run_without_the_work_check_is_not_called_invalid() {
        let mut report = Report::new();
        report.push(Figure::new(
            "direct_call",
            [2.0].into_iter().collect(),
            Unit::Nanoseconds,
        ));
        let summary = Summary::of(&report);
        assert!(summary.validity.is_empty() && summary.valid());
        let text = summary.text();
        assert!(!text.contains("INVALID") && !text.contains("# validity"));
        assert!(
            !text.contains("# targets"),
            "no target could be checked: {text}"
        );
    }
}
