//! x86-64 System V: context switch, fresh-stack layout, and `ucontext` register access.
//!
//! A suspended context is represented by one value, its saved stack pointer. Below it, the
//! switch routine left (addresses grow upward in this picture):
//!
//! ```text
//!   saved sp ->  +0   MXCSR (4 bytes) | x87 control word (2 bytes) | 0 | inherit marker
//!                +8   r15
//!                +16  r14
//!                +24  r13
//!                +32  r12
//!                +40  rbx
//!                +48  rbp
//!                +56  return address (where `switch` returns to when resumed)
//! ```
//!
//! These are exactly the registers the SysV ABI calls callee-saved, plus the two floating-point
//! control words that it also makes callee-saved; every other register is dead across the
//! `call` into [`switch`]. A fresh stack is prepared with the same picture, its return address
//! pointing at the entry trampoline and r12/r13 holding the entry argument and function, and
//! no control words: its inherit marker (byte 7, zero in every saved picture) tells the switch
//! to keep the words of whoever continues it first, as an ordinary call inherits its
//! caller's. (Reading the words to store them is the dearest part of a switch: `stmxcsr` is
//! ~5 ns on the AMD EPYC VMs, more than the rest of the switch.)
//!
//! ```text
//!   top      ->  +0   the resumer's saved sp (kept current by the runtime; read by unwinders)
//!   top - 64 ->  +0   the picture above, return address = the entry trampoline
//! ```
//!
//! The trampoline's unwind information continues every stack walk from the function's frames
//! into the frames of the context that resumed it, through the word at `top` (see the
//! assembly of the trampoline).
//!
//! A context that will never be continued (a finished function, a cancellation point whose
//! frames are abandoned) leaves with [`jump`] instead, which saves nothing: it loads the
//! other context's control words unconditionally (~free: `ldmxcsr` and `fldcw` cost under
//! a nanosecond there) rather than reading its own to compare.
//!
//! A context paused by the timer signal additionally has, higher on its stack, the kernel's
//! signal frame: the `ucontext` with every general-purpose register, the flags and the XSAVE
//! area. The signal handler's frame sits between the two; resuming returns into the handler,
//! which returns, and `sigreturn` restores the rest.

// Why this file is long (~570 lines): every piece of assembly that depends on the stack
// picture of a suspended context is here (the switch, the entry trampoline and its unwind
// rules, `prepare_stack`, the register and ucontext accessors), so the layouts that must
// agree are read and changed together.

use core::arch::{global_asm, naked_asm};
use core::ffi::c_void;

unsafe extern "C" {
    /// Saves the current context's callee-saved state on its stack, stores its stack pointer
    /// in `*save`, and continues the context whose saved stack pointer is `to`.
    ///
    /// Returns when some later `switch` names the saved pointer as its `to`. (The routine is
    /// `inger_switch`, in the assembly below, with its unwind information.)
    ///
    /// # Safety
    /// `to` must be a stack pointer saved by `switch` (or prepared by [`prepare_stack`]) whose
    /// context has not been continued since; `save` must be valid for a write. The memory of
    /// both stacks must stay mapped for as long as their contexts may be continued.
    #[link_name = "inger_switch"]
    pub(crate) fn switch(save: *mut *mut u8, to: *mut u8);
    /// Continues the context whose saved stack pointer is `to`, abandoning the current one:
    /// [`switch`] without the save. (The routine is `inger_jump`, in the assembly below.)
    ///
    /// # Safety
    /// As for [`switch`]'s `to`; and nothing may ever continue the current context or use a
    /// value that lives in its frames again (its stack may be reused at once).
    #[link_name = "inger_jump"]
    pub(crate) fn jump(to: *mut u8) -> !;
    /// The entry trampoline (see [`prepare_stack`]): never called, only returned into.
    fn inger_entry_trampoline();
    /// The end of the entry trampoline's code.
    static inger_entry_trampoline_end: u8;
}

/// Whether `address` lies in the entry trampoline, the outermost frame of every function's
/// stack (the return address its entry function would return to is its last instruction).
pub(crate) fn is_entry_trampoline(address: usize) -> bool {
    let start = inger_entry_trampoline as *const () as usize;
    let end = (&raw const inger_entry_trampoline_end) as usize;
    (start..=end).contains(&address)
}

// The context switch. Its unwind information describes, at every instruction, the frame of
// the context whose registers are live: before `mov rsp, rsi` the caller's, being saved;
// after it the other context's, being restored. Both pictures are the same (module docs), so
// one set of rules (CFA = rsp + 64 while the frame is complete) serves both, and a sampling
// profiler or debugger that stops inside the switch unwinds into whichever side it is on.
global_asm!(
    ".pushsection .text.inger_switch,\"ax\",@progbits",
    ".p2align 4",
    ".globl inger_switch",
    ".hidden inger_switch",
    ".type inger_switch, @function",
    "inger_switch:",
    ".cfi_startproc",
    // rdi = save, rsi = to. On entry rsp = 8 (mod 16): the return address was just pushed.
    "push rbp", // callee-saved frame pointer
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset rbp, -16",
    "push rbx", // callee-saved
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset rbx, -24",
    "push r12", // callee-saved
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r12, -32",
    "push r13", // callee-saved
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r13, -40",
    "push r14", // callee-saved
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r14, -48",
    "push r15", // callee-saved
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset r15, -56",
    // One slot for the FP control words, zeroed (its last byte is the inherit marker, which
    // a saved picture never has); rsp = 0 (mod 16) now.
    "push 0",
    ".cfi_adjust_cfa_offset 8", // CFA = rsp + 64: the complete picture
    "stmxcsr [rsp]",            // SSE control/status (rounding, exception masks, FTZ/DAZ)
    "fnstcw [rsp + 4]",         // x87 control word (precision, rounding)
    "mov [rdi], rsp",           // publish where this context can be continued
    // Each word is loaded with the width it was stored with: one 8-byte load of the two
    // would wait for both stores to retire (no store forwarding), ~15 cycles per switch.
    "mov ecx, [rsp]",                // our MXCSR
    "movzx edi, word ptr [rsp + 4]", // our x87 control word (rdi is free now)
    "mov rsp, rsi",                  // adopt the other context's stack (same picture, same rules)
    "cmp byte ptr [rsp + 7], 0",     // a fresh context, inheriting our words?
    "jne 3f",                        // yes: keep them
    // The words almost never differ between contexts, so each is reloaded only when it
    // differs (a reload may stall the pipeline on some processors). MXCSR's low six bits
    // are sticky status flags, which the ABI makes caller-saved: bits 6..16 count.
    "mov eax, [rsp]",   // their MXCSR
    "xor eax, ecx",     // bits that differ from ours
    "test eax, 0xffc0", // any control bit (DAZ, exception masks, rounding, FTZ)?
    "jz 2f",            // no: keep ours
    "ldmxcsr [rsp]",    // yes: their SSE control/status
    "2:",
    "cmp di, word ptr [rsp + 4]", // their x87 control word: the same as ours?
    "je 3f",                      // yes: keep ours
    "fldcw [rsp + 4]",            // no: theirs
    "3:",
    ".Linger_switch_restore:", // `inger_jump` continues here, its control words in place
    "add rsp, 8",              // drop the control-word slot
    ".cfi_adjust_cfa_offset -8",
    "pop r15", // its callee-saved registers, in reverse order
    ".cfi_adjust_cfa_offset -8",
    ".cfi_restore r15",
    "pop r14",
    ".cfi_adjust_cfa_offset -8",
    ".cfi_restore r14",
    "pop r13",
    ".cfi_adjust_cfa_offset -8",
    ".cfi_restore r13",
    "pop r12",
    ".cfi_adjust_cfa_offset -8",
    ".cfi_restore r12",
    "pop rbx",
    ".cfi_adjust_cfa_offset -8",
    ".cfi_restore rbx",
    "pop rbp",
    ".cfi_adjust_cfa_offset -8",
    ".cfi_restore rbp",
    // Continue where it called `switch` (or enter the trampoline) with an indirect jump
    // rather than `ret`: a `ret` here would consume the return-stack-buffer entry pushed by
    // this side's call and mispredict (the target is on the other stack), and so would the
    // other side's next `ret`; the jump's target is predicted from its history instead.
    "pop rcx",
    ".cfi_adjust_cfa_offset -8",
    ".cfi_register rip, rcx",
    "jmp rcx",
    ".cfi_endproc",
    ".size inger_switch, . - inger_switch",
    // The one-way switch, for a context that is never continued: nothing is saved. Until
    // `mov rsp, rdi` the frame is the caller's (CFA = rsp + 8, the return address just pushed);
    // after it, the other context's picture, described as in `inger_switch`, whose restoring
    // tail this shares.
    ".p2align 4",
    ".globl inger_jump",
    ".hidden inger_jump",
    ".type inger_jump, @function",
    "inger_jump:",
    ".cfi_startproc",
    "mov rsp, rdi", // rdi = to: adopt the other context's stack
    ".cfi_def_cfa_offset 64",
    ".cfi_offset rbp, -16",
    ".cfi_offset rbx, -24",
    ".cfi_offset r12, -32",
    ".cfi_offset r13, -40",
    ".cfi_offset r14, -48",
    ".cfi_offset r15, -56",
    "cmp byte ptr [rsp + 7], 0", // a fresh context, inheriting the current words?
    "jne .Linger_switch_restore", // yes: keep them
    // Ours are not known without `stmxcsr`, which costs more than loading theirs.
    "ldmxcsr [rsp]",
    "fldcw [rsp + 4]",
    "jmp .Linger_switch_restore",
    ".cfi_endproc",
    ".size inger_jump, . - inger_jump",
    ".popsection",
);

// The first code run on a fresh stack: calls `r13(r12)`, which never returns. It is entered
// by the `ret` of `inger_switch` with rsp = `top` (0 mod 16, as a call requires), and rsp
// stays there: the word at `[rsp]` is the saved stack pointer of whoever resumed this context
// (see `prepare_stack`), so the trampoline's frame can say where its "caller" is.
//
// # Unwind information: from the function into its resumer
//
// Unwinders (libgcc for panics and `std::backtrace`, gdb, libunwind) treat the trampoline as
// if the resumer's `switch` had called it: its canonical frame address is the resumer's
// saved stack pointer + 64, the resumer's stack pointer once its `switch` returns, and the
// resumer's return address and callee-saved registers are where that switch saved them
// (the module docs' picture, at CFA - 64). A DWARF expression reads the pointer at unwind
// time, so the walk reaches whoever resumed the function *this* time: a nested function's
// enclosing one, or another thread after a migration. Expression (DW_CFA_def_cfa_expression,
// 5 bytes): DW_OP_breg7 (rsp) 0, DW_OP_deref, DW_OP_plus_uconst 64. A `nop` before the entry
// belongs to the trampoline because an unwinder looks up `return address - 1`, and the
// switch into a fresh context "returns" to the entry itself.
//
// The frame is marked as a signal frame (`S` augmentation), as corosensei's is, for gdb: it
// ends a backtrace ("previous frame inner to this frame") where the stack addresses of two
// consecutive ordinary frames go the wrong way, which they do here whenever the resumer's
// stack lies below the function's (an enclosing function in a lower stack slot, a thread
// created after the stacks were mapped); after a signal frame a stack switch is expected.
// gdb therefore shows the trampoline as `<signal handler called>` (inger's gdb script names
// it), and every unwinder looks the resumer's return address up as it is rather than minus
// one, which is harmless: `switch` is never the last instruction of its caller. libgcc
// reports the resumer's frame as interrupted (`_Unwind_GetIPInfo`), so the runtime's own
// signal-handler detection stops at the trampoline ([`is_entry_trampoline`]).
global_asm!(
    ".pushsection .text.inger_switch,\"ax\",@progbits",
    ".p2align 4",
    ".type inger_entry_trampoline, @function",
    ".cfi_startproc",
    ".cfi_signal_frame",
    ".cfi_escape 0x0f, 5, 0x77, 0x00, 0x06, 0x23, {frame}", // CFA = [rsp] + 64
    ".cfi_offset rip, -8",
    ".cfi_offset rbp, -16",
    ".cfi_offset rbx, -24",
    ".cfi_offset r12, -32",
    ".cfi_offset r13, -40",
    ".cfi_offset r14, -48",
    ".cfi_offset r15, -56",
    "nop", // looked up as `entry - 1` by unwinders
    ".globl inger_entry_trampoline",
    ".hidden inger_entry_trampoline",
    "inger_entry_trampoline:",
    "mov rdi, r12", // the entry's argument
    "call r13",     // the entry function; it switches away and never returns
    "ud2",          // unreachable: trap loudly rather than run off the end
    ".globl inger_entry_trampoline_end",
    ".hidden inger_entry_trampoline_end",
    "inger_entry_trampoline_end:",
    ".cfi_endproc",
    ".size inger_entry_trampoline, . - inger_entry_trampoline",
    ".popsection",
    frame = const SWITCH_FRAME,
);

/// Size of the picture [`switch`] expects below a saved stack pointer.
const SWITCH_FRAME: usize = 64;

/// Writes, just below `top`, a context that starts by calling `entry(arg)`, and returns its
/// saved stack pointer for [`switch`] or [`jump`]. It starts with the floating-point control
/// words of the context that first continues it.
///
/// Whenever the context runs, the word at `top` must hold the stack pointer its resumer's
/// `switch` saved (the runtime keeps it there: it is the first field of the control block
/// that starts at `top`): unwinders read it to walk from the context into its resumer.
///
/// # Safety
/// `top` must be 16-byte aligned, and the `SWITCH_FRAME` bytes below it writable memory of a
/// stack that nothing else uses. `entry` must never return.
pub(crate) unsafe fn prepare_stack(
    top: *mut u8,
    entry: unsafe extern "C" fn(*mut c_void) -> !,
    arg: *mut c_void,
) -> *mut u8 {
    debug_assert_eq!(top as usize % 16, 0);
    // SAFETY: the caller guarantees SWITCH_FRAME writable bytes below `top`.
    unsafe {
        let sp = top.sub(SWITCH_FRAME);
        let slots = sp.cast::<u64>();
        slots.write(INHERIT_CONTROL_WORDS);
        slots.add(1).write(0); // r15
        slots.add(2).write(0); // r14
        slots.add(3).write(entry as *const () as usize as u64); // r13: entry function
        slots.add(4).write(arg as u64); // r12: its argument
        slots.add(5).write(0); // rbx
        slots.add(6).write(0); // rbp: 0 ends frame-pointer chains
        slots
            .add(7)
            .write(inger_entry_trampoline as *const () as usize as u64); // return address
        sp
    }
}

/// The control-word slot of a fresh context: no words, and the inherit marker (byte 7) set,
/// so that the first switch into it keeps the words of the context it comes from.
const INHERIT_CONTROL_WORDS: u64 = 1 << 56;

/// Registers of a suspended or interrupted frame: where a stack walk starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Registers {
    /// The instruction pointer.
    pub(crate) ip: usize,
    /// The stack pointer.
    pub(crate) sp: usize,
    /// The frame pointer.
    pub(crate) bp: usize,
    /// Whether `ip` is a return address (a call site) rather than an interrupted instruction.
    pub(crate) ip_is_return_address: bool,
}

/// The interrupted context's registers, from a signal handler's `ucontext`.
///
/// # Safety
/// `ucontext` must be the third argument of an `SA_SIGINFO` handler that is still running.
pub(crate) unsafe fn interrupted_registers(ucontext: *mut c_void) -> Registers {
    // SAFETY: per the contract, the kernel-written ucontext_t is valid for reads.
    let gregs = unsafe { &(*ucontext.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    Registers {
        ip: gregs[libc::REG_RIP as usize] as usize,
        sp: gregs[libc::REG_RSP as usize] as usize,
        bp: gregs[libc::REG_RBP as usize] as usize,
        ip_is_return_address: false,
    }
}

/// What a signal interrupted, as far as system calls go (see [`interrupted_system_call`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SystemCall {
    /// Not a system call (or one whose instruction could not be read).
    None,
    /// A system call the kernel will restart: the context continues at the `syscall`
    /// instruction.
    Restarting,
    /// A system call that the signal made fail with `EINTR`: the context continues after the
    /// `syscall` instruction with `rax = -EINTR`. `number` is the call's number when the
    /// code loaded it with `mov $number, %eax` just before (glibc's wrappers do).
    Interrupted { number: Option<u32> },
}

/// Whether the context a signal interrupted was in a system call, from the handler's
/// `ucontext`. Reads the code bytes around the interrupted instruction, only within its page
/// (code is mapped whole pages at a time). Async-signal-safe.
///
/// # Safety
/// As for [`interrupted_registers`].
pub(crate) unsafe fn interrupted_system_call(ucontext: *mut c_void) -> SystemCall {
    const SYSCALL: [u8; 2] = [0x0f, 0x05];
    const MOV_EAX: u8 = 0xb8;
    // SAFETY: per the contract, the kernel-written ucontext_t is valid for reads.
    let gregs = unsafe { &(*ucontext.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    let ip = gregs[libc::REG_RIP as usize] as usize;
    let rax = gregs[libc::REG_RAX as usize];
    let in_page = |offset: usize| ip % 4096 >= offset && (ip % 4096) + 2 <= 4096;
    // The interrupted instruction's page is mapped and readable (it was executing); every
    // read below lies in it.
    let read_pair = |at: usize| {
        // SAFETY: `at` and `at + 1` lie in the interrupted instruction's page (see above).
        unsafe { (at as *const [u8; 2]).read_unaligned() }
    };
    if in_page(0) && read_pair(ip) == SYSCALL {
        return SystemCall::Restarting;
    }
    if rax != -i64::from(libc::EINTR) || !in_page(2) {
        return SystemCall::None;
    }
    if read_pair(ip - 2) != SYSCALL {
        return SystemCall::None;
    }
    let number = in_page(7)
        .then(|| {
            // SAFETY: as above: within the interrupted instruction's page.
            let bytes = unsafe { ((ip - 7) as *const [u8; 5]).read_unaligned() };
            (bytes[0] == MOV_EAX)
                .then(|| u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]))
        })
        .flatten();
    SystemCall::Interrupted { number }
}

/// The argument registers of the system call the context a signal interrupted was making
/// (`rdi, rsi, rdx, r10, r8, r9`: the kernel leaves them as they were).
///
/// # Safety
/// As for [`interrupted_registers`].
pub(crate) unsafe fn system_call_arguments(ucontext: *mut c_void) -> [u64; 6] {
    // SAFETY: per the contract, the kernel-written ucontext_t is valid for reads.
    let gregs = unsafe { &(*ucontext.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    [
        libc::REG_RDI,
        libc::REG_RSI,
        libc::REG_RDX,
        libc::REG_R10,
        libc::REG_R8,
        libc::REG_R9,
    ]
    .map(|register| gregs[register as usize] as u64)
}

/// Makes the context a signal interrupted in system call `number` (which failed with `EINTR`,
/// see [`SystemCall::Interrupted`]) execute it again with `arguments` when the handler
/// returns: the `syscall` instruction is two bytes before the interrupted one.
///
/// # Safety
/// As for [`interrupted_registers`]; the context must be [`SystemCall::Interrupted`].
pub(crate) unsafe fn restart_system_call(ucontext: *mut c_void, number: u32, arguments: [u64; 6]) {
    // SAFETY: per the contract, the kernel-written ucontext_t is valid for writes, and
    // sigreturn loads these registers.
    let gregs = unsafe { &mut (*ucontext.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    gregs[libc::REG_RAX as usize] = i64::from(number);
    gregs[libc::REG_RIP as usize] -= 2;
    for (register, value) in [
        libc::REG_RDI,
        libc::REG_RSI,
        libc::REG_RDX,
        libc::REG_R10,
        libc::REG_R8,
        libc::REG_R9,
    ]
    .into_iter()
    .zip(arguments)
    {
        gregs[register as usize] = value as i64;
    }
}

// inger's own signal-return trampoline: the same instructions as glibc's `__restore_rt`
// (`mov $15, %rax; syscall`, emitted as bytes so that no assembler shortens them), which
// unwinders recognise by those bytes (libgcc when no unwind entry covers the byte before
// it, hence the `int3` pad; gdb also by a name containing "sigaction"). inger's timer
// handler makes its signal frame return here instead of to glibc's (see
// `sys::signal_frame::retarget_sigreturn`), so the copies of the return address that
// frames leave in dead stack are not the address that the signal-handler detection looks
// for.
global_asm!(
    ".pushsection .text.inger_sigaction_restorer,\"ax\",@progbits",
    ".p2align 4",
    "int3",
    ".globl inger_sigaction_restorer",
    ".hidden inger_sigaction_restorer",
    ".type inger_sigaction_restorer, @function",
    "inger_sigaction_restorer:",
    ".byte 0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05",
    "ud2",
    ".size inger_sigaction_restorer, . - inger_sigaction_restorer",
    ".popsection",
);

unsafe extern "C" {
    /// See the assembly above: never called, only returned into by a signal frame.
    fn inger_sigaction_restorer();
}

/// The address of inger's signal-return trampoline (the assembly above).
pub(crate) fn sigaction_restorer() -> usize {
    inger_sigaction_restorer as *const () as usize
}

/// Where a signal frame keeps its return address (the trampoline's), from the `ucontext`
/// the kernel passed: the word just below it (`struct rt_sigframe`: `pretcode`, then `uc`).
pub(crate) fn sigreturn_slot(ucontext: *mut c_void) -> *mut usize {
    ucontext.cast::<usize>().wrapping_sub(1)
}

/// The interrupted context's stack pointer, from a signal handler's `ucontext`.
///
/// # Safety
/// As for [`interrupted_registers`].
pub(crate) unsafe fn interrupted_sp(ucontext: *mut c_void) -> usize {
    // SAFETY: per the contract.
    unsafe { interrupted_registers(ucontext) }.sp
}

/// The current stack pointer (for the cheap `debug_assert!`s of execution contexts).
#[inline(always)]
pub(crate) fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: copies rsp into a register; touches no memory.
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    sp
}

/// The current thread pointer (the fs base), read from the TCB's self-pointer at `%fs:0`,
/// which the x86-64 TLS ABI guarantees.
#[inline]
pub(crate) fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: every thread (and every private block inger installs) has a TCB whose first
    // word points to itself.
    unsafe {
        core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags))
    };
    tp
}

/// Whether the CPU and kernel let user code write the fs base directly (`AT_HWCAP2` bit 1).
pub(crate) fn fsgsbase_available() -> bool {
    const HWCAP2_FSGSBASE: u64 = 1 << 1;
    // SAFETY: getauxval has no preconditions.
    (unsafe { libc::getauxval(libc::AT_HWCAP2) }) & HWCAP2_FSGSBASE != 0
}

/// Whether the process runs with a hardware shadow stack (Intel CET user shadow stacks,
/// Linux 6.6+), where a return address rewritten on the stack would not match the shadow
/// copy and the return would fault: `arch_prctl(ARCH_SHSTK_STATUS)`.
pub(crate) fn shadow_stack_enabled() -> bool {
    /// `ARCH_SHSTK_STATUS` and `ARCH_SHSTK_SHSTK` from `<asm/prctl.h>`.
    const ARCH_SHSTK_STATUS: libc::c_long = 0x5005;
    const ARCH_SHSTK_SHSTK: u64 = 1 << 0;
    let mut features: u64 = 0;
    // SAFETY: ARCH_SHSTK_STATUS only writes the enabled features to `features`; kernels that
    // do not know it fail with EINVAL, and then there is no shadow stack.
    let status =
        unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_SHSTK_STATUS, &raw mut features) };
    status == 0 && features & ARCH_SHSTK_SHSTK != 0
}

/// Installs `tp` as the fs base with `wrfsbase` (about 10 ns).
///
/// # Safety
/// The CPU and kernel must allow `wrfsbase` ([`fsgsbase_available`]), and `tp` must point to
/// a TCB that stays valid while installed: every thread-local access afterwards goes there.
#[inline]
pub(crate) unsafe fn set_thread_pointer_fast(tp: usize) {
    // SAFETY: per the contract.
    unsafe { core::arch::asm!("wrfsbase {}", in(reg) tp, options(nostack, preserves_flags)) };
}

/// Installs `tp` as the fs base with the `arch_prctl` system call (a few hundred ns).
///
/// # Safety
/// As for [`set_thread_pointer_fast`], without the CPU requirement.
pub(crate) unsafe fn set_thread_pointer_slow(tp: usize) {
    /// `ARCH_SET_FS` from `<asm/prctl.h>`.
    const ARCH_SET_FS: libc::c_long = 0x1002;
    // SAFETY: per the contract; ARCH_SET_FS only changes this thread's fs base.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_SET_FS, tp) };
}

/// Replaces the signal mask and alternate-stack settings that `sigreturn` will install from
/// a suspended signal frame (used when a function paused inside the handler is resumed on
/// another thread, whose own settings `mask` and `stack` are). Async-signal-safe.
///
/// # Safety
/// `ucontext` must be the `ucontext` of a handler frame that is still suspended or running
/// on the calling thread.
pub(crate) unsafe fn set_frame_signal_state(
    ucontext: *mut c_void,
    mask: &libc::sigset_t,
    stack: Option<libc::stack_t>,
) {
    let uc = ucontext.cast::<libc::ucontext_t>();
    // SAFETY: per the contract the frame is writable. The kernel's frame holds only its own
    // 8-byte signal set here (glibc's sigset_t is larger and the bytes after the first 8
    // belong to the kernel's siginfo): copy 8.
    unsafe {
        core::ptr::copy_nonoverlapping(
            (mask as *const libc::sigset_t).cast::<u8>(),
            (&raw mut (*uc).uc_sigmask).cast::<u8>(),
            8,
        );
        if let Some(stack) = stack {
            (*uc).uc_stack = stack;
        }
    }
}

/// The registers of a context suspended by [`switch`] at saved stack pointer `sp`: the
/// return address into its caller, the stack pointer after that return, and its frame pointer.
///
/// # Safety
/// `sp` must be a stack pointer saved by `switch` whose context is still suspended.
pub(crate) unsafe fn suspended_registers(sp: usize) -> Registers {
    let slots = sp as *const usize;
    // SAFETY: per the contract, the switch frame described in the module docs is at `sp`.
    unsafe {
        Registers {
            ip: slots.add(7).read(),
            sp: sp + SWITCH_FRAME,
            bp: slots.add(6).read(),
            ip_is_return_address: true,
        }
    }
}

/// The registers of the function this is inlined into, for a walk from its frame (ordinary
/// code, not a signal handler). Always inlined: a call would capture its own frame instead.
#[inline(always)]
pub(crate) fn caller_registers() -> Registers {
    let mut captured = [0usize; 3];
    capture_caller_registers(&mut captured);
    Registers {
        ip: captured[0],
        sp: captured[1],
        bp: captured[2],
        ip_is_return_address: true,
    }
}

/// The registers of the code that called this function: its return address, the stack
/// pointer after returning to it, and the frame pointer.
#[unsafe(naked)]
extern "C" fn capture_caller_registers(out: *mut [usize; 3]) {
    naked_asm!(
        "mov rax, [rsp]", // our return address: an instruction in the caller
        "mov [rdi], rax",
        "lea rax, [rsp + 8]", // the caller's stack pointer once we return
        "mov [rdi + 8], rax",
        "mov [rdi + 16], rbp", // the caller's frame pointer (we do not touch rbp)
        "ret",
    )
}
