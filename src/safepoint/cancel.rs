//! The cancellation check's fast path: whether unwinding a function's stack from a
//! cancellation point up to its anchor would run nothing, from verdicts that earlier checks
//! learned, with the safe-point walk's unwinder instead of libgcc's.
//!
//! A cancellation without unwinding (see `runtime::exit`) is allowed when no frame between
//! the cancellation point and the runtime's catch has a landing pad at the call it is
//! suspended in. libgcc's walk, which reads each frame's exception table, is the authority
//! (`sys::unwind`), but it costs about 2,000 instructions a frame (its lookup of the frame's
//! unwind entry), most of a cancellation. The verdict for a frame depends only on its call
//! site: the return address, in code that does not change while its module stays loaded. So
//! each walk's verdicts are kept here, per return address, and a later check walks the stack
//! with framehop and its rule cache (tens of nanoseconds a frame) and looks the frames up:
//! when every frame's verdict is known, that is the answer; when one is not, libgcc walks
//! and the cache learns what it found.
//!
//! The innermost frame is the cancellation point itself, where libgcc's walk starts at its own
//! call site and this walk at the registers captured just before: the same frame, seen at two
//! calls. Its verdict (that of the call into libgcc, which stands for the whole cancellation
//! point, see `sys::unwind`) is therefore kept under the captured return address, once the two
//! walks agree on the frame's stack pointer. A walk that went through a signal frame teaches
//! nothing: a frame interrupted by a signal is judged by more than its address.
//!
//! Where the two unwinders could disagree on the chain of frames (a return into a redirect
//! stub, code in no known module, a frame either cannot unwind), this walk gives no answer
//! and libgcc decides. The verdicts are forgotten whenever the module tables are rebuilt.
//!
//! Context: function stack, with the function's preemption deferred (its `nopreempt` unit
//! keeps the handler, the cache's other user on this thread, away); allocation-free.

use framehop::x86_64::UnwindRegsX86_64;
use framehop::{FrameAddress, Unwinder};

use super::{UnwindCache, read_stack_word, tables};
use crate::arch::{Registers, redirect};
use crate::sys::unwind::Learned;

/// Verdicts kept per thread: sets of [`VERDICT_WAYS`] slots, chosen by return address.
pub(super) const VERDICT_SLOTS: usize = 256;
/// Slots per set. Where the loader puts the code moves the bits the set is chosen by, so two
/// frames of one chain share a set in some runs; with one slot per set each check of that
/// chain evicted the other frame's verdict and the chain was never answered from the cache
/// (`tests/cancel_check_cache.rs` caught it in 4 runs of 10 for one layout).
const VERDICT_WAYS: usize = 2;
const _: () = assert!(VERDICT_SLOTS.is_multiple_of(VERDICT_WAYS));

/// Deepest chain the fast path walks before leaving the answer to libgcc.
const MAX_FRAMES: usize = 64;

impl UnwindCache {
    /// The set of slots `address` may be kept in.
    fn verdict_set(&mut self, address: usize) -> &mut [(usize, bool)] {
        let sets = VERDICT_SLOTS / VERDICT_WAYS;
        let first = ((address ^ (address >> 8)) % sets) * VERDICT_WAYS;
        &mut self.verdicts[first..first + VERDICT_WAYS]
    }

    fn verdict(&mut self, address: usize) -> Option<bool> {
        if address == 0 {
            return None;
        }
        self.verdict_set(address)
            .iter()
            .find(|slot| slot.0 == address)
            .map(|slot| slot.1)
    }

    /// Keeps `clean` as the verdict for `address`: in its slot if it has one, else first in
    /// its set, moving the others down (the last one is forgotten).
    fn keep_verdict(&mut self, address: usize, clean: bool) {
        let set = self.verdict_set(address);
        let at = set
            .iter()
            .position(|slot| slot.0 == address)
            .unwrap_or(VERDICT_WAYS - 1);
        set[..=at].rotate_right(1);
        set[0] = (address, clean);
    }
}

/// Whether every frame from the one `registers` were captured in (the cancellation point's)
/// up to, not including, the one holding `anchor` has nothing to run if unwound, answered
/// from learned verdicts; `None` when some frame's verdict is unknown or the walk cannot be
/// made. `[low, high)` is the function's stack, the only memory the walk reads.
///
/// # Safety
/// `[low, high)` must be mapped, readable and hold the running function's stack, on which
/// `registers` were captured by the running code; the caller keeps the handler off `cache`.
pub(crate) unsafe fn frames_are_clean(
    cache: &mut UnwindCache,
    registers: Registers,
    low: usize,
    high: usize,
    anchor: usize,
) -> Option<bool> {
    let tables = tables::current()?;
    cache.sync(tables);
    let mut read_stack = |address: u64| {
        // SAFETY: the function's stack is mapped and readable (the contract).
        unsafe { read_stack_word(low, high, address as usize) }
            .map(|word| word as u64)
            .ok_or(())
    };
    let mut regs = UnwindRegsX86_64::new(
        registers.ip as u64,
        registers.sp as u64,
        registers.bp as u64,
    );
    let mut key = registers.ip;
    let mut frame = FrameAddress::from_return_address(key as u64)?;
    for _ in 0..MAX_FRAMES {
        if redirect::is_stub(key) || redirect::is_in_landing_pad(key) {
            return None;
        }
        let return_address = tables
            .unwinder
            .unwind_frame(frame, &mut regs, &mut cache.rules, &mut read_stack)
            .ok()??;
        if regs.sp() as usize > anchor {
            // This frame holds the anchor: it is not checked, and every frame below was clean.
            return Some(true);
        }
        if !cache.verdict(key)? {
            return Some(false);
        }
        key = return_address as usize;
        frame = FrameAddress::from_return_address(return_address)?;
    }
    None
}

/// Keeps what libgcc's walk from the cancellation point found (`learned`), for
/// [`frames_are_clean`] with the same `registers` to use next time.
pub(crate) fn learn(cache: &mut UnwindCache, registers: Registers, learned: &Learned) {
    let Some(tables) = tables::current() else {
        return;
    };
    cache.sync(tables);
    if learned.unusual {
        return;
    }
    for (index, &(address, stack_pointer, clean)) in
        learned.frames[..learned.count].iter().enumerate()
    {
        let key = if index == 0 {
            // The cancellation point's frame, seen by libgcc at its own call: kept under the
            // captured return address if both walks start in the same frame.
            if stack_pointer != registers.sp {
                continue;
            }
            registers.ip
        } else {
            address
        };
        if key != 0 && !redirect::is_stub(key) {
            cache.keep_verdict(key, clean);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An address that falls in the same set as `address` (the set is chosen by the low 16
    /// bits; a multiple of 64 KiB apart keeps them).
    fn same_set(address: usize, n: usize) -> usize {
        address + n * 0x1_0000
    }

    #[test]
    fn two_frames_of_one_set_are_both_kept_and_a_third_evicts_the_oldest() {
        let mut cache = Box::new(UnwindCache::new());
        let a = 0x5555_1234_5678;
        let (b, c) = (same_set(a, 1), same_set(a, 2));
        cache.keep_verdict(a, true);
        cache.keep_verdict(b, false);
        assert_eq!(
            cache.verdict(a),
            Some(true),
            "the first survives the second"
        );
        assert_eq!(cache.verdict(b), Some(false));
        cache.keep_verdict(a, false); // an update keeps one slot per address
        cache.keep_verdict(c, true);
        assert_eq!(
            cache.verdict(a),
            Some(false),
            "updated, so the newest of the two"
        );
        assert_eq!(cache.verdict(c), Some(true));
        assert_eq!(cache.verdict(b), None, "the oldest was forgotten");
        assert_eq!(cache.verdict(0), None);
    }
}
