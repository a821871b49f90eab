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
use crate::safepoint::{self, Reason};
use crate::sys::clock::now_ns;
use crate::sys::signal;

/// Retries back off by doubling, at most this many times (50 us grows to 200 us by default):
/// a function that spends most of its time in critical sections (printing in a loop, say)
/// is only pausable in the short windows between them, and a long interval would miss them;
/// a retry costs about 5 us of signal delivery and stack walk, so this stays under 3% of a
/// core even when a function is never pausable.
const MAX_BACKOFF_DOUBLINGS: u32 = 2;
/// Longest retry interval, whatever the configured first interval.
const MAX_RETRY_NS: u64 = 1_000_000;

static HANDLERS: OnceLock<Result<(), Error>> = OnceLock::new();

/// Installs the preemption and fault handlers once per process, and builds the module table
/// beforehand (the handler never builds it).
pub(crate) fn install_process_handlers() -> Result<(), Error> {
    HANDLERS
        .get_or_init(|| {
            let settings = settings()?;
            safepoint::tables::init();
            // SAFETY: the handlers are plain functions that only issue madvise calls.
            unsafe { libc::pthread_atfork(Some(before_fork), Some(after_fork_in_parent), None) };
            signal::install_fault_handler(on_fault)?;
            if settings.preemption {
                signal::install_preemption_handler(settings.signal, on_timer)?;
            }
            Ok(())
        })
        .clone()
}

/// Stacks are not inherited by `fork` (see `sys::memory::map`), except those of the function
/// chain calling it, so that the child can run on: this hands them down.
unsafe extern "C" fn before_fork() {
    set_chain_inherited(true);
}

unsafe extern "C" fn after_fork_in_parent() {
    set_chain_inherited(false);
}

fn set_chain_inherited(inherit: bool) {
    let mut at = runtime::current_lpf();
    // SAFETY: the running chain is live.
    while let Some(lpf) = unsafe { at.as_ref() } {
        let low = lpf.stack_low - crate::stack::GUARD_SIZE;
        crate::sys::memory::fork_inherit(low, lpf.stack_high - low, inherit);
        at = lpf.parent.load(Relaxed);
    }
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
    } else if let Err(reason) = {
        // SAFETY: `ucontext` is the running handler's (our contract); the unwind cache is this
        // thread's and nothing else uses it while our `in_handler` flag is set.
        unsafe {
            if on_own_stack(leaf_ref, ucontext) {
                safepoint::check(
                    rt.unwind_cache(),
                    leaf_ref,
                    expired,
                    safepoint::interrupted_registers(ucontext),
                )
            } else {
                Err(Reason::Unwind)
            }
        }
    } {
        defer(rt, leaf_ref, now, reason);
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

/// Counts a deferral and re-arms the timer a little later, backing off while it repeats.
/// Async-signal-safe.
fn defer(rt: &Runtime, lpf: &Lpf, now: u64, reason: Reason) {
    let retries = lpf.retries.get();
    lpf.retries.set(retries.saturating_add(1));
    let delay = (rt.retry_ns << retries.min(MAX_BACKOFF_DOUBLINGS)).min(MAX_RETRY_NS);
    rt.arm_retry(now, delay);
    let counter = match reason {
        Reason::Library => &STATS.deferred_library,
        Reason::StdSection => &STATS.deferred_std,
        Reason::Unknown => &STATS.deferred_unknown,
        Reason::Unwind => &STATS.deferred_unwind,
    };
    counter.fetch_add(1, Relaxed);
    STATS.retries.fetch_add(1, Relaxed);
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
    // The whole-stack rule applies here too: the section that just ended may sit inside a
    // critical section further down the stack. Walk from this very frame.
    let registers = safepoint::caller_registers();
    // A timer expiry during the walk returns at once (and retries): the cache is ours.
    this.in_handler.store(true, Relaxed);
    // SAFETY: we run on `lpf`, the innermost LPF; `expired` is on its chain; the cache is this
    // thread's and the flag above keeps the handler off it.
    let verdict = unsafe { safepoint::check(rt.unwind_cache(), this, expired, registers) };
    this.in_handler.store(false, Relaxed);
    if let Err(reason) = verdict {
        defer(rt, this, now, reason);
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
    if this.cancel_requested.load(Relaxed) {
        checkpoint();
    }
}

/// A cancellation point: if the caller asked to cancel the running function cooperatively
/// ([`Continuation::cancel_cooperatively`](crate::Continuation::cancel_cooperatively)), unwinds
/// its stack from here with a [`Cancelled`](crate::Cancelled) payload, so that destructors
/// run. [`pause`] and the end of a [`nopreempt`] section are cancellation points too. Outside
/// a preemptible function, or while already unwinding, does nothing.
///
/// Call it in long loops that should be cancellable with their destructors run.
pub fn checkpoint() {
    let lpf = runtime::current_lpf();
    // SAFETY: a non-null current LPF is the running one: us.
    if let Some(this) = unsafe { lpf.as_ref() }
        && this.cancel_requested.load(Relaxed)
        && this.nopreempt.load(Relaxed) == 0
        && !std::thread::panicking()
    {
        std::panic::resume_unwind(Box::new(crate::Cancelled));
    }
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
            checkpoint();
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
    deferred_std: AtomicU64,
    deferred_unknown: AtomicU64,
    deferred_unwind: AtomicU64,
    retries: AtomicU64,
    longest_deferral_ns: AtomicU64,
}

static STATS: Counters = Counters {
    preemptions: AtomicU64::new(0),
    yields: AtomicU64::new(0),
    deferred_nopreempt: AtomicU64::new(0),
    deferred_library: AtomicU64::new(0),
    deferred_std: AtomicU64::new(0),
    deferred_unknown: AtomicU64::new(0),
    deferred_unwind: AtomicU64::new(0),
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
    /// Expiries deferred because a frame of the function was in a non-preemptible library
    /// (the loader, libc, libgcc_s, libstdc++, or one named by the user).
    pub deferred_library: u64,
    /// Expiries deferred because a frame was in one of the standard library's critical
    /// sections (stdio printing, one-time initialisation, panics, the environment, ...).
    pub deferred_std: u64,
    /// Expiries deferred because a frame was in code of no known module (JIT code, or a
    /// library loaded after the module tables were last refreshed).
    pub deferred_unknown: u64,
    /// Expiries deferred because the stack could not be walked to its base.
    pub deferred_unwind: u64,
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
        deferred_std: STATS.deferred_std.load(Relaxed),
        deferred_unknown: STATS.deferred_unknown.load(Relaxed),
        deferred_unwind: STATS.deferred_unwind.load(Relaxed),
        retries: STATS.retries.load(Relaxed),
        longest_deferral_ns: STATS.longest_deferral_ns.load(Relaxed),
    }
}

/// More than a kernel signal frame with a full XSAVE area (about 3 KiB with AVX2, 11 KiB with
/// AVX-512) plus the handler's own frames.
const SIGNAL_FRAME_ROOM: usize = 32 * 1024;

/// SIGSEGV/SIGBUS handler: reports a stack overflow in a preemptible function, chains
/// everything else. Runs on the alternate signal stack; async-signal-safe.
unsafe extern "C" fn on_fault(signal: i32, info: *mut libc::siginfo_t, ucontext: *mut c_void) {
    // SAFETY: `info` is the kernel's siginfo for this fault.
    let address = unsafe { signal::fault_address(info) };
    // When the stack has no room left for a signal frame (the timer signal arriving near its
    // end), the kernel cannot deliver that signal and sends SIGSEGV with SI_KERNEL and no
    // address instead: look at the interrupted stack pointer then.
    // SAFETY: `info` and `ucontext` are the kernel's, for this delivery.
    let (kernel_sent, sp) = unsafe {
        (
            signal::si_code(info) == libc::SI_KERNEL,
            crate::arch::interrupted_sp(ucontext),
        )
    };
    let mut at = runtime::current_lpf();
    // SAFETY: the running chain is live.
    while let Some(lpf) = unsafe { at.as_ref() } {
        let guard_low = lpf.stack_low.saturating_sub(crate::stack::GUARD_SIZE);
        let in_guard = address < lpf.stack_low && address >= guard_low;
        let frame_did_not_fit =
            kernel_sent && sp >= guard_low && sp < lpf.stack_low + SIGNAL_FRAME_ROOM;
        if in_guard || frame_did_not_fit {
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

/// Runs the whole-stack check `iterations` times from the calling frame of the running
/// function (for `bench_hooks`); returns the time taken and whether the last check passed.
pub(crate) fn time_safepoint_checks(iterations: u64) -> (std::time::Duration, bool) {
    let lpf = runtime::current_lpf();
    // SAFETY: a non-null current LPF is the running one: us.
    let Some(this) = (unsafe { lpf.as_ref() }) else {
        return (std::time::Duration::ZERO, false);
    };
    // SAFETY: the runtime of the thread running us outlives the run.
    let Some(rt) = (unsafe { this.runtime.load(Relaxed).as_ref() }) else {
        return (std::time::Duration::ZERO, false);
    };
    safepoint::tables::init();
    let mut passed = false;
    this.in_handler.store(true, Relaxed);
    let start = std::time::Instant::now();
    for _ in 0..iterations {
        let registers = safepoint::caller_registers();
        // SAFETY: as in `pending_preemption`: our own stack, our cache, guarded by the flag.
        passed = unsafe { safepoint::check(rt.unwind_cache(), this, lpf, registers) }.is_ok();
    }
    let elapsed = start.elapsed();
    this.in_handler.store(false, Relaxed);
    (elapsed, passed)
}
