//! Safe points: when a running preemptible function may be paused (the whole-stack rule).
//!
//! # The rule
//!
//! A function may be paused only when **no frame on its stack** belongs to non-preemptible
//! code, except that the innermost frames may be a blocking system-call wrapper at a POSIX
//! cancellation point (`read`, `write`, `poll`, `nanosleep`, `syscall` for futex waits, ...):
//! glibc itself supports asynchronous interruption there, and the call restarts (or reports
//! `EINTR`, which the standard library retries) on resume. Non-preemptible code is
//!
//! 1. the runtime itself and any `nopreempt` section: the per-function counter, checked
//!    before anything else;
//! 2. the dynamic loader, libc, libgcc_s, libstdc++, and libraries the user names
//!    ([`crate::mark_non_preemptible`], `INGER_NONPREEMPTIBLE`);
//! 3. the standard library's internal critical sections linked into the program (see
//!    [`symbols`]);
//! 4. code in no known module (JIT code, a library loaded after start-up) until the module
//!    tables are refreshed, which a background thread does when asked (see [`tables`]).
//!
//! When a function is paused as part of a chain (an outer deadline passed while it ran a
//! nested function), the rule applies to every stack of the chain.
//!
//! # Why the whole stack
//!
//! Looking only at the interrupted instruction misses the cases that matter: a `qsort` whose
//! comparator is Rust code (libc's frame holds no lock, but a `dl_iterate_phdr` callback's
//! does), `println!` running user `Display` code with stdout's lock held, a `LazyLock`
//! initialiser. The original libinger avoided the problem by giving each function a private
//! copy of every shared library (libgotcha); the stack walk is far cheaper, and costs nothing
//! until a deadline has passed.
//!
//! # How the walk is done
//!
//! With [framehop], from the interrupted registers in the signal frame (never through the
//! signal trampoline), using each module's in-memory `.eh_frame_hdr` and `.eh_frame`, a
//! per-thread rule cache that never allocates while unwinding, and a stack reader bounded to
//! the function's own stack. framehop was chosen over hand-written DWARF evaluation (gimli
//! directly) because it already offers exactly this allocation-free mode and caches unwind
//! rules per address, so a repeated check at the same depth costs a few hundred nanoseconds;
//! frame-pointer walking was rejected because Rust omits frame pointers by default.
//!
//! If the walk cannot finish (no unwind information, a corrupt stack), the function is not
//! paused: a deferral is always safe, a wrong pause is not.
//!
//! # Context and dependencies
//!
//! Context: signal handler (the check) or the running function's own stack with its
//! handler kept out (`pending_preemption`); everything here is async-signal-safe and
//! allocation-free once the tables exist. This module is a leaf: it knows stacks only as the
//! [`StackToWalk`] spans its caller hands it, not the runtime's control blocks.

pub(crate) mod symbols;
pub(crate) mod tables;

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64};
use framehop::{FrameAddress, MustNotAllocateDuringUnwind, Unwinder};

use crate::arch::Registers;
use tables::{Class, Tables};

/// Per-thread caches of the walk (allocated once, never while unwinding): framehop's unwind
/// rules, and the class of recently seen code addresses (the same return addresses recur from
/// one check to the next).
pub(crate) struct UnwindCache {
    rules: CacheX86_64<MustNotAllocateDuringUnwind>,
    classes: [(usize, Class); CLASS_SLOTS],
    /// The tables the classes were computed from.
    tables: *const Tables,
}

const CLASS_SLOTS: usize = 512;

impl UnwindCache {
    /// An empty cache.
    pub(crate) fn new() -> Self {
        UnwindCache {
            rules: CacheX86_64::new_in(),
            classes: [(0, Class::Unknown); CLASS_SLOTS],
            tables: core::ptr::null(),
        }
    }

    fn classify(&mut self, tables: &Tables, address: usize) -> Class {
        if !core::ptr::eq(self.tables, tables) {
            self.classes = [(0, Class::Unknown); CLASS_SLOTS];
            self.tables = tables;
        }
        let slot = &mut self.classes[(address ^ (address >> 9)) % CLASS_SLOTS];
        if slot.0 != address {
            *slot = (address, tables.classify(address));
        }
        slot.1
    }
}

/// Deepest stack the check walks; deeper stacks are treated as unverifiable.
const MAX_FRAMES: usize = 4096;

/// Why a function could not be paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// A frame in a non-preemptible library.
    Library,
    /// A frame in one of the standard library's critical sections.
    StdSection,
    /// A frame in no known module.
    Unknown,
    /// The stack could not be walked to its base.
    Unwind,
}

/// One stack of a chain to check, innermost first: where its walk starts and the memory it
/// may read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StackToWalk {
    /// The registers of the stack's innermost frame (interrupted, or suspended in a switch).
    pub(crate) registers: Registers,
    /// Lowest readable address of the stack.
    pub(crate) low: usize,
    /// One past its highest readable address.
    pub(crate) high: usize,
    /// Frames whose stack pointer reaches this address belong to the runtime's entry code:
    /// the walk ends there.
    pub(crate) base: usize,
}

/// Applies the whole-stack rule to a chain of stacks, innermost first. Only the innermost
/// frames of the first stack, if interrupted at a system call, may be blocking wrappers.
///
/// # Safety
/// Each stack's `[low, high)` must be mapped and readable and must not be unmapped during
/// the check; the caller must keep other users of `cache` away (it is the thread's own, and
/// the handler is kept out by the running function's `in_handler` flag).
pub(crate) unsafe fn check(
    cache: &mut UnwindCache,
    stacks: impl IntoIterator<Item = StackToWalk>,
) -> Result<(), Reason> {
    let tables = tables::current().ok_or(Reason::Unknown)?;
    for (index, stack) in stacks.into_iter().enumerate() {
        walk(tables, cache, &stack, index == 0)?;
    }
    Ok(())
}

/// Walks one stack from its registers to its base.
fn walk(
    tables: &Tables,
    cache: &mut UnwindCache,
    stack: &StackToWalk,
    innermost: bool,
) -> Result<(), Reason> {
    let (low, high, base, registers) = (stack.low, stack.high, stack.base, stack.registers);
    let mut read_stack = |address: u64| {
        let address = address as usize;
        if address >= low && address.checked_add(8).is_some_and(|end| end <= high) {
            // SAFETY: inside the function's own mapped stack (the caller's contract),
            // 8-byte readable.
            Ok(unsafe { (address as *const u64).read_unaligned() })
        } else {
            Err(())
        }
    };
    let mut regs = UnwindRegsX86_64::new(
        registers.ip as u64,
        registers.sp as u64,
        registers.bp as u64,
    );
    let mut frame = if registers.ip_is_return_address {
        FrameAddress::from_return_address(registers.ip as u64).ok_or(Reason::Unwind)?
    } else {
        FrameAddress::from_instruction_pointer(registers.ip as u64)
    };
    // Innermost frames may be blocking wrappers, if interrupted at their system call.
    let mut blocking_allowed =
        innermost && !registers.ip_is_return_address && at_system_call(tables, registers.ip);
    for _ in 0..MAX_FRAMES {
        let address = frame.address_for_lookup() as usize;
        match cache.classify(tables, address) {
            Class::Preemptible => blocking_allowed = false,
            Class::Library if blocking_allowed && tables.is_blocking_wrapper(address) => {}
            Class::Library => return Err(Reason::Library),
            Class::StdSection => return Err(Reason::StdSection),
            Class::Unknown => {
                tables::request_refresh();
                return Err(Reason::Unknown);
            }
        }
        match tables
            .unwinder
            .unwind_frame(frame, &mut regs, &mut cache.rules, &mut read_stack)
        {
            Ok(Some(return_address)) => {
                if regs.sp() as usize >= base {
                    return Ok(()); // the next frame is the runtime's entry: the base
                }
                frame = FrameAddress::from_return_address(return_address).ok_or(Reason::Unwind)?;
            }
            Ok(None) | Err(_) => return Err(Reason::Unwind),
        }
    }
    Err(Reason::Unwind)
}

/// Whether `ip`, inside a blocking wrapper, is at (restart) or just after (interrupted) a
/// `syscall` instruction.
fn at_system_call(tables: &Tables, ip: usize) -> bool {
    const SYSCALL: [u8; 2] = [0x0f, 0x05];
    let read = |at: usize| -> Option<[u8; 2]> {
        // Both bytes must lie in the same wrapper, whose code is mapped.
        if tables.is_blocking_wrapper(at) && tables.is_blocking_wrapper(at + 1) {
            // SAFETY: inside a mapped libc function.
            Some(unsafe { (at as *const [u8; 2]).read_unaligned() })
        } else {
            None
        }
    };
    read(ip) == Some(SYSCALL) || ip.checked_sub(2).and_then(read) == Some(SYSCALL)
}
