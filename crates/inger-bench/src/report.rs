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
    /// A count per event (timer signals per preemption, ...).
    Count,
    /// A dimensionless ratio.
    Ratio,
}

impl Unit {
    /// Every unit (for parsing).
    pub const ALL: [Unit; 6] = [
        Unit::Nanoseconds,
        Unit::Microseconds,
        Unit::Milliseconds,
        Unit::Bytes,
        Unit::Count,
        Unit::Ratio,
    ];

    /// The unit's symbol as printed in a row.
    pub fn symbol(self) -> &'static str {
        match self {
            Unit::Nanoseconds => "ns",
            Unit::Microseconds => "us",
            Unit::Milliseconds => "ms",
            Unit::Bytes => "bytes",
            Unit::Count => "count",
            Unit::Ratio => "x",
        }
    }

    /// The unit whose [`symbol`](Unit::symbol) is `symbol`.
    pub fn from_symbol(symbol: &str) -> Option<Unit> {
        Unit::ALL.into_iter().find(|unit| unit.symbol() == symbol)
    }

    /// The name of the stored unit (`ns` for every time unit), for machine-readable output.
    pub fn stored_symbol(self) -> &'static str {
        match self {
            Unit::Nanoseconds | Unit::Microseconds | Unit::Milliseconds => "ns",
            other => other.symbol(),
        }
    }

    /// `value` (in the stored unit) formatted in the display unit.
    pub fn format(self, value: f64) -> String {
        match self {
            Unit::Nanoseconds => format!("{value:.1}"),
            Unit::Microseconds => format!("{:.2}", value / 1e3),
            Unit::Milliseconds => format!("{:.2}", value / 1e6),
            // No `-0` for a growth of a fraction of a byte below zero.
            Unit::Bytes => format!("{:.0}", if value.abs() < 0.5 { 0.0 } else { value }),
            Unit::Count => format!("{value:.1}"),
            Unit::Ratio => format!("{value:.3}"),
        }
    }

    /// A difference `value` (stored unit) formatted with its sign: `+12.30`, `-0.40`.
    pub fn format_signed(self, value: f64) -> String {
        let text = self.format(value.abs());
        if value < 0.0 {
            format!("-{text}")
        } else {
            format!("+{text}")
        }
    }
}

/// One measured figure: its name, its samples (ns for times, bytes for memory) and unit.
#[derive(Debug, Clone)]
pub struct Figure {
    /// The figure's name, as printed (`launch_complete`, ...).
    pub name: String,
    /// The measurements, in the stored unit of `unit`.
    pub samples: Samples,
    /// How to display it.
    pub unit: Unit,
    /// What else was seen while measuring it (printed as a `#` line under the row).
    pub note: Option<String>,
    /// Other load on the machine visibly disturbed the measurement (the note says how);
    /// verdicts that use the figure say they are not meaningful.
    pub disturbed: bool,
}

impl Figure {
    /// A figure from its samples.
    pub fn new(name: impl Into<String>, samples: Samples, unit: Unit) -> Self {
        Figure {
            name: name.into(),
            samples,
            unit,
            note: None,
            disturbed: false,
        }
    }

    /// The same figure, marked disturbed if `disturbed`.
    pub fn disturbed_if(mut self, disturbed: bool) -> Self {
        self.disturbed |= disturbed;
        self
    }

    /// The same figure with a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// The same figure with `more` appended to its note.
    pub fn with_more_note(mut self, more: impl AsRef<str>) -> Self {
        self.note = Some(match self.note.take() {
            Some(note) => format!("{note}; {}", more.as_ref()),
            None => more.as_ref().to_owned(),
        });
        self
    }

    /// Median in the stored unit (NaN without samples).
    pub fn median(&self) -> f64 {
        self.samples.median().unwrap_or(f64::NAN)
    }

    /// 90th percentile in the stored unit (NaN without samples).
    pub fn p90(&self) -> f64 {
        self.samples.quantile(0.9).unwrap_or(f64::NAN)
    }

    /// 99th percentile in the stored unit (NaN without samples).
    pub fn p99(&self) -> f64 {
        self.samples.p99().unwrap_or(f64::NAN)
    }

    /// The given statistic in the stored unit (NaN without samples).
    pub fn statistic(&self, statistic: Statistic) -> f64 {
        match statistic {
            Statistic::Median => self.median(),
            Statistic::P90 => self.p90(),
            Statistic::P99 => self.p99(),
        }
    }
}

impl fmt::Display for Figure {
    /// The row `<name> <median> <p90> <p99> <unit>` (columns padded with spaces), then the
    /// note, if any, on a line of its own starting with `#`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<32} {:>12} {:>12} {:>12} {}",
            self.name,
            self.unit.format(self.median()),
            self.unit.format(self.p90()),
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

/// An inger figure and the machine's own floor for it, measured in the same run (a bare
/// context switch under a launch, a bare POSIX timer's lateness under a preemption's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Floor {
    /// The inger figure.
    pub figure: &'static str,
    /// The floor figure.
    pub floor: &'static str,
    /// Whether the excess over the floor (`figure - floor` at the median, p90 and p99) is
    /// meaningful too (latencies above a common zero), not only the ratio.
    pub excess: bool,
}

/// A figure set against its floor: ratio of medians, and the excess if asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct FloorComparison {
    /// The pair compared.
    pub floor: Floor,
    /// Median of the figure over the median of the floor.
    pub ratio: f64,
    /// `figure - floor` at the median, p90 and p99 (stored unit), if `floor.excess`.
    pub excess: Option<[f64; 3]>,
    /// The figure's unit.
    pub unit: Unit,
}

impl Floor {
    /// Compares the figures in `report`; `None` if either is missing.
    pub fn compare(self, report: &Report) -> Option<FloorComparison> {
        let figure = report.get(self.figure)?;
        let floor = report.get(self.floor)?;
        let excess = self.excess.then(|| {
            [Statistic::Median, Statistic::P90, Statistic::P99]
                .map(|statistic| figure.statistic(statistic) - floor.statistic(statistic))
        });
        Some(FloorComparison {
            floor: self,
            ratio: figure.median() / floor.median(),
            excess,
            unit: figure.unit,
        })
    }
}

impl fmt::Display for FloorComparison {
    /// `launch_complete / context_switch = 6.55x`, plus
    /// `; - timer_floor: median +1.20, p90 +3.00, p99 +9.00 us` for an excess.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} / {} = {}x",
            self.floor.figure,
            self.floor.floor,
            format_ratio(self.ratio)
        )?;
        if let Some([median, p90, p99]) = self.excess {
            write!(
                f,
                "; {} - {}: median {}, p90 {}, p99 {} {}",
                self.floor.figure,
                self.floor.floor,
                self.unit.format_signed(median),
                self.unit.format_signed(p90),
                self.unit.format_signed(p99),
                self.unit.symbol()
            )?;
        }
        Ok(())
    }
}

/// Which statistic of a figure a target constrains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statistic {
    /// The median.
    Median,
    /// The 90th percentile.
    P90,
    /// The 99th percentile.
    P99,
}

impl Statistic {
    /// The statistic's name as printed (`median`, `p90`, `p99`).
    pub fn label(self) -> &'static str {
        match self {
            Statistic::Median => "median",
            Statistic::P90 => "p90",
            Statistic::P99 => "p99",
        }
    }
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
    /// A statistic of a figure must be at most the same statistic of `floor` plus `margin`
    /// (stored unit): a latency against the machine's own floor.
    AtMostFloorPlus {
        /// The figure.
        figure: &'static str,
        /// The floor figure.
        floor: &'static str,
        /// Which statistic (of both).
        statistic: Statistic,
        /// The largest passing excess, stored unit.
        margin: f64,
    },
    /// `ratio` of medians must be at least `minimum`.
    RatioAtLeast {
        /// The ratio.
        ratio: Ratio,
        /// The smallest passing value.
        minimum: f64,
    },
    /// `ratio` of medians must be at most `maximum`.
    RatioAtMost {
        /// The ratio.
        ratio: Ratio,
        /// The largest passing value.
        maximum: f64,
    },
    /// `ratio` of medians must lie within `1 - tolerance ..= 1 + tolerance`.
    RatioNear {
        /// The ratio.
        ratio: Ratio,
        /// The largest passing relative difference (0.05: within 5 %).
        tolerance: f64,
    },
}

/// The result of checking one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Whether the target was met.
    pub pass: bool,
    /// What was checked and what was measured, e.g. `launch_complete median 85.0 ns <= 100.0 ns`.
    pub description: String,
    /// The measured value (stored unit, or the ratio).
    pub value: f64,
    /// The bound it was held to: the largest passing value, the smallest for an at-least
    /// ratio, the tolerance for a near-one ratio.
    pub bound: f64,
    /// A figure it used was disturbed by other load: the verdict is not meaningful.
    pub disturbed: bool,
}

impl fmt::Display for Verdict {
    /// `PASS <description>` or `MISS <description>`, plus a warning when disturbed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            if self.pass { "PASS" } else { "MISS" },
            self.description
        )?;
        if self.disturbed {
            write!(f, " (disturbed: the machine was busy, not meaningful)")?;
        }
        Ok(())
    }
}

impl Target {
    /// Checks the target against `report`; `None` if a figure it needs was not measured.
    /// A statistic that is not a number (no samples) misses.
    pub fn check(&self, report: &Report) -> Option<Verdict> {
        let mut verdict = self.check_values(report)?;
        verdict.disturbed = self
            .figures()
            .iter()
            .any(|name| report.get(name).is_some_and(|figure| figure.disturbed));
        Some(verdict)
    }

    /// The figures the target reads.
    pub fn figures(&self) -> Vec<&'static str> {
        match *self {
            Target::AtMost { figure, .. } => vec![figure],
            Target::AtMostFloorPlus { figure, floor, .. } => vec![figure, floor],
            Target::RatioAtLeast { ratio, .. }
            | Target::RatioAtMost { ratio, .. }
            | Target::RatioNear { ratio, .. } => vec![ratio.numerator, ratio.denominator],
        }
    }

    fn check_values(&self, report: &Report) -> Option<Verdict> {
        match *self {
            Target::AtMost {
                figure,
                statistic,
                limit,
            } => {
                let figure = report.get(figure)?;
                let value = figure.statistic(statistic);
                let unit = figure.unit;
                Some(Verdict {
                    disturbed: false,
                    value,
                    bound: limit,
                    pass: value <= limit,
                    description: format!(
                        "{} {} {} {} <= {} {}",
                        figure.name,
                        statistic.label(),
                        unit.format(value),
                        unit.symbol(),
                        unit.format(limit),
                        unit.symbol()
                    ),
                })
            }
            Target::AtMostFloorPlus {
                figure,
                floor,
                statistic,
                margin,
            } => {
                let figure = report.get(figure)?;
                let floor = report.get(floor)?;
                let (value, base) = (figure.statistic(statistic), floor.statistic(statistic));
                let unit = figure.unit;
                Some(Verdict {
                    disturbed: false,
                    value,
                    bound: base + margin,
                    pass: value <= base + margin,
                    description: format!(
                        "{} {label} {} {sym} <= {} {label} {} {sym} + {} {sym}",
                        figure.name,
                        unit.format(value),
                        floor.name,
                        unit.format(base),
                        unit.format(margin),
                        label = statistic.label(),
                        sym = unit.symbol(),
                    ),
                })
            }
            Target::RatioAtLeast { ratio, minimum } => {
                let value = report.ratio(ratio)?;
                Some(Verdict {
                    disturbed: false,
                    value,
                    bound: minimum,
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
            Target::RatioAtMost { ratio, maximum } => {
                let value = report.ratio(ratio)?;
                Some(Verdict {
                    disturbed: false,
                    value,
                    bound: maximum,
                    pass: value <= maximum,
                    description: format!(
                        "{} / {} {}x <= {}x",
                        ratio.numerator,
                        ratio.denominator,
                        format_ratio(value),
                        format_ratio(maximum)
                    ),
                })
            }
            Target::RatioNear { ratio, tolerance } => {
                let value = report.ratio(ratio)?;
                Some(Verdict {
                    disturbed: false,
                    value,
                    bound: tolerance,
                    pass: (value - 1.0).abs() <= tolerance,
                    description: format!(
                        "{} / {} {:.3}x within 1 +- {:.2}",
                        ratio.numerator, ratio.denominator, value, tolerance
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

    fn words(text: &str) -> Vec<&str> {
        text.split_whitespace().collect()
    }

    #[test]
    fn rows_show_median_p90_p99_and_unit() {
        let report = sample_report();
        let row = report.get("slow").unwrap().to_string();
        // p90: 4120 + (9000 - 4120) * 0.8 = 8024; p99: 4120 + 4880 * 0.98 = 8902.4.
        assert_eq!(words(&row), ["slow", "4.12", "8.02", "8.90", "us"]);
        let ms = figure("fork", &[1_500_000.0], Unit::Milliseconds).to_string();
        assert_eq!(words(&ms), ["fork", "1.50", "1.50", "1.50", "ms"]);
        let noted = figure("fast", &[1.0], Unit::Nanoseconds)
            .with_note("seen: x")
            .with_more_note("and y")
            .to_string();
        let lines: Vec<&str> = noted.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(words(lines[0]), ["fast", "1.0", "1.0", "1.0", "ns"]);
        assert_eq!(lines[1], "#   seen: x; and y");
        let bytes = figure("rss", &[8192.0], Unit::Bytes).to_string();
        assert_eq!(words(&bytes), ["rss", "8192", "8192", "8192", "bytes"]);
        let empty = Figure::new("none", Samples::new(), Unit::Count).to_string();
        assert_eq!(words(&empty), ["none", "NaN", "NaN", "NaN", "count"]);
    }

    #[test]
    fn units_round_trip_through_their_symbols() {
        for unit in Unit::ALL {
            assert_eq!(Unit::from_symbol(unit.symbol()), Some(unit));
        }
        assert_eq!(Unit::from_symbol("parsecs"), None);
        assert_eq!(Unit::Milliseconds.stored_symbol(), "ns");
        assert_eq!(Unit::Bytes.stored_symbol(), "bytes");
        assert_eq!(Unit::Microseconds.format_signed(-400.0), "-0.40");
        assert_eq!(Unit::Microseconds.format_signed(12_300.0), "+12.30");
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
    fn floors_give_ratios_and_excesses() {
        let mut report = Report::new();
        report.push(figure(
            "late",
            &[30_000.0, 40_000.0, 50_000.0],
            Unit::Microseconds,
        ));
        report.push(figure(
            "floor",
            &[10_000.0, 15_000.0, 20_000.0],
            Unit::Microseconds,
        ));
        let both = Floor {
            figure: "late",
            floor: "floor",
            excess: true,
        }
        .compare(&report)
        .unwrap();
        assert!((both.ratio - 40.0 / 15.0).abs() < 1e-12);
        let [median, p90, p99] = both.excess.unwrap();
        assert_eq!(median, 25_000.0);
        assert!((p90 - 29_000.0).abs() < 1e-9 && (p99 - 29_900.0).abs() < 1e-9);
        assert_eq!(
            both.to_string(),
            "late / floor = 2.67x; late - floor: median +25.00, p90 +29.00, p99 +29.90 us"
        );
        let ratio_only = Floor {
            figure: "late",
            floor: "floor",
            excess: false,
        };
        assert_eq!(
            ratio_only.compare(&report).unwrap().to_string(),
            "late / floor = 2.67x"
        );
        let missing = Floor {
            figure: "late",
            floor: "absent",
            excess: true,
        };
        assert_eq!(missing.compare(&report), None);
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
        let p90 = Target::AtMost {
            figure: "slow",
            statistic: Statistic::P90,
            limit: 8_000.0,
        };
        assert_eq!(
            p90.check(&report).unwrap().to_string(),
            "MISS slow p90 8.02 us <= 8.00 us"
        );
    }

    #[test]
    fn verdicts_on_disturbed_figures_say_so() {
        let mut report = sample_report();
        report.push(figure("busy", &[5.0], Unit::Nanoseconds).disturbed_if(true));
        let on = |figure| Target::AtMost {
            figure,
            statistic: Statistic::Median,
            limit: 10.0,
        };
        let verdict = on("busy").check(&report).unwrap();
        assert!(verdict.pass && verdict.disturbed);
        assert_eq!(
            verdict.to_string(),
            "PASS busy median 5.0 ns <= 10.0 ns (disturbed: the machine was busy, not meaningful)"
        );
        assert!(!on("fast").check(&report).unwrap().disturbed);
        let ratio = Target::RatioAtMost {
            ratio: Ratio {
                numerator: "fast",
                denominator: "busy",
            },
            maximum: 1.0,
        };
        assert!(ratio.check(&report).unwrap().disturbed);
        assert_eq!(ratio.figures(), ["fast", "busy"]);
    }

    #[test]
    fn a_figure_without_samples_misses() {
        let mut report = Report::new();
        report.push(Figure::new("empty", Samples::new(), Unit::Count));
        let target = Target::AtMost {
            figure: "empty",
            statistic: Statistic::Median,
            limit: f64::INFINITY,
        };
        assert!(!target.check(&report).unwrap().pass);
    }

    #[test]
    fn floor_plus_margin_targets() {
        let mut report = sample_report();
        report.push(figure(
            "base",
            &[3_000.0, 3_100.0, 3_200.0],
            Unit::Microseconds,
        ));
        let target = |margin| Target::AtMostFloorPlus {
            figure: "slow",
            floor: "base",
            statistic: Statistic::Median,
            margin,
        };
        // 4120 <= 3100 + 1020 exactly.
        let pass = target(1_020.0).check(&report).unwrap();
        assert!(pass.pass);
        assert_eq!((pass.value, pass.bound), (4_120.0, 4_120.0));
        let miss = target(1_000.0).check(&report).unwrap();
        assert_eq!(
            miss.to_string(),
            "MISS slow median 4.12 us <= base median 3.10 us + 1.00 us"
        );
    }

    #[test]
    fn ratio_targets_and_missing_figures() {
        let report = sample_report();
        let ratio = Ratio {
            numerator: "slow",
            denominator: "fast",
        };
        let at_least = |minimum| Target::RatioAtLeast { ratio, minimum };
        assert!(at_least(200.0).check(&report).unwrap().pass);
        assert!(!at_least(300.0).check(&report).unwrap().pass);
        let at_most = |maximum| Target::RatioAtMost { ratio, maximum };
        assert!(at_most(206.0).check(&report).unwrap().pass);
        assert_eq!(
            at_most(100.0).check(&report).unwrap().to_string(),
            "MISS slow / fast 206x <= 100x"
        );
        let absent = Target::AtMost {
            figure: "absent",
            statistic: Statistic::Median,
            limit: 1.0,
        };
        assert_eq!(absent.check(&report), None);
    }

    #[test]
    fn near_targets_allow_the_tolerance_either_way() {
        let mut report = Report::new();
        report.push(figure("a", &[104.0], Unit::Nanoseconds));
        report.push(figure("b", &[100.0], Unit::Nanoseconds));
        report.push(figure("c", &[94.0], Unit::Nanoseconds));
        let near = |numerator, denominator| Target::RatioNear {
            ratio: Ratio {
                numerator,
                denominator,
            },
            tolerance: 0.05,
        };
        assert!(near("a", "b").check(&report).unwrap().pass);
        assert!(!near("c", "b").check(&report).unwrap().pass);
        assert!(!near("b", "c").check(&report).unwrap().pass); // 1.064
        assert_eq!(
            near("a", "b").check(&report).unwrap().to_string(),
            "PASS a / b 1.040x within 1 +- 0.05"
        );
    }
}
