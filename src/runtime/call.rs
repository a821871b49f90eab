//! Running a function: preparing its first switch, `resume` (which switches in and returns
//! when the function pauses or finishes), migration of a paused chain to the resuming thread,
//! and the function's first and last code on its own stack.
//!
//! Context: [`resume`] runs in the caller's context (the thread's own, or an enclosing
//! function's stack for a nested call) and switches into the function; [`lpf_entry`] runs on
//! the function's stack (its end is in `exit`). Not the signal handler.

use super::control::{Lpf, NEVER, Runtime, cancel, current_lpf, set_current, state};
use super::deadlines::effective_deadline;
use super::ending::release_nopreempt;
use super::exit::after_run;
use super::startup::runtime;
use super::transfer::{FiberEntry, fiber_entering, fiber_landed, fiber_returned};
use crate::arch;
use crate::budget::{Budget, Clock};
use crate::error::Error;
use crate::sys::clock::{deadline_after, now_ns, thread_cpu_ns};
use crate::sys::signal::{errno, set_errno};
use crate::sys::tls::{self, Glibc};
use core::ffi::c_void;
use core::sync::atomic::Ordering::Relaxed;

/// What a `resume` ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Paused; `yielded` tells `pause()` from the timer.
    Paused,
    /// Finished: returned or panicked. The slot holds the outcome.
    Finished,
}

/// Prepares the first switch into the fresh function whose control block is `this`, with
/// its stack's free part ending at `top`. Context: caller.
///
/// # Safety
/// `this` must point to a control block at the top of its stack, below which the stack
/// is unused; `top` must be 16-byte aligned and equal to `this` (unwinders read the block's
/// first field there, see `arch::prepare_stack`).
pub(crate) unsafe fn prepare(this: *mut Lpf, top: *mut u8) {
    debug_assert_eq!(top, this.cast::<u8>());
    // SAFETY: per the contract, the stack below `top` is ours to write.
    unsafe {
        (*this).leaf.set(this);
        (*this).walk_base.set(top as usize);
        *(*this).saved_sp.get() = arch::prepare_stack(top, lpf_entry, this.cast());
    }
}

/// Runs `lpf` (fresh or paused) for `budget`, on the calling context's behalf.
///
/// Inlined, so that the switch is called from the caller's own frame: the work before it
/// ([`enter`]) and after it ([`returned`]) are ordinary calls, and no `ret` runs right after
/// the switch comes back, where it would mispredict (the processor's return predictions
/// belong to the other stack, see `arch`).
///
/// # Safety
/// `lpf` must point to a live control block in state READY or PAUSED whose stack stays
/// mapped until it finishes or is discarded, and whose closure may run on this thread.
#[inline(always)]
pub(crate) unsafe fn resume(lpf: *mut Lpf, budget: Budget) -> Result<Outcome, Error> {
    // Filled in place and passed by reference: a copy of the struct returned by value would
    // load what `enter` just stored in wider loads than it stored with, which stalls.
    let mut entered = core::mem::MaybeUninit::<Entered>::uninit();
    // SAFETY: per the contract.
    unsafe { enter(lpf, budget, &mut entered) }?;
    // SAFETY: `enter` returned `Ok`, so it initialised `entered`.
    let entered = unsafe { entered.assume_init_ref() };
    // SAFETY: `enter` made everything ready: `to` was saved by `switch` when the leaf was
    // suspended (or prepared for a fresh LPF), and nothing has continued it since; the leaf's
    // TLS is installed, and nothing between here and the switch touches thread-locals.
    unsafe { arch::switch(entered.save, entered.to) };
    // SAFETY: back from the switch into the context `enter` prepared.
    unsafe { returned(entered) }
}

/// What [`enter`] prepared: the switch to make, and what [`returned`] needs afterwards.
pub(crate) struct Entered {
    lpf: *mut Lpf,
    parent: *const Lpf,
    save: *mut *mut u8,
    to: *mut u8,
    shared_errno: Option<i32>,
    fiber: FiberEntry,
}

/// Everything [`resume`] does before its switch, which it describes in `out` when it returns
/// `Ok`. Context: caller.
///
/// # Safety
/// As for [`resume`]; the caller must make the switch described in `out` at once.
#[inline(never)]
unsafe fn enter(
    lpf: *mut Lpf,
    budget: Budget,
    out: &mut core::mem::MaybeUninit<Entered>,
) -> Result<(), Error> {
    // Rule 3: no pausing the resumer (the running function, if any) half-way through this
    // function. It is held from the very start, before the runtime is looked up: paused in
    // between, it could be resumed on another thread with this thread's runtime in hand, or
    // be paused by the handler with `busy` set.
    // SAFETY: a non-null running LPF is live while its code runs, as this code does.
    let held = unsafe { current_lpf().as_ref() };
    if let Some(parent) = held {
        if parent.in_handler.load(Relaxed) {
            return Err(Error::InSignalHandler);
        }
        parent.hold_nopreempt();
    }
    // SAFETY: per the contract; the resumer is held.
    let entered = unsafe { enter_held(lpf, budget, out) };
    if entered.is_err()
        && let Some(parent) = held
    {
        release_nopreempt(parent);
    }
    entered
}

/// [`enter`] once the resumer (if any) is held, which [`returned`] releases (or `enter` on
/// an error). Context: caller.
///
/// # Safety
/// As for [`enter`].
#[inline(always)]
unsafe fn enter_held(
    lpf: *mut Lpf,
    budget: Budget,
    out: &mut core::mem::MaybeUninit<Entered>,
) -> Result<(), Error> {
    let rt = runtime()?;
    // SAFETY: per the contract `lpf` is live; all access is on this thread.
    let this = unsafe { &*lpf };
    match this.state.load(Relaxed) {
        state::READY | state::PAUSED => {}
        state::RUNNING => return Err(Error::AlreadyRunning),
        _ => return Err(Error::Finished),
    }
    // SAFETY: a non-null `current` is the live LPF we are running in (the one `enter` held).
    let parent = unsafe { rt.current.load(Relaxed).as_ref() };
    debug_assert!(core::ptr::eq(
        parent.map_or(core::ptr::null(), |p| p as *const Lpf),
        current_lpf()
    ));
    // Caller context, before any state changes: the CPU timer a CPU budget may need.
    let cpu_budget = budget.clock() == Clock::Cpu && !budget.is_unlimited() && rt.timer.is_some();
    if cpu_budget {
        rt.ensure_cpu_timer()?;
    }
    // Bookkeeping until the function lands (which ends it) and again from when it leaves.
    rt.begin_busy()?;
    // SAFETY: the leaf of a paused chain is live (suspended on the chain's stacks).
    let leaf = unsafe { &*this.leaf.get() };
    if !core::ptr::eq(this.runtime.load(Relaxed), rt)
        && let Err(error) = migrate(rt, this)
    {
        rt.end_busy();
        return Err(error);
    }
    let (deadline, cpu_deadline) = deadlines(rt, this, budget, cpu_budget);
    if deadline < rt.armed.load(Relaxed)
        && let Err(error) = check_handler()
    {
        // The timer is about to be armed, and an expiry would kill the process.
        rt.end_busy();
        return Err(error);
    }
    this.parent.store(
        parent.map_or(core::ptr::null_mut(), |p| p as *const Lpf as *mut Lpf),
        Relaxed,
    );
    this.deadline.store(deadline, Relaxed);
    this.cpu_deadline.store(cpu_deadline, Relaxed);
    this.yielded.set(false);
    this.leaf.set(lpf);
    this.state.store(state::RUNNING, Relaxed);
    leaf.pending.store(false, Relaxed);
    leaf.retries.set(0);
    leaf.deferred_working.set(false);
    leaf.deferred_waiting.set(false);
    rt.current.store(leaf as *const Lpf as *mut Lpf, Relaxed);
    // Armed only after `current` names the leaf, so an early expiry is never lost. If the
    // resumer is itself overdue (its deadline passed and a retry is booked), arming for the
    // chain's deadline would fire at once, inside this very launch, and cancel the retry
    // that would have found a safe point: arm only for the leaf's own deadline then.
    let overdue_parent = parent.is_some_and(|parent| parent.retries.get() > 0);
    let arm_for = if overdue_parent {
        leaf.deadline.load(Relaxed)
    } else {
        effective_deadline(leaf)
    };
    rt.arm(arm_for);
    let fiber = fiber_entering(parent, leaf);
    let shared_errno = enter_tls(rt, parent, leaf);
    out.write(Entered {
        lpf,
        parent: parent.map_or(core::ptr::null(), |p| p as *const Lpf),
        save: this.caller_sp.get(),
        // SAFETY: `leaf.saved_sp` was saved by `switch` when the leaf was suspended (or
        // prepared for a fresh LPF), and nothing has continued it since: its state was READY
        // or PAUSED.
        to: unsafe { *leaf.saved_sp.get() },
        shared_errno,
        fiber,
    });
    Ok(())
}

/// Everything [`resume`] does after its switch came back. Context: caller.
///
/// # Safety
/// Only with what [`enter`] returned, once the switch it prepared came back.
#[inline(never)]
unsafe fn returned(entered: &Entered) -> Result<Outcome, Error> {
    let Entered {
        lpf,
        parent,
        shared_errno,
        ref fiber,
        ..
    } = *entered;
    // SAFETY: per the contract `lpf` is live, and so is its resumer `parent` (if any): both
    // were live when `enter` ran, and a resumer waits in this very call.
    let (this, parent) = unsafe { (&*lpf, parent.as_ref()) };
    fiber_returned(fiber);
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
    // A nested resume may come back on another thread than it began on: its enclosing
    // chain was paused meanwhile and resumed elsewhere (migration updated `runtime`).
    // SAFETY: the runtime of the thread running this code is live.
    let rt = unsafe { &*this.runtime.load(Relaxed) };
    if rt.cpu_armed.load(Relaxed) != NEVER && !parent.is_some_and(watches_cpu_clock) {
        // The CPU timer watched a budget that is over: it must not interrupt what runs now.
        rt.disarm_cpu();
    }
    rt.end_busy();
    if let Some(parent) = parent {
        release_nopreempt(parent);
    }
    Ok(outcome)
}

/// The wall-clock deadline and CPU-time deadline (or [`NEVER`]) of a slice of `budget`
/// starting now for `this`; restores the CPU budgets of the functions nested in its paused
/// chain on this thread's clocks. Context: caller.
fn deadlines(rt: &Runtime, this: &Lpf, budget: Budget, cpu_budget: bool) -> (u64, u64) {
    let nested_cpu = this
        .paused_chain()
        .any(|node| !core::ptr::eq(node, this) && node.cpu_deadline.load(Relaxed) != NEVER);
    if !cpu_budget && !nested_cpu {
        let deadline = if rt.timer.is_some() && !budget.is_unlimited() {
            deadline_after(budget.duration())
        } else {
            NEVER
        };
        return (deadline, NEVER);
    }
    let (now, cpu) = (now_ns(), thread_cpu_ns());
    for node in this.paused_chain() {
        if !core::ptr::eq(node, this) {
            node.restore_cpu_budget(now, cpu);
        }
    }
    if !cpu_budget {
        let deadline = if rt.timer.is_some() && !budget.is_unlimited() {
            now.saturating_add(budget.nanos())
        } else {
            NEVER
        };
        return (deadline, NEVER);
    }
    this.cpu_mark.set((now, cpu));
    this.cpu_waiting.set(false);
    let cap = budget
        .wall_cap_nanos()
        .map_or(NEVER, |cap| now.saturating_add(cap));
    this.wall_cap.set(cap);
    (
        now.saturating_add(budget.nanos()).min(cap),
        cpu.saturating_add(budget.nanos()),
    )
}

/// Whether a function of the running chain from `lpf` has left its CPU budget to the
/// thread's CPU timer.
fn watches_cpu_clock(lpf: &Lpf) -> bool {
    lpf.chain().any(Lpf::waits_on_cpu_timer)
}

/// Refuses to arm the timer once the preemption signal's handler is no longer inger's:
/// someone reset it (`signal(SIG, SIG_DFL)`) or replaced it, and an expiry would kill the
/// process or run their handler. A system call, made only when the timer is to be armed.
fn check_handler() -> Result<(), Error> {
    if super::preempt::handler_intact() {
        Ok(())
    } else {
        let signal = crate::config::settings().map_or(0, |s| s.signal);
        Err(Error::HandlerReplaced { signal })
    }
}

/// Installs the leaf's TLS before switching into it. With shared TLS, swaps errno (the one
/// thread-local every C call touches) and returns the caller's, to restore afterwards.
fn enter_tls(rt: &Runtime, parent: Option<&Lpf>, leaf: &Lpf) -> Option<i32> {
    let own_tls = rt.resumer_tls(parent);
    let shared_errno = if own_tls != 0 {
        Glibc::propagate_multiple_threads(own_tls, leaf.tls);
        None
    } else {
        set_current(leaf as *const Lpf as *mut Lpf);
        let ours = errno();
        set_errno(leaf.errno.get());
        Some(ours)
    };
    rt.install_tls(leaf.tls);
    shared_errno
}

/// Moves the paused chain of `outer` (from its leaf up to it) to the calling thread.
fn migrate(rt: &Runtime, outer: &Lpf) -> Result<(), Error> {
    let Some(glibc) = rt.glibc else {
        return Err(Error::WrongThread);
    };
    for node in outer.paused_chain() {
        node.runtime
            .store(rt as *const Runtime as *mut Runtime, Relaxed);
        glibc.set_tid(node.tls, rt.tid);
    }
    Ok(())
}

/// Asks the paused `lpf` to unwind at its next cancellation point, and every function
/// nested in its paused chain (which it was resuming) to yield back to it, so that control
/// reaches `lpf`'s own code: at their next cancellation point, or at once where they can be
/// preempted (their deadlines are set to have passed). Context: caller.
pub(crate) fn request_cancel(lpf: &Lpf) {
    for node in lpf.paused_chain() {
        if core::ptr::eq(node, lpf) {
            node.cancel.store(cancel::UNWIND, Relaxed);
        } else {
            node.cancel.store(cancel::YIELD, Relaxed);
            node.deadline.store(0, Relaxed);
        }
    }
}

/// Before the paused `outer` is discarded, makes the functions nested in its paused chain
/// (which it was resuming) a paused chain of their own: the one it resumed becomes paused
/// with no resumer, so that whoever owns its continuation can resume or cancel it. Requests
/// to yield to `outer` are withdrawn. Context: caller.
pub(crate) fn detach_nested(outer: &Lpf) {
    let mut child = None;
    for node in outer.paused_chain() {
        if core::ptr::eq(node, outer) {
            break;
        }
        if node.cancel.load(Relaxed) == cancel::YIELD {
            node.cancel.store(cancel::NONE, Relaxed);
        }
        child = Some(node);
    }
    let Some(child) = child else {
        return;
    };
    child.leaf.set(outer.leaf.get());
    child.yielded.set(outer.yielded.get());
    child.parent.store(core::ptr::null_mut(), Relaxed);
    child.state.store(state::PAUSED, Relaxed);
    outer.leaf.set(outer as *const Lpf as *mut Lpf);
}

/// First code on a fresh LPF's stack. Context: function stack.
///
/// # Safety
/// Entered only through the trampoline with the LPF's control block as `arg`.
pub(super) unsafe extern "C" fn lpf_entry(arg: *mut c_void) -> ! {
    let lpf = arg.cast::<Lpf>();
    // SAFETY: `lpf` is the live control block at the top of this very stack.
    let this = unsafe { &*lpf };
    fiber_landed(this, core::ptr::null_mut());
    // SAFETY: the runtime of the thread that resumed us is live while we run on it.
    if let Some(rt) = unsafe { this.runtime.load(Relaxed).as_ref() } {
        rt.end_busy(); // the landing side ends the resume's bookkeeping
    }
    if this.tls != 0 {
        // Our own block is installed: point its CURRENT at us, reset errno and the locale.
        set_current(lpf);
        tls::enter_block();
    }
    release_nopreempt(this);
    // SAFETY: `run` is the monomorphised runner matching the closure stored in the slot.
    let panicked = unsafe { (this.run)(lpf) };
    after_run(this, panicked)
}
