//! A C program built with `-fsanitize=address` and linked against `libinger.so`
//! (`tests/c/sanitized.c`): launches, timer preemptions inside instrumented code, resumes,
//! nested launches, migrations and cancellations, with AddressSanitizer reporting nothing;
//! and a real overflow inside a preemptible function is caught, with a report whose stack
//! goes from the function into its launcher.

mod common;

use std::process::{Command, Output};

use common::{Linking, Program, compile, run_command};

fn sanitized() -> Program {
    compile(
        "sanitized.c",
        Linking::Dynamic,
        &["-fsanitize=address", "-fno-omit-frame-pointer"],
    )
}

fn run(program: &Program, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(program.path());
    command.args(args).env("ASAN_OPTIONS", "detect_leaks=1");
    for (name, value) in env {
        command.env(name, value);
    }
    run_command(&mut command)
}

fn assert_clean(output: &Output, private_tls: bool) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let describe = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(output.status.success(), "{describe}");
    assert!(stdout.contains("sanitized ok"), "{describe}");
    assert!(
        stdout.contains(&format!(
            "private thread-local storage: {}",
            u8::from(private_tls)
        )),
        "{describe}"
    );
    assert!(!stderr.contains("AddressSanitizer"), "{describe}");
    assert!(!stderr.contains("LeakSanitizer"), "{describe}");
}

#[test]
fn asan_reports_nothing_for_launches_preemptions_migrations_and_cancellations() {
    let program = sanitized();
    assert_clean(&run(&program, &[], &[]), true);
}

/// With shared TLS inger announces every switch to ASan (`__sanitizer_*_switch_fiber`):
/// `longjmp` out of frames inside a function makes ASan clean the stack it believes the code
/// runs on, which is right only if it was told. Also with fake stacks
/// (`detect_stack_use_after_return`), which are switched with the stacks.
#[test]
fn asan_follows_the_switches_with_shared_tls() {
    let program = sanitized();
    let shared = ("INGER_SHARED_TLS", "1");
    assert_clean(&run(&program, &["longjmp"], &[shared]), false);
    assert_clean(
        &run(
            &program,
            &["longjmp"],
            &[
                shared,
                (
                    "ASAN_OPTIONS",
                    "detect_leaks=1:detect_stack_use_after_return=1",
                ),
            ],
        ),
        false,
    );
}

#[test]
fn asan_catches_an_overflow_inside_a_preemptible_function() {
    let program = sanitized();
    let output = run(&program, &["overflow"], &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let describe = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!output.status.success(), "{describe}");
    assert!(!stdout.contains("not reached"), "{describe}");
    assert!(
        stderr.contains("ERROR: AddressSanitizer: heap-buffer-overflow"),
        "{describe}"
    );
    // The report's stack: the function, the entry trampoline, then `main`, which launched it.
    let report: Vec<&str> = stderr
        .lines()
        .skip_while(|line| !line.contains("ERROR: AddressSanitizer"))
        .take_while(|line| !line.trim().is_empty())
        .collect();
    let at = |name: &str| {
        report
            .iter()
            .position(|line| line.contains(&format!(" in {name} ")))
            .unwrap_or_else(|| panic!("no frame {name} in the report: {describe}"))
    };
    let order = [at("overflow"), at("inger_entry_trampoline"), at("main")];
    assert!(order.is_sorted(), "{describe}");
}
