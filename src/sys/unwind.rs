//! Whether unwinding the calling stack up to a point would run any code: a walk of the
//! stack with the system unwinder (`_Unwind_Backtrace`, libgcc) that reads each frame's
//! exception table (its LSDA) instead of raising an exception.
//!
//! A cooperative cancellation unwinds the function from a cancellation point to the
//! runtime's catch at the top of its stack. When no frame in between has a landing pad at
//! the call it is suspended in (nothing to drop, no `catch_unwind`, no abort guard), the
//! unwinding would run no code at all: the runtime then skips it (see
//! `runtime::exit::cancel_without_unwinding`), which costs one walk of the stack instead of
//! the two of a raised exception, the exception's allocation and the panic count.
//!
//! The answer errs on the side of unwinding: any frame this walk cannot account for (no
//! unwind information, a signal frame, an exception table it does not parse, a call site
//! missing from its table, which a personality routine treats as "terminate") makes it say
//! the frames are not clean.
//!
//! The exception table is the format LLVM and GCC emit for every DWARF personality routine
//! (Rust's, C++'s, C's cleanups): a header, then a call-site table whose entries give a code
//! range, relative to the function's start, and its landing pad, 0 for none.
//!
//! Context: function stack (never the signal handler: the unwinder takes the loader's
//! locks).

use core::ffi::{c_int, c_void};

/// `_Unwind_Reason_Code` values the walk's callback returns: go on, or stop here.
const URC_NO_REASON: c_int = 0;
const URC_NORMAL_STOP: c_int = 4;

/// An unwinder context (`struct _Unwind_Context`), opaque.
#[repr(C)]
pub(super) struct UnwindContext {
    _private: [u8; 0],
}

/// The callback `_Unwind_Backtrace` calls for every frame.
pub(super) type TraceFn = extern "C" fn(*mut UnwindContext, *mut c_void) -> c_int;

// libgcc_s's unwinder (also used by Rust's own panics): documented in the Itanium C++ ABI's
// unwinding chapter plus the GNU extensions `_Unwind_Backtrace` and `_Unwind_GetIPInfo`.
unsafe extern "C" {
    pub(super) fn _Unwind_Backtrace(trace: TraceFn, argument: *mut c_void) -> c_int;
    pub(super) fn _Unwind_GetIPInfo(
        context: *mut UnwindContext,
        ip_before_insn: *mut c_int,
    ) -> usize;
    pub(super) fn _Unwind_GetCFA(context: *mut UnwindContext) -> usize;
    fn _Unwind_GetLanguageSpecificData(context: *mut UnwindContext) -> *const u8;
    fn _Unwind_GetRegionStart(context: *mut UnwindContext) -> usize;
}

/// The per-frame verdicts of one walk, for a cache that lets later checks of the same frames
/// skip the unwinder (see `safepoint::UnwindCache`): whether the frame whose return address
/// (or, for the innermost frame, whose stack pointer) is given has nothing to run. A verdict
/// is a fact about the code at the call site alone (its function's exception table), so it
/// stays true for as long as that code is loaded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Learned {
    /// `(return address, stack pointer, clean)` of the frames visited, innermost first; the
    /// innermost frame's return address is the walk's own call site, not comparable with
    /// anything else, so it is identified by its stack pointer.
    pub(crate) frames: [(usize, usize, bool); LEARNED_FRAMES],
    /// Frames recorded in `frames`.
    pub(crate) count: usize,
    /// A frame was a signal frame (or had no address): the walk went through a signal
    /// handler, whose frames' verdicts depend on more than their call sites. Nothing learned
    /// from such a walk may be kept.
    pub(crate) unusual: bool,
}

/// Frames whose verdicts one walk records.
pub(crate) const LEARNED_FRAMES: usize = 16;

impl Learned {
    /// Nothing learned yet.
    pub(crate) fn new() -> Self {
        Learned {
            frames: [(0, 0, false); LEARNED_FRAMES],
            count: 0,
            unusual: false,
        }
    }
}

/// What the walk found so far.
///
/// The unwinder describes each frame by its return address and the stack pointer it had at
/// that call (`_Unwind_GetCFA` gives the canonical frame address of the frame it called).
/// The frame that holds `anchor` is only known when its caller is visited (the first whose
/// stack pointer lies above `anchor`), so each frame's verdict is kept until the next one
/// shows it was not that frame.
struct Walk {
    /// An address inside the frame the walk ends at.
    anchor: usize,
    /// A frame above `anchor` was reached.
    reached: bool,
    /// Every frame before the last one visited was found clean.
    clean: bool,
    /// The last frame visited was found clean.
    last_clean: bool,
    /// The verdicts recorded on the way.
    learned: *mut Learned,
}

/// Whether every frame from the caller's up to the one holding `anchor` (an address in the
/// frame that called into the code being unwound; that frame itself is not checked) has
/// nothing to run if the stack were unwound now: no landing pad at the call it is suspended
/// in.
///
/// False when in doubt, including when the walk never gets past `anchor` (a frame without
/// unwind information ends it early).
///
/// The verdict of every frame it visits is recorded in `learned`.
///
/// Inlined: every frame the walk covers costs it a lookup of the frame's unwind information
/// (about 2,000 instructions), and its own frame need not be one of them.
#[inline(always)]
pub(crate) fn frames_are_clean(anchor: usize, learned: &mut Learned) -> bool {
    let mut walk = Walk {
        anchor,
        reached: false,
        clean: true,
        last_clean: true,
        learned,
    };
    // The code returned says only how the walk ended (a callback's stop reads as a "phase 1
    // error"): the `Walk` holds what it found.
    // SAFETY: `visit` reads its argument as the `Walk` passed here, which outlives the call.
    unsafe { _Unwind_Backtrace(visit, (&raw mut walk).cast()) };
    walk.reached && walk.clean
}

/// The walk's callback: one call per frame, innermost first, by `_Unwind_Backtrace` with its
/// context and the `Walk` that `frames_are_clean` passed.
extern "C" fn visit(context: *mut UnwindContext, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Walk` that `frames_are_clean` passed, live for the walk.
    let walk = unsafe { &mut *arg.cast::<Walk>() };
    // SAFETY: `context` is the unwinder's, valid during this callback.
    let stack_pointer = unsafe { _Unwind_GetCFA(context) };
    if stack_pointer > walk.anchor {
        // The last frame visited held the anchor: it is not checked.
        walk.reached = true;
        return URC_NORMAL_STOP;
    }
    // The last frame lies below the anchor's frame: it counts.
    walk.clean &= walk.last_clean;
    if !walk.clean {
        return URC_NORMAL_STOP;
    }
    let mut before: c_int = 0;
    // SAFETY: `context` is the unwinder's, valid during the callback; `before` is a valid
    // out-parameter.
    let ip = unsafe { _Unwind_GetIPInfo(context, &mut before) };
    let clean = frame_is_clean(context, ip, before != 0);
    walk.last_clean = clean;
    // SAFETY: `learned` is the caller's, live for the walk, and only used here.
    let learned = unsafe { &mut *walk.learned };
    if before != 0 || ip == 0 {
        learned.unusual = true;
    } else if learned.count < LEARNED_FRAMES {
        learned.frames[learned.count] = (ip, stack_pointer, clean);
        learned.count += 1;
    }
    URC_NO_REASON
}

/// Whether unwinding through the frame `context` describes, suspended at `ip` (interrupted
/// there by a signal if `interrupted`), would run nothing in it.
fn frame_is_clean(context: *mut UnwindContext, ip: usize, interrupted: bool) -> bool {
    // SAFETY: `context` is the unwinder's, valid during the callback.
    let lsda = unsafe { _Unwind_GetLanguageSpecificData(context) };
    if interrupted || ip == 0 {
        // A signal frame (or no address): unwinding through it is not what a cancellation
        // point expects.
        return false;
    }
    if lsda.is_null() {
        return true; // no exception table: a personality routine (if any) has nothing to do
    }
    // SAFETY: as above.
    let start = unsafe { _Unwind_GetRegionStart(context) };
    // The return address follows the call: the call itself is the byte before it.
    let offset = (ip - 1).wrapping_sub(start);
    // SAFETY: the unwinder found this table for the frame's function: it is mapped, read-only
    // data of a loaded object, laid out as the compiler wrote it.
    let table = unsafe { LsdaBytes::new(lsda) };
    landing_pad_at(table, offset) == Some(false)
}

/// A source of exception-table bytes, read forwards.
trait Bytes {
    fn byte(&mut self) -> Option<u8>;
}

/// Bytes of a table in loaded code, read through a raw pointer: the table's length is only
/// known by parsing it.
struct LsdaBytes {
    at: *const u8,
}

impl LsdaBytes {
    /// # Safety
    /// `at` must point to a well-formed exception table in mapped memory.
    unsafe fn new(at: *const u8) -> Self {
        LsdaBytes { at }
    }
}

impl Bytes for LsdaBytes {
    fn byte(&mut self) -> Option<u8> {
        // SAFETY: per `new`'s contract, a well-formed table is read only within itself.
        let value = unsafe { self.at.read() };
        self.at = self.at.wrapping_add(1);
        Some(value)
    }
}

/// Bytes of a table held in a slice (the unit tests' tables).
impl Bytes for &[u8] {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.split_first()?;
        *self = rest;
        Some(first)
    }
}

/// `DW_EH_PE_omit`: the field is absent.
const PE_OMIT: u8 = 0xff;

fn uleb128(bytes: &mut impl Bytes) -> Option<u64> {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let byte = bytes.byte()?;
        if shift >= 64 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
}

fn fixed(bytes: &mut impl Bytes, width: usize) -> Option<u64> {
    let mut value = 0u64;
    for index in 0..width {
        value |= u64::from(bytes.byte()?) << (8 * index);
    }
    Some(value)
}

/// Reads a value in pointer encoding `encoding`: only its size and whether it is zero
/// matter here, so every application (absolute, pc-relative, ...) reads the same way, and a
/// signed value is read as its bits. `None` for a format this reader does not know.
fn encoded(bytes: &mut impl Bytes, encoding: u8) -> Option<u64> {
    match encoding & 0x0f {
        _ if encoding & 0x70 == 0x50 => None, // aligned: needs the position in memory
        0x00 => fixed(bytes, 8),              // absptr on a 64-bit target
        0x01 | 0x09 => uleb128(bytes),        // uleb128, and sleb128 read as its raw bits
        0x02 | 0x0a => fixed(bytes, 2),
        0x03 | 0x0b => fixed(bytes, 4),
        0x04 | 0x0c => fixed(bytes, 8),
        _ => None,
    }
}

/// Whether the call at `offset` bytes into the function has a landing pad, by the
/// function's exception table: `Some(false)` for none, `Some(true)` for one, `None` when
/// the table cannot say (a format not understood, or a call not listed, which personality
/// routines answer by terminating).
fn landing_pad_at(mut table: impl Bytes, offset: usize) -> Option<bool> {
    let offset = offset as u64;
    let landing_pad_base = table.byte()?;
    if landing_pad_base != PE_OMIT {
        encoded(&mut table, landing_pad_base)?;
    }
    let type_table = table.byte()?;
    if type_table != PE_OMIT {
        uleb128(&mut table)?;
    }
    let call_sites = table.byte()?;
    if call_sites & 0x70 != 0 {
        return None; // call-site fields are plain offsets in every table compilers emit
    }
    let mut left = uleb128(&mut table)?;
    while left > 0 {
        let mut entry = Counted {
            inner: &mut table,
            read: 0,
        };
        let start = encoded(&mut entry, call_sites)?;
        let length = encoded(&mut entry, call_sites)?;
        let landing_pad = encoded(&mut entry, call_sites)?;
        uleb128(&mut entry)?; // the action, which only matters when there is a landing pad
        left = left.checked_sub(entry.read)?;
        if offset < start {
            return None; // entries are sorted: the call is not listed
        }
        if offset - start < length {
            return Some(landing_pad != 0);
        }
    }
    None
}

/// Counts the bytes read through it (the call-site table's length is given in bytes).
struct Counted<'a, B> {
    inner: &'a mut B,
    read: u64,
}

impl<B: Bytes> Bytes for Counted<'_, B> {
    fn byte(&mut self) -> Option<u8> {
        self.read += 1;
        self.inner.byte()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table with no landing-pad base, no type table, and uleb128 call sites:
    /// `[0x10, 0x20)` without a landing pad, `[0x20, 0x28)` with one at 0x40, and
    /// `[0x30, 0x1000)` without (a two-byte uleb128 length).
    const TABLE: &[u8] = &[
        0xff, 0xff, 0x01, 13, // header: omit, omit, uleb128, 13 bytes of call sites
        0x10, 0x10, 0x00, 0x00, // [0x10, 0x20): none
        0x20, 0x08, 0x40, 0x01, // [0x20, 0x28): landing pad 0x40, action 1
        0x30, 0xd0, 0x1f, // [0x30, 0x1000): start 0x30, length 0xfd0 ...
    ];

    fn with_last_entry() -> Vec<u8> {
        let mut table = TABLE.to_vec();
        table.extend_from_slice(&[0x00, 0x00]); // ... no landing pad, no action
        table[3] = 15;
        table
    }

    #[test]
    fn a_call_without_a_landing_pad_is_clean() {
        let table = with_last_entry();
        assert_eq!(landing_pad_at(&table[..], 0x10), Some(false));
        assert_eq!(landing_pad_at(&table[..], 0x1f), Some(false));
        assert_eq!(landing_pad_at(&table[..], 0x30), Some(false));
        assert_eq!(landing_pad_at(&table[..], 0xfff), Some(false));
    }

    #[test]
    fn a_call_with_a_landing_pad_is_not() {
        let table = with_last_entry();
        assert_eq!(landing_pad_at(&table[..], 0x20), Some(true));
        assert_eq!(landing_pad_at(&table[..], 0x27), Some(true));
    }

    #[test]
    fn an_unlisted_call_or_a_broken_table_gives_no_answer() {
        let table = with_last_entry();
        assert_eq!(landing_pad_at(&table[..], 0x08), None, "before every entry");
        assert_eq!(landing_pad_at(&table[..], 0x28), None, "in a gap");
        assert_eq!(landing_pad_at(&table[..], 0x1000), None, "past the end");
        assert_eq!(landing_pad_at(TABLE, 0x30), None, "truncated");
        let mut pc_relative = table.clone();
        pc_relative[2] = 0x11;
        assert_eq!(landing_pad_at(&pc_relative[..], 0x10), None);
    }

    #[test]
    fn header_fields_are_skipped_by_their_encodings() {
        // A landing-pad base as udata4, a type table offset, udata4 call sites.
        let mut table = vec![0x03, 1, 2, 3, 4, 0x9b, 0x85, 0x01, 0x03, 13];
        for word in [0x100u32, 0x10, 0] {
            table.extend_from_slice(&word.to_le_bytes());
        }
        table.push(0);
        assert_eq!(landing_pad_at(&table[..], 0x108), Some(false));
        assert_eq!(landing_pad_at(&table[..], 0x110), None);
    }

    /// Walks from its own frame. It may unwind (as a cancellation point does), so its
    /// callers keep their landing pads around the call; the walk's own call into the
    /// unwinder cannot unwind, which is why the runtime starts it in a frame that owns
    /// nothing.
    #[inline(never)]
    fn probe(anchor: usize) -> bool {
        if core::hint::black_box(false) {
            std::panic::resume_unwind(Box::new(()));
        }
        frames_are_clean(anchor, &mut Learned::new())
    }

    #[inline(never)]
    fn probe_holding_a_value(anchor: usize) -> bool {
        let held = String::from("dropped during unwinding");
        let clean = probe(anchor);
        drop(core::hint::black_box(held));
        clean
    }

    #[test]
    fn the_walk_sees_a_frame_that_owns_a_value() {
        let anchor = 0u8;
        let anchor = core::hint::black_box(&anchor as *const u8 as usize);
        assert!(
            probe(anchor),
            "nothing between here and the probe drops anything"
        );
        assert!(
            !probe_holding_a_value(anchor),
            "the String has a landing pad"
        );
        assert!(
            !probe(usize::MAX),
            "an anchor above the whole stack: the test harness's catch is in the way, or the \
             walk ends without reaching it"
        );
    }
}
