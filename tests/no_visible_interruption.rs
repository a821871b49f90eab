//! The preemption signal is invisible to blocking calls (issue 17): a call that any caught
//! signal would make fail with `EINTR` (`pause`, `sigsuspend`, `sigwaitinfo`, `poll`,
//! `epoll_wait`, `select`, `nanosleep`, `clock_nanosleep`) returns only for its own reason
//! when inger's signal interrupts it: inside a function paused in the call by its wall-clock
//! budget and resumed, inside a function with a CPU budget, and in the launching thread
//! outside any function (where a timer armed for a function that has since returned fires).
//! Each scenario checks with `restarted_calls` that inger's signal did interrupt the call,
//! so a run in which the timer happened to miss it proves nothing and fails.
//!
//! The program's own signal is a POSIX timer aimed at the test's thread (`SIGEV_THREAD_ID`),
//! so no other thread of the test harness can take it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use inger::Budget;

/// The program's own signal, and whether its handler ran.
const PROGRAM_SIGNAL: i32 = libc::SIGUSR1;
static HANDLER_RAN: AtomicBool = AtomicBool::new(false);

extern "C" fn program_handler(_: i32) {
    HANDLER_RAN.store(true, SeqCst);
}

/// Installs the program's handler (without `SA_RESTART`, as `signal(7)` programs that wait
/// for a signal do).
fn install_program_handler() {
    // SAFETY: an all-zero sigaction is a valid starting value.
    let mut action: libc::sigaction = unsafe { core::mem::zeroed() };
    action.sa_sigaction = program_handler as *const () as usize;
    // SAFETY: `action` is valid; the handler only stores to an atomic.
    let result = unsafe { libc::sigaction(PROGRAM_SIGNAL, &action, core::ptr::null_mut()) };
    assert_eq!(result, 0);
}

/// A one-shot timer that sends [`PROGRAM_SIGNAL`] to the calling thread after `delay`.
struct ProgramTimer(libc::timer_t);

impl ProgramTimer {
    fn after(delay: Duration) -> ProgramTimer {
        // SAFETY: an all-zero sigevent is a valid starting value.
        let mut event: libc::sigevent = unsafe { core::mem::zeroed() };
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = PROGRAM_SIGNAL;
        event.sigev_notify_thread_id = common::kernel_tid();
        let mut id: libc::timer_t = core::ptr::null_mut();
        // SAFETY: valid out-parameters.
        let created = unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut id) };
        assert_eq!(created, 0);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: delay.as_secs() as libc::time_t,
                tv_nsec: delay.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: a live timer and a valid spec.
        let set = unsafe { libc::timer_settime(id, 0, &spec, core::ptr::null_mut()) };
        assert_eq!(set, 0);
        ProgramTimer(id)
    }
}

impl Drop for ProgramTimer {
    fn drop(&mut self) {
        // SAFETY: a live timer.
        unsafe { libc::timer_delete(self.0) };
    }
}

/// How long the program waits for its own event: long enough for inger's timer (1 ms) to
/// fire first, many times over.
const EVENT_AFTER: Duration = Duration::from_millis(40);

/// Where a blocking call is made.
#[derive(Debug, Clone, Copy)]
enum Context {
    /// Inside a function with a 1 ms wall-clock budget: paused in the call, then resumed.
    WallBudget,
    /// Inside a function with a 1 ms CPU budget.
    CpuBudget,
    /// In the launching thread, outside any function, while the timer armed for a function
    /// that has returned is still set.
    Outside,
}

const CONTEXTS: [Context; 3] = [Context::WallBudget, Context::CpuBudget, Context::Outside];

/// Runs `call` (which blocks until its event, after [`EVENT_AFTER`], and returns what it
/// saw) in `context`; returns its result.
fn run_in<T: Send + 'static>(context: Context, call: fn() -> T) -> T {
    match context {
        Context::WallBudget | Context::CpuBudget => {
            let budget = match context {
                Context::WallBudget => Budget::wall(Duration::from_millis(1)),
                _ => Budget::cpu(Duration::from_millis(1)),
            };
            let linger = inger::launch(call, budget).expect("launch");
            common::finish(linger, budget, 100_000).0
        }
        Context::Outside => {
            // Leaves the timer armed for 1 ms from now.
            let linger = inger::launch(|| (), Duration::from_millis(1)).expect("launch");
            assert!(linger.is_completion());
            call()
        }
    }
}

/// Runs the scenario `call` in every context, and checks that inger's signal interrupted
/// at least one call (which was then restarted) and that every call returned `expected`.
fn check_every_context<T: Send + PartialEq + core::fmt::Debug + 'static>(
    what: &str,
    call: fn() -> T,
    expected: T,
) {
    install_program_handler();
    for context in CONTEXTS {
        let before = inger::stats().restarted_calls;
        let result = run_in(context, call);
        let restarted = inger::stats().restarted_calls - before;
        assert_eq!(result, expected, "{what} in {context:?}");
        assert!(
            restarted > 0,
            "{what} in {context:?}: inger's signal never interrupted the call, so this run \
             proves nothing"
        );
    }
}

#[test]
fn pause_returns_only_after_the_programs_own_signal() {
    check_every_context(
        "pause",
        || {
            HANDLER_RAN.store(false, SeqCst);
            let _timer = ProgramTimer::after(EVENT_AFTER);
            // SAFETY: pause has no preconditions.
            let result = unsafe { libc::pause() };
            (result, common::errno(), HANDLER_RAN.load(SeqCst))
        },
        (-1, libc::EINTR, true),
    );
}

#[test]
fn sigsuspend_returns_only_after_the_programs_own_signal() {
    check_every_context(
        "sigsuspend",
        || {
            HANDLER_RAN.store(false, SeqCst);
            let _timer = ProgramTimer::after(EVENT_AFTER);
            // SAFETY: an empty set is valid.
            let mut mask: libc::sigset_t = unsafe { core::mem::zeroed() };
            // SAFETY: `mask` is valid.
            unsafe { libc::sigemptyset(&mut mask) };
            // SAFETY: `mask` is a valid set.
            let result = unsafe { libc::sigsuspend(&mask) };
            (result, common::errno(), HANDLER_RAN.load(SeqCst))
        },
        (-1, libc::EINTR, true),
    );
}

#[test]
fn sigwaitinfo_returns_the_awaited_signal() {
    check_every_context(
        "sigwaitinfo",
        || {
            // The awaited signal is blocked, as sigwaitinfo requires.
            // SAFETY: an all-zero sigset_t is a valid value.
            let mut set: libc::sigset_t = unsafe { core::mem::zeroed() };
            // SAFETY: `set` is a valid set.
            unsafe {
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, PROGRAM_SIGNAL);
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, core::ptr::null_mut());
            }
            let _timer = ProgramTimer::after(EVENT_AFTER);
            // SAFETY: `set` is valid; no siginfo wanted.
            let result = unsafe { libc::sigwaitinfo(&set, core::ptr::null_mut()) };
            // SAFETY: as above.
            unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, core::ptr::null_mut()) };
            result
        },
        PROGRAM_SIGNAL,
    );
}

/// A pipe whose write end gets one byte from another thread after [`EVENT_AFTER`]; returns
/// the read end (the writer closes its end afterwards).
fn pipe_written_later() -> i32 {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let writer = fds[1];
    std::thread::spawn(move || {
        std::thread::sleep(EVENT_AFTER);
        // SAFETY: a valid descriptor and a one-byte buffer.
        unsafe {
            libc::write(writer, b"x".as_ptr().cast(), 1);
            libc::close(writer);
        }
    });
    fds[0]
}

fn close(fd: i32) {
    // SAFETY: a descriptor this test owns.
    unsafe { libc::close(fd) };
}

#[test]
fn poll_without_timeout_returns_when_its_descriptor_is_ready() {
    check_every_context(
        "poll",
        || {
            let fd = pipe_written_later();
            let mut entry = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid entry.
            let result = unsafe { libc::poll(&mut entry, 1, -1) };
            close(fd);
            (result, entry.revents & libc::POLLIN != 0)
        },
        (1, true),
    );
}

#[test]
fn epoll_wait_without_timeout_returns_when_its_descriptor_is_ready() {
    check_every_context(
        "epoll_wait",
        || {
            let fd = pipe_written_later();
            // SAFETY: plain system calls on descriptors this test owns.
            unsafe {
                let epoll = libc::epoll_create1(0);
                let mut event = libc::epoll_event {
                    events: libc::EPOLLIN as u32,
                    u64: 7,
                };
                libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event);
                let mut ready = libc::epoll_event { events: 0, u64: 0 };
                let result = libc::epoll_wait(epoll, &mut ready, 1, -1);
                close(epoll);
                close(fd);
                (result, ready.u64)
            }
        },
        (1, 7),
    );
}

#[test]
fn select_with_a_timeout_returns_when_its_descriptor_is_ready() {
    check_every_context(
        "select",
        || {
            let fd = pipe_written_later();
            // SAFETY: an fd_set for one valid descriptor, a valid timeout.
            unsafe {
                let mut set: libc::fd_set = core::mem::zeroed();
                libc::FD_ZERO(&mut set);
                libc::FD_SET(fd, &mut set);
                let mut timeout = libc::timeval {
                    tv_sec: 10,
                    tv_usec: 0,
                };
                let result = libc::select(
                    fd + 1,
                    &mut set,
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    &mut timeout,
                );
                let readable = libc::FD_ISSET(fd, &set);
                close(fd);
                (result, readable)
            }
        },
        (1, true),
    );
}

#[test]
fn nanosleep_sleeps_its_whole_time() {
    check_every_context(
        "nanosleep",
        || {
            let started = Instant::now();
            let request = libc::timespec {
                tv_sec: 0,
                tv_nsec: EVENT_AFTER.as_nanos() as libc::c_long,
            };
            let mut remaining = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: valid timespecs.
            let result = unsafe { libc::nanosleep(&request, &mut remaining) };
            (result, started.elapsed() >= EVENT_AFTER)
        },
        (0, true),
    );
}

#[test]
fn clock_nanosleep_sleeps_its_whole_time_relative_and_absolute() {
    check_every_context(
        "clock_nanosleep (relative)",
        || {
            let started = Instant::now();
            let request = libc::timespec {
                tv_sec: 0,
                tv_nsec: EVENT_AFTER.as_nanos() as libc::c_long,
            };
            let mut remaining = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: valid timespecs.
            let result = unsafe {
                libc::clock_nanosleep(libc::CLOCK_MONOTONIC, 0, &request, &mut remaining)
            };
            (result, started.elapsed() >= EVENT_AFTER)
        },
        (0, true),
    );
    check_every_context(
        "clock_nanosleep (absolute)",
        || {
            let started = Instant::now();
            let mut until = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: a valid out-parameter.
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut until) };
            let total = until.tv_nsec as u64 + EVENT_AFTER.as_nanos() as u64;
            until.tv_sec += (total / 1_000_000_000) as libc::time_t;
            until.tv_nsec = (total % 1_000_000_000) as libc::c_long;
            // SAFETY: a valid timespec; no remainder for an absolute sleep.
            let result = unsafe {
                libc::clock_nanosleep(
                    libc::CLOCK_MONOTONIC,
                    libc::TIMER_ABSTIME,
                    &until,
                    core::ptr::null_mut(),
                )
            };
            (result, started.elapsed() >= EVENT_AFTER)
        },
        (0, true),
    );
}

#[test]
fn a_c_function_blocked_in_pthread_cond_wait_is_paused_and_completes_after_the_signal() {
    let library =
        common::Library::open(&common::compile_c("blocking/cond_wait.c", "cond-wait", &[]));
    // SAFETY: `int wait_until_ready(void)` and `void make_ready(void)` in cond_wait.c.
    let wait: extern "C" fn() -> i32 =
        unsafe { common::as_fn(library.address("wait_until_ready")) };
    // SAFETY: as above.
    let make_ready: extern "C" fn() = unsafe { common::as_fn(library.address("make_ready")) };
    let before = inger::stats();
    let mut linger = inger::launch(move || wait(), Duration::from_millis(10)).expect("launch");
    // Paused by its budget while it waits (possibly after a retry that refreshed the module
    // tables, since the library was loaded after start-up): never completed on its own.
    assert!(
        linger.is_continuation(),
        "the wait completed though nobody signalled"
    );
    assert!(!linger.yielded());
    for _ in 0..5 {
        inger::resume(&mut linger, Duration::from_millis(10)).expect("resume");
        assert!(
            linger.is_continuation(),
            "the wait completed though nobody signalled"
        );
    }
    let after = inger::stats();
    assert!(
        after.paused_in_blocking_call > before.paused_in_blocking_call,
        "never paused in the blocking call: {after:?}"
    );
    // Signal from another thread; the function then completes on resume.
    std::thread::spawn(move || make_ready())
        .join()
        .expect("signaller");
    let (waits, _) = common::finish(linger, Duration::from_millis(10), 10_000);
    assert!(waits >= 1, "pthread_cond_wait never returned");
}
