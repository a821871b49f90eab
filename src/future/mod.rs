//! Preemptible futures: every `poll` of a future runs inside a preemptible function with a time
//! slice, so a CPU-heavy future stops monopolising its executor's thread.
//!
//! ```
//! use std::time::Duration;
//! use inger::future::PreemptibleExt;
//!
//! // A future that computes for a long time without ever awaiting anything.
//! let busy = async {
//!     let mut x = 0u64;
//!     for i in 0..20_000_000u64 {
//!         x = std::hint::black_box(x.wrapping_add(i));
//!     }
//!     x
//! };
//! // Each poll gets 1 ms; when it runs out, the poll is paused and `Pending` is returned
//! // (the task asks to be polled again), so the executor can run other tasks in between.
//! let sum = block_on(busy.preemptible(Duration::from_millis(1)));
//! assert_eq!(sum, (0..20_000_000u64).sum::<u64>());
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     let mut f = std::pin::pin!(f);
//! #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
//! #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
//! # }
//! ```
//!
//! # How a poll runs
//!
//! [`Preemptible<F>`] owns the inner future in a heap allocation (the *shared state*, which
//! never moves, so the future stays pinned) together with a slot for its output and a *proxy
//! waker*. A poll of the wrapper is one of:
//!
//! ```text
//!                 poll: launch a poll of F           poll: resume the paused poll
//!   Idle ───────────────────────────────────► ┬ ◄─────────────────────────────── Paused
//!    ▲                                        │ slice expired (or inger::pause()):    ▲
//!    │ F returned Pending                     ├─── yield to ready tasks, return Pending ┘
//!    └────────────────────────────────────────┤
//!                                             │ F returned Ready(v)
//!                                             ▼
//!                      Finished: F dropped, Ready(v) returned
//! ```
//!
//! 1. The poll of `F` runs as a preemptible function ([`launch`](crate::launch)) with the
//!    wrapper's slice as budget. It polls `F` with a [`Context`] made from the proxy waker.
//! 2. If the slice expires before `F::poll` returns, the function is paused at a safe point:
//!    the wrapper keeps the [`Continuation`], asks to be polled again after the other tasks
//!    that are ready (on a tokio worker this is tokio's `yield_now`: the wake is deferred until
//!    the worker runs out of ready tasks or does its periodic maintenance; elsewhere the task is
//!    woken at once), and returns `Pending`. So a preempted computation runs in the worker's
//!    spare time, and fresh work is served first.
//! 3. The next poll of the wrapper *resumes* that paused poll for another slice; it does not
//!    start a new one. Since the executor's `Context` of the earlier poll is gone, `F` was
//!    given the proxy waker: an `Arc` that forwards each wake to the most recent waker the
//!    wrapper was polled with, which every poll of the wrapper refreshes.
//! 4. A panic in `F::poll` propagates out of the wrapper's `poll`; polling again afterwards
//!    panics.
//! 5. A wake that happens while a poll of `F` is in flight (running or paused) must lead to a
//!    *new* poll of `F` after that poll returns `Pending`, as the waker contract says. When the
//!    poll of `F` spans several polls of the wrapper, the executor may already have spent that
//!    wake on one of the resuming polls; so the proxy records every wake, and if one happened
//!    during an inner poll that was paused at least once and then returned `Pending`, the
//!    wrapper wakes its task again before returning `Pending`. (Without this, a future that
//!    calls `yield_now` and is preempted right after waking itself would sleep forever.)
//!
//! # Safety argument (the self-reference)
//!
//! The paused function holds `&mut F` (and `&` to the proxy waker) into the shared state, so
//! the state must outlive the continuation and must not be touched while it is paused:
//!
//! - the shared state is a `Box` turned into a raw pointer: moving the wrapper does not move
//!   it, and nothing else aliases it;
//! - the function gets only a type-erased pointer and a monomorphised `fn`, so the
//!   continuation has no lifetime to forget (it is `'static`), and the compiler cannot check
//!   the borrow: these rules do;
//! - while a poll is paused, the wrapper touches only the proxy waker (through `&`, behind a
//!   mutex) and never the future or the output slot;
//! - the continuation is always gone (finished or cancelled) before the shared state is freed;
//! - a paused poll is cancelled only by dropping the wrapper (or by a failed resume, which
//!   consumes it), and then the shared state is **leaked**, not dropped (see below);
//! - `Preemptible<F>` is `Send` only when `F` and its output are, because the poll may run on
//!   a different thread each time (and always with its own thread-locals, see below).
//!
//! # Cancellation
//!
//! Dropping a wrapper whose poll is paused first lets that poll *return*: it is resumed for
//! the grace budget ([`Config::cancel_grace`](crate::Config::cancel_grace), 1 ms by default,
//! then as much CPU time if its thread was descheduled meanwhile), and a poll returns at the future's next `.await` that is not ready, or with its output.
//! The future is then between polls, where dropping it is always sound, and it is dropped
//! normally, so whatever it owns (buffers, a `tokio::sync::Mutex` guard, sockets) is
//! released: no unwinding needed. If the poll does not return in time, it is cancelled as
//! any [`Continuation`] is (it unwinds from a cancellation point it reaches, or its stack is
//! discarded), and the inner future is then leaked rather than dropped: the discarded poll
//! was holding `&mut F` and may have stopped at any instruction, possibly half-way through an
//! update that unsafe code (in `F`, or in a library it uses) expects to finish before anyone
//! looks at the value again, such as the future's own destructor. Leaking it is the sound
//! choice. A wrapper dropped while idle (between polls) drops `F` normally. Dropping a
//! wrapper inside `tokio::time::timeout` or aborting its task therefore stops a runaway
//! computation for good, releasing what it holds whenever its current poll can return in
//! time.
//!
//! # Thread-locals inside the poll
//!
//! With private TLS ([`capabilities`](crate::capabilities)`().private_tls`, the normal case)
//! each poll sees a fresh set of thread-locals of its own, which moves with it if it migrates
//! to another thread. Consequences:
//!
//! - thread-local state does not carry from one poll to the next (on a multi-threaded
//!   executor it never could be relied on anyway), and thread-local caches such as a
//!   thread-local random generator are rebuilt at every poll;
//! - an executor's context is not visible inside: with the `tokio` feature the wrapper enters
//!   the current tokio runtime inside every poll, so `tokio::time`, `tokio::spawn` and the I/O
//!   types work; tokio's cooperative budget does not apply inside (preemption replaces it);
//!   `tokio::task::id()`, `task_local!` values set *outside* the wrapper and
//!   `block_in_place` are unavailable. Other executors' thread-local contexts are not
//!   carried over.
//!
//! In the shared-TLS fallback a poll could not be resumed on another thread, and pausing it
//! would expose the executor's own thread-locals half-updated, so the wrapper then polls the
//! future directly, without preemption ([`preemption_available`] tells which case applies).
//!
//! # Locks shared with the executor: read this before awaiting inside
//!
//! A paused poll keeps every lock it holds. inger never pauses code inside libc or the loader,
//! but tokio's timers, bounded channels, `Notify` and I/O registration take tokio's own mutexes,
//! which tokio's worker threads also take. If a slice expires while the poll is inside one of
//! those short critical sections, a worker that wants the same mutex blocks until the poll is
//! resumed, and on a runtime with a single worker (or when every worker ends up waiting) that
//! never happens: a deadlock. The window is a few microseconds per such operation against a
//! slice of a millisecond, so it is rare, not impossible: with 30 µs slices, three tasks
//! looping over a timer and a channel round trip on one worker deadlocked within seconds (the
//! worker blocked on the timer wheel's lock, held by a paused poll); with the awaits wrapped as
//! below the same loop ran through 80,000 preemptions.
//!
//! The first wrapper a process creates therefore declares tokio's own code, `parking_lot` and
//! `lock_api` non-preemptible by symbol prefix ([`crate::mark_non_preemptible_symbols`]), so
//! the safe-point rule never pauses a poll with one of their frames on its stack. That needs
//! the executable's symbol table (a stripped binary has none: see
//! [`Capabilities::std_critical_sections`](crate::Capabilities::std_critical_sections)), and
//! it does not cover other executors' primitives: for those, or as a belt-and-braces measure,
//! put awaits of executor primitives inside a preemptible future in [`NonPreemptible`]
//! (`.nopreempt()`), and synchronous calls into them in [`nopreempt`](crate::nopreempt); keep
//! the CPU-heavy parts preemptible:
//!
//! ```no_run
//! use std::time::Duration;
//! use inger::future::PreemptibleExt;
//! # fn crunch(x: u64) -> u64 { x * 2 }
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(1);
//! let work = async move {
//!     let input = rx.recv().nopreempt().await.unwrap_or(0); // tokio channel: not preempted
//!     let result = crunch(input); // CPU-heavy: preempted every slice
//!     tokio::time::sleep(Duration::from_millis(1)).nopreempt().await; // timer: not preempted
//!     result
//! };
//! let task = tokio::spawn(work.preemptible(Duration::from_millis(1)));
//! tx.send(21).await.unwrap();
//! assert_eq!(task.await.unwrap(), 42);
//! # });
//! ```
//!
//! The wrapper's own proxy waker forwards wakes with preemption deferred, so waking a task
//! from inside a preemptible poll is safe.
//!
//! # Making every task of a tokio runtime preemptible (`tokio` feature)
//!
//! tokio has no hook that wraps the futures it is given (its task hooks observe tasks but
//! cannot replace them), so inger cannot make a runtime preemptible from the outside. What
//! works: spawn through `spawn_preemptible` (for instance
//! `use inger::future::spawn_preemptible as spawn;` in place of `tokio::spawn`, enforced with
//! clippy's `disallowed-methods = ["tokio::spawn", "tokio::task::spawn"]`), or hold a
//! `PreemptiveHandle`, whose `spawn` and `block_on` wrap every future they are given. Tasks
//! that libraries spawn with `tokio::spawn` themselves stay cooperative.
//!
//! # Costs
//!
//! Each poll of the wrapper launches a preemptible function (a stack and a thread-local block
//! from a per-thread pool), enters the tokio runtime inside it (with the `tokio` feature) and
//! takes an uncontended mutex for the proxy waker: about 0.8 µs per poll on the development
//! machine, against 2 ns for a direct poll of a trivial future. An expired slice costs a timer
//! signal and a resume (about 6 µs). Nothing is held between polls except the paused stack of
//! a poll that ran out of time.
//!
//! (This file is longer than most: its first part is the specification of the wrapper, and
//! the state machine that follows it is one unit.)

// Why this file is long (~620 lines): the guide above is a third of it; the wrapper's phases,
// its shared state and the proxy waker are one invariant (who may poll, who owns the paused
// poll), kept in one file so it can be checked in one reading.

use core::cell::UnsafeCell;
use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll, Waker};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::{Continuation, Linger, NoPreempt};

mod nonpreemptible;
#[cfg(feature = "tokio")]
mod tokio_support;
mod waker;

pub use nonpreemptible::NonPreemptible;
#[cfg(feature = "tokio")]
pub use tokio_support::{PreemptiveHandle, spawn_preemptible, spawn_preemptible_with};
use waker::ProxyWaker;

use crate::budget::Budget;

/// The slice used by `spawn_preemptible` and `PreemptiveHandle::current` (`tokio` feature):
/// 1 ms.
pub const DEFAULT_SLICE: Duration = Duration::from_millis(1);

/// Shorter slices are raised to this (10 µs): a poll needs a few microseconds just to start.
pub const MIN_SLICE: Duration = Duration::from_micros(10);

/// Wraps `future` so that each of its polls runs preemptibly with `slice` of time (raised to
/// [`MIN_SLICE`] if shorter; `Duration::MAX` never preempts). The slice is wall-clock time
/// for a [`Duration`], or CPU time with [`Budget::cpu`](crate::Budget::cpu): a poll that
/// blocks the thread then keeps its slice. See the [module docs](self).
pub fn preemptible<F: Future>(future: F, slice: impl Into<Budget>) -> Preemptible<F> {
    static EXECUTOR_CODE_MARKED: std::sync::Once = std::sync::Once::new();
    if !EXECUTOR_CODE_MARKED.is_completed() {
        // With preemption deferred: a task paused inside the initialisation would make its
        // worker wait for it on its own thread (the symbol rule that names `Once` as a
        // critical section is gone in a stripped executable).
        let _section = crate::runtime::RuntimeSection::enter();
        EXECUTOR_CODE_MARKED.call_once(|| {
            // Code with locks the executor's workers also take (see the module docs).
            crate::mark_non_preemptible_symbols(&["tokio::", "parking_lot", "lock_api"]);
        });
    }
    let proxy = Arc::new(ProxyWaker {
        target: Mutex::new(None),
        woken: AtomicBool::new(false),
    });
    let shared = Box::new(Shared {
        future: UnsafeCell::new(future),
        output: UnsafeCell::new(None),
        waker: Waker::from(Arc::clone(&proxy)),
        proxy,
    });
    Preemptible {
        shared: NonNull::from(Box::leak(shared)),
        phase: Phase::Idle,
        slice: slice.into().at_least(MIN_SLICE),
        polls: 0,
        expired_polls: 0,
        spanning: false,
        _owns: PhantomData,
    }
}

/// Whether [`Preemptible`] really preempts in this process: false in the shared-TLS fallback
/// (see [`capabilities`](crate::capabilities)), where it polls its future directly.
pub fn preemption_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    if let Some(&available) = AVAILABLE.get() {
        return available;
    }
    // As in `preemptible`: never paused inside the initialisation.
    let _section = crate::runtime::RuntimeSection::enter();
    *AVAILABLE.get_or_init(|| crate::capabilities().private_tls)
}

/// Adapters for any future: [`preemptible`](PreemptibleExt::preemptible) and
/// [`nopreempt`](PreemptibleExt::nopreempt).
pub trait PreemptibleExt: Future + Sized {
    /// Runs each poll of `self` preemptibly with `slice` of time; see [`preemptible`].
    fn preemptible(self, slice: impl Into<Budget>) -> Preemptible<Self> {
        preemptible(self, slice)
    }

    /// Polls (and drops) `self` with preemption deferred; see [`NonPreemptible`].
    fn nopreempt(self) -> NonPreemptible<Self> {
        NonPreemptible {
            inner: ManuallyDrop::new(self),
        }
    }
}

impl<F: Future> PreemptibleExt for F {}

/// A future whose polls run as preemptible functions with a time slice; made by
/// [`preemptible`] or [`PreemptibleExt::preemptible`]. See the [module docs](self).
///
/// It is a `Future` when `F` and its output are `Send` (each poll runs with thread-locals of
/// its own and may be resumed on another thread, so `F` is treated as if it moved between
/// threads), and it is `Send` and `Unpin` then too.
#[must_use = "futures do nothing unless polled"]
pub struct Preemptible<F: Future> {
    /// The heap-pinned future, output slot and proxy waker (valid unless `phase` is
    /// `Finished`; leaked when a paused poll is cancelled).
    shared: NonNull<Shared<F>>,
    phase: Phase,
    slice: Budget,
    polls: u64,
    expired_polls: u64,
    /// The inner poll in flight has been paused at least once (it spans several polls of
    /// the wrapper).
    spanning: bool,
    /// The wrapper owns an `F` (for the drop checker).
    _owns: PhantomData<F>,
}

/// Where the wrapper is in the state machine of the module docs.
enum Phase {
    /// No poll of the inner future is in flight.
    Idle,
    /// A poll is paused; it borrows the shared state.
    Paused(Continuation<'static, ()>),
    /// A launch or resume is in progress. Seen again only if it panicked (the inner poll
    /// unwound normally, so the future may still be dropped).
    Running,
    /// A paused poll was cancelled because it could not be resumed: the shared state is
    /// borrowed by a discarded stack and must be leaked.
    Abandoned,
    /// The inner future returned `Ready`; the shared state is freed.
    Finished,
}

/// What a poll in flight borrows: never moved, freed only when no poll is paused.
struct Shared<F: Future> {
    future: UnsafeCell<F>,
    output: UnsafeCell<Option<F::Output>>,
    /// `Waker::from(proxy)`: what the inner future sees as `cx.waker()`.
    waker: Waker,
    proxy: Arc<ProxyWaker>,
}

/// The closure a preemptible poll runs: a type-erased pointer to the shared state and the
/// monomorphised function that polls it.
struct PollTask {
    shared: *const (),
    poll: unsafe fn(*const ()),
    #[cfg(feature = "tokio")]
    runtime: Option<tokio::runtime::Handle>,
}

// SAFETY: `shared` points to a `Shared<F>` with `F: Send` and `F::Output: Send` (the only
// constructor, `Preemptible::launch_poll`, requires both), used by this task alone while it
// runs or is paused (rules of the module docs); the other fields are `Send`.
unsafe impl Send for PollTask {}

impl PollTask {
    /// Polls the inner future once (on the preemptible function's stack).
    fn run(self) {
        #[cfg(feature = "tokio")]
        let _runtime = self.runtime.as_ref().map(tokio::runtime::Handle::enter);
        // SAFETY: `poll` is `poll_shared::<F>` for the `Shared<F>` behind `shared`, which
        // outlives this function and is not touched by anyone else meanwhile (module rules).
        unsafe { (self.poll)(self.shared) }
    }
}

/// Polls the inner future of a `Shared<F>` once with the proxy waker, storing its output.
///
/// # Safety
/// `shared` must point to a live `Shared<F>` whose future and output nobody else accesses
/// during the call (and while the call is paused).
unsafe fn poll_shared<F: Future>(shared: *const ()) {
    // SAFETY: per the contract.
    let shared = unsafe { &*shared.cast::<Shared<F>>() };
    let mut cx = Context::from_waker(&shared.waker);
    // SAFETY: the future lives in the heap allocation until it is dropped in place (or
    // leaked), so it is pinned; the contract gives us exclusive access.
    let future = unsafe { Pin::new_unchecked(&mut *shared.future.get()) };
    if let Poll::Ready(output) = future.poll(&mut cx) {
        // SAFETY: exclusive access per the contract.
        unsafe { *shared.output.get() = Some(output) };
    }
}

impl<F: Future> Preemptible<F> {
    /// The time slice of each poll.
    pub fn slice(&self) -> Budget {
        self.slice
    }

    /// Changes the slice for the following polls (raised to [`MIN_SLICE`] if shorter).
    pub fn set_slice(&mut self, slice: impl Into<Budget>) {
        self.slice = slice.into().at_least(MIN_SLICE);
    }

    /// Whether a poll of the inner future is paused, waiting to be resumed by the next poll.
    pub fn is_paused(&self) -> bool {
        matches!(self.phase, Phase::Paused(_))
    }

    /// How many times the wrapper has been polled (and got an answer, `Ready` or `Pending`).
    pub fn polls(&self) -> u64 {
        self.polls
    }

    /// How many polls ended because the slice expired (or the inner future called
    /// [`pause`](crate::pause)) rather than because the inner poll returned.
    pub fn expired_polls(&self) -> u64 {
        self.expired_polls
    }

    /// Whether the inner future has completed.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished)
    }

    fn shared(&self) -> &Shared<F> {
        debug_assert!(!matches!(self.phase, Phase::Finished));
        // SAFETY: the shared state is live unless finished (callers check); only `&` access
        // here, and the inner future and output are behind `UnsafeCell`s.
        unsafe { self.shared.as_ref() }
    }

    /// Frees the shared state (dropping the inner future). No poll may be paused.
    fn release(&mut self) {
        debug_assert!(!matches!(
            self.phase,
            Phase::Paused(_) | Phase::Abandoned | Phase::Finished
        ));
        self.phase = Phase::Finished;
        // SAFETY: made by `Box::leak` in `preemptible`; no poll is in flight or paused, so
        // nothing borrows it; `phase` now says it is gone, so it is freed once.
        drop(unsafe { Box::from_raw(self.shared.as_ptr()) });
    }

    /// Takes the output after a poll returned, freeing the shared state if there is one.
    fn take_output(&mut self) -> Poll<F::Output> {
        // SAFETY: no poll is in flight or paused: we have exclusive access to the slot.
        match unsafe { (*self.shared().output.get()).take() } {
            Some(output) => {
                self.release();
                Poll::Ready(output)
            }
            None => Poll::Pending,
        }
    }
}

impl<F> Preemptible<F>
where
    F: Future + Send,
    F::Output: Send,
{
    /// The preemptible function for a new poll of the inner future.
    fn launch_poll(&self, slice: Budget) -> Result<Linger<'static, ()>, crate::Error> {
        let task = PollTask {
            shared: self.shared.as_ptr().cast_const().cast(),
            poll: poll_shared::<F>,
            #[cfg(feature = "tokio")]
            runtime: tokio::runtime::Handle::try_current().ok(),
        };
        crate::launch(move || task.run(), slice)
    }

    /// The shared-TLS fallback: polls the inner future directly with the caller's context.
    fn poll_directly(&mut self, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.phase = Phase::Running;
        // SAFETY: no poll is in flight or paused (we never pause in this mode), so we have
        // exclusive access; the future is pinned in the heap allocation.
        let future = unsafe { Pin::new_unchecked(&mut *self.shared().future.get()) };
        let poll = future.poll(cx);
        self.phase = Phase::Idle;
        self.polls += 1;
        if poll.is_ready() {
            self.release();
        }
        poll
    }
}

impl<F> Future for Preemptible<F>
where
    F: Future + Send,
    F::Output: Send,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let previous = core::mem::replace(&mut this.phase, Phase::Running);
        let linger = match previous {
            Phase::Idle if !preemption_available() => return this.poll_directly(cx),
            Phase::Idle => {
                let proxy = &this.shared().proxy;
                proxy.set_target(cx.waker());
                proxy.woken.store(false, Ordering::SeqCst);
                this.spanning = false;
                this.launch_poll(this.slice)
            }
            Phase::Paused(continuation) => {
                this.shared().proxy.set_target(cx.waker());
                let result = continuation.resume(this.slice);
                if result.is_err() {
                    // The continuation was consumed (cancelled) mid-poll.
                    this.phase = Phase::Abandoned;
                }
                result
            }
            Phase::Running | Phase::Abandoned => {
                this.phase = previous;
                panic!("`Preemptible` polled after its inner future panicked")
            }
            Phase::Finished => {
                this.phase = previous;
                panic!("`Preemptible` polled after completion")
            }
        };
        let linger = match linger {
            Ok(linger) => linger,
            Err(error) => panic!("inger: could not run a poll preemptibly: {error}"),
        };
        this.polls += 1;
        match linger {
            Linger::Completion(()) => {
                this.phase = Phase::Idle;
                let poll = this.take_output();
                if poll.is_pending()
                    && this.spanning
                    && this.shared().proxy.woken.load(Ordering::SeqCst)
                {
                    // Rule 5: a wake during this inner poll may have been spent on one of our
                    // resuming polls; the inner future expects a new poll after this Pending.
                    let _no_preempt = NoPreempt::new();
                    cx.waker().wake_by_ref();
                }
                poll
            }
            Linger::Continuation(continuation) => {
                this.phase = Phase::Paused(continuation);
                this.spanning = true;
                this.expired_polls += 1;
                yield_to_ready_tasks(cx);
                Poll::Pending
            }
        }
    }
}

/// Asks to be polled again after the executor's other ready tasks (rule 2).
///
/// On a tokio worker (with the `tokio` feature) this is tokio's own yield: the wake is
/// deferred until the worker has run out of ready tasks or does its periodic maintenance
/// (every 61 polls by default), exactly as `tokio::task::yield_now` does. A plain wake would
/// put the task in the worker's local queue, which tokio serves before newly spawned tasks
/// most of the time, so a preempted computation would keep most of the worker. Elsewhere the
/// task is woken at once.
fn yield_to_ready_tasks(cx: &mut Context<'_>) {
    let _no_preempt = NoPreempt::new();
    #[cfg(feature = "tokio")]
    {
        // The first poll of `yield_now` hands our waker to the worker's deferred list (or
        // wakes it at once outside a tokio worker) and returns Pending.
        let mut yield_now = core::pin::pin!(tokio::task::yield_now());
        if yield_now.as_mut().poll(cx).is_pending() {
            return;
        }
    }
    cx.waker().wake_by_ref();
}

impl<F: Future> Drop for Preemptible<F> {
    fn drop(&mut self) {
        match core::mem::replace(&mut self.phase, Phase::Finished) {
            Phase::Finished => {}
            Phase::Abandoned => {} // leaked: a discarded stack borrows it
            Phase::Paused(continuation) => {
                // Lets the paused poll return (at its next await, or with its output) within
                // the grace budget: the future is then between polls, where dropping it is
                // sound, and it is dropped normally. If it does not, the poll is cancelled.
                let grace = crate::config::settings().map_or(Duration::ZERO, |s| s.cancel_grace);
                // A panic of that last poll is not propagated out of a destructor (it could be
                // running during an unwind): the poll has ended either way.
                // The grace is wall-clock time first, then (for a poll still running: its
                // thread was descheduled under load) the grace again as CPU time, bounded in
                // wall time, as for a cancellation's (see `Continuation::cancel`).
                let resumed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    match continuation.resume(grace)? {
                        Linger::Continuation(still) if !still.yielded() => {
                            still.resume(Budget::cpu_grace(grace))
                        }
                        other => Ok(other),
                    }
                }));
                let returned = match resumed.unwrap_or(Ok(Linger::Completion(()))) {
                    Ok(Linger::Completion(())) => true,
                    Ok(Linger::Continuation(still)) => {
                        still.cancel() == crate::CancelOutcome::Unwound
                    }
                    // Resuming failed (another thread with shared TLS): the stack was never
                    // touched again; it is discarded, and the future leaked.
                    Err(_) => false,
                };
                if returned {
                    self.phase = Phase::Idle;
                    self.release();
                }
                // Else leaked on purpose: see "Cancellation" in the module docs.
            }
            Phase::Idle | Phase::Running => {
                self.phase = Phase::Idle;
                self.release();
            }
        }
    }
}

// SAFETY: the wrapper owns the shared state (an `F`, an `Option<F::Output>`, and a proxy
// waker, which is `Send + Sync`) and a continuation of a poll of it, which is `Send`; a poll
// runs with its own thread-locals wherever it is resumed. So it may move between threads
// whenever `F` and its output may.
unsafe impl<F> Send for Preemptible<F>
where
    F: Future + Send,
    F::Output: Send,
{
}

// The inner future is pinned in its own heap allocation, never through the wrapper.
impl<F: Future> Unpin for Preemptible<F> {}

impl<F: Future> fmt::Debug for Preemptible<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.phase {
            Phase::Idle => "idle",
            Phase::Paused(_) => "paused",
            Phase::Running => "running",
            Phase::Abandoned => "abandoned",
            Phase::Finished => "finished",
        };
        f.debug_struct("Preemptible")
            .field("phase", &phase)
            .field("slice", &self.slice)
            .field("polls", &self.polls)
            .field("expired_polls", &self.expired_polls)
            .finish()
    }
}
