//! gnulib's own test suite (Debian's `gnulib` package), none of it written here, as a safety
//! net for inger: a test directory made by `gnulib-tool --create-testdir --with-tests` for a
//! broad set of modules, built by this test, and every test program run directly and under
//! `inger-run --slice 20us --wall-slices --stats`. Each program's result (exit status, stdout and stderr)
//! must be identical in both runs, except for the programs in [`KNOWN_DIFFERENCES`], which
//! must keep differing in the stated way; and the counters must show preemptions.
//!
//! The test programs are the ones `make check` runs (the `TESTS` of the test directory's
//! Makefile), with the environment gnulib's harness gives them (`TESTS_ENVIRONMENT`), from
//! the test directory. A program that gnulib skips (exit 77) must be skipped in both runs.
//! Test scripts (`test-foo.sh`) start their programs as `${CHECKER} ./test-foo`; under inger
//! the CHECKER is `suites/checker.sh`, which runs each program under `inger-run`. A script
//! that starts no program through the CHECKER is itself run under `inger-run`.
//!
//! The built directory is kept under the target directory, keyed by the module list and the
//! versions of gnulib, the compiler and the autotools, so a re-run only runs the programs.
//! Building it from nothing takes most of this test's time (gnulib-tool is a shell script
//! that forks for nearly everything); the module list is chosen to keep that to a few
//! minutes on two cores.

mod common;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::suite::{self, Comparison, KnownDifference, Run};
use common::{Report, SLICE, debian_program};

/// The gnulib modules whose tests run. By family:
/// - string: substring and character search, case-insensitive and multibyte comparison,
///   version comparison, signal and error names;
/// - stdio: the `*printf` family, including gnulib's own `vasnprintf`, and line reading;
/// - stdlib: number parsing and `qsort_r`;
/// - regex (POSIX and GNU regular expressions, glibc's own) and `fnmatch`;
/// - hash tables, lists and `tsearch`;
/// - time: `mktime`, `timegm`, `nstrftime`, `nanosleep`, `sleep`, `usleep`;
/// - locale and multibyte: `setlocale`, `localename`, `mbrtowc`, `wcwidth`;
/// - iconv: `iconv`, `striconv`, `striconveh`, and libunistring-style UTF-8 routines;
/// - threads and signals: locks, thread-local storage, threads, condition variables,
///   `sigaction`;
/// - the rest: base64, CRC, integer-to-string, bit counting, `fsync`.
///
/// Their dependencies and the dependencies' tests come along: 361 modules in all, 142 of
/// them test modules.
const MODULES: &[&str] = &[
    "strstr",
    "memmem",
    "memchr",
    "memrchr",
    "strcasestr",
    "strchrnul",
    "strndup",
    "strnlen",
    "rawmemchr",
    "strverscmp",
    "c-strcase",
    "mbsstr",
    "mbscasecmp",
    "strsignal",
    "strerror_r-posix",
    "vasprintf",
    "vasnprintf",
    "snprintf-posix",
    "getdelim",
    "getline",
    "strtod",
    "strtol",
    "strtoll",
    "strtoull",
    "strtoimax",
    "qsort_r",
    "regex",
    "fnmatch",
    "hash",
    "array-list",
    "linkedhash-list",
    "tsearch",
    "mktime",
    "timegm",
    "nstrftime",
    "setlocale",
    "localename",
    "mbrtowc",
    "wcwidth",
    "iconv",
    "striconv",
    "striconveh",
    "unistr/u8-strlen",
    "uniwidth/width",
    "lock",
    "tls",
    "thread",
    "cond",
    "sigaction",
    "nanosleep",
    "sleep",
    "usleep",
    "base64",
    "crc",
    "inttostr",
    "count-one-bits",
    "ffs",
    "integer_length",
    "filevercmp",
    "fsync",
];

/// Modules left out of the closure (`gnulib-tool --avoid`). `pselect` is a conditional
/// dependency of `nanosleep`, used only by gnulib's `nanosleep` for systems that have none.
/// Where the system's is replaced (here configure finds that glibc's mishandles sleeps of
/// more than 24 days), the replacement calls it in chunks and never `pselect`. With
/// `pselect` would come `select` and the socket modules: a third more modules, and minutes
/// more of gnulib-tool, for code that is not used on this system.
const AVOID: &[&str] = &["pselect"];

/// Changes whenever the build recipe below does, so that a cached directory built by an
/// older recipe is not reused.
const RECIPE: &str = "gnulib-suite recipe 1";

/// The longest any one run of a test program may take (the slowest, test-lock, takes
/// seconds; a hang is reported as a result).
const TIMEOUT: Duration = Duration::from_secs(300);

/// Programs whose result under inger-run differs from a direct run because of an open issue.
/// Each must keep differing in the stated way ([`Shows::Always`]) or match or differ in that
/// way ([`Shows::Sometimes`]); see `suite::assert_same_results`.
///
/// None since issue 17: the six programs listed here before (`test-usleep`,
/// `test-sigprocmask`, `test-pthread_sigmask1`, `test-pthread_sigmask2`, `test-cond`,
/// `test-nanosleep`) all had a sleep cut short by inger's signal; `inger-run` now runs
/// sleeps with the signal blocked (its `shield` module).
const KNOWN_DIFFERENCES: &[KnownDifference] = &[];

#[test]
fn gnulib_test_suite_runs_the_same_under_inger_run() {
    let started = Instant::now();
    let testdir = TestDir::get();
    let built = started.elapsed();
    let checker = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/suites/checker.sh");
    let programs = testdir.programs();
    assert!(
        programs.len() >= 100,
        "only {} test programs in {}",
        programs.len(),
        testdir.tests.display()
    );

    let runs_started = Instant::now();
    let results = suite::parallel(&programs, suite::workers(), |program| {
        let direct = testdir.run_direct(program);
        let under = testdir.run_under_inger(program, &checker);
        (direct, under)
    });
    let ran = runs_started.elapsed();

    let mut comparisons = Vec::new();
    let mut total = Report::default();
    let mut preempted_programs = 0;
    let mut missing_reports = Vec::new();
    let mut table = String::new();
    let mut direct_time = Duration::ZERO;
    let mut under_time = Duration::ZERO;
    for (program, (direct, under)) in programs.iter().zip(&results) {
        let preemptions: u64 = under.reports.iter().map(|r| r.preemptions).sum();
        for report in &under.reports {
            total.preemptions += report.preemptions;
            total.deferred_library += report.deferred_library;
            total.retries += report.retries;
        }
        if preemptions > 0 {
            preempted_programs += 1;
        }
        // A program run by inger-run itself (not through a script's CHECKER) that exits
        // normally prints exactly one report.
        if program.kind != Kind::CheckerScript
            && under.outcome.status.starts_with("exit ")
            && under.reports.len() != 1
        {
            missing_reports.push(format!(
                "{} ({} reports)",
                program.name,
                under.reports.len()
            ));
        }
        direct_time += direct.elapsed;
        under_time += under.elapsed;
        let _ = writeln!(
            table,
            "{:<32} {:<10} {:>8.2} s {:>8.2} s {:>9} preemptions",
            program.name,
            direct.outcome.status,
            direct.elapsed.as_secs_f64(),
            under.elapsed.as_secs_f64(),
            preemptions
        );
        comparisons.push(Comparison {
            program: program.name.clone(),
            direct: direct.outcome.clone(),
            under: under.outcome.clone(),
        });
    }
    let skipped = results
        .iter()
        .filter(|(direct, _)| direct.outcome.status == "exit 77")
        .count();
    eprintln!(
        "gnulib suite: {} test programs ({skipped} skipped by gnulib) from {} modules; \
         build {:.1} s, runs {:.1} s ({} at a time; {:.1} s directly, {:.1} s under \
         inger-run, summed); {preempted_programs} programs preempted; totals: {total:?}\n\
         {:<32} {:<10} {:>10} {:>10}\n{table}",
        programs.len(),
        MODULES.len(),
        built.as_secs_f64(),
        ran.as_secs_f64(),
        suite::workers(),
        direct_time.as_secs_f64(),
        under_time.as_secs_f64(),
        "program",
        "direct",
        "direct",
        "inger-run",
    );

    let known = suite::assert_same_results("gnulib", &comparisons, KNOWN_DIFFERENCES);
    eprintln!("gnulib suite: known differences seen: {known:?}");
    assert!(
        missing_reports.is_empty(),
        "programs without exactly one --stats report: {missing_reports:?}"
    );
    // Most programs finish within a few slices (many before the first one ends); the ones
    // that compute are preempted thousands of times, and tens of programs at least once.
    assert!(total.preemptions >= 10_000, "{total:?}");
    assert!(
        preempted_programs >= 20,
        "only {preempted_programs} programs were preempted"
    );
}

/// How a test program is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A compiled program.
    Binary,
    /// A shell script that starts its programs as `${CHECKER} ./program`.
    CheckerScript,
    /// A shell script that does not use the CHECKER: run under inger-run as a whole.
    Script,
}

/// One entry of the test directory's `TESTS`.
#[derive(Debug, Clone)]
struct Program {
    name: String,
    kind: Kind,
}

/// A built gnulib test directory.
struct TestDir {
    /// The `gltests` directory: the programs and the directory they run in.
    tests: PathBuf,
    /// `TESTS_ENVIRONMENT`, as variables.
    env: Vec<(String, String)>,
    /// `TESTS`.
    names: Vec<String>,
}

impl TestDir {
    /// The cached test directory for [`MODULES`], built first if needed.
    fn get() -> TestDir {
        let gnulib_tool = debian_program("gnulib-tool", "gnulib");
        let key = cache_key();
        let root = suite::target_dir("gnulib-suite").join(suite::digest(&key));
        let marker = root.join("BUILT");
        if fs::read_to_string(&marker).ok().as_deref() != Some(key.as_str()) {
            build(&gnulib_tool, &root, &key);
        } else {
            eprintln!("gnulib suite: reusing {}", root.display());
        }
        let tests = root.join("testdir/gltests");
        let print = root.join("print.mk");
        let make_print = |target: &str| {
            let output = Command::new("make")
                .args(["-s", "-f", "Makefile", "-f"])
                .arg(&print)
                .arg(target)
                .current_dir(&tests)
                .output()
                .expect("run make");
            assert!(output.status.success(), "make {target}: {output:?}");
            String::from_utf8(output.stdout).expect("UTF-8 from make")
        };
        let names: Vec<String> = make_print("print-tests")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let env = parse_assignments(&make_print("print-tests-environment"));
        TestDir { tests, env, names }
    }

    fn programs(&self) -> Vec<Program> {
        self.names
            .iter()
            .map(|name| {
                let path = self.tests.join(name);
                let bytes = fs::read(&path)
                    .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
                let kind = if !bytes.starts_with(b"#!") {
                    Kind::Binary
                } else if String::from_utf8_lossy(&bytes).contains("CHECKER}") {
                    Kind::CheckerScript
                } else {
                    Kind::Script
                };
                Program {
                    name: name.clone(),
                    kind,
                }
            })
            .collect()
    }

    /// A command for `program` in the test directory with the harness's environment.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command.current_dir(&self.tests).env_remove("CHECKER");
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    fn run_direct(&self, program: &Program) -> Run {
        let (reader, writer, _) = suite::stderr_pipe();
        let command = self.command(format!("./{}", program.name));
        suite::run_captured(command, (reader, writer), TIMEOUT)
    }

    fn run_under_inger(&self, program: &Program, checker: &Path) -> Run {
        let (reader, writer, identity) = suite::stderr_pipe();
        let command = match program.kind {
            Kind::Binary | Kind::Script => {
                let inger = suite::release_inger_run();
                let mut command = self.command(&inger.command);
                command
                    .arg("--preload")
                    .arg(&inger.preload)
                    .args(["--slice", SLICE, common::STORM_CLOCK, "--stats", "--"])
                    .arg(format!("./{}", program.name));
                command
            }
            Kind::CheckerScript => {
                let mut command = self.command(format!("./{}", program.name));
                command
                    .env("CHECKER", checker)
                    .env("INGER_SUITE_RUN", &suite::release_inger_run().command)
                    .env("INGER_SUITE_PRELOAD", &suite::release_inger_run().preload)
                    .env("INGER_SUITE_SLICE", SLICE)
                    .env("INGER_SUITE_STDERR", identity);
                command
            }
        };
        suite::run_captured(command, (reader, writer), TIMEOUT)
    }
}

/// Everything the built directory depends on: the recipe, the modules, the tools' versions
/// and the installed locales.
fn cache_key() -> String {
    let version = |program: &str, args: &[&str]| -> String {
        let output = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|error| panic!("run {program}: {error}"));
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    };
    // configure picks the locales the tests use (French, Japanese, Chinese, Turkish) from
    // the installed ones; a program whose locale is missing is skipped.
    let locales = Command::new("locale")
        .arg("-a")
        .output()
        .map(|output| {
            String::from_utf8_lossy(&output.stdout)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    format!(
        "{RECIPE}\nmodules: {}\navoid: {}\ngnulib: {}\ncc: {}\nautoconf: {}\nautomake: {}\nlocales: {locales}\n",
        MODULES.join(" "),
        AVOID.join(" "),
        version("dpkg-query", &["-W", "-f", "${Version}", "gnulib"]),
        version("cc", &["--version"]),
        version("autoconf", &["--version"]),
        version("automake", &["--version"]),
    )
}

/// Creates the test directory under `root` and builds it; writes `key` to `root/BUILT` last.
fn build(gnulib_tool: &Path, root: &Path, key: &str) {
    for program in [("autoconf", "autoconf"), ("automake", "automake")] {
        debian_program(program.0, program.1);
    }
    debian_program("gperf", "gperf");
    if root.exists() {
        fs::remove_dir_all(root).expect("remove an incomplete build");
    }
    fs::create_dir_all(root).expect("create the build directory");
    let cache = root.join("config.cache");
    // gnulib-tool runs configure once to generate some sources; the site file makes that run
    // fill a cache, which the real configure run below then reuses.
    let site = root.join("config.site");
    fs::write(&site, format!("cache_file={}\n", cache.display())).expect("write config.site");
    fs::write(
        root.join("print.mk"),
        "print-tests:\n\t@echo $(TESTS)\nprint-tests-environment:\n\t@echo '$(TESTS_ENVIRONMENT)'\n",
    )
    .expect("write print.mk");
    let testdir = root.join("testdir");
    let jobs = format!("-j{}", suite::workers().min(4));

    let mut create = Command::new(gnulib_tool);
    create
        .arg("--create-testdir")
        .arg(format!("--dir={}", testdir.display()))
        .args([
            "--single-configure",
            "--with-tests",
            "--without-privileged-tests",
        ])
        .args(AVOID.iter().map(|module| format!("--avoid={module}")))
        .args(MODULES)
        .env("CONFIG_SITE", &site)
        .current_dir(root);
    step(
        "gnulib-tool --create-testdir",
        create,
        &root.join("gnulib-tool.log"),
    );

    let mut configure = Command::new("./configure");
    configure
        .arg(format!("--cache-file={}", cache.display()))
        .env_remove("CONFIG_SITE")
        .current_dir(&testdir);
    step("configure", configure, &root.join("configure.log"));

    let mut make = Command::new("make");
    make.arg(&jobs).current_dir(&testdir);
    step("make", make, &root.join("make.log"));

    fs::write(root.join("BUILT"), key).expect("write the marker");
}

/// Runs one build step with its output in `log`; fails the test with the log's end.
fn step(name: &str, mut command: Command, log: &Path) {
    let started = Instant::now();
    let file = fs::File::create(log).expect("create a log");
    let status = command
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().expect("clone the log"))
        .stderr(file)
        .status()
        .unwrap_or_else(|error| panic!("{name}: cannot run {command:?}: {error}"));
    let text = fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(40).collect();
    assert!(
        status.success(),
        "{name} failed ({status}); the end of {}:\n{}",
        log.display(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    eprintln!(
        "gnulib suite: {name} took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Parses `NAME=value NAME='value' ...` (the harness's `TESTS_ENVIRONMENT`, which configure
/// writes as plain or single-quoted assignments).
fn parse_assignments(text: &str) -> Vec<(String, String)> {
    let mut assignments = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once('=')
            .unwrap_or_else(|| panic!("not an assignment in TESTS_ENVIRONMENT: {rest:?}"));
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "unexpected TESTS_ENVIRONMENT: {text:?}"
        );
        let (value, after) = if let Some(quoted) = after.strip_prefix('\'') {
            quoted
                .split_once('\'')
                .unwrap_or_else(|| panic!("unbalanced quote in TESTS_ENVIRONMENT: {text:?}"))
        } else {
            after.split_once(char::is_whitespace).unwrap_or((after, ""))
        };
        assert!(
            !value.contains(['"', '$', '`', '\\']),
            "TESTS_ENVIRONMENT needs a shell to parse: {text:?}"
        );
        assignments.push((name.to_owned(), value.to_owned()));
        rest = after.trim_start();
    }
    assignments
}
