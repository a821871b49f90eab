//! Real programs from Debian packages (none written here), run on a generated 24 MiB input
//! directly and under `inger-run --stats --wall-slices --slice 20us`: stdout, stderr and exit status must be
//! identical, and CPU-bound programs must have been preempted thousands of times.
//!
//! Programs that spend their time in their own code get a lower bound on preemptions; ones
//! that mostly wait in libc (I/O, or for their worker threads), where preemption is deferred,
//! only have to produce the same output.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{compare, compare_with, debian_program, gzip_input, text_input};

/// The least a CPU-bound program must be preempted on the input at the test slice (the
/// measured figures are several times higher; a slower machine only raises them).
const MANY: u64 = 1000;

#[test]
fn sort_from_coreutils() {
    let sort = debian_program("sort", "coreutils");
    let report = compare(&sort, &[], text_input());
    // sort hands most of the work to its own threads; the main thread still merges.
    assert!(report.preemptions > 0, "{report:?}");
    // Multi-threaded on purpose, and numerically.
    compare(
        &sort,
        &["--parallel=2", "-S", "64M", "-k", "4", "-n"],
        text_input(),
    );
}

#[test]
fn sha256sum_from_coreutils() {
    let report = compare(&debian_program("sha256sum", "coreutils"), &[], text_input());
    assert!(report.preemptions >= MANY, "{report:?}");
}

#[test]
fn wc_from_coreutils() {
    let report = compare(&debian_program("wc", "coreutils"), &[], text_input());
    assert!(report.preemptions >= MANY, "{report:?}");
}

#[test]
fn tr_from_coreutils() {
    // tr mostly waits in read/write (deferred): the output is what matters here.
    compare(
        &debian_program("tr", "coreutils"),
        &["a-z", "A-Z"],
        text_input(),
    );
    compare(
        &debian_program("tr", "coreutils"),
        &["-d", "aeiou"],
        text_input(),
    );
}

#[test]
fn gzip_then_gunzip() {
    let gzip = debian_program("gzip", "gzip");
    let report = compare(&gzip, &["-9"], text_input());
    assert!(report.preemptions >= MANY, "{report:?}");
    let report = compare(&gzip, &["-d"], gzip_input());
    assert!(report.preemptions >= MANY, "{report:?}");
}

#[test]
fn gunzip_script_with_inherit() {
    // `gunzip` is a shell script that execs `gzip -d`: only with --inherit does gzip itself
    // run under inger (the shell's image is replaced, so one report comes from gzip).
    let gunzip = debian_program("gunzip", "gzip");
    let direct = Command::new(&gunzip)
        .stdin(std::fs::File::open(gzip_input()).unwrap())
        .output()
        .unwrap();
    let under = common::inger_run()
        .args([
            "--stats",
            "--inherit",
            "--slice",
            common::SLICE,
            common::STORM_CLOCK,
            "--",
        ])
        .arg(&gunzip)
        .stdin(std::fs::File::open(gzip_input()).unwrap())
        .output()
        .unwrap();
    let report = common::assert_same_outcome("gunzip --inherit", &direct, &under);
    assert!(report.preemptions >= MANY, "{report:?}");
}

#[test]
fn xz_with_two_threads() {
    // Multi-threaded: the worker threads compress (they run normally); the main thread,
    // inside the preemptible function, reads, hands out blocks and writes.
    let xz = debian_program("xz", "xz-utils");
    compare(&xz, &["-T2", "-0"], text_input());
}

#[test]
fn zstd_with_two_threads() {
    let zstd = debian_program("zstd", "zstd");
    compare(&zstd, &["-T2", "-9", "-c"], text_input());
}

#[test]
fn awk_aggregates() {
    let awk = debian_program("mawk", "mawk");
    let program = "{ total += $NF; seen[$1]++ } END { print total; for (w in seen) n++; print n }";
    let report = compare(&awk, &[program], text_input());
    assert!(report.preemptions >= MANY, "{report:?}");
}

#[test]
fn sed_and_grep_rewrite_and_match() {
    let sed = debian_program("sed", "sed");
    compare(
        &sed,
        &["-e", "s/ab/BA/g", "-e", "y/xyz/XYZ/", "-e", "/^q/d"],
        text_input(),
    );
    let grep = debian_program("grep", "grep");
    compare(&grep, &["-c", "-E", "ab+c|x[yz]"], text_input());
}

/// A Python program whose main thread counts line lengths (interpreter code, preemptible)
/// while four threads hash slices of the input (hashlib releases the GIL).
const PYTHON_THREADS: &str = r#"
import sys, threading, hashlib, collections
data = sys.stdin.buffer.read()
chunks = [data[i::4] for i in range(4)]
digests = [None] * 4
def work(i):
    h = hashlib.sha256()
    for _ in range(3):
        h.update(chunks[i])
    digests[i] = h.hexdigest()
threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
for t in threads: t.start()
counts = collections.Counter(len(line) for line in data.splitlines())
for t in threads: t.join()
print(digests)
print(sorted(counts.items()), sum(counts.values()))
"#;

#[test]
fn python_main_thread_preempted_while_threads_hash() {
    let python = debian_program("python3", "python3");
    let report = compare(&python, &["-c", PYTHON_THREADS], text_input());
    assert!(report.preemptions >= MANY, "{report:?}");
}

#[test]
fn private_tls_for_main() {
    // The same storms with `main` on inger's private thread-local storage: stdio, malloc,
    // errno and thread creation all go through a TLS block that is not the main thread's.
    let report = compare_with(
        &["--private-tls"],
        &debian_program("gzip", "gzip"),
        &["-9"],
        text_input(),
    );
    assert!(report.preemptions >= MANY, "{report:?}");
    let python = debian_program("python3", "python3");
    let report = compare_with(
        &["--private-tls"],
        &python,
        &["-c", PYTHON_THREADS],
        text_input(),
    );
    assert!(report.preemptions >= MANY, "{report:?}");
    let sort = debian_program("sort", "coreutils");
    compare_with(
        &["--private-tls"],
        &sort,
        &["--parallel=2", "-S", "64M", "-k", "4", "-n"],
        text_input(),
    );
}

#[test]
fn rustfmt_is_a_rust_program() {
    // A Rust program (from the Rust toolchain rather than Debian) formatting generated code.
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .expect("run rustc");
    let rustfmt =
        PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim()).join("bin/rustfmt");
    assert!(
        rustfmt.is_file(),
        "this test needs rustfmt: `rustup component add rustfmt`"
    );
    let source = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("inger-run-generated.rs");
    std::fs::write(&source, generated_rust()).unwrap();
    let report = compare(
        &rustfmt,
        &["--edition", "2024", "--emit", "stdout"],
        &source,
    );
    assert!(report.preemptions >= MANY, "{report:?}");
}

fn generated_rust() -> String {
    (0..3000u64)
        .map(|i| {
            let a = (i * 7919) % 1000;
            format!(
                "pub fn f{i}(x:u64,y:u64)->u64{{ let mut s=x.wrapping_mul({a});for i in 0..y{{s=s.wrapping_add(i*{a}^(s>>3));\
                 if s%7=={}{{s+=1;}}else{{s^=y;}}}} match s%3 {{0=>s,1=>s+{a},_=>s.rotate_left({})}} }}\n",
                a % 7,
                a % 64
            )
        })
        .collect()
}
