//! The `exec` family, interposed so that `--stats` knows when a program under inger replaces
//! itself: `execve`, `execv`, `execvp`, `execvpe`, `fexecve`, `execveat`, and the variadic
//! `execl`, `execle` and `execlp` (whose arguments a naked entry point gathers into an array,
//! as glibc's own do, before the same path is taken).
//!
//! Before handing over to glibc, each works out what the kernel will run (the `target`
//! module: the file found in `PATH`, the interpreter of a script, whether the loader will
//! preload inger into it) and tells the report:
//! - without `--inherit`, the process that ran `main` prints that the new program runs
//!   without inger and its report up to this point (see `report`);
//! - with `--inherit`, the process's ledger slot passes to the new program if it will run
//!   under inger (its environment still preloads the library and names the run), else the
//!   slot ends as having left inger.
//!
//! If the exec fails, that is undone and the call returns as glibc's did, `errno` included.
//! Without `--stats` nothing happens at all. These may run in a `vfork` child (which shares
//! its parent's memory) or in a signal handler: nothing here allocates, and only the process
//! that owns the report or the slot writes any state.

use core::ffi::{CStr, c_char, c_int};

use crate::target::{self, FixedPath};
use crate::{accounting, protocol, real, report};

/// What the caller asked to run.
pub(crate) enum Target<'a> {
    /// A path (`execve`, `execv`, `execl`, `execle`).
    Path(&'a CStr),
    /// A name looked up in `PATH` (`execvp`, `execvpe`, `execlp`).
    Search(&'a CStr),
    /// An open file (`fexecve`).
    Descriptor(c_int),
    /// A path relative to a directory descriptor, with `execveat`'s flags.
    At(c_int, &'a CStr, c_int),
}

/// The environment a program gets: `envp`, or this process's own.
pub(crate) fn environment_or_own(envp: *const *const c_char) -> *const *const c_char {
    if envp.is_null() {
        // SAFETY: reading the process's environment pointer (not modifying it).
        unsafe { libc::environ.cast_const().cast() }
    } else {
        envp
    }
}

/// The value of `name` in the environment block `envp`.
///
/// # Safety
/// `envp` must be a null-terminated array of NUL-terminated strings.
unsafe fn lookup<'a>(envp: *const *const c_char, name: &str) -> Option<&'a [u8]> {
    let mut at = envp;
    loop {
        // SAFETY: per the contract, each element up to the null one is readable.
        let entry = unsafe { *at };
        if entry.is_null() {
            return None;
        }
        // SAFETY: per the contract, a NUL-terminated string.
        let bytes = unsafe { CStr::from_ptr(entry) }.to_bytes();
        if let Some(value) = bytes
            .strip_prefix(name.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"="))
        {
            return Some(value);
        }
        // SAFETY: not past the terminating null element.
        at = unsafe { at.add(1) };
    }
}

/// The file `target` names, as the kernel will open it.
fn resolve(target: &Target<'_>) -> Option<FixedPath> {
    match *target {
        Target::Path(path) => FixedPath::from_bytes(path.to_bytes()),
        Target::Search(name) => {
            // glibc's execvp searches the caller's PATH, whatever environment it passes on.
            // SAFETY: the process's environment is a valid block.
            let search = unsafe { lookup(environment_or_own(core::ptr::null()), "PATH") }
                .unwrap_or(target::DEFAULT_PATH);
            target::find_in_path(name.to_bytes(), search)
        }
        Target::Descriptor(fd) => descriptor_path(fd),
        Target::At(dirfd, path, flags) => {
            let bytes = path.to_bytes();
            if bytes.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
                descriptor_path(dirfd)
            } else if bytes.starts_with(b"/") || dirfd == libc::AT_FDCWD {
                FixedPath::from_bytes(bytes)
            } else {
                let mut full = descriptor_path(dirfd)?;
                full.push(b"/")?;
                full.push(bytes)?;
                Some(full)
            }
        }
    }
}

/// The path of the file open on `fd` (from `/proc/self/fd`).
fn descriptor_path(fd: c_int) -> Option<FixedPath> {
    let mut link = FixedPath::from_bytes(b"/proc/self/fd/")?;
    let mut digits = [0u8; 12];
    let mut at = digits.len();
    let mut value = u32::try_from(fd).ok()?;
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    link.push(&digits[at..])?;
    let mut buffer = [0u8; target::PATH_MAX];
    // SAFETY: `link` is NUL-terminated; `buffer` is writable for its length.
    let length = unsafe {
        libc::readlink(
            link.as_c_str().as_ptr(),
            buffer.as_mut_ptr().cast(),
            buffer.len() - 1,
        )
    };
    FixedPath::from_bytes(&buffer[..usize::try_from(length).ok()?])
}

/// Whether the environment `envp` keeps the new program in this run: it still preloads this
/// library and names the same ledger.
///
/// # Safety
/// `envp` as for [`lookup`].
pub(crate) unsafe fn keeps_inger(envp: *const *const c_char) -> bool {
    let Some(library) = crate::own_library_path() else {
        return false;
    };
    // SAFETY: per the contract.
    let (preload, inherit, ledger) = unsafe {
        (
            lookup(envp, "LD_PRELOAD"),
            lookup(envp, protocol::INHERIT),
            lookup(envp, protocol::LEDGER),
        )
    };
    let preloaded = preload.is_some_and(|list| {
        list.split(|&b| b == b':' || b == b' ')
            .any(|entry| entry == library.as_bytes())
    });
    let own_ledger = crate::settings_ledger_path();
    preloaded && inherit == Some(b"1") && ledger.is_some() && ledger == own_ledger
}

/// Whether exec of `path` with the environment `envp` runs a program under inger in this
/// run: the loader will preload the library into it and the environment keeps it.
///
/// # Safety
/// `envp` as for [`lookup`].
pub(crate) unsafe fn stays_under_inger(path: &FixedPath, envp: *const *const c_char) -> bool {
    target::inspect(path.as_bytes()).is_ok_and(|inspection| inspection.verdict.is_ok())
        // SAFETY: per the contract.
        && unsafe { keeps_inger(envp) }
}

/// The file a `posix_spawn` (`search`: `posix_spawnp`) of `name` runs.
pub(crate) fn spawn_target(name: &CStr, search: bool) -> Option<FixedPath> {
    resolve(&if search {
        Target::Search(name)
    } else {
        Target::Path(name)
    })
}

/// What to undo after a failed exec.
enum Undo {
    Nothing,
    Ledger(accounting::Undo),
}

/// Tells the report about the coming exec (see the module docs).
///
/// # Safety
/// `envp` as for [`lookup`] (the environment the new program gets).
unsafe fn before(target: Target<'_>, envp: *const *const c_char) -> Undo {
    let ledger = accounting::in_ledger();
    if !ledger && !report::is_reporting_process() {
        return Undo::Nothing;
    }
    let Some(path) = resolve(&target) else {
        return Undo::Nothing;
    };
    // A file that does not exist cannot be exec'd (shells try every PATH entry in turn):
    // nothing to announce.
    let Ok(inspection) = target::inspect(path.as_bytes()) else {
        return Undo::Nothing;
    };
    let inspection = Some(inspection);
    if ledger {
        // SAFETY: per the contract.
        let stays =
            inspection.as_ref().is_some_and(|i| i.verdict.is_ok()) && unsafe { keeps_inger(envp) };
        Undo::Ledger(accounting::before_exec(stays, path.as_bytes()))
    } else if report::info().is_some_and(|info| !info.inherit) {
        let interpreter = inspection
            .as_ref()
            .filter(|i| i.script)
            .map(|i| i.runs.as_bytes());
        report::before_exec_without_inger(path.as_bytes(), interpreter);
        Undo::Nothing
    } else {
        Undo::Nothing
    }
}

/// Undoes [`before`] after a failed exec, keeping `errno`.
fn failed(undo: Undo) {
    if let Undo::Ledger(undo) = undo {
        // SAFETY: __errno_location returns the calling thread's errno slot.
        let errno = unsafe { *libc::__errno_location() };
        accounting::exec_failed(undo);
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = errno };
    }
}

type Strings = *const *const c_char;

/// `execve`.
///
/// # Safety
/// As glibc's `execve`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execve(path: *const c_char, argv: Strings, envp: Strings) -> c_int {
    // SAFETY: per the contract, `path` is a C string and `envp` an environment block.
    let undo = unsafe { before(Target::Path(CStr::from_ptr(path)), environment_or_own(envp)) };
    // SAFETY: forwarding the caller's own arguments.
    let result = unsafe { real::execve()(path, argv, envp) };
    failed(undo);
    result
}

/// `execv`.
///
/// # Safety
/// As glibc's `execv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execv(path: *const c_char, argv: Strings) -> c_int {
    // SAFETY: as in `execve`, with the process's environment.
    let undo = unsafe {
        before(
            Target::Path(CStr::from_ptr(path)),
            environment_or_own(core::ptr::null()),
        )
    };
    // SAFETY: forwarding the caller's own arguments.
    let result = unsafe { real::execv()(path, argv) };
    failed(undo);
    result
}

/// `execvp`.
///
/// # Safety
/// As glibc's `execvp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: Strings) -> c_int {
    // SAFETY: as in `execve`.
    let undo = unsafe {
        before(
            Target::Search(CStr::from_ptr(file)),
            environment_or_own(core::ptr::null()),
        )
    };
    // SAFETY: forwarding the caller's own arguments.
    let result = unsafe { real::execvp()(file, argv) };
    failed(undo);
    result
}

/// `execvpe`.
///
/// # Safety
/// As glibc's `execvpe`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvpe(file: *const c_char, argv: Strings, envp: Strings) -> c_int {
    // SAFETY: as in `execve`.
    let undo = unsafe {
        before(
            Target::Search(CStr::from_ptr(file)),
            environment_or_own(envp),
        )
    };
    // SAFETY: forwarding the caller's own arguments.
    let result = unsafe { real::execvpe()(file, argv, envp) };
    failed(undo);
    result
}

/// `fexecve`.
///
/// # Safety
/// As glibc's `fexecve`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fexecve(fd: c_int, argv: Strings, envp: Strings) -> c_int {
    // SAFETY: as in `execve`.
    let undo = unsafe { before(Target::Descriptor(fd), environment_or_own(envp)) };
    // SAFETY: forwarding the caller's own arguments.
    let result = unsafe { real::fexecve()(fd, argv, envp) };
    failed(undo);
    result
}

/// `execveat`.
///
/// # Safety
/// As glibc's `execveat`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execveat(
    dirfd: c_int,
    path: *const c_char,
    argv: Strings,
    envp: Strings,
    flags: c_int,
) -> c_int {
    // SAFETY: as in `execve`.
    let undo = unsafe {
        before(
            Target::At(dirfd, CStr::from_ptr(path), flags),
            environment_or_own(envp),
        )
    };
    // SAFETY: forwarding the caller's own arguments.
    let result = unsafe { real::execveat()(dirfd, path, argv, envp, flags) };
    failed(undo);
    result
}

/// Which variadic function was called.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C)]
enum Variadic {
    List = 0,
    ListEnvironment = 1,
    ListSearch = 2,
}

/// Argument pointers kept on the stack; longer lists go to an anonymous mapping.
const ON_STACK: usize = 256;

/// The body of `execl`, `execle` and `execlp`: the first five list elements arrive in
/// registers (`a1`..`a5`), the rest on the caller's stack (`stack`); the list ends with a
/// null pointer, followed for `execle` by the environment.
///
/// # Safety
/// Called only by the naked entry points below, with a well-formed argument list.
#[allow(
    clippy::too_many_arguments,
    reason = "the registers of a C variadic call"
)]
unsafe extern "C" fn exec_list(
    kind: Variadic,
    path: *const c_char,
    a1: *const c_char,
    a2: *const c_char,
    a3: *const c_char,
    a4: *const c_char,
    stack: *const *const c_char,
) -> c_int {
    let registers = [a1, a2, a3, a4];
    let element = |index: usize| -> *const c_char {
        match registers.get(index) {
            Some(&value) => value,
            // SAFETY: the list is null-terminated (execle's environment follows the null);
            // its elements past the registers are the caller's stack arguments, and nothing
            // reads past the terminator (or past the environment for execle).
            None => unsafe { *stack.add(index - registers.len()) },
        }
    };
    let mut count = 0;
    while !element(count).is_null() {
        count += 1;
    }
    let envp = if kind == Variadic::ListEnvironment {
        element(count + 1).cast::<*const c_char>()
    } else {
        core::ptr::null()
    };
    let mut on_stack = [core::ptr::null::<c_char>(); ON_STACK];
    let (argv, mapped) = if count < ON_STACK {
        (on_stack.as_mut_ptr(), 0)
    } else {
        let bytes = (count + 1) * size_of::<*const c_char>();
        // SAFETY: an anonymous private mapping (async-signal-safe, unlike malloc).
        let base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            // SAFETY: the calling thread's errno slot.
            unsafe { *libc::__errno_location() = libc::E2BIG };
            return -1;
        }
        (base.cast::<*const c_char>(), bytes)
    };
    for index in 0..=count {
        // SAFETY: `argv` has room for count + 1 pointers; the last one is the null.
        unsafe { *argv.add(index) = element(index) };
    }
    let argv = argv.cast_const();
    // SAFETY: an argument vector and environment as the non-variadic functions take them.
    let result = unsafe {
        match kind {
            Variadic::List => execv(path, argv),
            Variadic::ListEnvironment => execve(path, argv, envp),
            Variadic::ListSearch => execvp(path, argv),
        }
    };
    if mapped != 0 {
        // SAFETY: unmapping our own mapping; errno kept for the caller.
        unsafe {
            let errno = *libc::__errno_location();
            libc::munmap(argv.cast_mut().cast(), mapped);
            *libc::__errno_location() = errno;
        }
    }
    result
}

/// The entry of the variadic functions: the caller's registers stay where they are but for
/// one shift (the kind goes first), and the address of its stack arguments becomes the last
/// argument.
///
/// ```text
///   execl(path, a1, a2, a3, a4, a5, [stack: a6 ...])
///          rdi  rsi rdx rcx r8  r9
///   exec_list(kind, path, a1, a2, a3, a4, stack) with stack -> a5, a6, ...
///             rdi   rsi   rdx rcx r8  r9  [rsp]
/// ```
macro_rules! variadic_entry {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// As glibc's function of the same name.
        #[unsafe(naked)]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name() {
            core::arch::naked_asm!(
                // On entry rsp -> [return address][a6]...; rsp is 8 mod 16.
                "pop r11",          // the return address
                "push r9",          // a5, into its slot, just below a6: a5, a6, ... in a row
                "mov rax, rsp",     // -> a5
                "push r11",         // the return address below them again (rsp: 0 mod 16)
                "sub rsp, 8",       // padding, so that rsp is 0 mod 16 at the call
                "push rax",         // the 7th argument of exec_list
                "mov r9, r8",       // a4
                "mov r8, rcx",      // a3
                "mov rcx, rdx",     // a2
                "mov rdx, rsi",     // a1
                "mov rsi, rdi",     // path
                "mov edi, {kind}",  // kind
                "call {body}",
                "add rsp, 16",      // the 7th argument and the padding
                "pop r11",          // the return address
                "add rsp, 8",       // a5
                "push r11",         // the return address back in its slot
                "ret",
                kind = const $kind as u32,
                body = sym exec_list,
            )
        }
    };
}

variadic_entry!(
    /// `execl`.
    execl,
    Variadic::List
);
variadic_entry!(
    /// `execle`.
    execle,
    Variadic::ListEnvironment
);
variadic_entry!(
    /// `execlp`.
    execlp,
    Variadic::ListSearch
);
