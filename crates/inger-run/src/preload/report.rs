//! The `--stats` report: inger's counters, printed once to stderr when the program ends.
//!
//! When is "the end"? Whichever comes first of:
//! - `main` returns: the report is printed right after the preemptible function completes,
//!   before glibc runs the program's `atexit` handlers (they run on the main thread's own
//!   stack, outside the function, so they cannot add preemptions);
//! - the program calls `exit`, `_exit` or `_Exit` (from inside `main` or from any thread): the
//!   library interposes these (see the `exits` module) and prints before handing over to
//!   glibc. Preemptions during the program's exit handlers are then not counted.
//!
//! Nothing is printed when a fatal signal kills the program, nor by a process that forked from
//! it (the report belongs to the process that ran `main`).
//!
//! Where to: many programs close stderr before they exit (xz, mawk; coreutils in an `atexit`
//! handler). So when the report is enabled, the library keeps a duplicate of the stderr it
//! was started with, close-on-exec and numbered high (at or above 512, or half the
//! descriptor limit) to stay out of the program's way, and writes there if that descriptor is
//! still its own (same file, still close-on-exec), else to whatever fd 2 is then. The
//! duplicate is the one visible trace of `--stats` in the program.
//!
//! `_exit` may be called from a signal handler, so the report is formatted into a stack
//! buffer and written with `write(2)`: async-signal-safe.

use core::ffi::c_int;
use core::fmt::{self, Write as _};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The report was asked for.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// It was printed (or is being printed).
static PRINTED: AtomicBool = AtomicBool::new(false);
/// The process whose `main` runs inside inger.
static PID: AtomicI32 = AtomicI32::new(0);
/// The slice and the TLS mode, for the report's header.
static SLICE_NS: AtomicU64 = AtomicU64::new(0);
static PRIVATE_TLS: AtomicBool = AtomicBool::new(false);
/// The duplicate of the original stderr (-1 if none), and the identity of its file.
static SAVED_FD: AtomicI32 = AtomicI32::new(-1);
static SAVED_DEV: AtomicU64 = AtomicU64::new(0);
static SAVED_INO: AtomicU64 = AtomicU64::new(0);

/// Lowest descriptor number for the duplicate of stderr.
const SAVED_FD_FLOOR: libc::rlim_t = 512;

/// Arranges for the report to be printed when this process ends.
pub(crate) fn enable(slice: Duration, private_tls: bool) {
    PRIVATE_TLS.store(private_tls, Relaxed);
    SLICE_NS.store(u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    PID.store(getpid(), Relaxed);
    keep_stderr();
    ENABLED.store(true, Relaxed);
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

/// Prints the report if it was asked for, in this process, and not printed yet.
/// Async-signal-safe.
pub(crate) fn print_once() {
    if !ENABLED.load(Relaxed) || PID.load(Relaxed) != getpid() || PRINTED.swap(true, Relaxed) {
        return;
    }
    let saved_errno = std::io::Error::last_os_error().raw_os_error();
    let mut out = Buffer::new();
    // A full buffer only truncates the report.
    let header = Header {
        pid: getpid(),
        slice_ns: SLICE_NS.load(Relaxed),
        private_tls: PRIVATE_TLS.load(Relaxed),
    };
    let _ = format_report(&mut out, &inger::stats(), &header);
    let _ = format_signal_notes(
        &mut out,
        &crate::signals::counts(),
        crate::signals::emulated_signals(),
        crate::signals::on_main_thread() && crate::signals::blocked_here() != 0,
    );
    write_all(report_fd(), out.as_bytes());
    if let Some(errno) = saved_errno {
        set_errno(errno);
    }
}

/// What the report's header says about the run.
struct Header {
    pid: i32,
    slice_ns: u64,
    private_tls: bool,
}

fn format_report(out: &mut Buffer, stats: &inger::Stats, header: &Header) -> fmt::Result {
    writeln!(
        out,
        "inger-run: statistics of pid {} (slice {}, {} TLS)",
        header.pid,
        Nanoseconds(header.slice_ns),
        if header.private_tls {
            "private"
        } else {
            "shared"
        }
    )?;
    let mut row = |name: &str, value: &dyn fmt::Display| -> fmt::Result {
        let mut text = Buffer::new();
        write!(text, "{value}")?;
        writeln!(out, "inger-run:   {name:<28}{:>12}", text.as_str())
    };
    row("preemptions", &stats.preemptions)?;
    row("yields", &stats.yields)?;
    row("deferred: nopreempt section", &stats.deferred_nopreempt)?;
    row("deferred: in a library", &stats.deferred_library)?;
    row("retries", &stats.retries)?;
    row("longest deferral", &Nanoseconds(stats.longest_deferral_ns))
}

/// What the program did with inger's timer signal, when it did anything: the lines say what
/// inger-run did about it (see the `signals` module).
fn format_signal_notes(
    out: &mut Buffer,
    counts: &crate::signals::Counts,
    signals: u64,
    blocked_now: bool,
) -> fmt::Result {
    let quiet = crate::signals::Counts::default();
    if *counts == quiet && !blocked_now {
        return Ok(());
    }
    writeln!(out, "inger-run:   timer signal {}:", SignalName(signals))?;
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
    if counts.blocked_at_start != 0 {
        writeln!(
            out,
            "inger-run:     blocked when main started (inherited): no preemption until the program unblocked it"
        )?;
    }
    if blocked_now {
        writeln!(
            out,
            "inger-run:     blocked at the end: preemption stopped when the program blocked it"
        )?;
    }
    Ok(())
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
struct Nanoseconds(u64);

impl fmt::Display for Nanoseconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0;
        match ns {
            0..1_000 => write!(f, "{ns} ns"),
            1_000..1_000_000 => write!(f, "{:.1} us", ns as f64 / 1e3),
            1_000_000..1_000_000_000 => write!(f, "{:.3} ms", ns as f64 / 1e6),
            _ => write!(f, "{:.3} s", ns as f64 / 1e9),
        }
    }
}

/// A fixed buffer that `write!` fills without allocating.
struct Buffer {
    bytes: [u8; 4096],
    len: usize,
}

impl Buffer {
    fn new() -> Buffer {
        Buffer {
            bytes: [0; 4096],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever appended, so the contents are UTF-8.
        core::str::from_utf8(self.as_bytes()).unwrap_or("?")
    }
}

impl fmt::Write for Buffer {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let end = self.len + text.len();
        if end > self.bytes.len() {
            return Err(fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

fn set_errno(value: i32) {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() = value };
}

/// Writes `bytes` to file descriptor 2; see [`write_all`].
pub(crate) fn write_stderr(bytes: &[u8]) {
    write_all(2, bytes);
}

/// Writes `bytes` to `fd`, retrying short writes; errors are ignored (there is nowhere else
/// to report them). Async-signal-safe.
fn write_all(fd: c_int, bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: `rest` is a valid buffer of `rest.len()` bytes.
        let written = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if written < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        let Ok(written) = usize::try_from(written) else {
            return;
        };
        if written == 0 {
            return;
        }
        rest = &rest[written..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_lists_every_counter() {
        let mut stats = inger::Stats::default();
        stats.preemptions = 12345;
        stats.deferred_nopreempt = 7;
        stats.deferred_library = 89;
        stats.retries = 90;
        stats.longest_deferral_ns = 1_234_567;
        let mut out = Buffer::new();
        let header = Header {
            pid: 42,
            slice_ns: 50_000,
            private_tls: false,
        };
        format_report(&mut out, &stats, &header).unwrap();
        let text = out.as_str();
        assert!(
            text.starts_with("inger-run: statistics of pid 42 (slice 50.0 us, shared TLS)\n"),
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
        assert_eq!(text.lines().count(), 7);
    }
}
