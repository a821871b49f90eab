//! The `inger_linger` handle and the functions that make, run and free it.
//!
//! # The handle
//!
//! C sees only a pointer to an opaque `struct inger_linger`, allocated by `inger_launch` and
//! freed by `inger_cancel`; its size is not part of the ABI. Inside it:
//!
//! - `magic`: [`LIVE`] while the handle is allocated, scrubbed before it is freed, so that most
//!   stale or foreign pointers are refused (best effort: reading freed memory is still the
//!   caller's undefined behaviour, as with `free`);
//! - `busy`: taken (an atomic swap) by every call that uses `linger` and held until it
//!   returns, including while the function runs inside that call. A second call meanwhile (the
//!   function resuming or cancelling itself, or another thread using the same handle) gets
//!   `INGER_ERUNNING` instead of aliasing it. Taking it is an acquire and releasing it a
//!   release, so a handle passed between threads is seen whole;
//! - `complete`, `yielded`: copies of the `Linger`'s state, published after each run, so the
//!   queries never touch `linger` and may be called from any thread at any time;
//! - `linger`: the core's [`Linger`], touched only by the call holding `busy`.
//!
//! Which thread may resume a handle is the core's rule: any thread when functions have
//! private thread-local storage, else only the launching one (`INGER_EWRONGTHREAD`).

use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{
    AtomicBool, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::time::Duration;

use inger_core::{Budget, Clock, Linger, NoPreempt};

use crate::boundary::{guarded, guarded_or};
use crate::errors::{
    INGER_EBADHANDLE, INGER_EFINISHED, INGER_EINHANDLER, INGER_ENULL, INGER_ERUNNING, INGER_OK,
    code_of,
};
use inger_core::in_signal_handler;

/// `magic` of a live handle ("inger C\0" in ASCII, little-endian).
const LIVE: u64 = u64::from_le_bytes(*b"inger C\0");
/// `magic` written just before a handle is freed.
const DEAD: u64 = u64::from_le_bytes(*b"cancel\0\0");

/// A C function and its argument, launched as one preemptible function.
type CFunction = unsafe extern "C" fn(*mut c_void);

/// The handle behind `inger_linger *` (see the module docs).
pub struct inger_linger {
    magic: AtomicU64,
    busy: AtomicBool,
    complete: AtomicBool,
    yielded: AtomicBool,
    linger: UnsafeCell<Linger<'static, ()>>,
}

/// The call a C caller launched.
struct CCall {
    function: CFunction,
    argument: *mut c_void,
}

// SAFETY: a paused function may be resumed on another thread, taking `argument` with it. The
// header makes that the C caller's decision and responsibility (it is the caller who resumes
// the handle elsewhere), exactly as when handing a callback and its argument to a thread.
unsafe impl Send for CCall {}

impl CCall {
    /// Calls the function. Taking `self` whole keeps the closure's capture `Send`.
    fn invoke(self) {
        // SAFETY: the caller of `inger_launch` promised that `function(argument)` may be
        // called (the header's contract); it cannot unwind into Rust (an `extern "C"` call
        // that unwinds aborts the process instead).
        unsafe { (self.function)(self.argument) }
    }
}

/// A budget in microseconds on `clock` as the core's `Budget`: 0 prepares only,
/// `UINT64_MAX` means no limit, anything else is that many microseconds.
fn budget(timeout_us: u64, clock: Clock) -> Budget {
    let duration = match timeout_us {
        u64::MAX => Duration::MAX,
        micros => Duration::from_micros(micros),
    };
    Budget::wall(duration).on(clock)
}

/// Launches `function(argument)` as a preemptible function with a budget of `timeout_us`
/// microseconds and stores its handle in `*out`. See `libinger.h` for the full contract.
///
/// # Safety
/// `out` must be NULL or valid for a pointer write; `function(argument)` must be safe to call
/// on this thread, now or whenever the handle is resumed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn inger_launch(
    out: *mut *mut inger_linger,
    function: Option<CFunction>,
    timeout_us: u64,
    argument: *mut c_void,
) -> c_int {
    // SAFETY: the caller's contract is this function's.
    unsafe { launch_on(out, function, budget(timeout_us, Clock::Wall), argument) }
}

/// [`inger_launch`] with a budget of `cpu_us` microseconds of the thread's CPU time.
///
/// # Safety
/// As for [`inger_launch`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn inger_launch_cpu(
    out: *mut *mut inger_linger,
    function: Option<CFunction>,
    cpu_us: u64,
    argument: *mut c_void,
) -> c_int {
    // SAFETY: the caller's contract is this function's.
    unsafe { launch_on(out, function, budget(cpu_us, Clock::Cpu), argument) }
}

/// The launch behind [`inger_launch`] and [`inger_launch_cpu`].
///
/// # Safety
/// As for [`inger_launch`].
unsafe fn launch_on(
    out: *mut *mut inger_linger,
    function: Option<CFunction>,
    budget: Budget,
    argument: *mut c_void,
) -> c_int {
    guarded(|| {
        let Some(function) = function else {
            return INGER_ENULL;
        };
        if out.is_null() {
            return INGER_ENULL;
        }
        if refused_in_signal_handler() {
            return INGER_EINHANDLER;
        }
        let call = CCall { function, argument };
        let linger = match inger_core::launch(move || call.invoke(), budget) {
            Ok(linger) => linger,
            Err(error) => return code_of(&error),
        };
        let handle = Box::new(inger_linger {
            magic: AtomicU64::new(LIVE),
            busy: AtomicBool::new(false),
            complete: AtomicBool::new(linger.is_completion()),
            yielded: AtomicBool::new(linger.yielded()),
            linger: UnsafeCell::new(linger),
        });
        // SAFETY: `out` is non-null (checked) and valid for writes (the caller's contract).
        unsafe { out.write(Box::into_raw(handle)) };
        INGER_OK
    })
}

/// The handle behind `handle` if it looks live, else the error to return.
///
/// # Safety
/// `handle` must be NULL or point to memory readable as a handle (any handle from
/// `inger_launch` not yet freed by `inger_cancel`; other pointers are refused on a
/// best-effort basis by the magic value).
unsafe fn live<'h>(handle: *const inger_linger) -> Result<&'h inger_linger, c_int> {
    if handle.is_null() {
        return Err(INGER_ENULL);
    }
    if !handle.is_aligned() {
        return Err(INGER_EBADHANDLE);
    }
    // SAFETY: per the contract the memory is readable; only the `magic` field is borrowed,
    // before any reference to the whole handle exists.
    let magic = unsafe { (*handle).magic.load(Relaxed) };
    if magic != LIVE {
        return Err(INGER_EBADHANDLE);
    }
    // SAFETY: a live handle; the reference covers only fields that are atomics or behind the
    // `UnsafeCell`, so it does not alias the `&mut Linger` a suspended call may hold.
    Ok(unsafe { &*handle })
}

/// Takes `handle` for the caller's exclusive use, or fails with `INGER_ERUNNING`.
fn acquire(handle: &inger_linger) -> Result<Busy<'_>, c_int> {
    if handle.busy.swap(true, Acquire) {
        return Err(INGER_ERUNNING);
    }
    Ok(Busy(handle))
}

/// Exclusive use of a handle's `linger`; released on drop.
struct Busy<'h>(&'h inger_linger);

impl Busy<'_> {
    /// Publishes the state of `linger` for the queries.
    fn publish(&self, linger: &Linger<'static, ()>) {
        self.0.yielded.store(linger.yielded(), Relaxed);
        self.0.complete.store(linger.is_completion(), Release);
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.store(false, Release);
    }
}

/// Continues a paused function for `timeout_us` more microseconds. See `libinger.h`.
///
/// # Safety
/// `handle` must be NULL or a handle from `inger_launch` not yet freed by `inger_cancel`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn inger_resume(handle: *mut inger_linger, timeout_us: u64) -> c_int {
    // SAFETY: the caller's contract is this function's.
    unsafe { resume_on(handle, budget(timeout_us, Clock::Wall)) }
}

/// [`inger_resume`] with a budget of `cpu_us` microseconds of the thread's CPU time.
///
/// # Safety
/// As for [`inger_resume`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn inger_resume_cpu(handle: *mut inger_linger, cpu_us: u64) -> c_int {
    // SAFETY: the caller's contract is this function's.
    unsafe { resume_on(handle, budget(cpu_us, Clock::Cpu)) }
}

/// The resume behind [`inger_resume`] and [`inger_resume_cpu`].
///
/// # Safety
/// As for [`inger_resume`].
unsafe fn resume_on(handle: *mut inger_linger, budget: Budget) -> c_int {
    guarded(|| {
        // SAFETY: the caller's contract.
        let handle = match unsafe { live(handle) } {
            Ok(handle) => handle,
            Err(code) => return code,
        };
        if refused_in_signal_handler() {
            return INGER_EINHANDLER;
        }
        let busy = match acquire(handle) {
            Ok(busy) => busy,
            Err(code) => return code,
        };
        if handle.complete.load(Relaxed) {
            return INGER_EFINISHED;
        }
        // SAFETY: `busy` gives this call exclusive use of `linger`.
        let linger = unsafe { &mut *handle.linger.get() };
        let result = inger_core::resume(linger, budget);
        busy.publish(linger);
        match result {
            Ok(()) => INGER_OK,
            Err(error) => code_of(&error),
        }
    })
}

/// Whether the function has returned. `true` for NULL or a handle that is not live (there is
/// nothing left to run); `false` while it is running. Any thread may ask.
///
/// # Safety
/// As for [`inger_resume`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn inger_is_complete(handle: *const inger_linger) -> bool {
    guarded_or(true, || {
        // SAFETY: the caller's contract.
        match unsafe { live(handle) } {
            Ok(handle) => !handle.busy.load(Acquire) && handle.complete.load(Acquire),
            Err(_) => true,
        }
    })
}

/// Whether the function last stopped by calling `inger_pause` (rather than running out of
/// budget). `false` for NULL, a handle that is not live, a running or a completed function.
///
/// # Safety
/// As for [`inger_resume`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn inger_yielded(handle: *const inger_linger) -> bool {
    guarded_or(false, || {
        // SAFETY: the caller's contract.
        match unsafe { live(handle) } {
            Ok(handle) => !handle.busy.load(Acquire) && handle.yielded.load(Relaxed),
            Err(_) => false,
        }
    })
}

/// Whether the caller runs in a signal handler, checked with preemption deferred (a walk of
/// the stack must not be paused half-way), but only around the check: a section held across
/// a nested launch or resume would keep the caller's own budget from pausing the chain.
fn refused_in_signal_handler() -> bool {
    let _no_preempt = NoPreempt::new();
    in_signal_handler()
}

/// Cancels the function if it has not completed, and frees the handle. See `libinger.h`.
///
/// # Safety
/// As for [`inger_resume`]; after a successful return `handle` is dangling.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn inger_cancel(handle: *mut inger_linger) -> c_int {
    guarded(|| {
        // SAFETY: the caller's contract.
        let live_handle = match unsafe { live(handle) } {
            Ok(handle) => handle,
            Err(code) => return code,
        };
        let _no_preempt = NoPreempt::new();
        if in_signal_handler() {
            return INGER_EINHANDLER; // freeing calls `free`, which is not async-signal-safe
        }
        match acquire(live_handle) {
            // Never released: the handle is freed below.
            Ok(busy) => core::mem::forget(busy),
            Err(code) => return code,
        }
        live_handle.magic.store(DEAD, Relaxed);
        // SAFETY: the handle came from `Box::into_raw` in `inger_launch`; we hold it busy, so no
        // other call uses it, and the caller gives up the pointer by calling us.
        let handle = unsafe { Box::from_raw(handle) };
        // A paused C function is discarded at once: it cannot unwind (a Rust panic must not
        // cross its frames), so the core's cooperative attempt would only burn its grace
        // budget. An unstarted or completed one is simply dropped.
        if let Linger::Continuation(continuation) = handle.linger.into_inner() {
            continuation.discard();
        }
        INGER_OK
    })
}
