//! Shared by the integration tests: build `libinger.so`/`libinger.a` with cargo, compile C
//! programs against them with the system C compiler, and run those programs.
//!
//! The libraries are built by running `cargo build --release -p inger-c` into this test's
//! own target directory (the parent of `CARGO_TARGET_TMPDIR`), so the tests work from a
//! clean clone under `cargo test` and `cargo nextest run` alike; concurrent test processes
//! simply wait for cargo's lock, and all but the first find nothing to do.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of these helpers"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

// The root crate's tests and these run processes the same way: one copy of that code.
#[path = "../../../../tests/common/process.rs"]
mod process;

use process::run_with_hang_guard;

/// How long a C test program may run before it is killed and the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// The libraries the C API crate produces.
pub(crate) struct Libraries {
    /// Holds `libinger.so` and `libinger.a`.
    pub(crate) dir: PathBuf,
}

/// The checkout's root directory.
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// `include/` with `libinger.h`.
pub(crate) fn include_dir() -> PathBuf {
    workspace_root().join("include")
}

/// The C sources of the tests.
pub(crate) fn c_sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c")
}

/// The cargo target directory the tests were built in.
pub(crate) fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_path_buf()
}

/// A fresh scratch directory for one test.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("inger-c")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Builds the libraries (once per test process) and returns where they are.
pub(crate) fn libraries() -> &'static Libraries {
    static BUILT: OnceLock<Libraries> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let output = Command::new(cargo)
            .args([
                "build",
                "--release",
                "--package",
                "inger-c",
                "--manifest-path",
            ])
            .arg(workspace_root().join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir())
            .stdin(Stdio::null())
            .output()
            .expect("run cargo");
        assert!(
            output.status.success(),
            "cargo build --release -p inger-c failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let dir = target_dir().join("release");
        for file in ["libinger.so", "libinger.a"] {
            assert!(
                dir.join(file).is_file(),
                "{file} missing from {}",
                dir.display()
            );
        }
        Libraries { dir }
    })
}

/// How a test program links the library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Linking {
    /// Against `libinger.so`, found at run time through an rpath.
    Dynamic,
    /// With `libinger.a` copied into the program.
    Static,
}

impl Linking {
    /// Both, for tests that run each program twice.
    pub(crate) const BOTH: [Linking; 2] = [Linking::Dynamic, Linking::Static];

    fn name(self) -> &'static str {
        match self {
            Linking::Dynamic => "dynamic",
            Linking::Static => "static",
        }
    }
}

/// The system libraries a program linking `libinger.a` needs (what rustc reports with
/// `--print native-static-libs`; also `Libs.private` in `inger.pc`).
pub(crate) const STATIC_DEPENDENCIES: &[&str] = &[
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];

/// The C compiler: `$CC` or `cc`.
pub(crate) fn c_compiler() -> String {
    std::env::var("CC").unwrap_or_else(|_| String::from("cc"))
}

/// A compiled test program; its scratch directory is removed when it is dropped.
pub(crate) struct Program {
    path: PathBuf,
}

impl Program {
    /// The executable.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Compiles `source` (a path, or a file name in `tests/c/`) into a program linked as
/// `linking`, with `extra` compiler flags.
pub(crate) fn compile(source: impl AsRef<Path>, linking: Linking, extra: &[&str]) -> Program {
    let libraries = libraries();
    let source = c_sources().join(source.as_ref());
    let stem = source
        .file_stem()
        .expect("source name")
        .to_string_lossy()
        .into_owned();
    // Unique per compilation: tests running at once may build the same source.
    static COMPILED: AtomicUsize = AtomicUsize::new(0);
    let serial = COMPILED.fetch_add(1, Relaxed);
    let program = Program {
        path: scratch(&format!(
            "{stem}-{}-{}-{serial}",
            linking.name(),
            std::process::id()
        ))
        .join(&stem),
    };
    let mut command = Command::new(c_compiler());
    command
        .args([
            "-std=c11", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-pthread",
        ])
        .args(extra)
        .arg("-I")
        .arg(include_dir())
        .arg("-I")
        .arg(c_sources())
        .arg(&source)
        .arg("-o")
        .arg(program.path());
    match linking {
        Linking::Dynamic => {
            command
                .arg("-L")
                .arg(&libraries.dir)
                .arg(format!("-Wl,-rpath,{}", libraries.dir.display()))
                .arg("-linger");
        }
        Linking::Static => {
            command
                .arg(libraries.dir.join("libinger.a"))
                .args(STATIC_DEPENDENCIES);
        }
    }
    let output = command.output().expect("run the C compiler");
    assert!(
        output.status.success(),
        "compiling {} ({linking:?}) failed:\n{}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    program
}

/// Runs `program` with `args`, killing it after [`RUN_LIMIT`].
pub(crate) fn run(program: &Path, args: &[&str]) -> Output {
    run_command(Command::new(program).args(args))
}

/// Runs a prepared command with the same time limit, capturing its output. The program finds
/// the freshly built library through its rpath: cargo's `LD_LIBRARY_PATH` (which names
/// `target/debug`, where an older `libinger.so` may lie) is removed unless the command sets
/// its own, since it would win over the rpath (`DT_RUNPATH`).
pub(crate) fn run_command(command: &mut Command) -> Output {
    if !command
        .get_envs()
        .any(|(name, _)| name == "LD_LIBRARY_PATH")
    {
        command.env_remove("LD_LIBRARY_PATH");
    }
    match run_with_hang_guard(command, RUN_LIMIT) {
        Ok(output) => output,
        Err(output) => panic!(
            "{command:?} did not finish within {RUN_LIMIT:?}; its stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// Asserts that a program exited with status 0 and printed `expected` on stdout; returns
/// its stdout.
pub(crate) fn assert_success(output: &Output, expected: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "program failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains(expected),
        "expected {expected:?} in stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

/// Compiles `source` both ways, runs each, and checks for `expected` on stdout.
pub(crate) fn compile_and_run_both(source: &str, extra: &[&str], expected: &str) {
    for linking in Linking::BOTH {
        let program = compile(source, linking, extra);
        let output = run(program.path(), &[]);
        let stdout = assert_success(&output, expected);
        eprintln!(
            "{source} ({linking:?}): {}",
            stdout.lines().last().unwrap_or_default()
        );
    }
}
