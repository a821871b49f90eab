//! `inger-run [--slice 50us] [--wall-slices] [--stats] [--stats-file PATH] [--stats-per-process] [--inherit] [--private-tls] [--preload PATH] [--] PROGRAM [ARGS...]`
//!
//! Runs an unmodified program with its `main` inside a preemptible function that is preempted
//! every slice and resumed at once (see the preload library's docs for how). A slice is
//! `main`'s CPU time unless `--wall-slices` asks for wall-clock time. This command only
//! prepares the environment and then *replaces itself* with the program (`execve`, not a
//! child process), so the program has inger-run's process id, parent, standard streams, signal
//! dispositions and signal mask, and its exit status or fatal signal is what the caller sees.
//!
//! For that reason this binary has no Rust `main` (`#![no_main]`): Rust's start-up code would
//! ignore `SIGPIPE` and its `Command` would reset the signal mask before exec, and both would
//! leak into the program. Here nothing touches signal state at all.
//!
//! Before the exec it checks what the library will need and could not report itself: the
//! `--stats-file` is created (empty) so that a path that cannot be written is a usage error,
//! and with `--inherit --stats` the run's ledger (`ledger.rs`) is created in `$TMPDIR`; the
//! library gets both, the program's pid (the top of the tree) and, for a script, its path,
//! through the environment (`protocol.rs`).
//!
//! Exit statuses of the command's own failures (the program never started), following `env`
//! and `timeout`: 125 bad usage, a missing library, or a stats file or ledger that cannot be
//! created, 126 a program that cannot be run under inger (refused, or exec failed), 127 a
//! program that was not found.

// The unit tests need the test harness's `main`, so the entry point is compiled out of them.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(
    test,
    allow(dead_code, reason = "the entry point is compiled out of unit tests")
)]

mod cli;
mod locate;
mod program;

#[path = "../ledger.rs"]
mod ledger;
#[path = "../protocol.rs"]
mod protocol;
#[path = "../target.rs"]
mod target;

use core::ffi::{c_char, c_int};
use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use cli::{Options, Request};
use program::Problem;

const USAGE_FAILURE: c_int = 125;
const CANNOT_EXECUTE: c_int = 126;
const NOT_FOUND: c_int = 127;

/// A failure of the command itself, with its exit status.
struct Failure {
    status: c_int,
    message: String,
}

impl Failure {
    fn new(status: c_int, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }
}

/// The C entry point (see the module docs for why there is no Rust `main`).
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    match run() {
        Ok(status) => status,
        Err(failure) => {
            eprintln!("inger-run: {}", failure.message);
            failure.status
        }
    }
}

/// Returns only on `--help`/`--version` or failure; otherwise the process becomes the program.
fn run() -> Result<c_int, Failure> {
    let request = cli::parse(std::env::args_os().skip(1))
        .map_err(|message| Failure::new(USAGE_FAILURE, format!("{message}\n{}", cli::USAGE)))?;
    let options = match request {
        Request::Help => {
            print!("{}", cli::USAGE);
            return Ok(0);
        }
        Request::Version => {
            println!("inger-run {}", env!("CARGO_PKG_VERSION"));
            return Ok(0);
        }
        Request::Run(options) => options,
    };
    let library = locate::preload_library(options.preload.as_deref())
        .map_err(|message| Failure::new(USAGE_FAILURE, message))?;
    let shown = options.program.to_string_lossy().into_owned();
    let path = program::resolve(&options.program).map_err(|problem| describe(&shown, problem))?;
    program::check(&path).map_err(|problem| describe(&shown, problem))?;
    let run = prepare_run(&options, &path)?;
    let error = exec(&path, &options, &library, &run);
    if let Some(ledger) = &run.ledger {
        let _ = std::fs::remove_file(ledger);
    }
    let status = if error.kind() == std::io::ErrorKind::NotFound {
        NOT_FOUND
    } else {
        CANNOT_EXECUTE
    };
    Err(Failure::new(
        status,
        format!("cannot execute {shown}: {error}"),
    ))
}

fn describe(program: &str, problem: Problem) -> Failure {
    match problem {
        Problem::NotFound => Failure::new(NOT_FOUND, format!("{program}: command not found")),
        Problem::Refused(reason) => Failure::new(
            CANNOT_EXECUTE,
            format!("refusing to run {program}: {reason}"),
        ),
    }
}

/// What the library needs to know about this run besides the options.
struct Run {
    /// The ledger of the run's processes (`--inherit` with `--stats`).
    ledger: Option<PathBuf>,
    /// The stats file, absolute (the program may change directory).
    stats_file: Option<PathBuf>,
    /// The program's path when it is a script.
    script: Option<PathBuf>,
}

/// Checks the stats file (created empty now, so that a mistake shows before the program
/// runs) and creates the ledger.
fn prepare_run(options: &Options, path: &Path) -> Result<Run, Failure> {
    let stats_file = match &options.stats_file {
        Some(file) => {
            let absolute = std::path::absolute(file).map_err(|error| {
                Failure::new(
                    USAGE_FAILURE,
                    format!("--stats-file {}: {error}", file.display()),
                )
            })?;
            std::fs::File::create(&absolute).map_err(|error| {
                Failure::new(
                    USAGE_FAILURE,
                    format!(
                        "cannot write the --stats-file {}: {error}",
                        absolute.display()
                    ),
                )
            })?;
            Some(absolute)
        }
        None => None,
    };
    let ledger = if options.inherit && options.stats {
        let dir = std::env::temp_dir();
        let root_pid = i32::try_from(std::process::id()).unwrap_or(0);
        Some(ledger::create(&dir, root_pid).map_err(|error| {
            Failure::new(
                USAGE_FAILURE,
                format!(
                    "cannot create the statistics ledger of --inherit --stats in {}: {error} \
                     (set TMPDIR to a writable directory)",
                    dir.display()
                ),
            )
        })?)
    } else {
        None
    };
    let script = (options.stats && program::is_script(path))
        .then(|| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()));
    Ok(Run {
        ledger,
        stats_file,
        script,
    })
}

/// Replaces this process with the program; returns only if `execve` failed.
fn exec(path: &Path, options: &Options, library: &Path, run: &Run) -> std::io::Error {
    let mut argv = vec![options.program.clone()];
    argv.extend(options.args.iter().cloned());
    let (Some(c_path), Some(argv), Some(envp)) = (
        c_string(path.as_os_str()),
        c_strings(argv),
        c_strings(environment(options, library, run)),
    ) else {
        return std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "an argument contains a NUL byte",
        );
    };
    let mut argv_ptrs: Vec<*const c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    // SAFETY: all three are NUL-terminated strings / null-terminated arrays of them, alive
    // across the call.
    unsafe { libc::execve(c_path.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
    std::io::Error::last_os_error()
}

/// The program's environment: ours, with the library appended to `LD_PRELOAD` (in place, so
/// the order of variables is kept) and the settings for the library added.
fn environment(options: &Options, library: &Path, run: &Run) -> Vec<OsString> {
    let ours = protocol::ALL;
    let existing = std::env::var_os("LD_PRELOAD");
    let preload = locate::ld_preload_value(existing.as_ref(), library);
    let mut entries = Vec::new();
    let mut placed = false;
    for (name, value) in std::env::vars_os() {
        if ours.iter().any(|ours| name == OsStr::new(ours)) {
            continue;
        }
        if name == "LD_PRELOAD" {
            entries.push(pair("LD_PRELOAD", &preload));
            placed = true;
        } else {
            entries.push(pair(&name, &value));
        }
    }
    if !placed {
        entries.push(pair("LD_PRELOAD", &preload));
    }
    let slice_ns = u64::try_from(options.slice.as_nanos()).unwrap_or(u64::MAX);
    entries.push(pair(protocol::SLICE_NS, slice_ns.to_string()));
    if options.wall_slices {
        entries.push(pair(protocol::WALL_SLICES, "1"));
    }
    if options.stats {
        entries.push(pair(protocol::STATS, "1"));
    }
    if let Some(file) = &run.stats_file {
        entries.push(pair(protocol::STATS_FILE, file));
    }
    if options.per_process {
        entries.push(pair(protocol::STATS_PER_PROCESS, "1"));
    }
    if let Some(ledger) = &run.ledger {
        entries.push(pair(protocol::LEDGER, ledger));
        entries.push(pair(protocol::ROOT_PID, std::process::id().to_string()));
    }
    if let Some(script) = &run.script {
        entries.push(pair(protocol::SCRIPT, script));
    }
    if options.inherit {
        entries.push(pair(protocol::INHERIT, "1"));
    }
    if options.private_tls {
        entries.push(pair(protocol::PRIVATE_TLS, "1"));
    }
    if let Some(existing) = existing {
        entries.push(pair(protocol::SAVED_LD_PRELOAD, existing));
    }
    entries
}

fn pair(name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> OsString {
    let mut entry = name.as_ref().to_os_string();
    entry.push("=");
    entry.push(value.as_ref());
    entry
}

fn c_string(text: &OsStr) -> Option<CString> {
    CString::new(text.as_bytes()).ok()
}

fn c_strings(texts: Vec<OsString>) -> Option<Vec<CString>> {
    texts
        .into_iter()
        .map(|text| CString::new(text.into_vec()).ok())
        .collect()
}
