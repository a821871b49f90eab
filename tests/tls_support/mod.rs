//! Helpers for the thread-local-storage tests (`tests/tls_*.rs`): compiling the small C
//! libraries under `tests/c/tls/` with the system C compiler, loading them with `dlopen`,
//! re-running the test binary as a child process (with a hang guard), and a driver that keeps
//! a function running until its caller has seen it preempted a given number of times.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a different subset of these helpers"
)]

#[path = "../common/mod.rs"]
mod common;

use std::ffi::{CString, c_void};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The environment variable that tells a re-run test binary which child scenario to play.
pub const CHILD_ENV: &str = "INGER_TLS_TEST_CHILD";

/// How long a child may run before it is considered hung (a hang guard, not a timing
/// assertion: every child finishes in well under a second when things work).
const CHILD_HANG_LIMIT: Duration = Duration::from_secs(300);

/// The child scenario this process was started for, if it is a child.
pub fn child_mode() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

#[allow(unused_imports, reason = "not every test binary loads a library")]
pub use common::{ChildOutput, Library};

/// Re-runs this test binary, running only the test `test_name`, with `CHILD_ENV=mode` and the
/// extra environment `env` (every `INGER_*` variable of the parent is removed first). Kills
/// the child and panics if it has not finished after a generous limit.
pub fn run_child(test_name: &str, mode: &str, env: &[(&str, &str)]) -> ChildOutput {
    let exe = std::env::current_exe().expect("the test binary's own path");
    common::run_child(&exe, CHILD_ENV, CHILD_HANG_LIMIT, test_name, mode, env)
}

/// Compiles `tests/c/tls/<name>.c` into a shared library with the system C compiler and
/// returns its path. `flags` are added to `-shared -fPIC -O1 -Wall -Wextra -Werror`. The
/// output name depends on the source and the flags, so concurrent test processes never
/// overwrite a library someone has loaded with a different one; each compiles to a private
/// temporary file and renames it into place (atomic on the same file system).
pub fn compile_c(name: &str, flags: &[&str]) -> PathBuf {
    compile_c_as(name, name, flags)
}

/// As [`compile_c`], naming the output `<output_stem>-<hash>.so` (several copies of one
/// source become distinct modules when loaded).
pub fn compile_c_as(name: &str, output_stem: &str, flags: &[&str]) -> PathBuf {
    common::compile_c("tls", name, output_stem, flags)
}

/// The address of `name` in any module loaded at start-up (`RTLD_DEFAULT`), e.g. a library
/// given in `LD_PRELOAD`; panics if it is missing.
pub fn global_address(name: &str) -> *mut c_void {
    let symbol = CString::new(name).expect("no NUL in a symbol name");
    // SAFETY: RTLD_DEFAULT and a NUL-terminated name.
    let address = unsafe { libc::dlsym(libc::RTLD_DEFAULT, symbol.as_ptr()) };
    assert!(!address.is_null(), "no symbol {name} loaded");
    address
}

/// Turns a symbol address into a function pointer of type `F`.
///
/// # Safety
/// `F` must be an `extern "C" fn` type matching the symbol's C signature.
pub unsafe fn as_fn<F: Copy>(address: *mut c_void) -> F {
    assert_eq!(size_of::<F>(), size_of::<*mut c_void>());
    // SAFETY: per the contract, F is a function pointer type of the right signature.
    unsafe { core::mem::transmute_copy(&address) }
}

/// Counts how often the caller got control back, so a function can keep running until it has
/// been paused a given number of times, whatever the speed of the build.
pub struct Stops {
    count: AtomicU64,
    target: u64,
}

impl Stops {
    /// A counter that is done after `target` stops.
    pub const fn new(target: u64) -> Stops {
        Stops {
            count: AtomicU64::new(0),
            target,
        }
    }

    /// How many times the caller got control back so far.
    pub fn seen(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Whether the function should stop now.
    pub fn done(&self) -> bool {
        self.seen() >= self.target
    }

    /// Records that the caller got control back.
    pub fn record(&self) {
        self.count.fetch_add(1, Relaxed);
    }
}

/// Resumes `linger` with `budget` until it completes, calling `between(stop_number)` each
/// time it comes back paused, before resuming it. Returns the value and how many stops there
/// were. Panics on a resume error.
pub fn drive<T>(
    mut linger: inger::Linger<'_, T>,
    budget: Duration,
    mut between: impl FnMut(u64),
) -> (T, u64) {
    let mut stops = 0;
    while linger.is_continuation() {
        between(stops);
        stops += 1;
        inger::resume(&mut linger, budget).expect("resume");
    }
    (linger.completion().expect("completed"), stops)
}

/// The process-wide preemption counter, for deltas.
pub fn preemptions() -> u64 {
    inger::stats().preemptions
}

/// A deterministic CPU-bound step that touches no thread-local and no libc state.
pub fn spin(seed: u64, rounds: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = std::hint::black_box(x);
    }
    x
}

/// The calling thread's errno.
pub fn errno() -> i32 {
    // SAFETY: __errno_location returns the calling context's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's errno.
pub fn set_errno(value: i32) {
    // SAFETY: __errno_location returns the calling context's errno slot.
    unsafe { *libc::__errno_location() = value };
}

/// The kernel thread id of the caller (the `gettid` system call, never a cached copy).
pub fn kernel_tid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// A long-lived thread that runs jobs sent to it, so a continuation can be moved to a thread
/// with a known identity (CPU affinity, signal mask) and resumed there.
pub struct Worker {
    jobs: Option<std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The worker's kernel thread id.
    pub tid: i32,
}

impl Worker {
    /// Starts a worker named `name` that first runs `setup` on itself.
    pub fn start(name: &str, setup: impl FnOnce() + Send + 'static) -> Worker {
        let (jobs, inbox) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                setup();
                tid_tx.send(kernel_tid()).expect("report tid");
                for job in inbox {
                    job();
                }
            })
            .expect("spawn a worker");
        let tid = tid_rx.recv().expect("worker started");
        Worker {
            jobs: Some(jobs),
            thread: Some(thread),
            tid,
        }
    }

    /// Runs `job` on the worker and returns its result (a panic there fails the test here).
    pub fn run<R: Send + 'static>(&self, job: impl FnOnce() -> R + Send + 'static) -> R {
        let (result_tx, result_rx) = std::sync::mpsc::channel();
        self.jobs
            .as_ref()
            .expect("running")
            .send(Box::new(move || {
                let _ = result_tx.send(job());
            }))
            .expect("worker alive");
        result_rx
            .recv()
            .expect("the job on the worker panicked (see its message above)")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
            && !std::thread::panicking()
        {
            panic!("a worker thread panicked");
        }
    }
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: a valid out-pointer of the size passed.
    let result = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(result, 0, "sched_getaffinity");
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Restricts the calling thread to `cpu` (the kernel moves it there before returning).
pub fn pin_to(cpu: usize) {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (it came from `allowed_cpus`).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: a valid set of the size passed; 0 is the calling thread.
    let result = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    assert_eq!(result, 0, "sched_setaffinity to CPU {cpu}");
}

/// The number of CPUs configured in the system (CPU numbers are below it).
pub fn configured_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let count = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    assert!(count > 0, "sysconf(_SC_NPROCESSORS_CONF)");
    count as usize
}

/// `sched_getcpu()`, checked for failure.
pub fn current_cpu() -> usize {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    assert!(cpu >= 0, "sched_getcpu failed: errno {}", errno());
    cpu as usize
}
