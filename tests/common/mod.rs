//! Helpers shared by the test support modules (`tests/tls_support`, `tests/safepoint_support`):
//! re-running the test binary as a child process with a hang guard, compiling the small C
//! libraries under `tests/c/<dir>/` with the system C compiler, and loading them with `dlopen`.

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
use std::time::{Duration, Instant};

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
    /// Describes the child's exit for assertion messages (output cut to its last 16 KiB).
    pub fn describe(&self) -> String {
        fn tail(text: &str) -> &str {
            let mut start = text.len().saturating_sub(16 * 1024);
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

/// Runs the executable `exe` (this test binary or a copy) for the test `test_name` alone, with
/// `child_env=mode` and the extra environment `env` (the parent's `INGER_*` variables are
/// removed first), capturing its output. Kills the child and panics if it has not finished
/// after `hang_limit` (a hang guard, not a timing assertion).
pub fn run_child(
    exe: &Path,
    child_env: &str,
    hang_limit: Duration,
    test_name: &str,
    mode: &str,
    env: &[(&str, &str)],
) -> ChildOutput {
    let mut command = Command::new(exe);
    command.args([test_name, "--exact", "--nocapture", "--test-threads=1"]);
    for (key, _) in std::env::vars() {
        if key.starts_with("INGER_") {
            command.env_remove(key);
        }
    }
    command.env(child_env, mode);
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
        if started.elapsed() > hang_limit {
            let _ = child.kill();
            let status = child.wait().expect("reaping the killed child");
            let [stdout, stderr] = readers.map(|reader| reader.join().unwrap_or_default());
            let output = ChildOutput {
                status,
                stdout,
                stderr,
            };
            panic!(
                "child {mode:?} hung (deadlock?) and was killed after {hang_limit:?}: {}",
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

/// Compiles `tests/c/<dir>/<name>.c` into a shared library named `<output_stem>-<hash>.so`
/// with the system C compiler and returns its path. `flags` are added to
/// `-shared -fPIC -O1 -Wall -Wextra -Werror`. The name depends on the source and the flags, so
/// concurrent test processes never overwrite a library someone has loaded with a different
/// one; each compiles to a private temporary file and renames it into place (atomic on the
/// same file system). Distinct stems give distinct modules when loaded.
pub fn compile_c(dir: &str, name: &str, output_stem: &str, flags: &[&str]) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(dir)
        .join(format!("{name}.c"));
    let text =
        std::fs::read(&source).unwrap_or_else(|e| panic!("reading {}: {e}", source.display()));
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    flags.hash(&mut hasher);
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{dir}-c"));
    std::fs::create_dir_all(&out_dir).expect("creating the C output directory");
    let output = out_dir.join(format!("{output_stem}-{:016x}.so", hasher.finish()));
    if output.exists() {
        return output;
    }
    let temporary = out_dir.join(format!(
        ".{output_stem}-{}-{:?}-{:x}.tmp",
        std::process::id(),
        std::thread::current().id(),
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

/// A shared library opened with `dlopen`, never closed (functions launched by the tests may
/// still point into it).
pub struct Library {
    handle: *mut c_void,
    path: PathBuf,
}

// SAFETY: a dlopen handle may be used from any thread (it is only passed to dlsym).
unsafe impl Send for Library {}
// SAFETY: as above; dlsym takes the loader's own lock.
unsafe impl Sync for Library {}

impl Library {
    /// `dlopen`s `path` with `RTLD_NOW | RTLD_LOCAL`.
    pub fn open(path: &Path) -> Library {
        let name = CString::new(path.to_str().expect("UTF-8 path")).expect("no NUL in path");
        // SAFETY: a NUL-terminated path; the libraries under tests/c have no constructors
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

    /// The library's file name (what `inger::mark_non_preemptible` matches against).
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned()
    }
}
