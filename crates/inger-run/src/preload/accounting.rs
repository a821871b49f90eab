//! Taking part in the run's ledger (`--inherit --stats`, see `ledger.rs`): every process
//! under inger keeps its counters in its own slot, so that the top-level process prints one
//! summed report and no other process writes anything to its stderr.
//!
//! A process owns a slot from its start (an image, in the start-up hook) or from its fork (a
//! copy: the parent claims it before calling `fork`, so that the child is live before the
//! parent can end) to its end (exit, or an exec of a program outside inger). Programs
//! started by `posix_spawn` or by a `vfork` child are claimed for before they exist too
//! (see `spawn` and `exec`). Its counters reach the slot every [`REFRESH_EVERY`] resumes of `main` and at its
//! end, so a process killed by a signal, or still running when the root reports, is counted
//! up to its last update.

use core::sync::atomic::{AtomicI32, AtomicPtr, Ordering::Relaxed};
use std::ffi::CStr;
use std::sync::OnceLock;

use crate::ledger::{self, Ledger, Lock, Slot, how};
use crate::report::{self, RunCounts, Scope};
use crate::target::FixedPath;
use crate::totals::Totals;

/// Resumes of `main` between two updates of the slot (about a millisecond at a 20 us slice).
pub(crate) const REFRESH_EVERY: u64 = 64;

/// The run's ledger and its path.
static LEDGER: OnceLock<(&'static Ledger, FixedPath)> = OnceLock::new();
/// This process's slot, valid only in the process [`OWNER`] (a `vfork` child shares the
/// memory of a process that owns one, and must leave it alone).
static SLOT: AtomicPtr<Slot> = AtomicPtr::new(core::ptr::null_mut());
static OWNER: AtomicI32 = AtomicI32::new(0);

/// Joins the ledger at `path` as a new program image; false if it cannot be opened (the run
/// is over, or the file is gone).
pub(crate) fn join(path: &CStr, name: &[u8]) -> bool {
    let Some(ledger) = ledger::open(path) else {
        return false;
    };
    let Some(path) = FixedPath::from_bytes(path.to_bytes()) else {
        return false;
    };
    let pid = getpid();
    // SAFETY: getppid has no preconditions.
    let ppid = unsafe { libc::getppid() };
    if let Some(slot) = ledger.register_image(pid, ppid, name) {
        own(slot, pid);
    }
    LEDGER.set((ledger, path)).is_ok()
}

/// Whether this process takes part in a ledger.
pub(crate) fn in_ledger() -> bool {
    LEDGER.get().is_some()
}

fn own(slot: &'static Slot, pid: i32) {
    SLOT.store((slot as *const Slot).cast_mut(), Relaxed);
    OWNER.store(pid, Relaxed);
}

/// This process's slot, if it has one. Writes nothing. Async-signal-safe.
fn my_slot() -> Option<&'static Slot> {
    if OWNER.load(Relaxed) != getpid() {
        return None;
    }
    // SAFETY: a non-null pointer here is a slot of the ledger, mapped for the whole process.
    unsafe { SLOT.load(Relaxed).as_ref() }
}

/// Publishes this process's counters (called by the loop that resumes `main`).
pub(crate) fn refresh() {
    if let Some(slot) = my_slot().filter(|slot| !slot.is_fork()) {
        slot.store_counters(&Totals::of_this_process().to_array());
    }
}

/// This process's program name, for the slots it claims for others.
fn own_name() -> &'static [u8] {
    report::info().map_or(&b""[..], |info| info.exe.file_name())
}

/// Before `fork`, in the parent: claims the child's slot, so that the child counts as live
/// before the parent can end. `None` outside a ledger.
pub(crate) fn before_fork() -> Option<&'static Slot> {
    let (ledger, _) = LEDGER.get()?;
    my_slot()?;
    ledger.register_fork(getpid(), own_name())
}

/// After `fork`: the parent records the child's pid (or withdraws the claim if the fork
/// failed); the child takes the slot as its own (it has no timer, so it reports no counters
/// of its own, but it is a live process of the run until it exits or execs).
pub(crate) fn after_fork(claim: Option<&'static Slot>, pid: i32) {
    let (Some(slot), Some((ledger, _))) = (claim, LEDGER.get()) else {
        return;
    };
    match pid {
        0 => {
            let me = getpid();
            ledger.set_pid(slot, me);
            own(slot, me);
        }
        child if child > 0 => ledger.set_pid(slot, child),
        _ => ledger.withdraw(slot, ledger::state::FORKED),
    }
}

/// Before `posix_spawn` of a program that will run under inger: claims its slot (see
/// [`Ledger::spawned`]).
pub(crate) fn before_spawn() -> Option<&'static Slot> {
    let (ledger, _) = LEDGER.get()?;
    my_slot()?;
    ledger.register_spawn(getpid(), own_name())
}

/// After `posix_spawn`: `pid` on success, else the claim is withdrawn.
pub(crate) fn after_spawn(claim: Option<&'static Slot>, pid: Option<i32>) {
    let (Some(slot), Some((ledger, _))) = (claim, LEDGER.get()) else {
        return;
    };
    match pid {
        Some(pid) => ledger.spawned(slot, pid),
        None => ledger.withdraw(slot, ledger::state::SPAWNING),
    }
}

/// The end of this process: its slot's final counters, and the report if it is the root (or
/// the final `--stats-file` if it is the last). Async-signal-safe but for inger's statistics.
pub(crate) fn end_of_process() {
    let (Some(slot), Some((ledger, path))) = (my_slot(), LEDGER.get()) else {
        return;
    };
    if !slot.is_fork() {
        slot.store_counters(&Totals::of_this_process().to_array());
    }
    let is_root = is_root(ledger, slot);
    let _lock = Lock::take(path.as_c_str());
    if is_root {
        ledger.set_root_ended();
    }
    if let Some(left) = ledger.end(slot, how::EXITED) {
        finish(ledger, path, is_root, left, None);
    }
}

fn is_root(ledger: &Ledger, slot: &Slot) -> bool {
    !slot.is_fork() && getpid() == ledger.root_pid()
}

/// What to undo if an exec announced to [`before_exec`] fails.
pub(crate) enum Undo {
    Nothing,
    /// The slot was marked as exec'ing (state before).
    Exec(u32),
    /// The slot was ended because the process left inger (state before; it was the root).
    Left(u32, bool),
}

/// This process is about to exec `target`; `stays` says whether the new program will run
/// under inger in this run. Async-signal-safe but for inger's statistics.
pub(crate) fn before_exec(stays: bool, target: &[u8]) -> Undo {
    let Some((ledger, path)) = LEDGER.get() else {
        return Undo::Nothing;
    };
    let Some(slot) = my_slot() else {
        // A process without a slot of its own: a vfork child (its memory is its parent's, so
        // only the shared ledger is written), or a child made without fork(). The new program
        // takes the claim over; if the exec fails, the claim is swept once the process is
        // gone.
        if stays {
            // SAFETY: getppid has no preconditions.
            let ppid = unsafe { libc::getppid() };
            let _ = ledger.register_exec(getpid(), ppid, own_name());
        }
        return Undo::Nothing;
    };
    if !slot.is_fork() {
        slot.store_counters(&Totals::of_this_process().to_array());
    }
    if stays {
        return Undo::Exec(ledger.begin_exec(slot));
    }
    let shown = match target.iter().rposition(|&b| b == b'/') {
        Some(slash) => &target[slash + 1..],
        None => target,
    };
    slot.set_exec_target(shown);
    let is_root = is_root(ledger, slot);
    let state_before = slot.state();
    let _lock = Lock::take(path.as_c_str());
    if is_root {
        ledger.set_root_ended();
    }
    match ledger.end(slot, how::LEFT_INGER) {
        Some(left) => {
            finish(ledger, path, is_root, left, Some(target));
            Undo::Left(state_before, is_root)
        }
        None => Undo::Nothing,
    }
}

/// The exec announced to [`before_exec`] failed: the process goes on under inger.
pub(crate) fn exec_failed(undo: Undo) {
    let (Some(slot), Some((ledger, _))) = (my_slot(), LEDGER.get()) else {
        return;
    };
    match undo {
        Undo::Nothing => {}
        Undo::Exec(before) => ledger.cancel_exec(slot, before),
        Undo::Left(before, was_root) => {
            ledger.reopen(slot, before);
            if was_root {
                ledger.clear_root_ended();
            }
        }
    }
}

/// After a slot ended, under the ledger's lock: the root reports; the last process after the
/// root rewrites the `--stats-file` with the final totals; whoever finds nothing left
/// removes the ledger.
fn finish(ledger: &Ledger, path: &FixedPath, is_root: bool, mut left: u32, left_at: Option<&[u8]>) {
    let root_gone = is_root || ledger.root_ended() || !ledger::process_exists(ledger.root_pid());
    if left > 0 && root_gone {
        left = ledger.sweep_vanished();
    }
    let last = left == 0 && root_gone;
    let has_file = report::info().is_some_and(|info| info.stats_file.is_some());
    if is_root || (last && has_file && !ledger.finalized()) {
        write_summary(ledger, last, left_at);
    }
    if last && !ledger.finalized() {
        ledger.set_finalized();
        // SAFETY: removing our run's ledger by its path; mappings stay valid.
        unsafe { libc::unlink(path.as_c_str().as_ptr()) };
    }
}

/// Sums the ledger and writes the report (to the stats file, or the root's stderr).
fn write_summary(ledger: &Ledger, last: bool, left_at: Option<&[u8]>) {
    let mut totals = Totals::default();
    let (mut programs, mut still_running, mut vanished) = (0, 0, 0);
    for slot in ledger.slots() {
        if slot.state() == ledger::state::FREE {
            continue;
        }
        totals.add(&Totals::from_array(&slot.counters()));
        programs += u64::from(!slot.is_fork());
        still_running += u64::from(slot.is_live());
        vanished += u64::from(slot.how() == how::VANISHED);
    }
    let run = RunCounts {
        still_running,
        vanished,
        left_inger: u64::from(ledger.left_inger()),
        uncounted: u64::from(ledger.uncounted()),
        last,
    };
    let scope = Scope::Run {
        root_pid: ledger.root_pid(),
        programs,
        left_at,
    };
    let per_process = report::info().is_some_and(|info| info.per_process);
    report::write_report(&mut |out| {
        report::format_report(out, &scope, &totals, Some(&run))?;
        if per_process {
            report::format_processes(out, ledger)?;
        }
        Ok(())
    });
}

fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}
