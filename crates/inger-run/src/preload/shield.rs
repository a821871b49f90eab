//! The program's blocking calls, interposed so that inger's timer signal never interrupts
//! them: they run with the signal blocked (the calls that install a mask of their own get it
//! added to that mask).
//!
//! Any caught signal makes some calls fail with `EINTR` whatever `SA_RESTART` says
//! (`signal(7)`). The core's handler makes many of them run again (`src/sys/restart.rs`):
//! calls with no timeout, an absolute one, or one the kernel reduces by the time spent. That
//! leaves two problems, which this module removes for the calls below:
//!
//! - calls with a relative timeout the kernel does not update (`poll` or `epoll_wait` with a
//!   timeout, `usleep`, `sigtimedwait`, socket calls with `SO_RCVTIMEO`): a restart would
//!   wait longer than asked, so the core leaves their `EINTR`;
//! - a restart hides a signal of the program's that arrived while inger's handler ran (the
//!   handler pauses `main` and it is resumed from inside the handler, so with `--wall-slices`
//!   it runs a large part of the time): the program's handler runs, nested in inger's, and
//!   then inger's restarts the call, whose `EINTR` the program was waiting for. `pause()`
//!   after `alarm()` then waits for ever. The core cannot tell that another handler ran.
//!
//! | call | shielded when |
//! | --- | --- |
//! | `pause`, `sigsuspend`, `sigwait`, `sigwaitinfo` | always |
//! | `sigtimedwait`, `ppoll`, `pselect`, `select` | the timeout is not zero |
//! | `poll`, `epoll_wait`, `epoll_pwait` | the timeout is not zero |
//! | `nanosleep`, `clock_nanosleep`, `sleep`, `usleep` | always |
//! | `sem_wait`, `sem_timedwait`, `sem_clockwait` | the semaphore cannot be taken at once |
//! | `read`, `readv`, `recv`, `recvfrom`, `recvmsg`, `accept`, `accept4`, `write`, `writev`, `send`, `sendto`, `sendmsg`, `connect` | the descriptor was given `SO_RCVTIMEO` or `SO_SNDTIMEO` with `setsockopt` (the kernel reports an interrupted socket call with a timeout as `EINTR` even under `SA_RESTART`) |
//!
//! Why blocking rather than retrying with what is left of the timeout: a retry cannot tell
//! inger's signal from one of the program's arriving in the same call, whose `EINTR` the
//! program must see; blocking keeps the program's signals exactly as they were, at the cost
//! of two `rt_sigprocmask` calls around each shielded call (about a microsecond, next to a
//! call that waits). While the signal is blocked, `main` is not preempted: with CPU-time
//! slices (the default) a waiting `main` uses no budget anyway; with `--wall-slices` the
//! expiry is pending and takes effect when the call returns. The core then counts the
//! expiry's lateness (the length of the wait) as a deferral: "longest deferral" in the report
//! includes such waits.
//!
//! Limits:
//! - glibc's internal calls bind inside libc and never come here: `fread` on a socket with a
//!   timeout, `system`'s `waitpid`, the futex waits of `pthread_cond_wait` and
//!   `pthread_mutex_lock` (which never fail with `EINTR`). Calls the kernel restarts under
//!   `SA_RESTART` (`read` on a pipe, `waitpid`) are not shielded: a program handler without
//!   `SA_RESTART` that runs nested in inger's sees its call restarted, as it would nested in
//!   any `SA_RESTART` handler of its own.
//! - A descriptor is known to have a timeout only from the program's `setsockopt` (not one
//!   inherited from a parent, or a duplicate made with `dup`); a descriptor number keeps its
//!   mark after `close`, which costs a later socket of that number the two mask calls,
//!   nothing else.
//! - A program that waits in `pause`, `sigsuspend` or `sigwait` for a `kill` of inger's
//!   signal itself (its emulated handler) waits until another signal comes; `INGER_SIGNAL`
//!   picks another signal for such programs.
//!
//! Everything here may run in a signal handler or a `vfork` child: no allocation, no locks.

use core::ffi::{c_int, c_uint, c_void};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::real;
use crate::signals::action::{first_word, set_of};
use crate::signals::emulated_signals;

/// Calls run with the timer signal blocked.
static SHIELDED: AtomicU64 = AtomicU64::new(0);

/// How many calls were shielded in this process.
pub(crate) fn shielded_calls() -> u64 {
    SHIELDED.load(Relaxed)
}

/// Runs `call` with the emulated signals blocked in the calling thread, then gives the
/// thread its mask back (a pending expiry arrives then). `errno` is the call's.
fn shielded<T>(call: impl FnOnce() -> T) -> T {
    let signals = emulated_signals();
    if signals == 0 {
        return call();
    }
    let set = set_of(signals);
    // SAFETY: an all-zero sigset_t is a valid out-parameter.
    let mut old: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: valid sets; glibc's pthread_sigmask (not our interposer, which counts).
    unsafe { real::pthread_sigmask()(libc::SIG_BLOCK, &set, &mut old) };
    let result = call();
    let saved_errno = errno();
    let newly_blocked = signals & !first_word(&old);
    if newly_blocked != 0 {
        let unblock = set_of(newly_blocked);
        // SAFETY: as above.
        unsafe { real::pthread_sigmask()(libc::SIG_UNBLOCK, &unblock, core::ptr::null_mut()) };
    }
    set_errno(saved_errno);
    SHIELDED.fetch_add(1, Relaxed);
    result
}

fn errno() -> c_int {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

fn set_errno(value: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = value };
}

/// `mask` with the emulated signals added, for the calls that install a mask of their own
/// while they wait. They are shielded too: the kernel gives the thread its own mask back
/// as the call returns, and an expiry that was pending during the call would arrive right
/// then, after the `EINTR` a program's signal caused, and the core would restart the call
/// (its `EINTR` lost: `sigsuspend` waiting for good for a signal that came).
fn with_emulated_blocked(mask: &libc::sigset_t) -> libc::sigset_t {
    let mut copy = *mask;
    let word = first_word(mask) | emulated_signals();
    // SAFETY: the first 8 bytes of a sigset_t are signals 1 to 64 (see `first_word`).
    unsafe { (&raw mut copy).cast::<u64>().write_unaligned(word) };
    copy
}

/// Descriptors the program gave a socket timeout, one bit each (descriptors from 65536 on
/// are never shielded).
static TIMEOUT_FDS: [AtomicU64; 1024] = [const { AtomicU64::new(0) }; 1024];

fn mark_timeout(fd: c_int) {
    if let Ok(fd) = usize::try_from(fd)
        && let Some(word) = TIMEOUT_FDS.get(fd / 64)
    {
        word.fetch_or(1 << (fd % 64), Relaxed);
    }
}

fn has_timeout(fd: c_int) -> bool {
    usize::try_from(fd).is_ok_and(|fd| {
        TIMEOUT_FDS
            .get(fd / 64)
            .is_some_and(|word| word.load(Relaxed) & (1 << (fd % 64)) != 0)
    })
}

/// The socket options that make socket calls report an interruption with `EINTR`
/// (`SO_RCVTIMEO`/`SO_SNDTIMEO`, in their old and 64-bit-time forms).
const TIMEOUT_OPTIONS: [c_int; 4] = [20, 21, 66, 67];

/// `setsockopt`: notes the descriptors given a socket timeout.
///
/// # Safety
/// As glibc's `setsockopt`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    length: libc::socklen_t,
) -> c_int {
    if level == libc::SOL_SOCKET && TIMEOUT_OPTIONS.contains(&name) {
        mark_timeout(fd);
    }
    // SAFETY: forwarding the caller's own arguments.
    unsafe { real::setsockopt()(fd, level, name, value, length) }
}

/// Whether a `timespec` timeout lets the call wait (null: forever; zero: never).
fn may_wait(timeout: *const libc::timespec) -> bool {
    // SAFETY: per the callers' contracts, `timeout` is null or valid.
    unsafe { timeout.as_ref() }.is_none_or(|t| t.tv_sec != 0 || t.tv_nsec != 0)
}

/// `pause`: waits for one of the program's signals, never for inger's.
///
/// # Safety
/// As glibc's `pause`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pause() -> c_int {
    shielded(|| {
        // SAFETY: no arguments.
        unsafe { real::pause()() }
    })
}

/// `sigsuspend`: the mask it waits with keeps the timer signal blocked.
///
/// # Safety
/// As glibc's `sigsuspend`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigsuspend(mask: *const libc::sigset_t) -> c_int {
    // SAFETY: per the contract, `mask` is null or valid.
    match unsafe { mask.as_ref() } {
        Some(mask) => {
            let blocked = with_emulated_blocked(mask);
            shielded(|| {
                // SAFETY: a valid mask of our own.
                unsafe { real::sigsuspend()(&blocked) }
            })
        }
        // SAFETY: forwarding the caller's argument (glibc reports EFAULT).
        None => unsafe { real::sigsuspend()(mask) },
    }
}

/// `sigwait`.
///
/// # Safety
/// As glibc's `sigwait`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigwait(set: *const libc::sigset_t, signal: *mut c_int) -> c_int {
    shielded(|| {
        // SAFETY: forwarding the caller's own arguments.
        unsafe { real::sigwait()(set, signal) }
    })
}

/// `sigwaitinfo`.
///
/// # Safety
/// As glibc's `sigwaitinfo`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigwaitinfo(
    set: *const libc::sigset_t,
    info: *mut libc::siginfo_t,
) -> c_int {
    shielded(|| {
        // SAFETY: forwarding the caller's own arguments.
        unsafe { real::sigwaitinfo()(set, info) }
    })
}

/// `sigtimedwait`.
///
/// # Safety
/// As glibc's `sigtimedwait`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigtimedwait(
    set: *const libc::sigset_t,
    info: *mut libc::siginfo_t,
    timeout: *const libc::timespec,
) -> c_int {
    // SAFETY: forwarding the caller's own arguments.
    let call = || unsafe { real::sigtimedwait()(set, info, timeout) };
    if may_wait(timeout) {
        shielded(call)
    } else {
        call()
    }
}

/// `poll`.
///
/// # Safety
/// As glibc's `poll`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn poll(
    fds: *mut libc::pollfd,
    count: libc::nfds_t,
    timeout: c_int,
) -> c_int {
    // SAFETY: forwarding the caller's own arguments.
    let call = || unsafe { real::poll()(fds, count, timeout) };
    if timeout != 0 { shielded(call) } else { call() }
}

/// `ppoll`: the mask it waits with keeps the timer signal blocked.
///
/// # Safety
/// As glibc's `ppoll`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ppoll(
    fds: *mut libc::pollfd,
    count: libc::nfds_t,
    timeout: *const libc::timespec,
    mask: *const libc::sigset_t,
) -> c_int {
    if !may_wait(timeout) {
        // SAFETY: forwarding the caller's own arguments.
        return unsafe { real::ppoll()(fds, count, timeout, mask) };
    }
    // SAFETY: per the contract, `mask` is null or valid.
    match unsafe { mask.as_ref() } {
        Some(mask) => {
            let blocked = with_emulated_blocked(mask);
            shielded(|| {
                // SAFETY: the caller's arguments, with a valid mask of our own.
                unsafe { real::ppoll()(fds, count, timeout, &blocked) }
            })
        }
        None => shielded(|| {
            // SAFETY: forwarding the caller's own arguments.
            unsafe { real::ppoll()(fds, count, timeout, mask) }
        }),
    }
}

/// `select`.
///
/// # Safety
/// As glibc's `select`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn select(
    count: c_int,
    read: *mut libc::fd_set,
    write: *mut libc::fd_set,
    except: *mut libc::fd_set,
    timeout: *mut libc::timeval,
) -> c_int {
    // SAFETY: forwarding the caller's own arguments.
    let call = || unsafe { real::select()(count, read, write, except, timeout) };
    // SAFETY: per the contract, `timeout` is null or valid.
    let waits = unsafe { timeout.as_ref() }.is_none_or(|t| t.tv_sec != 0 || t.tv_usec != 0);
    if waits { shielded(call) } else { call() }
}

/// `pselect`: the mask it waits with keeps the timer signal blocked.
///
/// # Safety
/// As glibc's `pselect`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pselect(
    count: c_int,
    read: *mut libc::fd_set,
    write: *mut libc::fd_set,
    except: *mut libc::fd_set,
    timeout: *const libc::timespec,
    mask: *const libc::sigset_t,
) -> c_int {
    if !may_wait(timeout) {
        // SAFETY: forwarding the caller's own arguments.
        return unsafe { real::pselect()(count, read, write, except, timeout, mask) };
    }
    // SAFETY: per the contract, `mask` is null or valid.
    match unsafe { mask.as_ref() } {
        Some(mask) => {
            let blocked = with_emulated_blocked(mask);
            shielded(|| {
                // SAFETY: the caller's arguments, with a valid mask of our own.
                unsafe { real::pselect()(count, read, write, except, timeout, &blocked) }
            })
        }
        None => shielded(|| {
            // SAFETY: forwarding the caller's own arguments.
            unsafe { real::pselect()(count, read, write, except, timeout, mask) }
        }),
    }
}

/// `epoll_wait`.
///
/// # Safety
/// As glibc's `epoll_wait`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_wait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
) -> c_int {
    // SAFETY: forwarding the caller's own arguments.
    let call = || unsafe { real::epoll_wait()(epfd, events, max, timeout) };
    if timeout != 0 { shielded(call) } else { call() }
}

/// `epoll_pwait`: the mask it waits with keeps the timer signal blocked.
///
/// # Safety
/// As glibc's `epoll_pwait`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_pwait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
    mask: *const libc::sigset_t,
) -> c_int {
    // SAFETY: per the contract, `mask` is null or valid.
    match (timeout != 0, unsafe { mask.as_ref() }) {
        (true, Some(mask)) => {
            let blocked = with_emulated_blocked(mask);
            shielded(|| {
                // SAFETY: forwarding the caller's arguments, with a valid mask of our own.
                unsafe { real::epoll_pwait()(epfd, events, max, timeout, &blocked) }
            })
        }
        (true, None) => shielded(|| {
            // SAFETY: forwarding the caller's own arguments.
            unsafe { real::epoll_pwait()(epfd, events, max, timeout, mask) }
        }),
        // SAFETY: forwarding the caller's own arguments.
        (false, _) => unsafe { real::epoll_pwait()(epfd, events, max, timeout, mask) },
    }
}

/// `nanosleep`.
///
/// # Safety
/// As glibc's `nanosleep`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nanosleep(
    request: *const libc::timespec,
    rem: *mut libc::timespec,
) -> c_int {
    shielded(|| {
        // SAFETY: forwarding the caller's own arguments.
        unsafe { real::nanosleep()(request, rem) }
    })
}

/// `clock_nanosleep`.
///
/// # Safety
/// As glibc's `clock_nanosleep`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clock_nanosleep(
    clock: libc::clockid_t,
    flags: c_int,
    request: *const libc::timespec,
    rem: *mut libc::timespec,
) -> c_int {
    shielded(|| {
        // SAFETY: forwarding the caller's own arguments.
        unsafe { real::clock_nanosleep()(clock, flags, request, rem) }
    })
}

/// `sleep` (glibc's calls `nanosleep` inside libc).
///
/// # Safety
/// As glibc's `sleep`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sleep(seconds: c_uint) -> c_uint {
    shielded(|| {
        // SAFETY: forwarding the caller's own argument.
        unsafe { real::sleep()(seconds) }
    })
}

/// `usleep` (glibc's calls `nanosleep` inside libc).
///
/// # Safety
/// As glibc's `usleep`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usleep(microseconds: libc::useconds_t) -> c_int {
    shielded(|| {
        // SAFETY: forwarding the caller's own argument.
        unsafe { real::usleep()(microseconds) }
    })
}

/// Runs a semaphore wait that may block: `sem_trywait` first (a semaphore that can be taken
/// needs no shield and no system call), else `wait` shielded.
fn semaphore_wait(semaphore: *mut libc::sem_t, wait: impl FnOnce() -> c_int) -> c_int {
    let saved_errno = errno();
    // SAFETY: per the callers' contracts, `semaphore` is a valid semaphore.
    if unsafe { real::sem_trywait()(semaphore) } == 0 {
        return 0;
    }
    set_errno(saved_errno);
    shielded(wait)
}

/// `sem_wait`.
///
/// # Safety
/// As glibc's `sem_wait`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sem_wait(semaphore: *mut libc::sem_t) -> c_int {
    // SAFETY: forwarding the caller's own argument.
    semaphore_wait(semaphore, || unsafe { real::sem_wait()(semaphore) })
}

/// `sem_timedwait`.
///
/// # Safety
/// As glibc's `sem_timedwait`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sem_timedwait(
    semaphore: *mut libc::sem_t,
    deadline: *const libc::timespec,
) -> c_int {
    // SAFETY: forwarding the caller's own arguments.
    semaphore_wait(semaphore, || unsafe {
        real::sem_timedwait()(semaphore, deadline)
    })
}

/// `sem_clockwait`.
///
/// # Safety
/// As glibc's `sem_clockwait`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sem_clockwait(
    semaphore: *mut libc::sem_t,
    clock: libc::clockid_t,
    deadline: *const libc::timespec,
) -> c_int {
    // SAFETY: forwarding the caller's own arguments.
    semaphore_wait(semaphore, || unsafe {
        real::sem_clockwait()(semaphore, clock, deadline)
    })
}

/// Defines socket calls on descriptor `$fd` that are shielded when it has a socket timeout.
macro_rules! socket_calls {
    ($($(#[$doc:meta])* $name:ident($fd:ident: c_int $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(
            $(#[$doc])*
            ///
            /// # Safety
            /// As glibc's function of that name.
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn $name($fd: c_int $(, $arg: $ty)*) -> $ret {
                // SAFETY: forwarding the caller's own arguments.
                let call = || unsafe { real::$name()($fd $(, $arg)*) };
                if has_timeout($fd) { shielded(call) } else { call() }
            }
        )*
    };
}

socket_calls! {
    /// `read`.
    read(fd: c_int, buffer: *mut c_void, count: usize) -> isize;
    /// `readv`.
    readv(fd: c_int, iov: *const libc::iovec, count: c_int) -> isize;
    /// `recv`.
    recv(fd: c_int, buffer: *mut c_void, count: usize, flags: c_int) -> isize;
    /// `recvfrom`.
    recvfrom(
        fd: c_int,
        buffer: *mut c_void,
        count: usize,
        flags: c_int,
        address: *mut libc::sockaddr,
        length: *mut libc::socklen_t
    ) -> isize;
    /// `recvmsg`.
    recvmsg(fd: c_int, message: *mut libc::msghdr, flags: c_int) -> isize;
    /// `accept`.
    accept(fd: c_int, address: *mut libc::sockaddr, length: *mut libc::socklen_t) -> c_int;
    /// `accept4`.
    accept4(
        fd: c_int,
        address: *mut libc::sockaddr,
        length: *mut libc::socklen_t,
        flags: c_int
    ) -> c_int;
    /// `write`.
    write(fd: c_int, buffer: *const c_void, count: usize) -> isize;
    /// `writev`.
    writev(fd: c_int, iov: *const libc::iovec, count: c_int) -> isize;
    /// `send`.
    send(fd: c_int, buffer: *const c_void, count: usize, flags: c_int) -> isize;
    /// `sendto`.
    sendto(
        fd: c_int,
        buffer: *const c_void,
        count: usize,
        flags: c_int,
        address: *const libc::sockaddr,
        length: libc::socklen_t
    ) -> isize;
    /// `sendmsg`.
    sendmsg(fd: c_int, message: *const libc::msghdr, flags: c_int) -> isize;
    /// `connect`.
    connect(fd: c_int, address: *const libc::sockaddr, length: libc::socklen_t) -> c_int;
}
