//! A signal disposition as the kernel keeps it, and a cell that holds one and can be read
//! from a signal handler.

use core::ffi::c_int;
use core::sync::atomic::{
    AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering::Acquire, Ordering::Relaxed,
    Ordering::Release, fence,
};

use crate::real;

/// The flag glibc's `sigaction` adds to every action it installs (its own return
/// trampoline); x86-64's value.
pub(crate) const SA_RESTORER: c_int = 0x0400_0000;

/// glibc's historical, no-op `SA_INTERRUPT`, which `sysv_signal` still sets.
pub(crate) const SA_INTERRUPT: c_int = 0x2000_0000;

/// A flag bit no kernel knows (Linux's `SA_UNSUPPORTED`), to find out whether the running
/// kernel drops unknown bits from the flags it stores (Linux 5.11 and later do).
pub(crate) const SA_UNSUPPORTED: c_int = 0x400;

/// The flags x86-64 Linux keeps (its `UAPI_SA_FLAGS`); with [`KERNEL_DROPS_UNKNOWN_FLAGS`]
/// the emulation drops the others, as the kernel would.
const KNOWN_FLAGS: c_int = libc::SA_NOCLDSTOP
    | libc::SA_NOCLDWAIT
    | libc::SA_SIGINFO
    | libc::SA_ONSTACK
    | libc::SA_RESTART
    | libc::SA_NODEFER
    | libc::SA_RESETHAND
    | 0x800 // SA_EXPOSE_TAGBITS
    | SA_RESTORER;

/// Whether the running kernel drops unknown flag bits (found out once, see
/// `core_calls::take_over`).
pub(crate) static KERNEL_DROPS_UNKNOWN_FLAGS: AtomicBool = AtomicBool::new(true);

/// A disposition: what `struct sigaction` holds, with the mask cut to the kernel's 64 signals
/// (bit `n - 1` for signal `n`, the kernel's `sigset_t` on x86-64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Action {
    pub(crate) handler: usize,
    pub(crate) flags: c_int,
    pub(crate) restorer: usize,
    pub(crate) mask: u64,
}

impl Action {
    /// The default action, as the kernel reports a signal nobody has touched.
    pub(crate) const DEFAULT: Action = Action {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };

    /// What glibc's `sigaction` would hand the kernel for `act`: its flags plus
    /// `SA_RESTORER`, glibc's `restorer`, and the mask without the signals that cannot be
    /// blocked (the kernel drops those).
    pub(crate) fn as_installed(handler: usize, flags: c_int, mask: u64, restorer: usize) -> Action {
        let mut flags = flags | SA_RESTORER;
        if KERNEL_DROPS_UNKNOWN_FLAGS.load(Relaxed) {
            flags &= KNOWN_FLAGS;
        }
        Action {
            handler,
            flags,
            restorer,
            mask: mask & !(bit(libc::SIGKILL) | bit(libc::SIGSTOP)),
        }
    }

    /// [`Action::as_installed`] for a `struct sigaction` from the program.
    pub(crate) fn from_program(act: &libc::sigaction, restorer: usize) -> Action {
        Action::as_installed(
            act.sa_sigaction,
            act.sa_flags,
            first_word(&act.sa_mask),
            restorer,
        )
    }

    /// An action as the kernel returned it.
    pub(crate) fn from_kernel(act: &libc::sigaction) -> Action {
        Action {
            handler: act.sa_sigaction,
            flags: act.sa_flags,
            restorer: act.sa_restorer.map_or(0, |f| f as usize),
            mask: first_word(&act.sa_mask),
        }
    }

    /// Fills `out` the way glibc's `sigaction` fills its `oldact`.
    pub(crate) fn write_to(&self, out: &mut libc::sigaction) {
        out.sa_sigaction = self.handler;
        out.sa_flags = self.flags;
        out.sa_mask = set_of(self.mask);
        out.sa_restorer = if self.restorer == 0 {
            None
        } else {
            // SAFETY: a non-zero restorer is the address of glibc's return trampoline (or
            // whatever the kernel reported), which is what the field holds.
            Some(unsafe { core::mem::transmute::<usize, extern "C" fn()>(self.restorer) })
        };
    }

    /// The handler is a function (not `SIG_DFL` or `SIG_IGN`).
    pub(crate) fn is_function(&self) -> bool {
        self.handler != libc::SIG_DFL && self.handler != libc::SIG_IGN
    }
}

/// The mask bit of signal `signal` (1 to 64).
pub(crate) const fn bit(signal: c_int) -> u64 {
    1u64 << (signal - 1)
}

/// Signals 1 to 64 of a glibc `sigset_t` (its first word).
pub(crate) fn first_word(set: &libc::sigset_t) -> u64 {
    // SAFETY: glibc's `sigset_t` on x86-64 is an array of `unsigned long`, signal n at bit
    // n - 1 of the whole; reading its first 8 bytes is in bounds.
    unsafe {
        (set as *const libc::sigset_t)
            .cast::<u64>()
            .read_unaligned()
    }
}

/// A `sigset_t` holding the signals of `mask`.
pub(crate) fn set_of(mask: u64) -> libc::sigset_t {
    // SAFETY: an all-zero sigset_t is the empty set.
    let mut set: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: the first 8 bytes are signals 1 to 64 (see `first_word`).
    unsafe { (&raw mut set).cast::<u64>().write_unaligned(mask) };
    set
}

/// One [`Action`], readable at any time, from any thread or signal handler, without locks:
/// a sequence lock whose writers run with every signal blocked, so that no reader can
/// interrupt a writer on its own thread and wait for it forever. Writers on other threads
/// wait only for a few stores.
pub(crate) struct ActionCell {
    sequence: AtomicU32,
    handler: AtomicUsize,
    flags: AtomicI32,
    restorer: AtomicUsize,
    mask: AtomicU64,
}

impl ActionCell {
    /// A cell holding [`Action::DEFAULT`].
    pub(crate) const fn new() -> ActionCell {
        let default = Action::DEFAULT;
        ActionCell {
            sequence: AtomicU32::new(0),
            handler: AtomicUsize::new(default.handler),
            flags: AtomicI32::new(default.flags),
            restorer: AtomicUsize::new(default.restorer),
            mask: AtomicU64::new(default.mask),
        }
    }

    /// The action. Async-signal-safe.
    pub(crate) fn load(&self) -> Action {
        loop {
            let before = self.sequence.load(Acquire);
            if before & 1 == 1 {
                core::hint::spin_loop();
                continue;
            }
            let action = self.fields();
            fence(Acquire);
            if self.sequence.load(Relaxed) == before {
                return action;
            }
        }
    }

    /// Replaces the action with `change(old)`, returning the old one. Async-signal-safe.
    pub(crate) fn update(&self, change: impl FnOnce(Action) -> Action) -> Action {
        let _blocked = AllSignalsBlocked::new();
        let mut before = self.sequence.load(Relaxed);
        loop {
            if before & 1 == 0 {
                match self
                    .sequence
                    .compare_exchange_weak(before, before + 1, Acquire, Relaxed)
                {
                    Ok(_) => break,
                    Err(now) => before = now,
                }
            } else {
                core::hint::spin_loop();
                before = self.sequence.load(Relaxed);
            }
        }
        fence(Release);
        let old = self.fields();
        let new = change(old);
        self.handler.store(new.handler, Relaxed);
        self.flags.store(new.flags, Relaxed);
        self.restorer.store(new.restorer, Relaxed);
        self.mask.store(new.mask, Relaxed);
        self.sequence.store(before + 2, Release);
        old
    }

    /// Sets the action, returning the old one.
    pub(crate) fn replace(&self, new: Action) -> Action {
        self.update(|_| new)
    }

    fn fields(&self) -> Action {
        Action {
            handler: self.handler.load(Relaxed),
            flags: self.flags.load(Relaxed),
            restorer: self.restorer.load(Relaxed),
            mask: self.mask.load(Relaxed),
        }
    }
}

/// Every signal blocked on the calling thread while it lives (glibc leaves its own two
/// internal signals alone, which never touch these cells). Async-signal-safe.
struct AllSignalsBlocked(libc::sigset_t);

impl AllSignalsBlocked {
    fn new() -> AllSignalsBlocked {
        let all = set_of(u64::MAX);
        // SAFETY: an all-zero sigset_t is a valid out-parameter.
        let mut old: libc::sigset_t = unsafe { core::mem::zeroed() };
        // SAFETY: both sets are valid; glibc's own pthread_sigmask, not the program's view.
        unsafe { real::pthread_sigmask()(libc::SIG_SETMASK, &all, &mut old) };
        AllSignalsBlocked(old)
    }
}

impl Drop for AllSignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: restoring the mask saved by `new`.
        unsafe { real::pthread_sigmask()(libc::SIG_SETMASK, &self.0, core::ptr::null_mut()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_round_trip_and_drop_unblockable_signals() {
        let mask = bit(libc::SIGUSR1) | bit(libc::SIGKILL) | bit(64);
        let set = set_of(mask);
        // SAFETY: `set` is a valid sigset_t.
        unsafe {
            assert_eq!(libc::sigismember(&set, libc::SIGUSR1), 1);
            assert_eq!(libc::sigismember(&set, 64), 1);
            assert_eq!(libc::sigismember(&set, libc::SIGUSR2), 0);
        }
        assert_eq!(first_word(&set), mask);
        let installed =
            Action::as_installed(0x1234, libc::SA_SIGINFO | SA_UNSUPPORTED, mask, 0x5678);
        assert_eq!(installed.mask, bit(libc::SIGUSR1) | bit(64));
        assert_eq!(installed.flags, libc::SA_SIGINFO | SA_RESTORER);
    }

    #[test]
    fn a_cell_returns_what_was_stored() {
        let cell = ActionCell::new();
        assert_eq!(cell.load(), Action::DEFAULT);
        let action = Action {
            handler: 0x1000,
            flags: libc::SA_RESTART,
            restorer: 0x2000,
            mask: 5,
        };
        assert_eq!(cell.replace(action), Action::DEFAULT);
        assert_eq!(cell.load(), action);
        let old = cell.update(|mut a| {
            a.handler = libc::SIG_IGN;
            a
        });
        assert_eq!(old, action);
        assert_eq!(cell.load().handler, libc::SIG_IGN);
    }
}
