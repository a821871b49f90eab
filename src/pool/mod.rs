//! A preemptive thread pool for plain closures: preemptive user-level threads for code that is
//! not async.
//!
//! [`Pool::new`]`(n)` starts `n` worker threads sharing one FIFO run queue. [`Pool::spawn`]
//! queues a closure; a worker takes the task at the head of the queue and runs it as a
//! preemptible function for one time slice ([`DEFAULT_SLICE`] unless set with
//! [`Pool::with_slice`]). If the task is still running when its slice expires, it is paused and
//! goes to the back of the queue, and the worker takes the next task: round-robin time
//! slicing, so an endless loop cannot starve the other tasks. A paused task may be resumed by
//! any worker (it carries its own stack and thread-locals; see
//! [`capabilities`](crate::capabilities)). In the shared-TLS fallback a paused task can only
//! be resumed on the thread that started it, so it goes to that worker's own queue instead,
//! which the worker serves alternately with the shared one.
//!
//! ```
//! let pool = inger::pool::Pool::new(2);
//! let endless = pool.spawn(|| loop { std::hint::spin_loop() });
//! let answer = pool.spawn(|| 6 * 7);
//! assert_eq!(answer.join().unwrap(), 42); // not blocked behind the endless loop
//! endless.cancel();
//! ```
//!
//! # Rules
//!
//! 1. A task is in exactly one place: the queue, a worker's hands (running for one slice), or
//!    gone (finished, cancelled, or dropped at shutdown). Its [`JoinHandle`] learns the
//!    outcome through a shared slot that the worker fills once.
//! 2. Cancellation ([`JoinHandle::cancel`], or dropping the handle without
//!    [`detach`](JoinHandle::detach)ing it) sets a flag. The task is discarded the next time a
//!    worker takes it from the queue, or at the end of the slice it is running, so within one
//!    slice of work. A cancelled task that had started is cancelled like any paused
//!    preemptible function: its stack is discarded without running the destructors of its
//!    live frames (what they own leaks; locks they hold stay held).
//! 3. Dropping the [`Pool`] shuts it down: workers finish the slice they are running, then
//!    every task not yet finished is cancelled (rule 2) and its handle's `join` returns
//!    [`JoinError::Cancelled`]. (Waiting for the remaining tasks instead would hang on any
//!    endless one.) To wait for results, `join` the handles before dropping the pool.
//! 4. Idle workers sleep on a condition variable; nothing spins.
//! 5. The pool's locks are only taken with preemption deferred, so a task may spawn into its
//!    own pool or query a handle without risking a pause while holding them.
//!
//! # Blocking inside a task
//!
//! A task that blocks (a `join` on another task, a lock, I/O) blocks its worker thread:
//! preemption only interrupts computation. A task that `join`s another task of the same pool
//! can deadlock it if every worker ends up waiting; prefer joining from outside the pool.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use crate::{Budget, Continuation, Error, Linger, NoPreempt};

mod handle;

use handle::Slot;
pub use handle::{JoinError, JoinHandle};

/// The slice of [`Pool::new`]: 1 ms.
pub const DEFAULT_SLICE: Duration = Duration::from_millis(1);

/// Shorter slices are raised to this (10 µs).
pub const MIN_SLICE: Duration = Duration::from_micros(10);

/// A pool of worker threads that time-slice preemptible closures round-robin.
/// See the [module docs](self).
pub struct Pool {
    shared: Arc<PoolShared>,
    workers: Vec<thread::JoinHandle<()>>,
}

/// What the pool's threads and the pool share.
struct PoolShared {
    queue: Mutex<Queue>,
    work_available: Condvar,
    slice: Budget,
    counters: Arc<Counters>,
}

struct Queue {
    /// Tasks any worker may take.
    tasks: VecDeque<Box<dyn Task>>,
    /// Per worker: paused tasks that only that worker may resume (shared-TLS fallback only).
    pinned: Vec<VecDeque<Box<dyn Task>>>,
    shutdown: bool,
}

impl Queue {
    /// The next task for worker `index`, alternating between its pinned tasks and the shared
    /// queue (`pinned_first` flips each time) so that neither starves.
    fn pop_for(&mut self, index: usize, pinned_first: &mut bool) -> Option<Box<dyn Task>> {
        *pinned_first = !*pinned_first;
        let pinned = &mut self.pinned[index];
        if *pinned_first {
            pinned.pop_front().or_else(|| self.tasks.pop_front())
        } else {
            self.tasks.pop_front().or_else(|| pinned.pop_front())
        }
    }
}

#[derive(Default)]
struct Counters {
    spawned: AtomicU64,
    slices: AtomicU64,
    requeued: AtomicU64,
    completed: AtomicU64,
    panicked: AtomicU64,
    cancelled: AtomicU64,
}

/// Counters of what a pool did (see [`Pool::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PoolStats {
    /// Tasks spawned.
    pub spawned: u64,
    /// Slices run (launches and resumes).
    pub slices: u64,
    /// Slices after which the task was still running and went back to the queue.
    pub requeued: u64,
    /// Tasks that returned a value.
    pub completed: u64,
    /// Tasks that panicked.
    pub panicked: u64,
    /// Tasks cancelled (by their handle or at shutdown) before finishing.
    pub cancelled: u64,
}

impl Pool {
    /// Starts `threads` workers with the [default slice](DEFAULT_SLICE).
    ///
    /// # Panics
    /// If `threads` is zero or a thread cannot be created (see [`Pool::try_new`]).
    pub fn new(threads: usize) -> Pool {
        Self::with_slice(threads, DEFAULT_SLICE)
    }

    /// Starts `threads` workers giving each task `slice` per turn (raised to [`MIN_SLICE`]).
    ///
    /// # Panics
    /// If `threads` is zero or a thread cannot be created (see [`Pool::try_new`]).
    pub fn with_slice(threads: usize, slice: impl Into<Budget>) -> Pool {
        match Self::try_new(threads, slice) {
            Ok(pool) => pool,
            Err(error) => panic!("inger: could not start a pool: {error}"),
        }
    }

    /// Starts `threads` workers giving each task `slice` per turn (raised to [`MIN_SLICE`]).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if `threads` is zero; [`Error::System`] if a thread could not
    /// be created (the workers already started are stopped).
    pub fn try_new(threads: usize, slice: impl Into<Budget>) -> Result<Pool, Error> {
        if threads == 0 {
            return Err(Error::InvalidConfig(
                "a pool needs at least one thread".into(),
            ));
        }
        let shared = Arc::new(PoolShared {
            queue: Mutex::new(Queue {
                tasks: VecDeque::new(),
                pinned: (0..threads).map(|_| VecDeque::new()).collect(),
                shutdown: false,
            }),
            work_available: Condvar::new(),
            slice: slice.into().at_least(MIN_SLICE),
            counters: Arc::default(),
        });
        let mut pool = Pool {
            shared,
            workers: Vec::with_capacity(threads),
        };
        for index in 0..threads {
            let shared = Arc::clone(&pool.shared);
            let worker = thread::Builder::new()
                .name(format!("inger-pool-{index}"))
                .spawn(move || work(&shared, index))
                .map_err(|error| Error::System {
                    call: "pthread_create",
                    errno: error.raw_os_error().unwrap_or(0),
                })?; // dropping `pool` stops the workers already started
            pool.workers.push(worker);
        }
        Ok(pool)
    }

    /// Queues `f` to run on the pool, time-sliced with the other tasks; its handle gives the
    /// result. Dropping the handle cancels the task (unless it is
    /// [`detach`](JoinHandle::detach)ed).
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let slot = Arc::new(Slot::new());
        let task = Box::new(PoolTask {
            stage: Stage::Unstarted(f),
            slot: Arc::clone(&slot),
            counters: Arc::clone(&self.shared.counters),
        });
        self.shared.counters.spawned.fetch_add(1, Ordering::Relaxed);
        {
            let _no_preempt = NoPreempt::new();
            let mut queue = self.shared.lock_queue();
            if queue.shutdown {
                // Only reachable from a task of this pool while the pool is being dropped.
                drop(queue);
                drop(task); // cancelled
            } else {
                queue.tasks.push_back(task);
                drop(queue);
                self.shared.work_available.notify_one();
            }
        }
        JoinHandle {
            slot,
            detached: false,
        }
    }

    /// The number of worker threads.
    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// The time slice of each turn.
    pub fn slice(&self) -> Budget {
        self.shared.slice
    }

    /// Counters of what the pool did so far.
    pub fn stats(&self) -> PoolStats {
        let c = &self.shared.counters;
        PoolStats {
            spawned: c.spawned.load(Ordering::Relaxed),
            slices: c.slices.load(Ordering::Relaxed),
            requeued: c.requeued.load(Ordering::Relaxed),
            completed: c.completed.load(Ordering::Relaxed),
            panicked: c.panicked.load(Ordering::Relaxed),
            cancelled: c.cancelled.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Pool {
    /// Shuts the pool down: see rule 3 of the [module docs](self).
    fn drop(&mut self) {
        {
            let _no_preempt = NoPreempt::new();
            self.shared.lock_queue().shutdown = true;
        }
        self.shared.work_available.notify_all();
        let me = thread::current().id();
        for worker in self.workers.drain(..) {
            // A task that drops its own pool must not wait for its own worker; that worker
            // stops after the task's slice.
            if worker.thread().id() != me {
                let _ = worker.join(); // workers do not panic: task panics are caught
            }
        }
        let remaining = {
            let _no_preempt = NoPreempt::new();
            let mut queue = self.shared.lock_queue();
            let mut remaining = core::mem::take(&mut queue.tasks);
            for pinned in &mut queue.pinned {
                remaining.append(pinned);
            }
            remaining
        };
        drop(remaining); // each one cancelled
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("threads", &self.workers.len())
            .field("slice", &self.shared.slice)
            .field("stats", &self.stats())
            .finish()
    }
}

impl PoolShared {
    /// The queue lock (a panic never happens while it is held, but a poisoned lock is still
    /// usable: the queue is always consistent). Callers defer preemption while holding it.
    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Worker `index`: takes the task at the head of the queue, runs one slice, requeues it if it
/// is still running. Runs outside any preemptible function (its own thread).
fn work(shared: &PoolShared, index: usize) {
    let mut pinned_first = false;
    loop {
        let task = {
            let mut queue = shared.lock_queue();
            loop {
                if queue.shutdown {
                    return;
                }
                if let Some(task) = queue.pop_for(index, &mut pinned_first) {
                    break task;
                }
                queue = shared
                    .work_available
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let Some(task) = task.run_slice(shared.slice) else {
            continue;
        };
        shared.counters.requeued.fetch_add(1, Ordering::Relaxed);
        let mut queue = shared.lock_queue();
        if queue.shutdown {
            drop(queue);
            drop(task); // cancelled (rule 3)
            return;
        }
        if task.pinned() {
            queue.pinned[index].push_back(task);
        } else {
            queue.tasks.push_back(task);
            drop(queue);
            // Another worker may be idle while this one resumes its pinned tasks.
            shared.work_available.notify_one();
        }
    }
}

/// A queued task, type-erased.
trait Task: Send {
    /// Runs one slice. Returns the task if it is still running (to be requeued); `None` if
    /// it finished or was cancelled. Dropping a task cancels it.
    fn run_slice(self: Box<Self>, slice: Budget) -> Option<Box<dyn Task>>;

    /// Whether only the worker that ran it last may resume it: a paused function with shared
    /// thread-local storage (see [`capabilities`](crate::capabilities)).
    fn pinned(&self) -> bool;
}

/// One spawned closure and where its outcome goes.
struct PoolTask<F, T> {
    stage: Stage<F, T>,
    slot: Arc<Slot<T>>,
    counters: Arc<Counters>,
}

enum Stage<F, T> {
    Unstarted(F),
    Paused(Continuation<'static, T>),
    Done,
}

impl<F, T> Task for PoolTask<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn run_slice(mut self: Box<Self>, slice: Budget) -> Option<Box<dyn Task>> {
        if self.slot.cancel_requested.load(Ordering::Acquire) {
            return None; // dropped: cancelled
        }
        self.counters.slices.fetch_add(1, Ordering::Relaxed);
        let stage = core::mem::replace(&mut self.stage, Stage::Done);
        let outcome = catch_unwind(AssertUnwindSafe(|| match stage {
            Stage::Unstarted(f) => crate::launch(f, slice),
            Stage::Paused(continuation) => continuation.resume(slice),
            Stage::Done => Err(Error::Finished),
        }));
        let counters = &self.counters;
        let result = match outcome {
            Ok(Ok(Linger::Continuation(continuation))) => {
                self.stage = Stage::Paused(continuation);
                return Some(self);
            }
            Ok(Ok(Linger::Completion(value))) => {
                counters.completed.fetch_add(1, Ordering::Relaxed);
                Ok(value)
            }
            Ok(Err(error)) => Err(JoinError::Failed(error)),
            Err(payload) => {
                counters.panicked.fetch_add(1, Ordering::Relaxed);
                Err(JoinError::Panicked(payload))
            }
        };
        self.slot.fill(result);
        None
    }

    fn pinned(&self) -> bool {
        matches!(self.stage, Stage::Paused(_)) && !crate::future::preemption_available()
    }
}

impl<F, T> Drop for PoolTask<F, T> {
    fn drop(&mut self) {
        // Cancel the function first (discarding its stack), then tell the handle.
        drop(core::mem::replace(&mut self.stage, Stage::Done));
        if self.slot.fill(Err(JoinError::Cancelled)) {
            self.counters.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Compile-time checks of the auto traits the docs promise.
#[allow(dead_code, reason = "compile-time assertions only")]
fn assert_traits() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<Pool>();
    sync::<Pool>();
    send::<JoinHandle<u8>>();
    sync::<JoinHandle<u8>>();
    send::<JoinError>();
}
