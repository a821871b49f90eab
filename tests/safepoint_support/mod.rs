//! Helpers for the safe-point storm tests (`tests/safepoint_*.rs`, issue 4): the storm driver
//! (slices of 20–50 µs, resumed until done), running one function per thread on two threads
//! at once, re-running the test binary as a child process with a hang guard, compiling and
//! loading the C libraries under `tests/c/safepoint/`, and bounded waits that fail with a
//! message instead of hanging.

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
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The environment variable that tells a re-run test binary which child scenario to play.
pub const CHILD_ENV: &str = "INGER_SAFEPOINT_TEST_CHILD";

/// How long anything that should finish "soon" may take before the test calls it a deadlock.
/// A hang guard, not a timing assertion: everything it guards finishes in well under a second
/// when things work, even in a debug build on a loaded two-core machine.
pub const HANG_LIMIT: Duration = Duration::from_secs(30);

/// How long a child process may run before it is killed as hung (its storms take a few
/// seconds in a debug build).
const CHILD_HANG_LIMIT: Duration = Duration::from_secs(120);

/// The most resumes a storm may take before it is called a runaway.
const MAX_RESUMES: u64 = 10_000_000;

/// The slice of the `stop`-th resume of a storm: 20 to 50 µs, varying from one resume to the
/// next so that deadlines land at ever different places.
pub fn slice(stop: u64) -> Duration {
    Duration::from_micros(20 + (stop * 7919) % 31)
}

/// Launches `f` with a storm slice and resumes it with storm slices until it completes,
/// calling `between(stop)` each time it comes back paused (before resuming it). Returns the
/// value and the number of stops. Panics on an inger error or a runaway.
pub fn storm<'a, T>(f: impl FnOnce() -> T + Send + 'a, between: impl FnMut(u64)) -> (T, u64) {
    let linger = inger::launch(f, slice(0)).expect("launch");
    drive(linger, between)
}

/// Resumes `linger` with storm slices until it completes; see [`storm`].
pub fn drive<T>(mut linger: inger::Linger<'_, T>, mut between: impl FnMut(u64)) -> (T, u64) {
    let mut stops = 0;
    while linger.is_continuation() {
        assert!(stops < MAX_RESUMES, "runaway: {stops} resumes");
        between(stops);
        stops += 1;
        inger::resume(&mut linger, slice(stops)).expect("resume");
    }
    (linger.completion().expect("completed"), stops)
}

/// Runs `body(0)` and `body(1)` on two threads at once (scoped, so they may borrow) and
/// returns both results. A panic on either thread fails the caller with that panic.
pub fn on_two_threads<R: Send>(body: impl Fn(usize) -> R + Sync) -> [R; 2] {
    std::thread::scope(|scope| {
        let body = &body;
        let threads = [0, 1].map(|id| {
            std::thread::Builder::new()
                .name(format!("storm-{id}"))
                .spawn_scoped(scope, move || body(id))
                .expect("spawning a storm thread")
        });
        threads.map(|thread| match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    })
}

/// Waits for a message on `receiver` for at most [`HANG_LIMIT`]; panics with `what` (which
/// should say what a hang here means) if none comes.
pub fn recv_or_deadlock<T>(receiver: &Receiver<T>, what: &str) -> T {
    match receiver.recv_timeout(HANG_LIMIT) {
        Ok(value) => value,
        Err(RecvTimeoutError::Timeout) => {
            panic!("no answer after {HANG_LIMIT:?}: {what}")
        }
        Err(RecvTimeoutError::Disconnected) => {
            panic!("the helper thread died (see its panic above): {what}")
        }
    }
}

/// A deterministic CPU-bound workload touching no library: `rounds` steps of xorshift from
/// `seed`.
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
    /// Describes the child's exit for assertion messages (output cut to its last 4 KiB).
    pub fn describe(&self) -> String {
        fn tail(text: &str) -> &str {
            let mut start = text.len().saturating_sub(4096);
            while !text.is_char_boundary(start) {
                start += 1;
            }
            &text[start..]
        }
        format!(
            "status {:?}\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
            self.status,
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }

    /// Asserts that the child exited successfully.
    pub fn assert_success(&self) {
        assert!(
            self.status.success(),
            "the child failed: {}",
            self.describe()
        );
    }

    /// The text written between the lines `begin` and `end` (exclusive; the marker lines
    /// themselves may carry the test harness's text before them).
    pub fn between(&self, begin: &str, end: &str) -> &str {
        let start =
            self.stdout.find(begin).unwrap_or_else(|| {
                panic!("no {begin:?} in the child's stdout: {}", self.describe())
            }) + begin.len();
        let length = self.stdout[start..]
            .find(end)
            .unwrap_or_else(|| panic!("no {end:?} in the child's stdout: {}", self.describe()));
        &self.stdout[start..start + length]
    }

    /// The value of `key=<u64>` on the child's line starting with (or containing) `tag`.
    pub fn counter(&self, tag: &str, key: &str) -> u64 {
        let line = self
            .stdout
            .lines()
            .find(|line| line.contains(tag))
            .unwrap_or_else(|| panic!("no {tag:?} line from the child: {}", self.describe()));
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {key}= on {line:?}"))
    }
}

/// Prints inger's counters on one line tagged `tag`, for a parent to read with
/// [`ChildOutput::counter`].
pub fn print_stats(tag: &str, before: inger::Stats) {
    let now = inger::stats();
    println!(
        "{tag} preemptions={} deferred_std={} deferred_library={} deferred_unknown={} deferred_unwind={} deferred_nopreempt={} retries={} longest_deferral_ns={}",
        now.preemptions - before.preemptions,
        now.deferred_std - before.deferred_std,
        now.deferred_library - before.deferred_library,
        now.deferred_unknown - before.deferred_unknown,
        now.deferred_unwind - before.deferred_unwind,
        now.deferred_nopreempt - before.deferred_nopreempt,
        now.retries - before.retries,
        now.longest_deferral_ns,
    );
}

/// Re-runs this test binary (or `exe`, if given) for the test `test_name` alone, with
/// `CHILD_ENV=mode` and the extra environment `env` (the parent's `INGER_*` variables are
/// removed first), capturing its output. Kills the child and panics if it has not finished
/// after a generous limit.
pub fn run_child(test_name: &str, mode: &str, env: &[(&str, &str)]) -> ChildOutput {
    let exe = std::env::current_exe().expect("the test binary's own path");
    run_child_of(&exe, test_name, mode, env)
}

/// As [`run_child`], running the executable `exe` (a copy of this test binary).
pub fn run_child_of(exe: &Path, test_name: &str, mode: &str, env: &[(&str, &str)]) -> ChildOutput {
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
    let readers = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .map(|pipe| {
        let mut pipe = pipe.expect("piped output");
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            break status;
        }
        if started.elapsed() > CHILD_HANG_LIMIT {
            let _ = child.kill();
            let status = child.wait().expect("reaping the killed child");
            let [stdout, stderr] = readers.map(|reader| reader.join().unwrap_or_default());
            let output = ChildOutput {
                status,
                stdout,
                stderr,
            };
            panic!(
                "child {mode:?} hung (deadlock?) and was killed after {CHILD_HANG_LIMIT:?}: {}",
                output.describe()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let [stdout, stderr] = readers.map(|reader| reader.join().expect("output reader"));
    ChildOutput {
        status,
        stdout,
        stderr,
    }
}

/// Compiles `tests/c/safepoint/<name>.c` into a shared library named
/// `<output_stem>-<hash>.so` and returns its path. The name depends on the source, so
/// concurrent test processes never overwrite a library someone has loaded; each compiles to
/// a private temporary file and renames it into place. Distinct stems give distinct modules.
pub fn compile_c(name: &str, output_stem: &str) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c/safepoint")
        .join(format!("{name}.c"));
    let text =
        std::fs::read(&source).unwrap_or_else(|e| panic!("reading {}: {e}", source.display()));
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("safepoint-c");
    std::fs::create_dir_all(&dir).expect("creating the C output directory");
    let output = dir.join(format!("{output_stem}-{:016x}.so", hasher.finish()));
    if output.exists() {
        return output;
    }
    let temporary = dir.join(format!(
        ".{output_stem}-{}-{:?}.tmp",
        std::process::id(),
        std::thread::current().id()
    ));
    let result = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".to_owned()))
        .args([
            "-shared", "-fPIC", "-O1", "-Wall", "-Wextra", "-Werror", "-o",
        ])
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

/// A shared library opened with `dlopen`, never closed (functions may still point into it).
pub struct Library {
    handle: *mut c_void,
    path: PathBuf,
}

// The handle is only used for dlsym, which is thread-safe.
// SAFETY: a dlopen handle may be used from any thread.
unsafe impl Send for Library {}
// SAFETY: as above; dlsym takes the loader's own lock.
unsafe impl Sync for Library {}

impl Library {
    /// `dlopen`s `path` with `RTLD_NOW | RTLD_LOCAL`.
    pub fn open(path: &Path) -> Library {
        let name = CString::new(path.to_str().expect("UTF-8 path")).expect("no NUL in path");
        // SAFETY: a NUL-terminated path; the libraries under tests/c/safepoint have no
        // constructors.
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

    /// The library's file name (what `inger::mark_non_preemptible` matches against).
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned()
    }
}

/// `long sp_busy_spin(volatile int *inside, long rounds)` of `tests/c/safepoint/busy.c`.
pub type BusySpin = unsafe extern "C" fn(*mut i32, i64) -> i64;

/// Compiles (once) and loads a copy of `busy.c` named `<stem>-<hash>.so`, returning the
/// library and its `sp_busy_spin`.
pub fn load_busy(stem: &str) -> (Library, BusySpin) {
    let library = Library::open(&compile_c("busy", stem));
    let address = library.address("sp_busy_spin");
    // SAFETY: `sp_busy_spin` is defined in busy.c with exactly the signature of `BusySpin`.
    let spin = unsafe { core::mem::transmute::<*mut c_void, BusySpin>(address) };
    (library, spin)
}

/// The same computation as `sp_busy_spin` in `busy.c`, for comparing results.
pub fn busy_spin_in_rust(rounds: i64) -> i64 {
    let mut x = (rounds as u64) | 1;
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x as i64
}
