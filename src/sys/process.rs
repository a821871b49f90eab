//! Process and thread identity: thread ids, fork hooks, the page size.
//!
//! Context: caller (never the signal handler), except where a function says otherwise.

/// The kernel id of the calling thread. Async-signal-safe.
pub(crate) fn thread_id() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Registers hooks that run in the thread calling `fork`, just before it and in the parent
/// just after it (`pthread_atfork`). The hooks run with the caller's context installed.
pub(crate) fn at_fork(before: unsafe extern "C" fn(), after_in_parent: unsafe extern "C" fn()) {
    // SAFETY: the hooks are plain functions; registering them has no other precondition.
    // Failure (ENOMEM) only means the hooks do not run: forks then copy no stack of the
    // calling chain, as documented for children that exec at once.
    unsafe { libc::pthread_atfork(Some(before), Some(after_in_parent), None) };
}

/// The size of a memory page.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as usize } else { 4096 }
}
