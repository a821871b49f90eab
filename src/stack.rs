//! Stacks for preemptible functions: mapped in chunks, guarded, lazily committed, pooled.
//!
//! Context: caller or function stack (never the signal handler, which only reads the layout).
//!
//! ```text
//!  chunk (one mmap, one VMA with lightweight guards), every slot 2^k bytes and 2^k-aligned:
//!  | guard | stack 0 ........... | guard | stack 1 ........... | guard | ... | guard |
//!          ^ slot 0                      ^ slot 1                             (last slot's)
//!  low addresses                                                      high addresses
//! ```
//!
//! A slot holds one stack with its *upper* neighbour's guard at its end (and the chunk keeps a
//! guard below slot 0), so a stack's top is always the same distance below a 2^k boundary:
//! the redirect stubs (see `arch`) find the top, and the word reserved there
//! ([`TOP_RESERVED`]), from any stack pointer of the function with a mask. The slot size is
//! the smallest power of two that holds the configured stack size plus its guard.
//!
//! Each stack grows down from its top towards the guard below it; touching the guard faults,
//! and the fault handler reports the overflow. Pages cost memory only once touched.
//!
//! Pools: each thread's runtime keeps a free list of up to [`THREAD_POOL_CAP`] stacks, so a
//! launch takes a stack without a system call or a lock. A stack carries the private TLS
//! block of the functions that ran on it (see `sys::tls`), which is reused with it. Stacks
//! beyond the cap (released [`RELEASE_BATCH`] + 1 at a time, least recently used first), and
//! all of a thread's stacks when it exits, have their pages discarded and go to a
//! process-wide list that threads refill from before mapping a new chunk. Chunks are never
//! unmapped: the address space of the peak number of live stacks stays reserved (not
//! committed), as a memory allocator's.
//!
//! A stack whose function was discarded (cancelled while paused, without unwinding) is
//! *retired* instead: it is never handed to another function, and the part that held the
//! function's live frames stays mapped, readable, writable and untouched for the life of the
//! process. Values pinned there (an intrusive-list node of a synchronisation primitive, a
//! future's state) and data borrowed by activity the function started (a scoped thread) stay
//! valid, which `Pin`'s drop guarantee and Rust's borrow rules require of memory whose
//! destructors never ran: the discarded function is frozen, not freed. Only the pages below
//! its live frames, which nothing can point into, are returned to the kernel. A discarded
//! function therefore keeps its live pages resident (usually one to three), one page of page
//! tables and the stack's address space (its size plus the guard) for good: bounded per
//! discard, and the reason cancellation unwinds cooperatively first (see `linger`).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

use crate::config::settings;
use crate::error::Error;
use crate::sys::{debug_tools, memory};

/// Bytes of guard below every stack. Larger than a page so that a C function with a big
/// frame (no stack probes) still lands in it rather than in the next stack.
pub(crate) const GUARD_SIZE: usize = 64 * 1024;
const STACKS_PER_CHUNK: usize = 32;
/// Bytes at the very top of every stack kept for the runtime, above the function's control
/// block: the return address of a redirected frame lives in the top word (see `arch`).
pub(crate) const TOP_RESERVED: usize = 16;

/// The slot of a stack of (at least) `stack_size` usable bytes: the smallest power of two that
/// holds it and its guard.
pub(crate) fn slot_size(stack_size: usize) -> usize {
    (stack_size + GUARD_SIZE).next_power_of_two()
}
const THREAD_POOL_CAP: usize = 64;
/// Stacks a thread's pool may hold beyond [`THREAD_POOL_CAP`] before the excess is released
/// in one go (one system call for the batch).
const RELEASE_BATCH: usize = 16;
/// Retired stacks a thread queues before guarding and discarding them in one go.
pub(crate) const RETIRE_BATCH: usize = 16;

/// Usable bytes of every stack (its slot less the guard): a process constant, written by the
/// first [`map_chunk`] before any [`Stack`] exists, so a `Stack` need not carry it.
static STACK_SIZE: AtomicUsize = AtomicUsize::new(0);

/// The usable size of every stack. Only meaningful once a stack exists.
#[inline]
fn stack_size() -> usize {
    STACK_SIZE.load(Relaxed)
}

/// One stack: `[top - size, top)` (`size` is the process's [`stack_size`]), with the guard
/// `[top - size - GUARD_SIZE, top - size)` below it, and the thread pointer of its private
/// TLS block (0 until one is allocated).
///
/// Two words, so that an `Option<Stack>` travels in registers: the launch path takes and
/// returns one per call, and a larger value went through memory with loads wider than the
/// stores that wrote it, which stalls.
#[derive(Debug)]
pub(crate) struct Stack {
    top: NonNull<u8>,
    pub(crate) tls: usize,
}

const _: () = assert!(core::mem::size_of::<Option<Stack>>() == 16);

// SAFETY: a Stack is a plain description of memory owned by whoever holds the value; moving
// it to another thread moves that ownership.
unsafe impl Send for Stack {}

impl Stack {
    /// The highest address (exclusive): stacks grow down from here.
    #[inline]
    pub(crate) fn top(&self) -> *mut u8 {
        self.top.as_ptr()
    }

    /// The lowest usable address.
    #[inline]
    pub(crate) fn base(&self) -> usize {
        self.top.as_ptr() as usize - stack_size()
    }

    /// Usable bytes, from [`base`](Self::base) to [`top`](Self::top).
    #[inline]
    pub(crate) fn size(&self) -> usize {
        stack_size()
    }

    /// Gives the stack up for good: its memory stays mapped and is never reused (used where
    /// returning it to a pool is not possible, such as inside a signal handler).
    pub(crate) fn leak(self) {}

    /// Whether `address` lies in this stack's guard region.
    #[cfg(test)]
    pub(crate) fn guard_contains(&self, address: usize) -> bool {
        let base = self.base();
        address < base && address >= base - GUARD_SIZE
    }
}

/// A thread's free stacks, and TLS blocks saved from retired stacks. Only its own thread
/// touches it, with preemption deferred.
#[derive(Default)]
pub(crate) struct StackPool {
    free: Vec<Stack>,
    spare_tls: Vec<usize>,
}

impl StackPool {
    /// Takes a stack, refilling from the process-wide list or a new chunk if empty.
    pub(crate) fn take(&mut self) -> Result<Stack, Error> {
        if let Some(stack) = self.take_pooled() {
            return Ok(stack);
        }
        let mut stack = self.refill()?;
        if let Some(block) = self.spare_tls.pop() {
            stack.tls = block;
        }
        Ok(stack)
    }

    /// Takes a pooled stack, without refilling (`None` if the pool is empty): given a spare
    /// TLS block if it has none. Never allocates or locks.
    #[inline]
    pub(crate) fn take_pooled(&mut self) -> Option<Stack> {
        let mut stack = self.free.pop()?;
        if stack.tls == 0
            && let Some(block) = self.spare_tls.pop()
        {
            stack.tls = block;
        }
        Some(stack)
    }

    /// Whether [`take`](Self::take) must refill (lock the process-wide list or map memory),
    /// or the caller must then allocate a TLS block for the stack (`private_tls`: functions
    /// get private TLS blocks; with shared TLS stacks never carry one): a slow path, which is
    /// not async-signal-safe.
    pub(crate) fn take_is_slow(&self, private_tls: bool) -> bool {
        self.free.is_empty()
            || (private_tls
                && self.free.last().is_some_and(|s| s.tls == 0)
                && self.spare_tls.is_empty())
    }

    /// Whether [`give_back`](Self::give_back) would hand stacks to the process-wide list (it
    /// locks): a slow path, which is not async-signal-safe.
    pub(crate) fn give_back_is_slow(&self) -> bool {
        self.free.len() >= THREAD_POOL_CAP + RELEASE_BATCH
    }

    /// Keeps a TLS block (already reset) for a later stack that has none.
    pub(crate) fn keep_tls(&mut self, block: usize) {
        self.spare_tls.push(block);
    }

    /// Returns a stack whose function finished normally, for reuse.
    pub(crate) fn give_back(&mut self, stack: Stack) {
        self.free.push(stack);
        if self.free.len() > THREAD_POOL_CAP + RELEASE_BATCH {
            // Only the excess goes, the least recently used first (stacks are taken from the
            // end): a burst of returns beyond the cap then discards no more stacks than it
            // exceeds the cap by, so the next burst of launches faults no more pages in.
            let extra: Vec<Stack> = self.free.drain(..=RELEASE_BATCH).collect();
            release_to_global(extra);
        }
    }

    /// Slow path: take from the process-wide list, or map a new chunk.
    #[cold]
    fn refill(&mut self) -> Result<Stack, Error> {
        let mut batch: Vec<Stack> = {
            let mut global = GLOBAL
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let keep = global.len().saturating_sub(STACKS_PER_CHUNK);
            global.split_off(keep)
        };
        if batch.is_empty() {
            batch = map_chunk()?;
        }
        let stack = batch.pop().ok_or(Error::StackAllocation {
            errno: libc::ENOMEM,
        })?;
        self.free.extend(batch);
        Ok(stack)
    }

    /// Stacks currently cached.
    #[cfg(test)]
    pub(crate) fn cached(&self) -> usize {
        self.free.len()
    }
}

impl Drop for StackPool {
    fn drop(&mut self) {
        release_to_global(core::mem::take(&mut self.free));
    }
}

static GLOBAL: Mutex<Vec<Stack>> = Mutex::new(Vec::new());

/// Hands a stack to the process-wide list (used when no thread pool is at hand).
pub(crate) fn give_back_global(stack: Stack) {
    release_to_global(vec![stack]);
}

/// Retires the stack of a function discarded while paused: it is never reused. `live_low` is
/// the lowest stack pointer of the function's suspended frames: the region above it may
/// still be referenced and is left exactly as it is (see the module docs); the pages below it
/// are returned to the kernel.
pub(crate) fn retire(stack: Stack, live_low: usize) {
    retire_all(&[(stack, live_low)]);
}

/// Retires several stacks at once, each with its `live_low`: one system call in all where the
/// kernel allows it.
pub(crate) fn retire_all(stacks: &[(Stack, usize)]) {
    let page = crate::sys::process::page_size();
    let mut discards = Vec::with_capacity(stacks.len());
    for &(ref stack, live_low) in stacks {
        let top = stack.top() as usize;
        let live_from = (live_low.clamp(stack.base(), top) & !(page - 1)).max(stack.base());
        discards.push((stack.base(), live_from - stack.base()));
    }
    // Failure only leaves those pages committed.
    let _ = memory::advise_all(&discards, libc::MADV_DONTNEED);
}

fn release_to_global(stacks: Vec<Stack>) {
    if stacks.is_empty() {
        return;
    }
    // Their pages go back to the kernel, in one system call where the kernel allows it.
    let ranges: Vec<(usize, usize)> = stacks.iter().map(|s| (s.base(), s.size())).collect();
    let _ = memory::advise_all(&ranges, libc::MADV_DONTNEED);
    let mut global = GLOBAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    global.extend(stacks);
}

fn map_chunk() -> Result<Vec<Stack>, Error> {
    let settings = settings()?;
    // Before the first function runs: debuggers and sanitizers learn about inger here.
    debug_tools::init(settings.signal);
    let slot = slot_size(settings.stack_size);
    let size = slot - GUARD_SIZE;
    // The same value every time (the settings are fixed for the process's life), stored
    // before the first `Stack` is made.
    STACK_SIZE.store(size, Relaxed);
    // The guard below slot 0, then the slots, aligned to the slot size.
    let base = memory::map(GUARD_SIZE + slot * STACKS_PER_CHUNK, slot, GUARD_SIZE)?;
    memory::guard(base, GUARD_SIZE)?;
    let first_slot = base.wrapping_add(GUARD_SIZE);
    let mut stacks = Vec::with_capacity(STACKS_PER_CHUNK);
    for index in (0..STACKS_PER_CHUNK).rev() {
        let stack = first_slot.wrapping_add(index * slot);
        memory::guard(stack.wrapping_add(size), GUARD_SIZE)?;
        debug_tools::register_stack(stack as usize, stack as usize + size);
        // SAFETY: inside the mapping just made, which is not null.
        let top = unsafe { NonNull::new_unchecked(stack.wrapping_add(size)) };
        stacks.push(Stack { top, tls: 0 });
    }
    Ok(stacks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_returns_releases_only_the_excess_over_the_cap() {
        let mut pool = StackPool::default();
        let stacks: Vec<Stack> = (0..100).map(|_| pool.take().unwrap()).collect();
        let last_top = stacks.last().unwrap().top();
        let mut most = 0;
        for stack in stacks {
            pool.give_back(stack);
            most = most.max(pool.cached());
        }
        assert!(most <= THREAD_POOL_CAP + RELEASE_BATCH, "held {most}");
        // 100 returns: the excess over the cap went, in batches, and no more (releasing
        // down to half the cap, as before, kept 34 here).
        assert!(pool.cached() >= THREAD_POOL_CAP, "kept {}", pool.cached());
        // The most recently returned stack is the first taken again.
        let again = pool.take().unwrap();
        assert_eq!(again.top(), last_top);
        pool.give_back(again);
    }

    #[test]
    fn stacks_are_reused_from_the_pool() {
        let mut pool = StackPool::default();
        let first = pool.take().unwrap();
        let top = first.top();
        pool.give_back(first);
        let again = pool.take().unwrap();
        assert_eq!(again.top(), top);
        pool.give_back(again);
        assert!(pool.cached() >= 1);
    }

    #[test]
    fn stacks_are_writable_and_disjoint() {
        let mut pool = StackPool::default();
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        // SAFETY: the byte just below each top is inside its own stack.
        unsafe {
            a.top().sub(1).write(1);
            b.top().sub(1).write(2);
            assert_eq!(a.top().sub(1).read(), 1);
        }
        assert!(!a.guard_contains(b.top() as usize - 1));
        assert!(a.guard_contains(a.base() - 1));
        pool.give_back(a);
        pool.give_back(b);
    }
}
