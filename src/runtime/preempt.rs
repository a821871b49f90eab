//! Preemption: the timer signal's handler, the decision it makes at an expiry, deferral, and
//! the pending preemption that takes effect when a section ends.
//!
//! Context: **signal handler** for [`on_timer`], [`on_expiry`] and [`defer`] (running on the
//! interrupted function's own stack, or on the thread's stack when no function runs); also the
//! function's own stack for `defer` and [`check_running_stack`], called where a section ends
//! (`ending`). All of it is async-signal-safe: no allocation, no locks; errno is saved and
//! restored around the handler.
//!
//! # How a running function is paused
//!
//! Each thread that launches functions owns one POSIX timer (`CLOCK_MONOTONIC`,
//! `SIGEV_THREAD_ID`) that sends one real-time signal to that thread alone, carrying in
//! `si_value` the thread's index in the table of timers (`timers`), which the handler checks
//! against the kernel's id of the timer that fired before it trusts the delivery (a timer of
//! someone else's on the same signal is ignored). The handler runs on the interrupted function's own
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
//! # CPU budgets
//!
//! A CPU budget is watched by the same wall-clock timer: its deadline is the earliest time the
//! budget could run out (CPU time cannot pass faster than wall time). When it passes, the
//! check reads the thread's CPU clock (`Lpf::deadline_passed`): if budget is left, the thread
//! was descheduled or waited, and the deadline moves by what is left if the function mostly
//! computed since the last look, or the rest of the budget goes to a second timer, on the
//! thread's CPU clock, if it mostly waited. That timer fires only once the thread has
//! computed for long enough, so a waiting function costs no signal; the kernel checks such
//! timers at its scheduler tick only, which is why it is not used for everything. Nested
//! functions paused with their chain keep what their budget has left and get it back, on the
//! resuming thread's clock, when the chain is resumed (`transfer`, `call`).
//!
//! # Interrupted system calls
//!
//! Any handled signal makes some blocking calls fail with `EINTR` (`pause`, `poll`,
//! `nanosleep`, ...). When the handler does not pause the function (or when a function paused
//! in such a call is resumed), it makes the interrupted context run the call again where that
//! keeps its meaning (`sys::restart`), so the preemption signal stays invisible; not for a
//! function being cancelled, which had better reach its next cancellation point.
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
//! # Safe points
//!
//! Preempting arbitrary instructions is only safe where nothing non-reentrant is
//! half-updated. The handler pauses a function only if (a) its `nopreempt` counter is zero
//! (runtime bookkeeping and user critical sections, see [`nopreempt`](crate::nopreempt)), and
//! (b) no frame of any stack of the chain being paused is in non-preemptible code: the
//! dynamic loader, libc, libgcc_s, libstdc++, libraries the user names, the standard
//! library's critical sections, or code in no known module (the whole-stack rule of
//! [`safepoint`](crate::safepoint), DESIGN.md §3), except that the innermost frames may be
//! one of libc's pure routines (`memcpy`, `strlen`: they touch only their arguments) or a
//! call blocked at a cancellation point. Otherwise the preemption is *pending*, and takes
//! effect when the critical section ends:
//!
//! - (a) when the counter drops to zero (`ending::release_nopreempt`);
//! - (b) when the outermost non-preemptible frame returns into preemptible code: the handler
//!   replaces that frame's return address with a stub (`arch::redirect`), which calls
//!   `ending::redirect_reached` on the function's stack with every return register saved;
//!   the function pauses there, and continues to the real return address when resumed. The
//!   stub's unwind information names the real return address, so panics and backtraces
//!   pass through a redirected frame. This is what libgotcha's hook after every library
//!   call achieved, at the cost of two stores, and only once a deadline has passed;
//! - by a retry a little later (doubling twice at most) where no redirect can be made: code
//!   of no known module, a stack that could not be walked, a function that reads its own
//!   return address (the `dl*` and `setjmp` families), a process with a shadow stack or
//!   `INGER_REDIRECT=0`. While a redirect waits, the timer only checks once a millisecond
//!   (a `longjmp` over the redirected frame, or code that never returns).
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
//! - Looking only at the interrupted instruction (the first version of the rule): it misses
//!   a lock held by a frame further down the stack (`println!` running user `Display` code,
//!   a `LazyLock` initialiser, `qsort` calling a Rust comparator).
//! - Retries alone (the second version): a function that lives inside critical sections
//!   (`print!` in a loop, 64 MiB copies) was sampled thousands of times, each signal costing
//!   tens of microseconds of CPU on a virtual machine, before a sample landed outside, and its
//!   deadline came milliseconds to seconds late.
//! - Storing the real return address anywhere but the stack's own top word: the stub's
//!   unwind information could not find it (DWARF has no thread-local or absolute addressing
//!   that a position-independent executable allows), so panics through a redirected frame
//!   would have aborted.

// Why this file is long (~500 lines): its first 115 lines are the design essay of
// preemption; the code is the handler and its deferral, which share the in-handler state.

use core::ffi::c_void;
use core::sync::atomic::{
    AtomicUsize,
    Ordering::{Relaxed, SeqCst},
    compiler_fence,
};

use super::control::{Lpf, NEVER, Runtime, cancel, current_lpf, state};
use super::deadlines::{Decision, decide, effective_deadline};
use super::timers::{self, Kind};
use super::transfer::leave;
use crate::arch;
use crate::error::Error;
use crate::safepoint::{self, Allowed, Blocked, Reason, SectionEnd};
use crate::stats::COUNTERS;
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

/// The preemption signal handler. Context: signal handler; async-signal-safe.
///
/// # Safety
/// Installed only as an `SA_SIGINFO` handler for the preemption signal.
pub(super) unsafe extern "C" fn on_timer(
    signal_number: i32,
    info: *mut libc::siginfo_t,
    ucontext: *mut c_void,
) {
    // SAFETY: `ucontext` is the one the kernel passed to this handler.
    unsafe { crate::sys::signal_frame::retarget_sigreturn(ucontext) };
    // SAFETY: `info` is the kernel's siginfo for this delivery.
    if unsafe { signal::si_code(info) } != libc::SI_TIMER {
        return; // sent by kill/sigqueue, not our timer: ignore
    }
    // SAFETY: for SI_TIMER the siginfo holds a timer's fields.
    let (value, timer_id) = unsafe { signal::timer_fields(info) };
    let Some((address, kind)) = timers::lookup(value, timer_id) else {
        // Someone else's timer on our signal: its value means nothing to us.
        COUNTERS.foreign_timer_signals.fetch_add(1, Relaxed);
        return;
    };
    // SAFETY: the table names only live runtimes (see `timers::lookup`), and the timer that
    // fired is this thread's.
    let rt = unsafe { &*(address as *const Runtime) };
    COUNTERS.timer_signals.fetch_add(1, Relaxed);
    let saved_errno = signal::errno();
    match kind {
        Kind::Wall => rt.armed.store(NEVER, Relaxed),
        Kind::Cpu => rt.cpu_armed.store(NEVER, Relaxed),
    }
    // SAFETY: `ucontext` is the kernel's, valid while the handler runs.
    let paused = unsafe { on_expiry(rt, kind, ucontext) };
    // Not paused, or paused and now resumed (perhaps on another thread): a system call our
    // signal made fail with EINTR runs again, where that keeps its meaning. Not for a
    // function being cancelled, which should rather reach its next cancellation point.
    // SAFETY: the constant-initialised CURRENT slot names the live LPF running here, if any.
    let cancelling = unsafe { current_lpf().as_ref() }
        .is_some_and(|lpf| lpf.cancel.load(Relaxed) != cancel::NONE);
    if !cancelling {
        // SAFETY: `ucontext` is the kernel's, valid while the handler runs.
        unsafe { super::restarts::restart_interrupted_call(ucontext, signal_number, paused) };
    }
    signal::set_errno(saved_errno);
}

/// The decision: nothing to do, re-arm, defer, or pause. Context: signal handler.
///
/// # Safety
/// Called from the signal handler on the thread owning `rt`, with the kernel's `ucontext`.
/// Returns whether the function was paused (and has been resumed since).
unsafe fn on_expiry(rt: &Runtime, kind: Kind, ucontext: *mut c_void) -> bool {
    // SAFETY: a non-null `current` is the live running LPF of this thread.
    let Some(leaf) = (unsafe { rt.current.load(Relaxed).as_ref() }) else {
        return false;
    };
    if leaf.in_handler.load(Relaxed) {
        // The handler's own tail (after a resume) or a walk of this stack is running: never
        // pause here, and make no system call either. Re-arming from here nested handlers
        // without bound whenever a delivery took longer than the retry interval (a
        // descheduled vCPU, a tracer): each nested handler's re-arm fired before it
        // returned, until the stack overflowed. The code that clears the flag re-arms.
        leaf.missed_expiry.store(true, Relaxed);
        return false;
    }
    let now = now_ns();
    leaf.in_handler.store(true, Relaxed);
    if kind == Kind::Cpu {
        // A CPU budget that waited has been used up, or nearly: look at the clock again.
        for node in leaf.chain() {
            node.recheck_cpu_budget(now);
        }
    }
    let paused = match decide(leaf, now) {
        Decision::NotExpired => {
            let deadline = effective_deadline(leaf);
            if deadline != NEVER {
                rt.arm(deadline);
            }
            false
        }
        Decision::Deferred => {
            // Inside runtime bookkeeping or a user critical section (of the leaf or of a
            // function enclosing it): the section's end acts on it.
            COUNTERS.deferred_nopreempt.fetch_add(1, Relaxed);
            false
        }
        Decision::Pause(expired) => {
            // SAFETY: `ucontext` is the running handler's (our contract).
            let registers = unsafe { arch::interrupted_registers(ucontext) };
            let verdict = if leaf.owns_stack_pointer(registers.sp) {
                // SAFETY: the chain's stacks are live and mapped; the cache is this thread's
                // and nothing else uses it while our `in_handler` flag is set.
                unsafe {
                    safepoint::check(rt.unwind_cache(), leaf.stacks_to_walk(expired, registers))
                }
            } else {
                Err(Blocked::unwalkable())
            };
            match verdict {
                Err(blocked) => {
                    // SAFETY: `ucontext` is the running handler's (our contract).
                    let waiting = !matches!(
                        unsafe { arch::interrupted_system_call(ucontext) },
                        arch::SystemCall::None
                    );
                    defer(rt, leaf, now, blocked, waiting);
                    false
                }
                Ok(allowed) => {
                    let how = match allowed {
                        Allowed::Anywhere if leaf.retries.get() > 0 => PausedBy::Retry,
                        Allowed::Anywhere => PausedBy::Timer,
                        Allowed::InPureRoutine => PausedBy::PureRoutine,
                        Allowed::InBlockingCall => PausedBy::BlockingCall,
                    };
                    // SAFETY: we run on the leaf's stack (checked above).
                    unsafe { pause_from_handler(rt, leaf, expired, now, how, ucontext) };
                    true
                }
            }
        }
    };
    end_handler_section(leaf);
    paused
}

/// Clears `lpf.in_handler`; if an expiry was missed meanwhile, re-arms a retry first (while
/// the flag still keeps a nested handler to a note), and again if one slipped in between.
/// Context: signal handler or the LPF's own stack; async-signal-safe.
fn end_handler_section(lpf: &Lpf) {
    loop {
        if lpf.missed_expiry.swap(false, Relaxed) {
            // SAFETY: the runtime of the thread running this LPF (it may have migrated while
            // paused inside the handler) is live while it runs.
            if let Some(rt) = unsafe { lpf.runtime.load(Relaxed).as_ref() } {
                rt.arm_retry(now_ns(), rt.retry_ns);
            }
        }
        compiler_fence(SeqCst);
        lpf.in_handler.store(false, Relaxed);
        compiler_fence(SeqCst);
        if !lpf.missed_expiry.load(Relaxed) {
            return;
        }
        lpf.in_handler.store(true, Relaxed);
    }
}

/// Pauses the chain from `leaf` up to `expired` from inside the handler, and returns once
/// it is resumed. Context: signal handler, on the leaf's stack.
///
/// # Safety
/// `ucontext` is the running handler's; `leaf` is the running leaf of `rt`, whose stack we
/// run on, and `expired` is on its chain.
unsafe fn pause_from_handler(
    rt: &Runtime,
    leaf: &Lpf,
    expired: &Lpf,
    now: u64,
    how: PausedBy,
    ucontext: *mut c_void,
) {
    count_preemption(leaf, expired, now, how);
    // The handler runs with program signals blocked (see `sys::signal`): the resumer, and
    // whatever runs until the resume, take them again.
    // SAFETY: our own handler's ucontext.
    unsafe { signal::release_held_signals(ucontext) };
    leaf.retries.set(0);
    leaf.hold_nopreempt();
    // SAFETY: on the leaf's stack, holding a unit of its counter (rule 1).
    unsafe { leave(rt, leaf, expired, state::PAUSED, false) };
    // Resumed: the resumer re-armed the timer for the new deadline. If that happened on
    // another thread, sigreturn must install that thread's mask and alternate stack, not
    // the ones saved in our frame.
    if !core::ptr::eq(leaf.runtime.load(Relaxed), rt) {
        let (mask, altstack) = signal::thread_signal_state();
        // SAFETY: our own handler frame's ucontext, on the thread now running us.
        unsafe { arch::set_frame_signal_state(ucontext, &mask, altstack) };
    }
    // Rule 2: landing releases the unit. No pending check: the handler's own tail must not
    // pause (the `in_handler` flag is still set), and a fresh expiry re-arms a retry.
    leaf.nopreempt
        .store(leaf.nopreempt.load(Relaxed) - 1, Relaxed);
}

/// How a preemption took effect (for the counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PausedBy {
    /// The expiry found the chain pausable at once.
    Timer,
    /// A retry, after deferrals, found it pausable.
    Retry,
    /// The chain was paused inside a pure libc routine.
    PureRoutine,
    /// The chain was paused blocked in a system call at a cancellation point.
    BlockingCall,
    /// The end of a `nopreempt` section (or runtime bookkeeping) paused it.
    SectionEnd,
    /// The return from a library or standard-library critical section paused it.
    Redirect,
}

/// Counts a preemption of the chain from `leaf` up to `expired`, whose deadline passed,
/// taking effect at `now`. Its delay counts as waiting if the leaf was blocked in a system
/// call at every deferral (or is paused in a blocking call), else as a deferral.
pub(super) fn count_preemption(leaf: &Lpf, expired: &Lpf, now: u64, how: PausedBy) {
    // A deadline of 0 was forced (a cancellation asking a nested function to yield): no
    // budget was overshot, and `now - 0` would report the machine's uptime.
    let deadline = expired.deadline.load(Relaxed);
    let overshoot = if deadline == 0 {
        0
    } else {
        now.saturating_sub(deadline)
    };
    let waited = !leaf.deferred_working.replace(false)
        && (leaf.deferred_waiting.replace(false) || how == PausedBy::BlockingCall);
    leaf.deferred_waiting.set(false);
    let longest = if waited {
        &COUNTERS.longest_wait_ns
    } else {
        &COUNTERS.longest_deferral_ns
    };
    longest.fetch_max(overshoot, Relaxed);
    COUNTERS.preemptions.fetch_add(1, Relaxed);
    let counter = match how {
        PausedBy::Timer => return,
        PausedBy::Retry => &COUNTERS.paused_by_retry,
        PausedBy::PureRoutine => &COUNTERS.paused_in_pure_routine,
        PausedBy::BlockingCall => &COUNTERS.paused_in_blocking_call,
        PausedBy::SectionEnd => &COUNTERS.paused_at_nopreempt_end,
        PausedBy::Redirect => &COUNTERS.paused_at_section_end,
    };
    counter.fetch_add(1, Relaxed);
}

/// While a redirect waits for a critical section to end, the timer only checks every this
/// often (a longjmp over the redirected frame, or code that never returns, would otherwise
/// wait for good): one signal per millisecond at most.
const REDIRECT_FALLBACK_NS: u64 = 1_000_000;

/// Counts a deferral, and arranges for the preemption to take effect later: at the end of
/// the critical section (a redirect of its return) where that can be done, else with a
/// retry a little later, backing off while it repeats. `waiting`: the function was found
/// blocked in a system call. Context: signal handler or function stack; async-signal-safe.
pub(super) fn defer(rt: &Runtime, lpf: &Lpf, now: u64, blocked: Blocked, waiting: bool) {
    let retries = lpf.retries.get();
    lpf.retries.set(retries.saturating_add(1));
    if waiting {
        lpf.deferred_waiting.set(true);
        COUNTERS.deferred_waiting.fetch_add(1, Relaxed);
    } else {
        lpf.deferred_working.set(true);
    }
    let counter = match blocked.reason {
        Reason::Library => &COUNTERS.deferred_library,
        Reason::StdSection => &COUNTERS.deferred_std,
        Reason::Unknown => &COUNTERS.deferred_unknown,
        Reason::Unwind => &COUNTERS.deferred_unwind,
    };
    counter.fetch_add(1, Relaxed);
    if blocked.redirect_pending {
        rt.arm_retry(now, REDIRECT_FALLBACK_NS);
        return;
    }
    // A redirect armed earlier and never reached was skipped (a longjmp or a panic left its
    // frame): code that does that in a loop would skip every one, so retry this time.
    let skipped = lpf.redirect_armed.replace(false);
    if skipped {
        COUNTERS.redirects_skipped.fetch_add(1, Relaxed);
    }
    if !skipped
        && let Some(end) = blocked.section_end
        && install_redirect(lpf, end)
    {
        COUNTERS.redirects.fetch_add(1, Relaxed);
        rt.arm_retry(now, REDIRECT_FALLBACK_NS);
        return;
    }
    let delay = (rt.retry_ns << retries.min(MAX_BACKOFF_DOUBLINGS)).min(MAX_RETRY_NS);
    rt.arm_retry(now, delay);
    COUNTERS.retries.fetch_add(1, Relaxed);
}

/// Redirects the return of a critical section's outermost frame to a stub, so that the
/// function pauses as soon as the section ends (see `arch::redirect`). Whether it did: not
/// where redirects are off (a shadow stack, `INGER_REDIRECT=0`) or for a function that reads
/// its own return address. Context: signal handler or the LPF's own stack; async-signal-safe
/// (two stores into the function's stack).
fn install_redirect(leaf: &Lpf, end: SectionEnd) -> bool {
    let Some(stub) = redirect_stub() else {
        return false;
    };
    if safepoint::tables::current().is_none_or(|t| t.is_never_redirected(end.function)) {
        return false;
    }
    let Some(owner) = leaf.chain().nth(end.stack) else {
        return false;
    };
    let top_word = arch::redirect::top_word(owner.stack_high);
    if !(end.slot >= owner.stack_low && end.slot + 8 <= top_word) {
        return false;
    }
    // SAFETY: both words lie in the owner's own stack (checked): the top word is reserved
    // for this, and `slot` holds the return address the walk read there (it checked). The
    // frames are suspended by this handler (or run by this very code, on another stack), so
    // nothing reads either word until the redirected frame returns.
    unsafe {
        (top_word as *mut usize).write(end.return_address);
        compiler_fence(SeqCst);
        (end.slot as *mut usize).write(stub);
    }
    leaf.redirect_armed.set(true);
    true
}

/// The redirect stub for this process's stacks, if redirects are on.
fn redirect_stub() -> Option<usize> {
    let stub = REDIRECT_STUB.load(Relaxed);
    (stub != 0).then_some(stub)
}

/// The stub for this process's slot size; 0 when redirects are off.
static REDIRECT_STUB: AtomicUsize = AtomicUsize::new(0);

/// Makes `stub` the stub that critical sections' returns are redirected to (see
/// `ending::enable_redirects`).
pub(super) fn set_redirect_stub(stub: usize) {
    REDIRECT_STUB.store(stub, Relaxed);
}

/// Whether deadlines that pass inside a critical section take effect at its end (see
/// `ending::enable_redirects`).
pub(crate) fn redirects_enabled() -> bool {
    redirect_stub().is_some()
}

/// Applies the whole-stack rule to the chain from the running `lpf` (whose stack this code
/// runs on, at `registers`) up to `outer`, keeping the handler out meanwhile (an expiry during
/// the walk is noted and retried). Context: function stack.
pub(crate) fn check_running_stack(
    rt: &Runtime,
    lpf: &Lpf,
    outer: &Lpf,
    registers: arch::Registers,
) -> Result<Allowed, Blocked> {
    debug_assert!(lpf.owns_stack_pointer(registers.sp));
    lpf.in_handler.store(true, Relaxed);
    // SAFETY: we run on `lpf`, the innermost LPF; `outer` is on its chain; the cache is this
    // thread's and the flag above keeps the handler off it.
    let verdict =
        unsafe { safepoint::check(rt.unwind_cache(), lpf.stacks_to_walk(outer, registers)) };
    end_handler_section(lpf);
    verdict
}

/// Whether inger's handler still owns the preemption signal. Context: caller.
pub(crate) fn handler_intact() -> bool {
    crate::config::settings()
        .is_ok_and(|s| !s.preemption || signal::handler_is_installed(s.signal, on_timer))
}

/// Installs [`on_timer`] for the preemption signal. Context: caller, once per process.
pub(super) fn install_handler(signal: i32) -> Result<(), Error> {
    signal::install_preemption_handler(signal, on_timer)
}
