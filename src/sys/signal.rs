//! Signal plumbing: installing inger's handlers, the kernel's `siginfo_t` fields we read,
//! alternate signal stacks, and async-signal-safe output.

use core::ffi::c_void;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, last_errno};

/// Signature of an `SA_SIGINFO` handler.
pub(crate) type Handler = unsafe extern "C" fn(i32, *mut libc::siginfo_t, *mut c_void);

/// Installs `handler` for the preemption signal.
///
/// Flags, each for a reason:
/// - `SA_SIGINFO`: the handler needs `si_value` (the thread's runtime) and the `ucontext`
///   (the interrupted instruction).
/// - `SA_NODEFER`: the handler may leave by switching stacks rather than returning, and a
///   signal left blocked that way would never preempt the thread again. Re-entry is instead
///   guarded by a per-function "in handler" flag.
/// - `SA_RESTART`: when the handler returns without preempting, a system call it interrupted
///   restarts instead of failing with `EINTR` where the kernel allows it.
/// - no `SA_ONSTACK`: the signal frame must land on the function's own stack, since that
///   frame *is* the paused function's saved state.
/// - every catchable signal but this one blocked while the handler runs (`sa_mask`, applied
///   by the kernel with the frame, atomically): no program handler runs between a system
///   call failing with `EINTR` because of us and our decision to restart it, since that
///   handler would be the program's reason to see the call end. The handler gives the
///   interrupted mask back before it switches to other code (a pause); returning restores
///   it anyway.
///
/// # Errors
/// [`Error::SignalInUse`] when some other handler (not the default action, not ignored)
/// already owns the signal.
pub(crate) fn install_preemption_handler(signal: i32, handler: Handler) -> Result<(), Error> {
    let old = current_action(signal)?;
    let ours = handler as usize;
    if old.handler != libc::SIG_DFL && old.handler != libc::SIG_IGN && old.handler != ours {
        return Err(Error::SignalInUse { signal });
    }
    set_action_masking(
        signal,
        ours,
        libc::SA_SIGINFO | libc::SA_NODEFER | libc::SA_RESTART,
        true,
    )
}

/// Whether the preemption signal still runs `handler` (someone may have replaced it).
/// Context: caller (made before each arming of the timer, so it must leave no trace, see
/// [`current_action`]).
pub(crate) fn handler_is_installed(signal: i32, handler: Handler) -> bool {
    current_action(signal).is_ok_and(|action| action.handler == handler as usize)
}

/// The handler and flags the kernel holds for a signal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Action {
    /// `SIG_DFL`, `SIG_IGN` or the handler's address.
    pub(crate) handler: usize,
    /// `SA_*` flags.
    pub(crate) flags: u64,
}

/// Queries the disposition of `signal` and hands it to `inspect`, then wipes every copy:
/// `sigaction` returns the signal trampoline's address (`sa_restorer`) and glibc keeps a copy
/// of the kernel's record in its own frame, and a stale copy of that address on the stack
/// makes the signal-handler detection (`signal_frame`) take its slow path (an unwinder walk)
/// on every later check that finds it. The query goes through `sigaction`, not the raw
/// system call, because inger-run wraps the core's `sigaction` calls to emulate its signal.
///
/// # Errors
/// [`Error::System`] if the query failed (an invalid signal number).
pub(crate) fn with_action<R>(
    signal: i32,
    inspect: impl FnOnce(&libc::sigaction) -> R,
) -> Result<R, Error> {
    let result = query_then_wipe(signal, inspect);
    // glibc's frame, and any wrapper's, lay below this one.
    scrub_below::<QUERY_SCRUB_WORDS>();
    result
}

/// Words of dead stack (4 KiB) overwritten after each query: glibc's `sigaction` frame
/// takes a few hundred bytes, inger-run's wrapper of it about a kilobyte.
const QUERY_SCRUB_WORDS: usize = 512;

#[inline(never)]
fn query_then_wipe<R>(
    signal: i32,
    inspect: impl FnOnce(&libc::sigaction) -> R,
) -> Result<R, Error> {
    // SAFETY: a zeroed sigaction is a valid out-parameter.
    let mut action: libc::sigaction = unsafe { core::mem::zeroed() };
    // SAFETY: querying with a null new action changes nothing.
    let queried = unsafe { libc::sigaction(signal, core::ptr::null(), &mut action) } == 0;
    let result = if queried {
        Ok(inspect(&action))
    } else {
        Err(Error::System {
            call: "sigaction",
            errno: last_errno(),
        })
    };
    let bytes = (&raw mut action).cast::<u8>();
    for index in 0..core::mem::size_of::<libc::sigaction>() {
        // SAFETY: `index` is inside our own local; volatile so the writes are kept.
        unsafe { core::ptr::write_volatile(bytes.add(index), 0) };
    }
    result
}

/// The handler and flags of `signal` (see [`with_action`]).
///
/// # Errors
/// [`Error::System`] if the query failed (an invalid signal number).
pub(crate) fn current_action(signal: i32) -> Result<Action, Error> {
    with_action(signal, |action| Action {
        handler: action.sa_sigaction,
        flags: action.sa_flags as u64,
    })
}

/// Overwrites 16 KiB of dead stack below the caller's frame with zeros: what the functions
/// it called left there (glibc's `sigaction` keeps the signal trampoline's address in its
/// frame, see [`with_action`]). Context: caller, after such calls.
pub(crate) fn scrub_dead_stack() {
    scrub_below::<2048>();
}

/// Overwrites `WORDS` 8-byte words of dead stack below the caller's frame with zeros.
#[inline(never)]
fn scrub_below<const WORDS: usize>() {
    let mut area = core::mem::MaybeUninit::<[u64; WORDS]>::uninit();
    let words = area.as_mut_ptr().cast::<u64>();
    for index in 0..WORDS {
        // SAFETY: `index` is inside our own local array; volatile so the writes are kept.
        unsafe { core::ptr::write_volatile(words.add(index), 0) };
    }
}

/// The handlers for SIGSEGV and SIGBUS that were in place before ours, for chaining.
static PREVIOUS_SEGV: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
static PREVIOUS_SEGV_FLAGS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

fn fault_index(signal: i32) -> usize {
    if signal == libc::SIGSEGV { 0 } else { 1 }
}

/// Installs `handler` for SIGSEGV and SIGBUS (stack-overflow reporting), remembering the
/// previous handlers for [`chain_fault`].
///
/// Flags: `SA_SIGINFO` for the fault address; `SA_ONSTACK` because the faulting stack is
/// exhausted; `SA_NODEFER` so that chaining to the default action by re-raising works.
pub(crate) fn install_fault_handler(handler: Handler) -> Result<(), Error> {
    for signal in [libc::SIGSEGV, libc::SIGBUS] {
        let old = current_action(signal)?;
        if old.handler == handler as usize {
            continue;
        }
        PREVIOUS_SEGV[fault_index(signal)].store(old.handler, Ordering::Relaxed);
        PREVIOUS_SEGV_FLAGS[fault_index(signal)].store(old.flags as usize, Ordering::Relaxed);
        set_action(
            signal,
            handler as usize,
            libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER,
        )?;
    }
    Ok(())
}

/// Hands a fault that is not ours to whoever handled it before us. Async-signal-safe.
///
/// # Safety
/// Must be called from the fault handler with its own arguments.
pub(crate) unsafe fn chain_fault(signal: i32, info: *mut libc::siginfo_t, ucontext: *mut c_void) {
    let previous = PREVIOUS_SEGV[fault_index(signal)].load(Ordering::Relaxed);
    let flags = PREVIOUS_SEGV_FLAGS[fault_index(signal)].load(Ordering::Relaxed) as i32;
    if previous == libc::SIG_DFL || previous == libc::SIG_IGN {
        // Restore the default action. For a real fault, returning runs the faulting
        // instruction again and the kernel applies the default action (a core dump) to it. A
        // signal sent with kill/raise/sigqueue (si_code <= 0) has no faulting instruction, so
        // it is raised again. A failure to restore cannot be reported; a real fault then
        // simply repeats into our handler.
        let _ = set_action(signal, previous, 0);
        // SAFETY: `info` is the kernel's siginfo for this delivery.
        if unsafe { si_code(info) } <= 0 && previous == libc::SIG_DFL {
            // SAFETY: raise is async-signal-safe; the signal is not blocked (SA_NODEFER).
            unsafe { libc::raise(signal) };
        }
    } else if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous owner installed this as an SA_SIGINFO handler.
        let previous: Handler = unsafe { core::mem::transmute::<usize, Handler>(previous) };
        // SAFETY: we forward the kernel's own arguments.
        unsafe { previous(signal, info, ucontext) };
    } else {
        // SAFETY: the previous owner installed this as a plain handler.
        let previous: extern "C" fn(i32) =
            unsafe { core::mem::transmute::<usize, extern "C" fn(i32)>(previous) };
        previous(signal);
    }
}

fn set_action(signal: i32, action: usize, flags: i32) -> Result<(), Error> {
    set_action_masking(signal, action, flags, false)
}

/// [`set_action`], with every catchable signal but `signal` itself blocked while the handler
/// runs if `hold_program_signals`.
fn set_action_masking(
    signal: i32,
    action: usize,
    flags: i32,
    hold_program_signals: bool,
) -> Result<(), Error> {
    // SAFETY: a zeroed sigaction is valid; we fill in the fields we need.
    let mut new: libc::sigaction = unsafe { core::mem::zeroed() };
    new.sa_sigaction = action;
    new.sa_flags = flags;
    // SAFETY: `new.sa_mask` is a valid sigset to fill or empty, and to remove members from.
    unsafe {
        if hold_program_signals {
            libc::sigfillset(&mut new.sa_mask);
            for never in NEVER_HELD.into_iter().chain([signal]) {
                libc::sigdelset(&mut new.sa_mask, never);
            }
        } else {
            libc::sigemptyset(&mut new.sa_mask);
        }
    }
    // SAFETY: `new` is fully initialised; installing a handler is what we intend.
    if unsafe { libc::sigaction(signal, &new, core::ptr::null_mut()) } != 0 {
        return Err(Error::System {
            call: "sigaction",
            errno: last_errno(),
        });
    }
    Ok(())
}

/// `si_code` of a signal. Async-signal-safe.
///
/// # Safety
/// `info` must be the kernel-written `siginfo_t` of a running handler.
pub(crate) unsafe fn si_code(info: *const libc::siginfo_t) -> i32 {
    // SAFETY: per the contract, `info` is readable.
    unsafe { (*info).si_code }
}

/// `si_value` and `si_timerid` of a timer signal (`si_code == SI_TIMER`): the value the
/// timer was created with, and the kernel's id of the timer. Async-signal-safe.
///
/// # Safety
/// `info` must be the `siginfo_t` of a running handler for a POSIX timer expiry.
pub(crate) unsafe fn timer_fields(info: *const libc::siginfo_t) -> (usize, i32) {
    /// The kernel's layout of a timer's `siginfo_t` on x86-64 (`_sifields._timer`): the
    /// union starts at offset 16, and the `libc` crate has no accessor for the timer id.
    #[repr(C)]
    struct TimerInfo {
        signo: i32,
        errno: i32,
        code: i32,
        _padding: i32,
        timer_id: i32,
        overrun: i32,
        value: usize,
    }
    const _: () =
        assert!(core::mem::size_of::<TimerInfo>() <= core::mem::size_of::<libc::siginfo_t>());
    // SAFETY: per the contract, `info` is readable and its union holds a timer's fields,
    // laid out as above.
    let fields = unsafe { &*info.cast::<TimerInfo>() };
    (fields.value, fields.timer_id)
}

/// `si_addr` of a fault signal. Async-signal-safe.
///
/// # Safety
/// `info` must be the `siginfo_t` of a running SIGSEGV/SIGBUS handler.
pub(crate) unsafe fn fault_address(info: *const libc::siginfo_t) -> usize {
    // SAFETY: per the contract, `info` is readable and holds a fault's fields.
    unsafe { (*info).si_addr() as usize }
}

/// The calling thread's signal mask and alternate signal stack (`None` if it could not be
/// queried), for a signal frame that will be returned from on this thread.
/// Async-signal-safe.
pub(crate) fn thread_signal_state() -> (libc::sigset_t, Option<libc::stack_t>) {
    // SAFETY: zeroed sigset/stack_t are valid out-parameters; both calls only query.
    unsafe {
        let mut mask: libc::sigset_t = core::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_SETMASK, core::ptr::null(), &mut mask);
        let mut stack: libc::stack_t = core::mem::zeroed();
        let queried = libc::sigaltstack(core::ptr::null(), &mut stack) == 0;
        (mask, queried.then_some(stack))
    }
}

/// Blocks `signal` on the calling thread (an exiting thread stops taking timer expiries).
pub(crate) fn block_on_this_thread(signal: i32) {
    // SAFETY: a sigset filled with one signal; blocking only changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, core::ptr::null_mut());
    }
}

/// Signals the preemption handler never holds back: faults (the kernel kills a thread that
/// blocks one and raises it).
const NEVER_HELD: [i32; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGTRAP,
];

/// The kernel's signal-set bit of `signal` (signal n at bit n - 1).
const fn kernel_bit(signal: i32) -> u64 {
    1 << (signal - 1)
}

/// Blocks every catchable signal but `own` on the calling thread, from inside the handler
/// of `own` (as its `sa_mask` did when it began; again after a resume that switched back into
/// it): no program handler runs from here until the handler returns (`sigreturn` restores
/// the interrupted context's mask from its frame) or calls [`release_held_signals`]. Whether
/// the mask could be set. Async-signal-safe.
pub(crate) fn hold_program_signals(own: i32) -> bool {
    let never_blocked = NEVER_HELD
        .into_iter()
        .chain([own])
        .fold(0, |set, signal| set | kernel_bit(signal));
    let block: u64 = !never_blocked;
    // SAFETY: the kernel's 8-byte set, valid for the call; blocking only changes this
    // thread's mask.
    let blocked = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK,
            &raw const block,
            core::ptr::null_mut::<u64>(),
            8usize,
        )
    };
    blocked == 0
}

/// The signal mask of the context the running handler interrupted (the kernel's 64 bits).
///
/// # Safety
/// `ucontext` is the running handler's.
unsafe fn interrupted_mask(ucontext: *mut c_void) -> u64 {
    // SAFETY: `ucontext` is the kernel's `ucontext_t` (our contract); glibc's `sigset_t`
    // begins with the kernel's 64 bits.
    unsafe {
        core::ptr::read_unaligned(
            (&raw const (*ucontext.cast::<libc::ucontext_t>()).uc_sigmask).cast::<u64>(),
        )
    }
}

/// Gives the thread the interrupted context's mask back (undoing the handler's `sa_mask`)
/// before the handler switches away to other code. Async-signal-safe.
///
/// # Safety
/// `ucontext` is the running handler's.
pub(crate) unsafe fn release_held_signals(ucontext: *mut c_void) {
    // SAFETY: per the contract.
    let mask = unsafe { interrupted_mask(ucontext) };
    // SAFETY: the kernel's 8-byte set, valid for the call.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &raw const mask,
            core::ptr::null_mut::<u64>(),
            8usize,
        )
    };
}

/// Whether a signal other than `own` that the interrupted context does not block is pending
/// for this thread or process, checked with program signals held (see
/// [`hold_program_signals`]) from here until the running handler returns. A system call that
/// such a signal's handler is about to interrupt must not be restarted: the program waits for
/// that handler (`pause` after `alarm`), and a restart would wait past it. Async-signal-safe:
/// two raw system calls.
///
/// # Safety
/// `ucontext` is the running handler's, and the handler returns (rather than switching away)
/// after this call.
pub(crate) unsafe fn program_signal_pending(ucontext: *mut c_void, own: i32) -> bool {
    if !hold_program_signals(own) {
        return true; // unknown: do not restart
    }
    let mut pending: u64 = 0;
    // SAFETY: the kernel's 8-byte set, valid for the call.
    if unsafe { libc::syscall(libc::SYS_rt_sigpending, &raw mut pending, 8usize) } != 0 {
        return true;
    }
    // SAFETY: per the contract.
    let interrupted = unsafe { interrupted_mask(ucontext) };
    pending & !interrupted & !kernel_bit(own) != 0
}

/// Writes `message` to stderr and aborts. Async-signal-safe; for states where continuing
/// would be unsound.
pub(crate) fn abort_with(message: &[u8]) -> ! {
    write_stderr(&[message]);
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// Writes to standard error with `write(2)`, ignoring failures. Async-signal-safe.
pub(crate) fn write_stderr(parts: &[&[u8]]) {
    for part in parts {
        let mut rest = *part;
        while !rest.is_empty() {
            // SAFETY: `rest` is a valid buffer of the given length.
            let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
            if n <= 0 {
                break;
            }
            rest = &rest[n as usize..];
        }
    }
}

/// Formats `value` in decimal into `buffer` without allocating; returns the digits.
pub(crate) fn decimal(mut value: u64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    &buffer[at..]
}

/// The calling thread's `errno`. Async-signal-safe.
pub(crate) fn errno() -> i32 {
    // SAFETY: __errno_location always returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's `errno`. Async-signal-safe.
pub(crate) fn set_errno(value: i32) {
    // SAFETY: __errno_location always returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() = value };
}

/// An alternate signal stack installed by inger for a thread that had none, so that a
/// stack overflow inside a preemptible function can still be reported. Removed on drop.
pub(crate) struct AltStack {
    base: *mut c_void,
    size: usize,
}

impl AltStack {
    /// Installs one if the calling thread has no alternate signal stack; `None` if it had one.
    pub(crate) fn ensure() -> Option<AltStack> {
        // SAFETY: a zeroed stack_t is a valid out-parameter.
        let mut current: libc::stack_t = unsafe { core::mem::zeroed() };
        // SAFETY: querying with a null new stack changes nothing.
        if unsafe { libc::sigaltstack(core::ptr::null(), &mut current) } != 0
            || current.ss_flags & libc::SS_DISABLE == 0
        {
            return None;
        }
        let size = 64 * 1024;
        // SAFETY: an anonymous private mapping has no preconditions.
        let base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let stack = libc::stack_t {
            ss_sp: base,
            ss_flags: 0,
            ss_size: size,
        };
        // SAFETY: `stack` describes a live mapping owned by the returned value.
        if unsafe { libc::sigaltstack(&stack, core::ptr::null_mut()) } != 0 {
            // SAFETY: unmapping the mapping we just made.
            unsafe { libc::munmap(base, size) };
            return None;
        }
        Some(AltStack { base, size })
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let disable = libc::stack_t {
            ss_sp: core::ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: disabling first, so the kernel no longer refers to the mapping we unmap.
        unsafe {
            libc::sigaltstack(&disable, core::ptr::null_mut());
            libc::munmap(self.base, self.size);
        }
    }
}
