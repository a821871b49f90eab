//! Scoped launches: preemptible functions that borrow from their caller.
//!
//! Context: caller. [`scope`] mirrors `std::thread::scope`, for the same reason: a function
//! that borrows data of its caller must not be abandoned while the borrow ends, or activity
//! it started (a scoped thread writing through the borrow, a node it linked into an
//! intrusive list) would outlive the data. So a borrowing function can only be launched in a
//! scope, and the scope does not return until each of its functions has finished:
//!
//! - a continuation dropped inside the scope is cancelled cooperatively (it unwinds from its
//!   next cancellation point within the grace budget, see
//!   [`Config::cancel_grace`](crate::Config::cancel_grace)); if it does not get there in
//!   time, the scope keeps it and finishes it at its end;
//! - at its end, the scope cancels every function still paused (its continuation dropped,
//!   leaked with `mem::forget`, or kept to the end) and resumes it until it has unwound or
//!   returned, however long that takes, as `std::thread::scope` waits for its threads;
//! - a function that never started is not run: its closure is dropped (or, if its
//!   continuation was leaked, leaked with it).
//!
//! A function that panics while the scope finishes it makes `scope` panic with its payload
//! once every function is finished (a cancellation's [`Cancelled`](crate::Cancelled) payload is not a panic).
//!
//! ```
//! use std::time::Duration;
//!
//! let mut counts = vec![0u64; 4];
//! inger::scope(|s| {
//!     let mut linger = s.launch(|| {
//!         for count in counts.iter_mut() {
//!             for _ in 0..1000 { *count = std::hint::black_box(*count + 1); }
//!         }
//!     }, Duration::from_micros(50))?;
//!     while linger.is_continuation() {
//!         linger.resume(Duration::from_micros(50))?;
//!     }
//!     Ok::<(), inger::Error>(())
//! })?;
//! assert_eq!(counts, [1000; 4]);
//! # Ok::<(), inger::Error>(())
//! ```
//!
//! Functions that own what they use (`'static` closures, like `std::thread::spawn`'s) are
//! launched with [`launch`](crate::launch) instead, and may be discarded.

use core::any::Any;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::Ordering::Relaxed;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Mutex, PoisonError};

use crate::budget::Budget;
use crate::error::Error;
use crate::linger::{Linger, launch_in};
use crate::runtime::{self, Lpf, Outcome, state};
use crate::stack::Stack;
use crate::sys::signal::abort_with;

/// A scope for launching functions that borrow from the caller; see [`scope`].
pub struct Scope<'scope, 'env: 'scope> {
    registry: Registry,
    /// Invariance in both lifetimes, as in `std::thread::Scope`.
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

impl core::fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let live = self.registry.lock().entries.len();
        f.debug_struct("Scope").field("unfinished", &live).finish()
    }
}

/// Creates a scope in which functions may borrow anything that outlives it, runs `f` in it,
/// and returns once every function launched in it has finished (see the [module
/// docs](mod@crate::scope) for how the scope finishes those still paused).
///
/// # Panics
/// If `f` panics, or a function the scope had to finish panicked, once every function has
/// finished.
pub fn scope<'env, F, R>(f: F) -> R
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
{
    let scope = Scope {
        registry: Registry::default(),
        _scope: PhantomData,
        _env: PhantomData,
    };
    let result = catch_unwind(AssertUnwindSafe(|| f(&scope)));
    let panicked = scope.registry.finish_all();
    match result {
        Err(payload) => resume_unwind(payload),
        Ok(_) if panicked.is_some() => resume_unwind(panicked.unwrap_or_else(|| Box::new(()))),
        Ok(value) => value,
    }
}

impl<'scope> Scope<'scope, '_> {
    /// Calls `f` on its own stack with a time budget, like [`launch`](crate::launch), where
    /// `f` may borrow anything that outlives the scope.
    ///
    /// # Errors
    /// As for [`launch`](crate::launch).
    pub fn launch<F, T>(
        &'scope self,
        f: F,
        budget: impl Into<Budget>,
    ) -> Result<Linger<'scope, T>, Error>
    where
        F: FnOnce() -> T + Send + 'scope,
    {
        launch_in(f, budget.into(), Some(&self.registry))
    }
}

/// The functions of one scope that have not finished yet.
#[derive(Default)]
pub(crate) struct Registry {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    next_id: u64,
    entries: Vec<Entry>,
}

/// One function of the scope.
struct Entry {
    id: u64,
    /// Its control block, on its stack, which stays mapped while the entry exists (the
    /// stack goes back to a pool only after the entry is removed).
    lpf: NonNull<Lpf>,
    /// Set when its continuation was dropped before the function finished: the scope then
    /// owns the stack and what is left in its slot.
    orphan: Option<Orphan>,
}

/// What the scope needs to clean up after a function whose continuation was dropped.
pub(crate) struct Orphan {
    pub(crate) stack: Stack,
    /// Drops the closure of a function that never started.
    pub(crate) drop_unstarted: unsafe fn(NonNull<Lpf>),
    /// Drops the outcome of a finished function; returns its panic payload, if any.
    pub(crate) drop_outcome: unsafe fn(NonNull<Lpf>) -> Option<Box<dyn Any + Send>>,
}

// SAFETY: an entry describes a function (its control block and, for an orphan, its stack)
// that only the thread ending the scope touches once the continuation is gone; while the
// continuation lives, only its owner resumes it. The function's closure and result are
// `Send` (`Scope::launch` requires the closure to be; a result that is not stays unreachable
// from other threads because only the scope's own thread drops it).
unsafe impl Send for Entry {}

/// The registry's entries, locked with the running function's preemption deferred: a scoped
/// function may launch into its own scope, and paused while it held the lock it would block
/// the scope's owner, on the same thread, at its next launch for good.
struct Locked<'a> {
    // Declared first, so dropped first: the lock is released before the section ends (which
    // may pause the function).
    guard: std::sync::MutexGuard<'a, Entries>,
    _section: runtime::RuntimeSection,
}

impl core::ops::Deref for Locked<'_> {
    type Target = Entries;
    fn deref(&self) -> &Entries {
        &self.guard
    }
}

impl core::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Entries {
        &mut self.guard
    }
}

impl Registry {
    fn lock(&self) -> Locked<'_> {
        let section = runtime::RuntimeSection::enter();
        Locked {
            guard: self.inner.lock().unwrap_or_else(PoisonError::into_inner),
            _section: section,
        }
    }

    /// Registers a function of the scope; its id.
    pub(crate) fn add(&self, lpf: NonNull<Lpf>) -> u64 {
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        inner.entries.push(Entry {
            id,
            lpf,
            orphan: None,
        });
        id
    }

    /// Forgets a function that finished (or whose closure was dropped): call before its
    /// stack can be reused.
    pub(crate) fn remove(&self, id: u64) {
        self.lock().entries.retain(|entry| entry.id != id);
    }

    /// Takes over a function whose continuation was dropped before it finished.
    pub(crate) fn adopt(&self, id: u64, orphan: Orphan) {
        let mut inner = self.lock();
        match inner.entries.iter_mut().find(|entry| entry.id == id) {
            Some(entry) => entry.orphan = Some(orphan),
            None => abort_with(b"inger: a scoped function was lost by its scope\n"),
        }
    }

    /// Finishes every function left (see the module docs); the first panic payload of one.
    fn finish_all(&self) -> Option<Box<dyn Any + Send>> {
        let mut panicked = None;
        loop {
            let round = core::mem::take(&mut self.lock().entries);
            if round.is_empty() {
                return panicked;
            }
            let count = round.len();
            let mut waiting = Vec::new();
            for entry in round {
                match finish(entry) {
                    Finish::Done(None) => {}
                    Finish::Done(Some(payload)) => {
                        panicked.get_or_insert(payload);
                    }
                    Finish::Running(entry) => waiting.push(entry),
                }
            }
            if waiting.len() == count {
                // Every one is suspended inside the resume of another that is not ours.
                abort_with(b"inger: a scope cannot finish its functions: each one is being resumed by another\n");
            }
            self.lock().entries.extend(waiting);
        }
    }
}

enum Finish {
    Done(Option<Box<dyn Any + Send>>),
    /// Suspended inside another function's resume of it: that one finishes first.
    Running(Entry),
}

/// Finishes one function of the scope.
fn finish(entry: Entry) -> Finish {
    let lpf = entry.lpf;
    // SAFETY: the entry's stack stays mapped while the entry exists (see `Entry::lpf`).
    let state = unsafe { lpf.as_ref() }.state.load(Relaxed);
    match state {
        state::RUNNING => return Finish::Running(entry),
        state::READY => {
            if let Some(orphan) = entry.orphan {
                // SAFETY: never started: the slot still holds the closure, dropped once.
                unsafe { (orphan.drop_unstarted)(lpf) };
                crate::linger::give_back(orphan.stack);
            }
            return Finish::Done(None);
        }
        state::PAUSED => {
            // SAFETY: as above.
            runtime::request_cancel(unsafe { lpf.as_ref() });
            loop {
                // SAFETY: the function is paused and owned by nobody but the scope now (its
                // continuation was dropped or leaked), on a stack that stays mapped.
                match unsafe { runtime::resume(lpf.as_ptr(), Budget::UNLIMITED) } {
                    Ok(Outcome::Finished) => break,
                    Ok(Outcome::Paused) => continue,
                    Err(_) => abort_with(
                        b"inger: a scope cannot finish one of its functions (paused on another thread with shared thread-local storage?)\n",
                    ),
                }
            }
        }
        _ => {}
    }
    match entry.orphan {
        Some(orphan) => {
            // SAFETY: the function finished; its outcome is taken once, here.
            let payload = unsafe { (orphan.drop_outcome)(lpf) };
            crate::linger::give_back(orphan.stack);
            Finish::Done(payload.filter(|payload| !payload.is::<crate::Cancelled>()))
        }
        // A leaked continuation: its stack and outcome stay leaked with it.
        None => Finish::Done(None),
    }
}
