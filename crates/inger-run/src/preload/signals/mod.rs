//! # The timer signal, as the program sees it
//!
//! inger preempts `main` with a real-time signal (`SIGRTMAX-4` unless `INGER_SIGNAL` says
//! otherwise). Left alone, a program that sets that signal's disposition, which it has every
//! right to do (`signal(SIGRTMAX-4, SIG_DFL)`, or a tool resetting every signal), replaces
//! inger's handler, and the next timer expiry kills it. So this library keeps three views of
//! each signal the core installs a handler for:
//!
//! ```text
//!   program ──sigaction/signal/sigset/...──> emulated disposition (what it set, returned as set)
//!   core    ──sigaction (--wrap)──────────> core's disposition (inger's handler and flags)
//!   kernel  <── one real handler, `on_signal` (deliver.rs), installed with the core's flags
//!
//!   on_signal(sig, info): an expiry of one of inger's timers  ──> the core's handler
//!                         anything else (kill, sigqueue, raise,
//!                         the program's own timer)             ──> the program's disposition:
//!                                ignored: dropped;  default: the process dies of the signal;
//!                                a handler: called with its mask and flags
//! ```
//!
//! Who is calling is decided at link time, not guessed at run time: the core is linked into
//! this library with `--wrap=sigaction` (see `build.rs`), so its calls reach `__wrap_sigaction`
//! (`core_calls.rs`) and the program's reach the exported `sigaction` (`program_calls.rs`). A signal
//! becomes emulated when the core installs a handler on it; before that (and for every other
//! signal) all calls go straight to glibc. The library makes the core install its handlers
//! before the program's constructors run, so the program never sees the gap.
//!
//! ## What is emulated and what is real
//!
//! - **Dispositions are emulated**: `sigaction`, `__sigaction`, `signal`, `bsd_signal`,
//!   `ssignal`, `sysv_signal`, `__sysv_signal`, `sigset`, `sigignore` and `siginterrupt` on
//!   the timer signal read and write the program's view, with glibc's semantics (the flags
//!   and mask `signal` implies, `SA_RESTORER` in the flags read back, `SIGKILL`/`SIGSTOP`
//!   dropped from masks, `SA_RESETHAND` on delivery). Inger's handler stays installed.
//! - **Masks are real**: `sigprocmask` and `pthread_sigmask` (and so `sigfillset` + `SIG_BLOCK`)
//!   go to the kernel unchanged. A blocked signal is the kernel's business in more places than
//!   could be emulated faithfully: threads inherit masks, so do programs started by `exec`,
//!   `posix_spawn` and `system`; pending signals, `sigwait`, `signalfd`, `sigsuspend`, `ppoll`
//!   and `pselect` all work on the real mask. So blocking the signal really blocks it, inger's
//!   expiries included: **preemption stops while the program blocks the signal** and resumes
//!   when it unblocks it (the pending expiry arrives then). The interposers only count the
//!   calls that block it in the thread running `main`, and `--stats` says so.
//!
//! ## Limits
//!
//! - A handler installed by the program runs on the interrupted stack even with `SA_ONSTACK`,
//!   and system calls it interrupts restart as with `SA_RESTART` (inger's flags are the real
//!   ones).
//! - A program that changes the disposition with a raw `syscall(SYS_rt_sigaction, ..)`
//!   bypasses the emulation (and replaces inger's handler).
//! - The program's `SIG_IGN` for the signal is not passed on to programs it execs (they start
//!   with the default action, as after any caught handler).
//! - In the thread running `main`, `sigwait`, `sigwaitinfo`, `sigtimedwait` or a `signalfd`
//!   on a set holding the blocked signal can receive one of inger's expiries (and preemption
//!   then stops); `INGER_SIGNAL` picks another signal for such programs.
//!
//! Everything here may run in a signal handler or before `main`: no allocation, no locks
//! (the one write-side spin of [`action::ActionCell`] runs with every signal blocked, so no
//! handler can wait on it on the same thread).

pub(crate) mod action;
#[cfg(not(test))]
pub(crate) mod core_calls;
mod deliver;
#[cfg(not(test))]
pub(crate) mod program_calls;
mod table;

#[cfg(not(test))]
pub(crate) use table::forget_main_thread;
pub(crate) use table::{
    Counts, blocked_here, counts, emulated_signals, note_main_thread, on_main_thread,
};
