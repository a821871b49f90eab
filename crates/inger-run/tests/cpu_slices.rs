//! Slices are `main`'s CPU time by default: a program that sleeps or waits for its children
//! is not preempted meanwhile, and costs no CPU it would not use anyway. Measured on CPU
//! time (`wait4`'s resource usage of the child), which a loaded machine does not inflate,
//! and on the report's counters; never on wall-clock time.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{debian_program, inger_run, split_reports};

/// Runs `command` to its end; returns its stderr and the CPU time the process (and the
/// descendants it waited for) used.
#[expect(
    clippy::zombie_processes,
    reason = "the child is waited for with wait4, which also gives its resource usage"
)]
fn cpu_time_of(command: &mut Command) -> (Vec<u8>, Duration) {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start inger-run");
    let pid = child.id() as libc::pid_t;
    let mut stderr = Vec::new();
    std::io::Read::read_to_end(&mut child.stderr.expect("piped stderr"), &mut stderr)
        .expect("read stderr");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for (std's handle was consumed without
    // waiting); the out-parameters are valid.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "status {status:#x}: {}",
        String::from_utf8_lossy(&stderr)
    );
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (stderr, time(usage.ru_utime) + time(usage.ru_stime))
}

#[test]
fn a_sleeping_program_uses_almost_no_cpu() {
    let sleep = debian_program("sleep", "coreutils");
    let (stderr, cpu) = cpu_time_of(inger_run().args(["--stats", "--"]).arg(&sleep).arg("1"));
    let text = String::from_utf8_lossy(&stderr);
    // Before CPU-time slices: about 0.85 s of CPU (32,000 preemptions while asleep).
    assert!(
        cpu < Duration::from_millis(50),
        "`inger-run -- sleep 1` used {cpu:?} of CPU (5% is 50 ms):\n{text}"
    );
    assert!(
        text.contains("of CPU time"),
        "the report says which clock:\n{text}"
    );
    // `main` shares the main thread's TLS unless --private-tls (this once came out private:
    // the mode was set through an environment variable read before it was changed).
    assert!(text.contains("shared TLS"), "the default TLS mode:\n{text}");
    let (_, reports) = split_reports(&stderr);
    assert!(reports[0].preemptions < 100, "{text}");
}

#[test]
fn a_parent_waiting_for_its_children_is_left_alone() {
    let shell = debian_program("dash", "dash");
    let script = "sleep 0.5; sleep 0.5 & wait";
    let run = |options: &[&str]| {
        let (stderr, _) = cpu_time_of(
            inger_run()
                .args(["--stats", "--slice", "50us"])
                .args(options)
                .arg("--")
                .args([shell.as_os_str(), "-c".as_ref(), script.as_ref()]),
        );
        let text = String::from_utf8_lossy(&stderr).into_owned();
        let (_, reports) = split_reports(&stderr);
        assert_eq!(reports.len(), 1, "{text}");
        (reports[0], text)
    };
    let (cpu, text) = run(&[]);
    // Before: 165,000 preemptions for a parent waiting on its workers.
    assert!(
        cpu.preemptions < 100 && cpu.timer_signals < 500,
        "a waiting parent was preempted: {text}"
    );
    // The same wait on wall-clock slices keeps the timer busy (20,000 signals a second at
    // 50 us when the machine is idle): the counters above do measure it.
    let (wall, text) = run(&["--wall-slices"]);
    assert!(wall.timer_signals >= 1000, "{text}");
    assert!(text.contains("of wall-clock time"), "{text}");
}
