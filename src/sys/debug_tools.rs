//! What inger tells the tools its users debug and profile with: valgrind, AddressSanitizer
//! (and its LeakSanitizer), and gdb's script. The unwind information that lets backtraces
//! walk from a function into its resumer is in `arch` (the entry trampoline).
//!
//! | tool | what it needs to know | how |
//! | --- | --- | --- |
//! | valgrind | which memory is a stack, or every switch warns "client switching stacks?" and memcheck misjudges stack memory | `VALGRIND_STACK_REGISTER` for every stack when its chunk is mapped (a client request: a no-op sequence of rotates on a real CPU) |
//! | AddressSanitizer | which stack code runs on, for `__asan_handle_no_return` and the fake stacks of `detect_stack_use_after_return`, when that code can see ASan's thread state | `__sanitizer_start_switch_fiber` / `__sanitizer_finish_switch_fiber` around every switch, with shared TLS (below) |
//! | LeakSanitizer | that pointers held by paused functions keep their blocks alive | `__lsan_register_root_region` for every stack |
//! | gdb | which signal is inger's timer, to pass it silently | `inger_timer_signal` (a hidden symbol), read by the embedded script (`src/gdb/inger_gdb.py`) |
//!
//! The sanitizer entry points are looked up with `dlsym` once, when the first chunk of stacks
//! is mapped (before any function runs): they exist only in a process that loaded a sanitizer
//! run-time (a C program built with `-fsanitize=address` links `libasan` first). Without one,
//! each switch pays one load and one never-taken branch ([`asan_fibers`]).
//!
//! # AddressSanitizer and private TLS
//!
//! ASan keeps its per-thread state (stack bounds, fake stack) behind a pthread key. With
//! private TLS (the normal case) each function has its own pthread-key storage, so code inside
//! a function is, to ASan, code on a thread it does not know: it uses no fake stack there and
//! never consults the thread's stack bounds, and the thread's own state stays that of its
//! real stack, which is exactly right without any annotation. (An annotation made from inside
//! the function would even be ignored, leaving the resumer's half of it unbalanced.) With
//! shared TLS (`INGER_SHARED_TLS=1`, or glibc's internals not found) functions see the thread's
//! ASan state, so every switch is announced: the resumer announces the function's stack, the
//! function the stack of the context it returns to (an enclosing function's, or the thread's
//! own, learnt when the thread first entered a function), and each side restores its own fake
//! stack when it continues. A function that finishes lets ASan free its fake stack; one that
//! is discarded while paused keeps it (only with `detect_stack_use_after_return`).
//!
//! Context: [`init`] and [`register_stacks`]: caller. The fiber hooks: the function stack and
//! the signal handler (which leaves a function through the same switch): async-signal-safe
//! (ASan's fiber calls take no lock and allocate nothing; a dying function's fake stack is
//! unmapped, never in the handler), touching only constant-initialised thread-locals, which is
//! sound because with shared TLS every context of a thread has the thread's own block.

use core::cell::Cell;
use core::ffi::{c_char, c_void};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::Once;

/// The real-time signal inger's timer uses in this process (0 until the first stacks are
/// mapped). Read by the gdb script (`src/gdb/inger_gdb.py`) when the program stops at a
/// real-time signal, to tell inger's timer from the program's own signals; nothing in inger
/// reads it.
static TIMER_SIGNAL: AtomicI32 = AtomicI32::new(0);

// The name the script reads, `inger_timer_signal`: a hidden alias, in the symbol table for
// debuggers but not exported (`libinger.so` exports exactly the functions of its header).
core::arch::global_asm!(
    ".globl inger_timer_signal",
    ".hidden inger_timer_signal",
    ".set inger_timer_signal, {signal}",
    signal = sym TIMER_SIGNAL,
);

/// Whether the process runs under valgrind: [`UNKNOWN`] until first asked.
static ON_VALGRIND: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const NATIVE: u8 = 1;
const VALGRIND: u8 = 2;
/// AddressSanitizer's fiber hooks are in use (see the module docs).
static ASAN_FIBERS: AtomicBool = AtomicBool::new(false);
/// `__sanitizer_start_switch_fiber`, `__sanitizer_finish_switch_fiber` and
/// `__lsan_register_root_region`, or 0.
static START_SWITCH: AtomicUsize = AtomicUsize::new(0);
static FINISH_SWITCH: AtomicUsize = AtomicUsize::new(0);
static REGISTER_ROOT: AtomicUsize = AtomicUsize::new(0);

type StartSwitch = unsafe extern "C" fn(*mut *mut c_void, *const c_void, usize);
type FinishSwitch = unsafe extern "C" fn(*mut c_void, *mut *const c_void, *mut usize);
type RegisterRoot = unsafe extern "C" fn(*const c_void, usize);

/// Finds the tools present and records the timer signal for gdb. Runs once; later calls
/// return at once. Context: caller.
pub(crate) fn init(timer_signal: i32) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        TIMER_SIGNAL.store(timer_signal, Relaxed);
        let start = symbol(c"__sanitizer_start_switch_fiber");
        let finish = symbol(c"__sanitizer_finish_switch_fiber");
        REGISTER_ROOT.store(symbol(c"__lsan_register_root_region"), Relaxed);
        if start != 0 && finish != 0 {
            START_SWITCH.store(start, Relaxed);
            FINISH_SWITCH.store(finish, Relaxed);
            ASAN_FIBERS.store(true, Relaxed);
        }
    });
}

/// The address `dlsym(RTLD_DEFAULT, name)` finds, or 0.
fn symbol(name: &core::ffi::CStr) -> usize {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name has no other preconditions.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr().cast::<c_char>()) as usize }
}

/// Whether the process runs under valgrind. Context: any (async-signal-safe: the first call
/// asks valgrind with a client request, a few instructions, and caches the answer).
pub(crate) fn on_valgrind() -> bool {
    match ON_VALGRIND.load(Relaxed) {
        UNKNOWN => {
            let on = running_on_valgrind();
            ON_VALGRIND.store(if on { VALGRIND } else { NATIVE }, Relaxed);
            on
        }
        known => known == VALGRIND,
    }
}

/// Tells the tools present that `[low, high)` is a stack (each stack of a freshly mapped
/// chunk; stacks are never unmapped, so never deregistered). Context: caller.
pub(crate) fn register_stack(low: usize, high: usize) {
    if on_valgrind() {
        /// `VG_USERREQ__STACK_REGISTER` from `valgrind.h`: `(lowest byte, highest byte)`.
        const STACK_REGISTER: usize = 0x1501;
        valgrind_request(0, [STACK_REGISTER, low, high - 1, 0, 0, 0]);
    }
    let register = REGISTER_ROOT.load(Relaxed);
    if register != 0 {
        // SAFETY: the address is LeakSanitizer's `__lsan_register_root_region`, whose
        // signature this is; the region is mapped for good (its guard pages excluded).
        let register: RegisterRoot = unsafe { core::mem::transmute(register) };
        // SAFETY: as above; LeakSanitizer only reads the region, at leak-check time.
        unsafe { register(low as *const c_void, high - low) };
    }
}

/// `RUNNING_ON_VALGRIND`: non-zero under valgrind, 0 on a real CPU.
fn running_on_valgrind() -> bool {
    /// `VG_USERREQ__RUNNING_ON_VALGRIND` from `valgrind.h`.
    const RUNNING_ON_VALGRIND: usize = 0x1001;
    valgrind_request(0, [RUNNING_ON_VALGRIND, 0, 0, 0, 0, 0]) != 0
}

/// A valgrind client request: `request[0]` is the request code, the rest its arguments.
/// Returns valgrind's answer, or `default` on a real CPU, where the sequence does nothing
/// (the four rotates of rdi add up to 128 bits, and `xchg rbx, rbx` exchanges a register
/// with itself); valgrind recognises it and answers in rdx.
fn valgrind_request(default: usize, request: [usize; 6]) -> usize {
    let answer: usize;
    // SAFETY: the sequence leaves every register but rdx (the answer) and the flags as it
    // found them; valgrind only reads the six words at rax.
    unsafe {
        core::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            inout("rdx") default => answer,
            in("rax") request.as_ptr(),
            inout("rdi") 0usize => _,
            options(nostack, readonly),
        );
    }
    answer
}

thread_local! {
    /// With ASan's fiber hooks: the bounds of this thread's own stack, as ASan knew them
    /// when the thread first entered a function, for switches back to it. Constant-
    /// initialised and without destructor: a plain TLS access, fine in the signal handler.
    static ROOT_STACK: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    /// The switch in progress started from the thread's own stack (its bounds are learnt
    /// when the function lands).
    static FROM_ROOT: Cell<bool> = const { Cell::new(false) };
}

/// Whether AddressSanitizer's fiber hooks are in use: the one check every switch makes.
/// Context: any.
#[inline(always)]
pub(crate) fn asan_fibers() -> bool {
    ASAN_FIBERS.load(Relaxed)
}

/// The stack a switch goes to: `Some((lowest address, size))`, or `None` for the thread's own
/// stack.
pub(crate) type Destination = Option<(usize, usize)>;

/// Announces a switch to `to`, saving the current fake stack in `*fake_save` (or letting ASan
/// free it when `fake_save` is `None`: the current context never continues). Only with
/// [`asan_fibers`]. Context: any (async-signal-safe).
#[cold]
pub(crate) fn asan_start_switch(fake_save: Option<&mut *mut c_void>, to: Destination) {
    let (low, size) = to.unwrap_or_else(|| ROOT_STACK.get());
    let start = START_SWITCH.load(Relaxed);
    // SAFETY: only set (by `init`) to ASan's `__sanitizer_start_switch_fiber`.
    let start: StartSwitch = unsafe { core::mem::transmute(start) };
    let save = fake_save.map_or(null_mut(), |slot| slot as *mut *mut c_void);
    // SAFETY: `save` is null or a writable slot; the bounds describe the stack about to run.
    unsafe { start(save, low as *const c_void, size) };
}

/// Like [`asan_start_switch`], for a switch that leaves the thread's own stack (whose bounds
/// the landing side learns from ASan).
#[cold]
pub(crate) fn asan_start_switch_from_root(fake_save: &mut *mut c_void, to: (usize, usize)) {
    asan_start_switch(Some(fake_save), Some(to));
    FROM_ROOT.set(true);
}

/// Completes a switch on the side that now runs, restoring its fake stack `fake` (null for a
/// context that never ran). Only with [`asan_fibers`]. Context: any (async-signal-safe).
#[cold]
pub(crate) fn asan_finish_switch(fake: *mut c_void) {
    let finish = FINISH_SWITCH.load(Relaxed);
    // SAFETY: only set (by `init`) to ASan's `__sanitizer_finish_switch_fiber`.
    let finish: FinishSwitch = unsafe { core::mem::transmute(finish) };
    let mut old_low: *const c_void = core::ptr::null();
    let mut old_size = 0usize;
    // SAFETY: `fake` was saved by the matching start (or is null); the out-pointers are ours.
    unsafe { finish(fake, &mut old_low, &mut old_size) };
    if FROM_ROOT.replace(false) {
        ROOT_STACK.set((old_low as usize, old_size));
    }
}
