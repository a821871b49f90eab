//! Return-address redirection: the stubs a non-preemptible frame returns into when a deadline
//! passed while it ran, so that the function pauses the moment its critical section ends.
//!
//! Context: the stubs run on a function's own stack, entered by the `ret` of the frame whose
//! return address the signal handler replaced; the handler writes the redirect (async-signal-
//! safe: two stores).
//!
//! ```text
//!  stack slot (2^k bytes, 2^k-aligned)                 top of stack = slot end - guard
//!  | ......... frames ........ | control block | top word |  guard of the next slot  |
//!                 ^ P: return-address word of the redirected frame
//!                   (now holds the stub's address)   ^ the original return address
//! ```
//!
//! The redirected frame's `ret` lands in `stub_k` (k = log2 of the slot size) with the stack
//! pointer where the original return would have left it. The stub makes a frame whose return
//! address is the original one, read from the top word of the stack (found by masking the
//! stack pointer: see `stack`'s layout), and jumps into the common part, which saves every
//! register a return may carry (rax, rdx, and the whole vector and x87 state with `xsave`),
//! calls the runtime's handler (see [`set_redirect_handler`]), restores them and returns to
//! the original address. Callee-saved registers are never touched.
//!
//! # Unwind information
//!
//! Panics, backtraces and debuggers must be able to walk through a frame whose return was
//! redirected (a panic raised by user code under stdout's lock) and through the stub itself
//! (a pause or a cancellation inside it). Each stub's entry rows say: the canonical frame
//! address is the stack pointer (the `ret` popped the return address), and the return address
//! is stored at `((CFA >> k) + 1 << k) - guard - 8`, the top word, with a DWARF expression
//! of fixed size (`DW_CFA_expression`). Once the stub has copied it into its own frame the
//! usual rule (at CFA − 8) applies. A `nop` before each entry belongs to its stub, because an
//! unwinder looks up `return address − 1`. libgcc, gdb and libunwind evaluate the
//! expression; inger's own walker (framehop, which does not) recognises stub addresses and
//! reads the top word itself.
//!
//! A stub's frame is empty, so it has the same identity in libgcc's eyes (the CFA of the
//! frame below it, here the redirected frame's) as the frame that called the redirected one.
//! When that caller catches the exception, which happens whenever it calls the critical
//! section directly (`catch_unwind(|| print!(..))` once inlined, a C++ `try` around
//! `qsort`), the cleanup phase reaches the stub first, takes it for the handler, and aborts
//! the process because the stub has no personality routine to hand the exception to. So
//! every stub names one (`redirect_personality`): in that case, and only in it, the routine
//! installs the stub's landing pad (at a fixed offset in the stub), which moves the stack
//! pointer one frame's worth lower and calls `_Unwind_Resume`. The landing pad's frame has
//! the redirected frame's CFA as its own and the top word as its return address, so the
//! catching frame above it is the first frame with the handler's identity again, and its own
//! personality routine runs. Every other search or cleanup passes through the stub. This
//! also covers a redirect installed while an exception is already being unwound (a timer
//! expiry during a landing pad below the section), which adds the stub between the two
//! phases of that unwinding.

use core::arch::global_asm;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};

use crate::stack::{GUARD_SIZE, TOP_RESERVED};

/// Smallest and largest slot sizes (as powers of two) a stub exists for: a 64 KiB stack with
/// its 64 KiB guard, up to the 1 TiB limit of `Config::stack_size`.
pub(crate) const MIN_SLOT_SHIFT: u32 = 17;
pub(crate) const MAX_SLOT_SHIFT: u32 = 41;

/// Bytes the common part reserves for `xsave` (or 512 for `fxsave`), set once at start-up.
static INGER_REDIRECT_SAVE_SIZE: AtomicU32 = AtomicU32::new(0);
/// Non-zero when `xsave` is used (else `fxsave`).
static INGER_REDIRECT_USE_XSAVE: AtomicU32 = AtomicU32::new(0);

/// Sizes the save area of the common part from the processor (see [`vector_save_area`]).
/// Call once, before any redirect.
pub(crate) fn init_save_area() {
    let (size, xsave) = vector_save_area();
    INGER_REDIRECT_SAVE_SIZE.store(size, Relaxed);
    INGER_REDIRECT_USE_XSAVE.store(u32::from(xsave), Relaxed);
}

/// The bytes an `xsave` of every state component the operating system enabled needs (CPUID
/// leaf 0xD), rounded up to 64, and `true`; or 512 and `false` where only `fxsave` is
/// available (no OSXSAVE).
pub(crate) fn vector_save_area() -> (u32, bool) {
    let features = core::arch::x86_64::__cpuid(1);
    let osxsave = features.ecx & (1 << 27) != 0;
    if osxsave {
        // Leaf 0xD exists when XSAVE is enabled by the operating system.
        let xsave = core::arch::x86_64::__cpuid_count(0xd, 0);
        (xsave.ebx.next_multiple_of(64), true)
    } else {
        (512, false)
    }
}

/// The word of the top of the stack that holds a redirected frame's original return address,
/// for a stack whose top is `top`.
pub(crate) fn top_word(top: usize) -> usize {
    top - 8
}

const _: () = assert!(TOP_RESERVED >= 8);

/// The stub for stacks in slots of 2^`shift` bytes, or `None` outside the supported range.
pub(crate) fn stub_for(shift: u32) -> Option<usize> {
    if !(MIN_SLOT_SHIFT..=MAX_SLOT_SHIFT).contains(&shift) {
        return None;
    }
    let index = (shift - MIN_SLOT_SHIFT) as usize;
    Some(stubs_base() + index * STUB_STRIDE)
}

/// Whether `address` is the entry of one of the stubs (a redirected return address).
pub(crate) fn is_stub(address: usize) -> bool {
    offset_in_stub(address) == Some(ENTRY_OFFSET)
}

/// Whether `address` lies in a stub's landing pad, past its first instruction: a return
/// address there is the pad's call of `_Unwind_Resume`, an unwinding in progress, whose frame
/// only a walker that evaluates DWARF expressions can step over.
pub(crate) fn is_in_landing_pad(address: usize) -> bool {
    offset_in_stub(address).is_some_and(|offset| offset > LANDING_PAD_OFFSET)
}

/// Where `address` lies in the stub it lies in (from the stub's start), if it lies in one.
fn offset_in_stub(address: usize) -> Option<usize> {
    let start = stubs_base() - ENTRY_OFFSET;
    let count = (MAX_SLOT_SHIFT - MIN_SLOT_SHIFT + 1) as usize;
    let offset = address.checked_sub(start)?;
    (offset < count * STUB_STRIDE).then_some(offset % STUB_STRIDE)
}

/// Bytes between consecutive stub entries (each stub is padded to this size).
const STUB_STRIDE: usize = 64;

fn stubs_base() -> usize {
    unsafe extern "C" {
        /// The entry of the first stub (see the assembly below).
        static inger_redirect_stub_first: u8;
    }
    (&raw const inger_redirect_stub_first) as usize
}

/// The Rust side of a redirect, called by the common part on the function's stack with every
/// return register saved (the runtime installs it: `arch` calls nothing outside itself).
static INGER_REDIRECT_REACHED: AtomicUsize = AtomicUsize::new(0);

/// Installs the function the stubs call. Call once, before any redirect.
pub(crate) fn set_redirect_handler(reached: unsafe extern "C-unwind" fn()) {
    INGER_REDIRECT_REACHED.store(reached as usize, Relaxed);
}

// One stub per slot size 2^k, k = 17 ..= 41, each 64 bytes apart; then the common part.
//
// The DW_CFA_expression rule for the return address (register 16), 14 bytes of expression
// evaluated with the CFA on the stack, with only the operators valgrind's unwinder also
// evaluates (it has no DW_OP_or):
//   DW_OP_const1u k DW_OP_shr DW_OP_lit1 DW_OP_plus                -> CFA / 2^k + 1
//   DW_OP_const1u k DW_OP_shl                                      -> the slot's end
//   DW_OP_const4u (guard + 8) DW_OP_minus                          -> top - 8
global_asm!(
    ".pushsection .text.inger_redirect,\"ax\",@progbits",
    ".p2align 6",
    ".set inger_redirect_k, {min_shift}",
    ".rept {count}",
    ".p2align 6",
    "1:",                                    // the stub's start (its unwind region's too)
    ".cfi_startproc",
    ".cfi_personality 0x1b, inger_redirect_personality", // pc-relative, 4 bytes
    ".cfi_def_cfa 7, 0",                   // CFA = rsp: the `ret` popped the return address
    ".cfi_escape 0x10, 0x10, 14, 0x08, inger_redirect_k, 0x25, 0x31, 0x22, 0x08, inger_redirect_k, 0x24, 0x0c, ({g8} & 0xff), (({g8} >> 8) & 0xff), (({g8} >> 16) & 0xff), (({g8} >> 24) & 0xff), 0x1c",
    ".cfi_remember_state",                 // the landing pad starts from these rules
    "nop",                                   // looked up as `entry - 1` by unwinders
    ".if inger_redirect_k == {min_shift}",
    ".globl inger_redirect_stub_first",
    ".hidden inger_redirect_stub_first",
    "inger_redirect_stub_first:",
    ".endif",
    "sub rsp, 8",                            // this frame's return-address word
    ".cfi_adjust_cfa_offset 8",
    "mov r11, rsp",                          // r10, r11: caller-saved, dead at a return
    "movabs r10, (1 << inger_redirect_k) - 1",
    "or r11, r10",                           // the slot's last byte
    "mov r11, [r11 - {g7}]",                 // the top word: the original return address
    "mov [rsp], r11",                        // now a frame like any other
    ".cfi_offset 16, -8",                  // the return address is at CFA - 8 again
    "jmp inger_redirect_common",
    // The landing pad the personality routine installs (entered with rsp as at the entry,
    // the exception in rax): resumes the unwinding one frame lower, so that the catching
    // frame is identified by this frame's CFA again (see "Unwind information").
    ".org 1b + {landing_pad}",               // fails to assemble if the stub grew past it
    ".cfi_restore_state",                  // CFA = rsp, the return address in the top word
    "sub rsp, 16",                           // keeps the call 16-byte aligned
    ".cfi_def_cfa_offset 16",              // (not an adjustment: the assembler's running
                                             // offset does not follow the restored state)
    "mov rdi, rax",
    "call {resume}@PLT",                     // never returns
    "ud2",
    ".org 1b + {stride}",                    // fails to assemble if the stub outgrew its stride
    ".cfi_endproc",
    ".set inger_redirect_k, inger_redirect_k + 1",
    ".endr",
    // The personality routine every stub's unwind information names: a local symbol (the
    // pc-relative reference from `.eh_frame` must not go through the dynamic linker).
    ".p2align 4",
    ".type inger_redirect_personality, @function",
    "inger_redirect_personality:",
    "jmp {personality}",
    ".size inger_redirect_personality, . - inger_redirect_personality",
    ".popsection",
    min_shift = const MIN_SLOT_SHIFT,
    count = const MAX_SLOT_SHIFT - MIN_SLOT_SHIFT + 1,
    g7 = const GUARD_SIZE + 7,
    g8 = const GUARD_SIZE + 8,
    landing_pad = const LANDING_PAD_OFFSET,
    stride = const STUB_STRIDE,
    resume = sym _Unwind_Resume,
    personality = sym redirect_personality,
);

/// Offsets, from a stub's start, of its entry (after the `nop`) and of its landing pad.
const ENTRY_OFFSET: usize = 1;
const LANDING_PAD_OFFSET: usize = 48;

// `_Unwind_Reason_Code` and `_Unwind_Action` values (Itanium C++ ABI, "Exception Handling").
const URC_FATAL_PHASE1_ERROR: c_int = 3;
const URC_INSTALL_CONTEXT: c_int = 7;
const URC_CONTINUE_UNWIND: c_int = 8;
const UA_CLEANUP_PHASE: c_int = 2;
const UA_HANDLER_FRAME: c_int = 4;

/// An unwinder context (`struct _Unwind_Context`), opaque.
#[repr(C)]
struct UnwindContext {
    _private: [u8; 0],
}

// The system unwinder (libgcc_s, which Rust's panics use too): the Itanium C++ ABI's
// unwinding interface.
unsafe extern "C-unwind" {
    fn _Unwind_Resume(exception: *mut c_void) -> !;
}
unsafe extern "C" {
    fn _Unwind_GetIP(context: *mut UnwindContext) -> usize;
    fn _Unwind_GetRegionStart(context: *mut UnwindContext) -> usize;
    fn _Unwind_SetIP(context: *mut UnwindContext, ip: usize);
    fn _Unwind_SetGR(context: *mut UnwindContext, register: c_int, value: usize);
}

/// The personality routine of the stubs (see "Unwind information"): lets every unwinding go
/// through a stub's frame, except in the one case where libgcc's cleanup phase would take
/// the stub for the handler frame (the stub's frame and the catching frame above it have
/// the same identity, the redirected frame's CFA). There it installs the stub's landing pad,
/// which resumes the unwinding from a frame whose identity differs.
///
/// # Safety
/// Called only by the unwinder, with the arguments of a personality routine.
unsafe extern "C" fn redirect_personality(
    version: c_int,
    actions: c_int,
    _class: u64,
    exception: *mut c_void,
    context: *mut UnwindContext,
) -> c_int {
    if version != 1 {
        return URC_FATAL_PHASE1_ERROR;
    }
    let handler = UA_CLEANUP_PHASE | UA_HANDLER_FRAME;
    if actions & handler != handler {
        return URC_CONTINUE_UNWIND;
    }
    // SAFETY: `context` is the unwinder's context of a frame in a stub (only the stubs name
    // this routine); the register and address set are the ones a landing pad expects.
    unsafe {
        let start = _Unwind_GetRegionStart(context);
        // Only the stub's entry, the redirected frame's return address, can be matched: the
        // landing pad's own frame (inside `_Unwind_Resume`) lies one frame lower.
        if _Unwind_GetIP(context) != start + ENTRY_OFFSET {
            return URC_CONTINUE_UNWIND;
        }
        _Unwind_SetGR(context, 0, exception as usize); // DWARF register 0: rax
        _Unwind_SetIP(context, start + LANDING_PAD_OFFSET);
    }
    URC_INSTALL_CONTEXT
}

const _: () = assert!(TOP_RESERVED == 16 && GUARD_SIZE + 8 < (1 << 31));

// The common part of every stub: entered by `jmp` with the original return address at
// `[rsp]` (a frame like any other). Saves the return registers and the whole vector and x87
// state, calls the runtime, restores everything and returns to the original address.
global_asm!(
    ".pushsection .text.inger_redirect,\"ax\",@progbits",
    ".p2align 4",
    ".globl inger_redirect_common",
    ".hidden inger_redirect_common",
    ".type inger_redirect_common, @function",
    "inger_redirect_common:",
    ".cfi_startproc",                             // CFA = rsp + 8, return address at CFA - 8
    "push rbp",                                   // callee-saved: kept for the caller
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset 6, -16",
    "mov rbp, rsp",
    ".cfi_def_cfa_register 6",
    "push rax",                                   // integer return registers
    "push rdx",
    "mov ecx, dword ptr [rip + {size}]",          // rcx: caller-saved, dead at a return
    "sub rsp, rcx",
    "and rsp, -64",                               // xsave needs 64-byte alignment
    "cmp dword ptr [rip + {use_xsave}], 0",
    "je 2f",
    "xor eax, eax",                               // the xsave header must start zeroed
    "mov [rsp + 512], rax",
    "mov [rsp + 520], rax",
    "mov [rsp + 528], rax",
    "mov [rsp + 536], rax",
    "mov [rsp + 544], rax",
    "mov [rsp + 552], rax",
    "mov [rsp + 560], rax",
    "mov [rsp + 568], rax",
    "mov eax, -1",                                // every enabled state component
    "mov edx, -1",
    "xsave [rsp]",
    "jmp 3f",
    "2:",
    "fxsave [rsp]",
    "3:",
    "fninit",                                     // an empty x87 stack for the runtime
    "call qword ptr [rip + {reached}]",           // may pause, resume elsewhere, or unwind
    "cmp dword ptr [rip + {use_xsave}], 0",
    "je 4f",
    "mov eax, -1",
    "mov edx, -1",
    "xrstor [rsp]",
    "jmp 5f",
    "4:",
    "fxrstor [rsp]",
    "5:",
    "lea rsp, [rbp - 16]",
    "pop rdx",
    "pop rax",
    "pop rbp",
    ".cfi_def_cfa 7, 8",
    "ret",                                        // to the original return address
    ".cfi_endproc",
    ".size inger_redirect_common, . - inger_redirect_common",
    ".popsection",
    size = sym INGER_REDIRECT_SAVE_SIZE,
    use_xsave = sym INGER_REDIRECT_USE_XSAVE,
    reached = sym INGER_REDIRECT_REACHED,
);

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of `len` instructions at `address`, in the stubs' code.
    fn code(address: usize, len: usize) -> &'static [u8] {
        // SAFETY: the stubs' code is mapped and readable for as long as the program runs,
        // and every address asked for lies inside it.
        unsafe { core::slice::from_raw_parts(address as *const u8, len) }
    }

    #[test]
    fn each_stub_has_its_landing_pad_where_the_personality_routine_sends_the_unwinder() {
        for shift in MIN_SLOT_SHIFT..=MAX_SLOT_SHIFT {
            let entry = stub_for(shift).expect("a supported size");
            assert!(is_stub(entry) && !is_in_landing_pad(entry));
            let start = entry - ENTRY_OFFSET;
            assert_eq!(
                code(start, 1),
                [0x90],
                "the nop before the entry of stub {shift}"
            );
            let pad = start + LANDING_PAD_OFFSET;
            // sub rsp, 16; mov rdi, rax; call rel32
            assert_eq!(
                code(pad, 8),
                [0x48, 0x83, 0xec, 0x10, 0x48, 0x89, 0xc7, 0xe8]
            );
            let after_call = pad + 12;
            assert!(is_in_landing_pad(after_call), "stub {shift}");
            assert!(!is_stub(after_call));
            // Nothing of the stub before the pad counts as one.
            assert!((start..pad + 1).all(|address| !is_in_landing_pad(address)));
        }
        assert!(stub_for(MIN_SLOT_SHIFT - 1).is_none() && stub_for(MAX_SLOT_SHIFT + 1).is_none());
    }
}
