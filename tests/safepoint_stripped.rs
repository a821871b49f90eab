//! Stripped executables (issue 4): the standard library's critical sections (stdio printing,
//! `Once`/`LazyLock` initialisation, panics, the environment, ...) are found by name in the
//! executable's `.symtab`. Test binaries keep it, so `capabilities().std_critical_sections`
//! is true for them. A stripped copy of this very binary (`strip --strip-all`, which keeps
//! `.eh_frame`, so stacks can still be walked) has no names: it reports
//! `std_critical_sections: false`, preemption still works, and only the library and
//! `nopreempt` rules protect it.
//!
//! What that means for users: in a stripped program a function paused while the standard
//! library holds a lock (stdout's, inside `println!`) or runs a one-time initialiser leaves
//! it held, and the caller deadlocks on the next `println!` (observed with the printing storm
//! of `safepoint_printing.rs` run from a stripped copy). Keep the symbol table (`strip =
//! "debuginfo"` rather than `"symbols"` in a Cargo profile), or wrap such calls in
//! `inger::nopreempt`; the second test checks that the latter keeps a printing storm whole
//! in a stripped copy.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

#[test]
fn this_test_binary_keeps_its_symbol_table() {
    let capabilities = inger::capabilities();
    assert!(
        capabilities.std_critical_sections,
        "the standard library's critical sections were not found in an unstripped test binary"
    );
}

/// A stripped copy of this test binary (made once per process).
fn stripped_copy() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's own path");
    let copy = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("safepoint_stripped-{}", std::process::id()));
    let result = Command::new("strip")
        .arg("--strip-all")
        .arg("-o")
        .arg(&copy)
        .arg(&exe)
        .output()
        .expect("running strip (binutils)");
    assert!(
        result.status.success(),
        "strip failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    copy
}

/// The child's part: no std sections known, preemption still works, and printing under
/// `nopreempt` stays whole.
fn stripped_child() {
    assert!(
        !inger::capabilities().std_critical_sections,
        "a stripped executable claims to know the standard library's critical sections"
    );
    // Preemption still works: an endless loop is paused by its timer, then told to stop.
    static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let stop = &STOP;
    let linger = inger::launch(
        move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        },
        Duration::from_millis(1),
    )
    .expect("launch");
    assert!(
        linger.is_continuation() && !linger.yielded(),
        "not preempted"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut linger = linger;
    inger::resume(&mut linger, Duration::MAX).expect("resume");
    assert!(linger.is_completion());
    // The documented workaround: printing inside `nopreempt`.
    println!("@@stripped-begin");
    let results = common::on_two_threads(|thread| {
        common::storm(
            || {
                for line in 0..500u64 {
                    let value = common::spin(line, 2000);
                    inger::nopreempt(|| println!("F{thread} {line} {value:016x}"));
                }
            },
            |stop| println!("C{thread} {stop}"),
        )
    });
    println!("@@stripped-end");
    println!("@@stripped-stops {:?}", results.map(|(_, stops)| stops));
}

#[test]
fn a_stripped_copy_knows_no_std_sections_and_nopreempt_protects_its_printing() {
    if common::child_mode().as_deref() == Some("stripped") {
        stripped_child();
        return;
    }
    let copy = stripped_copy();
    let output = common::run_child_of(
        &copy,
        "a_stripped_copy_knows_no_std_sections_and_nopreempt_protects_its_printing",
        "stripped",
        &[],
    );
    let _ = std::fs::remove_file(&copy);
    output.assert_success();
    let mut next = [[0u64; 2]; 2];
    for line in output
        .between("@@stripped-begin\n", "@@stripped-end")
        .lines()
    {
        let words: Vec<&str> = line.split(' ').collect();
        let (function, thread, number) = match words.as_slice() {
            [who, number, value] if who.starts_with('F') => {
                let number: u64 = number.parse().expect("a line number");
                assert_eq!(
                    *value,
                    format!("{:016x}", common::spin(number, 2000)),
                    "{line:?}"
                );
                (0, &who[1..], number)
            }
            [who, number] if who.starts_with('C') => {
                (1, &who[1..], number.parse().expect("a stop number"))
            }
            _ => panic!("a broken line: {line:?}"),
        };
        let thread: usize = thread.parse().expect("a thread number");
        assert_eq!(number, next[function][thread], "{line:?} out of order");
        next[function][thread] += 1;
    }
    assert_eq!(next[0], [500, 500], "every function line, once");
    println!(
        "stripped copy: std_critical_sections false, caller lines {:?}",
        next[1]
    );
}
