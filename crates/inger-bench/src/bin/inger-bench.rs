//! `inger-bench`: measures inger's costs against a plain call, a bare context switch, a bare
//! POSIX timer and signal, a thread and a process, in one run, and checks them against the
//! issues' targets.
//!
//! Usage: `inger-bench [--quick] [--json] [--only NAME[,NAME...]]`

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use inger_bench::figures::{ALL, Scale, run_in_child};
use inger_bench::machine::Machine;
use inger_bench::output::Summary;
use inger_bench::report::Report;
use inger_bench::targets::floors;

const USAGE: &str = "usage: inger-bench [--quick] [--json] [--only NAME[,NAME...]]\n\
    --quick  fewer samples (well within a minute)\n\
    --json   print the table on stderr and one JSON document on stdout\n\
    --only   run only the named figures (ratios and targets need both of their figures)\n\
    exit status: 0 after a complete run (targets may MISS), 1 if a figure failed (the\n\
    others are still measured and reported),\n\
    2 for bad arguments, 3 if the run is invalid (its synthetic work is placement-dependent)";

struct Options {
    scale: Scale,
    json: bool,
    only: Option<Vec<String>>,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        scale: Scale::Full,
        json: false,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.scale = Scale::Quick,
            "--json" => options.json = true,
            // Internal: a child measuring a full-scale figure (see `inger_bench::child`).
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
    if let Ok(name) = std::env::var(inger_bench::child::CHILD_FIGURE) {
        return run_child(&name, options.scale);
    }
    // The table goes to stdout, or to stderr when stdout carries the JSON document.
    let mut table: Box<dyn Write> = if options.json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let started = Instant::now();
    let mode = match options.scale {
        Scale::Quick => "quick",
        Scale::Full => "full",
    };
    let machine = Machine::current();
    let _ = writeln!(table, "# inger-bench ({mode} run) on {machine}");
    let caps = inger::capabilities();
    let _ = writeln!(
        table,
        "# inger: private TLS {}, wrfsbase {}, preemption {}, std critical sections {}",
        caps.private_tls, caps.fast_tls_switch, caps.preemption, caps.std_critical_sections
    );
    if let Some(load) = machine
        .load_average
        .filter(|&load| load > machine.cpus as f64)
    {
        let _ = writeln!(
            table,
            "# warning: load average {load:.1} on {} CPUs: other processes share the CPUs, so tails (and some medians) measure the scheduler; figures are preliminary",
            machine.cpus
        );
    }
    let _ = writeln!(
        table,
        "# rows: <name> <median> <p90> <p99> <unit>; times in the unit shown, stored in ns"
    );
    let floors = floors();
    let mut report = Report::new();
    let mut failures = Vec::new();
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
                    let _ = writeln!(table, "{figure}");
                    report.push(figure);
                    let name = &report.figures()[report.figures().len() - 1].name;
                    for floor in floors.iter().filter(|floor| floor.figure == name) {
                        if let Some(comparison) = floor.compare(&report) {
                            let _ = writeln!(table, "#   vs floor: {comparison}");
                        }
                    }
                }
            }
            Err(error) => {
                // Reported, and the run goes on: the other figures still mean something.
                let message = error.to_string();
                eprintln!("inger-bench: {} failed: {message}", entry.name);
                let _ = writeln!(table, "{} FAILED: {}", entry.name, one_line(&message));
                failures.push((entry.name.to_owned(), message));
            }
        }
        let _ = table.flush();
    }
    let mut summary = Summary::of(&report);
    summary.failures = failures;
    let elapsed = started.elapsed().as_secs_f64();
    let _ = writeln!(table);
    let _ = write!(table, "{}", summary.text());
    let _ = writeln!(table);
    let _ = writeln!(table, "# took {elapsed:.1} s");
    let _ = table.flush();
    if options.json {
        let document = summary.json(&machine, mode, &report, elapsed);
        println!("{document:#}");
    }
    if !summary.failures.is_empty() {
        ExitCode::FAILURE
    } else if summary.valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

/// `text` on one line (a child's stderr may have several).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Child mode: measures one entry and prints its figures for the parent (see
/// `inger_bench::child`).
fn run_child(name: &str, scale: Scale) -> ExitCode {
    let Some(result) = run_in_child(name, scale) else {
        eprintln!("inger-bench: unknown child figure {name:?}");
        return ExitCode::from(2);
    };
    match result {
        Ok(figures) => {
            print!("{}", inger_bench::child::write_figures(&figures));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("inger-bench: {name} failed: {error}");
            ExitCode::FAILURE
        }
    }
}
