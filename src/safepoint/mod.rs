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

pub(crate) mod cancel;
pub(crate) mod eh;
pub(crate) mod symbols;
pub(crate) mod tables;

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64};
use framehop::{FrameAddress, MustNotAllocateDuringUnwind, Unwinder};

use crate::arch::Registers;
use crate::arch::redirect;
use tables::{Class, Tables};

/// Per-thread caches of the walk (allocated once, never while unwinding): framehop's unwind
/// rules, the class of recently seen code addresses (the same return addresses recur from
/// one check to the next), and what cancellations found about the frames they walked
/// (see [`cancel`]).
pub(crate) struct UnwindCache {
    rules: CacheX86_64<MustNotAllocateDuringUnwind>,
    classes: [(usize, Class); CLASS_SLOTS],
    verdicts: [(usize, bool); cancel::VERDICT_SLOTS],
    /// The tables the classes and verdicts were computed from.
    tables: *const Tables,
}

const CLASS_SLOTS: usize = 512;

impl UnwindCache {
    /// An empty cache.
    pub(crate) fn new() -> Self {
        UnwindCache {
            rules: CacheX86_64::new_in(),
            classes: [(0, Class::Unknown); CLASS_SLOTS],
            verdicts: [(0, false); cancel::VERDICT_SLOTS],
            tables: core::ptr::null(),
        }
    }

    /// Forgets what was learned from other tables than `tables` (the modules changed: an
    /// address may hold other code now).
    fn sync(&mut self, tables: &Tables) {
        if !core::ptr::eq(self.tables, tables) {
            self.classes = [(0, Class::Unknown); CLASS_SLOTS];
            self.verdicts = [(0, false); cancel::VERDICT_SLOTS];
            self.tables = tables;
        }
    }

    fn classify(&mut self, tables: &Tables, address: usize) -> Class {
        self.sync(tables);
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

/// How a pause was found allowed (for the counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Allowed {
    /// No frame of the chain is in non-preemptible code.
    Anywhere,
    /// The innermost frames are in one of libc's pure memory and string routines.
    InPureRoutine,
    /// The innermost frames are blocked in a system call at a POSIX cancellation point.
    InBlockingCall,
}

/// Why a chain cannot be paused now, and where its critical section ends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Blocked {
    /// The innermost reason found.
    pub(crate) reason: Reason,
    /// The return of the outermost non-preemptible frame into preemptible code (absent when
    /// the walk could not finish, or found a return already redirected).
    pub(crate) section_end: Option<SectionEnd>,
    /// A frame of the chain already returns into a redirect stub.
    pub(crate) redirect_pending: bool,
}

impl Blocked {
    /// A chain whose stack could not be walked at all.
    pub(crate) fn unwalkable() -> Blocked {
        Blocked {
            reason: Reason::Unwind,
            section_end: None,
            redirect_pending: false,
        }
    }
}

/// Where a critical section ends: the return-address word of its outermost frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SectionEnd {
    /// Which stack of the chain (0: the innermost).
    pub(crate) stack: usize,
    /// The address of the frame's return-address word.
    pub(crate) slot: usize,
    /// The return address it holds, into preemptible code.
    pub(crate) return_address: usize,
    /// An address inside the frame's own function (for the functions never redirected).
    pub(crate) function: usize,
}

/// Applies the whole-stack rule to a chain of stacks, innermost first. Only the innermost
/// frames of the first stack, when interrupted (not suspended at a call), may be in a pure
/// libc routine or blocked in a system call at a cancellation point.
///
/// # Safety
/// Each stack's `[low, high)` must be mapped and readable and must not be unmapped during
/// the check; the caller must keep other users of `cache` away (it is the thread's own, and
/// the handler is kept out by the running function's `in_handler` flag).
pub(crate) unsafe fn check(
    cache: &mut UnwindCache,
    stacks: impl IntoIterator<Item = StackToWalk>,
) -> Result<Allowed, Blocked> {
    let Some(tables) = tables::current() else {
        return Err(Blocked {
            reason: Reason::Unknown,
            section_end: None,
            redirect_pending: false,
        });
    };
    let mut allowed = Allowed::Anywhere;
    let mut blocked: Option<Blocked> = None;
    for (index, stack) in stacks.into_iter().enumerate() {
        let walked = walk(tables, cache, &stack, index);
        if let Some(reason) = walked.unfinished {
            return Err(Blocked {
                reason: blocked.map_or(reason, |b| b.reason),
                section_end: None,
                redirect_pending: walked.redirect_pending
                    || blocked.is_some_and(|b| b.redirect_pending),
            });
        }
        if index == 0 {
            allowed = walked.allowed;
        }
        if let Some(reason) = walked.reason {
            let previous = blocked.take();
            blocked = Some(Blocked {
                reason: previous.map_or(reason, |b| b.reason),
                // The outermost section wins: its end covers every inner one.
                section_end: walked.section_end,
                redirect_pending: walked.redirect_pending
                    || previous.is_some_and(|b| b.redirect_pending),
            });
        } else if walked.redirect_pending
            && let Some(b) = blocked.as_mut()
        {
            b.redirect_pending = true;
        }
    }
    match blocked {
        Some(mut blocked) => {
            if blocked.redirect_pending {
                blocked.section_end = None;
            }
            Err(blocked)
        }
        None => Ok(allowed),
    }
}

/// What a walk of one stack found.
struct Walked {
    /// The walk could not finish (code of no known module, no unwind information).
    unfinished: Option<Reason>,
    /// The innermost non-preemptible frame's reason, if any.
    reason: Option<Reason>,
    /// Where the outermost non-preemptible frame returns into preemptible code.
    section_end: Option<SectionEnd>,
    /// A frame returns into a redirect stub.
    redirect_pending: bool,
    /// How the innermost frames were allowed.
    allowed: Allowed,
}

/// The innermost run of library frames of an interrupted stack: allowed when it is a pure
/// routine, or a blocking call at a cancellation point, called from preemptible code.
struct InnermostLibraryFrames {
    /// Still collecting (no other frame seen yet).
    open: bool,
    count: usize,
    all_pure: bool,
    /// The interrupted instruction is at, or just after, a `syscall`.
    at_system_call: bool,
    /// An address in the outermost frame of the run.
    outermost_function: usize,
    /// That frame's return into its caller.
    outermost_end: Option<SectionEnd>,
}

/// The word at `address` if all of it lies in `[low, high)`: the only stack memory a walk
/// reads.
///
/// # Safety
/// `[low, high)` must be mapped and readable.
unsafe fn read_stack_word(low: usize, high: usize, address: usize) -> Option<usize> {
    if address >= low && address.checked_add(8).is_some_and(|end| end <= high) {
        // SAFETY: inside `[low, high)`, readable by the contract, 8 bytes.
        Some(unsafe { (address as *const u64).read_unaligned() } as usize)
    } else {
        None
    }
}

/// Walks one stack from its registers to its base.
fn walk(tables: &Tables, cache: &mut UnwindCache, stack: &StackToWalk, index: usize) -> Walked {
    let (low, high, base, registers) = (stack.low, stack.high, stack.base, stack.registers);
    // SAFETY: the stack's span is mapped and readable (the caller's contract).
    let read_word = |address: usize| unsafe { read_stack_word(low, high, address) };
    let mut read_stack = |address: u64| read_word(address as usize).map(|w| w as u64).ok_or(());
    let mut walked = Walked {
        unfinished: None,
        reason: None,
        section_end: None,
        redirect_pending: false,
        allowed: Allowed::Anywhere,
    };
    let mut regs = UnwindRegsX86_64::new(
        registers.ip as u64,
        registers.sp as u64,
        registers.bp as u64,
    );
    let mut frame = if registers.ip_is_return_address {
        match FrameAddress::from_return_address(registers.ip as u64) {
            Some(frame) => frame,
            None => {
                walked.unfinished = Some(Reason::Unwind);
                return walked;
            }
        }
    } else {
        FrameAddress::from_instruction_pointer(registers.ip as u64)
    };
    let interrupted = index == 0 && !registers.ip_is_return_address;
    let mut run = InnermostLibraryFrames {
        open: interrupted,
        count: 0,
        all_pure: true,
        at_system_call: interrupted && at_system_call(tables, registers.ip),
        outermost_function: 0,
        outermost_end: None,
    };
    for _ in 0..MAX_FRAMES {
        // A return already redirected to a stub: the stub frame is empty, and the real return
        // address waits in the top word of the stack (see `arch::redirect`).
        if let FrameAddress::ReturnAddress(return_address) = frame
            && redirect::is_stub(return_address.get() as usize)
        {
            walked.redirect_pending = true;
            let original = read_word(redirect::top_word(high))
                .and_then(|original| FrameAddress::from_return_address(original as u64));
            match original {
                Some(original) => {
                    frame = original;
                    continue;
                }
                None => {
                    walked.unfinished = Some(Reason::Unwind);
                    return walked;
                }
            }
        }
        // A frame of a stub's landing pad: an exception is being unwound through a
        // redirected return (libgcc's own code is on the stack above it, never a safe
        // point). Its return address is a DWARF expression, which framehop does not read.
        if let FrameAddress::ReturnAddress(return_address) = frame
            && redirect::is_in_landing_pad(return_address.get() as usize)
        {
            walked.unfinished = Some(Reason::Unwind);
            return walked;
        }
        let address = frame.address_for_lookup() as usize;
        let class = cache.classify(tables, address);
        let mut critical = false;
        let mut in_run = false;
        if run.open {
            if class == Class::Library {
                run.count += 1;
                run.all_pure &= tables.is_pure(address);
                run.outermost_function = address;
                in_run = true;
            } else {
                run.open = false;
                if run.count > 0 {
                    let fine = class == Class::Preemptible
                        && (run.all_pure
                            || (run.at_system_call
                                && tables.is_blocking_entry(run.outermost_function)));
                    if fine {
                        walked.allowed = if run.all_pure {
                            Allowed::InPureRoutine
                        } else {
                            Allowed::InBlockingCall
                        };
                    } else {
                        walked.reason.get_or_insert(Reason::Library);
                        walked.section_end = run.outermost_end;
                    }
                }
            }
        }
        if !in_run {
            match class {
                Class::Preemptible => {}
                Class::Library => {
                    walked.reason.get_or_insert(Reason::Library);
                    critical = true;
                }
                Class::StdSection => {
                    walked.reason.get_or_insert(Reason::StdSection);
                    critical = true;
                }
                Class::Unknown => {
                    tables::request_refresh();
                    walked.unfinished = Some(Reason::Unknown);
                    return walked;
                }
            }
        }
        match tables
            .unwinder
            .unwind_frame(frame, &mut regs, &mut cache.rules, &mut read_stack)
        {
            Ok(Some(return_address)) => {
                if critical || in_run {
                    let slot = regs.sp() as usize - 8;
                    let end =
                        (read_word(slot) == Some(return_address as usize)).then_some(SectionEnd {
                            stack: index,
                            slot,
                            return_address: return_address as usize,
                            function: address,
                        });
                    if in_run {
                        run.outermost_end = end;
                    } else {
                        walked.section_end = end;
                    }
                }
                if regs.sp() as usize >= base {
                    // The next frame is the runtime's entry: the base.
                    if run.open && run.count > 0 {
                        walked.reason.get_or_insert(Reason::Library);
                    }
                    return walked;
                }
                match FrameAddress::from_return_address(return_address) {
                    Some(next) => frame = next,
                    None => {
                        walked.unfinished = Some(Reason::Unwind);
                        return walked;
                    }
                }
            }
            Ok(None) | Err(_) => {
                walked.unfinished = Some(Reason::Unwind);
                return walked;
            }
        }
    }
    walked.unfinished = Some(Reason::Unwind);
    walked
}

/// Whether `ip`, inside a library's code, is at (a restart) or just after (an interrupted
/// call) a `syscall` instruction.
fn at_system_call(tables: &Tables, ip: usize) -> bool {
    const SYSCALL: [u8; 2] = [0x0f, 0x05];
    let read = |at: usize| -> Option<[u8; 2]> {
        // Both bytes must lie in a library's mapped code.
        if tables.classify(at) == Class::Library && tables.classify(at + 1) == Class::Library {
            // SAFETY: inside a mapped, readable code segment.
            Some(unsafe { (at as *const [u8; 2]).read_unaligned() })
        } else {
            None
        }
    };
    read(ip) == Some(SYSCALL) || ip.checked_sub(2).and_then(read) == Some(SYSCALL)
}
