//! The small C libraries under `tests/c/`: compiled with the system C compiler into shared
//! libraries ([`compile_c`], the one way these tests compile C), loaded with `dlopen`
//! ([`Library`]) or through `LD_PRELOAD` ([`global_address`]), and their functions called
//! through typed pointers ([`as_fn`]).

use std::ffi::{CString, c_void};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Compiles `tests/c/<source>` (e.g. `"tls/thread_vars.c"`) into a shared library named
/// `<output_stem>-<hash>.so` with the system C compiler (`$CC`, or `cc`) and returns its path.
/// `flags` are added to `-shared -fPIC -O1 -Wall -Wextra -Werror`.
///
/// The name depends on the source text and the flags, so concurrent test processes never
/// overwrite a library someone has loaded with a different one; each compiles to a private
/// temporary file and renames it into place (atomic on the same file system), and a library
/// already there is reused. Distinct stems give distinct modules when loaded (several copies
/// of one source), and the stem is what `inger::mark_non_preemptible` and
/// `INGER_NONPREEMPTIBLE` match against.
pub fn compile_c(source: &str, output_stem: &str, flags: &[&str]) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(source);
    let text =
        std::fs::read(&source).unwrap_or_else(|e| panic!("reading {}: {e}", source.display()));
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    flags.hash(&mut hasher);
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c-libraries");
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

/// Compiles `tests/c/<source>` (or the absolute path `source`) like [`compile_c`] into a
/// library that links the shared library `against` (a `DT_NEEDED` entry, found at run time
/// through an rpath to its directory), as a program's library that uses it would.
pub fn compile_c_linked(source: &str, output_stem: &str, against: &Path) -> PathBuf {
    let directory = against
        .parent()
        .expect("a directory")
        .to_str()
        .expect("UTF-8");
    let file = against
        .file_name()
        .expect("a file")
        .to_str()
        .expect("UTF-8");
    compile_c(
        source,
        output_stem,
        &[
            "-Wl,--no-as-needed",
            &format!("-L{directory}"),
            &format!("-l:{file}"),
            &format!("-Wl,-rpath,{directory}"),
        ],
    )
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

/// `long sp_busy_spin(volatile int *inside, long rounds)` of `tests/c/safepoint/busy.c`.
pub type BusySpin = unsafe extern "C" fn(*mut i32, i64) -> i64;

/// Compiles (once) and loads a copy of `tests/c/safepoint/busy.c` named `<stem>-<hash>.so`,
/// returning the library and its `sp_busy_spin` (computing [`super::busy_spin_in_rust`]).
pub fn load_busy(stem: &str) -> (Library, BusySpin) {
    let library = Library::open(&compile_c("safepoint/busy.c", stem, &[]));
    // SAFETY: `sp_busy_spin` is defined in busy.c with exactly the signature of `BusySpin`.
    let spin = unsafe { as_fn::<BusySpin>(library.address("sp_busy_spin")) };
    (library, spin)
}
