//! Process-wide machinery installed once: the preemption handler, the fault handler that
//! reports stack overflows, and the fork hooks that hand the calling chain's stacks down to a
//! child.
//!
//! Context: [`install_process_handlers`] runs in the caller's context, once; [`on_fault`] is
//! a **signal handler** on the alternate signal stack (async-signal-safe: `write` and
//! `abort` only); the fork hooks run in the forking thread's context, whatever is installed.

use core::ffi::c_void;
use std::sync::OnceLock;

use super::control::{Lpf, with_running};
use super::preempt;
use crate::config::settings;
use crate::error::Error;
use crate::safepoint;
use crate::stack::GUARD_SIZE;
use crate::sys::signal::{self, abort_with};
use crate::sys::{memory, process, signal_frame};

static HANDLERS: OnceLock<Result<(), Error>> = OnceLock::new();

/// Installs the preemption and fault handlers once per process, and builds the module table
/// beforehand (the handler never builds it).
pub(super) fn install_process_handlers() -> Result<(), Error> {
    HANDLERS
        .get_or_init(|| {
            let settings = settings()?;
            safepoint::tables::init();
            process::at_fork(before_fork, after_fork_in_parent);
            signal::install_fault_handler(on_fault)?;
            // glibc installed our fault handler with its signal trampoline, which the
            // signal-handler detection looks for.
            signal_frame::learn_trampoline();
            if settings.preemption {
                super::ending::enable_redirects(
                    crate::stack::slot_size(settings.stack_size),
                    settings.redirect,
                );
                preempt::install_handler(settings.signal)?;
            }
            // glibc's `sigaction` left the trampoline's address in the dead stack below us.
            signal::scrub_dead_stack();
            Ok(())
        })
        .clone()
}

/// Whether the caller runs inside a signal handler (see `sys::signal_frame` for how, and its
/// limits). Context: caller, function stack, or any signal handler.
pub(crate) fn in_signal_handler() -> bool {
    signal_frame::in_signal_handler(super::sections::in_preemptible())
}

/// Refuses work that is not async-signal-safe (allocation, locks) when the caller runs in a
/// signal handler. Called on slow paths only; the fast paths of launch and resume are
/// async-signal-safe and guarded by [`Runtime::busy`](super::control::Runtime::busy).
///
/// # Errors
/// [`Error::InSignalHandler`] inside a handler.
pub(crate) fn refuse_in_signal_handler() -> Result<(), Error> {
    if in_signal_handler() {
        Err(Error::InSignalHandler)
    } else {
        Ok(())
    }
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
    with_running(|running| {
        for lpf in running.chain() {
            let low = lpf.stack_low - GUARD_SIZE;
            memory::fork_inherit(low, lpf.stack_high - low, inherit);
        }
    });
}

/// More than a kernel signal frame with a full XSAVE area (about 3 KiB with AVX2, 11 KiB with
/// AVX-512) plus the handler's own frames.
const SIGNAL_FRAME_ROOM: usize = 32 * 1024;

/// SIGSEGV/SIGBUS handler: reports a stack overflow in a preemptible function, chains
/// everything else. Context: signal handler, on the alternate signal stack.
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
    with_running(|running| {
        let overflowed = running.chain().find(|lpf| {
            let guard_low = lpf.stack_low.saturating_sub(GUARD_SIZE);
            let in_guard = address < lpf.stack_low && address >= guard_low;
            let frame_did_not_fit =
                kernel_sent && sp >= guard_low && sp < lpf.stack_low + SIGNAL_FRAME_ROOM;
            in_guard || frame_did_not_fit
        });
        if let Some(lpf) = overflowed {
            report_overflow(lpf);
        }
    });
    // SAFETY: forwarding our own arguments from inside the fault handler.
    unsafe { signal::chain_fault(signal, info, ucontext) };
}

/// Reports a stack overflow of `lpf` and aborts. Async-signal-safe.
fn report_overflow(lpf: &Lpf) -> ! {
    let mut digits = [0u8; 20];
    let size = signal::decimal((lpf.stack_high - lpf.stack_low) as u64, &mut digits);
    signal::write_stderr(&[
        b"inger: stack overflow in a preemptible function (its stack is ",
        size,
        b" bytes); raise INGER_STACK_SIZE or inger::Config::stack_size\n",
    ]);
    abort_with(b"")
}
