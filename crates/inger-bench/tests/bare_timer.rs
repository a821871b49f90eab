//! The bare POSIX timer behind `timer_floor` and `signal_cpu_cost` (its own test binary: it
//! installs a signal handler). Outcomes only, no timing: a timer never fires before its
//! deadline, a periodic one keeps firing, one timer at a time, and the signal's disposition
//! is restored.

use std::hint::spin_loop;
use std::time::{Duration, Instant};

use inger_bench::bare::{BareTimer, monotonic_ns, thread_cpu_ns};

fn disposition(signal: libc::c_int) -> libc::sighandler_t {
    // SAFETY: an all-zero sigaction is a valid out-parameter.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a query only (no new action); `current` is a valid out-parameter.
    let result = unsafe { libc::sigaction(signal, std::ptr::null(), &mut current) };
    assert_eq!(result, 0);
    current.sa_sigaction
}

#[test]
fn bare_timer_fires_after_its_deadline_and_cleans_up() {
    let timer = BareTimer::new().expect("a bare timer");
    let signal = timer.signal();
    assert!(signal >= libc::SIGRTMIN() && signal <= libc::SIGRTMAX());
    assert_ne!(
        disposition(signal),
        libc::SIG_DFL,
        "our handler is installed"
    );
    assert!(BareTimer::new().is_err(), "a second bare timer is refused");

    for _ in 0..5 {
        let deadline = monotonic_ns() + 1_000_000;
        timer.arm_at(deadline).unwrap();
        assert_eq!(timer.fired_at(), None, "arming forgets the last expiry");
        let give_up = Instant::now() + Duration::from_secs(10);
        let fired = loop {
            if let Some(at) = timer.fired_at() {
                break at;
            }
            assert!(Instant::now() < give_up, "the timer never fired");
            spin_loop();
        };
        assert!(fired >= deadline, "fired {} ns early", deadline - fired);
    }

    let before = timer.fired();
    timer.arm_periodic(Duration::from_micros(200)).unwrap();
    let give_up = Instant::now() + Duration::from_secs(10);
    while timer.fired() < before + 3 {
        assert!(
            Instant::now() < give_up,
            "the periodic timer stopped firing"
        );
        spin_loop();
    }
    timer.disarm().unwrap();
    drop(timer);
    assert_eq!(
        disposition(signal),
        libc::SIG_DFL,
        "the disposition is restored"
    );
    // A new timer may be made once the old one is gone.
    drop(BareTimer::new().expect("a bare timer after the first"));
}

#[test]
fn thread_cpu_time_advances_with_work() {
    let before = thread_cpu_ns();
    let busy_until = Instant::now() + Duration::from_millis(20);
    while Instant::now() < busy_until {
        spin_loop();
    }
    // 20 ms of busy waiting is at least some CPU time, however loaded the machine is.
    assert!(thread_cpu_ns() > before);
}
