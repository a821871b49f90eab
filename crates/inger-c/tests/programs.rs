//! C programs using the API, compiled with the system C compiler against `libinger.so` and
//! against `libinger.a`, and run. Each program checks its own results and exits non-zero,
//! naming the failed check, if anything is off. Every program is its own process, so a
//! crash or a signal-related failure names its scenario.

mod common;

use common::{Linking, assert_success, compile, compile_and_run_both, run, run_command};

#[test]
fn completion() {
    compile_and_run_both("completion.c", &[], "completion ok");
}

#[test]
fn timeout() {
    compile_and_run_both("timeout.c", &[], "timeout ok");
}

#[test]
fn resume_in_slices_matches_a_direct_call() {
    compile_and_run_both("resume.c", &[], "resume ok");
}

#[test]
fn cpu_time_budgets() {
    compile_and_run_both("cpu_budget.c", &[], "cpu budget ok");
}

#[test]
fn cancel_in_every_state() {
    compile_and_run_both("cancel.c", &[], "cancel ok");
}

#[test]
fn libsets_give_a_function_its_own_copy() {
    compile_and_run_both("libset.c", &[], "libset ok");
}

#[test]
fn pause_and_yielded() {
    compile_and_run_both("pause.c", &[], "pause ok");
}

#[test]
fn bad_input_returns_errors() {
    compile_and_run_both("bad_input.c", &[], "bad input ok");
}

#[test]
fn threads_migration_and_concurrent_use() {
    compile_and_run_both("threads.c", &[], "threads ok");
}

#[test]
fn threads_with_shared_thread_local_storage() {
    for linking in Linking::BOTH {
        let program = compile("threads.c", linking, &[]);
        let output =
            run_command(std::process::Command::new(program.path()).env("INGER_SHARED_TLS", "1"));
        let stdout = assert_success(&output, "threads ok");
        assert!(
            stdout.contains("private thread-local storage: 0"),
            "{stdout}"
        );
    }
}

#[test]
fn invalid_settings_are_reported_not_fatal() {
    for linking in Linking::BOTH {
        let program = compile("config_error.c", linking, &[]);
        let output = run_command(
            std::process::Command::new(program.path()).env("INGER_STACK_SIZE", "banana"),
        );
        assert_success(&output, "config error ok");
    }
}

#[test]
fn signal_handlers_are_refused() {
    compile_and_run_both("signal_handler.c", &[], "signal handler ok");
}

#[test]
fn stack_protected_stdio_and_malloc_under_a_preemption_storm() {
    compile_and_run_both("storm.c", &["-fstack-protector-all"], "storm ok");
}

#[test]
fn short_names() {
    compile_and_run_both("short_names.c", &[], "short names ok");
}

#[test]
fn short_names_abort_with_a_message_on_error() {
    for linking in Linking::BOTH {
        let program = compile("short_names.c", linking, &[]);
        let output = run(program.path(), &["misuse"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{linking:?}: misuse did not fail");
        assert!(
            stderr.contains("libinger: resume failed: the preemptible function already finished"),
            "{linking:?}: unexpected stderr:\n{stderr}"
        );
        assert!(!String::from_utf8_lossy(&output.stdout).contains("not reached"));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            output.status.signal(),
            Some(libc::SIGABRT),
            "{linking:?}: {}",
            output.status
        );
    }
}

#[test]
fn statically_linked_programs_do_not_need_the_shared_library() {
    let program = compile("completion.c", Linking::Static, &[]);
    let dynamic = std::process::Command::new("readelf")
        .arg("-d")
        .arg(program.path())
        .output()
        .expect("readelf");
    let sections = String::from_utf8_lossy(&dynamic.stdout);
    assert!(dynamic.status.success());
    assert!(
        !sections.contains("libinger"),
        "static program still needs libinger:\n{sections}"
    );
    assert_success(&run(program.path(), &[]), "completion ok");
}
