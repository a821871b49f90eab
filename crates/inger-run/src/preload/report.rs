//! The `--stats` report: what it says, when it is printed, and where it goes.
//!
//! # When
//!
//! Whichever comes first of:
//! - `main` returns: the report is printed right after the preemptible function completes,
//!   before glibc runs the program's `atexit` handlers (they run on the main thread's own
//!   stack, outside the function, so they cannot add preemptions);
//! - the program calls `exit`, `_exit` or `_Exit` (from inside `main` or from any thread): the
//!   library interposes these (see the `exits` module) and prints before handing over to
//!   glibc. Preemptions during the program's exit handlers are then not counted;
//! - without `--inherit`, the program execs another program, which will run without inger:
//!   the report up to that point is printed, labelled, after a line that says so (see the
//!   `exec` module). If the exec fails and the program goes on, a final report, labelled as
//!   following a failed exec, is printed at its end.
//!
//! Nothing is printed when a fatal signal kills the program. Without `--inherit` only the
//! process that ran `main` reports (not the processes that forked from it, which have no
//! timer and are never preempted); with `--inherit` every process under inger keeps its
//! counters in the run's ledger and the top-level process prints one summed report (see the
//! `accounting` module and `ledger.rs`).
//!
//! # Where
//!
//! To `--stats-file PATH` if given (written to a temporary file next to it and renamed into
//! place, so a reader never sees half a report), else to stderr. Many programs close stderr
//! before they exit (xz, mawk; coreutils in an `atexit` handler), so when the report is
//! enabled the library keeps a duplicate of the stderr it was started with, close-on-exec
//! and numbered high (at or above 512, or half the descriptor limit) to stay out of the
//! program's way, and writes there if that descriptor is still its own (same file, still
//! close-on-exec), else to whatever fd 2 is then. The duplicate is the one visible trace of
//! `--stats` in the program.
//!
//! `_exit` may be called from a signal handler, so reports are formatted into stack buffers
//! and written with `write(2)`; nothing here allocates after start-up.

use core::ffi::c_int;
use core::fmt::{self, Write as _};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use crate::ledger::{Ledger, how, state};
use crate::settings::Settings;
use crate::target::{FixedPath, Lossy};
use crate::totals::Totals;

/// The report was asked for.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Where this process's report stands (see [`progress`]).
static PROGRESS: AtomicU8 = AtomicU8::new(progress::NOT_PRINTED);
/// The process whose `main` runs inside inger.
static PID: AtomicI32 = AtomicI32::new(0);
/// The duplicate of the original stderr (-1 if none), and the identity of its file.
static SAVED_FD: AtomicI32 = AtomicI32::new(-1);
static SAVED_DEV: AtomicU64 = AtomicU64::new(0);
static SAVED_INO: AtomicU64 = AtomicU64::new(0);

/// The states of [`PROGRESS`].
mod progress {
    /// Nothing printed yet.
    pub(super) const NOT_PRINTED: u8 = 0;
    /// Printed before an exec: if the process reaches its end, that exec failed.
    pub(super) const BEFORE_EXEC: u8 = 1;
    /// Printed (or being printed).
    pub(super) const PRINTED: u8 = 2;
}

/// What every report of this process says about the run, fixed at start-up.
pub(crate) struct RunInfo {
    pub(crate) slice_ns: u64,
    /// The clock slices are measured on.
    pub(crate) clock: inger::Clock,
    pub(crate) private_tls: bool,
    /// The executable running under inger (`/proc/self/exe`).
    pub(crate) exe: FixedPath,
    /// The named program, when it is a script this process interprets.
    pub(crate) script: Option<FixedPath>,
    pub(crate) stats_file: Option<FixedPath>,
    pub(crate) per_process: bool,
    pub(crate) inherit: bool,
}

static INFO: OnceLock<RunInfo> = OnceLock::new();

/// The run's information, once the report is enabled.
pub(crate) fn info() -> Option<&'static RunInfo> {
    INFO.get()
}

/// Lowest descriptor number for the duplicate of stderr.
const SAVED_FD_FLOOR: libc::rlim_t = 512;

/// Arranges for the report to be printed when this process ends. Called once, by the
/// start-up code, before `main`.
pub(crate) fn enable(settings: &Settings, private_tls: bool) {
    let info = RunInfo {
        slice_ns: u64::try_from(settings.slice.as_nanos()).unwrap_or(u64::MAX),
        clock: settings.clock,
        private_tls,
        exe: own_executable(),
        script: settings
            .script
            .as_deref()
            .and_then(|s| FixedPath::from_bytes(s.to_bytes())),
        stats_file: settings
            .stats_file
            .as_deref()
            .and_then(|s| FixedPath::from_bytes(s.to_bytes())),
        per_process: settings.per_process,
        inherit: settings.inherit,
    };
    let in_ledger = match &settings.ledger {
        Some(path) if settings.inherit => crate::accounting::join(path, info.exe.file_name()),
        _ => false,
    };
    let _ = INFO.set(info);
    let pid = getpid();
    let is_root = !settings.inherit || pid == settings.root_pid;
    if settings.inherit && !in_ledger && !is_root {
        // A descendant that cannot reach the run's ledger reports nothing rather than write
        // to its own stderr, which is not the top-level one.
        return;
    }
    PID.store(pid, Relaxed);
    if settings.stats_file.is_none() && is_root {
        keep_stderr();
    }
    ENABLED.store(true, Relaxed);
}

/// The executable of this process, as `/proc/self/exe` names it.
fn own_executable() -> FixedPath {
    let mut buffer = [0u8; crate::target::PATH_MAX];
    // SAFETY: `buffer` is writable for its length.
    let length = unsafe {
        libc::readlink(
            c"/proc/self/exe".as_ptr(),
            buffer.as_mut_ptr().cast(),
            buffer.len() - 1,
        )
    };
    usize::try_from(length)
        .ok()
        .and_then(|length| FixedPath::from_bytes(&buffer[..length]))
        .unwrap_or_else(FixedPath::new)
}

/// Whether this process reports (the report is enabled and this is the process that ran
/// `main`, not a fork or `vfork` copy of it). Async-signal-safe and free of writes, so that a
/// `vfork` child, which shares its parent's memory, can call it.
pub(crate) fn is_reporting_process() -> bool {
    ENABLED.load(Relaxed) && PID.load(Relaxed) == getpid()
}

/// Prints this process's report if it was asked for and not printed yet. The end of the
/// process. Async-signal-safe, but for inger's statistics (see `totals`).
pub(crate) fn print_once() {
    if !ENABLED.load(Relaxed) {
        return;
    }
    if crate::accounting::in_ledger() {
        // Every process under inger, forks included, ends its ledger slot.
        crate::accounting::end_of_process();
        return;
    }
    if PID.load(Relaxed) != getpid() {
        return;
    }
    let before = PROGRESS.swap(progress::PRINTED, Relaxed);
    if before == progress::PRINTED {
        return;
    }
    let scope = if before == progress::BEFORE_EXEC {
        Scope::AfterFailedExec { pid: getpid() }
    } else {
        Scope::Process { pid: getpid() }
    };
    let totals = Totals::of_this_process();
    write_report(&mut |out| format_report(out, &scope, &totals, None));
}

/// Without `--inherit`: the process that ran `main` is about to exec `target`, which runs
/// without inger. Prints a line saying so and the report up to now. `script_interpreter`:
/// what runs `target` when it is a script.
pub(crate) fn before_exec_without_inger(target: &[u8], script_interpreter: Option<&[u8]>) {
    if PROGRESS.swap(progress::BEFORE_EXEC, Relaxed) != progress::NOT_PRINTED {
        return;
    }
    let totals = Totals::of_this_process();
    let pid = getpid();
    write_report(&mut |out| {
        write!(out, "inger-run: pid {pid} execs {}", Lossy(target))?;
        if let Some(interpreter) = script_interpreter {
            write!(out, " (a script run by {})", Lossy(interpreter))?;
        }
        writeln!(
            out,
            ", which runs without inger: only the program named to inger-run runs under it \
             (--inherit runs the programs it execs and starts under inger too)"
        )?;
        format_report(out, &Scope::BeforeExec { pid, target }, &totals, None)
    });
}

/// What a report covers.
pub(crate) enum Scope<'a> {
    /// This process, at its end.
    Process { pid: i32 },
    /// This process, up to its exec of `target`.
    BeforeExec { pid: i32, target: &'a [u8] },
    /// This process, at its end, after an exec that failed.
    AfterFailedExec { pid: i32 },
    /// The processes of a run (`--inherit`), summed.
    Run {
        root_pid: i32,
        /// Program images counted.
        programs: u64,
        /// Set when the report stops at the root's exec of a program outside inger.
        left_at: Option<&'a [u8]>,
    },
}

/// What the ledger adds to a summed report.
pub(crate) struct RunCounts {
    pub(crate) still_running: u64,
    pub(crate) vanished: u64,
    pub(crate) left_inger: u64,
    pub(crate) uncounted: u64,
    /// The report is final: no process of the run is left.
    pub(crate) last: bool,
}

/// Formats one report.
pub(crate) fn format_report(
    out: &mut dyn fmt::Write,
    scope: &Scope<'_>,
    totals: &Totals,
    run: Option<&RunCounts>,
) -> fmt::Result {
    let info = info();
    out.write_str("inger-run: statistics of ")?;
    match *scope {
        Scope::Process { pid } => write!(out, "pid {pid}")?,
        Scope::BeforeExec { pid, target } => {
            write!(out, "pid {pid} up to its exec of {}", Lossy(target))?;
        }
        Scope::AfterFailedExec { pid } => write!(out, "pid {pid} (after an exec that failed)")?,
        Scope::Run {
            root_pid,
            programs,
            left_at,
        } => {
            write!(
                out,
                "{programs} program{} under inger: pid {root_pid} and its descendants",
                if programs == 1 { "" } else { "s" }
            )?;
            if let Some(target) = left_at {
                write!(
                    out,
                    ", up to the exec of {} by pid {root_pid}",
                    Lossy(target)
                )?;
            }
        }
    }
    if let Some(info) = info {
        write!(
            out,
            " (slice {} of {}, {} TLS)",
            Nanoseconds(info.slice_ns),
            match info.clock {
                inger::Clock::Cpu => "CPU time",
                inger::Clock::Wall => "wall-clock time",
            },
            if info.private_tls {
                "private"
            } else {
                "shared"
            }
        )?;
    }
    out.write_str("\n")?;
    if let Some(script) = info.and_then(|info| info.script.as_ref()) {
        let interpreter = info.map_or(&b""[..], |info| info.exe.as_bytes());
        writeln!(
            out,
            "inger-run:   {:<28}{}, run by its interpreter {} under inger",
            "script",
            Lossy(script.as_bytes()),
            Lossy(interpreter)
        )?;
    }
    format_rows(out, totals)?;
    format_signal_notes(out, totals)?;
    if let Some(run) = run {
        format_run_rows(out, run)?;
    }
    Ok(())
}

fn format_rows(out: &mut dyn fmt::Write, totals: &Totals) -> fmt::Result {
    let mut row = |name: &str, value: &dyn fmt::Display| -> fmt::Result {
        let mut text = Buffer::<64>::new();
        write!(text, "{value}")?;
        writeln!(out, "inger-run:   {name:<28}{:>12}", text.as_str())
    };
    row("preemptions", &totals.preemptions)?;
    row("yields", &totals.yields)?;
    row("deferred: nopreempt section", &totals.deferred_nopreempt)?;
    row("deferred: in a library", &totals.deferred_library)?;
    row("deferred: waiting in a call", &totals.deferred_waiting)?;
    row("retries", &totals.retries)?;
    row("longest deferral", &Nanoseconds(totals.longest_deferral_ns))?;
    row(
        "longest wait in a call",
        &Nanoseconds(totals.longest_wait_ns),
    )?;
    row("timer signals", &totals.timer_signals)?;
    row("calls restarted by inger", &totals.restarted_calls)?;
    row("calls shielded by inger-run", &totals.shielded_calls)?;
    row("calls left interrupted", &totals.interrupted_calls)
}

/// What the program did with inger's timer signal, when it did anything: the lines say what
/// inger-run did about it (see the `signals` module).
fn format_signal_notes(out: &mut dyn fmt::Write, totals: &Totals) -> fmt::Result {
    let counts = &totals.signals;
    if *counts == crate::signals::Counts::default() && totals.blocked_at_end == 0 {
        return Ok(());
    }
    writeln!(
        out,
        "inger-run:   timer signal {}:",
        SignalName(crate::signals::emulated_signals())
    )?;
    let mut row = |count: u64, name: &str, meaning: &str| -> fmt::Result {
        if count == 0 {
            return Ok(());
        }
        writeln!(out, "inger-run:     {name:<26}{count:>12}  {meaning}")
    };
    row(
        counts.handler_set,
        "set by the program",
        "emulated: inger's handler stayed, the program saw what it set",
    )?;
    row(
        counts.delivered,
        "passed to its handler",
        "deliveries not from inger's timer",
    )?;
    row(
        counts.ignored,
        "dropped, as it ignores it",
        "deliveries not from inger's timer",
    )?;
    row(
        counts.blocked,
        "blocked by the program",
        "in the thread running main: preemption waits while it is blocked",
    )?;
    row(
        counts.blocked_at_start,
        "blocked when main started",
        "inherited from the parent: no preemption until the program unblocks it",
    )?;
    row(
        totals.blocked_at_end,
        "blocked at the end",
        "preemption stopped when the program blocked it",
    )
}

fn format_run_rows(out: &mut dyn fmt::Write, run: &RunCounts) -> fmt::Result {
    let mut row = |count: u64, name: &str, meaning: &str| -> fmt::Result {
        if count == 0 {
            return Ok(());
        }
        writeln!(out, "inger-run:   {name:<28}{count:>12}  {meaning}")
    };
    row(
        run.still_running,
        "still running",
        if run.last {
            ""
        } else {
            "counted up to now; --stats-file gets the final totals from the last process"
        },
    )?;
    row(
        run.vanished,
        "vanished",
        "killed by a signal: counted up to their last update",
    )?;
    row(
        run.left_inger,
        "left inger",
        "exec'd a program that cannot run under inger, or without its environment",
    )?;
    row(
        run.uncounted,
        "not counted",
        "processes that found the ledger full",
    )
}

/// One line per slot of the ledger.
pub(crate) fn format_processes(out: &mut dyn fmt::Write, ledger: &Ledger) -> fmt::Result {
    writeln!(out, "inger-run: per process:")?;
    for slot in ledger.slots() {
        let state = slot.state();
        if state == state::FREE || slot.how() == how::WITHDRAWN {
            continue;
        }
        let totals = Totals::from_array(&slot.counters());
        let (name, length) = slot.name();
        let forked = slot.is_fork();
        write!(
            out,
            "inger-run:   pid {:<8} ppid {:<8} {:<16} {:>10} preemptions {:>8} deferred  longest {:>10}  ",
            slot.pid(),
            slot.ppid(),
            Lossy(&name[..length]),
            totals.preemptions,
            totals.deferred(),
            Nanoseconds(totals.longest_deferral_ns),
        )?;
        match (state, slot.how()) {
            (state::ENDED, how::EXITED) => out.write_str("exited")?,
            (state::ENDED, how::EXECED) => out.write_str("exec'd a program under inger")?,
            (state::ENDED, how::LEFT_INGER) => {
                let (target, length) = slot.exec_target();
                write!(out, "exec'd {} (without inger)", Lossy(&target[..length]))?;
            }
            (state::ENDED, how::VANISHED) => out.write_str("vanished (killed by a signal)")?,
            (state::SPAWNING | state::FORKED_EXECING | state::RUNNING_EXECING, _) => {
                out.write_str("starting a program")?;
            }
            _ if forked => out.write_str("a fork, still running")?,
            _ => out.write_str("running")?,
        }
        if forked && state == state::ENDED {
            out.write_str(" (a fork that did not exec)")?;
        }
        out.write_str("\n")?;
    }
    Ok(())
}

/// Writes what `produce` formats to the report's destination: the stats file, or the saved
/// stderr. Async-signal-safe.
pub(crate) fn write_report(produce: &mut dyn FnMut(&mut dyn fmt::Write) -> fmt::Result) {
    match info().and_then(|info| info.stats_file.as_ref()) {
        Some(path) => write_file(path, produce),
        None => {
            let mut out = FdWriter::new(report_fd());
            // A formatting error only truncates the report.
            let _ = produce(&mut out);
            out.flush();
        }
    }
}

/// Writes a report to `path` through a temporary file renamed into place. Async-signal-safe.
pub(crate) fn write_file(
    path: &FixedPath,
    produce: &mut dyn FnMut(&mut dyn fmt::Write) -> fmt::Result,
) {
    let mut temporary = FixedPath::from_bytes(path.as_bytes()).unwrap_or_else(FixedPath::new);
    let mut digits = Buffer::<24>::new();
    let _ = write!(digits, ".{}.tmp", getpid());
    if temporary.push(digits.as_bytes()).is_none() {
        return;
    }
    // SAFETY: a NUL-terminated path; a new file for us only.
    let fd = unsafe {
        libc::open(
            temporary.as_c_str().as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        write_stderr(b"inger-run: cannot write the --stats-file\n");
        return;
    }
    let mut out = FdWriter::new(fd);
    let _ = produce(&mut out);
    out.flush();
    // SAFETY: closing our descriptor, then renaming our own file over the destination.
    unsafe {
        libc::close(fd);
        libc::rename(temporary.as_c_str().as_ptr(), path.as_c_str().as_ptr());
    }
}

/// Duplicates fd 2 out of the program's way (see the module docs).
fn keep_stderr() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid out-parameter.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        64
    };
    let floor = c_int::try_from((soft / 2).clamp(3, SAVED_FD_FLOOR)).unwrap_or(3);
    // SAFETY: duplicating a descriptor has no memory-safety preconditions.
    let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, floor) };
    if fd < 0 {
        return;
    }
    let Some((dev, ino)) = identity(fd) else {
        // SAFETY: `fd` is the descriptor we just created.
        unsafe { libc::close(fd) };
        return;
    };
    SAVED_DEV.store(dev, Relaxed);
    SAVED_INO.store(ino, Relaxed);
    SAVED_FD.store(fd, Relaxed);
}

/// The device and inode of the file open on `fd`. Async-signal-safe.
fn identity(fd: c_int) -> Option<(u64, u64)> {
    let mut status = core::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `status` is a valid out-parameter for fstat.
    if unsafe { libc::fstat(fd, status.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so it filled `status`.
    let status = unsafe { status.assume_init() };
    Some((status.st_dev, status.st_ino))
}

/// Where to write: the saved duplicate if it is still ours, else fd 2. Async-signal-safe.
fn report_fd() -> c_int {
    let fd = SAVED_FD.load(Relaxed);
    if fd < 0 {
        return 2;
    }
    // SAFETY: F_GETFD has no preconditions.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    let same_file = identity(fd) == Some((SAVED_DEV.load(Relaxed), SAVED_INO.load(Relaxed)));
    if flags >= 0 && flags & libc::FD_CLOEXEC != 0 && same_file {
        fd
    } else {
        2
    }
}

/// A signal number as `SIGRTMIN+n` / `SIGRTMAX-n` (the first of a mask of signals).
struct SignalName(u64);

impl fmt::Display for SignalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("(none)");
        }
        let signal = self.0.trailing_zeros() as i32 + 1;
        let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
        if signal >= min && signal <= max {
            if max - signal <= signal - min {
                write!(f, "SIGRTMAX-{} ({signal})", max - signal)
            } else {
                write!(f, "SIGRTMIN+{} ({signal})", signal - min)
            }
        } else {
            write!(f, "{signal}")
        }
    }
}

/// A duration in nanoseconds, shown in the unit that reads best.
pub(crate) struct Nanoseconds(pub(crate) u64);

impl fmt::Display for Nanoseconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0;
        let mut text = Buffer::<32>::new();
        match ns {
            0..1_000 => write!(text, "{ns} ns"),
            1_000..1_000_000 => write!(text, "{:.1} us", ns as f64 / 1e3),
            1_000_000..1_000_000_000 => write!(text, "{:.3} ms", ns as f64 / 1e6),
            _ => write!(text, "{:.3} s", ns as f64 / 1e9),
        }?;
        f.pad(text.as_str())
    }
}

/// A fixed buffer that `write!` fills without allocating.
pub(crate) struct Buffer<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Buffer<N> {
    pub(crate) fn new() -> Buffer<N> {
        Buffer {
            bytes: [0; N],
            len: 0,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only whole `&str`s are ever appended, so the contents are UTF-8.
        core::str::from_utf8(self.as_bytes()).unwrap_or("?")
    }
}

impl<const N: usize> fmt::Write for Buffer<N> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let end = self.len + text.len();
        if end > N {
            return Err(fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Formatted text written to a descriptor in chunks of a stack buffer (a long per-process
/// list needs several). Async-signal-safe.
struct FdWriter {
    fd: c_int,
    buffer: Buffer<4096>,
}

impl FdWriter {
    fn new(fd: c_int) -> FdWriter {
        FdWriter {
            fd,
            buffer: Buffer::new(),
        }
    }

    fn flush(&mut self) {
        write_all(self.fd, self.buffer.as_bytes());
        self.buffer.len = 0;
    }
}

impl fmt::Write for FdWriter {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if self.buffer.write_str(text).is_ok() {
            return Ok(());
        }
        self.flush();
        if self.buffer.write_str(text).is_ok() {
            return Ok(());
        }
        write_all(self.fd, text.as_bytes());
        Ok(())
    }
}

fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

/// Writes `bytes` to file descriptor 2; see [`write_all`].
pub(crate) fn write_stderr(bytes: &[u8]) {
    write_all(2, bytes);
}

/// Writes `bytes` to `fd`, retrying short writes; errors are ignored (there is nowhere else
/// to report them). Keeps `errno`. Async-signal-safe.
fn write_all(fd: c_int, bytes: &[u8]) {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    let saved_errno = unsafe { *libc::__errno_location() };
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: `rest` is a valid buffer of `rest.len()` bytes.
        let written = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        // SAFETY: as above.
        if written < 0 && unsafe { *libc::__errno_location() } == libc::EINTR {
            continue;
        }
        let Ok(written) = usize::try_from(written) else {
            break;
        };
        if written == 0 {
            break;
        }
        rest = &rest[written..];
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved_errno };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_lists_every_counter() {
        let totals = Totals {
            preemptions: 12345,
            deferred_nopreempt: 7,
            deferred_library: 89,
            retries: 90,
            longest_deferral_ns: 1_234_567,
            ..Totals::default()
        };
        let mut out = Buffer::<4096>::new();
        format_report(&mut out, &Scope::Process { pid: 42 }, &totals, None).unwrap();
        let text = out.as_str();
        assert!(
            text.starts_with("inger-run: statistics of pid 42\n"),
            "{text}"
        );
        assert!(
            text.contains("preemptions                        12345\n"),
            "{text}"
        );
        assert!(
            text.contains("deferred: in a library                89\n"),
            "{text}"
        );
        assert!(
            text.contains("longest deferral                1.235 ms\n"),
            "{text}"
        );
        assert_eq!(
            text.lines().count(),
            13,
            "no notes when the signal was left alone"
        );
    }

    #[test]
    fn summed_reports_say_what_they_cover() {
        let mut totals = Totals::default();
        totals.signals.handler_set = 2;
        totals.blocked_at_end = 1;
        let run = RunCounts {
            still_running: 1,
            vanished: 0,
            left_inger: 3,
            uncounted: 0,
            last: false,
        };
        let scope = Scope::Run {
            root_pid: 7,
            programs: 4,
            left_at: None,
        };
        let mut out = Buffer::<4096>::new();
        format_report(&mut out, &scope, &totals, Some(&run)).unwrap();
        let text = out.as_str();
        assert!(
            text.starts_with(
                "inger-run: statistics of 4 programs under inger: pid 7 and its descendants\n"
            ),
            "{text}"
        );
        assert!(text.contains("set by the program"), "{text}");
        assert!(text.contains("blocked at the end"), "{text}");
        assert!(
            text.contains("still running                          1  counted up to now"),
            "{text}"
        );
        assert!(
            text.contains("left inger                             3"),
            "{text}"
        );
        assert!(!text.contains("vanished"), "{text}");
    }
}
