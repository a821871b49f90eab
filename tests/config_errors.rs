//! Bad settings and a signal owned by someone else give clear errors from `launch` (or
//! `Config::install`). Each case needs a process whose settings are not fixed yet, so each
//! runs in a child process (this test binary, re-run with its own environment).

mod common;

use std::time::Duration;

use inger::Error;

/// Installs a do-nothing handler for `signal`, as some other library might.
fn occupy(signal: i32) {
    extern "C" fn someone_elses_handler(_: i32) {}
    // SAFETY: a zeroed sigaction is valid; we install a plain handler that does nothing.
    unsafe {
        let mut action: libc::sigaction = core::mem::zeroed();
        action.sa_sigaction = someone_elses_handler as extern "C" fn(i32) as usize;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(libc::sigaction(signal, &action, core::ptr::null_mut()), 0);
    }
}

/// The child's part: checks what `mode` should produce, then prints the marker the parent
/// looks for (so a child that ran no test at all cannot pass).
fn child(mode: &str) {
    match mode {
        "bad-stack-size" => {
            let first = inger::launch(|| 1, Duration::MAX).map(|_| ());
            assert!(
                matches!(first, Err(Error::InvalidConfig(ref why)) if why.contains("INGER_STACK_SIZE")),
                "{first:?}"
            );
            // The error is sticky: no half-configured runtime.
            let again = inger::launch(|| 1, Duration::MAX).map(|_| ());
            assert!(matches!(again, Err(Error::InvalidConfig(_))), "{again:?}");
        }
        "tiny-stack-size" | "bad-signal" | "non-realtime-signal" | "bad-retry" => {
            let result = inger::launch(|| 1, Duration::MAX).map(|_| ());
            assert!(matches!(result, Err(Error::InvalidConfig(_))), "{result:?}");
        }
        "signal-in-use" => {
            let signal = libc::SIGRTMAX() - 2;
            occupy(signal);
            let result = inger::launch(|| 1, Duration::MAX).map(|_| ());
            assert_eq!(result, Err(Error::SignalInUse { signal }));
            // The other owner's handler is left alone.
            assert!(!inger::preemption_handler_intact());
        }
        "default-signal-in-use" => {
            let signal = libc::SIGRTMAX() - 4;
            occupy(signal);
            let result = inger::launch(|| 1, Duration::MAX).map(|_| ());
            assert_eq!(result, Err(Error::SignalInUse { signal }));
        }
        "builder" => {
            // Bad values are refused and do not fix the settings...
            assert!(matches!(
                inger::Config::new().stack_size(1024).install(),
                Err(Error::InvalidConfig(_))
            ));
            assert!(matches!(
                inger::Config::new().signal(libc::SIGUSR1).install(),
                Err(Error::InvalidConfig(_))
            ));
            assert!(matches!(
                inger::Config::new()
                    .retry_interval(Duration::from_micros(1))
                    .install(),
                Err(Error::InvalidConfig(_))
            ));
            // ...so a good one still can, once.
            inger::Config::new()
                .stack_size(256 * 1024)
                .install()
                .expect("install");
            assert_eq!(
                inger::Config::new().install(),
                Err(Error::AlreadyInitialized)
            );
            // The installed stack size is in force: 256 KiB and its 64 KiB guard take a 512 KiB
            // slot, so the stack is 448 KiB, and captures of more than half of it do not fit.
            let big = [3u8; 250 * 1024];
            let result = inger::launch(move || big.len(), Duration::MAX).map(|l| l.completion());
            assert!(matches!(result, Err(Error::InvalidConfig(_))), "{result:?}");
            let linger = inger::launch(|| common::mix(1, 100_000), Duration::from_micros(100))
                .expect("launch");
            assert_eq!(
                common::finish(linger, Duration::from_micros(100), 1_000_000).0,
                common::mix(1, 100_000)
            );
        }
        other => panic!("unknown child mode {other}"),
    }
    common::print_child_ok(mode);
}

fn expect_child_ok(test: &str, mode: &str, env: &[(&str, &str)]) {
    common::run_child(test, mode, env).assert_child_ok(mode);
}

#[test]
fn an_unparsable_stack_size_is_invalid_config() {
    if let Some(mode) = common::child_mode() {
        return child(&mode);
    }
    expect_child_ok(
        "an_unparsable_stack_size_is_invalid_config",
        "bad-stack-size",
        &[("INGER_STACK_SIZE", "lots")],
    );
}

#[test]
fn a_stack_size_below_the_minimum_is_invalid_config() {
    if let Some(mode) = common::child_mode() {
        return child(&mode);
    }
    expect_child_ok(
        "a_stack_size_below_the_minimum_is_invalid_config",
        "tiny-stack-size",
        &[("INGER_STACK_SIZE", "4K")],
    );
}

#[test]
fn an_unparsable_signal_is_invalid_config() {
    if let Some(mode) = common::child_mode() {
        return child(&mode);
    }
    expect_child_ok(
        "an_unparsable_signal_is_invalid_config",
        "bad-signal",
        &[("INGER_SIGNAL", "SIGBANANA")],
    );
}

#[test]
fn a_signal_outside_the_realtime_range_is_invalid_config() {
    if let Some(mode) = common::child_mode() {
        return child(&mode);
    }
    expect_child_ok(
        "a_signal_outside_the_realtime_range_is_invalid_config",
        "non-realtime-signal",
        &[("INGER_SIGNAL", "10")],
    );
}

#[test]
fn a_too_short_retry_interval_is_invalid_config() {
    if let Some(mode) = common::child_mode() {
        return child(&mode);
    }
    expect_child_ok(
        "a_too_short_retry_interval_is_invalid_config",
        "bad-retry",
        &[("INGER_RETRY_US", "1")],
    );
}

#[test]
fn a_signal_with_someone_elses_handler_is_signal_in_use() {
    if let Some(mode) = common::child_mode() {
        return child(&mode);
    }
    expect_child_ok(
        "a_signal_with_someone_elses_handler_is_signal_in_use",
        "signal-in-use",
        &[("INGER_SIGNAL", "SIGRTMAX-2")],
    );
}

#[test]
fn the_default_signal_with_someone_elses_handler_is_signal_in_use() {
    if let Some(mode) = common::child_mode() {
        return child(&mode);
    }
    expect_child_ok(
        "the_default_signal_with_someone_elses_handler_is_signal_in_use",
        "default-signal-in-use",
        &[],
    );
}

#[test]
fn the_builder_refuses_bad_values_and_installs_once() {
    if let Some(mode) = common::child_mode() {
        return child(&mode);
    }
    expect_child_ok(
        "the_builder_refuses_bad_values_and_installs_once",
        "builder",
        &[],
    );
}
