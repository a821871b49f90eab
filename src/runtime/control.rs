//! The state the switch and the handler work on: the control block of one preemptible
//! function ([`Lpf`]) and its states, the chain of nested functions, the per-thread
//! [`Runtime`], and the one accessor for the function running on this thread (budgets and
//! the timers that watch them: `deadlines`).
//!
//! Context: any. Fields are touched only by code on the thread running the function (its
//! own code, its resumer's, or the signal handler interrupting either); the ones the handler
//! reads or writes are atomics used with `Relaxed` ordering, which only stop the compiler from
//! caching or tearing them (the handler and the code it interrupts run on the same thread).
//! A paused function moves to another thread only with its continuation, whose hand-over
//! (a channel, a mutex) orders everything before it.

use core::cell::{Cell, RefCell, UnsafeCell};
use core::marker::PhantomData;
use core::ptr::{self, null_mut};
use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64,
    Ordering::{Relaxed, SeqCst},
    compiler_fence,
};
use std::cell::Cell as StdCell;

use crate::arch;
use crate::error::Error;
use crate::safepoint::StackToWalk;
use crate::safepoint::UnwindCache;
use crate::stack::{self, Stack, StackPool};
use crate::stats::ThreadCounters;
use crate::sys::signal::AltStack;
use crate::sys::timer::ThreadTimer;

use super::timers::Slot;
use crate::sys::tls::Glibc;

/// No deadline: the timer is not armed / the function may run forever.
pub(crate) const NEVER: u64 = u64::MAX;

/// Entries in each thread's table of cancellation hints (`Runtime::cancel_hints`).
pub(super) const CANCEL_HINTS: usize = 64;

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

/// Cancellation requests (see [`Lpf::cancel`]).
pub(crate) mod cancel {
    /// Nothing was asked.
    pub(crate) const NONE: u8 = 0;
    /// This function is being cancelled: its next cancellation point unwinds its stack.
    pub(crate) const UNWIND: u8 = 1;
    /// A function enclosing this one (which it resumed) is being cancelled: its next
    /// cancellation point pauses it, so that control returns to the enclosing function.
    pub(crate) const YIELD: u8 = 2;
}

/// The control block of one LPF. It lives at the top of the LPF's own stack, so launching
/// allocates nothing.
#[repr(C)]
pub(crate) struct Lpf {
    /// Where the resumer was suspended; switching there returns control to it.
    pub(super) caller_sp: UnsafeCell<*mut u8>,
    /// Where this LPF was suspended (meaningful while it is suspended as a leaf).
    pub(super) saved_sp: UnsafeCell<*mut u8>,
    /// The context to continue when this LPF is resumed: itself, or a nested LPF if the
    /// whole chain was paused at its deadline.
    pub(super) leaf: Cell<*mut Lpf>,
    /// The LPF that resumed this one, or null when the root context did.
    pub(crate) parent: AtomicPtr<Lpf>,
    /// Absolute monotonic deadline in nanoseconds, or [`NEVER`]. With a CPU budget, the
    /// earliest time the budget could run out (the thread's CPU time cannot advance faster
    /// than the wall clock), or [`NEVER`] while the thread's CPU timer watches it instead.
    pub(crate) deadline: AtomicU64,
    /// With a CPU budget: the thread's CPU time (ns) at which it runs out; [`NEVER`] for a
    /// wall-clock budget. Meaningful while the LPF runs (see `cpu_left` while it is paused).
    pub(crate) cpu_deadline: AtomicU64,
    /// With a CPU budget, while paused inside a paused chain: the CPU time it had left, which
    /// the resume of the chain (perhaps on another thread, with another CPU clock) restores.
    pub(super) cpu_left: Cell<u64>,
    /// With a CPU budget: the wall and CPU time of the last look at the CPU clock, to tell a
    /// function that computes from one that waits.
    pub(super) cpu_mark: Cell<(u64, u64)>,
    /// With a CPU budget: the thread's CPU timer watches it (the function was waiting).
    pub(super) cpu_waiting: Cell<bool>,
    /// With a CPU budget: a wall-clock time past which the budget counts as used up whatever
    /// the CPU clock says ([`NEVER`]: none), so that a cancellation's grace cannot wait for
    /// ever on a function that blocks.
    pub(super) wall_cap: Cell<u64>,
    /// Preemption is deferred while non-zero (see the module docs of `runtime`).
    pub(crate) nopreempt: AtomicU32,
    /// A deadline passed while `nopreempt` was non-zero.
    pub(crate) pending: AtomicBool,
    /// The preemption handler (or a walk of this stack from its own code) is running on this
    /// LPF's stack: the handler must not re-enter.
    pub(crate) in_handler: AtomicBool,
    /// An expiry arrived while `in_handler` was set: whoever clears the flag re-arms the timer
    /// (see `preempt::end_handler_section`).
    pub(crate) missed_expiry: AtomicBool,
    /// What a cancellation asked of this LPF (one of [`cancel`]): its next cancellation
    /// point unwinds, or yields to an enclosing function that is being cancelled.
    pub(crate) cancel: AtomicU8,
    /// One of [`state`].
    pub(crate) state: AtomicU8,
    /// A redirect of a critical section's return was armed on this stack and not reached
    /// yet: when a later check finds no redirect pending, the frame was left another way (a
    /// `longjmp`, a panic) and the next deferral retries instead of redirecting again.
    pub(crate) redirect_armed: Cell<bool>,
    /// The function has passed a cancellation point (`checkpoint`, `pause`, the end of a
    /// `nopreempt` section, a nested resume): one that never did is not given a grace budget
    /// to unwind when it is cancelled, since it would only burn it.
    pub(crate) checks_cancellation: Cell<bool>,
    /// The last pause came from [`pause`](crate::pause), not the timer.
    pub(super) yielded: Cell<bool>,
    /// Consecutive retries while the deadline has passed (for back-off).
    pub(crate) retries: Cell<u32>,
    /// Since the last pause: a deferral found the function computing in non-preemptible code
    /// / waiting in a system call there (which counter the pause's delay goes to).
    pub(crate) deferred_working: Cell<bool>,
    pub(crate) deferred_waiting: Cell<bool>,
    /// Runs the closure and stores its outcome in the slot (monomorphised per closure).
    pub(super) run: unsafe fn(*mut Lpf) -> bool,
    /// Stores in the slot what catching a [`Cancelled`](crate::Cancelled) panic would
    /// (monomorphised per closure): for a cancellation that needs no unwinding (see `exit`).
    pub(super) cancelled: unsafe fn(*mut Lpf),
    /// An address inside the frame that calls the closure, set when it does (0 before): the
    /// frames below it are the ones a cancellation unwinds.
    pub(super) unwind_anchor: Cell<usize>,

    /// Bounds of the stack, for the handler's sanity checks and overflow reports.
    pub(crate) stack_low: usize,
    pub(crate) stack_high: usize,
    /// Where the runtime's entry frames begin (the top the first switch starts from): stack
    /// walks stop there.
    pub(super) walk_base: Cell<usize>,

    /// Thread pointer of the private TLS block, or 0 with shared TLS.
    pub(crate) tls: usize,
    /// The runtime of the thread that last resumed this LPF.
    pub(crate) runtime: AtomicPtr<Runtime>,
    /// With shared TLS: the function's errno while it is suspended.
    pub(super) errno: Cell<i32>,
    /// The libset copies this function holds and its route table (`crate::libset`'s
    /// per-function state, owned by it), or null: set at the function's first routed call or
    /// libset lookup, released when it finishes or is discarded.
    pub(crate) libset: Cell<*mut core::ffi::c_void>,
}

impl Lpf {
    /// A control block for a fresh function whose stack is `stack`. Context: caller.
    /// `run` and `cancelled` are the closure's monomorphised runner and cancellation writer
    /// (see the fields).
    ///
    /// Always inlined into `launch`, so that the block is written straight into its place on
    /// the stack (returned from a call, it went through a temporary and a `memcpy`).
    #[inline(always)]
    pub(crate) fn new(
        run: unsafe fn(*mut Lpf) -> bool,
        cancelled: unsafe fn(*mut Lpf),
        stack: &Stack,
        runtime: &Runtime,
    ) -> Lpf {
        Lpf {
            caller_sp: UnsafeCell::new(null_mut()),
            saved_sp: UnsafeCell::new(null_mut()),
            leaf: Cell::new(null_mut()),
            parent: AtomicPtr::new(null_mut()),
            deadline: AtomicU64::new(NEVER),
            cpu_deadline: AtomicU64::new(NEVER),
            cpu_left: Cell::new(0),
            cpu_mark: Cell::new((0, 0)),
            cpu_waiting: Cell::new(false),
            wall_cap: Cell::new(NEVER),
            // Rule 1: a suspended LPF holds one unit; the entry trampoline releases it.
            nopreempt: AtomicU32::new(1),
            pending: AtomicBool::new(false),
            in_handler: AtomicBool::new(false),
            missed_expiry: AtomicBool::new(false),
            cancel: AtomicU8::new(cancel::NONE),
            state: AtomicU8::new(state::READY),
            checks_cancellation: Cell::new(false),
            redirect_armed: Cell::new(false),
            yielded: Cell::new(false),
            retries: Cell::new(0),
            deferred_working: Cell::new(false),
            deferred_waiting: Cell::new(false),
            run,
            cancelled,
            unwind_anchor: Cell::new(0),
            stack_low: stack.base(),
            stack_high: stack.top() as usize,
            walk_base: Cell::new(stack.top() as usize),

            tls: stack.tls,
            runtime: AtomicPtr::new(runtime as *const Runtime as *mut Runtime),
            errno: Cell::new(0),
            libset: Cell::new(null_mut()),
        }
    }

    /// Records `anchor`, an address inside the frame that is about to call the closure (see
    /// `unwind_anchor`). Context: function stack.
    #[inline]
    pub(crate) fn set_unwind_anchor(&self, anchor: usize) {
        self.unwind_anchor.set(anchor);
    }

    /// The stack pointer saved by the `switch` with which this LPF's resumer handed control
    /// to it (it points into the resumer's stack).
    pub(super) fn caller_sp(&self) -> usize {
        // SAFETY: written by `switch` in `resume`; read on the same thread.
        unsafe { *self.caller_sp.get() as usize }
    }

    /// Whether `sp` lies on this LPF's own stack.
    pub(crate) fn owns_stack_pointer(&self, sp: usize) -> bool {
        sp > self.stack_low && sp <= self.stack_high
    }

    /// Raises the `nopreempt` counter. Only code on the thread running this LPF (its signal
    /// handler included) touches the counter, so a plain load and store suffice: the handler's
    /// own changes are balanced before it returns to the code it interrupted. (A locked
    /// read-modify-write would cost about 20 cycles on every pause and resume.)
    /// Context: function stack, its resumer, or the signal handler (async-signal-safe).
    #[inline]
    pub(crate) fn hold_nopreempt(&self) {
        let held = self.nopreempt.load(Relaxed);
        self.nopreempt.store(held + 1, Relaxed);
        compiler_fence(SeqCst);
    }

    /// The lowest stack pointer of this paused LPF's live frames on its own stack: its own
    /// suspension point, or where it waits for the nested LPF it resumed. Context: caller.
    pub(crate) fn live_stack_pointer(&self) -> usize {
        let mut child: Option<&Lpf> = None;
        for node in self.paused_chain() {
            if ptr::eq(node, self) {
                return match child {
                    // SAFETY: written by `switch` when this LPF resumed `child`.
                    Some(child) => child.caller_sp(),
                    // SAFETY: written by `switch` when this LPF was suspended.
                    None => (unsafe { *node.saved_sp.get() }) as usize,
                };
            }
            child = Some(node);
        }
        self.stack_low
    }

    /// Whether the last pause came from `pause()`.
    pub(crate) fn yielded(&self) -> bool {
        self.yielded.get()
    }

    /// The chain of this LPF and the LPFs it is nested in, innermost first. Context: any;
    /// async-signal-safe.
    pub(crate) fn chain(&self) -> Chain<'_> {
        Chain {
            at: self as *const Lpf as *mut Lpf,
            stop: null_mut(),
            _borrow: PhantomData,
        }
    }

    /// The suspended chain of this paused (or chain-paused) LPF: from its leaf up to and
    /// including itself. Context: any; async-signal-safe.
    pub(crate) fn paused_chain(&self) -> Chain<'_> {
        Chain {
            at: self.leaf.get(),
            stop: self as *const Lpf as *mut Lpf,
            _borrow: PhantomData,
        }
    }

    /// The stacks to walk, innermost first, to check whether the chain from this LPF (the
    /// running leaf, whose innermost frame has `registers`) up to `outer` may be paused.
    /// Context: signal handler or this LPF's own stack; async-signal-safe.
    pub(crate) fn stacks_to_walk<'a>(
        &'a self,
        outer: &'a Lpf,
        registers: arch::Registers,
    ) -> impl Iterator<Item = StackToWalk> + 'a {
        let mut next_registers = Some(registers);
        let mut chain = self.chain();
        let mut done = false;
        core::iter::from_fn(move || {
            if done {
                return None;
            }
            let node = chain.next()?;
            let registers = next_registers.take()?;
            done = ptr::eq(node, outer);
            if !done {
                // The parent, walked next, is suspended inside `switch` at the pointer it
                // saved when it resumed `node`.
                // SAFETY: that switch frame lies on the parent's live stack.
                next_registers = Some(unsafe { arch::suspended_registers(node.caller_sp()) });
            }
            Some(StackToWalk {
                registers,
                low: node.stack_low,
                high: node.stack_high,
                base: node.walk_base.get(),
            })
        })
    }
}

/// Per-thread runtime state, reachable from the handler through the timer's `si_value`.
pub(crate) struct Runtime {
    /// Innermost running LPF, or null when the root context runs.
    pub(crate) current: AtomicPtr<Lpf>,
    /// Deadline the timer is armed for, or [`NEVER`](super::control::NEVER).
    pub(crate) armed: AtomicU64,
    /// The thread's preemption timer; `None` when preemption is off.
    pub(crate) timer: Option<ThreadTimer>,
    /// The thread's CPU-clock timer, created at the first CPU budget (see
    /// [`Lpf::deadline_passed`]); readable once `cpu_timer_ready` is set.
    pub(super) cpu_timer: UnsafeCell<Option<ThreadTimer>>,
    pub(super) cpu_timer_ready: AtomicBool,
    /// The thread CPU time the CPU timer is armed for, or [`NEVER`].
    pub(crate) cpu_armed: AtomicU64,
    /// First retry interval (ns) after a deferred preemption.
    pub(crate) retry_ns: u64,
    /// glibc's TLS internals when functions get private TLS blocks.
    pub(crate) glibc: Option<&'static Glibc>,
    /// Write the fs base with `wrfsbase` (else `arch_prctl`).
    pub(super) fast_fs: bool,
    /// The thread's own thread pointer.
    pub(crate) thread_tp: usize,
    /// The kernel thread id.
    pub(crate) tid: i32,
    /// Free stacks (with their TLS blocks). Touched only by this thread, with preemption
    /// deferred; never by the signal handler.
    pub(super) pool: RefCell<StackPool>,
    /// The stack walker's rule cache; used only with the running LPF's `in_handler` flag set,
    /// or its `nopreempt` counter held (which makes the handler decide before any walk).
    pub(super) unwind_cache: UnsafeCell<Box<UnwindCache>>,
    /// Counters bumped on this thread's fast paths.
    pub(crate) counters: ThreadCounters,
    /// Which closure types this thread launches unchecked for cancellation (see `exit`).
    /// Touched only on the stacks of this thread's functions, never by the signal handler.
    pub(super) cancel_hints: [Cell<usize>; CANCEL_HINTS],
    /// Runtime bookkeeping of this thread is under way (a launch, a resume, a switch, pool
    /// work), in whichever context. A launch or resume that finds it set can only come from a
    /// signal handler that interrupted that bookkeeping, and is refused: see [`Busy`].
    pub(crate) busy: AtomicBool,
    /// Stacks of cancelled functions waiting to be guarded and discarded, with the lowest
    /// stack pointer of their live frames.
    pub(super) retired: RefCell<Vec<(Stack, usize)>>,
    pub(super) _altstack: Option<AltStack>,
    /// The thread's place in the table of timers (declared last: dropped after the timers
    /// are deleted, so no delivery can find this runtime once it is gone).
    pub(super) slot: Slot,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        crate::stats::unregister(&self.counters);
        stack::retire_all(self.retired.get_mut());
    }
}

impl Runtime {
    /// Marks runtime bookkeeping as under way until the guard drops.
    ///
    /// # Errors
    /// [`Error::InSignalHandler`] if it already is: the caller is a signal handler that
    /// interrupted inger's own code on this thread (ordinary code never nests bookkeeping).
    pub(crate) fn enter_busy(&self) -> Result<Busy<'_>, Error> {
        self.begin_busy()?;
        Ok(Busy(self))
    }

    /// Marks bookkeeping as under way, for a hand-over that the other side of a switch
    /// ends with [`end_busy`](Self::end_busy). Async-signal-safe.
    pub(crate) fn begin_busy(&self) -> Result<(), Error> {
        if self.busy.load(Relaxed) {
            return Err(Error::InSignalHandler);
        }
        self.busy.store(true, Relaxed);
        compiler_fence(SeqCst);
        Ok(())
    }

    /// Ends the bookkeeping begun on this thread (by this context or by the one that switched
    /// here). Async-signal-safe.
    pub(crate) fn end_busy(&self) {
        compiler_fence(SeqCst);
        self.busy.store(false, Relaxed);
    }

    /// The thread's unwind rule cache. Context: signal handler or function stack.
    ///
    /// # Safety
    /// The caller must be the running LPF's code (or its handler) with that LPF's
    /// `in_handler` flag set, or the running leaf's code holding a unit of its `nopreempt`
    /// counter, either of which keeps every other user away for the borrow's duration.
    #[allow(
        clippy::mut_from_ref,
        reason = "exclusive access is guaranteed by the in_handler flag"
    )]
    pub(crate) unsafe fn unwind_cache(&self) -> &mut UnwindCache {
        // SAFETY: per the contract.
        unsafe { &mut *self.unwind_cache.get() }
    }

    /// Installs `tp` as the fs base (no-op with shared TLS, where `tp` is 0).
    /// Context: the switch (either side), with preemption deferred; async-signal-safe.
    #[inline]
    pub(super) fn install_tls(&self, tp: usize) {
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

    /// Thread pointer of the context that resumed an LPF whose parent is `parent` (the
    /// parent LPF's block or the thread's own; 0 with shared TLS). Async-signal-safe.
    pub(super) fn resumer_tls(&self, parent: Option<&Lpf>) -> usize {
        if self.glibc.is_none() {
            return 0;
        }
        match parent {
            Some(parent) => parent.tls,
            None => self.thread_tp,
        }
    }
}

/// Runtime bookkeeping under way on a thread (see [`Runtime::busy`]); ends on drop.
pub(crate) struct Busy<'a>(&'a Runtime);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.end_busy();
    }
}

/// Iterates over a chain of nested LPFs, innermost first, following `parent` links.
///
/// Every LPF on a chain is live while the innermost one is: each is suspended inside the
/// `resume` of the next inner one (a running chain), or the whole chain is suspended below a
/// paused LPF that owns it. The borrow of the starting LPF bounds the items' lifetime.
pub(crate) struct Chain<'a> {
    at: *mut Lpf,
    /// The last LPF to yield (null: follow parents to the root).
    stop: *mut Lpf,
    _borrow: PhantomData<&'a Lpf>,
}

impl<'a> Iterator for Chain<'a> {
    type Item = &'a Lpf;

    fn next(&mut self) -> Option<&'a Lpf> {
        // SAFETY: every LPF on a chain is live while its start is (see the type's docs).
        let node = unsafe { self.at.as_ref() }?;
        self.at = if ptr::eq(node, self.stop) {
            null_mut()
        } else {
            node.parent.load(Relaxed)
        };
        Some(node)
    }
}

thread_local! {
    /// The LPF whose context is running, or null in the thread's own context. With private
    /// TLS each LPF's block holds its own pointer, written once at entry; with shared TLS it
    /// is rewritten at every switch.
    static CURRENT: StdCell<*mut Lpf> = const { StdCell::new(ptr::null_mut()) };
}

/// The control block of the LPF running this code, or null outside any. Context: any;
/// async-signal-safe (a constant-initialised thread-local without destructor).
#[inline]
pub(crate) fn current_lpf() -> *mut Lpf {
    CURRENT.try_with(StdCell::get).unwrap_or(ptr::null_mut())
}

/// Calls `f` with the LPF running this code, if any. This is the one place where code
/// reaches its own control block; the borrow cannot outlive `f`. Context: function stack (or
/// the handler interrupting it).
#[inline]
pub(crate) fn with_running<R>(f: impl FnOnce(&Lpf) -> R) -> Option<R> {
    // SAFETY: a non-null current LPF is the one running this code, whose control block
    // lives at the top of its own stack until it finishes, which cannot happen while this
    // code (on that stack) runs.
    unsafe { current_lpf().as_ref() }.map(f)
}

/// Records which LPF runs in the installed TLS block. Context: the switch, with preemption
/// deferred.
#[inline]
pub(super) fn set_current(lpf: *mut Lpf) {
    let _ = CURRENT.try_with(|cell| cell.set(lpf));
}
