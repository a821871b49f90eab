//! Helpers for the thread-local-storage tests (`tests/tls_*.rs`): compiling the small C
//! libraries under `tests/c/tls/` with the system C compiler, loading them with `dlopen`,
//! re-running the test binary as a child process (with a hang guard), and a driver that keeps
//! a function running until its caller has seen it preempted a given number of times.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a different subset of these helpers"
)]

use std::ffi::{CString, c_void};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The environment variable that tells a re-run test binary which child scenario to play.
pub const CHILD_ENV: &str = "INGER_TLS_TEST_CHILD";

/// How long a child may run before it is considered hung (a hang guard, not a timing
/// assertion: every child finishes in well under a second when things work).
const CHILD_HANG_LIMIT: Duration = Duration::from_secs(300);

/// The child scenario this process was started for, if it is a child.
pub fn child_mode() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// What a child process did.
pub struct ChildOutput {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl ChildOutput {
    /// Describes the child's exit for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    /// The lines of stdout that contain `prefix`, with everything up to the end of the
    /// prefix removed (the test harness prints its own text around them, and its
    /// "test name ... " has no newline before the test's own output).
    pub fn lines_with(&self, prefix: &str) -> Vec<String> {
        self.stdout
            .lines()
            .filter_map(|line| {
                let start = line.find(prefix)?;
                Some(line[start + prefix.len()..].to_owned())
            })
            .collect()
    }
}

/// Re-runs this test binary, running only the test `test_name`, with `CHILD_ENV=mode` and the
/// extra environment `env` (every `INGER_*` variable of the parent is removed first). Kills
/// the child and panics if it has not finished after a generous limit.
pub fn run_child(test_name: &str, mode: &str, env: &[(&str, &str)]) -> ChildOutput {
    let exe = std::env::current_exe().expect("the test binary's own path");
    let mut command = Command::new(exe);
    command.args([test_name, "--exact", "--nocapture", "--test-threads=1"]);
    for (key, _) in std::env::vars() {
        if key.starts_with("INGER_") {
            command.env_remove(key);
        }
    }
    command.env(CHILD_ENV, mode);
    for (key, value) in env {
        command.env(key, value);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("re-running the test binary");
    let mut stdout_pipe = child.stdout.take().expect("piped stdout");
    let mut stderr_pipe = child.stderr.take().expect("piped stderr");
    let stdout_reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout_pipe.read_to_end(&mut text);
        text
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr_pipe.read_to_end(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            break status;
        }
        if started.elapsed() > CHILD_HANG_LIMIT {
            let _ = child.kill();
            let status = child.wait().expect("reaping the killed child");
            let stdout = stdout_reader.join().unwrap_or_default();
            let stderr = stderr_reader.join().unwrap_or_default();
            panic!(
                "child {mode:?} hung and was killed ({status:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout_reader.join().expect("stdout reader");
    let stderr = stderr_reader.join().expect("stderr reader");
    ChildOutput {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
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
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c/tls")
        .join(format!("{name}.c"));
    let text =
        std::fs::read(&source).unwrap_or_else(|e| panic!("reading {}: {e}", source.display()));
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    flags.hash(&mut hasher);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tls-c");
    std::fs::create_dir_all(&dir).expect("creating the C output directory");
    let output = dir.join(format!("{output_stem}-{:016x}.so", hasher.finish()));
    if output.exists() {
        return output;
    }
    let temporary = dir.join(format!(
        ".{output_stem}-{}-{:x}.tmp",
        std::process::id(),
        hasher.finish()
    ));
    let result = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".to_owned()))
        .args(["-shared", "-fPIC", "-O1", "-Wall", "-Wextra", "-Werror"])
        .args(flags)
        .arg("-o")
        .arg(&temporary)
        .arg(&source)
        .output()
        .expect("running the C compiler (cc)");
    assert!(
        result.status.success(),
        "compiling {} failed:\n{}",
        source.display(),
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::rename(&temporary, &output).expect("moving the compiled library into place");
    output
}

/// A shared library opened with `dlopen`. It is never closed: functions launched by the
/// tests may still point into it.
pub struct Library {
    handle: *mut c_void,
    path: PathBuf,
}

impl Library {
    /// `dlopen`s `path` with `RTLD_NOW | RTLD_LOCAL`.
    pub fn open(path: &Path) -> Library {
        let name = CString::new(path.to_str().expect("UTF-8 path")).expect("no NUL in path");
        // SAFETY: a NUL-terminated path; the libraries under tests/c/tls have no constructors
        // with preconditions.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            // SAFETY: dlerror returns a NUL-terminated message after a failed dlopen.
            let why = unsafe { std::ffi::CStr::from_ptr(libc::dlerror()) };
            panic!("dlopen {}: {}", path.display(), why.to_string_lossy());
        }
        Library {
            handle,
            path: path.to_owned(),
        }
    }

    /// The address of the symbol `name`; panics if it is missing.
    pub fn address(&self, name: &str) -> *mut c_void {
        let symbol = CString::new(name).expect("no NUL in a symbol name");
        // SAFETY: a live handle and a NUL-terminated name.
        let address = unsafe { libc::dlsym(self.handle, symbol.as_ptr()) };
        assert!(
            !address.is_null(),
            "{} has no symbol {name}",
            self.path.display()
        );
        address
    }
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
