//! Which runtime a timer signal is for: the table the handler checks every delivery against.
//!
//! Context: [`lookup`] runs in the **signal handler** (async-signal-safe: atomic loads only);
//! the rest in the caller, when a thread's runtime starts, creates a timer, or exits.
//!
//! A timer signal carries whatever `si_value` its timer was created with, and the preemption
//! signal is an ordinary real-time signal: a program (or a library) may create its own timer
//! on it, with a value that means something else (a program under `inger-run`, which
//! emulates the signal for it, legitimately does). Reading a runtime pointer out of such a
//! value would follow a wild pointer. So the value of inger's timers is an index into this
//! table, and a delivery counts only if the table's entry at that index holds the kernel id
//! of the very timer that fired (`si_timerid`): kernel timer ids are unique among a process's
//! live timers, so a foreign timer can never match, and is ignored.
//!
//! The table grows by segments (64, 128, 256, ... entries) that are never freed, so the
//! handler can read an entry without a lock while another thread adds one; there is no
//! limit on the number of threads beyond memory. Indices of exited threads are reused. The
//! table knows runtimes only as addresses (it is a leaf: `control` uses it).

use core::ptr::null_mut;
use core::sync::atomic::{
    AtomicI64, AtomicPtr, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::Mutex;

/// Which of a thread's timers fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The monotonic-clock timer (wall-clock deadlines, retries).
    Wall,
    /// The thread-CPU-clock timer (CPU budgets of functions that wait).
    Cpu,
}

/// No timer in this place of an entry.
const NONE: i64 = -1;
/// Entries in the first segment; segment `s` holds `FIRST << s`.
const FIRST: usize = 64;
/// Segments: enough for about a billion threads.
const SEGMENTS: usize = 24;

/// One thread's entry: its runtime's address and the kernel ids of its timers.
struct Entry {
    runtime: AtomicUsize,
    wall: AtomicI64,
    cpu: AtomicI64,
}

impl Entry {
    fn empty() -> Entry {
        Entry {
            runtime: AtomicUsize::new(0),
            wall: AtomicI64::new(NONE),
            cpu: AtomicI64::new(NONE),
        }
    }
}

static TABLE: [AtomicPtr<Entry>; SEGMENTS] = [const { AtomicPtr::new(null_mut()) }; SEGMENTS];

/// Indices handed out so far, and the ones given back.
struct Allocation {
    next: usize,
    free: Vec<usize>,
}

static ALLOCATION: Mutex<Allocation> = Mutex::new(Allocation {
    next: 0,
    free: Vec::new(),
});

/// The segment and offset of `index`.
fn locate(index: usize) -> Option<(usize, usize)> {
    // Segment `s` starts at FIRST * (2^s - 1).
    let scaled = index / FIRST + 1;
    let segment = (usize::BITS - 1 - scaled.leading_zeros()) as usize;
    if segment >= SEGMENTS {
        return None;
    }
    let start = FIRST * ((1 << segment) - 1);
    Some((segment, index - start))
}

/// The entry at `index`, if its segment exists. Context: any; async-signal-safe.
fn entry(index: usize) -> Option<&'static Entry> {
    let (segment, offset) = locate(index)?;
    let base = TABLE[segment].load(Acquire);
    if base.is_null() {
        return None;
    }
    // SAFETY: a published segment holds `FIRST << segment` entries and is never freed.
    Some(unsafe { &*base.add(offset) })
}

/// A thread's place in the table, held by its runtime; given back on drop. Context: caller.
pub(crate) struct Slot(usize);

impl Slot {
    /// Takes a free place. Context: caller (allocates a segment when the table is full).
    pub(crate) fn take() -> Slot {
        let mut allocation = ALLOCATION
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(index) = allocation.free.pop() {
            return Slot(index);
        }
        let index = allocation.next;
        let (segment, _) = locate(index).expect("inger: a billion threads");
        if TABLE[segment].load(Relaxed).is_null() {
            let entries: Box<[Entry]> = (0..FIRST << segment).map(|_| Entry::empty()).collect();
            TABLE[segment].store(Box::leak(entries).as_mut_ptr(), Release);
        }
        allocation.next += 1;
        Slot(index)
    }

    /// The index that the thread's timers carry as their `si_value`.
    pub(crate) fn index(&self) -> usize {
        self.0
    }

    fn entry(&self) -> &'static Entry {
        entry(self.0).expect("inger: a taken slot's segment exists")
    }

    /// Records the runtime at address `runtime` as this place's owner; deliveries are
    /// accepted from here on.
    pub(crate) fn publish(&self, runtime: usize) {
        self.entry().runtime.store(runtime, Release);
    }

    /// Records the kernel id of the thread's `kind` timer.
    pub(crate) fn set_timer(&self, kind: Kind, kernel_id: i32) {
        let entry = self.entry();
        let place = match kind {
            Kind::Wall => &entry.wall,
            Kind::Cpu => &entry.cpu,
        };
        place.store(i64::from(kernel_id), Release);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let entry = self.entry();
        entry.runtime.store(0, Relaxed);
        entry.wall.store(NONE, Relaxed);
        entry.cpu.store(NONE, Relaxed);
        let mut allocation = ALLOCATION
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        allocation.free.push(self.0);
    }
}

/// The address of the runtime a timer delivery is for, and which of its timers fired: `None` for a timer
/// that is not inger's. `value` is the delivery's `si_value`, `timer_id` its `si_timerid`.
/// A returned runtime is live: it stays published only while it lives (it is unpublished,
/// its slot dropped, after its timers are deleted and the signal blocked on its exiting
/// thread). Context: signal handler; async-signal-safe.
pub(crate) fn lookup(value: usize, timer_id: i32) -> Option<(usize, Kind)> {
    let entry = entry(value)?;
    let id = i64::from(timer_id);
    let kind = if entry.wall.load(Acquire) == id {
        Kind::Wall
    } else if entry.cpu.load(Acquire) == id {
        Kind::Cpu
    } else {
        return None;
    };
    let runtime = entry.runtime.load(Acquire);
    (runtime != 0).then_some((runtime, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_map_to_segments_without_gaps() {
        let mut expected = (0, 0);
        for index in 0..FIRST * 15 {
            assert_eq!(locate(index), Some(expected), "index {index}");
            expected.1 += 1;
            if expected.1 == FIRST << expected.0 {
                expected = (expected.0 + 1, 0);
            }
        }
        assert_eq!(locate(usize::MAX), None);
    }

    #[test]
    fn only_the_recorded_timer_of_a_place_is_accepted() {
        let slot = Slot::take();
        let fake = 0x1000;
        slot.publish(fake);
        slot.set_timer(Kind::Wall, 7);
        slot.set_timer(Kind::Cpu, 9);
        let found = |id| lookup(slot.index(), id);
        assert_eq!(found(7), Some((fake, Kind::Wall)));
        assert_eq!(found(9), Some((fake, Kind::Cpu)));
        assert_eq!(found(8), None, "a foreign timer");
        assert_eq!(
            lookup(usize::MAX, 7).map(|(_, kind)| kind),
            None,
            "a wild value"
        );
        let index = slot.index();
        drop(slot);
        assert!(
            lookup(index, 7).is_none(),
            "a given-back place accepts nothing"
        );
    }
}
