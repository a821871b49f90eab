//! `fork`, `posix_spawn` and `posix_spawnp`, interposed for the run's ledger
//! (`--inherit --stats`): the parent claims the new process's slot before it exists, so that
//! a parent that ends at once can never make the run look finished while its child is
//! still starting (see `accounting`). Outside a ledger they go straight to glibc.

use core::ffi::{CStr, c_char, c_int};

use crate::{accounting, exec, real};

/// `fork`.
///
/// # Safety
/// As glibc's `fork`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fork() -> libc::pid_t {
    let claim = accounting::before_fork();
    // SAFETY: glibc's fork; its atfork handlers run as usual.
    let pid = unsafe { real::fork()() };
    // SAFETY: __errno_location returns the calling thread's errno slot.
    let errno = unsafe { *libc::__errno_location() };
    accounting::after_fork(claim, pid);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
    pid
}

/// Claims a slot if the spawned program will run under inger in this run.
///
/// # Safety
/// `file` a C string, `envp` null or an environment block.
unsafe fn claim(
    file: *const c_char,
    envp: *const *mut c_char,
    search: bool,
) -> Option<&'static crate::ledger::Slot> {
    if !accounting::in_ledger() {
        return None;
    }
    // SAFETY: per the contract.
    let target = exec::spawn_target(unsafe { CStr::from_ptr(file) }, search)?;
    let environment = exec::environment_or_own(envp.cast());
    // SAFETY: per the contract.
    if unsafe { exec::stays_under_inger(&target, environment) } {
        accounting::before_spawn()
    } else {
        None
    }
}

/// Finishes a claim after the spawn returned `result` (0 on success).
fn settle(claim: Option<&'static crate::ledger::Slot>, result: c_int, pid: *mut libc::pid_t) {
    // SAFETY: on success glibc stored the child's pid in `*pid` (when `pid` is not null).
    let child = (result == 0 && !pid.is_null()).then(|| unsafe { *pid });
    accounting::after_spawn(claim, child);
}

/// `posix_spawn`.
///
/// # Safety
/// As glibc's `posix_spawn`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_spawn(
    pid: *mut libc::pid_t,
    path: *const c_char,
    file_actions: *const libc::posix_spawn_file_actions_t,
    attributes: *const libc::posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    // SAFETY: per the contract.
    let claim = unsafe { claim(path, envp, false) };
    // glibc needs the pid to be reported; keep our own when the caller passed none.
    let mut own_pid: libc::pid_t = 0;
    let pid_out = if pid.is_null() { &raw mut own_pid } else { pid };
    // SAFETY: forwarding the caller's arguments.
    let result =
        unsafe { real::posix_spawn()(pid_out, path, file_actions, attributes, argv, envp) };
    settle(claim, result, pid_out);
    result
}

/// `posix_spawnp`.
///
/// # Safety
/// As glibc's `posix_spawnp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_spawnp(
    pid: *mut libc::pid_t,
    file: *const c_char,
    file_actions: *const libc::posix_spawn_file_actions_t,
    attributes: *const libc::posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    // SAFETY: per the contract.
    let claim = unsafe { claim(file, envp, true) };
    let mut own_pid: libc::pid_t = 0;
    let pid_out = if pid.is_null() { &raw mut own_pid } else { pid };
    // SAFETY: forwarding the caller's arguments.
    let result =
        unsafe { real::posix_spawnp()(pid_out, file, file_actions, attributes, argv, envp) };
    settle(claim, result, pid_out);
    result
}
