//! Baselines measured in the same run as inger's figures: a plain indirect call, a bare
//! context switch, a Rust panic caught, a thread spawn+join and a fork+wait.

use std::hint::black_box;

use super::{BenchResult, Scale, broken};
use crate::report::{Figure, Unit};
use crate::timing::{Plan, time_batches};

/// `direct_call`: an empty closure called through a `black_box`ed function pointer, so the
/// call can be neither inlined nor removed.
pub(super) fn direct_call(scale: Scale) -> BenchResult<Vec<Figure>> {
    let empty: fn() = || {};
    let plan = Plan::new(scale.pick(2_000, 20_000), 1_000);
    let samples = time_batches(plan, || -> BenchResult<()> {
        black_box(empty)();
        Ok(())
    })?;
    Ok(vec![Figure::new("direct_call", samples, Unit::Nanoseconds)])
}

/// The payload of the `panic_unwind` baseline's panics.
struct Thrown;

/// Frames between the `panic_unwind` baseline's catch and its throw: as many as a function
/// paused in `inger::pause` has between its entry's `catch_unwind` and the point that
/// unwinds (the closure, `pause`).
#[inline(never)]
fn throw_through(frames: u32) {
    if black_box(frames) == 0 {
        std::panic::resume_unwind(Box::new(Thrown));
    }
    throw_through(frames - 1);
    black_box(());
}

/// `panic_unwind`: a Rust panic raised with `std::panic::resume_unwind` (no panic hook, a
/// boxed payload, as a cooperative cancellation raises it) two frames below a
/// `catch_unwind`, caught and its payload dropped. The floor of `cancel_paused`, which
/// unwinds a paused function this way: Rust's two-phase unwinding through libgcc costs
/// microseconds on some machines and a fraction of one on others.
pub(super) fn panic_unwind(scale: Scale) -> BenchResult<Vec<Figure>> {
    let plan = Plan::new(scale.pick(200, 1_000), 20);
    let samples = time_batches(plan, || -> BenchResult<()> {
        match std::panic::catch_unwind(|| throw_through(2)) {
            Err(payload) if payload.is::<Thrown>() => Ok(()),
            _ => Err(broken("the thrown panic was not caught")),
        }
    })?;
    Ok(vec![Figure::new(
        "panic_unwind",
        samples,
        Unit::Nanoseconds,
    )])
}

/// Round trips per `context_switch` sample: enough that the stack taken and retired by each
/// call of the hook costs well under 1% of the sample.
const SWITCHES_PER_SAMPLE: u64 = 20_000;

/// `context_switch`: one round trip (switch into a side stack and back) of inger's bare
/// context switch, through its benchmark hook.
pub(super) fn context_switch(scale: Scale) -> BenchResult<Vec<Figure>> {
    switch_round_trips(scale, "context_switch", |trips| {
        Ok(Some(inger::bench_hooks::context_switch_round_trips(trips)?))
    })
}

/// `context_switch_tls`: `context_switch` with a thread-pointer write (`wrfsbase`) before
/// each switch, as every switch into and out of a function with private TLS makes: the floor
/// of the private-TLS figures. The write costs a few ns on some processors and as much as a
/// whole switch on others, so `launch_complete` and `pause_resume` are also stated against
/// this. Not measured where `wrfsbase` is not allowed.
pub(super) fn context_switch_tls(scale: Scale) -> BenchResult<Vec<Figure>> {
    switch_round_trips(scale, "context_switch_tls", |trips| {
        Ok(inger::bench_hooks::tls_context_switch_round_trips(trips)?)
    })
}

/// The figure `name`: per round trip of `hook(trips)`, which performs `trips` round trips, or
/// answers `None` where they cannot be made (then no figure).
fn switch_round_trips(
    scale: Scale,
    name: &'static str,
    hook: fn(u64) -> BenchResult<Option<u64>>,
) -> BenchResult<Vec<Figure>> {
    if hook(1)?.is_none() {
        return Ok(Vec::new());
    }
    let plan = Plan::new(scale.pick(100, 1_000), 1);
    let samples = time_batches(plan, || -> BenchResult<()> {
        hook(SWITCHES_PER_SAMPLE)?
            .ok_or_else(|| broken(format!("{name} stopped being possible")))?;
        Ok(())
    })?;
    let per_trip = samples
        .values()
        .iter()
        .map(|ns| ns / SWITCHES_PER_SAMPLE as f64)
        .collect();
    Ok(vec![Figure::new(name, per_trip, Unit::Nanoseconds)])
}

/// `thread_spawn_join`: `std::thread::spawn` of an empty closure, then `join`.
pub(super) fn thread_spawn_join(scale: Scale) -> BenchResult<Vec<Figure>> {
    let plan = Plan::new(scale.pick(500, 5_000), 1);
    let samples = time_batches(plan, || -> BenchResult<()> {
        std::thread::spawn(|| {})
            .join()
            .map_err(|_| broken("an empty thread panicked"))
    })?;
    Ok(vec![Figure::new(
        "thread_spawn_join",
        samples,
        Unit::Nanoseconds,
    )])
}

/// `fork_wait`: `fork`, the child calls `_exit(0)`, the parent `waitpid`s for it.
pub(super) fn fork_wait(scale: Scale) -> BenchResult<Vec<Figure>> {
    let plan = Plan::new(scale.pick(200, 2_000), 1);
    let samples = time_batches(plan, fork_and_wait)?;
    Ok(vec![Figure::new("fork_wait", samples, Unit::Nanoseconds)])
}

/// `fork_wait_at_end`: `fork_wait` again at the end of the run, when the process has had
/// about 120,000 stacks (the 100,000 of `rss_per_paused`, since completed, and the ones
/// `cancel_paused` retired). Stack chunks stay mapped with their guard markers in the page
/// tables, and fork copies those page tables, so this shows what a large peak of functions,
/// or many cancellations, cost a process that forks later. Few samples: each fork is slow.
pub(super) fn fork_wait_at_end(scale: Scale) -> BenchResult<Vec<Figure>> {
    let plan = Plan::new(scale.pick(5, 10), 1);
    let samples = time_batches(plan, fork_and_wait)?;
    Ok(vec![Figure::new(
        "fork_wait_at_end",
        samples,
        Unit::Milliseconds,
    )])
}

fn fork_and_wait() -> BenchResult<()> {
    // SAFETY: the child calls only `_exit`, which is async-signal-safe, so forking a process
    // that may have other threads is sound.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: `_exit` ends the child at once, without running the parent's handlers.
        unsafe { libc::_exit(0) };
    }
    if pid < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is a valid out-parameter.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(std::io::Error::last_os_error().into());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(broken(format!(
            "forked child ended with status {status:#x}"
        )));
    }
    Ok(())
}
