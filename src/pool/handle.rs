//! The handle side of a pool task: where its outcome waits ([`Slot`]), the [`JoinHandle`]
//! that waits for it, and [`JoinError`].

use core::any::Any;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::{Error, NoPreempt};

/// Where a task's outcome waits for its handle.
pub(super) struct Slot<T> {
    outcome: Mutex<Outcome<T>>,
    filled: Condvar,
    pub(super) cancel_requested: AtomicBool,
}

enum Outcome<T> {
    Pending,
    Ready(Result<T, JoinError>),
    Taken,
}

impl<T> Slot<T> {
    pub(super) fn new() -> Self {
        Slot {
            outcome: Mutex::new(Outcome::Pending),
            filled: Condvar::new(),
            cancel_requested: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Outcome<T>> {
        self.outcome.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores the outcome unless one is there already; whether it did.
    pub(super) fn fill(&self, result: Result<T, JoinError>) -> bool {
        // Deferred without a cancellation point: this runs in `PoolTask::drop` too, where
        // an unwind would abort.
        let _no_preempt = crate::runtime::RuntimeSection::enter();
        let mut outcome = self.lock();
        if !matches!(*outcome, Outcome::Pending) {
            return false;
        }
        *outcome = Outcome::Ready(result);
        drop(outcome);
        self.filled.notify_all();
        true
    }
}

/// Owned permission to wait for a pool task's result. Dropping it cancels the task unless it
/// was [`detach`](JoinHandle::detach)ed.
#[must_use = "dropping a JoinHandle cancels its task (use `detach` to let it run)"]
pub struct JoinHandle<T> {
    pub(super) slot: Arc<Slot<T>>,
    pub(super) detached: bool,
}

impl<T> JoinHandle<T> {
    /// Waits for the task and returns its value, or why there is none.
    ///
    /// # Errors
    /// [`JoinError::Panicked`] with the payload if it panicked, [`JoinError::Cancelled`] if
    /// the pool shut down first, [`JoinError::Failed`] if it could not be launched.
    pub fn join(mut self) -> Result<T, JoinError> {
        self.detached = true; // nothing to cancel any more once we have the outcome
        let _no_preempt = NoPreempt::new();
        let mut outcome = self.slot.lock();
        loop {
            match core::mem::replace(&mut *outcome, Outcome::Taken) {
                Outcome::Ready(result) => return result,
                Outcome::Pending => {
                    *outcome = Outcome::Pending;
                    outcome = self
                        .slot
                        .filled
                        .wait(outcome)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Outcome::Taken => unreachable!("a JoinHandle is the only taker"),
            }
        }
    }

    /// Whether the task has finished (returned, panicked, or been cancelled).
    pub fn is_finished(&self) -> bool {
        let _no_preempt = NoPreempt::new();
        !matches!(*self.slot.lock(), Outcome::Pending)
    }

    /// Cancels the task (see rule 2 of the [module docs](crate::pool)); the same as dropping the
    /// handle.
    pub fn cancel(self) {
        drop(self);
    }

    /// Lets the task run to its end without a handle (its result is dropped).
    pub fn detach(mut self) {
        self.detached = true;
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if !self.detached {
            self.slot.cancel_requested.store(true, Ordering::Release);
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Why a pool task has no value.
#[non_exhaustive]
pub enum JoinError {
    /// The task was cancelled before it finished (its pool shut down).
    Cancelled,
    /// The task panicked; this is the payload (see [`std::panic::resume_unwind`]).
    Panicked(Box<dyn Any + Send + 'static>),
    /// The task could not be launched or resumed.
    Failed(Error),
}

impl JoinError {
    /// Whether the task was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, JoinError::Cancelled)
    }

    /// Whether the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, JoinError::Panicked(_))
    }

    /// The panic payload, if the task panicked.
    pub fn into_panic(self) -> Option<Box<dyn Any + Send + 'static>> {
        match self {
            JoinError::Panicked(payload) => Some(payload),
            _ => None,
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Cancelled => f.write_str("Cancelled"),
            JoinError::Panicked(_) => f.write_str("Panicked(..)"),
            JoinError::Failed(error) => f.debug_tuple("Failed").field(error).finish(),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Cancelled => f.write_str("the pool task was cancelled"),
            JoinError::Panicked(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
                match message {
                    Some(message) => write!(f, "the pool task panicked: {message}"),
                    None => f.write_str("the pool task panicked"),
                }
            }
            JoinError::Failed(error) => write!(f, "the pool task could not run: {error}"),
        }
    }
}

impl std::error::Error for JoinError {}
