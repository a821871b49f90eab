//! Finding the program and checking, before exec, that the dynamic loader will really
//! preload the library into it.
//!
//! The loader ignores `LD_PRELOAD` without a word when there is no loader (a statically linked
//! program, including static PIE: no `PT_INTERP` header), when the program runs in
//! secure-execution mode (set-user-ID, set-group-ID, or file capabilities), or when the
//! library does not fit (not x86-64, or another C library's loader). The program would then
//! run without inger and look like a success, so each case is refused with the reason.
//! A script (`#!`) is judged by its interpreter, which is what the kernel runs.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why the program cannot run under inger-run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    /// Not found in `PATH` (or the path does not exist).
    NotFound,
    /// Found but it cannot be preloaded; the text says why.
    Refused(String),
}

/// Finds `program` the way `execvp` would: as a path if it contains a slash, else in `PATH`.
pub(crate) fn resolve(program: &OsStr) -> Result<PathBuf, Problem> {
    if program.as_bytes().contains(&b'/') {
        let path = PathBuf::from(program);
        return if path.exists() {
            Ok(path)
        } else {
            Err(Problem::NotFound)
        };
    }
    if program.is_empty() {
        return Err(Problem::NotFound);
    }
    let search = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/bin:/usr/bin"));
    for dir in std::env::split_paths(&search) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(program);
        if is_executable_file(&candidate) {
            return Ok(candidate);
        }
    }
    Err(Problem::NotFound)
}

fn is_executable_file(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c_path` is NUL-terminated; access has no other precondition.
    path.is_file() && unsafe { libc::access(c_path.as_ptr(), libc::X_OK) } == 0
}

/// How many `#!` interpreters deep the kernel follows (it allows a handful).
const MAX_INTERPRETER_DEPTH: usize = 4;

/// Checks that the library will be preloaded into what `exec` of `path` actually runs.
pub(crate) fn check(path: &Path) -> Result<(), Problem> {
    let mut current = path.to_path_buf();
    for _ in 0..=MAX_INTERPRETER_DEPTH {
        let mut file = match File::open(&current) {
            Ok(file) => file,
            // Not readable (execute-only): the kernel can still run it; nothing to check.
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => return Ok(()),
            Err(_) => return Err(Problem::NotFound),
        };
        let mut start = [0u8; 256];
        let length = read_up_to(&mut file, &mut start)
            .map_err(|e| refused(&current, &format!("cannot be read: {e}")))?;
        let start = &start[..length];
        if let Some(interpreter) = shebang_interpreter(start) {
            current = interpreter;
            continue;
        }
        if !start.starts_with(b"\x7fELF") {
            // Let exec itself report what it makes of it.
            return Ok(());
        }
        check_credentials(&current)?;
        return check_elf(&mut file).map_err(|reason| refused(&current, &reason));
    }
    Err(refused(path, "has too many levels of #! interpreters"))
}

fn refused(path: &Path, reason: &str) -> Problem {
    Problem::Refused(format!("{} {reason}", path.display()))
}

fn read_up_to(file: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The interpreter of a `#!` script, as the kernel reads it: the first word after `#!`.
fn shebang_interpreter(start: &[u8]) -> Option<PathBuf> {
    let line = start.strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let word = line
        .split(|&b| b == b' ' || b == b'\t')
        .find(|word| !word.is_empty())?;
    Some(PathBuf::from(OsStr::from_bytes(word)))
}

/// Refuses programs that run in secure-execution mode, where the loader ignores `LD_PRELOAD`.
fn check_credentials(path: &Path) -> Result<(), Problem> {
    let mode = std::fs::metadata(path)
        .map_err(|_| Problem::NotFound)?
        .permissions()
        .mode();
    let why = if mode & libc::S_ISUID != 0 {
        "is set-user-ID"
    } else if mode & libc::S_ISGID != 0 {
        "is set-group-ID"
    } else if has_file_capabilities(path) {
        "has file capabilities"
    } else {
        return Ok(());
    };
    Err(refused(
        path,
        &format!(
            "{why}: the dynamic loader ignores LD_PRELOAD for such programs (secure-execution mode), \
             so it would run without inger; run a copy without that bit"
        ),
    ))
}

fn has_file_capabilities(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: both strings are NUL-terminated; a null buffer of size 0 only asks for the size.
    let size = unsafe {
        libc::getxattr(
            c_path.as_ptr(),
            c"security.capability".as_ptr(),
            std::ptr::null_mut(),
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
fn check_elf(file: &mut File) -> Result<(), String> {
    let bytes = read_at(file, 0, elf::HEADER_SIZE)?;
    if bytes[elf::CLASS] != elf::CLASS_64
        || bytes[elf::DATA] != elf::DATA_LITTLE_ENDIAN
        || u16_at(&bytes, elf::MACHINE) != elf::MACHINE_X86_64
    {
        return Err(
            "is not an x86-64 program: the preload library is x86-64 only, and the loader \
                    would silently skip it"
                .to_owned(),
        );
    }
    let table = u64_at(&bytes, elf::PHOFF);
    let entry_size = usize::from(u16_at(&bytes, elf::PHENTSIZE));
    let count = usize::from(u16_at(&bytes, elf::PHNUM));
    if entry_size < elf::PROGRAM_HEADER_SIZE {
        return Err("has a malformed ELF program header table".to_owned());
    }
    let headers = read_at(file, table, entry_size * count)?;
    let interpreter = headers
        .chunks_exact(entry_size)
        .find(|h| u32_at(h, elf::P_TYPE) == elf::PT_INTERP);
    let Some(header) = interpreter else {
        return Err(
            "is statically linked (it has no program interpreter): the dynamic loader never runs \
                    for it, so LD_PRELOAD cannot inject inger into it"
                .to_owned(),
        );
    };
    let length = usize::try_from(u64_at(header, elf::P_FILESZ))
        .unwrap_or(usize::MAX)
        .min(4096);
    let name = read_at(file, u64_at(header, elf::P_OFFSET), length)?;
    let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
    let name = Path::new(OsStr::from_bytes(name));
    let is_glibc_loader = name
        .file_name()
        .is_some_and(|file| file.as_bytes().starts_with(b"ld-linux"));
    if !is_glibc_loader {
        return Err(format!(
            "uses the program interpreter {}, not glibc's: the preload library needs glibc",
            name.display()
        ));
    }
    Ok(())
}

fn read_at(file: &mut File, offset: u64, length: usize) -> Result<Vec<u8>, String> {
    let mut buffer = vec![0u8; length];
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(&mut buffer))
        .map_err(|_| "is a truncated or malformed ELF file".to_owned())?;
    Ok(buffer)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebang_lines_name_their_interpreter() {
        assert_eq!(
            shebang_interpreter(b"#!/bin/sh\necho"),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(
            shebang_interpreter(b"#! /usr/bin/env python3\n"),
            Some(PathBuf::from("/usr/bin/env"))
        );
        assert_eq!(shebang_interpreter(b"#!\n"), None);
        assert_eq!(shebang_interpreter(b"\x7fELF"), None);
    }

    #[test]
    fn dynamic_programs_pass() {
        assert_eq!(check(Path::new("/bin/sh")), Ok(()));
        let sort = resolve(OsStr::new("sort")).expect("sort is in PATH");
        assert_eq!(check(&sort), Ok(()));
    }

    #[test]
    fn missing_programs_are_not_found() {
        assert_eq!(
            resolve(OsStr::new("no-such-program-here")),
            Err(Problem::NotFound)
        );
        assert_eq!(resolve(OsStr::new("/no/such/file")), Err(Problem::NotFound));
        assert_eq!(resolve(OsStr::new("")), Err(Problem::NotFound));
    }
}
