//! glibc's own definitions of the functions this library interposes, found with
//! `dlsym(RTLD_NEXT, ..)`.
//!
//! All of them are looked up by the library's constructor, before the program's code runs,
//! so that an interposer called later (from a signal handler, or in a `vfork` child) never
//! calls `dlsym`, which is neither async-signal-safe nor free of shared state. A lookup that
//! fails (a C library that is not glibc) ends the process with a message: the interposers
//! have nothing to forward to.

use core::ffi::{CStr, c_char, c_int, c_void};
use core::sync::atomic::{AtomicPtr, Ordering::Relaxed};

/// Looks `name` up once and caches it in `slot`.
fn lookup(slot: &AtomicPtr<c_void>, name: &CStr) -> *mut c_void {
    let known = slot.load(Relaxed);
    if !known.is_null() {
        return known;
    }
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name has no other precondition.
    let found = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    if found.is_null() {
        let parts: [&[u8]; 3] = [
            b"inger-run: glibc's ",
            name.to_bytes(),
            b" was not found (is this program linked against glibc?)\n",
        ];
        for part in parts {
            // SAFETY: writing a valid buffer to stderr.
            unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
        }
        // SAFETY: exit_group has no preconditions and does not return.
        unsafe { libc::syscall(libc::SYS_exit_group, 125) };
    }
    slot.store(found, Relaxed);
    found
}

macro_rules! real_functions {
    ($($(#[$doc:meta])* $name:ident = $symbol:literal: fn($($arg:ty),*) $(-> $ret:ty)?;)*) => {
        $(
            $(#[$doc])*
            pub(crate) fn $name() -> unsafe extern "C" fn($($arg),*) $(-> $ret)? {
                static SLOT: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
                let found = lookup(&SLOT, $symbol);
                // SAFETY: glibc's function of that name has exactly this signature.
                unsafe {
                    core::mem::transmute::<*mut c_void, unsafe extern "C" fn($($arg),*) $(-> $ret)?>(found)
                }
            }
        )*

        /// Looks every function up (called by the library's constructor).
        pub(crate) fn resolve_all() {
            $( let _ = $name(); )*
        }
    };
}

/// `sighandler_t`: a handler address, `SIG_DFL`, `SIG_IGN` or `SIG_ERR`.
pub(crate) type Handler = libc::sighandler_t;

real_functions! {
    sigaction = c"sigaction": fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;
    sigprocmask = c"sigprocmask": fn(c_int, *const libc::sigset_t, *mut libc::sigset_t) -> c_int;
    pthread_sigmask = c"pthread_sigmask": fn(c_int, *const libc::sigset_t, *mut libc::sigset_t) -> c_int;
    timer_create = c"timer_create": fn(libc::clockid_t, *mut libc::sigevent, *mut libc::timer_t) -> c_int;
    signal = c"signal": fn(c_int, Handler) -> Handler;
    bsd_signal = c"bsd_signal": fn(c_int, Handler) -> Handler;
    ssignal = c"ssignal": fn(c_int, Handler) -> Handler;
    sysv_signal = c"sysv_signal": fn(c_int, Handler) -> Handler;
    sigset = c"sigset": fn(c_int, Handler) -> Handler;
    sigignore = c"sigignore": fn(c_int) -> c_int;
    siginterrupt = c"siginterrupt": fn(c_int, c_int) -> c_int;
    execve = c"execve": fn(*const c_char, *const *const c_char, *const *const c_char) -> c_int;
    execv = c"execv": fn(*const c_char, *const *const c_char) -> c_int;
    execvp = c"execvp": fn(*const c_char, *const *const c_char) -> c_int;
    execvpe = c"execvpe": fn(*const c_char, *const *const c_char, *const *const c_char) -> c_int;
    fexecve = c"fexecve": fn(c_int, *const *const c_char, *const *const c_char) -> c_int;
    execveat = c"execveat": fn(c_int, *const c_char, *const *const c_char, *const *const c_char, c_int) -> c_int;
    fork = c"fork": fn() -> libc::pid_t;
    posix_spawn = c"posix_spawn": fn(
        *mut libc::pid_t,
        *const c_char,
        *const libc::posix_spawn_file_actions_t,
        *const libc::posix_spawnattr_t,
        *const *mut c_char,
        *const *mut c_char
    ) -> c_int;
    posix_spawnp = c"posix_spawnp": fn(
        *mut libc::pid_t,
        *const c_char,
        *const libc::posix_spawn_file_actions_t,
        *const libc::posix_spawnattr_t,
        *const *mut c_char,
        *const *mut c_char
    ) -> c_int;
    setsockopt = c"setsockopt": fn(c_int, c_int, c_int, *const c_void, libc::socklen_t) -> c_int;
    poll = c"poll": fn(*mut libc::pollfd, libc::nfds_t, c_int) -> c_int;
    ppoll = c"ppoll": fn(*mut libc::pollfd, libc::nfds_t, *const libc::timespec, *const libc::sigset_t) -> c_int;
    select = c"select": fn(c_int, *mut libc::fd_set, *mut libc::fd_set, *mut libc::fd_set, *mut libc::timeval) -> c_int;
    pselect = c"pselect": fn(c_int, *mut libc::fd_set, *mut libc::fd_set, *mut libc::fd_set, *const libc::timespec, *const libc::sigset_t) -> c_int;
    pause = c"pause": fn() -> c_int;
    sigsuspend = c"sigsuspend": fn(*const libc::sigset_t) -> c_int;
    sigwait = c"sigwait": fn(*const libc::sigset_t, *mut c_int) -> c_int;
    sigwaitinfo = c"sigwaitinfo": fn(*const libc::sigset_t, *mut libc::siginfo_t) -> c_int;
    sleep = c"sleep": fn(core::ffi::c_uint) -> core::ffi::c_uint;
    sem_trywait = c"sem_trywait": fn(*mut libc::sem_t) -> c_int;
    sem_wait = c"sem_wait": fn(*mut libc::sem_t) -> c_int;
    sem_timedwait = c"sem_timedwait": fn(*mut libc::sem_t, *const libc::timespec) -> c_int;
    sem_clockwait = c"sem_clockwait": fn(*mut libc::sem_t, libc::clockid_t, *const libc::timespec) -> c_int;
    epoll_wait = c"epoll_wait": fn(c_int, *mut libc::epoll_event, c_int, c_int) -> c_int;
    epoll_pwait = c"epoll_pwait": fn(c_int, *mut libc::epoll_event, c_int, c_int, *const libc::sigset_t) -> c_int;
    sigtimedwait = c"sigtimedwait": fn(*const libc::sigset_t, *mut libc::siginfo_t, *const libc::timespec) -> c_int;
    nanosleep = c"nanosleep": fn(*const libc::timespec, *mut libc::timespec) -> c_int;
    clock_nanosleep = c"clock_nanosleep": fn(libc::clockid_t, c_int, *const libc::timespec, *mut libc::timespec) -> c_int;
    usleep = c"usleep": fn(libc::useconds_t) -> c_int;
    read = c"read": fn(c_int, *mut c_void, usize) -> isize;
    readv = c"readv": fn(c_int, *const libc::iovec, c_int) -> isize;
    recv = c"recv": fn(c_int, *mut c_void, usize, c_int) -> isize;
    recvfrom = c"recvfrom": fn(c_int, *mut c_void, usize, c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> isize;
    recvmsg = c"recvmsg": fn(c_int, *mut libc::msghdr, c_int) -> isize;
    accept = c"accept": fn(c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> c_int;
    accept4 = c"accept4": fn(c_int, *mut libc::sockaddr, *mut libc::socklen_t, c_int) -> c_int;
    write = c"write": fn(c_int, *const c_void, usize) -> isize;
    writev = c"writev": fn(c_int, *const libc::iovec, c_int) -> isize;
    send = c"send": fn(c_int, *const c_void, usize, c_int) -> isize;
    sendto = c"sendto": fn(c_int, *const c_void, usize, c_int, *const libc::sockaddr, libc::socklen_t) -> isize;
    sendmsg = c"sendmsg": fn(c_int, *const libc::msghdr, c_int) -> isize;
    connect = c"connect": fn(c_int, *const libc::sockaddr, libc::socklen_t) -> c_int;
    exit = c"exit": fn(c_int) -> !;
    underscore_exit = c"_exit": fn(c_int) -> !;
}
