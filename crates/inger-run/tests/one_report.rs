//! `--inherit --stats`: every process under inger counts into one ledger and the top-level
//! process writes one summed report to the top-level stderr (or `--stats-file`), so a child's
//! stderr is exactly what it would be without inger-run; processes that outlive the
//! top-level one, or are killed, are still accounted for.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{debian_program, describe, inger_run, split_reports};

fn run(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .expect("run the command")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A directory of its own for this test process, used as TMPDIR so that the ledger can be
/// checked for removal.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn ledgers_in(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "ledger"))
        .collect()
}

/// A shell script that captures a child's stderr and prints it: the output of programs that
/// read their children's stderr (test runners, `2>&1 | ...`).
const CAPTURE: &str = r#"
err=$(/bin/sh -c 'echo "child says hello" >&2; /usr/bin/printf "%s\n" "to stdout" >/dev/null' 2>&1)
printf 'captured: [%s]\n' "$err"
printf 'b\na\nc\n' | /usr/bin/sort -r >&2
"#;

#[test]
fn a_childs_stderr_is_byte_identical_with_inherit_and_stats() {
    let sh = debian_program("sh", "dash");
    let direct = run(Command::new(&sh).args(["-c", CAPTURE]));
    let tmp = scratch_dir("capture");
    let under = run(inger_run()
        .env("TMPDIR", &tmp)
        .args(["--inherit", "--stats", "--slice", common::SLICE, "--"])
        .arg(&sh)
        .args(["-c", CAPTURE]));
    let stderr = text(&under.stderr);
    assert_eq!(describe(under.status), describe(direct.status), "{stderr}");
    // Before the ledger, the child's own report was captured here.
    assert_eq!(text(&under.stdout), text(&direct.stdout), "{stderr}");
    let (own, reports) = split_reports(&under.stderr);
    assert_eq!(text(&own), text(&direct.stderr), "sort's stderr, untouched");
    assert_eq!(reports.len(), 1, "one report, the top-level one:\n{stderr}");
    // sh, its child sh, printf, sort (forked copies are processes, not programs).
    assert_eq!(reports[0].programs, Some(4), "{stderr}");
    assert!(
        ledgers_in(&tmp).is_empty(),
        "the ledger is removed at the end"
    );
    fs::remove_dir_all(tmp).unwrap();
}

#[test]
fn a_stats_file_leaves_stderr_alone_and_lists_processes_on_request() {
    let sh = debian_program("sh", "dash");
    let tmp = scratch_dir("stats-file");
    let report = tmp.join("report.txt");
    let direct = run(Command::new(&sh).args(["-c", CAPTURE]));
    let under = run(inger_run()
        .env("TMPDIR", &tmp)
        .arg("--inherit")
        .arg("--stats-per-process")
        .arg(format!("--stats-file={}", report.display()))
        .arg("--")
        .arg(&sh)
        .args(["-c", CAPTURE]));
    assert_eq!(describe(under.status), describe(direct.status));
    assert_eq!(under.stdout, direct.stdout);
    assert_eq!(
        under.stderr, direct.stderr,
        "nothing of inger-run's on stderr"
    );
    let written = fs::read_to_string(&report).expect("the report file");
    assert!(
        written.starts_with("inger-run: statistics of 4 programs under inger"),
        "{written}"
    );
    let per_process: Vec<&str> = written
        .lines()
        .filter(|line| line.starts_with("inger-run:   pid "))
        .collect();
    // The four programs, and the forked copies of sh that ran the command substitution and
    // the pipeline's printf.
    assert!(per_process.len() >= 4, "{written}");
    for program in ["dash", "printf", "sort"] {
        assert!(
            per_process.iter().any(|line| line.contains(program)),
            "no line for {program}:\n{written}"
        );
    }
    assert!(
        per_process.iter().all(|line| !line.ends_with("running")),
        "{written}"
    );
    assert!(ledgers_in(&tmp).is_empty());
    fs::remove_dir_all(tmp).unwrap();
}

#[test]
fn processes_that_outlive_the_top_level_one_complete_the_stats_file() {
    let sh = debian_program("sh", "dash");
    let tmp = scratch_dir("outlive");
    let report = tmp.join("report.txt");
    let marker = tmp.join("straggler-done");
    // The background job waits until the top-level shell has gone, then runs more programs
    // under inger and finishes.
    let script = format!(
        "( while kill -0 $$ 2>/dev/null; do /usr/bin/sleep 0.05; done; /usr/bin/true; \
           /usr/bin/touch {} ) >/dev/null 2>&1 & echo started",
        marker.display()
    );
    let under = run(inger_run()
        .env("TMPDIR", &tmp)
        .args(["--inherit", "--stats-per-process", "--stats-file"])
        .arg(&report)
        .arg("--")
        .arg(&sh)
        .args(["-c", &script]));
    assert!(under.status.success());
    assert_eq!(text(&under.stdout), "started\n");
    let first = fs::read_to_string(&report).expect("the top-level report");
    assert!(
        first.contains("still running") && first.contains("counted up to now"),
        "the top-level report says a process is still running:\n{first}"
    );
    // The last process rewrites the file; wait for it (a hang is a failure, not a timing
    // assertion: the straggler needs well under a second).
    let limit = Instant::now() + Duration::from_secs(60);
    let last = loop {
        let now = fs::read_to_string(&report).unwrap_or_default();
        if marker.exists() && !now.contains("still running") && ledgers_in(&tmp).is_empty() {
            break now;
        }
        assert!(
            Instant::now() < limit,
            "the final report never came:\n{now}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let count = |report: &str| {
        report
            .strip_prefix("inger-run: statistics of ")
            .and_then(|rest| rest.split_once(' '))
            .and_then(|(count, _)| count.parse::<u32>().ok())
            .unwrap_or(0)
    };
    // The straggler's true and touch are in the final count, with its sleeps.
    assert!(
        count(&last) >= count(&first) + 2,
        "first:\n{first}\nlast:\n{last}"
    );
    assert!(last.contains("touch"), "{last}");
    fs::remove_dir_all(tmp).unwrap();
}

#[test]
fn killed_processes_and_programs_outside_inger_are_accounted_for() {
    let sh = debian_program("sh", "dash");
    let tmp = scratch_dir("vanished");
    // A child killed by SIGKILL never ends its slot; ldconfig is statically linked, so the
    // shell that execs it leaves inger.
    let script =
        "/bin/sh -c 'kill -KILL $$'; /bin/sh -c 'exec /sbin/ldconfig --version' >/dev/null; exit 0";
    let under = run(inger_run()
        .env("TMPDIR", &tmp)
        .args(["--inherit", "--stats", "--stats-per-process", "--"])
        .arg(&sh)
        .args(["-c", script]));
    let stderr = text(&under.stderr);
    assert!(under.status.success(), "{stderr}");
    assert!(stderr.contains("vanished (killed by a signal)"), "{stderr}");
    assert!(stderr.contains("left inger"), "{stderr}");
    assert!(
        stderr.contains("exec'd ldconfig (without inger)"),
        "{stderr}"
    );
    assert!(ledgers_in(&tmp).is_empty(), "{:?}", ledgers_in(&tmp));
    fs::remove_dir_all(tmp).unwrap();
}

#[test]
fn without_inherit_a_stats_file_gets_the_one_report() {
    let sh = debian_program("sh", "dash");
    let tmp = scratch_dir("single-file");
    let report = tmp.join("report.txt");
    let script = "echo out; echo err >&2; /usr/bin/true";
    let direct = run(Command::new(&sh).args(["-c", script]));
    let under = run(inger_run()
        .arg("--stats-file")
        .arg(&report)
        .arg("--")
        .arg(&sh)
        .args(["-c", script]));
    assert!(under.status.success());
    assert_eq!(under.stdout, direct.stdout);
    assert_eq!(
        under.stderr, direct.stderr,
        "nothing of inger-run's on stderr"
    );
    let written = fs::read_to_string(&report).expect("the report file");
    assert!(
        written.starts_with("inger-run: statistics of pid "),
        "{written}"
    );
    assert_eq!(split_reports(written.as_bytes()).1.len(), 1, "{written}");

    // A file that cannot be written is a usage error, before the program runs.
    let bad = run(inger_run()
        .args(["--stats-file", "/nonexistent-dir/report.txt", "--"])
        .arg(&sh)
        .args(["-c", "echo ran"]));
    assert_eq!(describe(bad.status), "exit 125");
    assert!(bad.stdout.is_empty(), "the program must not have run");
    assert!(
        text(&bad.stderr).contains("cannot write the --stats-file"),
        "{}",
        text(&bad.stderr)
    );
    fs::remove_dir_all(tmp).unwrap();
}
