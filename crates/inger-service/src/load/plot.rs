//! An SVG plot of benign latency over time, one panel per run, on a logarithmic scale; requests
//! not answered `200` are drawn as crosses along the top.

use std::fmt::Write as _;
use std::time::Duration;

use super::report::Row;

const WIDTH: f64 = 900.0;
const PANEL: f64 = 150.0;
const LEFT: f64 = 70.0;
const TOP: f64 = 30.0;

/// The plot of `rows` as an SVG document; latencies are drawn from 0.1 ms to `ceiling`.
pub fn svg(rows: &[Row], ceiling: Duration) -> String {
    let low = 1e-4f64.log10();
    let high = ceiling.as_secs_f64().max(1e-3).log10();
    let span = rows
        .iter()
        .filter_map(|row| row.samples.last())
        .map(|last| last.due.as_secs_f64())
        .fold(1e-3, f64::max);
    let plot_width = WIDTH - LEFT - 20.0;
    let height = TOP + rows.len() as f64 * (PANEL + 30.0) + 20.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="18" font-size="13">benign latency (log scale) over the run; red crosses: not answered 200</text>"#
    );
    for (index, row) in rows.iter().enumerate() {
        let top = TOP + index as f64 * (PANEL + 30.0) + 15.0;
        let y_of = |seconds: f64| {
            let fraction = ((seconds.max(1e-4).log10() - low) / (high - low)).clamp(0.0, 1.0);
            top + PANEL - fraction * PANEL
        };
        let _ = writeln!(
            out,
            r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#,
            top - 4.0,
            row.label()
        );
        let _ = writeln!(
            out,
            r##"<rect x="{LEFT}" y="{top}" width="{plot_width}" height="{PANEL}" fill="none" stroke="#888"/>"##
        );
        for decade in [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0] {
            if decade > ceiling.as_secs_f64() * 1.01 {
                continue;
            }
            let y = y_of(decade);
            let label = if decade < 1.0 {
                format!("{} ms", decade * 1e3)
            } else {
                format!("{decade} s")
            };
            let _ = writeln!(
                out,
                r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{label}</text>"##,
                LEFT + plot_width,
                LEFT - 4.0,
                y + 4.0
            );
        }
        for sample in row.samples.iter().filter(|sample| !sample.hostile) {
            let x = LEFT + sample.due.as_secs_f64() / span * plot_width;
            match sample.answer {
                Some((200, latency)) => {
                    let _ = writeln!(
                        out,
                        r##"<circle cx="{x:.1}" cy="{:.1}" r="1.3" fill="#1f5fbf"/>"##,
                        y_of(latency.as_secs_f64())
                    );
                }
                _ => {
                    let y = top + 4.0;
                    let _ = writeln!(
                        out,
                        r##"<path d="M{:.1} {:.1}l4 4m0 -4l-4 4" stroke="#d62728"/>"##,
                        x - 2.0,
                        y - 2.0
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{span:.0} s</text>"#,
            LEFT + plot_width,
            top + PANEL + 14.0
        );
    }
    out.push_str("</svg>\n");
    out
}
