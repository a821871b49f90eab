//! Which system calls interrupted by the preemption signal can be restarted with exactly
//! their original meaning, and with which arguments.
//!
//! Context: **signal handler** (pure functions of the interrupted call's number and argument
//! registers; async-signal-safe).
//!
//! Any caught signal makes some blocking calls fail with `EINTR` after its handler, whatever
//! `SA_RESTART` says: `pause`, `sigsuspend`, `sigtimedwait`, `poll`, `select`, `epoll_wait`,
//! `nanosleep`, futex waits with a timeout, `msgrcv`, ... (`signal(7)`, "Interruption of
//! system calls and library functions by signal handlers"). The preemption signal must not be
//! visible that way, so when its handler does not pause the function (or when a function
//! paused in such a call is resumed), the handler makes the interrupted context execute the
//! `syscall` instruction again, with the call's number back in `rax`. That is right only
//! where the call means the same thing the second time:
//!
//! - no timeout at all (`pause`, `sigsuspend`, `sigwaitinfo`, `poll`/`epoll_wait` with a
//!   negative timeout, `msgrcv`, a futex wait without timeout);
//! - an absolute timeout (`clock_nanosleep` with `TIMER_ABSTIME`, `FUTEX_WAIT_BITSET`, which
//!   glibc uses for `sem_timedwait` and condition variables, `mq_timedreceive`);
//! - a timeout the kernel has already reduced by the time spent (`select`, `pselect6`,
//!   `ppoll` write back what is left);
//! - `nanosleep` and relative `clock_nanosleep` given a `rem` buffer, into which the kernel
//!   wrote the time left: the restart sleeps for what `rem` holds (glibc's `sleep` and Rust's
//!   `thread::sleep` pass one).
//!
//! A call with a relative timeout that the kernel does not update (`poll` and `epoll_wait`
//! with a positive timeout, `usleep`'s `nanosleep` without `rem`, `sigtimedwait` with a
//! timeout, socket calls with `SO_RCVTIMEO`) would wait longer than asked if restarted, so it
//! keeps its `EINTR` (programs are written for that: the signal may be anyone's). Under
//! `inger-run` those are restarted too, by the interposed calls, which know when they began.

/// The argument registers of a system call, in the kernel's order: `rdi, rsi, rdx, r10, r8,
/// r9`.
pub(crate) type Arguments = [u64; 6];

/// x86-64 Linux system call numbers used here.
mod number {
    pub(super) const POLL: u32 = 7;
    pub(super) const SELECT: u32 = 23;
    pub(super) const PAUSE: u32 = 34;
    pub(super) const NANOSLEEP: u32 = 35;
    pub(super) const MSGSND: u32 = 69;
    pub(super) const MSGRCV: u32 = 70;
    pub(super) const RT_SIGTIMEDWAIT: u32 = 128;
    pub(super) const RT_SIGSUSPEND: u32 = 130;
    pub(super) const FUTEX: u32 = 202;
    pub(super) const SEMTIMEDOP: u32 = 220;
    pub(super) const CLOCK_NANOSLEEP: u32 = 230;
    pub(super) const EPOLL_WAIT: u32 = 232;
    pub(super) const MQ_TIMEDSEND: u32 = 242;
    pub(super) const MQ_TIMEDRECEIVE: u32 = 243;
    pub(super) const PSELECT6: u32 = 270;
    pub(super) const PPOLL: u32 = 271;
    pub(super) const EPOLL_PWAIT: u32 = 281;
    pub(super) const EPOLL_PWAIT2: u32 = 441;
}

/// The arguments to restart the interrupted call `number` with, if a restart keeps its
/// meaning exactly (see the module docs); `None` to leave its `EINTR` alone.
pub(crate) fn restart_arguments(number: u32, arguments: Arguments) -> Option<Arguments> {
    use number::*;
    let [_, rsi, rdx, r10, _, _] = arguments;
    let negative = |register: u64| (register as i32) < 0;
    let keep = Some(arguments);
    match number {
        PAUSE | RT_SIGSUSPEND | MSGSND | MSGRCV | SELECT | PSELECT6 | PPOLL => keep,
        MQ_TIMEDSEND | MQ_TIMEDRECEIVE => keep, // absolute timeouts
        RT_SIGTIMEDWAIT if rdx == 0 => keep,    // sigwaitinfo: no timeout
        EPOLL_PWAIT2 | SEMTIMEDOP if r10 == 0 => keep, // no timeout
        POLL if negative(rdx) => keep,
        EPOLL_WAIT | EPOLL_PWAIT if negative(r10) => keep,
        NANOSLEEP if rsi != 0 => {
            // Sleep for what the kernel wrote back into `rem`.
            let mut restarted = arguments;
            restarted[0] = rsi;
            Some(restarted)
        }
        CLOCK_NANOSLEEP if rsi & libc::TIMER_ABSTIME as u64 != 0 => keep,
        CLOCK_NANOSLEEP if r10 != 0 => {
            let mut restarted = arguments;
            restarted[2] = r10;
            Some(restarted)
        }
        FUTEX => {
            let operation = rsi as i32 & libc::FUTEX_CMD_MASK;
            let absolute = matches!(
                operation,
                libc::FUTEX_WAIT_BITSET | libc::FUTEX_LOCK_PI | libc::FUTEX_WAIT_REQUEUE_PI
            );
            let waits = operation == libc::FUTEX_WAIT || absolute;
            (waits && (absolute || r10 == 0)).then_some(arguments)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_without_a_timeout_restart_unchanged() {
        let args = [1, 2, 3, 4, 5, 6];
        assert_eq!(restart_arguments(number::PAUSE, args), Some(args));
        assert_eq!(restart_arguments(number::RT_SIGSUSPEND, args), Some(args));
        let poll_forever = [0x1000, 1, u64::from(u32::MAX), 0, 0, 0];
        assert_eq!(
            restart_arguments(number::POLL, poll_forever),
            Some(poll_forever)
        );
        let epoll_forever = [3, 0x1000, 8, u64::from(u32::MAX), 0, 0];
        assert_eq!(
            restart_arguments(number::EPOLL_WAIT, epoll_forever),
            Some(epoll_forever)
        );
    }

    #[test]
    fn relative_timeouts_the_kernel_does_not_update_keep_their_eintr() {
        assert_eq!(
            restart_arguments(number::POLL, [0x1000, 1, 500, 0, 0, 0]),
            None
        );
        assert_eq!(
            restart_arguments(number::EPOLL_WAIT, [3, 0x1000, 8, 500, 0, 0]),
            None
        );
        assert_eq!(
            restart_arguments(number::NANOSLEEP, [0x1000, 0, 0, 0, 0, 0]),
            None
        );
        assert_eq!(
            restart_arguments(number::RT_SIGTIMEDWAIT, [0x1000, 0, 0x2000, 8, 0, 0]),
            None
        );
        let sigwaitinfo = [0x1000, 0, 0, 8, 0, 0];
        assert_eq!(
            restart_arguments(number::RT_SIGTIMEDWAIT, sigwaitinfo),
            Some(sigwaitinfo)
        );
        let relative_futex = [0x1000, libc::FUTEX_WAIT as u64, 1, 0x2000, 0, 0];
        assert_eq!(restart_arguments(number::FUTEX, relative_futex), None);
        assert_eq!(
            restart_arguments(0, [0; 6]),
            None,
            "read is the kernel's to restart"
        );
    }

    #[test]
    fn sleeps_restart_for_what_is_left() {
        // nanosleep(req, rem): sleep for *rem.
        assert_eq!(
            restart_arguments(number::NANOSLEEP, [0x1000, 0x2000, 0, 0, 0, 0]),
            Some([0x2000, 0x2000, 0, 0, 0, 0])
        );
        // clock_nanosleep(clock, 0, req, rem): req := rem.
        assert_eq!(
            restart_arguments(number::CLOCK_NANOSLEEP, [1, 0, 0x1000, 0x2000, 0, 0]),
            Some([1, 0, 0x2000, 0x2000, 0, 0])
        );
        let absolute = [1, libc::TIMER_ABSTIME as u64, 0x1000, 0, 0, 0];
        assert_eq!(
            restart_arguments(number::CLOCK_NANOSLEEP, absolute),
            Some(absolute)
        );
        let private_bitset = [
            0x1000,
            (libc::FUTEX_WAIT_BITSET | libc::FUTEX_PRIVATE_FLAG) as u64,
            1,
            0x2000,
            0,
            u64::from(u32::MAX),
        ];
        assert_eq!(
            restart_arguments(number::FUTEX, private_bitset),
            Some(private_bitset)
        );
    }
}
