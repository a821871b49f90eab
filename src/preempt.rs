//! Preemption: the timer signal, its handler, safe points and deferral.
//!
//! # How a running function is paused
//!
//! Each thread that launches functions owns one POSIX timer (`CLOCK_MONOTONIC`,
//! `SIGEV_THREAD_ID`) that sends one real-time signal to that thread alone, carrying a pointer
//! to the thread's runtime in `si_value`. The handler runs on the interrupted function's own
//! stack (no `SA_ONSTACK`), above the kernel's signal frame, which holds every register the
//! function had, including flags and the whole XSAVE area. To pause, the handler simply
//! switches from inside itself back to the resumer, leaving that frame suspended on the
//! function's stack. Resuming switches back into the handler, which returns; `sigreturn` then
//! restores everything. No register is copied by us, and cooperative pauses pay only the
//! callee-saved switch (no signal, no system call).
//!
//! The timer is armed lazily: a resume arms it only if it is not already set to fire at or
//! before the new deadline, and nothing disarms it. An expiry that finds nothing to do either
//! re-arms for the deadline now in force or returns. In steady state launch and resume make
//! no system call.
//!
//! # The signal and its flags
//!
//! The signal is chosen by these criteria: it must be a real-time signal (queued, never sent by
//! the kernel for faults or job control, and none of glibc's internal ones, which sit below
//! `SIGRTMIN`); it should stay clear of both ends of the range, which applications and other
//! runtimes pick first. The default is `SIGRTMAX-4`; `INGER_SIGNAL` overrides it. If the signal
//! already has someone else's handler, start-up fails with [`Error::SignalInUse`] instead of
//! stealing it. `SA_NODEFER` is used because the handler may leave by a switch, which would
//! leave the signal blocked for the resumer; a per-function `in_handler` flag prevents the
//! handler's own tail from being preempted after a resume (frames would pile up).
//!
//! # Safe points (first level)
//!
//! Preempting arbitrary instructions is only safe where nothing non-reentrant is
//! half-updated. The handler therefore pauses a function only if (a) its `nopreempt` counter
//! is zero (runtime bookkeeping and user critical sections, see [`nopreempt`]), and (b) the
//! interrupted instruction is not in the dynamic loader, libc, libgcc_s or libstdc++ (the
//! [module table](crate::sys::modules)). Otherwise the preemption is deferred: for (a) it fires
//! when the counter drops to zero; for (b) the timer is re-armed a short interval later,
//! doubling up to 1 ms. (A whole-stack rule, which also looks at frames deeper in the stack,
//! is the next layer of this design; see DESIGN.md §3.)
//!
//! # Rejected alternatives
//!
//! - A private copy of every shared library per function (libgotcha, the original's way):
//!   it needs a custom-built glibc to exceed 15 functions and costs a namespace per function.
//! - Asynchronous unwinding to cancel at the interrupted instruction: unwinding from an
//!   instruction that is not a call site aborts in Rust's personality routine and breaks the
//!   invariants of unsafe code. Cancellation discards the stack instead.
//! - Saving registers by hand in the handler: the kernel's frame already has all of them.
//! - `sigprocmask` to unblock the signal after switching out: a system call on every
//!   preemption; `SA_NODEFER` plus the flag costs nothing.

use core::ffi::c_void;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use crate::config::settings;
use crate::error::Error;
use crate::runtime::{
    self, Lpf, NEVER, Runtime, abort_with, effective_deadline, leave, outermost_expired,
    release_nopreempt, state,
};
use crate::sys::clock::now_ns;
use crate::sys::modules;
use crate::sys::signal;

/// Longest retry interval after repeated deferrals, in nanoseconds.
const MAX_RETRY_NS: u64 = 1_000_000;

static HANDLERS: OnceLock<Result<(), Error>> = OnceLock::new();

/// Installs the preemption and fault handlers once per process, and builds the module table
/// beforehand (the handler never builds it).
pub(crate) fn install_process_handlers() -> Result<(), Error> {
    HANDLERS
        .get_or_init(|| {
            let settings = settings()?;
            modules::table();
            signal::install_fault_handler(on_fault)?;
            if settings.preemption {
                signal::install_preemption_handler(settings.signal, on_timer)?;
            }
            Ok(())
        })
        .clone()
}

/// Whether inger's handler still owns the preemption signal.
pub(crate) fn handler_intact() -> bool {
    settings().is_ok_and(|s| !s.preemption || signal::handler_is_installed(s.signal, on_timer))
}

/// The preemption signal handler. Async-signal-safe: no allocation, no locks; errno is saved
/// and restored.
unsafe extern "C" fn on_timer(_signal: i32, info: *mut libc::siginfo_t, ucontext: *mut c_void) {
    // SAFETY: `info` is the kernel's siginfo for this delivery.
    if unsafe { signal::si_code(info) } != libc::SI_TIMER {
        return; // sent by kill/sigqueue, not our timer: ignore
    }
    // SAFETY: for SI_TIMER the value is the runtime pointer we gave timer_create; the
    // runtime outlives its timer.
    let rt = unsafe { signal::timer_value(info) }.cast::<Runtime>();
    // SAFETY: see above; null only if someone else's timer uses our signal.
    let Some(rt) = (unsafe { rt.as_ref() }) else {
        return;
    };
    let saved_errno = signal::errno();
    rt.armed.store(NEVER, Relaxed);
    // SAFETY: `ucontext` is the kernel's, valid while the handler runs.
    unsafe { on_expiry(rt, ucontext) };
    signal::set_errno(saved_errno);
}

/// The decision: nothing to do, re-arm, defer, or pause.
///
/// # Safety
/// Called from the signal handler on the thread owning `rt`, with the kernel's `ucontext`.
unsafe fn on_expiry(rt: &Runtime, ucontext: *mut c_void) {
    let leaf = rt.current.load(Relaxed);
    // SAFETY: a non-null `current` is the live running LPF of this thread.
    let Some(leaf_ref) = (unsafe { leaf.as_ref() }) else {
        return;
    };
    let now = now_ns();
    if leaf_ref.in_handler.load(Relaxed) {
        // The handler's own tail, after a resume: never pause here; look again shortly.
        rt.arm_retry(now, rt.retry_ns);
        return;
    }
    leaf_ref.in_handler.store(true, Relaxed);
    let expired = outermost_expired(leaf, now);
    if expired.is_null() {
        let deadline = effective_deadline(leaf);
        if deadline != NEVER {
            rt.arm(deadline);
        }
    } else if leaf_ref.nopreempt.load(Relaxed) > 0 {
        // Inside runtime bookkeeping or a user critical section: the section end acts on it.
        leaf_ref.pending.store(true, Relaxed);
        STATS.deferred_nopreempt.fetch_add(1, Relaxed);
    // SAFETY: `ucontext` is the running handler's (our contract).
    } else if unsafe { !on_own_stack(leaf_ref, ucontext) || in_unsafe_module(ucontext) } {
        let retries = leaf_ref.retries.get();
        leaf_ref.retries.set(retries.saturating_add(1));
        let delay = (rt.retry_ns << retries.min(16)).min(MAX_RETRY_NS);
        rt.arm_retry(now, delay);
        STATS.deferred_library.fetch_add(1, Relaxed);
        STATS.retries.fetch_add(1, Relaxed);
    } else {
        // SAFETY: `expired` is on the running chain, so live.
        let overshoot = now.saturating_sub(unsafe { (*expired).deadline.load(Relaxed) });
        STATS.longest_deferral_ns.fetch_max(overshoot, Relaxed);
        STATS.preemptions.fetch_add(1, Relaxed);
        leaf_ref.retries.set(0);
        leaf_ref.hold_nopreempt();
        // SAFETY: we run on the leaf's stack (checked above) and hold a unit of its counter.
        unsafe { leave(rt, leaf, expired, state::PAUSED, false) };
        // Resumed: the resumer re-armed the timer for the new deadline. If that happened on
        // another thread, sigreturn must install that thread's mask and alternate stack, not
        // the ones saved in our frame.
        if !core::ptr::eq(leaf_ref.runtime.load(Relaxed), rt) {
            // SAFETY: our own handler frame's ucontext, on the thread now running us.
            unsafe { crate::arch::adopt_thread_signal_state(ucontext) };
        }
        leaf_ref
            .nopreempt
            .store(leaf_ref.nopreempt.load(Relaxed) - 1, Relaxed);
    }
    leaf_ref.in_handler.store(false, Relaxed);
}

/// Whether the interrupted stack pointer lies on the LPF's own stack.
///
/// # Safety
/// `ucontext` must be the running handler's.
unsafe fn on_own_stack(lpf: &Lpf, ucontext: *mut c_void) -> bool {
    // SAFETY: per the contract.
    let sp = unsafe { crate::arch::interrupted_sp(ucontext) };
    sp > lpf.stack_low && sp <= lpf.stack_high
}

/// Whether the interrupted instruction lies in a non-preemptible module.
///
/// # Safety
/// `ucontext` must be the running handler's.
unsafe fn in_unsafe_module(ucontext: *mut c_void) -> bool {
    // SAFETY: per the contract.
    let ip = unsafe { crate::arch::interrupted_ip(ucontext) };
    modules::table_if_built().is_none_or(|table| table.is_non_preemptible(ip))
}

/// A deadline passed while `lpf` could not be paused, and now it can: pause it if a deadline
/// on its chain has really passed, else make sure the timer is armed. Runs on `lpf`'s stack.
pub(crate) fn pending_preemption(lpf: *mut Lpf) {
    // SAFETY: `lpf` is the running LPF calling us.
    let this = unsafe { &*lpf };
    this.pending.store(false, Relaxed);
    // SAFETY: the runtime of the thread running us outlives the run.
    let Some(rt) = (unsafe { this.runtime.load(Relaxed).as_ref() }) else {
        return;
    };
    if rt.current.load(Relaxed) != lpf {
        return;
    }
    let now = now_ns();
    let expired = outermost_expired(lpf, now);
    if expired.is_null() {
        rt.arm(effective_deadline(lpf));
        return;
    }
    // SAFETY: `expired` is on the running chain.
    let overshoot = now.saturating_sub(unsafe { (*expired).deadline.load(Relaxed) });
    STATS.longest_deferral_ns.fetch_max(overshoot, Relaxed);
    STATS.preemptions.fetch_add(1, Relaxed);
    this.hold_nopreempt();
    // SAFETY: on our own stack, holding a unit of the counter.
    unsafe { leave(rt, lpf, expired, state::PAUSED, false) };
    release_nopreempt(this);
}

/// Returns control to whoever launched or resumed the calling preemptible function, at once.
/// The [`Linger`](crate::Linger) they get reports [`yielded`](crate::Linger::yielded).
/// Outside a preemptible function, does nothing.
///
/// ```
/// let mut steps = 0;
/// let mut linger = inger::launch(|| { steps += 1; inger::pause(); steps += 1; }, std::time::Duration::MAX)?;
/// assert!(linger.yielded());
/// inger::resume(&mut linger, std::time::Duration::MAX)?;
/// assert!(linger.is_completion());
/// drop(linger);
/// assert_eq!(steps, 2);
/// # Ok::<(), inger::Error>(())
/// ```
pub fn pause() {
    let lpf = runtime::current_lpf();
    // SAFETY: a non-null current LPF is the running one: us.
    let Some(this) = (unsafe { lpf.as_ref() }) else {
        return;
    };
    // SAFETY: the runtime of the thread running us outlives the run.
    let Some(rt) = (unsafe { this.runtime.load(Relaxed).as_ref() }) else {
        return;
    };
    this.hold_nopreempt();
    rt.yields.store(rt.yields.load(Relaxed) + 1, Relaxed);
    // SAFETY: on our own stack, holding a unit of the counter (rule 1).
    unsafe { leave(rt, lpf, lpf, state::PAUSED, true) };
    release_nopreempt(this);
}

/// Whether the caller runs inside a preemptible function (on this thread's innermost one).
pub fn in_preemptible() -> bool {
    !runtime::current_lpf().is_null()
}

/// Runs `f` with preemption deferred: if the budget expires meanwhile, the function is paused
/// as soon as `f` returns. Use it around code that must not be paused half-way, such as a
/// critical section shared with the caller. Costs a few instructions; outside a preemptible
/// function it just calls `f`.
///
/// ```
/// let total = inger::nopreempt(|| 2 + 2);
/// assert_eq!(total, 4);
/// ```
pub fn nopreempt<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoPreempt::new();
    f()
}

/// Guard form of [`nopreempt`]: preemption of the current function is deferred while it lives.
///
/// The guard applies to the function that is running when it is dropped; create and drop it
/// in the same function (it is `!Send`, and moving it elsewhere only mis-attributes the count).
///
/// ```
/// {
///     let _guard = inger::NoPreempt::new();
///     // ... not paused in here ...
/// }
/// ```
#[must_use = "preemption is deferred only while the guard lives"]
pub struct NoPreempt {
    _not_send: core::marker::PhantomData<*mut ()>,
}

impl NoPreempt {
    /// Defers preemption of the running function until the guard is dropped.
    #[inline]
    pub fn new() -> Self {
        let lpf = runtime::current_lpf();
        // SAFETY: a non-null current LPF is the running one: us.
        if let Some(this) = unsafe { lpf.as_ref() } {
            this.hold_nopreempt();
        }
        NoPreempt {
            _not_send: core::marker::PhantomData,
        }
    }
}

impl Default for NoPreempt {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NoPreempt {
    #[inline]
    fn drop(&mut self) {
        let lpf = runtime::current_lpf();
        // SAFETY: a non-null current LPF is the running one: us.
        if let Some(this) = unsafe { lpf.as_ref() }
            && this.nopreempt.load(Relaxed) > 0
        {
            release_nopreempt(this);
        }
    }
}

/// Runtimes of live threads, for summing their per-thread counters.
static RUNTIMES: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

/// Registers a new thread's runtime (outside any handler).
pub(crate) fn remember_runtime(rt: &Runtime) {
    let mut runtimes = RUNTIMES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    runtimes.push(rt as *const Runtime as usize);
}

/// Unregisters a runtime at thread exit, folding its counters into the process totals.
pub(crate) fn forget_runtime(rt: &Runtime) {
    let mut runtimes = RUNTIMES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    runtimes.retain(|&other| other != rt as *const Runtime as usize);
    STATS.yields.fetch_add(rt.yields.load(Relaxed), Relaxed);
}

fn live_yields() -> u64 {
    let runtimes = RUNTIMES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    runtimes
        .iter()
        // SAFETY: registered runtimes are live until `forget_runtime` removes them, which
        // takes this lock first.
        .map(|&rt| unsafe { &*(rt as *const Runtime) }.yields.load(Relaxed))
        .sum()
}

/// Process-wide counters of what the preemption machinery did.
struct Counters {
    preemptions: AtomicU64,
    yields: AtomicU64,
    deferred_nopreempt: AtomicU64,
    deferred_library: AtomicU64,
    retries: AtomicU64,
    longest_deferral_ns: AtomicU64,
}

static STATS: Counters = Counters {
    preemptions: AtomicU64::new(0),
    yields: AtomicU64::new(0),
    deferred_nopreempt: AtomicU64::new(0),
    deferred_library: AtomicU64::new(0),
    retries: AtomicU64::new(0),
    longest_deferral_ns: AtomicU64::new(0),
};

/// A snapshot of the process-wide preemption counters (see [`stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Functions paused because a deadline passed.
    pub preemptions: u64,
    /// Cooperative pauses ([`pause`]).
    pub yields: u64,
    /// Expiries deferred because the function was in a `nopreempt` section or runtime code.
    pub deferred_nopreempt: u64,
    /// Expiries deferred because the function was inside a non-preemptible library.
    pub deferred_library: u64,
    /// Timer re-arms after a deferral.
    pub retries: u64,
    /// Longest time from a deadline to the pause it caused, in nanoseconds.
    pub longest_deferral_ns: u64,
}

/// Reads the process-wide preemption counters.
///
/// ```
/// let before = inger::stats();
/// inger::launch(|| inger::pause(), std::time::Duration::MAX)?;
/// assert!(inger::stats().yields > before.yields);
/// # Ok::<(), inger::Error>(())
/// ```
pub fn stats() -> Stats {
    Stats {
        preemptions: STATS.preemptions.load(Relaxed),
        yields: STATS.yields.load(Relaxed) + live_yields(),
        deferred_nopreempt: STATS.deferred_nopreempt.load(Relaxed),
        deferred_library: STATS.deferred_library.load(Relaxed),
        retries: STATS.retries.load(Relaxed),
        longest_deferral_ns: STATS.longest_deferral_ns.load(Relaxed),
    }
}

/// SIGSEGV/SIGBUS handler: reports a stack overflow in a preemptible function, chains
/// everything else. Runs on the alternate signal stack; async-signal-safe.
unsafe extern "C" fn on_fault(signal: i32, info: *mut libc::siginfo_t, ucontext: *mut c_void) {
    // SAFETY: `info` is the kernel's siginfo for this fault.
    let address = unsafe { signal::fault_address(info) };
    let mut at = runtime::current_lpf();
    // SAFETY: the running chain is live.
    while let Some(lpf) = unsafe { at.as_ref() } {
        let guard_low = lpf.stack_low.saturating_sub(crate::stack::GUARD_SIZE);
        if address < lpf.stack_low && address >= guard_low {
            let mut digits = [0u8; 20];
            let size = signal::decimal((lpf.stack_high - lpf.stack_low) as u64, &mut digits);
            signal::write_stderr(&[
                b"inger: stack overflow in a preemptible function (its stack is ",
                size,
                b" bytes); raise INGER_STACK_SIZE or inger::Config::stack_size\n",
            ]);
            abort_with(b"");
        }
        at = lpf.parent.load(Relaxed);
    }
    // SAFETY: forwarding our own arguments from inside the fault handler.
    unsafe { signal::chain_fault(signal, info, ucontext) };
}
