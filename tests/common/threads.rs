//! Threads and the calling thread's state: the calling thread's errno and kernel thread id,
//! CPU affinity, a long-lived [`Worker`] to move continuations to, two scoped threads running
//! at once ([`on_two_threads`]), and bounded waits that fail with a message instead of
//! hanging.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// How long anything that should finish "soon" may take before the test calls it a deadlock.
/// A hang guard, not a timing assertion: everything it guards finishes in well under a second
/// when things work, even in a debug build on a loaded two-core machine.
pub const HANG_LIMIT: Duration = Duration::from_secs(30);

/// The calling thread's errno.
pub fn errno() -> i32 {
    // SAFETY: __errno_location returns the calling context's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's errno.
pub fn set_errno(value: i32) {
    // SAFETY: __errno_location returns the calling context's errno slot.
    unsafe { *libc::__errno_location() = value };
}

/// The kernel thread id of the caller (the `gettid` system call, never a cached copy).
pub fn kernel_tid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
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
/// A long-lived thread that runs jobs sent to it, so a continuation can be moved to a thread
/// with a known identity (CPU affinity, signal mask) and resumed there.
pub struct Worker {
    jobs: Option<std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The worker's kernel thread id.
    pub tid: i32,
}

impl Worker {
    /// Starts a worker named `name` that first runs `setup` on itself.
    pub fn start(name: &str, setup: impl FnOnce() + Send + 'static) -> Worker {
        let (jobs, inbox) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                setup();
                tid_tx.send(kernel_tid()).expect("report tid");
                for job in inbox {
                    job();
                }
            })
            .expect("spawn a worker");
        let tid = tid_rx.recv().expect("worker started");
        Worker {
            jobs: Some(jobs),
            thread: Some(thread),
            tid,
        }
    }

    /// Runs `job` on the worker and returns its result (a panic there fails the test here).
    pub fn run<R: Send + 'static>(&self, job: impl FnOnce() -> R + Send + 'static) -> R {
        let (result_tx, result_rx) = std::sync::mpsc::channel();
        self.jobs
            .as_ref()
            .expect("running")
            .send(Box::new(move || {
                let _ = result_tx.send(job());
            }))
            .expect("worker alive");
        result_rx
            .recv()
            .expect("the job on the worker panicked (see its message above)")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
            && !std::thread::panicking()
        {
            panic!("a worker thread panicked");
        }
    }
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: a valid out-pointer of the size passed.
    let result = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(result, 0, "sched_getaffinity");
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Restricts the calling thread to `cpu` (the kernel moves it there before returning).
pub fn pin_to(cpu: usize) {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (it came from `allowed_cpus`).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: a valid set of the size passed; 0 is the calling thread.
    let result = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    assert_eq!(result, 0, "sched_setaffinity to CPU {cpu}");
}

/// The number of CPUs configured in the system (CPU numbers are below it).
pub fn configured_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let count = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    assert!(count > 0, "sysconf(_SC_NPROCESSORS_CONF)");
    count as usize
}

/// `sched_getcpu()`, checked for failure.
pub fn current_cpu() -> usize {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    assert!(cpu >= 0, "sched_getcpu failed: errno {}", errno());
    cpu as usize
}
