//! # inger: lightweight preemptible functions
//!
//! [`launch`]`(f, budget)` calls `f` on its own stack, on the calling thread. If `f` is still
//! running when its budget expires, a timer signal pauses it at a safe point and `launch`
//! returns a [`Continuation`]: [`resume`] it later for more budget, or drop it to cancel it.
//! Inside `f`, [`pause`] yields cooperatively.
//!
//! ```
//! use std::time::Duration;
//!
//! // Completes within its budget.
//! let linger = inger::launch(|| 2 + 2, Duration::from_millis(10))?;
//! assert_eq!(linger.completion(), Some(4));
//!
//! // Runs out of budget, is paused, and is resumed until it finishes.
//! let mut linger = inger::launch(|| {
//!     let mut count = 0u64;
//!     for _ in 0..50_000_000u64 { count = std::hint::black_box(count + 1); }
//!     count
//! }, Duration::from_micros(100))?;
//! while linger.is_continuation() {
//!     inger::resume(&mut linger, Duration::from_millis(1))?;
//! }
//! assert_eq!(linger.completion(), Some(50_000_000));
//! # Ok::<(), inger::Error>(())
//! ```
//!
//! This is a new implementation of the abstraction of libinger (Boucher et al., "Lightweight
//! Preemptible Functions", USENIX ATC 2020) for current stable Rust and stock glibc, with no
//! limit on the number of concurrent functions. See `DESIGN.md` for the architecture and the
//! safety model; the module docs of the preemption code explain the mechanism.
//!
//! ## What "same thread" means here
//!
//! A preemptible function runs on its caller's kernel thread, so it deadlocks if it waits for
//! a lock its caller holds (and vice versa). It has its own thread-local storage (errno, Rust
//! `thread_local!`s, C `__thread` variables, pthread keys), as code on another thread would,
//! so a [`Continuation`] is `Send` and may be resumed on any thread
//! ([`capabilities`] reports the fallback where glibc's internals are not found).
//!
//! ## Safe points and cancellation
//!
//! A function is paused only where no frame of its stack is in non-reentrant code (libc, the
//! loader, the standard library's critical sections, libraries you name, [`nopreempt`]
//! sections); see [`mark_non_preemptible`] and [`stats`]. Dropping a paused continuation
//! discards its stack without running destructors;
//! [`Continuation::cancel_cooperatively`] unwinds it instead.

//!
//! ## Platform
//!
//! x86-64 Linux with glibc only. Settings: see [`Config`].
//!
//! ## Map of the code
//!
//! Each module, the execution context its code runs in, and what it may call. A module calls
//! only modules below it in this table (`runtime`'s own files are layered the same way, see
//! its docs); nothing outside `sys` and `arch` calls the operating system, touches glibc's
//! internals, a `ucontext` or the fs base.
//!
//! | module | what | context | may call |
//! | --- | --- | --- | --- |
//! | `future`, `pool` | preemptible futures; a preemptive pool of threads | caller | the public API |
//! | `linger` | the public state machine: [`launch`], [`Linger`], [`Continuation`], [`resume`] | caller | `runtime`, `stack` |
//! | `runtime` | per-thread state, switching, the preemption handler, sections, start-up | caller, function stack, **signal handler** | everything below |
//! | `safepoint` | the whole-stack rule and the tables it reads (a leaf: it walks the stacks it is given) | **signal handler**; tables built by the caller | `arch`, `sys`, `config` |
//! | `libset` | [`Libset`]: per-function copies of a named library, routing of its calls, renewal on cancellation | caller; routed calls on the function stack | `runtime`, `sys`, `arch` |
//! | `stack` | mapped, guarded, pooled stacks | caller, function stack | `sys`, `config` |
//! | `stats` | counters and [`stats`] (a leaf) | any; bumped by the signal handler | nothing |
//! | `config` | [`Config`] and every `INGER_*` variable | caller | `sys` |
//! | `error` | [`Error`] | any | nothing |
//! | `budget` | [`Budget`], [`Clock`]: how long, on which clock | caller | nothing |
//! | `sys` | clocks, timers, signals, memory, processes, the module table, glibc's TLS internals, signal-frame detection | any; each function says | the OS, glibc |
//! | `arch` | the context switch, fresh stacks, register sets, `ucontext` access, the fs base | any; async-signal-safe | nothing |
//!
//! Code reachable from the signal handler (`runtime::preempt`, `runtime::transfer`, the
//! accessors of `runtime::control`, `safepoint`'s check, and what they call in `sys` and
//! `arch`) is async-signal-safe: no allocation, no locks. Functions that run in more than one
//! context say which in a `Context:` line of their docs.

// gdb runs this script when it loads a program linked with inger (see the README's
// "Debugging and profiling"): inger's timer signal passes silently, and backtraces name the
// function entry they cross.
#![debugger_visualizer(gdb_script_file = "gdb/inger_gdb.py")]

mod arch;
#[doc(hidden)]
pub mod bench_hooks;
mod budget;
mod config;
mod error;
pub mod future;
mod libset;
mod linger;
pub mod pool;
mod runtime;
mod safepoint;
pub mod scope;
mod stack;
mod stats;
mod sys;

pub use budget::{Budget, Clock};
pub use config::{Config, MIN_STACK_SIZE, preemption_enabled};
pub use error::Error;
pub use libset::{Libset, LibsetStats, MAX_ROUTED_FUNCTIONS, Routing};
pub use linger::{CancelOutcome, Cancelled, Continuation, Linger, launch, resume};
pub use runtime::{NoPreempt, checkpoint, in_preemptible, nopreempt, pause};
pub use scope::{Scope, scope};
pub use stats::{Stats, stats};

/// What this process's inger can do (see [`capabilities`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Each function has its own thread-local storage, and continuations may be resumed on
    /// any thread. False when glibc's TLS internals were not found (or `INGER_SHARED_TLS=1`):
    /// functions then share their caller's thread-locals except errno, which is saved per
    /// function, and continuations can only be resumed on their launching thread.
    pub private_tls: bool,
    /// The fs base is switched with `wrfsbase` (else the slower `arch_prctl` system call).
    pub fast_tls_switch: bool,
    /// Timer preemption is on (false under `INGER_PREEMPT=0`).
    pub preemption: bool,
    /// The standard library's critical sections were found in the executable's symbol table
    /// (false for a stripped executable: then only the library and `nopreempt` rules apply).
    pub std_critical_sections: bool,
    /// A deadline that passes inside a critical section (a libc call, a standard-library
    /// section, a library named non-preemptible) takes effect the moment the section
    /// returns, by redirecting its return (false with a hardware shadow stack, or under
    /// `INGER_REDIRECT=0`: such preemptions then wait for a retry to land outside).
    pub section_end_preemption: bool,
}

/// Reports what this process's inger can do.
///
/// ```
/// let caps = inger::capabilities();
/// println!("private TLS: {}", caps.private_tls);
/// ```
pub fn capabilities() -> Capabilities {
    Capabilities {
        private_tls: runtime::private_tls().is_some(),
        fast_tls_switch: arch::fsgsbase_available(),
        preemption: config::preemption_enabled(),
        std_critical_sections: {
            safepoint::tables::init();
            safepoint::tables::current().is_some_and(|tables| tables.std_symbols)
        },
        section_end_preemption: config::preemption_enabled()
            && runtime::runtime().is_ok()
            && runtime::redirects_enabled(),
    }
}

/// Declares a library whose code must never be paused (like libc): a function is not paused
/// while any frame of its stack is in that library. `name` is the library's file name or a
/// prefix of it (`"libsqlite3"` matches `libsqlite3.so.0`). Also read, comma-separated, from
/// `INGER_NONPREEMPTIBLE` at start-up.
///
/// ```
/// inger::mark_non_preemptible("libsqlite3");
/// ```
pub fn mark_non_preemptible(name: &str) {
    // The tables' locks are held with preemption deferred: a function paused while it held
    // one would block its caller's next call for good.
    let _section = runtime::RuntimeSection::enter();
    safepoint::tables::init();
    safepoint::tables::mark_non_preemptible(name);
}

/// Declares code linked into the program that must never be paused, by the prefix of its
/// demangled Rust path: a function is not paused while any frame of its stack is in a function
/// whose path starts with one of `prefixes`. Use it for libraries with internal locks that the
/// caller may need while a function is paused (an async runtime's timer wheel and scheduler,
/// `parking_lot`). Needs the executable's symbol table (see
/// [`Capabilities::std_critical_sections`]). Also read, comma-separated, from
/// `INGER_NONPREEMPTIBLE_SYMBOLS` at start-up.
///
/// ```
/// inger::mark_non_preemptible_symbols(&["parking_lot", "my_crate::cache"]);
/// ```
pub fn mark_non_preemptible_symbols(prefixes: &[&str]) {
    // As in `mark_non_preemptible`: never paused while holding the tables' locks.
    let _section = runtime::RuntimeSection::enter();
    safepoint::tables::init();
    safepoint::tables::mark_non_preemptible_symbols(prefixes);
}

/// Whether the caller runs inside a signal handler, as far as inger can tell: it looks for a
/// kernel signal frame among the caller's frames (with libgcc's unwinder, behind a cheap
/// scan of the thread's stack). [`launch`], [`resume`] and cancellation refuse to run there
/// ([`Error::InSignalHandler`]); dropping a paused continuation inside a handler leaks it.
/// Frames without unwind information (hand-written assembly, some JIT code) end the search
/// early, so a handler reached through them is not recognised.
///
/// ```
/// assert!(!inger::in_signal_handler());
/// ```
pub fn in_signal_handler() -> bool {
    runtime::in_signal_handler()
}

/// Whether inger's signal handler still owns the preemption signal (someone calling
/// `sigaction` on it after inger started would silently disable preemption).
pub fn preemption_handler_intact() -> bool {
    runtime::handler_intact()
}
