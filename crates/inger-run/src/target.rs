//! What `exec` of a file really runs, and whether the dynamic loader will preload a library
//! into it, worked out without allocating.
//!
//! Compiled into both artifacts (`#[path]` module): the command checks the named program
//! before it execs it, and the preload library checks what a program under inger execs, from
//! inside its `exec` interposers, where allocating is not allowed (`exec` may be called from a
//! signal handler, and its caller may be a `vfork` child sharing its parent's heap). So every
//! buffer here is on the stack and every file is read with plain system calls.
//!
//! The loader ignores `LD_PRELOAD` without a word when there is no loader (a statically linked
//! program, including static PIE: no `PT_INTERP` header), when the program runs in
//! secure-execution mode (set-user-ID, set-group-ID, or file capabilities), or when the
//! library does not fit (not x86-64, or another C library's loader). A script (`#!`) is judged
//! by its interpreter, which is what the kernel runs.

#![allow(
    dead_code,
    reason = "shared by the command and the library; each uses a subset"
)]

use core::ffi::{CStr, c_int};
use core::fmt;

/// Longest path handled (Linux's `PATH_MAX`, terminating NUL included).
pub(crate) const PATH_MAX: usize = 4096;

/// How many `#!` interpreters deep the kernel follows (it allows a handful).
const MAX_INTERPRETER_DEPTH: usize = 4;

/// How much of a file the kernel reads to find a `#!` line (`BINPRM_BUF_SIZE`).
const SHEBANG_BUFFER: usize = 256;

/// A NUL-terminated path in a fixed buffer.
pub(crate) struct FixedPath {
    bytes: [u8; PATH_MAX],
    len: usize,
}

impl FixedPath {
    /// The empty path.
    pub(crate) const fn new() -> FixedPath {
        FixedPath {
            bytes: [0; PATH_MAX],
            len: 0,
        }
    }

    /// A copy of `bytes` (no NUL inside), or `None` if it does not fit or holds a NUL.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<FixedPath> {
        let mut path = FixedPath::new();
        path.push(bytes)?;
        Some(path)
    }

    /// Appends `bytes`; `None` (and no change) if the result would not fit or holds a NUL.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.len.checked_add(bytes.len())?;
        if end >= PATH_MAX || bytes.contains(&0) {
            return None;
        }
        self.bytes[self.len..end].copy_from_slice(bytes);
        self.bytes[end] = 0;
        self.len = end;
        Some(())
    }

    /// The path's bytes, without the NUL.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The path as a C string.
    pub(crate) fn as_c_str(&self) -> &CStr {
        // The buffer always holds a NUL at `len` and none before it.
        CStr::from_bytes_with_nul(&self.bytes[..=self.len]).unwrap_or(c"")
    }

    /// The text after the last slash.
    pub(crate) fn file_name(&self) -> &[u8] {
        let bytes = self.as_bytes();
        match bytes.iter().rposition(|&b| b == b'/') {
            Some(slash) => &bytes[slash + 1..],
            None => bytes,
        }
    }
}

/// What `exec` of a file runs.
pub(crate) struct Inspection {
    /// The file the kernel ends up running: the file itself, or the last interpreter of its
    /// `#!` chain.
    pub(crate) runs: FixedPath,
    /// Whether the file was a `#!` script.
    pub(crate) script: bool,
    /// `Ok` if the loader will preload a library into what runs (or if that cannot be known
    /// before exec, which then decides), else why not.
    pub(crate) verdict: Result<(), Refusal>,
}

/// Why the loader would not preload a library into a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Set-user-ID: secure-execution mode.
    SetUserId,
    /// Set-group-ID: secure-execution mode.
    SetGroupId,
    /// File capabilities: secure-execution mode.
    FileCapabilities,
    /// Not a little-endian x86-64 ELF file.
    NotX86_64,
    /// No program interpreter: the loader never runs.
    StaticallyLinked,
    /// Another C library's loader (its name, up to the first 64 bytes).
    ForeignLoader([u8; 64], usize),
    /// An ELF file whose program header table does not make sense.
    Malformed,
    /// An ELF file shorter than its headers say.
    Truncated,
    /// The file could not be read (errno).
    Unreadable(c_int),
    /// More `#!` levels than the kernel follows.
    TooManyInterpreters,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Refusal::SetUserId => secure_mode(f, "is set-user-ID"),
            Refusal::SetGroupId => secure_mode(f, "is set-group-ID"),
            Refusal::FileCapabilities => secure_mode(f, "has file capabilities"),
            Refusal::NotX86_64 => f.write_str(
                "is not an x86-64 program: the preload library is x86-64 only, and the loader \
                 would silently skip it",
            ),
            Refusal::StaticallyLinked => f.write_str(
                "is statically linked (it has no program interpreter): the dynamic loader never \
                 runs for it, so LD_PRELOAD cannot inject inger into it",
            ),
            Refusal::ForeignLoader(name, len) => write!(
                f,
                "uses the program interpreter {}, not glibc's: the preload library needs glibc",
                Lossy(&name[..len])
            ),
            Refusal::Malformed => f.write_str("has a malformed ELF program header table"),
            Refusal::Truncated => f.write_str("is a truncated or malformed ELF file"),
            Refusal::Unreadable(errno) => write!(f, "cannot be read (errno {errno})"),
            Refusal::TooManyInterpreters => f.write_str("has too many levels of #! interpreters"),
        }
    }
}

fn secure_mode(f: &mut fmt::Formatter<'_>, why: &str) -> fmt::Result {
    write!(
        f,
        "{why}: the dynamic loader ignores LD_PRELOAD for such programs (secure-execution mode), \
         so it would run without inger; run a copy without that bit"
    )
}

/// Bytes shown as text, invalid UTF-8 replaced.
pub(crate) struct Lossy<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.width().is_some() {
            // Padded: only short texts (names) are shown this way.
            if let Ok(text) = core::str::from_utf8(self.0) {
                return f.pad(text);
            }
        }
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{fffd}")?;
            }
        }
        Ok(())
    }
}

/// The file does not exist (or a directory on its way does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotFound;

/// Works out what `exec` of `path` runs and whether the library will be preloaded into it.
pub(crate) fn inspect(path: &[u8]) -> Result<Inspection, NotFound> {
    let mut current = FixedPath::from_bytes(path).ok_or(NotFound)?;
    let mut script = false;
    for _ in 0..=MAX_INTERPRETER_DEPTH {
        let file = match File::open(current.as_c_str()) {
            Ok(file) => file,
            // Not readable (execute-only): the kernel can still run it; nothing to check.
            Err(libc::EACCES) => return Ok(accepted(current, script)),
            Err(_) => return Err(NotFound),
        };
        let mut start = [0u8; SHEBANG_BUFFER];
        let length = match file.read_at(0, &mut start) {
            Ok(length) => length,
            Err(errno) => return Ok(refused(current, script, Refusal::Unreadable(errno))),
        };
        let start = &start[..length];
        if let Some(interpreter) = shebang_interpreter(start) {
            current = FixedPath::from_bytes(interpreter).ok_or(NotFound)?;
            script = true;
            continue;
        }
        if !start.starts_with(b"\x7fELF") {
            // Let exec itself report what it makes of it.
            return Ok(accepted(current, script));
        }
        let verdict = check_credentials(&file, current.as_c_str()).and_then(|()| check_elf(&file));
        return Ok(Inspection {
            runs: current,
            script,
            verdict,
        });
    }
    Ok(refused(
        FixedPath::from_bytes(path).ok_or(NotFound)?,
        script,
        Refusal::TooManyInterpreters,
    ))
}

fn accepted(runs: FixedPath, script: bool) -> Inspection {
    Inspection {
        runs,
        script,
        verdict: Ok(()),
    }
}

fn refused(runs: FixedPath, script: bool, why: Refusal) -> Inspection {
    Inspection {
        runs,
        script,
        verdict: Err(why),
    }
}

/// The interpreter of a `#!` script, as the kernel reads it: the first word after `#!`.
pub(crate) fn shebang_interpreter(start: &[u8]) -> Option<&[u8]> {
    let line = start.strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    line.split(|&b| b == b' ' || b == b'\t')
        .find(|word| !word.is_empty())
}

/// Refuses programs that run in secure-execution mode, where the loader ignores `LD_PRELOAD`.
fn check_credentials(file: &File, path: &CStr) -> Result<(), Refusal> {
    let mode = file.mode().map_err(Refusal::Unreadable)?;
    if mode & libc::S_ISUID != 0 {
        Err(Refusal::SetUserId)
    } else if mode & libc::S_ISGID != 0 {
        Err(Refusal::SetGroupId)
    } else if has_file_capabilities(path) {
        Err(Refusal::FileCapabilities)
    } else {
        Ok(())
    }
}

fn has_file_capabilities(path: &CStr) -> bool {
    // SAFETY: both strings are NUL-terminated; a null buffer of size 0 only asks for the size.
    let size = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"security.capability".as_ptr(),
            core::ptr::null_mut(),
            0,
        )
    };
    size > 0
}

/// Fields of the ELF64 header and program headers (System V gABI), little-endian x86-64.
mod elf {
    pub(super) const CLASS_64: u8 = 2;
    pub(super) const DATA_LITTLE_ENDIAN: u8 = 1;
    pub(super) const MACHINE_X86_64: u16 = 62;
    pub(super) const PT_INTERP: u32 = 3;
    /// Offsets in the file header.
    pub(super) const CLASS: usize = 4;
    pub(super) const DATA: usize = 5;
    pub(super) const MACHINE: usize = 18;
    pub(super) const PHOFF: usize = 32;
    pub(super) const PHENTSIZE: usize = 54;
    pub(super) const PHNUM: usize = 56;
    pub(super) const HEADER_SIZE: usize = 64;
    /// Offsets in a program header.
    pub(super) const P_TYPE: usize = 0;
    pub(super) const P_OFFSET: usize = 8;
    pub(super) const P_FILESZ: usize = 32;
    pub(super) const PROGRAM_HEADER_SIZE: usize = 56;
}

/// Checks that an ELF file is a dynamically linked x86-64 program using glibc's loader.
fn check_elf(file: &File) -> Result<(), Refusal> {
    let mut header = [0u8; elf::HEADER_SIZE];
    file.read_exact_at(0, &mut header)?;
    if header[elf::CLASS] != elf::CLASS_64
        || header[elf::DATA] != elf::DATA_LITTLE_ENDIAN
        || u16_at(&header, elf::MACHINE) != elf::MACHINE_X86_64
    {
        return Err(Refusal::NotX86_64);
    }
    let table = u64_at(&header, elf::PHOFF);
    let entry_size = u16_at(&header, elf::PHENTSIZE);
    let count = u16_at(&header, elf::PHNUM);
    if usize::from(entry_size) < elf::PROGRAM_HEADER_SIZE {
        return Err(Refusal::Malformed);
    }
    let mut program_header = [0u8; elf::PROGRAM_HEADER_SIZE];
    let mut interpreter = None;
    for index in 0..u64::from(count) {
        let offset = table
            .checked_add(index * u64::from(entry_size))
            .ok_or(Refusal::Truncated)?;
        file.read_exact_at(offset, &mut program_header)?;
        if u32_at(&program_header, elf::P_TYPE) == elf::PT_INTERP {
            interpreter = Some((
                u64_at(&program_header, elf::P_OFFSET),
                u64_at(&program_header, elf::P_FILESZ),
            ));
            break;
        }
    }
    let Some((offset, size)) = interpreter else {
        return Err(Refusal::StaticallyLinked);
    };
    let mut name = [0u8; 256];
    let length = usize::try_from(size).unwrap_or(usize::MAX).min(name.len());
    file.read_exact_at(offset, &mut name[..length])?;
    let name = &name[..name[..length]
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(length)];
    let file_name = match name.iter().rposition(|&b| b == b'/') {
        Some(slash) => &name[slash + 1..],
        None => name,
    };
    if !file_name.starts_with(b"ld-linux") {
        let mut shown = [0u8; 64];
        let shown_len = name.len().min(shown.len());
        shown[..shown_len].copy_from_slice(&name[..shown_len]);
        return Err(Refusal::ForeignLoader(shown, shown_len));
    }
    Ok(())
}

fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes([bytes[offset], bytes[offset + 1]])
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(raw)
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(raw)
}

/// Finds `name` the way `execvp` does: as given if it contains a slash, else in the
/// colon-separated `search` list (an empty entry is the current directory), taking the first
/// regular file the caller may execute.
pub(crate) fn find_in_path(name: &[u8], search: &[u8]) -> Option<FixedPath> {
    if name.is_empty() {
        return None;
    }
    if name.contains(&b'/') {
        return FixedPath::from_bytes(name);
    }
    for dir in search.split(|&b| b == b':') {
        let mut candidate = FixedPath::new();
        let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
        if candidate.push(dir).is_none()
            || (!dir.ends_with(b"/") && candidate.push(b"/").is_none())
            || candidate.push(name).is_none()
        {
            continue;
        }
        if is_executable_file(candidate.as_c_str()) {
            return Some(candidate);
        }
    }
    None
}

/// The search list `execvp` uses when `PATH` is unset (glibc's `_CS_PATH`).
pub(crate) const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

/// Whether `path` is a regular file the caller may execute.
pub(crate) fn is_executable_file(path: &CStr) -> bool {
    let mut status = core::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `path` is NUL-terminated and `status` a valid out-parameter.
    if unsafe { libc::stat(path.as_ptr(), status.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: stat succeeded, so it filled `status`.
    let mode = unsafe { status.assume_init() }.st_mode;
    // SAFETY: `path` is NUL-terminated; access has no other precondition.
    mode & libc::S_IFMT == libc::S_IFREG && unsafe { libc::access(path.as_ptr(), libc::X_OK) } == 0
}

/// A file opened read-only, closed on drop: just the system calls needed here.
struct File(c_int);

impl File {
    fn open(path: &CStr) -> Result<File, c_int> {
        // SAFETY: `path` is NUL-terminated.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 { Err(errno()) } else { Ok(File(fd)) }
    }

    /// Reads up to `buffer.len()` bytes at `offset`; fewer only at the end of the file.
    fn read_at(&self, offset: u64, buffer: &mut [u8]) -> Result<usize, c_int> {
        let mut filled = 0;
        while filled < buffer.len() {
            let at = libc::off_t::try_from(offset + filled as u64).map_err(|_| libc::EINVAL)?;
            let rest = &mut buffer[filled..];
            // SAFETY: `rest` is a valid, writable buffer of `rest.len()` bytes.
            let n = unsafe { libc::pread(self.0, rest.as_mut_ptr().cast(), rest.len(), at) };
            match n {
                0 => break,
                n if n > 0 => filled += n as usize,
                _ if errno() == libc::EINTR => {}
                _ => return Err(errno()),
            }
        }
        Ok(filled)
    }

    fn read_exact_at(&self, offset: u64, buffer: &mut [u8]) -> Result<(), Refusal> {
        match self.read_at(offset, buffer) {
            Ok(n) if n == buffer.len() => Ok(()),
            _ => Err(Refusal::Truncated),
        }
    }

    fn mode(&self) -> Result<libc::mode_t, c_int> {
        let mut status = core::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `status` is a valid out-parameter for fstat.
        if unsafe { libc::fstat(self.0, status.as_mut_ptr()) } != 0 {
            return Err(errno());
        }
        // SAFETY: fstat succeeded, so it filled `status`.
        Ok(unsafe { status.assume_init() }.st_mode)
    }
}

impl Drop for File {
    fn drop(&mut self) {
        // SAFETY: closing the descriptor this value owns.
        unsafe { libc::close(self.0) };
    }
}

fn errno() -> c_int {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebang_lines_name_their_interpreter() {
        assert_eq!(
            shebang_interpreter(b"#!/bin/sh\necho"),
            Some(&b"/bin/sh"[..])
        );
        assert_eq!(
            shebang_interpreter(b"#! /usr/bin/env python3\n"),
            Some(&b"/usr/bin/env"[..])
        );
        assert_eq!(shebang_interpreter(b"#!\n"), None);
        assert_eq!(shebang_interpreter(b"\x7fELF"), None);
    }

    #[test]
    fn dynamic_programs_pass_and_scripts_name_their_interpreter() {
        let sh = inspect(b"/bin/sh").expect("/bin/sh exists");
        assert_eq!(sh.verdict, Ok(()));
        assert!(!sh.script);
        // gunzip is a shell script in Debian's gzip package.
        let gunzip = inspect(b"/usr/bin/gunzip").expect("gunzip exists");
        assert!(gunzip.script);
        assert_eq!(gunzip.runs.as_bytes(), b"/bin/sh");
        assert_eq!(gunzip.verdict, Ok(()));
    }

    #[test]
    fn static_programs_are_refused() {
        let ldconfig = inspect(b"/sbin/ldconfig").expect("ldconfig exists");
        assert_eq!(ldconfig.verdict, Err(Refusal::StaticallyLinked));
        assert_eq!(inspect(b"/no/such/file").err(), Some(NotFound));
    }

    #[test]
    fn the_search_follows_path() {
        let found = find_in_path(b"sh", b"/nonexistent::/bin").expect("sh in /bin");
        assert_eq!(found.as_bytes(), b"/bin/sh");
        assert_eq!(
            find_in_path(b"./x", b"/bin").map(|p| p.as_bytes().to_vec()),
            Some(b"./x".to_vec())
        );
        assert!(find_in_path(b"no-such-program-here", b"/bin:/usr/bin").is_none());
        assert!(find_in_path(b"", b"/bin").is_none());
    }

    #[test]
    fn paths_that_do_not_fit_are_rejected() {
        assert!(FixedPath::from_bytes(&[b'a'; PATH_MAX]).is_none());
        assert!(FixedPath::from_bytes(b"a\0b").is_none());
        let path = FixedPath::from_bytes(b"/usr/bin/env").unwrap();
        assert_eq!(path.file_name(), b"env");
        assert_eq!(path.as_c_str(), c"/usr/bin/env");
    }
}
