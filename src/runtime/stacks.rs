//! Stacks for functions, taken from and returned to the thread's pools, with preemption of
//! the calling function (if any) deferred around the bookkeeping: every method takes the
//! caller's [`RuntimeSection`], which must have been entered before the runtime was looked
//! up (a function paused in between could be resumed on another thread, with this thread's
//! runtime and its pools in hand).
//!
//! Context: caller or function stack, on the runtime's own thread; never inger's signal
//! handler. A user's signal handler may get here (a launch from a handler): the fast paths
//! (a pooled stack, a block that needs no `free`) are async-signal-safe, the slow ones
//! refuse with [`Error::InSignalHandler`] or, where nothing can be refused any more, leak.

use super::control::Runtime;
use super::process::{in_signal_handler, refuse_in_signal_handler};
use super::sections::RuntimeSection;
use crate::error::Error;
use crate::stack::{self, Stack};

impl Runtime {
    /// Takes a stack with an initialised private TLS block (if TLS is private).
    /// Context: caller or function stack.
    ///
    /// Inlined, and the common case (a pooled stack whose block needs no `free`) comes back
    /// as an `Option<Stack>`, in registers; everything else is [`take_stack_slow`]
    /// (Self::take_stack_slow), which also reports the errors.
    #[inline]
    pub(crate) fn take_stack(&self, _section: &RuntimeSection) -> Result<Stack, Error> {
        match self.take_pooled_stack() {
            Some(stack) => Ok(stack),
            None => self.take_stack_slow(),
        }
    }

    /// The fast path of [`take_stack`](Self::take_stack): `None` wherever it would refill
    /// the pool, allocate or free a TLS block, or fail. Async-signal-safe.
    #[inline(never)]
    fn take_pooled_stack(&self) -> Option<Stack> {
        let _busy = self.enter_busy().ok()?;
        let mut pool = self.pool.borrow_mut();
        let glibc = self.glibc;
        if pool.take_is_slow(glibc.is_some()) {
            return None;
        }
        let stack = pool.take_pooled()?;
        if let Some(glibc) = glibc {
            if stack.tls == 0 || glibc.reuse_frees(stack.tls) {
                pool.give_back(stack);
                return None;
            }
            glibc.reuse_block(stack.tls, self.tid);
        }
        Some(stack)
    }

    /// The rest of [`take_stack`](Self::take_stack): refilling the pool, a new or freeing
    /// TLS block, and the refusals.
    #[cold]
    #[inline(never)]
    fn take_stack_slow(&self) -> Result<Stack, Error> {
        let _busy = self.enter_busy()?;
        if self.pool.borrow().take_is_slow(self.glibc.is_some()) {
            refuse_in_signal_handler()?;
        }
        let mut stack = self.pool.borrow_mut().take()?;
        if let Some(glibc) = self.glibc {
            let slow = stack.tls == 0 || glibc.reuse_frees(stack.tls);
            if slow && let Err(error) = refuse_in_signal_handler() {
                self.pool.borrow_mut().give_back(stack);
                return Err(error);
            }
            if stack.tls == 0 {
                match glibc.new_block(self.tid) {
                    Ok(block) => stack.tls = block,
                    Err(error) => {
                        self.pool.borrow_mut().give_back(stack);
                        return Err(error);
                    }
                }
            } else {
                glibc.reuse_block(stack.tls, self.tid);
            }
        }
        Ok(stack)
    }

    /// Returns the stack of a function that finished (or never started).
    /// Context: caller or function stack.
    pub(crate) fn give_back(&self, stack: Stack, _section: &RuntimeSection) {
        let Ok(_busy) = self.enter_busy() else {
            // A handler interrupted the pool's own bookkeeping: leave the stack unused.
            stack.leak();
            return;
        };
        if self.pool.borrow().give_back_is_slow() && in_signal_handler() {
            stack.leak(); // handing stacks to the process-wide list locks
            return;
        }
        self.pool.borrow_mut().give_back(stack);
    }

    /// Retires the stack of a function cancelled while paused (see `stack` for what that
    /// guarantees); its TLS block is reset and kept for reuse. Context: caller or function
    /// stack.
    pub(crate) fn retire(&self, mut stack: Stack, live_low: usize, _section: &RuntimeSection) {
        let Ok(_busy) = self.enter_busy() else {
            stack.leak(); // see `give_back`
            return;
        };
        let block = core::mem::take(&mut stack.tls);
        if block != 0
            && let Some(glibc) = self.glibc
        {
            glibc.reset_cancelled_block(block, self.tid);
            self.pool.borrow_mut().keep_tls(block);
        }
        let mut retired = self.retired.borrow_mut();
        retired.push((stack, live_low));
        if retired.len() >= stack::RETIRE_BATCH {
            stack::retire_all(&retired);
            retired.clear();
        }
    }
}
