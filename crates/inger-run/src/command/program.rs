//! Finding the program and checking, before exec, that the dynamic loader will really
//! preload the library into it.
//!
//! The loader ignores `LD_PRELOAD` without a word when there is no loader (a statically linked
//! program, including static PIE: no `PT_INTERP` header), when the program runs in
//! secure-execution mode (set-user-ID, set-group-ID, or file capabilities), or when the
//! library does not fit (not x86-64, or another C library's loader). The program would then
//! run without inger and look like a success, so each case is refused with the reason.
//! A script (`#!`) is judged by its interpreter, which is what the kernel runs. The checks
//! themselves live in the shared `target` module, which the preload library also uses on
//! what a program execs.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::target::{self, Refusal};

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

/// Checks that the library will be preloaded into what `exec` of `path` actually runs.
pub(crate) fn check(path: &Path) -> Result<(), Problem> {
    let inspection = target::inspect(path.as_os_str().as_bytes()).map_err(|_| Problem::NotFound)?;
    match inspection.verdict {
        Ok(()) => Ok(()),
        Err(why) => {
            let culprit = if why == Refusal::TooManyInterpreters {
                path.to_path_buf()
            } else {
                PathBuf::from(OsStr::from_bytes(inspection.runs.as_bytes()))
            };
            Err(Problem::Refused(format!("{} {why}", culprit.display())))
        }
    }
}

/// Whether `path` is a `#!` script (the kernel will run its interpreter).
pub(crate) fn is_script(path: &Path) -> bool {
    target::inspect(path.as_os_str().as_bytes()).is_ok_and(|inspection| inspection.script)
}

#[cfg(test)]
mod tests {
    use super::*;

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
