//! Figures measured in a child process of the same run.
//!
//! Some settings are process-wide (`INGER_SHARED_TLS=1`, `INGER_PREEMPT=0`), so the figures
//! that need them are measured by a child: the benchmark program runs itself with the setting
//! and [`CHILD_FIGURE`] naming what to measure; the child prints its figures in a small line
//! format ([`write_figures`]) and the parent reads them back ([`parse_figures`]).
//!
//! ```text
//! figure launch_complete ns
//! note 100 launches per sample
//! disturbed
//! sample 152.7
//! sample 149.1
//! ```

use std::fmt::Write as _;

use crate::report::{Figure, Unit};
use crate::stats::Samples;

/// Environment variable that makes the benchmark program a child measuring one entry and
/// printing its figures.
pub const CHILD_FIGURE: &str = "INGER_BENCH_CHILD_FIGURE";

/// The figures in the line format the parent parses. Notes are kept to their first line.
pub fn write_figures(figures: &[Figure]) -> String {
    let mut out = String::new();
    for figure in figures {
        let _ = writeln!(out, "figure {} {}", figure.name, figure.unit.symbol());
        if let Some(note) = &figure.note {
            let _ = writeln!(out, "note {}", note.lines().next().unwrap_or(""));
        }
        if figure.disturbed {
            let _ = writeln!(out, "disturbed");
        }
        for value in figure.samples.values() {
            // `{:?}` prints the shortest text that parses back to the same f64.
            let _ = writeln!(out, "sample {value:?}");
        }
    }
    out
}

/// Parses the output of [`write_figures`]. Lines of any other kind are ignored (a child may
/// print warnings); a `sample` or `note` before any `figure`, a malformed value or an unknown
/// unit is an error.
pub fn parse_figures(text: &str) -> Result<Vec<Figure>, String> {
    let mut figures: Vec<Figure> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        match kind {
            "figure" => {
                let (name, symbol) = rest
                    .rsplit_once(' ')
                    .ok_or_else(|| format!("line {number}: figure without a unit: {line:?}"))?;
                let unit = Unit::from_symbol(symbol)
                    .ok_or_else(|| format!("line {number}: unknown unit {symbol:?}"))?;
                if name.is_empty() || name.contains(' ') {
                    return Err(format!("line {number}: bad figure name {name:?}"));
                }
                figures.push(Figure::new(name, Samples::new(), unit));
            }
            "sample" => {
                let value: f64 = rest
                    .trim()
                    .parse()
                    .map_err(|_| format!("line {number}: bad sample {rest:?}"))?;
                let figure = figures
                    .last_mut()
                    .ok_or_else(|| format!("line {number}: sample before any figure"))?;
                figure.samples.push(value);
            }
            "note" => {
                let figure = figures
                    .last_mut()
                    .ok_or_else(|| format!("line {number}: note before any figure"))?;
                figure.note = Some(rest.to_owned());
            }
            "disturbed" => {
                let figure = figures
                    .last_mut()
                    .ok_or_else(|| format!("line {number}: disturbed before any figure"))?;
                figure.disturbed = true;
            }
            _ => {}
        }
    }
    Ok(figures)
}

/// Runs this program as a child measuring `entry` with `env` set, and returns its figures.
/// `quick` selects the child's scale.
pub fn run(entry: &str, quick: bool, env: &[(&str, &str)]) -> Result<Vec<Figure>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut command = std::process::Command::new(exe);
    command
        .arg(if quick { "--quick" } else { "--full-child" })
        .env(CHILD_FIGURE, entry);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command
        .output()
        .map_err(|e| format!("starting the child for {entry}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "the child measuring {entry} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let figures = parse_figures(&String::from_utf8_lossy(&output.stdout))?;
    if figures.iter().all(|figure| figure.samples.is_empty()) {
        return Err(format!("the child measuring {entry} printed no samples"));
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_survive_a_round_trip() {
        let figures = vec![
            Figure::new(
                "launch_complete",
                [152.7, 0.1 + 0.2, 1e-300].into_iter().collect(),
                Unit::Nanoseconds,
            )
            .with_note("first line\nsecond line"),
            Figure::new("work@72", [512.0].into_iter().collect(), Unit::Microseconds)
                .disturbed_if(true),
            Figure::new("empty", Samples::new(), Unit::Ratio),
        ];
        let parsed = parse_figures(&write_figures(&figures)).unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[0].name, "launch_complete");
        assert_eq!(parsed[0].unit, Unit::Nanoseconds);
        // Exact: the values print as the shortest round-tripping text.
        assert_eq!(parsed[0].samples.values(), &[152.7, 0.1 + 0.2, 1e-300]);
        assert_eq!(parsed[0].note.as_deref(), Some("first line"));
        assert_eq!(parsed[1].name, "work@72");
        assert_eq!(parsed[1].unit, Unit::Microseconds);
        assert_eq!(parsed[1].note, None);
        assert!(!parsed[0].disturbed && parsed[1].disturbed && !parsed[2].disturbed);
        assert!(parsed[2].samples.is_empty());
    }

    #[test]
    fn other_lines_are_ignored_and_errors_are_named() {
        let text = "warning: something\nfigure a ns\nsample 1\n\nsample 2\n";
        let parsed = parse_figures(text).unwrap();
        assert_eq!(parsed[0].samples.values(), &[1.0, 2.0]);
        assert!(
            parse_figures("sample 1\n")
                .unwrap_err()
                .contains("before any figure")
        );
        assert!(
            parse_figures("figure a ns\nsample x\n")
                .unwrap_err()
                .contains("line 2")
        );
        assert!(
            parse_figures("figure a parsecs\n")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_figures("figure ns\n").is_err());
    }
}
