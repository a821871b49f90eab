//! Start-up: the process-wide handlers once, then each thread's [`Runtime`] on its first
//! launch, owned by a thread-local and freed at thread exit.
//!
//! Context: caller (or function stack, for a nested launch on a thread whose runtime exists);
//! never the signal handler, which reaches the runtime through the table of timers
//! (`timers`) instead (a thread-local read there could land in a function's private TLS
//! block).

use core::cell::{Cell, RefCell, UnsafeCell};
use core::ptr;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering::Relaxed};
use std::cell::OnceCell;

use super::control::{CANCEL_HINTS, NEVER, Runtime, with_running};
use super::process;
use crate::arch;
use crate::config::settings;
use crate::error::Error;
use crate::safepoint::UnwindCache;
use crate::stack::{self, StackPool};
use crate::stats::{self, ThreadCounters};
use crate::sys::clock;
use crate::sys::process::thread_id;
use crate::sys::signal::AltStack;
use crate::sys::timer::{Clock, ThreadTimer};

use super::timers::{Kind, Slot};
use crate::sys::tls;

/// glibc's TLS internals, for private TLS per function: `None` under `INGER_SHARED_TLS` or
/// [`Config::private_tls`](crate::Config::private_tls)`(false)`, or when they were not found
/// (the shared-TLS fallback). Settled with the settings, on first use. Context: caller.
pub(crate) fn private_tls() -> Option<&'static tls::Glibc> {
    let shared = crate::config::settings().map_or_else(
        |_| crate::config::environment().shared_tls,
        |s| s.shared_tls,
    );
    tls::glibc(!shared)
}

/// The thread's runtime, starting it (and the process-wide handlers) on first use.
pub(crate) fn runtime() -> Result<&'static Runtime, Error> {
    if let Some(rt) = runtime_if_started() {
        return Ok(rt);
    }
    start_runtime()
}

#[cold]
fn start_runtime() -> Result<&'static Runtime, Error> {
    // Nothing here is async-signal-safe (allocation, thread-locals with destructors).
    process::refuse_in_signal_handler()?;
    let settings = settings()?;
    process::install_process_handlers()?;
    clock::calibrate();
    let slot = Slot::take();
    let timer = if settings.preemption {
        let timer = ThreadTimer::new(Clock::Monotonic, settings.signal, slot.index())?;
        slot.set_timer(Kind::Wall, timer.kernel_id());
        Some(timer)
    } else {
        None
    };
    let boxed = Box::into_raw(Box::new(Runtime {
        current: AtomicPtr::new(null_mut()),
        armed: AtomicU64::new(NEVER),
        timer,
        cpu_timer: UnsafeCell::new(None),
        cpu_timer_ready: AtomicBool::new(false),
        cpu_armed: AtomicU64::new(NEVER),
        retry_ns: settings.retry_ns,
        glibc: private_tls(),
        fast_fs: arch::fsgsbase_available(),
        thread_tp: arch::thread_pointer(),
        tid: thread_id(),
        pool: RefCell::new(StackPool::default()),
        retired: RefCell::new(Vec::with_capacity(stack::RETIRE_BATCH)),
        busy: AtomicBool::new(false),
        counters: ThreadCounters::default(),
        cancel_hints: [const { Cell::new(0) }; CANCEL_HINTS],
        unwind_cache: UnsafeCell::new(Box::new(UnwindCache::new())),
        _altstack: AltStack::ensure(),
        slot,
    }));
    // From here on the timers' deliveries find the runtime (none is armed yet).
    // SAFETY: `boxed` is live.
    unsafe { (*boxed).slot.publish(boxed as usize) };
    // SAFETY: `boxed` is live; its counters stay at this address until the runtime drops,
    // which unregisters them first.
    stats::register(unsafe { &(*boxed).counters });
    let owned = OWNER
        .try_with(|owner| owner.set(RuntimeOwner(boxed)).is_ok())
        .unwrap_or(false);
    if !owned {
        // The thread is exiting (its TLS is being torn down): refuse rather than leak a timer.
        // SAFETY: not shared yet (the stats registry only keeps an address, removed by drop).
        drop(unsafe { Box::from_raw(boxed) });
        return Err(Error::System {
            call: "thread-local runtime (thread is exiting)",
            errno: 0,
        });
    }
    RUNTIME.with(|cell| cell.set(boxed));
    // SAFETY: just published; lives until thread exit.
    Ok(unsafe { &*boxed })
}

/// Owns the thread's runtime; dropped at thread exit.
struct RuntimeOwner(*mut Runtime);

impl Drop for RuntimeOwner {
    fn drop(&mut self) {
        RUNTIME.with(|cell| cell.set(ptr::null()));
        // Blocking the signal on this exiting thread makes sure no expiry can reach the
        // handler with the pointer we are about to free.
        if let Ok(settings) = crate::config::settings() {
            crate::sys::signal::block_on_this_thread(settings.signal);
        }
        // SAFETY: created by Box::into_raw in `startup` and freed only here; dropping it
        // deletes the timer.
        drop(unsafe { Box::from_raw(self.0) });
    }
}

thread_local! {
    /// The thread's runtime, or null before first use. Constant-initialised with no
    /// destructor, so reading it is a plain TLS load.
    static RUNTIME: Cell<*const Runtime> = const { Cell::new(ptr::null()) };
    static OWNER: OnceCell<RuntimeOwner> = const { OnceCell::new() };
}

/// The runtime of the thread running this code, if it exists. Context: caller or function
/// stack (inside a function, found through its control block: the function's private TLS
/// block has no `RUNTIME` of its own).
pub(crate) fn runtime_if_started() -> Option<&'static Runtime> {
    if let Some(runtime) = with_running(|lpf| lpf.runtime.load(Relaxed)) {
        // SAFETY: the runtime of the thread running an LPF outlives the run.
        return unsafe { runtime.as_ref() };
    }
    let raw = RUNTIME.try_with(Cell::get).unwrap_or(ptr::null());
    // SAFETY: a non-null pointer in RUNTIME is live until the owner clears it at thread exit.
    unsafe { raw.as_ref() }
}
