//! Is the caller running inside a signal handler?
//!
//! Launching, resuming and cancelling are not async-signal-safe (they may map memory, call
//! `malloc` and `free`, and they switch stacks), so both the Rust and the C API refuse them
//! inside a signal handler ([`Error::InSignalHandler`](crate::Error::InSignalHandler)).
//! Context: caller, or any signal handler (the detection itself is async-signal-safe once
//! the thread's stack bounds are known). Linux keeps no "in a handler" flag: a handler is
//! ordinary code whose
//! frames sit above a kernel *signal frame*, whose return address is the C library's
//! `rt_sigreturn` trampoline (glibc's `__restore_rt`). Detection therefore looks for such a
//! frame among the caller's frames.
//!
//! # The authority: an unwinder walk
//!
//! [`walk`] runs libgcc's `_Unwind_Backtrace` from here to the bottom of the current stack.
//! libgcc recognises a signal frame (by the trampoline's instruction bytes, or glibc's
//! `S`-augmented unwind entry for it) and reports the frame it interrupted with
//! `_Unwind_GetIPInfo(.., &ip_before_insn)` set. Nothing else sets that flag, so a hit is
//! never a false positive. The walk neither allocates nor locks: libgcc 12 finds unwind
//! tables with glibc's lock-free `_dl_find_object` (glibc 2.35 and later) when no frames were
//! registered by hand (`__register_frame_info`), which is the case for ordinary ELF programs;
//! only a flag is checked before that.
//!
//! The walk costs a few hundred nanoseconds a frame (a few microseconds for a call from a
//! typical program), several times a launch, so it is not done on every call:
//!
//! # The fast filter: scanning the thread's stack for the trampoline address
//!
//! A signal frame begins with its return address, the trampoline, stored in a stack word. If
//! no word between the current stack pointer and the bottom of the thread's stack holds that
//! address, no signal frame lies on this stack and the walk is skipped. A word that does hold
//! it may be stale (a frame left by an earlier signal, e.g. inger's own lazily armed timer,
//! in a slot nobody overwrote since): the walk then decides. The filter is used only when all
//! of this is known:
//! - the trampoline's address, read once from the `sa_restorer` of a handler glibc installed
//!   (inger's SIGSEGV handler, after the first successful launch) and checked to be the
//!   `mov $15, %rax; syscall` sequence;
//! - the bounds of the thread's own stack (`pthread_getattr_np`, queried outside any handler)
//!   and the current stack pointer inside them, so the scan never leaves mapped memory;
//! - the caller is not inside a preemptible function (those run on inger's stacks, whose
//!   bounds the C layer does not know): there the walk always runs, up to the function's
//!   entry (where the unwind information ends), a few microseconds per nested launch.
//!
//! The scan ends where the thread's start routine in the C library calls the program:
//! `main`'s canonical frame address on the main thread (`__libc_start_call_main` calls it and
//! then `exit` from the same frame), the thread function's on other threads (`start_thread`).
//! Those C-library frames live as long as the thread, so no signal frame can lie in them,
//! while they do hold stale copies of the trampoline address from signal set-up done before
//! `main`. The boundary comes from an earlier walk from this stack (frames identified with
//! `dladdr`, outside any handler); if no C-library frame was seen, the walk's outermost
//! frame is used, and worked out once per thread (it takes a `dladdr` per outermost frame,
//! which scans symbol tables: up to milliseconds each in a large program). The trampoline
//! address itself is read, and the handler check made before each arming of the timer
//! queries, with `sigaction` through `sys::signal::with_action`, which wipes the copies the
//! query leaves (glibc keeps one in its frame, the out-parameter is another), so neither
//! leaves a copy on the stack; after installing its handlers, inger overwrites the dead stack
//! below as well. Copies the program leaves (its own `sigaction` calls, signals delivered on
//! this stack) only cost a walk, of a few microseconds, while they sit in live frames.
//!
//! # Limits (also stated in `libinger.h`)
//!
//! - Frames without unwind information (hand-written assembly, some JIT code, code built with
//!   `-fno-asynchronous-unwind-tables`) end the walk early: a handler that called into inger
//!   through such a frame is not detected.
//! - A handler installed with a trampoline other than the C library's (a raw `rt_sigaction`
//!   system call with a private restorer) is detected by the walk only if libgcc recognises
//!   that trampoline's bytes, and escapes the fast filter.
//! - A walk deeper than [`MAX_FRAMES`] frames stops there and reports "not in a handler".
//! - The detection itself is async-signal-safe when inger is linked into the program (the
//!   Rust crate, or `libinger.so`/`libinger.a` for C): its thread-locals then live in static
//!   TLS. A `libinger.so` loaded with `dlopen` may have its thread-locals allocated (with
//!   `malloc`) on a thread's first access, which could then happen inside a handler.

use super::unwind::{_Unwind_Backtrace, _Unwind_GetCFA, _Unwind_GetIPInfo, UnwindContext};
use core::cell::Cell;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Walks stop after this many frames (a corrupt stack could otherwise loop).
const MAX_FRAMES: usize = 1 << 16;

/// `_URC_NO_REASON`: continue the walk.
const URC_NO_REASON: c_int = 0;
/// `_URC_NORMAL_STOP`: any non-zero value stops the walk.
const URC_NORMAL_STOP: c_int = 4;

/// `SA_RESTORER` in the kernel's `sa_flags`: `sa_restorer` is set.
const SA_RESTORER: u64 = 0x0400_0000;

/// The bytes of glibc's x86-64 `__restore_rt`: `mov $15, %rax` (`rt_sigreturn`); `syscall`.
const SIGRETURN_CODE: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];

/// How many of the outermost frames a walk remembers.
const OUTERMOST: usize = 8;

/// One frame seen by a walk.
#[derive(Debug, Clone, Copy, Default)]
struct Frame {
    /// Return address (or interrupted instruction) of the frame.
    ip: usize,
    /// Its canonical frame address: the caller's stack pointer before the call.
    cfa: usize,
}

/// What a walk found.
#[derive(Debug, Clone, Copy, Default)]
struct Walk {
    /// A signal frame lies between the caller and the end of the walk.
    signal_frame: bool,
    /// Frames visited.
    frames: usize,
    /// The last [`OUTERMOST`] frames visited, as a ring indexed by `frames % OUTERMOST`.
    ring: [Frame; OUTERMOST],
    /// Stop once the frames visited cover this address (0: walk to the end): the highest
    /// word the fast filter found holding the trampoline's address.
    resolve: usize,
    /// The walk stopped there, with every such word inside an ordinary frame.
    resolved: bool,
}

impl Walk {
    /// The remembered outermost frames, outermost first.
    fn outermost_first(&self) -> impl Iterator<Item = Frame> + '_ {
        let kept = self.frames.min(OUTERMOST);
        (0..kept).map(move |back| self.ring[(self.frames - 1 - back) % OUTERMOST])
    }
}

/// The part of this thread's own stack the fast filter may scan.
#[derive(Debug, Clone, Copy)]
struct ThreadStack {
    /// Lowest address of the thread's stack mapping.
    low: usize,
    /// One past its highest address.
    high: usize,
    /// Where scans stop: the outermost frame a walk reached, at most `high`.
    scan_end: usize,
    /// The outermost frame address of the walk that set `scan_end`: a later walk that ends
    /// no further out would find the same end, so it is not worked out again (that takes a
    /// `dladdr` per outermost frame, up to milliseconds each in a large program).
    walked_to: usize,
}

thread_local! {
    /// Constant-initialised and without destructor: a plain TLS access, fine in a handler.
    static THREAD_STACK: Cell<Option<ThreadStack>> = const { Cell::new(None) };
}

/// Address of the C library's signal-return trampoline XOR [`MASK`], or 0 while unknown.
///
/// Masked so that the filter never holds the address itself: a copy of it that the filter's
/// code left in a register save slot or a spill would lie in dead stack, where a later check
/// from a deeper frame finds it (and then walks, every time).
static TRAMPOLINE: AtomicUsize = AtomicUsize::new(0);

/// Mixed into [`TRAMPOLINE`] and into every word the filter compares with it.
const MASK: usize = 0xa5a5_5a5a_a5a5_5a5a;

/// Whether the caller runs inside a signal handler (see the module docs for how and the
/// limits). `inside_function`: the caller runs on a preemptible function's stack, whose
/// bounds this module does not know. Async-signal-safe.
pub(crate) fn in_signal_handler(inside_function: bool) -> bool {
    let here = crate::arch::stack_pointer();
    let resolve = if inside_function {
        0
    } else {
        match filter(here) {
            Filter::Clear => return false,
            Filter::Holds(highest) => highest,
            Filter::Unknown => 0,
        }
    };
    let walk = walk(resolve);
    if !walk.signal_frame && !inside_function && !walk.resolved {
        // Not in a handler, so querying the thread's stack (which may allocate) is allowed.
        learn_thread_stack(here, &walk);
    }
    walk.signal_frame
}

/// What the fast filter says.
enum Filter {
    /// No signal frame lies on the current stack.
    Clear,
    /// Words up to this address hold the trampoline's address: stale copies, or the return
    /// address of a live signal frame; a walk up to there decides.
    Holds(usize),
    /// The filter cannot be used (see the module docs): a whole walk decides.
    Unknown,
}

/// The fast filter (see the module docs).
fn filter(here: usize) -> Filter {
    if super::debug_tools::on_valgrind() {
        // The scan reads dead stack words, which memcheck reports as uninitialised: under
        // valgrind the walk alone decides.
        return Filter::Unknown;
    }
    let masked = TRAMPOLINE.load(Relaxed);
    let stack = THREAD_STACK.try_with(Cell::get).ok().flatten();
    match stack {
        Some(stack) if masked != 0 && stack.low <= here && here < stack.scan_end => {
            // SAFETY: `[here, scan_end)` lies inside this thread's stack mapping (checked just
            // above against bounds from `pthread_getattr_np`), above the stack pointer, so it
            // is mapped and readable.
            match unsafe { highest_masked(here, stack.scan_end, masked) } {
                Some(highest) => Filter::Holds(highest),
                None => Filter::Clear,
            }
        }
        _ => Filter::Unknown,
    }
}

/// The highest aligned word in `[from, to)` that equals `masked ^ MASK`.
///
/// Every cancellation runs it over the caller's stack (kilobytes in a deep program), so it
/// skips 128-byte blocks that hold no match with AVX2 where the processor has it, else reads
/// four words per step, and looks at words one by one only near a match. Each loaded word
/// is unmasked and compared; the trampoline's address itself is never formed (it would be
/// spilled to the stack, a copy for a later scan to find).
///
/// # Safety
/// `[from, to)` must be readable memory. It may be changed concurrently by this thread's
/// signal handlers (that is why the reads are volatile, or in assembly); its contents are
/// only compared.
unsafe fn highest_masked(from: usize, to: usize, masked: usize) -> Option<usize> {
    // std caches the answer in atomics after one `cpuid`: async-signal-safe.
    let avx2 = std::arch::is_x86_feature_detected!("avx2");
    // SAFETY: per the contract; AVX2 is used only where the processor has it.
    unsafe { highest_masked_with(from, to, masked, avx2) }
}

/// [`highest_masked`], skipping clear blocks with AVX2 if `avx2`, else four words per step.
///
/// # Safety
/// As for [`highest_masked`]; `avx2` only where the processor has AVX2.
unsafe fn highest_masked_with(from: usize, to: usize, masked: usize, avx2: bool) -> Option<usize> {
    let hit = |at: usize| {
        // SAFETY: per the contract `at` is readable, and every `at` here is aligned.
        unsafe { core::ptr::read_volatile(at as *const usize) ^ MASK == masked }
    };
    let block = if avx2 { BLOCK } else { 32 };
    let mut at = from.next_multiple_of(8);
    let mut highest = None;
    while at + 8 <= to {
        if at.is_multiple_of(32) {
            at = if avx2 {
                // SAFETY: AVX2 is available; `[at, to)` is readable (the contract) and `at`
                // is 32-byte aligned.
                unsafe { skip_clear_blocks(at, to, masked) }
            } else {
                let mut at = at;
                while at + 32 <= to && !(hit(at) | hit(at + 8) | hit(at + 16) | hit(at + 24)) {
                    at += 32;
                }
                at
            };
        }
        // Word by word up to the next 32-byte boundary, or through the block that may hold
        // a match, or to the end.
        let stop = if at.is_multiple_of(32) {
            at + block
        } else {
            at.next_multiple_of(32)
        };
        while at + 8 <= stop.min(to) {
            if hit(at) {
                highest = Some(at);
            }
            at += 8;
        }
    }
    highest
}

/// Bytes [`skip_clear_blocks`] compares per step.
const BLOCK: usize = 128;

/// The start of the first [`BLOCK`]-byte block from `at` that may hold a word equal to
/// `masked ^ MASK`, or of the first block that does not fit before `to`: AVX2 compares four
/// words at a time, after unmasking them, with the masked address in a register (the
/// address itself is never formed). In assembly, so that the reads are opaque (see
/// [`highest_masked`]) and no vector register is spilled.
///
/// # Safety
/// AVX2 must be available, `[at, to)` readable memory, and `at` 32-byte aligned.
#[target_feature(enable = "avx2")]
unsafe fn skip_clear_blocks(at: usize, to: usize, masked: usize) -> usize {
    let mut at = at;
    if to < at + BLOCK {
        return at;
    }
    let last = to - BLOCK; // blocks start at or below this
    // SAFETY: every block read lies in `[at, to)` (readable by the contract), 32-byte
    // aligned; the registers named are declared clobbered.
    unsafe {
        core::arch::asm!(
            "vmovq {x}, {masked}",
            "vpbroadcastq {pattern}, {x}",
            "vmovq {x}, {mask}",
            "vpbroadcastq {unmask}, {x}",
            "2:",
            "cmp {at}, {last}",
            "ja 3f",
            "vpxor {a}, {unmask}, [{at}]",
            "vpcmpeqq {a}, {a}, {pattern}",
            "vpxor {b}, {unmask}, [{at} + 32]",
            "vpcmpeqq {b}, {b}, {pattern}",
            "vpor {a}, {a}, {b}",
            "vpxor {b}, {unmask}, [{at} + 64]",
            "vpcmpeqq {b}, {b}, {pattern}",
            "vpor {a}, {a}, {b}",
            "vpxor {b}, {unmask}, [{at} + 96]",
            "vpcmpeqq {b}, {b}, {pattern}",
            "vpor {a}, {a}, {b}",
            "vptest {a}, {a}",
            "jnz 3f",
            "add {at}, 128",
            "jmp 2b",
            "3:",
            "vzeroupper",
            at = inout(reg) at,
            last = in(reg) last,
            masked = in(reg) masked,
            mask = in(reg) MASK,
            x = out(xmm_reg) _,
            pattern = out(ymm_reg) _,
            unmask = out(ymm_reg) _,
            a = out(ymm_reg) _,
            b = out(ymm_reg) _,
            options(nostack, readonly),
        );
    }
    at
}

/// Walks the current stack with libgcc's unwinder, stopping at the first signal frame, or
/// once the frames visited cover `resolve` (if not 0).
#[inline(never)]
fn walk(resolve: usize) -> Walk {
    let mut walk = Walk {
        resolve,
        ..Walk::default()
    };
    // SAFETY: `visit` matches the callback type and only uses `argument` as the `Walk` we
    // pass, which outlives the call.
    unsafe { _Unwind_Backtrace(visit, (&raw mut walk).cast()) };
    walk
}

/// The per-frame callback of [`walk`].
extern "C" fn visit(context: *mut UnwindContext, argument: *mut c_void) -> c_int {
    // SAFETY: `argument` is the `Walk` that `walk` passed, exclusively ours during the walk.
    let walk = unsafe { &mut *argument.cast::<Walk>() };
    let mut ip_before_insn: c_int = 0;
    // SAFETY: `context` is the live context the unwinder hands to this callback.
    let (ip, cfa) = unsafe {
        (
            _Unwind_GetIPInfo(context, &mut ip_before_insn),
            _Unwind_GetCFA(context),
        )
    };
    if ip_before_insn != 0 {
        walk.signal_frame = true;
        return URC_NORMAL_STOP;
    }
    // The previous frame began (its stack pointer is the CFA of the frame before it) above
    // `resolve`: every word up to there lies in frames already visited, none of them a
    // signal frame, so none is a live signal frame's return address. (A live one's sits
    // just below the trampoline's frame, whose previous frame, the handler's outermost, began
    // below it; the interrupted frame after the trampoline's reports the signal frame.)
    if walk.resolve != 0 && walk.frames >= 2 {
        let previous_sp = walk.ring[(walk.frames - 2) % OUTERMOST].cfa;
        if previous_sp > walk.resolve {
            walk.resolved = true;
            return URC_NORMAL_STOP;
        }
    }
    walk.ring[walk.frames % OUTERMOST] = Frame { ip, cfa };
    walk.frames += 1;
    // The outermost frame of a preemptible function ends the walk: beyond it lie its
    // resumer's frames, which cannot be in a handler (launches and resumes refuse to run
    // there), and which libgcc reports as interrupted (the trampoline is marked as a signal
    // frame for debuggers, see `arch`).
    if walk.frames >= MAX_FRAMES || crate::arch::is_entry_trampoline(ip) {
        URC_NORMAL_STOP
    } else {
        URC_NO_REASON
    }
}

/// Records (or widens) the scannable part of this thread's stack, if `here` is on it.
/// Not async-signal-safe: call only once a walk showed no signal frame.
fn learn_thread_stack(here: usize, walk: &Walk) {
    let Some(outermost) = walk.outermost_first().next() else {
        return;
    };
    let known = THREAD_STACK.try_with(Cell::get).ok().flatten();
    if known.is_some_and(|stack| {
        stack.low <= here && here < stack.scan_end && outermost.cfa <= stack.walked_to
    }) {
        return; // this walk ended where an earlier one did: nothing new to learn
    }
    let Some(end) = scan_end(walk) else { return };
    if end <= here {
        return;
    }
    let Some(mut stack) = known.or_else(query_thread_stack) else {
        return;
    };
    if here < stack.low || here >= stack.high {
        return; // on some other stack (an alternate signal stack, a user coroutine)
    }
    stack.scan_end = stack.scan_end.max(end.min(stack.high));
    stack.walked_to = stack.walked_to.max(outermost.cfa);
    let _ = THREAD_STACK.try_with(|cell| cell.set(Some(stack)));
}

/// Where scans of this stack may stop, from a walk that saw no signal frame: the frame
/// address of the first non-C-library frame inside the C library's thread-start frames (see
/// the module docs), else the outermost frame's. Not async-signal-safe (`dladdr`).
fn scan_end(walk: &Walk) -> Option<usize> {
    let outermost = walk.outermost_first().next()?;
    let libc = object_base(libc::abort as *const () as usize)?;
    let mut seen_libc = false;
    for frame in walk.outermost_first() {
        // `ip - 1` lies inside the call instruction, so in the caller's own object.
        let in_libc = object_base(frame.ip.saturating_sub(1)) == Some(libc);
        if in_libc {
            seen_libc = true;
        } else if seen_libc {
            return Some(frame.cfa);
        }
    }
    Some(outermost.cfa)
}

/// The load address of the object containing `address`, from `dladdr`.
fn object_base(address: usize) -> Option<usize> {
    let mut info = core::mem::MaybeUninit::<libc::Dl_info>::uninit();
    // SAFETY: `dladdr` only reads `address` as a number and fills `info` when it returns
    // non-zero.
    if unsafe { libc::dladdr(address as *const c_void, info.as_mut_ptr()) } == 0 {
        return None;
    }
    // SAFETY: initialised by the successful call.
    let base = unsafe { info.assume_init() }.dli_fbase as usize;
    (base != 0).then_some(base)
}

/// This thread's stack mapping from `pthread_getattr_np`, with nothing learnt to scan yet.
fn query_thread_stack() -> Option<ThreadStack> {
    let mut attributes = core::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
    // SAFETY: `pthread_getattr_np` initialises `attributes` when it returns 0.
    if unsafe { libc::pthread_getattr_np(libc::pthread_self(), attributes.as_mut_ptr()) } != 0 {
        return None;
    }
    let mut address: *mut c_void = core::ptr::null_mut();
    let mut size: libc::size_t = 0;
    // SAFETY: `attributes` was initialised above and is destroyed exactly once, after use.
    let queried = unsafe {
        let result = libc::pthread_attr_getstack(attributes.as_ptr(), &mut address, &mut size);
        libc::pthread_attr_destroy(attributes.as_mut_ptr());
        result
    };
    if queried != 0 || address.is_null() {
        return None;
    }
    let low = address as usize;
    Some(ThreadStack {
        low,
        high: low.saturating_add(size),
        scan_end: low,
        walked_to: low,
    })
}

/// Learns the address of the C library's signal trampoline, once, from the handler inger
/// installed for SIGSEGV. Call after that handler is installed, not from a signal handler.
pub(crate) fn learn_trampoline() {
    if TRAMPOLINE.load(Relaxed) != 0 {
        return;
    }
    // The query wipes its copies, so the stack keeps no stale trampoline address.
    let Ok((flags, restorer)) = super::signal::with_action(libc::SIGSEGV, |action| {
        (
            action.sa_flags as u64,
            action.sa_restorer.map_or(0, |r| r as usize),
        )
    }) else {
        return;
    };
    if flags & SA_RESTORER == 0 || restorer == 0 {
        return;
    }
    // SAFETY: `sa_restorer` of an installed handler is the address of code the kernel
    // returns to; code pages are readable on x86-64 Linux, and we read 9 bytes of it.
    let code = unsafe { core::ptr::read_unaligned(restorer as *const [u8; 9]) };
    if code == SIGRETURN_CODE {
        TRAMPOLINE.store(restorer ^ MASK, Relaxed);
    }
}

/// Makes the signal frame of `ucontext` return through inger's own copy of the trampoline
/// (`arch::sigaction_restorer`) instead of glibc's. Called by inger's timer handler first
/// thing: its signals land on whatever stack runs, often the caller's between functions (a
/// timer armed for a deadline that was not needed), and the frame's return address, left in
/// dead stack, would otherwise be a copy of the very address the fast filter looks for, in
/// some unused slot of a later live frame: every later check would walk.
///
/// # Safety
/// `ucontext` must be the one the kernel passed to the running handler.
pub(crate) unsafe fn retarget_sigreturn(ucontext: *mut c_void) {
    let masked = TRAMPOLINE.load(Relaxed);
    let slot = crate::arch::sigreturn_slot(ucontext);
    // SAFETY: per the contract the word below the ucontext is the frame's return address, on
    // the stack the handler runs on; the comparison makes sure it is glibc's trampoline (not
    // a frame someone built by hand).
    unsafe {
        if masked != 0 && slot.read_volatile() ^ MASK == masked {
            slot.write_volatile(crate::arch::sigaction_restorer());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::signal;

    unsafe extern "C" fn ignore_fault(_: i32, _: *mut libc::siginfo_t, _: *mut c_void) {}

    /// Whether the 8 KiB of dead stack just below the caller's frame hold the address
    /// `masked ^ MASK` (the filter's own scan, which never holds the address itself).
    #[inline(never)]
    fn dead_stack_holds(masked: usize) -> bool {
        let here = crate::arch::stack_pointer();
        // SAFETY: the 8 KiB below the stack pointer lie in this thread's stack mapping (a
        // test thread's stack is megabytes deep and this test is shallow); they are dead,
        // and only compared.
        unsafe { highest_masked(here - 8192, here, masked) }.is_some()
    }

    #[inline(never)]
    fn query_with_glibc() {
        // SAFETY: a zeroed sigaction is a valid out-parameter; querying changes nothing.
        let mut old: libc::sigaction = unsafe { core::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::sigaction(libc::SIGSEGV, core::ptr::null(), &mut old) };
        core::hint::black_box(&old);
    }

    #[inline(never)]
    fn query_with_inger() {
        core::hint::black_box(signal::handler_is_installed(libc::SIGSEGV, ignore_fault));
    }

    /// The scan finds the highest matching word of any window, whatever its alignment and
    /// length and wherever the matches lie (in a skipped block's first or last word, or in
    /// the unaligned head and the short tail), as a plain word-by-word search does: with
    /// the four-words-a-step skip, and with the AVX2 one where the processor has it.
    #[test]
    fn the_scan_finds_the_highest_match_of_every_window() {
        let masked = 0x1234_5678_9abc_def0usize;
        let target = masked ^ MASK;
        let mut words: Vec<usize> = (0..160usize)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        // Near misses: the same high half, or the same low half.
        words[3] = target ^ 1;
        words[40] = target ^ (1 << 63);
        // Single matches at every position within a 128-byte block (the positions depend on
        // where the vector lands), and pairs across groups and blocks.
        let singles: Vec<Vec<usize>> = (0..20).map(|at| vec![at]).collect();
        let pairs = [vec![], vec![16, 17], vec![31, 47], vec![64, 159], vec![100]];
        for planted in singles.iter().chain(&pairs) {
            let mut words = words.clone();
            for &at in planted {
                words[at] = target;
            }
            let base = words.as_ptr() as usize;
            for first in 0..40 {
                for last in (first..=160).step_by(7).chain([160]) {
                    let (from, to) = (base + first * 8, base + last * 8);
                    let expected = (first..last)
                        .filter(|&i| words[i] == target)
                        .max()
                        .map(|i| base + i * 8);
                    for avx2 in [false, std::arch::is_x86_feature_detected!("avx2")] {
                        // SAFETY: the window lies inside `words`; AVX2 only where present.
                        let found = unsafe { highest_masked_with(from, to, masked, avx2) };
                        assert_eq!(
                            found, expected,
                            "planted {planted:?}, words {first}..{last}, avx2 {avx2}"
                        );
                    }
                }
            }
        }
    }

    /// inger's trampoline is glibc's instructions, which unwinders recognise.
    #[test]
    fn inger_restorer_has_the_sigreturn_instructions() {
        let address = crate::arch::sigaction_restorer();
        // SAFETY: code pages are readable; the stub is at least 9 bytes long.
        let code = unsafe { core::ptr::read_unaligned(address as *const [u8; 9]) };
        assert_eq!(code, SIGRETURN_CODE);
    }

    /// The handler check made before each arming of the timer must leave no copy of the
    /// trampoline's address behind: a later signal-handler check that finds one on the
    /// stack takes the slow path (an unwinder walk). glibc's own query does leave one, which
    /// shows that the scan sees such copies.
    #[test]
    fn handler_queries_leave_no_trampoline_on_the_stack() {
        signal::install_fault_handler(ignore_fault).expect("install the fault handler");
        learn_trampoline();
        assert_ne!(
            TRAMPOLINE.load(Relaxed),
            0,
            "glibc's trampoline was not recognised"
        );
        let masked = TRAMPOLINE.load(Relaxed);
        signal::scrub_dead_stack();
        assert!(!dead_stack_holds(masked), "the scrub left a copy");
        query_with_glibc();
        assert!(
            dead_stack_holds(masked),
            "glibc's query left no copy to find"
        );
        signal::scrub_dead_stack();
        query_with_inger();
        assert!(!dead_stack_holds(masked), "inger's query left a copy");
    }
}
