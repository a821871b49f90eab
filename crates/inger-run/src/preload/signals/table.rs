//! The emulation's state: per signal, the core's and the program's dispositions; inger's
//! timers; the thread running `main`; and the counters `--stats` reports.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{
    AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering::Acquire, Ordering::Relaxed,
    Ordering::Release,
};

use super::action::{ActionCell, bit, first_word};
use crate::real;

/// One more than the highest signal number (glibc's `_NSIG` on Linux).
pub(crate) const NSIG: usize = 65;

/// A signal the core owns.
pub(crate) struct Emulated {
    /// The core installed a handler: from then on the program's calls are emulated.
    active: AtomicBool,
    /// The core's disposition (what it last set through `sigaction`).
    pub(crate) core: ActionCell,
    /// The program's disposition.
    pub(crate) program: ActionCell,
    /// The program asked `siginterrupt(sig, 1)`: `signal` then installs without
    /// `SA_RESTART` (glibc keeps this bit per signal).
    pub(crate) interrupt: AtomicBool,
}

impl Emulated {
    const fn new() -> Emulated {
        Emulated {
            active: AtomicBool::new(false),
            core: ActionCell::new(),
            program: ActionCell::new(),
            interrupt: AtomicBool::new(false),
        }
    }

    /// Marks the signal emulated (after both cells are filled).
    pub(crate) fn activate(&self) {
        self.active.store(true, Release);
    }
}

static SIGNALS: [Emulated; NSIG] = [const { Emulated::new() }; NSIG];

/// The state of `signal` if the core owns it (its dispositions are emulated). Async-signal-safe.
pub(crate) fn emulated(signal: c_int) -> Option<&'static Emulated> {
    let entry = slot(signal)?;
    entry.active.load(Acquire).then_some(entry)
}

/// The state of `signal`, emulated or not yet; `None` for a number that is not a signal.
pub(crate) fn slot(signal: c_int) -> Option<&'static Emulated> {
    SIGNALS.get(usize::try_from(signal).ok().filter(|&s| s > 0)?)
}

/// The emulated signals, as a mask (bit `n - 1` for signal `n`).
pub(crate) fn emulated_signals() -> u64 {
    (1..NSIG as c_int)
        .filter(|&signal| emulated(signal).is_some())
        .fold(0, |mask, signal| mask | bit(signal))
}

/// Emulated signals among those of `set` (a mask).
pub(crate) fn emulated_in(set: &libc::sigset_t) -> u64 {
    let mask = first_word(set);
    if mask == 0 {
        return 0;
    }
    mask & emulated_signals()
}

/// glibc's return trampoline for handlers (the `sa_restorer` its `sigaction` installs),
/// learned from the first real installation; reported back in emulated actions.
pub(crate) static RESTORER: AtomicUsize = AtomicUsize::new(0);

/// Room for inger's timers: one per thread that launches a function (in inger-run, only the
/// main thread, after a fork the child's copy, or after exec the new image's).
const TIMERS: usize = 16;

struct Timer {
    signal: AtomicI32,
    value: AtomicUsize,
}

static INGER_TIMERS: [Timer; TIMERS] = [const {
    Timer {
        signal: AtomicI32::new(0),
        value: AtomicUsize::new(0),
    }
}; TIMERS];
/// More timers than room: every `SI_TIMER` expiry of an emulated signal is then taken for
/// inger's (the core's own behaviour without this library).
static TIMERS_OVERFLOWED: AtomicBool = AtomicBool::new(false);
/// Some timer was recorded. Until then (a core that arms its timers some other way than
/// `timer_create`), every `SI_TIMER` expiry is taken for inger's too, so that no expiry of
/// inger's can ever meet the program's `SIG_DFL`.
static TIMERS_RECORDED: AtomicBool = AtomicBool::new(false);

/// Records a timer the core created: its expiries send `signal` with `value`.
pub(crate) fn record_timer(signal: c_int, value: *mut c_void) {
    for timer in &INGER_TIMERS {
        if timer
            .signal
            .compare_exchange(0, -1, Relaxed, Relaxed)
            .is_ok()
        {
            timer.value.store(value as usize, Relaxed);
            timer.signal.store(signal, Release);
            TIMERS_RECORDED.store(true, Release);
            return;
        }
    }
    TIMERS_OVERFLOWED.store(true, Relaxed);
}

/// Whether a delivery of `signal` with `info` is an expiry of one of inger's timers.
/// Async-signal-safe.
///
/// # Safety
/// `info` must be the kernel's `siginfo_t` of a running handler.
pub(crate) unsafe fn is_inger_expiry(signal: c_int, info: *const libc::siginfo_t) -> bool {
    // SAFETY: per the contract, `info` is readable.
    if unsafe { (*info).si_code } != libc::SI_TIMER {
        return false;
    }
    if TIMERS_OVERFLOWED.load(Relaxed) || !TIMERS_RECORDED.load(Acquire) {
        return true;
    }
    // SAFETY: for SI_TIMER the siginfo holds the timer's sigval.
    let value = unsafe { (*info).si_value() }.sival_ptr as usize;
    INGER_TIMERS
        .iter()
        .any(|t| t.signal.load(Acquire) == signal && t.value.load(Relaxed) == value)
}

/// The thread running `main` inside the preemptible function (0: none in this process).
static MAIN_TID: AtomicI32 = AtomicI32::new(0);

/// Records the calling thread as the one running `main`, and whether an emulated signal is
/// already blocked on it (inherited from the parent: preemption cannot start until the
/// program unblocks it).
pub(crate) fn note_main_thread() {
    MAIN_TID.store(gettid(), Relaxed);
    if blocked_here() != 0 {
        COUNTS.blocked_at_start.store(1, Relaxed);
    }
}

/// Forgets the thread running `main` (in a forked child, which inherits no timer and so is
/// never preempted).
pub(crate) fn forget_main_thread() {
    MAIN_TID.store(0, Relaxed);
}

/// Whether the calling thread runs `main`. Async-signal-safe.
pub(crate) fn on_main_thread() -> bool {
    let main = MAIN_TID.load(Relaxed);
    main != 0 && main == gettid()
}

/// Emulated signals blocked on the calling thread right now. Async-signal-safe.
pub(crate) fn blocked_here() -> u64 {
    // SAFETY: an all-zero sigset_t is a valid out-parameter.
    let mut current: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: a null new set only queries.
    unsafe { real::pthread_sigmask()(libc::SIG_BLOCK, core::ptr::null(), &mut current) };
    emulated_in(&current)
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// What the emulation did, for `--stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Calls by which the program set the timer signal's disposition.
    pub(crate) handler_set: u64,
    /// Deliveries of the signal (not inger's expiries) passed to the program's handler.
    pub(crate) delivered: u64,
    /// Deliveries dropped because the program's disposition ignores the signal.
    pub(crate) ignored: u64,
    /// Calls that blocked the signal on the thread running `main` (preemption waits while it
    /// is blocked).
    pub(crate) blocked: u64,
    /// 1 if the signal was already blocked when `main` started.
    pub(crate) blocked_at_start: u64,
}

struct AtomicCounts {
    handler_set: AtomicU64,
    delivered: AtomicU64,
    ignored: AtomicU64,
    blocked: AtomicU64,
    blocked_at_start: AtomicU64,
}

static COUNTS: AtomicCounts = AtomicCounts {
    handler_set: AtomicU64::new(0),
    delivered: AtomicU64::new(0),
    ignored: AtomicU64::new(0),
    blocked: AtomicU64::new(0),
    blocked_at_start: AtomicU64::new(0),
};

/// The counters so far. Async-signal-safe.
pub(crate) fn counts() -> Counts {
    Counts {
        handler_set: COUNTS.handler_set.load(Relaxed),
        delivered: COUNTS.delivered.load(Relaxed),
        ignored: COUNTS.ignored.load(Relaxed),
        blocked: COUNTS.blocked.load(Relaxed),
        blocked_at_start: COUNTS.blocked_at_start.load(Relaxed),
    }
}

/// Counts one call setting a disposition.
pub(crate) fn count_handler_set() {
    COUNTS.handler_set.fetch_add(1, Relaxed);
}

/// Counts one delivery to the program's handler.
pub(crate) fn count_delivered() {
    COUNTS.delivered.fetch_add(1, Relaxed);
}

/// Counts one delivery dropped by the program's `SIG_IGN`.
pub(crate) fn count_ignored() {
    COUNTS.ignored.fetch_add(1, Relaxed);
}

/// Counts one call that blocked the signal on the thread running `main`.
pub(crate) fn count_blocked() {
    COUNTS.blocked.fetch_add(1, Relaxed);
}
