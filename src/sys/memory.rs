//! Address-space operations for stacks: mapping, guard regions, and discarding pages.
//!
//! Guard regions use `madvise(MADV_GUARD_INSTALL)` (Linux 6.13+) when the kernel has it: the
//! guard lives in the page tables, so a chunk of many stacks stays one VMA and a process can
//! keep hundreds of thousands of stacks below `vm.max_map_count` (65530 by default). Older
//! kernels get `mprotect(PROT_NONE)` guards, which split VMAs and cap the number of live
//! stacks near 30,000.

use core::ffi::c_void;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::error::{Error, last_errno};

/// `MADV_GUARD_INSTALL` from `<linux/mman.h>` (not yet in the `libc` crate).
const MADV_GUARD_INSTALL: i32 = 102;

const UNKNOWN: u8 = 0;
const LIGHTWEIGHT: u8 = 1;
const MPROTECT: u8 = 2;
static GUARD_KIND: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Reserves `len` bytes of readable, writable, lazily committed memory.
/// The mapping starts `below` bytes under an address aligned to `align` (a power of two).
pub(crate) fn map(len: usize, align: usize, below: usize) -> Result<*mut u8, Error> {
    debug_assert!(align.is_power_of_two() && below <= align);
    let reserved = len + align;
    // SAFETY: an anonymous private mapping at a kernel-chosen address has no preconditions.
    let raw = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            reserved,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return Err(Error::StackAllocation {
            errno: last_errno(),
        });
    }
    let raw_start = raw as usize;
    let start = (raw_start + below).next_multiple_of(align) - below;
    let end = start + len;
    // SAFETY: both ranges lie inside the reservation just made and are page-aligned (the
    // alignment and `below` are multiples of the page size); nothing uses them.
    unsafe {
        if start > raw_start {
            libc::munmap(raw, start - raw_start);
        }
        if raw_start + reserved > end {
            libc::munmap(end as *mut c_void, raw_start + reserved - end);
        }
    }
    let base = start as *mut c_void;
    // Not inherited by fork: every stack's guard keeps a page-table page, and copying them
    // made a fork in a process that had used 100,000 stacks take most of a second. The stacks
    // of the function chain that calls fork are handed down explicitly (see `fork_inherit`).
    // SAFETY: advice on a mapping we just made; failure only costs fork time.
    unsafe { libc::madvise(base, len, libc::MADV_DONTFORK) };
    Ok(base.cast())
}

/// Makes `[addr, addr + len)` inherited by a `fork` (`inherit`) or not again.
pub(crate) fn fork_inherit(addr: usize, len: usize, inherit: bool) {
    let advice = if inherit {
        libc::MADV_DOFORK
    } else {
        libc::MADV_DONTFORK
    };
    // SAFETY: advice on a range of a stack mapping of ours; failure leaves it as it was.
    unsafe { libc::madvise(addr as *mut libc::c_void, len, advice) };
}

/// Makes `[addr, addr + len)` fault on any access. Frees the pages it covered.
pub(crate) fn guard(addr: *mut u8, len: usize) -> Result<(), Error> {
    if GUARD_KIND.load(Ordering::Relaxed) != MPROTECT {
        // SAFETY: the range belongs to a mapping of ours; guarding it is what we intend.
        if unsafe { libc::madvise(addr.cast(), len, MADV_GUARD_INSTALL) } == 0 {
            GUARD_KIND.store(LIGHTWEIGHT, Ordering::Relaxed);
            return Ok(());
        }
        GUARD_KIND.store(MPROTECT, Ordering::Relaxed);
    }
    // SAFETY: as above.
    if unsafe { libc::mprotect(addr.cast(), len, libc::PROT_NONE) } != 0 {
        return Err(Error::StackAllocation {
            errno: last_errno(),
        });
    }
    Ok(())
}

/// Returns the pages of `[addr, addr + len)` to the kernel; they read as zero afterwards.
pub(crate) fn discard(addr: *mut u8, len: usize) {
    // SAFETY: the range belongs to a mapping of ours whose contents are no longer needed.
    // Failure only leaves the memory committed, so it is ignored.
    unsafe { libc::madvise(addr.cast::<c_void>(), len, libc::MADV_DONTNEED) };
}

/// A descriptor for this process (`pidfd_open`), for `process_madvise`, and the pid it was
/// opened for (a forked child must open its own).
static SELF_PIDFD: std::sync::Mutex<Option<(i32, i32)>> = std::sync::Mutex::new(None);

/// Applies `advice` to every `(address, length)` range in one `process_madvise` call on this
/// process (Linux 6.13+ accepts any advice for the caller itself), falling back to one
/// `madvise` per range. Returns false if some range could not be advised.
pub(crate) fn advise_all(ranges: &[(usize, usize)], advice: i32) -> bool {
    let ranges: Vec<(usize, usize)> = ranges.iter().copied().filter(|&(_, len)| len > 0).collect();
    if ranges.is_empty() {
        return true;
    }
    let total: usize = ranges.iter().map(|&(_, len)| len).sum();
    let iovecs: Vec<libc::iovec> = ranges
        .iter()
        .map(|&(address, len)| libc::iovec {
            iov_base: address as *mut c_void,
            iov_len: len,
        })
        .collect();
    if let Some(pidfd) = self_pidfd() {
        // SAFETY: `iovecs` describes ranges of our own mappings; the call only advises them.
        let done = unsafe {
            libc::syscall(
                libc::SYS_process_madvise,
                pidfd,
                iovecs.as_ptr(),
                iovecs.len(),
                advice,
                0,
            )
        };
        if done == total as i64 {
            return true;
        }
    }
    ranges.iter().all(|&(address, len)| {
        // SAFETY: as above, one range at a time.
        unsafe { libc::madvise(address as *mut c_void, len, advice) == 0 }
    })
}

fn self_pidfd() -> Option<i32> {
    if super::debug_tools::on_valgrind() {
        return None; // valgrind 3.19 does not know pidfd_open and warns about it
    }
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mut cached = SELF_PIDFD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match *cached {
        Some((for_pid, fd)) if for_pid == pid => return (fd >= 0).then_some(fd),
        _ => {}
    }
    // SAFETY: pidfd_open on our own pid; the descriptor is kept for the process's life.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd >= 0 {
        // SAFETY: marking our own descriptor close-on-exec.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    *cached = Some((pid, fd));
    (fd >= 0).then_some(fd)
}
