//! # The preload library of `inger-run`
//!
//! Loaded into an unmodified, dynamically linked program with `LD_PRELOAD`, it runs the
//! program's `main` inside a preemptible function that is preempted every time slice and
//! resumed at once, until `main` returns:
//!
//! ```text
//!  load ──> on_load: glibc's functions looked up, own path, atfork handler
//!  _start ──> __libc_start_main (ours): settings, inger configured and started (its handlers
//!             │                          installed, the timer signal emulated from here on)
//!             ▼
//!           __libc_start_main (glibc's, via RTLD_NEXT)
//!                                                │ constructors, then:
//!                                                ▼
//!                                    main_in_preemptible_function(argc, argv, envp)
//!                                    launch(|| main(argc, argv, envp), slice)
//!                                    while paused: resume(slice)   <── the main thread's
//!                                    print the --stats report          stack, never preempted
//!                                                │
//!                                                ▼
//!                     glibc: exit(status) ─> atexit handlers, stdio flush, _exit
//! ```
//!
//! glibc's `_start` hands the program's `main` to `__libc_start_main`; this library defines
//! that symbol, so the dynamic loader binds the program's call to it (preloaded objects come
//! first in the lookup order). It finds glibc's own with `dlsym(RTLD_NEXT, ..)` and calls it
//! with a replacement `main`, so everything glibc does before and after `main` (constructors,
//! `atexit` handlers, stdio flushing, the exit status) happens exactly as without it.
//!
//! What runs where:
//! - Only the main thread's `main` runs inside the preemptible function. Threads the program
//!   creates run normally (they are ordinary threads; nothing preempts them).
//! - A program that calls `exit` from inside `main` exits from the function's stack; that is
//!   fine, since `exit` never returns. The `--stats` report is printed when `main` returns or
//!   when the program calls `exit`/`_exit`/`_Exit` (see the `report` and `exits` modules).
//! - The function's stack is as large as the main thread's stack limit (`ulimit -s`), unless
//!   `INGER_STACK_SIZE` says otherwise; its pages are committed only when touched.
//! - `main` shares the main thread's thread-local storage, unless `--private-tls` asks for
//!   inger's private TLS (see `settings::configure_inger` for why).
//!
//! What else the library interposes, and why:
//!
//! | functions | module | why |
//! | --- | --- | --- |
//! | `sigaction`, `signal`, `sigset`, ... `sigprocmask`, `pthread_sigmask` | `signals` | the program's view of inger's timer signal is emulated: a reset to `SIG_DFL` must not kill it |
//! | `exit`, `_exit`, `_Exit` | `exits` | the report is printed before exit handlers close stderr |
//! | the `exec` family | `exec` | `--stats` says when a program execs one that runs without inger; the run's ledger follows execs |
//! | `fork`, `posix_spawn`, `posix_spawnp` | `spawn` | with `--inherit --stats`, a child counts in the run before it exists |
//! | `poll`, `epoll_wait`, `epoll_pwait`, `sigtimedwait`, `nanosleep`, `clock_nanosleep`, `usleep`, socket calls, `setsockopt` | `shield` | calls with a relative timeout that inger's signal would make fail with `EINTR` and the core cannot restart run with the signal blocked |
//!
//! The inger core linked into this library calls some of the same functions; `build.rs` links
//! it with `--wrap` so that its calls reach the `signals` module's core side, never the
//! program's interposers. Everything an interposer does may happen in a signal handler, in a
//! `vfork` child (which shares its parent's memory) or before `main`: no allocation, no locks,
//! and no writes to the library's state from a process that does not own it. The one
//! exception is inger's own statistics, which the core reads under a lock (see the
//! `totals` module).
//!
//! Settings come from the environment (see the `protocol` module); the library removes its
//! own variables and its `LD_PRELOAD` entry before any code of the program runs, unless asked
//! to leave them for descendant processes.

// The interposed symbols would hijack the unit-test binary built from these sources, so they
// are compiled out of it.
#![cfg_attr(
    test,
    allow(dead_code, reason = "the interposers are compiled out of unit tests")
)]

mod accounting;
#[cfg(not(test))]
mod exec;
#[cfg(not(test))]
mod exits;
mod real;
mod report;
mod settings;
#[cfg(not(test))]
mod shield;
mod signals;
#[cfg(not(test))]
mod spawn;
mod totals;

#[path = "../ledger.rs"]
mod ledger;
#[path = "../protocol.rs"]
mod protocol;
#[path = "../target.rs"]
mod target;

use core::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;

use settings::Settings;
use target::FixedPath;

#[cfg(not(test))]
pub use exec::{execl, execle, execlp, execv, execve, execveat, execvp, execvpe, fexecve};
#[cfg(not(test))]
pub use exits::{_Exit, _exit, exit};
#[cfg(not(test))]
pub use shield::*;
#[cfg(not(test))]
pub use signals::core_calls::*;
#[cfg(not(test))]
pub use signals::program_calls::*;
#[cfg(not(test))]
pub use spawn::{fork, posix_spawn, posix_spawnp};

/// The signature of a C program's `main` as glibc calls it.
type MainFn = unsafe extern "C" fn(c_int, *mut *mut c_char, *mut *mut c_char) -> c_int;

/// The signature of glibc's `__libc_start_main` (the `init`/`fini`/`rtld_fini` arguments are
/// passed through untouched, so they are opaque pointers here).
type StartMainFn = unsafe extern "C" fn(
    MainFn,
    c_int,
    *mut *mut c_char,
    *mut c_void,
    *mut c_void,
    *mut c_void,
    *mut c_void,
) -> c_int;

/// The program's own `main`, recorded by the hook before glibc calls our replacement.
static PROGRAM_MAIN: OnceLock<MainFn> = OnceLock::new();

/// The settings read (and removed) from the environment by the hook.
static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Exit status for a failure of inger-run itself before the program's `main` ran.
const TOOL_FAILURE: c_int = 125;

/// Replaces glibc's `__libc_start_main`: records the program's `main`, takes the settings from
/// the environment, and calls glibc's function with [`main_in_preemptible_function`] instead.
///
/// # Safety
/// Called only by the program's `_start`, with the arguments glibc's `__libc_start_main`
/// expects.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_start_main(
    main: MainFn,
    argc: c_int,
    argv: *mut *mut c_char,
    init: *mut c_void,
    fini: *mut c_void,
    rtld_fini: *mut c_void,
    stack_end: *mut c_void,
) -> c_int {
    let real = glibc_start_main();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(message) => fail(&message),
    };
    // All signals are blocked while inger is configured and started, so that the thread the
    // core starts then (`inger-modules`, which rebuilds its tables of code) inherits a mask
    // that blocks every signal: a process-directed signal (`kill -INT`) must go to one of the
    // program's threads, never to inger's, where it would run the program's handler even
    // while every thread of the program blocks the signal (gnulib's `test-sigprocmask`).
    // SAFETY: all-zero sigset_t values are valid out-parameters; sigfillset fills one.
    let (mut all, mut old): (libc::sigset_t, libc::sigset_t) =
        unsafe { (core::mem::zeroed(), core::mem::zeroed()) };
    // SAFETY: valid sets; glibc's own pthread_sigmask (not the program's interposer).
    unsafe {
        libc::sigfillset(&mut all);
        real::pthread_sigmask()(libc::SIG_BLOCK, &all, &mut old);
    }
    // SAFETY: the program's constructors have not run yet and the loader started no thread,
    // so nothing reads the environment concurrently.
    let configured = unsafe { settings::configure_inger(settings.private_tls) };
    if let Err(error) = configured {
        fail(&format!("cannot configure inger: {error}"));
    }
    start_inger();
    // SAFETY: as above: the mask the thread had.
    unsafe { real::pthread_sigmask()(libc::SIG_SETMASK, &old, core::ptr::null_mut()) };
    if settings.inherit {
        // SAFETY: as above.
        unsafe { settings::remove_own_variables() };
    } else {
        // SAFETY: as above.
        unsafe { settings::restore_environment() };
    }
    let _ = PROGRAM_MAIN.set(main);
    let _ = SETTINGS.set(settings);
    // SAFETY: forwarding _start's own arguments to the function they were meant for, with a
    // `main` of the same signature.
    unsafe {
        real(
            main_in_preemptible_function,
            argc,
            argv,
            init,
            fini,
            rtld_fini,
            stack_end,
        )
    }
}

/// Starts inger's runtime on this thread now, before the program's constructors run, with a
/// function that returns at once: the core installs its handlers (and this library starts
/// emulating the timer signal, see the `signals` module) before any code of the program can
/// touch that signal.
#[cfg(not(test))]
fn start_inger() {
    match inger::launch(|| (), std::time::Duration::MAX) {
        Ok(linger) if linger.is_completion() => {}
        Ok(_) => fail("inger paused a function that returns at once"),
        Err(error) => fail(&format!("cannot start inger: {error}")),
    }
    if inger::capabilities().preemption && signals::emulated_signals() == 0 {
        fail(
            "the preload library was linked without its --wrap options (see crates/inger-run/build.rs): \
             the program could disable preemption or be killed by it",
        );
    }
}

/// What the library does when it is loaded, before any program code that could call the
/// functions it interposes (the constructors of libraries loaded before it excepted): look up
/// glibc's functions, find its own path, and learn about forks.
#[cfg(not(test))]
extern "C" fn on_load() {
    real::resolve_all();
    // SAFETY: a zeroed Dl_info is a valid out-parameter; any address inside this library
    // identifies it.
    unsafe {
        let mut found: libc::Dl_info = core::mem::zeroed();
        if libc::dladdr(on_load as *const () as *const c_void, &mut found) != 0
            && !found.dli_fname.is_null()
        {
            let name = core::ffi::CStr::from_ptr(found.dli_fname).to_bytes();
            if let Some(path) = FixedPath::from_bytes(name) {
                let _ = OWN_PATH.set(path);
            }
        }
    }
    // SAFETY: registering a plain function, which only stores to an atomic.
    unsafe { libc::pthread_atfork(None, None, Some(in_forked_child)) };
}

/// This library's path, as the loader knows it (the `LD_PRELOAD` entry).
static OWN_PATH: OnceLock<FixedPath> = OnceLock::new();

/// This library's path, if known.
pub(crate) fn own_library_path() -> Option<&'static FixedPath> {
    OWN_PATH.get()
}

/// The path of the run's ledger, if this process has one.
pub(crate) fn settings_ledger_path() -> Option<&'static [u8]> {
    SETTINGS
        .get()?
        .ledger
        .as_deref()
        .map(core::ffi::CStr::to_bytes)
}

#[cfg(not(test))]
#[used]
#[unsafe(link_section = ".init_array")]
static ON_LOAD: extern "C" fn() = on_load;

/// A forked child inherits no timer, so it is never preempted: it has no thread running
/// `main` in the sense of the signal counters.
#[cfg(not(test))]
extern "C" fn in_forked_child() {
    signals::forget_main_thread();
}

/// glibc's `__libc_start_main`: the next definition after this library in lookup order.
fn glibc_start_main() -> StartMainFn {
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name has no other precondition.
    let symbol = unsafe { libc::dlsym(libc::RTLD_NEXT, c"__libc_start_main".as_ptr()) };
    if symbol.is_null() {
        fail("glibc's __libc_start_main was not found (is this program linked against glibc?)");
    }
    // SAFETY: glibc's `__libc_start_main` has exactly this signature.
    unsafe { core::mem::transmute::<*mut c_void, StartMainFn>(symbol) }
}

/// The arguments of the program's `main`, moved onto the preemptible function's stack.
struct MainCall {
    main: MainFn,
    argc: c_int,
    argv: *mut *mut c_char,
    envp: *mut *mut c_char,
}

// SAFETY: the call runs on the thread that created it (a preemptible function runs on its
// caller's kernel thread); `Send` is only required by `launch`'s general contract.
unsafe impl Send for MainCall {}

impl MainCall {
    fn run(self) -> c_int {
        // SAFETY: these are the arguments glibc prepared for this very `main`.
        unsafe { (self.main)(self.argc, self.argv, self.envp) }
    }
}

/// What glibc calls instead of the program's `main`: runs it inside a preemptible function,
/// resuming it each time it is preempted, and returns its status to glibc.
unsafe extern "C" fn main_in_preemptible_function(
    argc: c_int,
    argv: *mut *mut c_char,
    envp: *mut *mut c_char,
) -> c_int {
    let (Some(&main), Some(settings)) = (PROGRAM_MAIN.get(), SETTINGS.get()) else {
        fail("main was called before __libc_start_main")
    };
    signals::note_main_thread();
    if settings.stats {
        report::enable(settings, inger::capabilities().private_tls);
    }
    let call = MainCall {
        main,
        argc,
        argv,
        envp,
    };
    let linger = run_in_slices(call, settings.budget());
    let status = linger
        .completion()
        .unwrap_or_else(|| fail("main finished without a status"));
    report::print_once();
    status
}

/// Runs `main` inside a preemptible function, resumed at once each time it is preempted,
/// until it returns. The one place that decides how `main` is budgeted.
///
/// The slice is `main`'s CPU time by default (`inger::Budget::cpu`): while `main` sleeps or
/// blocks, its thread's CPU clock stands still, so the timer sends nothing and the program
/// costs no CPU it would not have used anyway (`inger-run -- sleep 1` is not preempted at
/// all). `--wall-slices` gives wall-clock slices, which keep preempting a waiting `main`.
fn run_in_slices(call: MainCall, slice: inger::Budget) -> inger::Linger<'static, c_int> {
    let mut linger = match inger::launch(move || MainCall::run(call), slice) {
        Ok(linger) => linger,
        Err(error) => fail(&format!(
            "cannot run main inside a preemptible function: {error}"
        )),
    };
    let mut resumes = 0u64;
    while linger.is_continuation() {
        resumes += 1;
        if resumes.is_multiple_of(accounting::REFRESH_EVERY) {
            accounting::refresh();
        }
        if let Err(error) = inger::resume(&mut linger, slice) {
            // main has run part-way: no clean way to go on, and exiting would run the
            // program's atexit handlers on half-updated state.
            report::write_stderr(format!("inger-run: cannot resume main: {error}\n").as_bytes());
            std::process::abort();
        }
    }
    linger
}

/// Reports a failure of inger-run itself (before the program's `main` ran) and exits.
fn fail(message: &str) -> ! {
    report::write_stderr(format!("inger-run: {message}\n").as_bytes());
    // SAFETY: `_exit` has no preconditions; it skips the program's exit handlers, since the
    // program never really started.
    unsafe { libc::_exit(TOOL_FAILURE) }
}
