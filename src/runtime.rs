//! The per-thread runtime and the state machine of one preemptible function (LPF).
//!
//! # Contexts and who may touch what
//!
//! A kernel thread runs one *context* at a time: its own (the "root"), or one LPF. The
//! runtime's `current` names the innermost LPF running (null for the root). Every field
//! below is touched only by code on the owning thread: ordinary code, or the preemption
//! signal handler interrupting it. Fields the handler reads or writes are atomics used with
//! `Relaxed` ordering (the handler and the code it interrupts are on the same thread; the
//! atomics only stop the compiler from caching or tearing them).
//!
//! # The `nopreempt` counter and its hand-over rule
//!
//! Each LPF has a counter; while it is non-zero the handler never pauses that LPF, it only
//! marks the preemption *pending*. Users raise it with [`nopreempt`](crate::nopreempt); the
//! runtime raises it around its own bookkeeping. The rule that makes switching safe:
//!
//! 1. A suspended LPF always holds one unit of its counter, taken by the code that
//!    suspended it (the handler, [`pause`](crate::pause), or `launch` for a fresh one).
//! 2. The code that continues running in that LPF after a switch ("landing") releases it.
//! 3. A resumer that is itself an LPF raises its own counter for the whole of `resume`, so
//!    it is never paused half-way through runtime code on its own stack.
//!
//! So from the instant `current` names an LPF until it lands, the handler sees a non-zero
//! counter and defers; when the counter drops to zero with a preemption pending, the LPF
//! checks its deadline and pauses itself.
//!
//! # Thread-local storage
//!
//! With private TLS (the normal case, see `sys::tls`) every LPF has its own TLS block, and
//! every switch installs the block of the context it continues: `resume` installs the leaf's
//! before switching in, `leave` installs the resumer's before switching out. A context
//! therefore never runs with another's block, except in the few instructions between the fs
//! write and the switch, where no thread-local is touched. Code inside an LPF finds its own
//! control block in the `CURRENT` thread-local of its block (written once at entry), and its
//! thread's runtime through the control block (`runtime`, updated when it migrates).
//! With shared TLS (glibc internals not found), `CURRENT` is rewritten at every switch and an
//! LPF cannot move to another thread.
//!
//! # Nesting
//!
//! An LPF that launches another is its `parent` while the child runs. The handler pauses the
//! *outermost* LPF of the running chain whose deadline has passed: control goes to that one's
//! resumer, and the chain below it stays exactly as it was (the intermediate LPFs are
//! suspended inside their `resume` calls). The paused LPF remembers the innermost context
//! (`leaf`), and resuming it continues that one.

use core::cell::{Cell, UnsafeCell};
use core::ffi::c_void;
use core::ptr::{self, null_mut};
use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64,
    Ordering::{Relaxed, SeqCst},
    compiler_fence,
};
use std::cell::{OnceCell, RefCell};
use std::time::Duration;

use crate::arch;
use crate::config::settings;
use crate::error::Error;
use crate::preempt;
use crate::stack::{Stack, StackPool};
use crate::sys::clock::{self, deadline_after};
use crate::sys::signal::{AltStack, errno, set_errno};
use crate::sys::timer::ThreadTimer;
use crate::sys::tls::{self, Glibc};

/// No deadline: the timer is not armed / the function may run forever.
pub(crate) const NEVER: u64 = u64::MAX;

/// Lifecycle of one LPF.
pub(crate) mod state {
    /// Prepared, never run.
    pub(crate) const READY: u8 = 0;
    /// Running (possibly suspended inside a `resume` of a nested LPF).
    pub(crate) const RUNNING: u8 = 1;
    /// Paused by its timer or by `pause`; may be resumed.
    pub(crate) const PAUSED: u8 = 2;
    /// Returned; its result waits in the slot.
    pub(crate) const COMPLETED: u8 = 3;
    /// Panicked; the payload waits in the slot.
    pub(crate) const PANICKED: u8 = 4;
}

/// The control block of one LPF. It lives at the top of the LPF's own stack, so launching
/// allocates nothing.
#[repr(C)]
pub(crate) struct Lpf {
    /// Where the resumer was suspended; switching there returns control to it.
    caller_sp: UnsafeCell<*mut u8>,
    /// Where this LPF was suspended (meaningful while it is suspended as a leaf).
    saved_sp: UnsafeCell<*mut u8>,
    /// The context to continue when this LPF is resumed: itself, or a nested LPF if the
    /// whole chain was paused at its deadline.
    leaf: Cell<*mut Lpf>,
    /// The LPF that resumed this one, or null when the root context did.
    pub(crate) parent: AtomicPtr<Lpf>,
    /// Absolute monotonic deadline in nanoseconds, or [`NEVER`].
    pub(crate) deadline: AtomicU64,
    /// Preemption is deferred while non-zero (see the module docs).
    pub(crate) nopreempt: AtomicU32,
    /// A deadline passed while `nopreempt` was non-zero.
    pub(crate) pending: AtomicBool,
    /// The preemption handler is running on this LPF's stack.
    pub(crate) in_handler: AtomicBool,
    /// The caller asked for a cooperative cancellation: the next checkpoint unwinds.
    pub(crate) cancel_requested: AtomicBool,
    /// One of [`state`].
    pub(crate) state: AtomicU8,
    /// The last pause came from [`pause`](crate::pause), not the timer.
    yielded: Cell<bool>,
    /// Consecutive retries while the deadline has passed (for back-off).
    pub(crate) retries: Cell<u32>,
    /// Runs the closure and stores its outcome in the slot (monomorphised per closure).
    run: unsafe fn(*mut Lpf) -> bool,

    /// Bounds of the stack, for the handler's sanity checks and overflow reports.
    pub(crate) stack_low: usize,
    pub(crate) stack_high: usize,
    /// Where the runtime's entry frames begin (the top the first switch starts from): stack
    /// walks stop there.
    walk_base: Cell<usize>,

    /// Thread pointer of the private TLS block, or 0 with shared TLS.
    pub(crate) tls: usize,
    /// The runtime of the thread that last resumed this LPF.
    pub(crate) runtime: AtomicPtr<Runtime>,
    /// With shared TLS: the function's errno while it is suspended.
    errno: Cell<i32>,
}

impl Lpf {
    /// A control block for a fresh function whose stack is `stack`.
    pub(crate) fn new(run: unsafe fn(*mut Lpf) -> bool, stack: &Stack, runtime: &Runtime) -> Lpf {
        Lpf {
            caller_sp: UnsafeCell::new(null_mut()),
            saved_sp: UnsafeCell::new(null_mut()),
            leaf: Cell::new(null_mut()),
            parent: AtomicPtr::new(null_mut()),
            deadline: AtomicU64::new(NEVER),
            // Rule 1: a suspended LPF holds one unit; the entry trampoline releases it.
            nopreempt: AtomicU32::new(1),
            pending: AtomicBool::new(false),
            in_handler: AtomicBool::new(false),
            cancel_requested: AtomicBool::new(false),
            state: AtomicU8::new(state::READY),
            yielded: Cell::new(false),
            retries: Cell::new(0),
            run,
            stack_low: stack.base(),
            stack_high: stack.top() as usize,
            walk_base: Cell::new(stack.top() as usize),

            tls: stack.tls,
            runtime: AtomicPtr::new(runtime as *const Runtime as *mut Runtime),
            errno: Cell::new(0),
        }
    }

    /// Prepares the first switch into this LPF, whose control block sits at `top`.
    ///
    /// # Safety
    /// `this` must point to a control block at the top of its stack, below which the stack
    /// is unused; `top` must be 16-byte aligned and at or below `this`.
    pub(crate) unsafe fn prepare(this: *mut Lpf, top: *mut u8) {
        // SAFETY: per the contract, the stack below `top` is ours to write.
        unsafe {
            (*this).leaf.set(this);
            (*this).walk_base.set(top as usize);
            *(*this).saved_sp.get() = arch::prepare_stack(top, lpf_entry, this.cast());
        }
    }

    /// Where stack walks of this LPF stop: frames at or above belong to the runtime's entry.
    pub(crate) fn walk_base(&self) -> usize {
        self.walk_base.get()
    }

    /// The stack pointer saved by the `switch` with which this LPF's resumer handed control
    /// to it (it points into the resumer's stack).
    pub(crate) fn caller_sp(&self) -> usize {
        // SAFETY: written by `switch` in `resume`; read on the same thread.
        unsafe { *self.caller_sp.get() as usize }
    }

    /// Raises the `nopreempt` counter. Only code on the thread running this LPF (its signal
    /// handler included) touches the counter, so a plain load and store suffice: the handler's
    /// own changes are balanced before it returns to the code it interrupted. (A locked
    /// read-modify-write would cost about 20 cycles on every pause and resume.)
    #[inline]
    pub(crate) fn hold_nopreempt(&self) {
        let held = self.nopreempt.load(Relaxed);
        self.nopreempt.store(held + 1, Relaxed);
        compiler_fence(SeqCst);
    }

    /// The lowest stack pointer of this paused LPF's live frames on its own stack: its own
    /// suspension point, or where it waits for the nested LPF it resumed.
    pub(crate) fn live_stack_pointer(&self) -> usize {
        let this = self as *const Lpf as *mut Lpf;
        let mut at = self.leaf.get();
        // SAFETY: the suspended chain from the leaf up to this LPF is live.
        while let Some(node) = unsafe { at.as_ref() } {
            let parent = node.parent.load(Relaxed);
            if at == this {
                // SAFETY: written by `switch` when this LPF was suspended.
                return unsafe { *node.saved_sp.get() } as usize;
            }
            if parent == this {
                // SAFETY: written by `switch` when this LPF resumed `node`.
                return unsafe { *node.caller_sp.get() } as usize;
            }
            at = parent;
        }
        self.stack_low
    }

    /// Whether the last pause came from `pause()`.
    pub(crate) fn yielded(&self) -> bool {
        self.yielded.get()
    }
}

/// What a `resume` ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Paused; `yielded` tells `pause()` from the timer.
    Paused,
    /// Finished: returned or panicked. The slot holds the outcome.
    Finished,
}

/// Per-thread runtime state, reachable from the handler through the timer's `si_value`.
pub(crate) struct Runtime {
    /// Innermost running LPF, or null when the root context runs.
    pub(crate) current: AtomicPtr<Lpf>,
    /// Deadline the timer is armed for, or [`NEVER`].
    pub(crate) armed: AtomicU64,
    /// The thread's preemption timer; `None` when preemption is off.
    pub(crate) timer: Option<ThreadTimer>,
    /// First retry interval (ns) after a deferred preemption.
    pub(crate) retry_ns: u64,
    /// glibc's TLS internals when functions get private TLS blocks.
    pub(crate) glibc: Option<&'static Glibc>,
    /// Write the fs base with `wrfsbase` (else `arch_prctl`).
    fast_fs: bool,
    /// The thread's own thread pointer.
    pub(crate) thread_tp: usize,
    /// The kernel thread id.
    pub(crate) tid: i32,
    /// Free stacks (with their TLS blocks). Touched only by this thread, with preemption
    /// deferred; never by the signal handler.
    pool: RefCell<StackPool>,
    /// The stack walker's rule cache; used only with the running LPF's `in_handler` flag set.
    unwind_cache: UnsafeCell<Box<crate::safepoint::UnwindCache>>,
    /// Cooperative pauses on this thread (written only by its own non-handler code).
    pub(crate) yields: AtomicU64,
    /// Stacks of cancelled functions waiting to be guarded and discarded, with the lowest
    /// stack pointer of their live frames.
    retired: RefCell<Vec<(Stack, usize)>>,
    _altstack: Option<AltStack>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        crate::preempt::forget_runtime(self);
        crate::stack::retire_all(self.retired.get_mut());
    }
}

impl Runtime {
    /// Takes a stack with an initialised private TLS block (if TLS is private).
    pub(crate) fn take_stack(&self) -> Result<Stack, Error> {
        let _section = RuntimeSection::enter();
        let mut stack = self.pool.borrow_mut().take()?;
        if let Some(glibc) = self.glibc {
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
    pub(crate) fn give_back(&self, stack: Stack) {
        let _section = RuntimeSection::enter();
        self.pool.borrow_mut().give_back(stack);
    }

    /// Retires the stack of a function cancelled while paused (see `stack` for what that
    /// guarantees); its TLS block is reset and kept for reuse.
    pub(crate) fn retire(&self, mut stack: Stack, live_low: usize) {
        let _section = RuntimeSection::enter();
        let block = core::mem::take(&mut stack.tls);
        if block != 0
            && let Some(glibc) = self.glibc
        {
            glibc.reset_cancelled_block(block, self.tid);
            self.pool.borrow_mut().keep_tls(block);
        }
        let mut retired = self.retired.borrow_mut();
        retired.push((stack, live_low));
        if retired.len() >= crate::stack::RETIRE_BATCH {
            crate::stack::retire_all(&retired);
            retired.clear();
        }
    }

    /// The thread's unwind rule cache.
    ///
    /// # Safety
    /// The caller must be the running LPF's code (or its handler) with that LPF's
    /// `in_handler` flag set, which keeps every other user away for the borrow's duration.
    #[allow(
        clippy::mut_from_ref,
        reason = "exclusive access is guaranteed by the in_handler flag"
    )]
    pub(crate) unsafe fn unwind_cache(&self) -> &mut crate::safepoint::UnwindCache {
        // SAFETY: per the contract.
        unsafe { &mut *self.unwind_cache.get() }
    }

    /// Installs `tp` as the fs base (no-op with shared TLS, where `tp` is 0).
    #[inline]
    fn install_tls(&self, tp: usize) {
        if tp == 0 {
            return;
        }
        if self.fast_fs {
            // SAFETY: `fast_fs` was set only if wrfsbase is allowed; `tp` is a live block.
            unsafe { arch::set_thread_pointer_fast(tp) }
        } else {
            // SAFETY: `tp` is a live block.
            unsafe { arch::set_thread_pointer_slow(tp) }
        }
    }

    /// Thread pointer of the context that resumed `lpf` (its parent LPF's or the thread's).
    fn resumer_tls(&self, parent: *mut Lpf) -> usize {
        if self.glibc.is_none() {
            return 0;
        }
        // SAFETY: a non-null parent is live while its child runs.
        match unsafe { parent.as_ref() } {
            Some(parent) => parent.tls,
            None => self.thread_tp,
        }
    }

    /// Arms the timer for `deadline` unless it already fires at or before it.
    /// Async-signal-safe.
    pub(crate) fn arm(&self, deadline: u64) {
        if let Some(timer) = &self.timer
            && deadline < self.armed.load(Relaxed)
        {
            // Publish first: if an earlier expiry lands between these two lines, the handler
            // resets `armed` and the next launch merely re-arms once more.
            self.armed.store(deadline, Relaxed);
            timer.arm_at(deadline);
        }
    }

    /// Arms the timer `delay_ns` from `now`, even if it was armed later. Async-signal-safe.
    pub(crate) fn arm_retry(&self, now: u64, delay_ns: u64) {
        if let Some(timer) = &self.timer {
            let at = now.saturating_add(delay_ns);
            self.armed.store(at, Relaxed);
            timer.arm_at(at);
        }
    }
}

/// Owns the thread's runtime; dropped at thread exit.
struct RuntimeOwner(*mut Runtime);

impl Drop for RuntimeOwner {
    fn drop(&mut self) {
        RUNTIME.with(|cell| cell.set(ptr::null()));
        // SAFETY: a sigset filled with one signal; blocking it on this exiting thread makes
        // sure no expiry can reach the handler with the pointer we are about to free.
        unsafe {
            let mut set: libc::sigset_t = core::mem::zeroed();
            libc::sigemptyset(&mut set);
            if let Ok(s) = settings() {
                libc::sigaddset(&mut set, s.signal);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, null_mut());
        }
        // SAFETY: created by Box::into_raw in `runtime()` and freed only here; dropping it
        // deletes the timer.
        drop(unsafe { Box::from_raw(self.0) });
    }
}

thread_local! {
    /// The thread's runtime, or null before first use. Constant-initialised with no
    /// destructor, so reading it is a plain TLS load (usable from signal handlers).
    static RUNTIME: Cell<*const Runtime> = const { Cell::new(ptr::null()) };
    static OWNER: OnceCell<RuntimeOwner> = const { OnceCell::new() };
    /// The LPF whose context is running, or null in the thread's own context. With private
    /// TLS each LPF's block holds its own pointer, written once at entry.
    static CURRENT: Cell<*mut Lpf> = const { Cell::new(ptr::null_mut()) };
}

/// The control block of the LPF running this code, or null outside any.
#[inline]
pub(crate) fn current_lpf() -> *mut Lpf {
    CURRENT.try_with(Cell::get).unwrap_or(ptr::null_mut())
}

fn set_current(lpf: *mut Lpf) {
    let _ = CURRENT.try_with(|cell| cell.set(lpf));
}

/// The runtime of the thread running this code, if it exists.
pub(crate) fn runtime_if_started() -> Option<&'static Runtime> {
    // SAFETY: a non-null current LPF is live while it runs.
    if let Some(lpf) = unsafe { current_lpf().as_ref() } {
        // SAFETY: the runtime of the thread running an LPF outlives the run.
        return unsafe { lpf.runtime.load(Relaxed).as_ref() };
    }
    let raw = RUNTIME.try_with(Cell::get).unwrap_or(ptr::null());
    // SAFETY: a non-null pointer in RUNTIME is live until the owner clears it at thread exit.
    unsafe { raw.as_ref() }
}

/// The thread's runtime, starting it (and the process-wide handlers) on first use.
pub(crate) fn runtime() -> Result<&'static Runtime, Error> {
    if let Some(rt) = runtime_if_started() {
        return Ok(rt);
    }
    start_runtime()
}

#[cold]
fn start_runtime() -> Result<&'static Runtime, Error> {
    let settings = settings()?;
    preempt::install_process_handlers()?;
    clock::calibrate();
    let boxed = Box::into_raw(Box::new(Runtime {
        current: AtomicPtr::new(null_mut()),
        armed: AtomicU64::new(NEVER),
        timer: None,
        retry_ns: settings.retry_ns,
        glibc: tls::glibc(),
        fast_fs: arch::fsgsbase_available(),
        thread_tp: arch::thread_pointer(),
        // SAFETY: gettid has no preconditions.
        tid: unsafe { libc::gettid() },
        pool: RefCell::new(StackPool::default()),
        retired: RefCell::new(Vec::new()),
        yields: AtomicU64::new(0),
        unwind_cache: UnsafeCell::new(Box::new(crate::safepoint::UnwindCache::new())),
        _altstack: AltStack::ensure(),
    }));
    if settings.preemption {
        match ThreadTimer::new(settings.signal, boxed.cast::<c_void>()) {
            // SAFETY: `boxed` is live and not yet shared with anyone.
            Ok(timer) => unsafe { (*boxed).timer = Some(timer) },
            Err(error) => {
                // SAFETY: not shared yet; freeing what we just allocated.
                drop(unsafe { Box::from_raw(boxed) });
                return Err(error);
            }
        }
    }
    let owned = OWNER
        .try_with(|owner| owner.set(RuntimeOwner(boxed)).is_ok())
        .unwrap_or(false);
    if !owned {
        // The thread is exiting (its TLS is being torn down): refuse rather than leak a timer.
        // SAFETY: not shared yet.
        drop(unsafe { Box::from_raw(boxed) });
        return Err(Error::System {
            call: "thread-local runtime (thread is exiting)",
            errno: 0,
        });
    }
    RUNTIME.with(|cell| cell.set(boxed));
    // SAFETY: just published; lives until thread exit.
    let rt = unsafe { &*boxed };
    preempt::remember_runtime(rt);
    Ok(rt)
}

/// Runs `lpf` (fresh or paused) for `budget`, on the calling context's behalf.
///
/// # Safety
/// `lpf` must point to a live control block in state READY or PAUSED whose stack stays
/// mapped until it finishes or is discarded, and whose closure may run on this thread.
pub(crate) unsafe fn resume(lpf: *mut Lpf, budget: Duration) -> Result<Outcome, Error> {
    let rt = runtime()?;
    // SAFETY: per the contract `lpf` is live; all access is on this thread.
    let this = unsafe { &*lpf };
    match this.state.load(Relaxed) {
        state::READY | state::PAUSED => {}
        state::RUNNING => return Err(Error::AlreadyRunning),
        _ => return Err(Error::Finished),
    }
    let parent = rt.current.load(Relaxed);
    // SAFETY: a non-null `current` is the live LPF we are running in.
    let parent_ref = unsafe { parent.as_ref() };
    if let Some(parent) = parent_ref {
        if parent.in_handler.load(Relaxed) {
            return Err(Error::InSignalHandler);
        }
        // Rule 3: no pausing the resumer half-way through this function.
        parent.hold_nopreempt();
    }
    let leaf = this.leaf.get();
    if !core::ptr::eq(this.runtime.load(Relaxed), rt)
        && let Err(error) = migrate(rt, leaf, lpf)
    {
        if let Some(parent) = parent_ref {
            release_nopreempt(parent);
        }
        return Err(error);
    }
    let preemptible = rt.timer.is_some();
    let deadline = if preemptible && budget != Duration::MAX {
        deadline_after(budget)
    } else {
        NEVER
    };
    this.parent.store(parent, Relaxed);
    this.deadline.store(deadline, Relaxed);
    this.yielded.set(false);
    this.leaf.set(lpf);
    this.state.store(state::RUNNING, Relaxed);
    // SAFETY: the leaf is live (it is this LPF or a nested one suspended on its stacks).
    let leaf_ref = unsafe { &*leaf };
    leaf_ref.pending.store(false, Relaxed);
    leaf_ref.retries.set(0);
    rt.current.store(leaf, Relaxed);
    // Armed only after `current` names the leaf, so an early expiry is never lost. If the
    // resumer is itself overdue (its deadline passed and a retry is booked), arming for the
    // chain's deadline would fire at once, inside this very launch, and cancel the retry
    // that would have found a safe point: arm only for the leaf's own deadline then.
    let overdue_parent = parent_ref.is_some_and(|parent| parent.retries.get() > 0);
    rt.arm(if overdue_parent {
        leaf_ref.deadline.load(Relaxed)
    } else {
        effective_deadline(leaf)
    });
    let own_tls = rt.resumer_tls(parent);
    let shared_errno = if own_tls != 0 {
        Glibc::propagate_multiple_threads(own_tls, leaf_ref.tls);
        None
    } else {
        // Shared TLS: errno is the one thread-local every C call touches, so it is swapped.
        set_current(leaf);
        let ours = errno();
        set_errno(leaf_ref.errno.get());
        Some(ours)
    };
    rt.install_tls(leaf_ref.tls);
    // SAFETY: `leaf.saved_sp` was saved by `switch` when the leaf was suspended (or prepared
    // for a fresh LPF), and nothing has continued it since: its state was READY or PAUSED.
    unsafe { arch::switch(this.caller_sp.get(), *leaf_ref.saved_sp.get()) };
    // Back on our stack: the LPF set `current` to `parent` and reinstalled our TLS block.
    if let Some(ours) = shared_errno {
        if this.state.load(Relaxed) == state::PAUSED {
            // SAFETY: a paused LPF's leaf is live (suspended on its chain).
            unsafe { (*this.leaf.get()).errno.set(errno()) };
        }
        set_errno(ours);
    }
    let outcome = match this.state.load(Relaxed) {
        state::PAUSED => Outcome::Paused,
        _ => Outcome::Finished,
    };
    if let Some(parent) = parent_ref {
        release_nopreempt(parent);
    }
    Ok(outcome)
}

/// Moves a paused chain (from `leaf` up to `outer`) to the calling thread.
fn migrate(rt: &Runtime, leaf: *mut Lpf, outer: *mut Lpf) -> Result<(), Error> {
    let Some(glibc) = rt.glibc else {
        return Err(Error::WrongThread);
    };
    let mut at = leaf;
    // SAFETY: the suspended chain from the leaf up to `outer` is live.
    while let Some(node) = unsafe { at.as_ref() } {
        node.runtime
            .store(rt as *const Runtime as *mut Runtime, Relaxed);
        glibc.set_tid(node.tls, rt.tid);
        if at == outer {
            break;
        }
        at = node.parent.load(Relaxed);
    }
    Ok(())
}

/// Asks every function of the paused chain from `lpf`'s leaf up to `lpf` to unwind at its next
/// checkpoint.
pub(crate) fn request_cancel(lpf: &Lpf) {
    let this = lpf as *const Lpf as *mut Lpf;
    let mut at = lpf.leaf.get();
    // SAFETY: the suspended chain from the leaf up to `lpf` is live.
    while let Some(node) = unsafe { at.as_ref() } {
        node.cancel_requested.store(true, Relaxed);
        if at == this {
            break;
        }
        at = node.parent.load(Relaxed);
    }
}

/// Defers preemption of the running function (if any) around runtime bookkeeping, without
/// the cancellation checkpoint of the public `NoPreempt` guard.
pub(crate) struct RuntimeSection(*mut Lpf);

impl RuntimeSection {
    /// Enters the section.
    pub(crate) fn enter() -> Self {
        let lpf = current_lpf();
        // SAFETY: a non-null current LPF is the running one: us.
        if let Some(this) = unsafe { lpf.as_ref() } {
            this.hold_nopreempt();
        }
        RuntimeSection(lpf)
    }
}

impl Drop for RuntimeSection {
    fn drop(&mut self) {
        // SAFETY: the section never outlives the function it was entered in.
        if let Some(this) = unsafe { self.0.as_ref() } {
            release_nopreempt(this);
        }
    }
}

/// The earliest deadline along the chain from `lpf` to the root.
pub(crate) fn effective_deadline(lpf: *mut Lpf) -> u64 {
    let mut earliest = NEVER;
    let mut at = lpf;
    // SAFETY: every LPF on the running chain is live while it runs or waits in `resume`.
    while let Some(node) = unsafe { at.as_ref() } {
        earliest = earliest.min(node.deadline.load(Relaxed));
        at = node.parent.load(Relaxed);
    }
    earliest
}

/// The outermost LPF on the chain from `lpf` whose deadline is at or before `now`.
pub(crate) fn outermost_expired(lpf: *mut Lpf, now: u64) -> *mut Lpf {
    let mut expired = null_mut();
    let mut at = lpf;
    // SAFETY: as in `effective_deadline`.
    while let Some(node) = unsafe { at.as_ref() } {
        if node.deadline.load(Relaxed) <= now {
            expired = at;
        }
        at = node.parent.load(Relaxed);
    }
    expired
}

/// Suspends the running `leaf` and returns control to the resumer of `outer` (the leaf
/// itself or an LPF enclosing it), leaving `outer` in `new_state`. Returns when resumed.
///
/// # Safety
/// Runs on `leaf`'s stack, with `leaf` the innermost running LPF of `rt`, `outer` on its
/// chain, and the caller already holding one unit of `leaf.nopreempt` (rule 1).
pub(crate) unsafe fn leave(
    rt: &Runtime,
    leaf: *mut Lpf,
    outer: *mut Lpf,
    new_state: u8,
    yielded: bool,
) {
    // SAFETY: per the contract both are live.
    let (leaf_ref, outer_ref) = unsafe { (&*leaf, &*outer) };
    debug_assert!(leaf_ref.nopreempt.load(Relaxed) > 0);
    outer_ref.leaf.set(leaf);
    outer_ref.yielded.set(yielded);
    outer_ref.state.store(new_state, Relaxed);
    let resumer = outer_ref.parent.load(Relaxed);
    rt.current.store(resumer, Relaxed);
    let resumer_tls = rt.resumer_tls(resumer);
    if resumer_tls != 0 {
        Glibc::propagate_multiple_threads(leaf_ref.tls, resumer_tls);
    } else {
        set_current(resumer);
    }
    rt.install_tls(resumer_tls);
    // SAFETY: `outer.caller_sp` was saved by the `switch` in `resume`, whose context waits
    // for exactly this.
    unsafe { arch::switch(leaf_ref.saved_sp.get(), *outer_ref.caller_sp.get()) };
}

/// Releases one unit of `lpf`'s counter; at zero, acts on a pending preemption.
/// Runs on `lpf`'s stack, with `lpf` running.
#[inline]
pub(crate) fn release_nopreempt(lpf: &Lpf) {
    compiler_fence(SeqCst);
    let held = lpf.nopreempt.load(Relaxed);
    lpf.nopreempt.store(held - 1, Relaxed);
    // The pending flag is read after the store: an expiry between the two sees a non-zero
    // count and sets the flag, which is then seen here.
    compiler_fence(SeqCst);
    if held == 1 && lpf.pending.load(Relaxed) {
        preempt::pending_preemption(lpf as *const Lpf as *mut Lpf);
    }
}

/// First code on a fresh LPF's stack.
///
/// # Safety
/// Entered only through the trampoline with the LPF's control block as `arg`.
unsafe extern "C" fn lpf_entry(arg: *mut c_void) -> ! {
    let lpf = arg.cast::<Lpf>();
    // SAFETY: `lpf` is the live control block at the top of this very stack.
    let this = unsafe { &*lpf };
    if this.tls != 0 {
        // Our own block is installed: point its CURRENT at us, reset errno and the locale.
        set_current(lpf);
        tls::enter_block();
    }
    release_nopreempt(this);
    // SAFETY: `run` is the monomorphised runner matching the closure stored in the slot.
    let panicked = unsafe { (this.run)(lpf) };

    if this.tls != 0 {
        // Like a thread exit: destructors of the function's thread-locals run in its context.
        // SAFETY: a non-null runtime pointer is live while we run on its thread.
        if let Some(glibc) = unsafe { this.runtime.load(Relaxed).as_ref() }.and_then(|rt| rt.glibc)
        {
            glibc.run_tls_destructors();
        }
    }
    finish(lpf, panicked)
}

/// Leaves a finished LPF for good; its stack may be reused once the resumer sees the state.
/// The state says so only from here, with preemption deferred: a timer expiry on the way
/// out must not turn the finished function back into a paused one.
fn finish(lpf: *mut Lpf, panicked: bool) -> ! {
    // SAFETY: `lpf` is the running leaf, on its own stack.
    let this = unsafe { &*lpf };
    this.hold_nopreempt();
    let final_state = if panicked {
        state::PANICKED
    } else {
        state::COMPLETED
    };

    // SAFETY: the runtime of the thread running us outlives the run.
    let rt = unsafe { this.runtime.load(Relaxed).as_ref() }
        .unwrap_or_else(|| abort_with(b"inger: runtime vanished under a running function\n"));
    // SAFETY: we hold a unit of our counter; `lpf` is the innermost running LPF.
    unsafe { leave(rt, lpf, lpf, final_state, false) };
    abort_with(b"inger: a finished preemptible function was resumed\n")
}

/// Writes `message` to stderr and aborts. Async-signal-safe.
pub(crate) fn abort_with(message: &[u8]) -> ! {
    crate::sys::signal::write_stderr(&[message]);
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}
