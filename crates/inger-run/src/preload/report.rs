//! The `--stats` report: inger's counters, printed once to stderr when the program ends.
//!
//! When is "the end"? Whichever comes first of:
//! - `main` returns: the report is printed right after the preemptible function completes,
//!   before glibc runs the program's `atexit` handlers (they run on the main thread's own
//!   stack, outside the function, so they cannot add preemptions);
//! - the program calls `exit`, `_exit` or `_Exit` (from inside `main` or from any thread): the
//!   library interposes these (see `lib.rs`) and prints before handing over to glibc.
//!
//! Printing before the program's exit handlers matters: coreutils, for one, closes stderr in
//! an `atexit` handler, after which nothing could be printed. Nothing is printed when a fatal
//! signal kills the program, nor by a process that forked from it (the report belongs to the
//! process that ran `main`). `_exit` may be called from a signal handler, so the report is
//! formatted into a stack buffer and written with `write(2)`: async-signal-safe.

use core::fmt::{self, Write as _};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The report was asked for.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// It was printed (or is being printed).
static PRINTED: AtomicBool = AtomicBool::new(false);
/// The process whose `main` runs inside inger.
static PID: AtomicI32 = AtomicI32::new(0);
/// The slice, for the report's header.
static SLICE_NS: AtomicU64 = AtomicU64::new(0);

/// Arranges for the report to be printed when this process ends.
pub(crate) fn enable(slice: Duration) {
    SLICE_NS.store(u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    PID.store(getpid(), Relaxed);
    ENABLED.store(true, Relaxed);
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
    let _ = format_report(&mut out, &inger::stats(), SLICE_NS.load(Relaxed), getpid());
    write_stderr(out.as_bytes());
    if let Some(errno) = saved_errno {
        set_errno(errno);
    }
}

fn format_report(out: &mut Buffer, stats: &inger::Stats, slice_ns: u64, pid: i32) -> fmt::Result {
    writeln!(
        out,
        "inger-run: statistics of pid {pid} (slice {})",
        Nanoseconds(slice_ns)
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
    bytes: [u8; 1024],
    len: usize,
}

impl Buffer {
    fn new() -> Buffer {
        Buffer {
            bytes: [0; 1024],
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

/// Writes `bytes` to file descriptor 2, retrying short writes; errors are ignored (there is
/// nowhere else to report them). Async-signal-safe.
pub(crate) fn write_stderr(bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: `rest` is a valid buffer of `rest.len()` bytes.
        let written = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
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
        let stats = inger::Stats {
            preemptions: 12345,
            yields: 0,
            deferred_nopreempt: 7,
            deferred_library: 89,
            retries: 90,
            longest_deferral_ns: 1_234_567,
        };
        let mut out = Buffer::new();
        format_report(&mut out, &stats, 50_000, 42).unwrap();
        let text = out.as_str();
        assert!(
            text.starts_with("inger-run: statistics of pid 42 (slice 50.0 us)\n"),
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
