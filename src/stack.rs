//! Stacks for preemptible functions: mapped in chunks, guarded, lazily committed, pooled.
//!
//! ```text
//!  chunk (one mmap, one VMA with lightweight guards):
//!  | guard | stack 0 ........ | guard | stack 1 ........ | ... | guard | stack N-1 ...... |
//!  low addresses                                                            high addresses
//! ```
//!
//! Each stack grows down from its top towards the guard below it; touching the guard faults,
//! and the fault handler reports the overflow. Pages cost memory only once touched.
//!
//! Pools: each thread keeps a free list of up to [`THREAD_POOL_CAP`] stacks, so a launch
//! takes a stack without a system call or a lock. Stacks beyond the cap, and all of a thread's
//! stacks when it exits, have their pages discarded and go to a process-wide list that threads
//! refill from before mapping a new chunk. Chunks are never unmapped: the address space of
//! the peak number of live stacks stays reserved (not committed), as a memory allocator's.
//!
//! A stack whose function was cancelled while paused is *retired* instead: its pages are
//! discarded and it becomes a guard region for good, so that any pointer into it that survived
//! the cancellation (a scoped thread it spawned, a raw pointer it leaked) faults loudly
//! instead of corrupting the next function's frames.

use std::cell::RefCell;
use std::sync::Mutex;

use crate::config::settings;
use crate::error::Error;
use crate::sys::memory;

/// Bytes of guard below every stack. Larger than a page so that a C function with a big
/// frame (no stack probes) still lands in it rather than in the next stack.
pub(crate) const GUARD_SIZE: usize = 64 * 1024;
const STACKS_PER_CHUNK: usize = 32;
const THREAD_POOL_CAP: usize = 64;

/// One stack: `[base, base + size)`, with the guard `[base - GUARD_SIZE, base)` below it.
#[derive(Debug)]
pub(crate) struct Stack {
    base: *mut u8,
    size: usize,
}

// SAFETY: a Stack is a plain description of memory owned by whoever holds the value; moving
// it to another thread moves that ownership.
unsafe impl Send for Stack {}

impl Stack {
    /// The highest address (exclusive): stacks grow down from here.
    pub(crate) fn top(&self) -> *mut u8 {
        self.base.wrapping_add(self.size)
    }

    /// The lowest usable address.
    pub(crate) fn base(&self) -> usize {
        self.base as usize
    }

    /// Whether `address` lies in this stack's guard region.
    #[cfg(test)]
    pub(crate) fn guard_contains(&self, address: usize) -> bool {
        let base = self.base as usize;
        address < base && address >= base - GUARD_SIZE
    }
}

struct ThreadPool {
    free: Vec<Stack>,
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        let stacks: Vec<Stack> = self.free.drain(..).collect();
        release_to_global(stacks);
    }
}

thread_local! {
    static POOL: RefCell<ThreadPool> = const { RefCell::new(ThreadPool { free: Vec::new() }) };
}

static GLOBAL: Mutex<Vec<Stack>> = Mutex::new(Vec::new());

/// Takes a stack from this thread's pool, refilling it if empty.
pub(crate) fn take() -> Result<Stack, Error> {
    let fast = POOL.try_with(|pool| pool.borrow_mut().free.pop()).ok().flatten();
    if let Some(stack) = fast {
        return Ok(stack);
    }
    refill()
}

/// Returns a stack whose function finished normally, for reuse.
pub(crate) fn give_back(stack: Stack) {
    let overflow = POOL.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        pool.free.push(stack);
        if pool.free.len() > THREAD_POOL_CAP {
            let keep = THREAD_POOL_CAP / 2;
            Some(pool.free.split_off(keep))
        } else {
            None
        }
    });
    match overflow {
        Ok(Some(extra)) => release_to_global(extra),
        Ok(None) => {}
        // The thread is exiting and its pool is gone: hand the stack to the process.
        Err(_) => {}
    }
}

/// Retires the stack of a function cancelled while paused (see the module docs).
pub(crate) fn retire(stack: Stack) {
    // A failure leaves the memory accessible but still never reused; nothing else to do.
    let _ = memory::guard(stack.base, stack.size);
}

fn release_to_global(stacks: Vec<Stack>) {
    if stacks.is_empty() {
        return;
    }
    for stack in &stacks {
        memory::discard(stack.base, stack.size);
    }
    let mut global = GLOBAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    global.extend(stacks);
}

/// Slow path: take from the process-wide list, or map a new chunk.
fn refill() -> Result<Stack, Error> {
    let mut batch: Vec<Stack> = {
        let mut global = GLOBAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let keep = global.len().saturating_sub(STACKS_PER_CHUNK);
        global.split_off(keep)
    };
    if batch.is_empty() {
        batch = map_chunk()?;
    }
    let stack = batch.pop().ok_or(Error::StackAllocation { errno: libc::ENOMEM })?;
    let _ = POOL.try_with(|pool| pool.borrow_mut().free.extend(batch));
    Ok(stack)
}

fn map_chunk() -> Result<Vec<Stack>, Error> {
    let size = settings()?.stack_size;
    let slot = GUARD_SIZE + size;
    let base = memory::map(slot * STACKS_PER_CHUNK)?;
    let mut stacks = Vec::with_capacity(STACKS_PER_CHUNK);
    for index in (0..STACKS_PER_CHUNK).rev() {
        let guard = base.wrapping_add(index * slot);
        memory::guard(guard, GUARD_SIZE)?;
        stacks.push(Stack { base: guard.wrapping_add(GUARD_SIZE), size });
    }
    Ok(stacks)
}

/// Stacks currently cached by this thread (for tests and diagnostics).
#[cfg(test)]
pub(crate) fn cached_on_this_thread() -> usize {
    POOL.with(|pool| pool.borrow().free.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_are_reused_from_the_thread_pool() {
        let first = take().unwrap();
        let top = first.top();
        give_back(first);
        let again = take().unwrap();
        assert_eq!(again.top(), top);
        give_back(again);
        assert!(cached_on_this_thread() >= 1);
    }

    #[test]
    fn stacks_are_writable_and_disjoint() {
        let a = take().unwrap();
        let b = take().unwrap();
        // SAFETY: the byte just below each top is inside its own stack.
        unsafe {
            a.top().sub(1).write(1);
            b.top().sub(1).write(2);
            assert_eq!(a.top().sub(1).read(), 1);
        }
        assert!(!a.guard_contains(b.top() as usize - 1));
        assert!(a.guard_contains(a.base() - 1));
        give_back(a);
        give_back(b);
    }
}
