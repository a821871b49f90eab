//! Entry points for inger's own benchmark program; not part of the supported API.

use core::ffi::c_void;
use core::ptr::null_mut;

use crate::arch;
use crate::error::Error;
use crate::runtime;
use crate::stack;

struct PingPong {
    main_sp: *mut u8,
    side_sp: *mut u8,
    /// Thread pointer to write before each switch (0: none), like a private-TLS switch.
    tp: usize,
}

unsafe extern "C" fn side(arg: *mut c_void) -> ! {
    let state = arg.cast::<PingPong>();
    loop {
        // SAFETY: `state` outlives the loop; `main_sp` was saved by the switch that entered us.
        unsafe {
            write_thread_pointer((*state).tp);
            arch::switch(&raw mut (*state).side_sp, (*state).main_sp);
        }
    }
}

/// Writes `tp` as the thread pointer unless it is 0.
///
/// # Safety
/// `tp` is 0 or this thread's own installed TCB, and `wrfsbase` is allowed.
#[inline(always)]
unsafe fn write_thread_pointer(tp: usize) {
    if tp != 0 {
        // SAFETY: per the contract, the value already installed: nothing changes.
        unsafe { arch::set_thread_pointer_fast(core::hint::black_box(tp)) };
    }
}

/// Performs `round_trips` bare context switches into a side stack and back (the baseline
/// cost under every pause/resume), returning the number performed.
///
/// # Errors
/// [`Error::StackAllocation`] if no stack could be mapped.
pub fn context_switch_round_trips(round_trips: u64) -> Result<u64, Error> {
    ping_pong(round_trips, 0)
}

/// [`context_switch_round_trips`] with a thread-pointer write (`wrfsbase`) before each
/// switch, as a switch into and out of a function with private TLS makes: that switch's floor.
/// `Ok(None)` where `wrfsbase` is not allowed.
///
/// # Errors
/// [`Error::StackAllocation`] if no stack could be mapped.
pub fn tls_context_switch_round_trips(round_trips: u64) -> Result<Option<u64>, Error> {
    if !arch::fsgsbase_available() {
        return Ok(None);
    }
    ping_pong(round_trips, arch::thread_pointer()).map(Some)
}

fn ping_pong(round_trips: u64, tp: usize) -> Result<u64, Error> {
    let section = runtime::RuntimeSection::enter();
    let stack = runtime::runtime()?.take_stack(&section)?;
    drop(section);
    let mut state = PingPong {
        main_sp: null_mut(),
        side_sp: null_mut(),
        tp,
    };
    let top = ((stack.top() as usize - 64) & !15) as *mut u8;
    // SAFETY: the stack is ours and unused; `side` never returns.
    state.side_sp = unsafe { arch::prepare_stack(top, side, (&raw mut state).cast()) };
    for _ in 0..round_trips {
        // SAFETY: `side_sp` is the side context's saved pointer, continued only here; `tp` is
        // 0 or this thread's own TCB with `wrfsbase` allowed (checked by the callers).
        unsafe {
            write_thread_pointer(state.tp);
            arch::switch(&raw mut state.main_sp, state.side_sp);
        }
    }
    // The side context stays suspended forever; its stack is discarded, not reused.
    let top = stack.top() as usize;
    stack::retire(stack, top);
    Ok(round_trips)
}

/// Time of `iterations` whole-stack safe-point checks made from inside a preemptible function
/// whose stack is `depth` frames deep (plus the runtime's own), and the outcome of the last
/// one (`true`: the stack may be paused).
///
/// # Errors
/// Errors of [`crate::launch`].
pub fn safepoint_checks_at_depth(
    depth: usize,
    iterations: u64,
) -> Result<(std::time::Duration, bool), Error> {
    let linger = crate::launch(move || recurse(depth, iterations), std::time::Duration::MAX)?;
    Ok(linger
        .completion()
        .unwrap_or((std::time::Duration::ZERO, false)))
}

#[inline(never)]
fn recurse(depth: usize, iterations: u64) -> (std::time::Duration, bool) {
    if depth > 1 {
        let result = recurse(std::hint::black_box(depth - 1), iterations);
        return std::hint::black_box(result);
    }
    time_safepoint_checks(iterations)
}

/// Runs the whole-stack check `iterations` times from the calling frame of the running
/// function; returns the time taken and whether the last check passed.
#[inline(never)]
fn time_safepoint_checks(iterations: u64) -> (std::time::Duration, bool) {
    runtime::with_running(|this| {
        // SAFETY: the runtime of the thread running us outlives the run.
        let Some(rt) = (unsafe {
            this.runtime
                .load(core::sync::atomic::Ordering::Relaxed)
                .as_ref()
        }) else {
            return (std::time::Duration::ZERO, false);
        };
        crate::safepoint::tables::init();
        let mut passed = false;
        let start = std::time::Instant::now();
        for _ in 0..iterations {
            passed = runtime::check_running_stack(rt, this, this, arch::caller_registers()).is_ok();
        }
        (start.elapsed(), passed)
    })
    .unwrap_or((std::time::Duration::ZERO, false))
}
