//! `inger-bench`: measures inger's costs against a plain call, a bare context switch, a
//! thread and a process, in one run, and checks them against issue 2's targets.
//!
//! Usage: `inger-bench [--quick] [--only NAME[,NAME...]]`

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use inger_bench::figures::{ALL, Scale};
use inger_bench::report::Report;
use inger_bench::targets::{RATIOS, TARGETS};

const USAGE: &str = "usage: inger-bench [--quick] [--only NAME[,NAME...]]\n\
    --quick  fewer samples (finishes within a minute)\n\
    --only   run only the named figures (ratios and targets need both of their figures)";

struct Options {
    scale: Scale,
    only: Option<Vec<String>>,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        scale: Scale::Full,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.scale = Scale::Quick,
            // Internal: a child measuring a full-scale figure (see `launch_complete_shared_tls`).
            "--full-child" => options.scale = Scale::Full,
            "--only" => {
                let list = args.next().ok_or("--only needs a list of figure names")?;
                let names: Vec<String> = list.split(',').map(str::to_owned).collect();
                if let Some(unknown) = names
                    .iter()
                    .find(|name| !ALL.iter().any(|entry| entry.name == *name))
                {
                    let known: Vec<&str> = ALL.iter().map(|entry| entry.name).collect();
                    return Err(format!(
                        "unknown figure {unknown:?}; known: {}",
                        known.join(", ")
                    ));
                }
                options.only = Some(names);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("inger-bench: {message}");
            }
            eprintln!("{USAGE}");
            return if message.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    if let Ok(name) = std::env::var(inger_bench::figures::lifecycle::CHILD_FIGURE) {
        return run_child(&name, options.scale);
    }
    let started = Instant::now();
    let mode = match options.scale {
        Scale::Quick => "quick",
        Scale::Full => "full",
    };
    println!("# inger-bench ({mode} run): <name> <median> <p99> <unit>");
    let mut report = Report::new();
    for entry in ALL {
        if options
            .only
            .as_ref()
            .is_some_and(|only| !only.iter().any(|name| name == entry.name))
        {
            continue;
        }
        match (entry.measure)(options.scale) {
            Ok(figures) => {
                for figure in figures {
                    println!("{figure}");
                    report.push(figure);
                }
            }
            Err(error) => {
                eprintln!("inger-bench: {} failed: {error}", entry.name);
                return ExitCode::FAILURE;
            }
        }
        let _ = std::io::stdout().flush();
    }
    println!();
    println!("# ratios of medians");
    for line in RATIOS.iter().filter_map(|ratio| ratio.line(&report)) {
        println!("{line}");
    }
    println!();
    println!("# targets (issues 2, 3, 4; medians unless p99 is named)");
    for verdict in TARGETS.iter().filter_map(|target| target.check(&report)) {
        println!("{verdict}");
    }
    println!();
    println!("# took {:.1} s", started.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}

/// Child mode: measures one figure and prints its raw samples, one `sample <value>` per line.
fn run_child(name: &str, scale: Scale) -> ExitCode {
    let Some(entry) = ALL.iter().find(|entry| entry.name == name) else {
        eprintln!("inger-bench: unknown child figure {name:?}");
        return ExitCode::from(2);
    };
    match (entry.measure)(scale) {
        Ok(figures) => {
            for figure in figures {
                for value in figure.samples.values() {
                    println!("sample {value}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("inger-bench: {name} failed: {error}");
            ExitCode::FAILURE
        }
    }
}
