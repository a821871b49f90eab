//! The ledger: a file shared by every process of one `inger-run --inherit --stats` run, in
//! which each process keeps its own counters, so that one report sums them all and no
//! child ever writes to its own stderr.
//!
//! Compiled into both artifacts (`#[path]` module): the command creates the file before it
//! execs the program and passes its path in the environment; every process under inger maps
//! it (`MAP_SHARED`; the descriptor is closed at once, so no process gains a descriptor).
//!
//! ```text
//!  header (one page)        root pid, slots claimed, processes live, flags
//!  slot 0, slot 1, ...      one per process image or forked copy, in claim order:
//!                           state, pid, ppid, how it ended, program name, exec target,
//!                           counters (written by its owner only, every few resumes and
//!                           at its end)
//! ```
//!
//! A slot's life: an image starts (the library's start-up hook) and claims a `RUNNING` slot;
//! a `fork` child claims a `FORKED` slot in an `atfork` handler (it has no timer, so its
//! counters stay zero); an `exec` that keeps inger marks the slot `EXECING` and the new image
//! takes it over (a forked copy's slot is reused, an image's is ended and a new one claimed);
//! an exit, or an exec of a program that cannot run under inger, ends it. `live` counts the
//! slots not ended: a fork is counted from the moment it exists, so a parent that exits
//! first never makes `live` reach zero while its child runs.
//!
//! At its end each process takes a `flock` on the ledger, decrements `live`, and: the top
//! process (the root: its pid is inger-run's) writes the summed report, saying how many
//! processes are still running (counted up to their last update); whichever process brings
//! `live` to zero after the root has ended rewrites the `--stats-file` with the final totals
//! and removes the ledger. A process killed by a signal never ends its slot: any process that
//! ends after the root looks for slots whose process no longer exists and counts them as
//! vanished, with the counters of their last update.
//!
//! What is not counted, and says so: processes beyond the ledger's capacity; a process
//! started (by `posix_spawn` or `vfork`, which run no `atfork` handler) after every other
//! process had ended and the ledger was removed.

#![allow(
    dead_code,
    reason = "shared by the command and the library; each uses a subset"
)]

use core::ffi::{CStr, c_int};
use core::sync::atomic::Ordering::{AcqRel, Release, SeqCst};
use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering::Acquire, Ordering::Relaxed};

/// Counters per slot (the library's `Totals` fill them, in a fixed order).
pub(crate) const COUNTERS: usize = 24;

/// Slots in one ledger: process images and forked copies of one run. The file is sparse, so
/// only the pages of slots in use take memory.
pub(crate) const CAPACITY: u32 = 1 << 16;

const MAGIC: u64 = u64::from_le_bytes(*b"ingLedg2");

const PAGE: usize = 4096;

/// Bytes of a process name or exec target kept per slot.
pub(crate) const NAME_BYTES: usize = 32;

/// The file's first page.
#[repr(C)]
pub(crate) struct Header {
    magic: AtomicU64,
    root_pid: AtomicI32,
    /// 1 once the root process has ended (it wrote its report).
    root_ended: AtomicU32,
    /// Slots handed out (may exceed [`CAPACITY`]: the excess found no room).
    claimed: AtomicU32,
    /// Slots not ended.
    live: AtomicU32,
    /// Processes that found no room.
    uncounted: AtomicU32,
    /// Execs of programs that cannot run under inger (or without inger's environment).
    left_inger: AtomicU32,
    /// 1 once the final report was written and the ledger removed.
    finalized: AtomicU32,
    /// Every slot below this index is ended (where scans start).
    low_water: AtomicU32,
}

/// Slot states.
pub(crate) mod state {
    /// Not yet filled in.
    pub(crate) const FREE: u32 = 0;
    /// A forked copy of a process under inger, not (yet) replaced by exec.
    pub(crate) const FORKED: u32 = 1;
    /// A program image running under inger.
    pub(crate) const RUNNING: u32 = 2;
    /// A forked copy calling exec of a program that will run under inger.
    pub(crate) const FORKED_EXECING: u32 = 3;
    /// An image calling exec of a program that will run under inger.
    pub(crate) const RUNNING_EXECING: u32 = 4;
    /// Ended (see [`super::how`]).
    pub(crate) const ENDED: u32 = 5;
    /// Claimed by a process that is starting a program under inger with `posix_spawn`;
    /// the pid is set when the spawn returns (see [`super::Ledger::spawned`]).
    pub(crate) const SPAWNING: u32 = 6;
}

/// How a slot ended.
pub(crate) mod how {
    /// Still running.
    pub(crate) const NOT_ENDED: u32 = 0;
    /// The process exited (or returned from `main`).
    pub(crate) const EXITED: u32 = 1;
    /// The image was replaced by exec of another program under inger (which has its own
    /// slot).
    pub(crate) const EXECED: u32 = 2;
    /// The image exec'd a program that runs without inger.
    pub(crate) const LEFT_INGER: u32 = 3;
    /// The process disappeared without ending its slot (killed by a signal).
    pub(crate) const VANISHED: u32 = 4;
    /// A claim that turned out not to be needed (a failed fork or spawn, or a spawned
    /// program that registered on its own first): counts nothing, listed nowhere.
    pub(crate) const WITHDRAWN: u32 = 5;
}

/// One process image or forked copy.
#[repr(C)]
pub(crate) struct Slot {
    state: AtomicU32,
    pid: AtomicI32,
    ppid: AtomicI32,
    how: AtomicU32,
    /// 1: not a program image (a forked copy that has not exec'd, or a claim for a program
    /// that has not started): its counters are zero; 0: a program image.
    fork: AtomicU32,
    _reserved: AtomicU32,
    name: [AtomicU64; NAME_BYTES / 8],
    exec_target: [AtomicU64; NAME_BYTES / 8],
    counters: [AtomicU64; COUNTERS],
}

impl Slot {
    pub(crate) fn state(&self) -> u32 {
        self.state.load(Acquire)
    }

    pub(crate) fn pid(&self) -> i32 {
        self.pid.load(Relaxed)
    }

    pub(crate) fn ppid(&self) -> i32 {
        self.ppid.load(Relaxed)
    }

    pub(crate) fn how(&self) -> u32 {
        self.how.load(Relaxed)
    }

    /// A forked copy that has not exec'd (so it reports no counters of its own).
    pub(crate) fn is_fork(&self) -> bool {
        self.fork.load(Relaxed) != 0
    }

    /// The program's file name (up to [`NAME_BYTES`]).
    pub(crate) fn name(&self) -> ([u8; NAME_BYTES], usize) {
        read_name(&self.name)
    }

    /// What a slot that left inger exec'd (up to [`NAME_BYTES`]).
    pub(crate) fn exec_target(&self) -> ([u8; NAME_BYTES], usize) {
        read_name(&self.exec_target)
    }

    pub(crate) fn counters(&self) -> [u64; COUNTERS] {
        core::array::from_fn(|i| self.counters[i].load(Relaxed))
    }

    /// Publishes the owner's counters. Async-signal-safe.
    pub(crate) fn store_counters(&self, values: &[u64; COUNTERS]) {
        for (slot, value) in self.counters.iter().zip(values) {
            slot.store(*value, Relaxed);
        }
    }

    pub(crate) fn set_exec_target(&self, target: &[u8]) {
        write_name(&self.exec_target, target);
    }

    /// Whether the slot stands for a process that has not ended.
    pub(crate) fn is_live(&self) -> bool {
        !matches!(self.state(), state::FREE | state::ENDED)
    }
}

fn read_name(words: &[AtomicU64; NAME_BYTES / 8]) -> ([u8; NAME_BYTES], usize) {
    let mut bytes = [0u8; NAME_BYTES];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.load(Relaxed).to_le_bytes());
    }
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(NAME_BYTES);
    (bytes, len)
}

fn write_name(words: &[AtomicU64; NAME_BYTES / 8], name: &[u8]) {
    let mut bytes = [0u8; NAME_BYTES];
    let len = name.len().min(NAME_BYTES);
    bytes[..len].copy_from_slice(&name[..len]);
    for (chunk, word) in bytes.chunks_exact(8).zip(words) {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(chunk);
        word.store(u64::from_le_bytes(raw), Relaxed);
    }
}

/// Bytes of the file: the header page, then the slots.
pub(crate) const fn file_size() -> usize {
    PAGE + CAPACITY as usize * size_of::<Slot>()
}

const _: () = assert!(size_of::<Header>() <= PAGE);

/// A mapped ledger.
pub(crate) struct Ledger {
    header: &'static Header,
    slots: &'static [Slot],
}

/// Maps the ledger at `path` (read-write, shared) and checks its header; the descriptor is
/// closed again. `None` if it cannot be opened (removed at the end of the run) or is not a
/// ledger. Not for signal handlers (it runs once, at start-up or in a fork child).
pub(crate) fn open(path: &CStr) -> Option<&'static Ledger> {
    // SAFETY: `path` is NUL-terminated.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let ledger = map(fd);
    // SAFETY: closing the descriptor we opened; the mapping stays.
    unsafe { libc::close(fd) };
    let ledger = ledger?;
    (ledger.header.magic.load(Acquire) == MAGIC).then_some(ledger)
}

fn map(fd: c_int) -> Option<&'static Ledger> {
    // SAFETY: a zeroed stat is a valid out-parameter.
    let mut status: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `fd` is open; `status` is valid.
    if unsafe { libc::fstat(fd, &mut status) } != 0
        || usize::try_from(status.st_size).ok() != Some(file_size())
    {
        return None;
    }
    // SAFETY: mapping a file we opened, of the size checked above.
    let base = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            file_size(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: the mapping is file_size() bytes, page-aligned, never unmapped (it lives as long
    // as the process), and holds only atomics, for which any bit pattern is valid: a header
    // at the start and CAPACITY slots after the first page.
    let (header, slots) = unsafe {
        (
            &*base.cast::<Header>(),
            core::slice::from_raw_parts(
                base.cast::<u8>().add(PAGE).cast::<Slot>(),
                CAPACITY as usize,
            ),
        )
    };
    let ledger = Ledger { header, slots };
    // Leaked on purpose: the mapping outlives every use (signal handlers included).
    Some(Box::leak(Box::new(ledger)))
}

impl Ledger {
    pub(crate) fn root_pid(&self) -> i32 {
        self.header.root_pid.load(Relaxed)
    }

    pub(crate) fn live(&self) -> u32 {
        self.header.live.load(Acquire)
    }

    pub(crate) fn uncounted(&self) -> u32 {
        self.header.uncounted.load(Relaxed)
    }

    pub(crate) fn left_inger(&self) -> u32 {
        self.header.left_inger.load(Relaxed)
    }

    pub(crate) fn root_ended(&self) -> bool {
        self.header.root_ended.load(Acquire) != 0
    }

    pub(crate) fn set_root_ended(&self) {
        self.header.root_ended.store(1, Release);
    }

    /// Undoes [`Ledger::set_root_ended`] (the root's exec failed and it goes on).
    pub(crate) fn clear_root_ended(&self) {
        self.header.root_ended.store(0, Release);
    }

    pub(crate) fn finalized(&self) -> bool {
        self.header.finalized.load(Acquire) != 0
    }

    pub(crate) fn set_finalized(&self) {
        self.header.finalized.store(1, Release);
    }

    /// The slots handed out so far (in claim order).
    pub(crate) fn slots(&self) -> &'static [Slot] {
        let claimed = self.header.claimed.load(Acquire).min(CAPACITY);
        &self.slots[..claimed as usize]
    }

    /// Slots that may still be live (from the low-water mark on).
    fn scan(&self) -> impl Iterator<Item = &'static Slot> {
        let slots = self.slots();
        let low = (self.header.low_water.load(Relaxed) as usize).min(slots.len());
        slots[low..].iter()
    }

    /// Claims a fresh slot; `count_live` says whether it adds a live process. `None` (and
    /// the process counted as uncounted) when the ledger is full.
    fn claim(
        &self,
        pid: i32,
        ppid: i32,
        name: &[u8],
        initial: u32,
        count_live: bool,
    ) -> Option<&'static Slot> {
        let index = self.header.claimed.fetch_add(1, AcqRel);
        if index >= CAPACITY {
            self.header.uncounted.fetch_add(1, Relaxed);
            return None;
        }
        if count_live {
            self.header.live.fetch_add(1, AcqRel);
        }
        let slot = &self.slots[index as usize];
        slot.pid.store(pid, SeqCst);
        slot.ppid.store(ppid, Relaxed);
        slot.how.store(how::NOT_ENDED, Relaxed);
        slot.fork
            .store(u32::from(initial == state::FORKED), Relaxed);
        write_name(&slot.name, name);
        slot.state.store(initial, SeqCst);
        Some(slot)
    }

    /// A program image starting under inger: takes over the slot of the exec that started
    /// it (same pid), or claims a new one (and withdraws a `posix_spawn` claim made for it,
    /// see [`Ledger::spawned`]).
    pub(crate) fn register_image(&self, pid: i32, ppid: i32, name: &[u8]) -> Option<&'static Slot> {
        for slot in self.scan() {
            if slot.pid.load(SeqCst) != pid {
                continue;
            }
            if slot
                .state
                .compare_exchange(state::FORKED_EXECING, state::RUNNING, AcqRel, Relaxed)
                .is_ok()
            {
                // A forked copy (zero counters) becomes this image.
                slot.ppid.store(ppid, Relaxed);
                slot.fork.store(0, Relaxed);
                write_name(&slot.name, name);
                return Some(slot);
            }
            if slot
                .state
                .compare_exchange(state::RUNNING_EXECING, state::ENDED, AcqRel, Relaxed)
                .is_ok()
            {
                // The previous image keeps its counters; its live count passes to this one.
                slot.how.store(how::EXECED, Relaxed);
                let fresh = self.claim(pid, ppid, name, state::RUNNING, false);
                if fresh.is_none() {
                    self.header.live.fetch_sub(1, AcqRel);
                }
                self.advance_low_water();
                return fresh;
            }
        }
        let fresh = self.claim(pid, ppid, name, state::RUNNING, true);
        // Claimed first, then looked for: either this image sees the spawner's claim with its
        // pid, or the spawner sees this slot (both sequentially consistent).
        for slot in self.scan() {
            if slot.pid.load(SeqCst) == pid && slot.state.load(SeqCst) == state::SPAWNING {
                self.withdraw(slot, state::SPAWNING);
            }
        }
        fresh
    }

    /// A forked copy of a process under inger, claimed by its parent before the fork (so
    /// that it counts as live before the parent can end); the pid is set by
    /// [`Ledger::set_pid`].
    pub(crate) fn register_fork(&self, ppid: i32, name: &[u8]) -> Option<&'static Slot> {
        self.claim(0, ppid, name, state::FORKED, true)
    }

    /// Sets the pid of a slot claimed before its process existed.
    pub(crate) fn set_pid(&self, slot: &Slot, pid: i32) {
        slot.pid.store(pid, SeqCst);
    }

    /// A process about to `exec` a program under inger without a slot of its own (a `vfork`
    /// child, which shares its parent's memory: only the shared ledger is written).
    pub(crate) fn register_exec(&self, pid: i32, ppid: i32, name: &[u8]) -> Option<&'static Slot> {
        self.claim(pid, ppid, name, state::FORKED_EXECING, true)
    }

    /// Claimed before `posix_spawn` of a program under inger, so that it counts as live
    /// before the spawner can end.
    pub(crate) fn register_spawn(&self, ppid: i32, name: &[u8]) -> Option<&'static Slot> {
        self.claim(0, ppid, name, state::SPAWNING, true)
    }

    /// The spawn of `slot` returned `pid`: the new program's image takes the slot over, or,
    /// if it registered first, the claim is withdrawn.
    pub(crate) fn spawned(&self, slot: &'static Slot, pid: i32) {
        slot.pid.store(pid, SeqCst);
        let registered = self.scan().any(|other| {
            !core::ptr::eq(other, slot)
                && other.pid.load(SeqCst) == pid
                && other.state.load(SeqCst) == state::RUNNING
        });
        if registered {
            self.withdraw(slot, state::SPAWNING);
        } else {
            let _ = slot.state.compare_exchange(
                state::SPAWNING,
                state::FORKED_EXECING,
                AcqRel,
                Relaxed,
            );
        }
    }

    /// Ends a claim that is not needed (`expected`: the state it must still be in).
    pub(crate) fn withdraw(&self, slot: &Slot, expected: u32) {
        if slot
            .state
            .compare_exchange(expected, state::ENDED, AcqRel, Relaxed)
            .is_ok()
        {
            slot.how.store(how::WITHDRAWN, Relaxed);
            slot.fork.store(1, Relaxed);
            self.header.live.fetch_sub(1, AcqRel);
            self.advance_low_water();
        }
    }

    /// Marks `slot` as calling exec of a program that will run under inger; returns the
    /// state to restore if the exec fails.
    pub(crate) fn begin_exec(&self, slot: &Slot) -> u32 {
        let before = slot.state();
        let during = match before {
            state::FORKED => state::FORKED_EXECING,
            state::RUNNING => state::RUNNING_EXECING,
            other => other,
        };
        slot.state.store(during, Release);
        before
    }

    /// Undoes [`Ledger::begin_exec`] after a failed exec.
    pub(crate) fn cancel_exec(&self, slot: &Slot, before: u32) {
        let _ = slot.state.compare_exchange(
            match before {
                state::FORKED => state::FORKED_EXECING,
                _ => state::RUNNING_EXECING,
            },
            before,
            AcqRel,
            Relaxed,
        );
    }

    /// Ends `slot` (`how`), returning how many slots are still live, or `None` if it had
    /// ended already.
    pub(crate) fn end(&self, slot: &Slot, how: u32) -> Option<u32> {
        loop {
            let current = slot.state();
            if matches!(current, state::FREE | state::ENDED) {
                return None;
            }
            if slot
                .state
                .compare_exchange(current, state::ENDED, AcqRel, Relaxed)
                .is_ok()
            {
                break;
            }
        }
        slot.how.store(how, Relaxed);
        if how == how::LEFT_INGER {
            self.header.left_inger.fetch_add(1, Relaxed);
        }
        let left = self.header.live.fetch_sub(1, AcqRel).saturating_sub(1);
        self.advance_low_water();
        Some(left)
    }

    /// Reopens a slot ended by an exec that then failed (the process goes on under inger).
    pub(crate) fn reopen(&self, slot: &Slot, state_before: u32) {
        if slot
            .state
            .compare_exchange(state::ENDED, state_before, AcqRel, Relaxed)
            .is_ok()
        {
            if slot.how() == how::LEFT_INGER {
                self.header.left_inger.fetch_sub(1, Relaxed);
            }
            slot.how.store(how::NOT_ENDED, Relaxed);
            self.header.live.fetch_add(1, AcqRel);
        }
    }

    /// Ends the slots of processes that no longer exist, keeping their last counters: a
    /// process killed by a signal has vanished; one that was about to exec a program under
    /// inger never got there (its exec failed, or what it ran stayed outside inger). Returns
    /// how many slots are live afterwards.
    pub(crate) fn sweep_vanished(&self) -> u32 {
        for slot in self.scan() {
            let pid = slot.pid();
            if !slot.is_live() || pid == 0 || process_exists(pid) {
                continue;
            }
            let how = match slot.state() {
                state::FORKED_EXECING | state::RUNNING_EXECING | state::SPAWNING => how::LEFT_INGER,
                _ => how::VANISHED,
            };
            let _ = self.end(slot, how);
        }
        self.live()
    }

    fn advance_low_water(&self) {
        let slots = self.slots();
        loop {
            let low = self.header.low_water.load(Relaxed);
            let Some(slot) = slots.get(low as usize) else {
                return;
            };
            if slot.state() != state::ENDED {
                return;
            }
            if self
                .header
                .low_water
                .compare_exchange(low, low + 1, Relaxed, Relaxed)
                .is_err()
            {
                return;
            }
        }
    }
}

/// Whether a process with this pid exists (a zombie counts). Async-signal-safe.
pub(crate) fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 || *libc::__errno_location() != libc::ESRCH }
}

/// An exclusive `flock` on the ledger file, held while a process ends and reports, so that
/// "the last one" is decided once. Async-signal-safe; released on drop.
pub(crate) struct Lock(c_int);

impl Lock {
    /// Locks the ledger at `path`; `None` if it was removed (the run is over).
    pub(crate) fn take(path: &CStr) -> Option<Lock> {
        // SAFETY: `path` is NUL-terminated.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` is open; flock blocks until the lock is ours.
        while unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {
            // SAFETY: reading this thread's errno.
            if unsafe { *libc::__errno_location() } != libc::EINTR {
                break;
            }
        }
        Some(Lock(fd))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: closing the descriptor this value owns releases the lock.
        unsafe { libc::close(self.0) };
    }
}

/// Creates a ledger for the run of `root_pid` in `dir` (the command does this, before exec).
pub(crate) fn create(dir: &std::path::Path, root_pid: i32) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let mut attempt = 0u32;
    let (path, file) = loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = dir.join(format!("inger-run-{root_pid}-{nanos:09}-{attempt}.ledger"));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => break (path, file),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    };
    file.set_len(file_size() as u64)?;
    let Some(ledger) = map(file.as_raw_fd()) else {
        let _ = std::fs::remove_file(&path);
        return Err(std::io::Error::other("cannot map the ledger"));
    };
    ledger.header.root_pid.store(root_pid, Relaxed);
    ledger.header.magic.store(MAGIC, Release);
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> (std::path::PathBuf, &'static Ledger) {
        let dir = std::env::temp_dir().join(format!("ledger-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = create(&dir, 100).unwrap();
        let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        let ledger = open(&c_path).expect("a fresh ledger opens");
        (dir, ledger)
    }

    #[test]
    fn images_forks_and_execs_keep_the_live_count() {
        let (dir, ledger) = scratch("lifecycle");
        assert_eq!(ledger.root_pid(), 100);
        let root = ledger.register_image(100, 1, b"sh").unwrap();
        let fork = ledger.register_fork(100, b"sh").unwrap();
        ledger.set_pid(fork, 101);
        assert_eq!(ledger.live(), 2);
        // The fork execs a program under inger: its slot is reused.
        let before = ledger.begin_exec(fork);
        assert_eq!(before, state::FORKED);
        let image = ledger.register_image(101, 100, b"gzip").unwrap();
        assert!(core::ptr::eq(image, fork));
        assert_eq!(image.name().0[..4], *b"gzip");
        assert_eq!(ledger.live(), 2);
        // The root execs a program under inger: a new slot, the old one keeps its counters.
        root.store_counters(&[7; COUNTERS]);
        ledger.begin_exec(root);
        let next = ledger.register_image(100, 1, b"xz").unwrap();
        assert!(!core::ptr::eq(next, root));
        assert_eq!(root.how(), how::EXECED);
        assert_eq!(root.counters()[0], 7);
        assert_eq!(ledger.live(), 2);
        assert_eq!(ledger.end(image, how::EXITED), Some(1));
        assert_eq!(ledger.end(image, how::EXITED), None, "ends once");
        assert_eq!(ledger.end(next, how::EXITED), Some(0));
        assert_eq!(ledger.slots().len(), 3);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_spawn_claim_is_taken_over_or_withdrawn() {
        let (dir, ledger) = scratch("spawn");
        ledger.register_image(100, 1, b"sh").unwrap();
        // The spawn returns first: the image takes the claim over.
        let claim = ledger.register_spawn(100, b"sh").unwrap();
        ledger.spawned(claim, 102);
        let image = ledger.register_image(102, 100, b"make").unwrap();
        assert!(core::ptr::eq(image, claim));
        assert_eq!(ledger.live(), 2);
        // The image registers first: the claim is withdrawn when the spawn returns.
        let claim = ledger.register_spawn(100, b"sh").unwrap();
        let image = ledger.register_image(103, 100, b"cc").unwrap();
        assert_eq!(ledger.live(), 4);
        ledger.spawned(claim, 103);
        assert_eq!(claim.how(), how::WITHDRAWN);
        assert_eq!(ledger.live(), 3);
        assert_eq!(ledger.end(image, how::EXITED), Some(2));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failed_exec_is_undone_and_vanished_processes_are_swept() {
        let (dir, ledger) = scratch("undo");
        let root = ledger.register_image(100, 1, b"sh").unwrap();
        let before = ledger.begin_exec(root);
        ledger.cancel_exec(root, before);
        assert_eq!(root.state(), state::RUNNING);
        assert_eq!(ledger.end(root, how::LEFT_INGER), Some(0));
        assert_eq!(ledger.left_inger(), 1);
        ledger.reopen(root, state::RUNNING);
        assert_eq!((ledger.live(), ledger.left_inger()), (1, 0));
        // A slot whose process is gone (pid far above any pid_max).
        ledger.register_image(i32::MAX - 1, 100, b"killed").unwrap();
        assert_eq!(ledger.live(), 2);
        assert_eq!(ledger.sweep_vanished(), 1);
        assert_eq!(ledger.slots()[1].how(), how::VANISHED);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
