//! Cancelling a function: what dropping a [`Continuation`] does (a cooperative unwinding
//! within a grace budget, else a discard that freezes the stack), and
//! [`Continuation::discard`].
//!
//! Context: caller.

use core::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::{CancelOutcome, Continuation, Orphan};
use crate::budget::Budget;
use crate::runtime::{self, state};
use crate::stack;
use crate::sys::signal::abort_with;

impl<T> Continuation<'_, T> {
    /// The cooperative part of a drop: asks the paused function to unwind and gives it the
    /// grace budget to get there. Whether it is gone.
    pub(super) fn unwind_within_grace(&mut self) -> bool {
        let grace = crate::config::settings().map_or(Duration::ZERO, |s| s.cancel_grace);
        // SAFETY: while `stack` is held the control block on it is live.
        let checks = unsafe { self.lpf.as_ref() }.checks_cancellation.get();
        if grace.is_zero() || !checks {
            return false;
        }
        // SAFETY: while `stack` is held the control block on it is live.
        runtime::request_cancel(unsafe { self.lpf.as_ref() });
        // The outcome (a value, the `Cancelled` payload or another panic's) is dropped: the
        // caller asked to be rid of the function. The grace is first wall-clock time, which
        // costs no clock system call and is what almost every unwinding needs; one that is
        // still running at its end (its thread descheduled under load, or a long unwinding)
        // gets the grace again as CPU time, so that a loaded thread does not cut an
        // unwinding short (it would then be discarded): at least `grace` of CPU in all. A
        // function that blocks instead is given up after a wall-clock bound.
        match self.run_unchecked(Budget::wall(grace)) {
            Ok(Some(_)) => return true,
            Ok(None) => {}
            Err(_) => return false,
        }
        matches!(self.run_unchecked(Budget::cpu_grace(grace)), Ok(Some(_)))
    }

    /// Gives the function up without running anything more of it: a `'static` one's stack
    /// is retired (frozen, see `stack`), a scoped one is handed to its scope.
    pub(super) fn abandon(&mut self) {
        let Some(stack) = self.stack.take() else {
            return;
        };
        if let Some(link) = &self.scope {
            link.registry.adopt(
                link.id,
                Orphan {
                    stack,
                    drop_unstarted: self.drop_unstarted,
                    drop_outcome: self.drop_outcome,
                },
            );
            return;
        }
        // SAFETY: the control block of a paused function is live while we hold its stack.
        let this = unsafe { self.lpf.as_ref() };
        // The library copies it held are renewed and go back to their pools (the functions
        // it was resuming keep theirs).
        crate::libset::function_abandoned(this);
        runtime::detach_nested(this);
        let live_low = this.live_stack_pointer();
        // Deferred before the lookup, as in `launch_in`: the runtime must be this thread's.
        let section = runtime::RuntimeSection::enter();
        match runtime::runtime_if_started() {
            Some(rt) => rt.retire(stack, live_low, &section),
            // No runtime on this thread (it is exiting): the TLS block is abandoned.
            None => stack::retire(stack, live_low),
        }
    }
}

impl<T> Continuation<'static, T> {
    /// Cancels the function without letting it unwind: its stack is discarded at once and
    /// none of its destructors run. What its live frames own leaks, locks they hold stay
    /// held, and their memory is kept exactly as it was for the life of the process (values
    /// pinned there stay valid; see the type's docs for the cost). Functions it was resuming
    /// become paused continuations of their own. Only for functions that own what they use
    /// (`'static`, from [`launch`](crate::launch)); a scoped function must finish (see
    /// [`scope`](crate::scope())).
    pub fn discard(mut self) {
        if self.stack.is_none() {
            return;
        }
        // SAFETY: while `stack` is held the control block on it is live.
        if unsafe { self.lpf.as_ref() }.state.load(Relaxed) == state::PAUSED
            && runtime::refuse_in_signal_handler().is_ok()
        {
            self.abandon();
        }
        // Otherwise `drop` does what dropping does.
    }
}

impl<T> Continuation<'_, T> {
    /// What dropping does: see the type's docs.
    pub(super) fn cancel_now(&mut self) -> CancelOutcome {
        if self.stack.is_none() {
            return CancelOutcome::Unwound;
        }
        // SAFETY: the control block is live while we hold the stack.
        match unsafe { self.lpf.as_ref() }.state.load(Relaxed) {
            state::READY => {
                // SAFETY: never started: the slot still holds the closure.
                unsafe { (self.drop_unstarted)(self.lpf) };
                self.release_stack();
                CancelOutcome::Unwound
            }
            state::RUNNING => abort_with(
                b"inger: a running preemptible function's continuation was dropped from inside it\n",
            ),
            _ if runtime::refuse_in_signal_handler().is_err() => {
                // Resuming, discarding and the pools allocate and take locks: inside a signal
                // handler the stack is leaked instead, never reused (a scoped function stays
                // registered, and its scope finishes it).
                if let Some(stack) = self.stack.take() {
                    stack.leak();
                }
                CancelOutcome::Discarded
            }
            _ if self.unwind_within_grace() => CancelOutcome::Unwound,
            _ => {
                let scoped = self.scope.is_some();
                self.abandon();
                if scoped {
                    CancelOutcome::LeftToScope
                } else {
                    CancelOutcome::Discarded
                }
            }
        }
    }
}

impl<T> Drop for Continuation<'_, T> {
    fn drop(&mut self) {
        self.cancel_now();
    }
}
