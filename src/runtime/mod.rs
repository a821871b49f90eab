//! The runtime: the per-thread state, the switch into and out of functions, the preemption
//! handler, and the sections code inside a function uses.
//!
//! # Files, by the context their code runs in
//!
//! | module | what | context |
//! | --- | --- | --- |
//! | `timers` | the table that tells the handler which runtime a timer signal is for | **signal handler**; caller |
//! | `restarts` | the handler's last step: restarting a system call our signal interrupted | **signal handler** |
//! | `control` | control block [`Lpf`], states, chains, per-thread `Runtime`, the running-function accessor | any |
//! | `deadlines` | when a wall or CPU budget has run out, the expiry decision, arming the thread's timers | **signal handler**; function stack; caller |
//! | `transfer` | `leave`: switch from a function back to its resumer | function stack, **also the signal handler** |
//! | `preempt` | the timer handler, deferral, redirects (design essay) | **signal handler**; function stack |
//! | `ending` | where a pending preemption takes effect: a section's end, a redirected return | function stack |
//! | `exit` | a function's end after its closure, and a cancellation that needs no unwinding | function stack |
//! | `sections` | `pause`, `checkpoint`, `nopreempt`, `NoPreempt`, runtime sections | function stack |
//! | `process` | handler installation, fork hooks, the stack-overflow fault handler, signal-handler detection | caller; **signal handler** (faults) |
//! | `stacks` | taking and returning stacks | caller or function stack |
//! | `startup` | each thread's runtime, created on first use | caller |
//! | `call` | `resume`, migration, a function's entry and finish | caller; function stack |
//!
//! Each module uses only those above it in this list (`timers` and `restarts` use none of them).
//! Code the signal handler may reach (`transfer`, `preempt`, `deadlines`, the `control` accessors, and
//! everything they call in `sys`, `arch` and `safepoint`) is async-signal-safe: no
//! allocation, no locks, no thread-local access but the constant `CURRENT` slot.
//!
//! # Contexts and who may touch what
//!
//! A kernel thread runs one *context* at a time: its own (the "root"), or one LPF. The
//! runtime's `current` names the innermost LPF running (null for the root). Every field of
//! the state is touched only by code on the owning thread: ordinary code, or the preemption
//! signal handler interrupting it.
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

mod call;
mod control;
mod deadlines;
mod ending;
mod exit;
mod preempt;
mod process;
mod restarts;
mod sections;
mod stacks;
mod startup;
mod timers;
mod transfer;

pub(crate) use call::{Outcome, detach_nested, prepare, request_cancel, resume};
pub(crate) use control::{Lpf, state, with_running};
pub(crate) use exit::calls_closure_directly;
pub(crate) use preempt::{check_running_stack, handler_intact, redirects_enabled};
pub(crate) use process::{in_signal_handler, refuse_in_signal_handler};
pub use sections::{NoPreempt, checkpoint, in_preemptible, nopreempt, pause};
pub(crate) use sections::{RuntimeSection, yield_without_unwinding};
pub(crate) use startup::{private_tls, runtime, runtime_if_started};
