//! Blocking calls (issue 4): a function blocked in `thread::sleep`, in a `read` on an empty
//! pipe, or in a `Condvar` wait is innermost in a libc wrapper at a cancellation point, with
//! only preemptible frames above: the whole-stack rule lets it be paused there, so its budget
//! still bounds the call. After a resume the call continues (it restarts, or reports `EINTR`
//! and the standard library retries) and completes correctly once its event has happened.
//! Each scenario runs on two threads at once.
//!
//! No elapsed time is asserted for the pause: `launch` returning a paused continuation at all
//! (rather than a completion after the whole sleep) is the evidence. Completions are awaited
//! by resuming with short budgets a bounded number of times, so a wake-up that never comes
//! fails the test instead of hanging it.

mod common;

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// The budget each blocked function is launched with.
const BUDGET: Duration = Duration::from_millis(20);

/// Asserts that `linger` is a continuation paused by its timer (not a cooperative yield).
fn assert_paused_by_timer<T>(linger: &inger::Linger<'_, T>, what: &str) {
    assert!(
        linger.is_continuation(),
        "{what}: the function was not paused within its budget (it ran to completion)"
    );
    assert!(
        !linger.yielded(),
        "{what}: paused by a yield, not the timer"
    );
}

/// Resumes `linger` with 20 ms budgets until it completes; panics if it has not after
/// [`common::HANG_LIMIT`] worth of budgets (its event never woke it).
fn finish<T>(mut linger: inger::Linger<'_, T>, what: &str) -> T {
    let mut resumes = 0u32;
    while linger.is_continuation() {
        assert!(
            BUDGET * resumes < common::HANG_LIMIT,
            "{what}: still blocked after {resumes} resumes of {BUDGET:?} though its event happened"
        );
        inger::resume(&mut linger, BUDGET).expect("resume");
        resumes += 1;
    }
    linger.completion().expect("completed")
}

#[test]
fn a_function_in_a_ten_second_sleep_is_paused_within_its_budget() {
    common::on_two_threads(|thread| {
        let linger = inger::launch(
            move || {
                std::thread::sleep(Duration::from_secs(10));
                thread
            },
            BUDGET,
        )
        .expect("launch");
        assert_paused_by_timer(&linger, "sleep(10 s)");
        let inger::Linger::Continuation(continuation) = linger else {
            unreachable!("checked above");
        };
        // Resumed, it goes back to sleep and is paused again.
        let linger = continuation.resume(BUDGET).expect("resume");
        assert_paused_by_timer(&linger, "sleep(10 s), resumed");
        // Dropping it cancels the sleeping function.
        drop(linger);
    });
}

#[test]
fn a_paused_sleep_completes_after_resume() {
    const SLEEP: Duration = Duration::from_millis(300);
    let slept = common::on_two_threads(|thread| {
        let linger = inger::launch(
            move || {
                let start = Instant::now();
                std::thread::sleep(SLEEP);
                (thread, start.elapsed())
            },
            BUDGET,
        )
        .expect("launch");
        assert_paused_by_timer(&linger, "sleep(300 ms)");
        let (returned_thread, slept) = finish(linger, "sleep(300 ms)");
        assert_eq!(returned_thread, thread);
        slept
    });
    // Not a timing assertion but the contract of `sleep`: interrupted and resumed, it must
    // still not return before its full duration (a lower bound no slow machine can break).
    for elapsed in slept {
        assert!(elapsed >= SLEEP, "sleep returned early, after {elapsed:?}");
    }
}

/// A pipe: (read end, write end).
fn pipe() -> (std::fs::File, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-parameter for two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    (read.into(), write.into())
}

#[test]
fn a_function_reading_an_empty_pipe_is_paused_then_reads_what_the_caller_wrote() {
    common::on_two_threads(|thread| {
        let (mut reader, mut writer) = pipe();
        let linger = inger::launch(
            move || {
                let mut buffer = [0u8; 12];
                reader.read_exact(&mut buffer).map(|()| buffer)
            },
            BUDGET,
        )
        .expect("launch");
        assert_paused_by_timer(&linger, "read on an empty pipe");
        // Paused again and again while the pipe stays empty.
        let mut linger = linger;
        inger::resume(&mut linger, BUDGET).expect("resume");
        assert_paused_by_timer(&linger, "read on an empty pipe, resumed");
        let message = format!("hello from {thread}");
        writer
            .write_all(&message.as_bytes()[..12])
            .expect("writing to the pipe");
        let read = finish(linger, "read after the write").expect("read_exact");
        assert_eq!(&read[..], &message.as_bytes()[..12]);
    });
}

#[test]
fn a_function_waiting_on_a_condvar_is_paused_then_woken_by_another_thread() {
    common::on_two_threads(|thread| {
        let state: &'static (Mutex<Option<u64>>, Condvar) =
            Box::leak(Box::new((Mutex::new(None), Condvar::new())));
        let linger = inger::launch(
            move || {
                let (lock, ready) = state;
                let mut value = lock.lock().expect("lock");
                while value.is_none() {
                    value = ready.wait(value).expect("wait");
                }
                value.expect("set") * 2
            },
            BUDGET,
        )
        .expect("launch");
        assert_paused_by_timer(&linger, "Condvar wait");
        // The function released the mutex inside `wait`: another thread can take it and
        // notify while the function is paused.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let (lock, ready) = state;
                *lock.lock().expect("lock from the notifier") = Some(21 + thread as u64);
                ready.notify_all();
            });
        });
        assert_eq!(
            finish(linger, "Condvar wait after notify"),
            42 + 2 * thread as u64
        );
    });
}
