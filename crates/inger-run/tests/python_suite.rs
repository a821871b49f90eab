//! CPython's own regression tests (Debian's `libpython3.11-testsuite`), none of them written
//! here: a chosen set of `python3 -m test` modules that exercise threads, signals, child
//! processes, I/O, `select`/`poll`/`epoll`, time and the interpreter's own computing, each
//! run directly and under `inger-run --slice 20us --wall-slices --stats`, with the interpreter's `main`
//! (and so every test, which runs on the main thread) preempted every slice.
//!
//! `suites/python_outcomes.py` runs one module the way `python3 -m test MODULE` does
//! (unittest's loader, no optional resources) and writes the outcome of every test case and
//! subtest. For each module, every test case's outcome must be the same in both runs (the
//! test output itself holds timings, so it is not compared), and the interpreter must finish
//! both runs the same way; except for the cases in [`KNOWN_DIFFERENCES`], which must keep
//! differing in the stated way (none today). The cases in [`EXCLUDED`] are not run (one,
//! for a bug of CPython's that can hang it).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::suite::{self, Comparison, KnownDifference, Outcome, Run};
use common::{Report, debian_program};

/// The modules (each runs in a process of its own, directly and under inger-run). The
/// longest, test_signal, comes first so that it does not end the suite alone.
const MODULES: &[&str] = &[
    // Signals: handlers, masks, set_wakeup_fd, itimers, siginterrupt, signals during I/O.
    "test_signal",
    // Threads, locks, thread-local data, signals delivered to threads.
    "test_queue",
    "test_thread",
    "test_threading_local",
    "test_threadsignals",
    // Waiting for file descriptors and for children.
    "test_poll",
    "test_select",
    "test_epoll",
    "test_wait4",
    "test_pty",
    // Files, buffered I/O, memory maps, locks.
    "test_fileio",
    "test_bufio",
    "test_fcntl",
    "test_mmap",
    // Clocks, sleeping, the scheduler module.
    "test_time",
    "test_sched",
    // The interpreter computing: regular expressions, struct packing, heaps, bisection,
    // context managers.
    "test_re",
    "test_struct",
    "test_heapq",
    "test_bisect",
    "test_contextlib",
];

/// Test cases that are not run.
///
/// `CSimpleQueueTest.test_basic` can hang for good, directly or under inger-run, because of a
/// bug in CPython 3.11's `_queue.SimpleQueue.get`: `q.get(timeout=1e-3)` on an empty queue
/// takes the queue's free lock without blocking, then recomputes the timeout from its
/// deadline; if the thread was delayed by more than the 1 ms in between, the timeout comes out
/// negative, which `PyThread_acquire_lock_timed` takes as "wait for ever", and nothing will
/// ever release the lock. A loaded machine (or a preemption at a bad moment on one) supplies
/// the delay: seen once in CI, at 300 s; reproduced every time by stopping the interpreter in
/// a debugger for a moment at that acquire (and not with a 0.5 s timeout, which outlasts the
/// stop). Not inger's signal: no system call is interrupted on that path.
///
/// No longer left out since issue 17: `test_time`'s `test_process_time` and
/// `test_thread_time`, which assert that a 100 ms `time.sleep` adds less than 20 ms to a CPU
/// clock, failed on some runs while slices were wall-clock time (a sleeping program was
/// interrupted every slice: 20-35 ms of CPU at 20 µs); slices are now CPU time and the sleep
/// runs with the signal blocked.
const EXCLUDED: &[(&str, &str)] = &[("test_queue", "test.test_queue.CSimpleQueueTest.test_basic")];

/// Test cases whose result under inger-run differs because of an open issue. None since
/// issue 17: `test_signal`'s `ItimerTest.test_itimer_real` failed because `signal.pause()`
/// returned at once, interrupted by inger's signal; `inger-run` now runs `pause` with the
/// signal blocked.
const KNOWN_DIFFERENCES: &[KnownDifference] = &[];

/// Runs at once. Most of the time of these modules is spent sleeping or waiting (test_signal
/// and test_poll alone wait for 60 s), so more runs than cores keep the suite short.
const WORKERS: usize = 4;

/// The longest one run of one module may take.
const TIMEOUT: Duration = Duration::from_secs(300);

#[test]
fn cpython_test_modules_give_the_same_results_under_inger_run() {
    let python = python();
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/suites/python_outcomes.py");
    let scratch = suite::target_dir(&format!("python-suite-{}", std::process::id()));
    fs::create_dir_all(&scratch).expect("create the scratch directory");

    let started = Instant::now();
    // Both runs of a module at once (each in a directory of its own; the tests' file names
    // hold the process id), modules in the order above, longest first.
    let jobs: Vec<(&str, bool)> = MODULES
        .iter()
        .flat_map(|module| [(*module, false), (*module, true)])
        .collect();
    let mut finished = suite::parallel(&jobs, WORKERS, |(module, under_inger)| {
        run_module(&python, &driver, &scratch, module, *under_inger)
    })
    .into_iter();
    let runs: Vec<(ModuleRun, ModuleRun)> = MODULES
        .iter()
        .map(|_| {
            let direct = finished.next().expect("a direct run");
            let under = finished.next().expect("a run under inger-run");
            (direct, under)
        })
        .collect();
    let elapsed = started.elapsed();

    let mut comparisons = Vec::new();
    let mut total = Report::default();
    let mut cases = 0;
    let mut table = String::new();
    for (module, (direct, under)) in MODULES.iter().zip(&runs) {
        assert_eq!(
            under.run.reports.len(),
            1,
            "{module}: expected one --stats report under inger-run; its stderr ends:\n{}",
            tail(&under.run.outcome.stderr)
        );
        let report = under.run.reports[0];
        total.preemptions += report.preemptions;
        total.deferred_library += report.deferred_library;
        total.retries += report.retries;
        table += &format!(
            "{module:<22} {:>5} cases {:>8.1} s {:>8.1} s {:>9} preemptions\n",
            direct.cases.len(),
            direct.run.elapsed.as_secs_f64(),
            under.run.elapsed.as_secs_f64(),
            report.preemptions
        );
        cases += direct.cases.len();
        comparisons.extend(compare_module(module, direct, under));
    }
    eprintln!(
        "python suite: {} modules, {cases} test cases, {:.1} s ({} at a time); totals under \
         inger-run: {total:?}\n{:<22} {:>11} {:>10} {:>10}\n{table}",
        MODULES.len(),
        elapsed.as_secs_f64(),
        WORKERS,
        "module",
        "",
        "direct",
        "inger-run"
    );
    let known = suite::assert_same_results("python", &comparisons, KNOWN_DIFFERENCES);
    eprintln!("python suite: known differences seen: {known:?}");
    assert!(cases >= 500, "only {cases} test cases ran");
    assert!(total.preemptions >= 10_000, "{total:?}");
    let _ = fs::remove_dir_all(&scratch);
}

/// Debian's interpreter and its test package (not another `python3` on `PATH`).
fn python() -> PathBuf {
    let python = debian_program("python3", "python3");
    let package_test = Path::new("/usr/lib/python3.11/test/test_signal.py");
    assert!(
        package_test.is_file(),
        "this test needs CPython's tests from the Debian package `libpython3.11-testsuite`, \
         which is not installed"
    );
    python
}

/// One module's run: how the interpreter ended, and each test case's outcome.
struct ModuleRun {
    run: Run,
    /// Test id, outcome, detail.
    cases: Vec<(String, String, String)>,
}

fn run_module(
    python: &Path,
    driver: &Path,
    scratch: &Path,
    module: &str,
    under_inger: bool,
) -> ModuleRun {
    let name = format!("{module}-{}", if under_inger { "inger" } else { "direct" });
    let cwd = scratch.join(&name);
    fs::create_dir_all(&cwd).expect("create a directory for the run");
    let results = scratch.join(format!("{name}.tsv"));
    let mut command = if under_inger {
        let mut command = suite::release_inger_run().with_stats();
        command.arg(python);
        command
    } else {
        Command::new(python)
    };
    command.arg(driver).arg(module).arg(&results);
    command.args(
        EXCLUDED
            .iter()
            .filter(|(m, _)| *m == module)
            .map(|(_, case)| case),
    );
    command.current_dir(&cwd);
    let (reader, writer, _) = suite::stderr_pipe();
    let run = suite::run_captured(command, (reader, writer), TIMEOUT);
    let cases = fs::read_to_string(&results)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let mut fields = line.splitn(3, '\t');
            let mut next = || fields.next().unwrap_or("").to_owned();
            (next(), next(), next())
        })
        .collect();
    let _ = fs::remove_dir_all(&cwd);
    ModuleRun { run, cases }
}

/// The comparisons of one module: the interpreter's end (an exit status of 0 or 1 is the
/// tests' verdict, compared case by case; anything else — a signal, a timeout, an error
/// before the tests ran — is compared as it is), and every test case.
fn compare_module(module: &str, direct: &ModuleRun, under: &ModuleRun) -> Vec<Comparison> {
    let ending = |run: &ModuleRun| Outcome {
        status: match run.run.outcome.status.as_str() {
            "exit 0" | "exit 1" if !run.cases.is_empty() => "finished".to_owned(),
            other => other.to_owned(),
        },
        detail: format!("stderr ends: {}", tail(&run.run.outcome.stderr)),
        ..Outcome::default()
    };
    let mut comparisons = vec![Comparison {
        program: module.to_owned(),
        direct: ending(direct),
        under: ending(under),
    }];
    let outcome = |run: &ModuleRun, id: &str| match run.cases.iter().find(|case| case.0 == id) {
        Some((_, outcome, detail)) => Outcome {
            status: outcome.clone(),
            detail: detail.clone(),
            ..Outcome::default()
        },
        None => Outcome {
            status: "not run".to_owned(),
            ..Outcome::default()
        },
    };
    let mut ids: Vec<&str> = direct
        .cases
        .iter()
        .chain(&under.cases)
        .map(|case| case.0.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        comparisons.push(Comparison {
            program: id.to_owned(),
            direct: outcome(direct, id),
            under: outcome(under, id),
        });
    }
    comparisons
}

/// The last 300 bytes of a stream, as text.
fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(300);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}
