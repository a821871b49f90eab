//! Programs using inger under the tools people debug with (the README's "Debugging and
//! profiling"): gdb in batch mode runs a program with thousands of preemptions to completion
//! without stopping (inger's embedded gdb script passes the timer signal) and its `bt` inside
//! a migrated function shows the function's frames then the resumer's; valgrind's memcheck
//! runs the tour and a preemption storm with no error, no definite leak and no stack-switch
//! warning (inger registers its stacks).
//!
//! Each test needs its tool; without it (`scripts/test` installs both) the test says so on
//! stderr and passes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use common::{Linking, compile, libraries, run_command, target_dir, workspace_root};

/// Whether `tool --version` runs; if not, the test that needs it says so and is skipped.
fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        eprintln!("{tool} is not installed: skipped (scripts/test installs it)");
    }
    found
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The tour (`examples/tour.rs`), built in release mode once per test process.
fn tour() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let output = Command::new(cargo)
            .args([
                "build",
                "--release",
                "--package",
                "inger",
                "--example",
                "tour",
            ])
            .arg("--manifest-path")
            .arg(workspace_root().join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir())
            .stdin(Stdio::null())
            .output()
            .expect("run cargo");
        assert!(
            output.status.success(),
            "cargo build --release --example tour failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        target_dir().join("release/examples/tour")
    })
}

/// gdb in batch mode, as the README tells users to run it: the directory of the program or
/// library that carries inger's script is on gdb's auto-load safe path.
fn gdb(safe_path: &Path, commands: &[&str], program: &Path, args: &[&str]) -> Output {
    let mut command = Command::new("gdb");
    command
        .args([
            "-nx",
            "-batch",
            "-iex",
            "set debuginfod enabled off",
            "-iex",
        ])
        .arg(format!("add-auto-load-safe-path {}", safe_path.display()));
    for line in commands {
        command.args(["-ex", line]);
    }
    command.arg("--args").arg(program).args(args);
    run_command(&mut command)
}

/// The function names of gdb's `bt` lines (`#N  0x... in name (...)` or `#N  name (...)`).
fn backtrace_functions(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|line| line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.split_once(' ')?.1.trim_start();
            let rest = rest.split_once(" in ").map_or(rest, |(address, name)| {
                if address.starts_with("0x") {
                    name
                } else {
                    rest
                }
            });
            Some(rest.split(" (").next()?.to_owned())
        })
        .collect()
}

/// The backtraces printed by `bt` commands: for each, its frames' function names.
fn backtraces(stdout: &str) -> Vec<Vec<String>> {
    let mut traces: Vec<Vec<String>> = Vec::new();
    for line in stdout.lines() {
        if line.starts_with("#0 ") {
            traces.push(Vec::new());
        }
        if let Some(trace) = traces.last_mut() {
            trace.extend(backtrace_functions(line));
        }
    }
    traces
}

/// Asserts that `frames` holds frames starting with each of `expected`, in that order.
fn assert_frames_in_order(frames: &[String], expected: &[&str], describe: &str) {
    let mut from = 0;
    for name in expected {
        match frames[from..]
            .iter()
            .position(|frame| frame.starts_with(name))
        {
            Some(at) => from += at + 1,
            None => panic!(
                "no frame {name} after frame {from} (expected {expected:?} in order) in {frames:?}\n{describe}"
            ),
        }
    }
}

/// gdb stops nowhere but at the breakpoint: the timer signal passes silently. The backtraces
/// at the breakpoint show the function's frames, the entry trampoline, then the resumer's
/// frames: through a nested chain (two trampolines), and after a migration to another
/// thread; no unknown frame, no cut.
#[test]
fn gdb_runs_a_preempted_program_to_completion_and_backtraces_reach_the_resumer() {
    if !have("gdb") {
        return;
    }
    for linking in Linking::BOTH {
        let program = compile("debugged.c", linking, &[]);
        let safe = match linking {
            Linking::Dynamic => libraries().dir.clone(),
            Linking::Static => program.path().parent().expect("dir").to_path_buf(),
        };
        let output = gdb(
            &safe,
            // Temporary breakpoints: gdb need not step over them to continue (see the
            // README: a timer signal during that step can make gdb single-step forever).
            &[
                "tbreak nested_deep_inside",
                "tbreak deep_inside",
                "run",
                "bt",
                "continue",
                "bt",
                "continue",
            ],
            program.path(),
            &[],
        );
        let (stdout, stderr) = text(&output);
        let describe = format!("{linking:?}:\nstdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(output.status.success(), "{describe}");
        assert!(stdout.contains("debugged ok"), "{describe}");
        assert!(stdout.contains("exited normally"), "{describe}");
        assert!(!stdout.contains("received signal"), "{describe}");
        assert_eq!(
            stdout.matches("hit Temporary breakpoint").count(),
            2,
            "{describe}"
        );
        let traces = backtraces(&stdout);
        assert_eq!(traces.len(), 2, "{describe}");
        let trampoline = "inger_entry_trampoline";
        assert_frames_in_order(
            &traces[0],
            &[
                "nested_deep_inside",
                "work",
                trampoline,
                "inger_resume",
                "nested",
                trampoline,
                "inger_resume",
                "main",
            ],
            &describe,
        );
        assert_frames_in_order(
            &traces[1],
            &[
                "deep_inside",
                "work",
                trampoline,
                "inger_resume",
                "resume_here",
            ],
            &describe,
        );
        assert!(
            !traces[1].iter().any(|frame| frame == "main"),
            "the launcher's frames are gone after the migration: {describe}"
        );
        for trace in &traces {
            assert!(
                !trace.iter().any(|frame| frame.starts_with("??")),
                "unknown frames: {describe}"
            );
        }
        assert!(
            !stdout.contains("Backtrace stopped"),
            "a backtrace was cut: {describe}"
        );
    }
}

/// A signal the script could not know in advance (here set after the program was loaded):
/// gdb stops once, the script recognises inger's timer and passes it from then on.
#[test]
fn gdb_learns_a_timer_signal_chosen_at_run_time() {
    if !have("gdb") {
        return;
    }
    let program = compile("debugged.c", Linking::Static, &[]);
    let output = gdb(
        program.path().parent().expect("dir"),
        &["set environment INGER_SIGNAL SIGRTMAX-2", "run", "continue"],
        program.path(),
        &[],
    );
    let (stdout, stderr) = text(&output);
    let describe = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(output.status.success(), "{describe}");
    assert_eq!(
        stdout.matches("received signal SIG62").count(),
        1,
        "{describe}"
    );
    assert!(
        stdout.contains("inger: SIG62 is inger's timer signal"),
        "{describe}"
    );
    assert!(stdout.contains("debugged ok"), "{describe}");
    assert!(stdout.contains("exited normally"), "{describe}");
}

/// What the script is there for: without it gdb stops at the first preemption.
#[test]
fn without_the_script_gdb_stops_at_the_timer_signal() {
    if !have("gdb") {
        return;
    }
    let program = compile("debugged.c", Linking::Dynamic, &[]);
    let mut command = Command::new("gdb");
    command
        .args(["-nx", "-batch", "-iex", "set debuginfod enabled off"])
        .args(["-iex", "set auto-load python-scripts off", "-ex", "run"])
        .arg("--args")
        .arg(program.path());
    let output = run_command(&mut command);
    let (stdout, stderr) = text(&output);
    assert!(
        stdout.contains("received signal SIG60"),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

/// A Rust program carries the script too (the core crate's `debugger_visualizer`).
#[test]
fn gdb_runs_the_tour_to_completion() {
    if !have("gdb") {
        return;
    }
    let tour = tour();
    let output = gdb(tour.parent().expect("dir"), &["run"], tour, &[]);
    let (stdout, stderr) = text(&output);
    let describe = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(output.status.success(), "{describe}");
    assert!(stdout.contains("counters:"), "{describe}");
    assert!(stdout.contains("exited normally"), "{describe}");
    assert!(!stdout.contains("received signal"), "{describe}");
}

/// memcheck on `program`: no error, no definite leak, and no warning at all (a stack switch
/// into an unregistered stack warns "client switching stacks?").
fn assert_memcheck_clean(program: &Path, args: &[&str], expected: &str) {
    let mut command = Command::new("valgrind");
    command
        .args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--show-leak-kinds=definite",
            "--errors-for-leak-kinds=definite",
        ])
        .arg(program)
        .args(args);
    let output = run_command(&mut command);
    let (stdout, stderr) = text(&output);
    let describe = format!(
        "valgrind {}:\nstdout:\n{stdout}\nstderr:\n{stderr}",
        program.display()
    );
    assert!(output.status.success(), "{describe}");
    assert!(stdout.contains(expected), "{describe}");
    assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "{describe}");
    assert!(!stderr.contains("definitely lost in"), "{describe}");
    assert!(!stderr.contains("Warning"), "{describe}");
    assert!(!stderr.contains("switching stacks"), "{describe}");
}

#[test]
fn memcheck_runs_the_tour_clean() {
    if !have("valgrind") {
        return;
    }
    assert_memcheck_clean(tour(), &[], "counters:");
}

#[test]
fn memcheck_runs_a_preemption_storm_and_a_migration_clean() {
    if !have("valgrind") {
        return;
    }
    let storm = compile("storm.c", Linking::Dynamic, &["-fstack-protector-all"]);
    assert_memcheck_clean(storm.path(), &[], "storm ok");
    let debugged = compile("debugged.c", Linking::Dynamic, &[]);
    assert_memcheck_clean(debugged.path(), &["quick"], "debugged ok");
}
