//! The inger core's (and the Rust standard library's) calls from inside this library, sent
//! here by `--wrap` (see `build.rs`): the core sees its own disposition of its signals, and
//! its timers are recorded.

use core::ffi::{c_int, c_void};

use super::action::{Action, KERNEL_DROPS_UNKNOWN_FLAGS, SA_UNSUPPORTED, set_of};
use super::deliver::on_signal;
use super::table::{self, RESTORER};
use crate::real;
use core::sync::atomic::Ordering::Relaxed;

/// `sigaction` as the core sees it. The first time the core installs a handler on a
/// real-time signal, that signal becomes emulated: the program's view starts as the
/// disposition the core found, and `on_signal` is installed for real with the core's
/// flags and mask. From then on the core reads and writes its own disposition here.
///
/// # Safety
/// As glibc's `sigaction`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __wrap_sigaction(
    signal: c_int,
    act: *const libc::sigaction,
    oldact: *mut libc::sigaction,
) -> c_int {
    let realtime = (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&signal);
    let entry = table::slot(signal).filter(|_| realtime);
    // SAFETY: per the contract, `act` is null or valid.
    let new = unsafe { act.as_ref() };
    let Some(entry) = entry else {
        // SAFETY: forwarding the caller's own arguments.
        return unsafe { real::sigaction()(signal, act, oldact) };
    };
    if table::emulated(signal).is_none() {
        match new {
            // SAFETY: forwarding the caller's own arguments.
            Some(new) if Action::from_kernel(new).is_function() => unsafe {
                take_over(entry, signal, new, oldact)
            },
            // SAFETY: forwarding the caller's own arguments.
            _ => unsafe { real::sigaction()(signal, act, oldact) },
        }
    } else {
        let restorer = RESTORER.load(Relaxed);
        let old = match new {
            Some(new) => {
                let action = Action::from_program(new, restorer);
                if action.is_function() {
                    // SAFETY: `new` is the core's own action.
                    if unsafe { install_real(signal, new) } != 0 {
                        return -1;
                    }
                }
                entry.core.replace(action)
            }
            None => entry.core.load(),
        };
        // SAFETY: per the contract, `oldact` is null or valid.
        if let Some(out) = unsafe { oldact.as_mut() } {
            old.write_to(out);
        }
        0
    }
}

/// Makes `signal` emulated, as the core installs `new` on it.
///
/// # Safety
/// `oldact` null or valid.
unsafe fn take_over(
    entry: &table::Emulated,
    signal: c_int,
    new: &libc::sigaction,
    oldact: *mut libc::sigaction,
) -> c_int {
    // SAFETY: a zeroed sigaction is a valid out-parameter.
    let mut found: libc::sigaction = unsafe { core::mem::zeroed() };
    // SAFETY: a query changes nothing.
    if unsafe { real::sigaction()(signal, core::ptr::null(), &mut found) } != 0 {
        return -1;
    }
    // SAFETY: `new` is the core's action.
    if unsafe { install_real(signal, new) } != 0 {
        return -1;
    }
    // glibc's trampoline as it just installed it, for the actions reported back, and whether
    // this kernel drops flag bits it does not know (probed with one it never knows).
    // SAFETY: a zeroed sigaction is a valid out-parameter; a query changes nothing.
    let mut installed: libc::sigaction = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    unsafe { real::sigaction()(signal, core::ptr::null(), &mut installed) };
    let restorer = Action::from_kernel(&installed).restorer;
    RESTORER.store(restorer, Relaxed);
    let mut probe = installed;
    probe.sa_flags |= SA_UNSUPPORTED;
    let mut probed = installed;
    // SAFETY: reinstalling our own handler with one more (meaningless) flag, then as it was.
    unsafe {
        real::sigaction()(signal, &probe, core::ptr::null_mut());
        real::sigaction()(signal, core::ptr::null(), &mut probed);
        real::sigaction()(signal, &installed, core::ptr::null_mut());
    }
    KERNEL_DROPS_UNKNOWN_FLAGS.store(probed.sa_flags & SA_UNSUPPORTED == 0, Relaxed);
    entry.program.replace(Action::from_kernel(&found));
    entry.core.replace(Action::from_program(new, restorer));
    entry.activate();
    // SAFETY: per the contract.
    if let Some(out) = unsafe { oldact.as_mut() } {
        *out = found;
    }
    0
}

/// Installs [`on_signal`] for real on `signal`, with the flags and mask the core asked for
/// (and `SA_SIGINFO`, which `on_signal` needs).
///
/// # Safety
/// `core` must be the core's action for `signal`.
unsafe fn install_real(signal: c_int, core: &libc::sigaction) -> c_int {
    // SAFETY: a zeroed sigaction is valid; the fields that matter are set below.
    let mut real_action: libc::sigaction = unsafe { core::mem::zeroed() };
    real_action.sa_sigaction = on_signal as *const () as usize;
    real_action.sa_flags = core.sa_flags | libc::SA_SIGINFO;
    real_action.sa_mask = set_of(super::action::first_word(&core.sa_mask));
    // SAFETY: installing a handler of the right kind.
    unsafe { real::sigaction()(signal, &real_action, core::ptr::null_mut()) }
}

/// The core's `sigprocmask`: the real one (the program's interposer would count its calls).
///
/// # Safety
/// As glibc's `sigprocmask`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __wrap_sigprocmask(
    how: c_int,
    set: *const libc::sigset_t,
    oldset: *mut libc::sigset_t,
) -> c_int {
    // SAFETY: forwarding the caller's own arguments.
    unsafe { real::sigprocmask()(how, set, oldset) }
}

/// The core's `pthread_sigmask`: the real one.
///
/// # Safety
/// As glibc's `pthread_sigmask`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __wrap_pthread_sigmask(
    how: c_int,
    set: *const libc::sigset_t,
    oldset: *mut libc::sigset_t,
) -> c_int {
    // SAFETY: forwarding the caller's own arguments.
    unsafe { real::pthread_sigmask()(how, set, oldset) }
}

/// The core's `timer_create`: the real one, recording the signal and value of the timer so
/// that `on_signal` can tell inger's expiries from the program's own uses of the signal.
///
/// # Safety
/// As glibc's `timer_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __wrap_timer_create(
    clock: libc::clockid_t,
    event: *mut libc::sigevent,
    timer: *mut libc::timer_t,
) -> c_int {
    // SAFETY: forwarding the caller's own arguments.
    let result = unsafe { real::timer_create()(clock, event, timer) };
    // SAFETY: per the contract, `event` is null or valid.
    if let (0, Some(event)) = (result, unsafe { event.as_ref() })
        && matches!(
            event.sigev_notify,
            libc::SIGEV_SIGNAL | libc::SIGEV_THREAD_ID
        )
    {
        table::record_timer(
            event.sigev_signo,
            event.sigev_value.sival_ptr.cast::<c_void>(),
        );
    }
    result
}
