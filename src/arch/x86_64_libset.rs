//! Libset routing stubs: the code a routed call lands in, which continues to the address the
//! running context's route table names for that call (the function's own copy of the
//! library, or the original outside any function).
//!
//! Context: the stubs run in whatever context made the routed call (the caller's, a function
//! stack, a signal handler); their fast part touches only `r11` and memory it reads. The slow
//! entries call the resolver installed with [`init`], on the same stack.
//!
//! ```text
//!  routed call site                 stub k (32 bytes)                       target
//!  call *GOT[foo] ──► fast:  mov  r11, tpoff(inger_libset_routes)    ; the slot's offset
//!                            mov  r11, fs:[r11]                       ; this context's table
//!                            jmp  [r11 + 8k] ───────────────────────► copy's foo / original foo
//!                     slow:  mov  r11d, k          ◄── table[k] of a context that has not
//!                            jmp  inger_libset_slow     resolved k yet (FIRST_USE)
//!
//!  inger_libset_slow: saves every argument register and the vector state (xsave), calls the
//!  resolver with k, restores them, jumps to the address it returned.
//! ```
//!
//! The route table of a context is found through one thread-local word,
//! `inger_libset_routes`, defined here in the initial-exec model: its offset from the thread
//! pointer is the same in every TLS block of the process (threads', and the private blocks
//! of preemptible functions), so one load of that offset and one `fs`-relative load find the
//! table of whichever context runs. Its initial image points at [`FIRST_USE`], whose entries
//! are the stubs' slow entries: a fresh thread, and a function's fresh (or re-initialised)
//! block, start there.
//!
//! No stub has a frame: at every instruction of the stub region the return address is at
//! `[rsp]` (one FDE, the default rule), so a preemption inside a stub unwinds like one at a
//! function's first instruction. The slow part's unwind rows follow its pushes.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::sync::Once;

/// How many stubs exist: the most distinct functions of named libraries that can be routed
/// in one process.
pub(crate) const MAX_ROUTES: usize = 1024;

/// Bytes between consecutive stubs.
const STUB_STRIDE: usize = 32;

/// Offset of a stub's slow entry from its fast entry (7 + 4 + 7 bytes of fixed encodings).
const SLOW_OFFSET: usize = 18;

/// One context's routes: entry `k` is where stub `k` continues. 64-byte aligned so that a
/// table never shares a cache line with anything else.
#[repr(C, align(64))]
pub(crate) struct RouteTable(pub(crate) [AtomicUsize; MAX_ROUTES]);

impl RouteTable {
    /// A table of zeroes (filled before any stub can reach it).
    pub(crate) const fn new() -> RouteTable {
        RouteTable([const { AtomicUsize::new(0) }; MAX_ROUTES])
    }
}

/// The routes of a context that has resolved nothing yet: every entry is its stub's slow
/// entry. Filled once by [`init`], before any call can be routed to a stub.
pub(crate) static FIRST_USE: RouteTable = RouteTable::new();

/// The resolver the slow entries call (`extern "C" fn(index) -> target`), installed by
/// [`init`] (`arch` calls nothing outside itself).
static INGER_LIBSET_RESOLVE: AtomicUsize = AtomicUsize::new(0);
/// Bytes the slow part reserves for `xsave` (or 512 for `fxsave`).
static INGER_LIBSET_SAVE_SIZE: AtomicU32 = AtomicU32::new(0);
/// Non-zero when the slow part uses `xsave` (else `fxsave`).
static INGER_LIBSET_USE_XSAVE: AtomicU32 = AtomicU32::new(0);

static INIT: Once = Once::new();

/// Installs the resolver the slow entries call, sizes their vector save area and fills
/// [`FIRST_USE`]. Call before any global offset table entry points at a stub; later calls do
/// nothing.
///
/// The resolver runs on the stack of the routed call, in its context, with every argument
/// register and the vector state saved; it returns the address to continue at.
pub(crate) fn init(resolve: unsafe extern "C" fn(usize) -> usize) {
    INIT.call_once(|| {
        let (size, xsave) = super::x86_64_redirect::vector_save_area();
        INGER_LIBSET_SAVE_SIZE.store(size, Relaxed);
        INGER_LIBSET_USE_XSAVE.store(u32::from(xsave), Relaxed);
        INGER_LIBSET_RESOLVE.store(resolve as usize, Relaxed);
        // The layout the addresses below assume: `mov r11d, imm32` (41 bb) at the slow
        // offset of the first two stubs.
        for index in 0..2 {
            // SAFETY: reads two bytes of our own code, inside the stub region.
            let opcode = unsafe { *((slow_entry(index)) as *const [u8; 2]) };
            assert_eq!(opcode, [0x41, 0xbb], "libset stub layout");
        }
        for (index, entry) in FIRST_USE.0.iter().enumerate() {
            entry.store(slow_entry(index), Relaxed);
        }
    });
}

/// The address of stub `index` (what a routed global offset table entry holds).
pub(crate) fn stub_address(index: usize) -> usize {
    debug_assert!(index < MAX_ROUTES);
    stubs_base() + index * STUB_STRIDE
}

/// The slow entry of stub `index`.
pub(crate) fn slow_entry(index: usize) -> usize {
    stub_address(index) + SLOW_OFFSET
}

/// The stub index of `address` if it is a stub's entry.
pub(crate) fn stub_index(address: usize) -> Option<usize> {
    let offset = address.checked_sub(stubs_base())?;
    (offset.is_multiple_of(STUB_STRIDE) && offset / STUB_STRIDE < MAX_ROUTES)
        .then_some(offset / STUB_STRIDE)
}

fn stubs_base() -> usize {
    unsafe extern "C" {
        /// The fast entry of stub 0 (see the assembly below).
        static inger_libset_stubs: u8;
    }
    (&raw const inger_libset_stubs) as usize
}

/// Offset of the `inger_libset_routes` slot from the thread pointer (the same in every TLS
/// block: the slot is in static TLS).
fn slot_offset() -> isize {
    unsafe extern "C" {
        fn inger_libset_routes_offset() -> isize;
    }
    // SAFETY: a leaf routine that loads a link-time constant into rax.
    unsafe { inger_libset_routes_offset() }
}

/// Points the running context's routes at `table`. Context: any; async-signal-safe.
pub(crate) fn set_current_routes(table: *const RouteTable) {
    let slot = super::thread_pointer().wrapping_add_signed(slot_offset()) as *mut usize;
    // SAFETY: the slot lies in the static TLS of the installed block, written only by the
    // context that runs in it (or, for a block nobody runs, by `set_routes_in_block`).
    unsafe { slot.write(table as usize) };
}

/// Points the routes of the TLS block whose thread pointer is `tp` at `table`.
///
/// # Safety
/// `tp` must be the thread pointer of a live TLS block of this process that no context is
/// running in.
pub(crate) unsafe fn set_routes_in_block(tp: usize, table: *const RouteTable) {
    let slot = tp.wrapping_add_signed(slot_offset()) as *mut usize;
    // SAFETY: per the contract the slot lies in that block's static TLS, and nobody runs in
    // the block to race with this write.
    unsafe { slot.write(table as usize) };
}

// The thread-local slot, in initial-exec TLS, whose initial image points at FIRST_USE, and
// a routine that returns its offset from the thread pointer.
global_asm!(
    ".pushsection .tdata.inger_libset_routes,\"awT\",@progbits",
    ".p2align 3",
    "inger_libset_routes:",
    ".quad {first_use}",
    ".popsection",
    ".pushsection .text.inger_libset,\"ax\",@progbits",
    ".p2align 4",
    ".globl inger_libset_routes_offset",
    ".hidden inger_libset_routes_offset",
    ".type inger_libset_routes_offset, @function",
    "inger_libset_routes_offset:",
    ".cfi_startproc",
    "mov rax, qword ptr [rip + inger_libset_routes@GOTTPOFF]",
    "ret",
    ".cfi_endproc",
    ".size inger_libset_routes_offset, . - inger_libset_routes_offset",
    ".popsection",
    first_use = sym FIRST_USE,
);

// The stubs, each 32 bytes apart, under one FDE with the default rule (the return address
// at [rsp]): no stub instruction moves the stack pointer. The indirect jump is written as
// bytes so that its displacement is always 4 bytes (`jmp qword ptr [r11 + disp32]`), which
// keeps the slow entry at a fixed offset.
global_asm!(
    ".pushsection .text.inger_libset,\"ax\",@progbits",
    ".p2align 5",
    ".globl inger_libset_stubs",
    ".hidden inger_libset_stubs",
    ".type inger_libset_stubs, @function",
    "inger_libset_stubs:",
    ".cfi_startproc",
    ".set inger_libset_k, 0",
    ".rept {count}",
    ".p2align 5",
    "mov r11, qword ptr [rip + inger_libset_routes@GOTTPOFF]", // 7 bytes: the slot's offset
    "mov r11, qword ptr fs:[r11]",                             // 4 bytes: this context's table
    ".byte 0x41, 0xff, 0xa3",                                  // 7 bytes: jmp [r11 + 8k]
    ".long inger_libset_k * 8",
    "mov r11d, inger_libset_k",                                // the slow entry: the index
    "jmp inger_libset_slow",
    ".set inger_libset_k, inger_libset_k + 1",
    ".endr",
    ".cfi_endproc",
    ".size inger_libset_stubs, . - inger_libset_stubs",
    ".popsection",
    count = const MAX_ROUTES,
);

// The slow part: entered by `jmp` with the stub index in r11 and the routed call's return
// address at [rsp]. Saves every register that may carry an argument (rdi, rsi, rdx, rcx,
// r8, r9, rax for the vector count of a variadic call, r10 for a static chain) and the whole
// vector and x87 state, calls the resolver, restores everything and jumps to the target it
// returned with the stack exactly as the routed call left it.
global_asm!(
    ".pushsection .text.inger_libset,\"ax\",@progbits",
    ".p2align 4",
    ".globl inger_libset_slow",
    ".hidden inger_libset_slow",
    ".type inger_libset_slow, @function",
    "inger_libset_slow:",
    ".cfi_startproc",                             // CFA = rsp + 8, return address at CFA - 8
    "push rbp",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset 6, -16",
    "mov rbp, rsp",
    ".cfi_def_cfa_register 6",
    "push r11",                                   // [rbp - 8]: the stub index
    "push rax",
    "push rdi",
    "push rsi",
    "push rdx",
    "push rcx",
    "push r8",
    "push r9",
    "push r10",                                   // rsp = rbp - 72
    "mov ecx, dword ptr [rip + {size}]",
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
    "mov rdi, [rbp - 8]",
    "call qword ptr [rip + {resolve}]",           // may pause and resume elsewhere
    "mov [rbp - 8], rax",                         // the target, over the index
    "cmp dword ptr [rip + {use_xsave}], 0",
    "je 4f",
    "mov eax, -1",
    "mov edx, -1",
    "xrstor [rsp]",
    "jmp 5f",
    "4:",
    "fxrstor [rsp]",
    "5:",
    "lea rsp, [rbp - 72]",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rcx",
    "pop rdx",
    "pop rsi",
    "pop rdi",
    "pop rax",
    "pop r11",                                    // the target
    "pop rbp",
    ".cfi_def_cfa 7, 8",
    "jmp r11",
    ".cfi_endproc",
    ".size inger_libset_slow, . - inger_libset_slow",
    ".popsection",
    size = sym INGER_LIBSET_SAVE_SIZE,
    use_xsave = sym INGER_LIBSET_USE_XSAVE,
    resolve = sym INGER_LIBSET_RESOLVE,
);
