//! Figures, the rows printed for them, ratios between them, and targets checked against them.

use std::fmt;

use crate::stats::Samples;

/// How a figure is displayed. Times are always stored in nanoseconds, so ratios between
/// figures of different display units are still right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Stored and shown in nanoseconds.
    Nanoseconds,
    /// Stored in nanoseconds, shown in microseconds.
    Microseconds,
    /// Stored in nanoseconds, shown in milliseconds.
    Milliseconds,
    /// Stored and shown in bytes.
    Bytes,
}

impl Unit {
    /// The unit's symbol as printed in a row.
    pub fn symbol(self) -> &'static str {
        match self {
            Unit::Nanoseconds => "ns",
            Unit::Microseconds => "us",
            Unit::Milliseconds => "ms",
            Unit::Bytes => "bytes",
        }
    }

    /// `value` (in the stored unit) formatted in the display unit.
    pub fn format(self, value: f64) -> String {
        match self {
            Unit::Nanoseconds => format!("{value:.1}"),
            Unit::Microseconds => format!("{:.2}", value / 1e3),
            Unit::Milliseconds => format!("{:.2}", value / 1e6),
            Unit::Bytes => format!("{value:.0}"),
        }
    }
}

/// One measured figure: its name, its samples (ns for times, bytes for memory) and unit.
#[derive(Debug, Clone)]
pub struct Figure {
    /// The figure's name, as printed (`launch_complete`, ...).
    pub name: &'static str,
    /// The measurements, in the stored unit of `unit`.
    pub samples: Samples,
    /// How to display it.
    pub unit: Unit,
    /// What else was seen while measuring it (printed as a `#` line under the row).
    pub note: Option<String>,
}

impl Figure {
    /// A figure from its samples.
    pub fn new(name: &'static str, samples: Samples, unit: Unit) -> Self {
        Figure {
            name,
            samples,
            unit,
            note: None,
        }
    }

    /// The same figure with a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// Median in the stored unit (NaN without samples).
    pub fn median(&self) -> f64 {
        self.samples.median().unwrap_or(f64::NAN)
    }

    /// 99th percentile in the stored unit (NaN without samples).
    pub fn p99(&self) -> f64 {
        self.samples.p99().unwrap_or(f64::NAN)
    }
}

impl fmt::Display for Figure {
    /// The row `<name> <median> <p99> <unit>` (columns padded with spaces), then the note,
    /// if any, on a line of its own starting with `#`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<24} {:>12} {:>12} {}",
            self.name,
            self.unit.format(self.median()),
            self.unit.format(self.p99()),
            self.unit.symbol()
        )?;
        if let Some(note) = &self.note {
            write!(f, "\n#   {note}")?;
        }
        Ok(())
    }
}

/// The figures of one run, in the order they were measured.
#[derive(Debug, Default)]
pub struct Report {
    figures: Vec<Figure>,
}

impl Report {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a figure.
    pub fn push(&mut self, figure: Figure) {
        self.figures.push(figure);
    }

    /// The figure called `name`, if it was measured.
    pub fn get(&self, name: &str) -> Option<&Figure> {
        self.figures.iter().find(|figure| figure.name == name)
    }

    /// All figures, in order.
    pub fn figures(&self) -> &[Figure] {
        &self.figures
    }

    /// The ratio of two figures' medians, if both were measured.
    pub fn ratio(&self, ratio: Ratio) -> Option<f64> {
        Some(self.get(ratio.numerator)?.median() / self.get(ratio.denominator)?.median())
    }
}

/// A ratio of two figures' medians, printed as `a / b = 412x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    /// The figure on top.
    pub numerator: &'static str,
    /// The figure below.
    pub denominator: &'static str,
}

impl Ratio {
    /// The ratio line for `report`, or `None` if a figure is missing.
    pub fn line(self, report: &Report) -> Option<String> {
        let value = report.ratio(self)?;
        Some(format!(
            "{} / {} = {}x",
            self.numerator,
            self.denominator,
            format_ratio(value)
        ))
    }
}

/// A ratio with a precision that suits its size: `412`, `41.2`, `4.12`, `0.412`.
pub fn format_ratio(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// Which statistic of a figure a target constrains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statistic {
    /// The median.
    Median,
    /// The 99th percentile.
    P99,
}

/// A goal a run either meets or misses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// A statistic of a figure must be at most `limit` (in the figure's stored unit).
    AtMost {
        /// The figure.
        figure: &'static str,
        /// Which statistic.
        statistic: Statistic,
        /// The largest passing value, stored unit.
        limit: f64,
    },
    /// `ratio` of medians must be at least `minimum`.
    RatioAtLeast {
        /// The ratio.
        ratio: Ratio,
        /// The smallest passing value.
        minimum: f64,
    },
}

/// The result of checking one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Whether the target was met.
    pub pass: bool,
    /// What was checked and what was measured, e.g. `launch_complete median 85.0 ns <= 100.0 ns`.
    pub description: String,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            if self.pass { "PASS" } else { "MISS" },
            self.description
        )
    }
}

impl Target {
    /// Checks the target against `report`; `None` if a figure it needs was not measured.
    pub fn check(&self, report: &Report) -> Option<Verdict> {
        match *self {
            Target::AtMost {
                figure,
                statistic,
                limit,
            } => {
                let figure = report.get(figure)?;
                let (label, value) = match statistic {
                    Statistic::Median => ("median", figure.median()),
                    Statistic::P99 => ("p99", figure.p99()),
                };
                let unit = figure.unit;
                Some(Verdict {
                    pass: value <= limit,
                    description: format!(
                        "{} {label} {} {} <= {} {}",
                        figure.name,
                        unit.format(value),
                        unit.symbol(),
                        unit.format(limit),
                        unit.symbol()
                    ),
                })
            }
            Target::RatioAtLeast { ratio, minimum } => {
                let value = report.ratio(ratio)?;
                Some(Verdict {
                    pass: value >= minimum,
                    description: format!(
                        "{} / {} {}x >= {}x",
                        ratio.numerator,
                        ratio.denominator,
                        format_ratio(value),
                        format_ratio(minimum)
                    ),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(name: &'static str, values: &[f64], unit: Unit) -> Figure {
        Figure::new(name, values.iter().copied().collect(), unit)
    }

    fn sample_report() -> Report {
        let mut report = Report::new();
        report.push(figure("fast", &[10.0, 20.0, 30.0], Unit::Nanoseconds));
        report.push(figure(
            "slow",
            &[4000.0, 4120.0, 9000.0],
            Unit::Microseconds,
        ));
        report
    }

    #[test]
    fn rows_show_median_p99_and_unit() {
        let report = sample_report();
        let row = report.get("slow").unwrap().to_string();
        let words: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(words, ["slow", "4.12", "8.90", "us"]);
        let ms = figure("fork", &[1_500_000.0], Unit::Milliseconds).to_string();
        assert_eq!(
            ms.split_whitespace().collect::<Vec<_>>(),
            ["fork", "1.50", "1.50", "ms"]
        );
        let noted = figure("fast", &[1.0], Unit::Nanoseconds)
            .with_note("seen: x")
            .to_string();
        let lines: Vec<&str> = noted.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["fast", "1.0", "1.0", "ns"]
        );
        assert_eq!(lines[1], "#   seen: x");
        let bytes = figure("rss", &[8192.0], Unit::Bytes).to_string();
        assert_eq!(
            bytes.split_whitespace().collect::<Vec<_>>(),
            ["rss", "8192", "8192", "bytes"]
        );
    }

    #[test]
    fn ratios_use_medians_in_stored_units() {
        let report = sample_report();
        let ratio = Ratio {
            numerator: "slow",
            denominator: "fast",
        };
        assert_eq!(report.ratio(ratio), Some(206.0));
        assert_eq!(ratio.line(&report).unwrap(), "slow / fast = 206x");
        assert_eq!(
            Ratio {
                numerator: "slow",
                denominator: "missing"
            }
            .line(&report),
            None
        );
    }

    #[test]
    fn ratio_precision_follows_magnitude() {
        assert_eq!(format_ratio(412.4), "412");
        assert_eq!(format_ratio(41.24), "41.2");
        assert_eq!(format_ratio(4.124), "4.12");
        assert_eq!(format_ratio(0.4124), "0.412");
    }

    #[test]
    fn targets_pass_at_the_limit_and_miss_above_it() {
        let report = sample_report();
        let at = |limit| Target::AtMost {
            figure: "fast",
            statistic: Statistic::Median,
            limit,
        };
        assert!(at(20.0).check(&report).unwrap().pass);
        let miss = at(19.9).check(&report).unwrap();
        assert!(!miss.pass);
        assert_eq!(miss.to_string(), "MISS fast median 20.0 ns <= 19.9 ns");
        let p99 = Target::AtMost {
            figure: "slow",
            statistic: Statistic::P99,
            limit: 10_000.0,
        };
        assert_eq!(
            p99.check(&report).unwrap().to_string(),
            "PASS slow p99 8.90 us <= 10.00 us"
        );
    }

    #[test]
    fn ratio_targets_and_missing_figures() {
        let report = sample_report();
        let ratio = Ratio {
            numerator: "slow",
            denominator: "fast",
        };
        assert!(
            Target::RatioAtLeast {
                ratio,
                minimum: 200.0
            }
            .check(&report)
            .unwrap()
            .pass
        );
        assert!(
            !Target::RatioAtLeast {
                ratio,
                minimum: 300.0
            }
            .check(&report)
            .unwrap()
            .pass
        );
        let absent = Target::AtMost {
            figure: "absent",
            statistic: Statistic::Median,
            limit: 1.0,
        };
        assert_eq!(absent.check(&report), None);
    }
}
