//! Deadlines: when a function's budget has run out (its wall-clock deadline, or its CPU time
//! confirmed on the thread's CPU clock), the decision a deadline check of a running chain
//! takes, and the arming of the thread's timers that watch them.
//!
//! Context: the signal handler and the running chain's own code (everything here is
//! async-signal-safe: at most a clock or timer system call), plus the caller for
//! [`Runtime::ensure_cpu_timer`], which creates the CPU-clock timer before a resume needs it.

use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use super::control::{Lpf, NEVER, Runtime};
use crate::error::Error;
use crate::stats::COUNTERS;
use crate::sys::clock::thread_cpu_ns;
use crate::sys::timer::{Clock, ThreadTimer};

use super::timers::Kind;

impl Lpf {
    /// Whether this LPF's budget has run out at `now`. A wall-clock budget has when its
    /// deadline has passed. A CPU budget is checked against the thread's CPU clock once its
    /// (earliest possible) deadline has passed; if some is left, the thread was descheduled
    /// or waited meanwhile, and the deadline moves: by what is left if the function mostly
    /// computed since the last look, or into the hands of the thread's CPU timer if it mostly
    /// waited (which then sends nothing while it keeps waiting). Context: signal handler or
    /// the running chain's own code; async-signal-safe (one clock system call, at most two).
    pub(crate) fn deadline_passed(&self, now: u64) -> bool {
        if self.deadline.load(Relaxed) > now {
            return false;
        }
        let cpu_deadline = self.cpu_deadline.load(Relaxed);
        if cpu_deadline == NEVER || now >= self.wall_cap.get() {
            return true;
        }
        let cpu = thread_cpu_ns();
        if cpu >= cpu_deadline {
            return true;
        }
        let left = cpu_deadline - cpu;
        let (marked_wall, marked_cpu) = self.cpu_mark.get();
        self.cpu_mark.set((now, cpu));
        let computed = cpu.saturating_sub(marked_cpu);
        let elapsed = now.saturating_sub(marked_wall);
        // SAFETY: the runtime of the thread running this chain outlives the run.
        let runtime = unsafe { self.runtime.load(Relaxed).as_ref() };
        COUNTERS.cpu_budget_rechecks.fetch_add(1, Relaxed);
        let cap = self.wall_cap.get();
        match runtime {
            Some(rt) if computed.saturating_mul(2) < elapsed && rt.has_cpu_timer() => {
                // Mostly waiting: the CPU timer takes over (the wall cap, if any, stays).
                COUNTERS.cpu_timer_handoffs.fetch_add(1, Relaxed);
                self.cpu_waiting.set(true);
                self.deadline.store(cap, Relaxed);
                rt.arm_cpu(cpu_deadline);
            }
            _ => {
                self.cpu_waiting.set(false);
                self.deadline
                    .store(now.saturating_add(left).min(cap), Relaxed);
            }
        }
        false
    }

    /// Whether this LPF's CPU budget is watched by the thread's CPU timer (it was waiting).
    pub(crate) fn waits_on_cpu_timer(&self) -> bool {
        self.cpu_waiting.get() && self.cpu_deadline.load(Relaxed) != NEVER
    }

    /// A CPU budget left to the thread's CPU timer (the function was waiting) is looked at
    /// again: its deadline counts as passed, so that the next check reads the CPU clock.
    /// Context: signal handler, for an expiry of the CPU timer.
    pub(crate) fn recheck_cpu_budget(&self, now: u64) {
        if self.waits_on_cpu_timer() {
            self.cpu_waiting.set(false);
            self.deadline.store(now, Relaxed);
        }
    }

    /// Before the chain this LPF is nested in is paused, keeps what its CPU budget has left,
    /// for the resume of the chain to restore (see [`cpu_left`](Self::cpu_left)). Context:
    /// function stack or signal handler; `cpu` is the thread's CPU time now.
    pub(crate) fn keep_cpu_budget(&self, cpu: u64) {
        let cpu_deadline = self.cpu_deadline.load(Relaxed);
        if cpu_deadline != NEVER {
            self.cpu_left.set(cpu_deadline.saturating_sub(cpu));
        }
    }

    /// Restores the CPU budget kept by [`keep_cpu_budget`](Self::keep_cpu_budget) on the
    /// resuming thread's clocks. Context: caller, resuming the chain.
    pub(crate) fn restore_cpu_budget(&self, now: u64, cpu: u64) {
        if self.cpu_deadline.load(Relaxed) != NEVER {
            let left = self.cpu_left.get();
            self.cpu_deadline.store(cpu.saturating_add(left), Relaxed);
            self.deadline
                .store(now.saturating_add(left).min(self.wall_cap.get()), Relaxed);
            self.cpu_mark.set((now, cpu));
            self.cpu_waiting.set(false);
        }
    }
}

impl Runtime {
    /// Arms the timer for `deadline` unless it already fires at or before it.
    /// Context: any on the owning thread; async-signal-safe.
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

    /// Whether the thread's CPU-clock timer exists. Async-signal-safe.
    pub(crate) fn has_cpu_timer(&self) -> bool {
        self.cpu_timer_ready.load(Acquire)
    }

    /// The CPU-clock timer, if created. Async-signal-safe.
    fn cpu_timer(&self) -> Option<&ThreadTimer> {
        if !self.has_cpu_timer() {
            return None;
        }
        // SAFETY: written once, before `cpu_timer_ready` was set, and never again until the
        // runtime drops.
        unsafe { (*self.cpu_timer.get()).as_ref() }
    }

    /// Creates the thread's CPU-clock timer if it does not exist yet. Context: caller, on the
    /// owning thread (a CPU budget is about to start).
    pub(crate) fn ensure_cpu_timer(&self) -> Result<(), Error> {
        if self.has_cpu_timer() || self.timer.is_none() {
            return Ok(());
        }
        let settings = crate::config::settings()?;
        let timer = ThreadTimer::new(Clock::ThreadCpu, settings.signal, self.slot.index())?;
        self.slot.set_timer(Kind::Cpu, timer.kernel_id());
        // SAFETY: only this thread's caller context writes the cell, once; the handler reads
        // it only after the flag below is set.
        unsafe { *self.cpu_timer.get() = Some(timer) };
        self.cpu_timer_ready.store(true, Release);
        Ok(())
    }

    /// Arms the CPU-clock timer for thread CPU time `cpu_deadline` unless it already fires at
    /// or before it. Context: any on the owning thread; async-signal-safe.
    pub(crate) fn arm_cpu(&self, cpu_deadline: u64) {
        if let Some(timer) = self.cpu_timer()
            && cpu_deadline < self.cpu_armed.load(Relaxed)
        {
            self.cpu_armed.store(cpu_deadline, Relaxed);
            timer.arm_at(cpu_deadline);
        }
    }

    /// Disarms the CPU-clock timer if it is armed, so that it cannot interrupt code that no
    /// longer has a CPU budget. Context: any on the owning thread; async-signal-safe.
    pub(crate) fn disarm_cpu(&self) {
        if self.cpu_armed.load(Relaxed) != NEVER
            && let Some(timer) = self.cpu_timer()
        {
            self.cpu_armed.store(NEVER, Relaxed);
            timer.disarm();
        }
    }

    /// Arms the timer `delay_ns` from `now`, even if it was armed later.
    /// Context: any on the owning thread; async-signal-safe.
    pub(crate) fn arm_retry(&self, now: u64, delay_ns: u64) {
        if let Some(timer) = &self.timer {
            let at = now.saturating_add(delay_ns);
            self.armed.store(at, Relaxed);
            timer.arm_at(at);
        }
    }
}

/// The earliest deadline along the running chain from `lpf` to the root.
pub(crate) fn effective_deadline(lpf: &Lpf) -> u64 {
    lpf.chain()
        .map(|node| node.deadline.load(Relaxed))
        .min()
        .unwrap_or(NEVER)
}

/// What a deadline check of the running chain decides.
pub(crate) enum Decision<'a> {
    /// No deadline on the chain has passed.
    NotExpired,
    /// A deadline passed, but an LPF of the chain is in a `nopreempt` section (or runtime
    /// code) that covers every expired one: its `pending` flag is set, and the end of its
    /// section decides again.
    Deferred,
    /// Pause the chain from the leaf up to this LPF (the outermost expired one that no
    /// section covers). The safe-point rule still has to agree.
    Pause(&'a Lpf),
}

/// Decides what a deadline check of the running chain from `leaf` does at `now`, honouring
/// the `nopreempt` section of every function on the chain: a function inside a section is
/// never paused, neither alone nor as part of a chain, so the pause can only stop below it,
/// and an expired deadline at or above it waits for the section's end (its `pending` flag).
/// The leaf is in a section when its counter is non-zero; an enclosing function always holds
/// one unit while it waits in `resume` (rule 3 of the module docs), so it is in a section
/// when its counter exceeds one. Context: signal handler or the leaf's own stack;
/// async-signal-safe.
pub(crate) fn decide(leaf: &Lpf, now: u64) -> Decision<'_> {
    let mut target = None;
    for (depth, node) in leaf.chain().enumerate() {
        let held = node.nopreempt.load(Relaxed);
        let in_section = if depth == 0 { held > 0 } else { held > 1 };
        if in_section {
            let covered = node.chain().any(|above| above.deadline_passed(now));
            if covered {
                node.pending.store(true, Relaxed);
            }
            return match (target, covered) {
                (Some(target), _) => Decision::Pause(target),
                (None, true) => Decision::Deferred,
                (None, false) => Decision::NotExpired,
            };
        }
        if node.deadline_passed(now) {
            target = Some(node);
        }
    }
    target.map_or(Decision::NotExpired, Decision::Pause)
}
