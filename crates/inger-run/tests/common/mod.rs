//! Helpers shared by the integration tests: the command under test, Debian programs, a
//! generated input, and a direct-versus-inger comparison.

#![allow(dead_code, reason = "each test binary uses a subset")]

pub(crate) mod suite;

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;

/// The `inger-run` executable built for these tests, told where the preload library is.
pub(crate) fn inger_run() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_inger-run"));
    command.env("INGER_RUN_PRELOAD", preload_library());
    command
}

/// The preload library built with the command: next to it after `cargo build`, in `deps/`
/// after `cargo test` (which builds it as a dependency of the tests).
pub(crate) fn preload_library() -> PathBuf {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_inger-run"))
        .parent()
        .expect("a directory");
    let candidates = [
        bin_dir.join("deps/libinger_preload.so"),
        bin_dir.join("libinger_preload.so"),
    ];
    let newest = candidates
        .iter()
        .filter_map(|path| Some((fs::metadata(path).ok()?.modified().ok()?, path)))
        .max();
    match newest {
        Some((_, path)) => path.clone(),
        None => panic!(
            "libinger_preload.so was not built next to {}",
            bin_dir.display()
        ),
    }
}

/// The slice used by the storm tests: small, so that inputs of tens of MB see thousands of
/// preemptions.
pub(crate) const SLICE: &str = "20us";

/// The clock option of the storm tests, which count preemptions: wall-clock slices. With
/// CPU-time slices (the default) on a loaded machine, a thread that was descheduled looks
/// like one that waited, and the core hands its budget to the CPU-clock timer, which fires at
/// the scheduler's tick at best: `gzip -9` on the test input was preempted 33 times instead of
/// 90,000 while the other tests ran. The output comparisons hold either way.
pub(crate) const STORM_CLOCK: &str = "--wall-slices";

/// A program installed by a Debian package, by its absolute path in `/usr/bin` or `/bin`.
/// Fails the test (never skips it) when the package is missing.
pub(crate) fn debian_program(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/bin"] {
        let path = Path::new(dir).join(name);
        if path.is_file() {
            return path;
        }
    }
    panic!(
        "this test needs `{name}` from the Debian package `{package}`, which is not installed: \
         .ci/run must `apt-get install -y {package}`"
    );
}

/// Bytes of generated input.
pub(crate) const INPUT_SIZE: usize = 24 << 20;

/// A deterministic, compressible-ish text of [`INPUT_SIZE`] bytes: lines of words drawn from
/// a fixed pseudo-random vocabulary, then a number. Written once into the target's temporary
/// directory and shared by all tests (and test binaries: the file name carries a version and
/// appears atomically).
pub(crate) fn text_input() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("inger-run-input-v1.txt");
        if fs::metadata(&path).is_ok_and(|m| m.len() >= INPUT_SIZE as u64) {
            return path;
        }
        let staging = path.with_extension(format!("tmp{}", std::process::id()));
        fs::write(&staging, generate_text(INPUT_SIZE)).expect("write the test input");
        fs::rename(&staging, &path).expect("publish the test input");
        path
    })
}

/// The same input compressed by `gzip -9` (for the decompression tests).
pub(crate) fn gzip_input() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("inger-run-input-v1.txt.gz");
        if path.is_file() {
            return path;
        }
        let gzip = debian_program("gzip", "gzip");
        let staging = path.with_extension(format!("tmp{}", std::process::id()));
        let output = Command::new(gzip)
            .arg("-9")
            .stdin(fs::File::open(text_input()).expect("open input"))
            .output()
            .expect("run gzip");
        assert!(output.status.success(), "gzip failed: {output:?}");
        fs::write(&staging, output.stdout).expect("write the compressed input");
        fs::rename(&staging, &path).expect("publish the compressed input");
        path
    })
}

fn generate_text(size: usize) -> Vec<u8> {
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let vocabulary: Vec<Vec<u8>> = (0..4096)
        .map(|_| {
            let length = 2 + (next() % 9) as usize;
            (0..length).map(|_| b'a' + (next() % 26) as u8).collect()
        })
        .collect();
    let mut text = Vec::with_capacity(size + 128);
    while text.len() < size {
        let words = 3 + next() % 10;
        for _ in 0..words {
            text.extend_from_slice(&vocabulary[(next() % 4096) as usize]);
            text.push(b' ');
        }
        writeln!(text, "{}", next() % 1_000_000).expect("writing to a Vec");
    }
    text
}

/// The counters of one `--stats` report.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Report {
    pub(crate) preemptions: u64,
    pub(crate) deferred_library: u64,
    pub(crate) retries: u64,
    /// Deliveries of inger's timer signal.
    pub(crate) timer_signals: u64,
    /// Calls the preload library ran with the timer signal blocked.
    pub(crate) shielded_calls: u64,
    /// For a summed report (`--inherit`): the programs it counts.
    pub(crate) programs: Option<u64>,
}

/// The header line of a `--stats` report.
pub(crate) const REPORT_HEADER: &str = "inger-run: statistics of ";

/// What every line inger-run itself writes starts with.
const OURS: &str = "inger-run: ";

/// Splits stderr into what the program wrote and the reports. Everything from the first
/// `inger-run: ` on that starts with it is inger-run's (the reports, the line before a
/// report at an exec, per-process lines).
pub(crate) fn split_reports(stderr: &[u8]) -> (Vec<u8>, Vec<Report>) {
    let text = String::from_utf8_lossy(stderr);
    let Some(start) = text.find(OURS) else {
        return (stderr.to_vec(), Vec::new());
    };
    let mut reports = Vec::new();
    let mut own = stderr[..start].to_vec();
    let mut current: Option<Report> = None;
    for line in text[start..].split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix(REPORT_HEADER) {
            reports.extend(current.take());
            let programs = rest
                .split_once(" program")
                .and_then(|(count, _)| count.parse().ok());
            current = Some(Report {
                programs,
                ..Report::default()
            });
        } else if let Some(row) = line.strip_prefix("inger-run:   ") {
            let Some(report) = current.as_mut() else {
                continue;
            };
            let value = |name: &str| {
                row.strip_prefix(name)
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            if let Some(v) = value("preemptions") {
                report.preemptions = v;
            } else if let Some(v) = value("deferred: in a library") {
                report.deferred_library = v;
            } else if let Some(v) = value("retries") {
                report.retries = v;
            } else if let Some(v) = value("timer signals") {
                report.timer_signals = v;
            } else if let Some(v) = value("calls shielded by inger-run") {
                report.shielded_calls = v;
            }
        } else if !line.starts_with(OURS) {
            own.extend_from_slice(line.as_bytes());
        }
    }
    reports.extend(current);
    (own, reports)
}

/// Runs `program args` directly and under `inger-run --stats --wall-slices --slice SLICE`, both with
/// `stdin` as standard input; asserts identical stdout, stderr (less the report) and exit
/// status; returns the report.
pub(crate) fn compare(program: &Path, args: &[&str], stdin: &Path) -> Report {
    compare_with(&[], program, args, stdin)
}

/// [`compare`] with extra `inger-run` options.
pub(crate) fn compare_with(
    options: &[&str],
    program: &Path,
    args: &[&str],
    stdin: &Path,
) -> Report {
    let direct = Command::new(program)
        .args(args)
        .stdin(fs::File::open(stdin).expect("open input"))
        .output()
        .expect("run the program directly");
    let under = inger_run()
        .args(["--stats", STORM_CLOCK, "--slice", SLICE])
        .args(options)
        .arg("--")
        .arg(program)
        .args(args)
        .stdin(fs::File::open(stdin).expect("open input"))
        .output()
        .expect("run inger-run");
    let shown = format!(
        "{} {} {}",
        options.join(" "),
        program.display(),
        args.join(" ")
    );
    assert_same_outcome(&shown, &direct, &under)
}

/// Asserts that `under` (a `--stats` run) did what `direct` did; returns its one report.
pub(crate) fn assert_same_outcome(shown: &str, direct: &Output, under: &Output) -> Report {
    let (own_stderr, reports) = split_reports(&under.stderr);
    assert_eq!(
        describe(under.status),
        describe(direct.status),
        "{shown}: exit status differs; stderr under inger-run:\n{}",
        String::from_utf8_lossy(&under.stderr)
    );
    assert!(
        under.stdout == direct.stdout,
        "{shown}: stdout differs ({} bytes under inger-run, {} directly); stderr under inger-run:\n{}",
        under.stdout.len(),
        direct.stdout.len(),
        String::from_utf8_lossy(&under.stderr)
    );
    assert!(
        own_stderr == direct.stderr,
        "{shown}: stderr differs:\n--- direct\n{}\n--- under inger-run\n{}",
        String::from_utf8_lossy(&direct.stderr),
        String::from_utf8_lossy(&own_stderr)
    );
    assert_eq!(
        reports.len(),
        1,
        "{shown}: expected one report; stderr:\n{}",
        String::from_utf8_lossy(&under.stderr)
    );
    eprintln!("{shown}: {:?}", reports[0]);
    reports[0]
}

/// An exit status as text: `exit N` or `signal N`.
pub(crate) fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => format!("{status:?}"),
    }
}

/// Standard streams closed, stdout/stderr captured.
pub(crate) fn quiet(mut command: Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .expect("run the command")
}

/// Compiles `tests/c/<name>.c` into a program with the system C compiler (`$CC`, else `cc`,
/// from Debian's gcc) and returns its path. The file name carries a hash of the source, and
/// the program is compiled to a private name and renamed into place, so concurrent tests
/// share one build and never run a half-written file.
pub(crate) fn c_program(name: &str) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(format!("{name}.c"));
    let text = fs::read(&source).unwrap_or_else(|e| panic!("reading {}: {e}", source.display()));
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("inger-run-c");
    fs::create_dir_all(&dir).expect("create the C output directory");
    let program = dir.join(format!("{name}-{:016x}", hasher.finish()));
    if program.is_file() {
        return program;
    }
    let staging = dir.join(format!(".{name}-{}.tmp", std::process::id()));
    let output = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".to_owned()))
        .args(["-O1", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&staging)
        .arg(&source)
        .output()
        .expect("run the C compiler (cc, from Debian's gcc)");
    assert!(
        output.status.success(),
        "compiling {} failed:\n{}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    fs::rename(&staging, &program).expect("move the compiled program into place");
    program
}
