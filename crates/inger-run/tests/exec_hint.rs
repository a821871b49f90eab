//! A program under inger-run that execs another one (a wrapper script, `#!/usr/bin/env`,
//! a shell's `exec`): without `--inherit` the new program runs without inger, and `--stats`
//! says so, with the report up to that point; a script's interpreter is named.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{c_program, debian_program, describe, inger_run, split_reports};

fn run(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .expect("run the command")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A directory of its own for this test process.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, body).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_wrapper_script_says_that_the_real_program_runs_without_inger() {
    // The case of issue 14: `python3` is a wrapper (pyenv shims, Debian alternatives to
    // scripts), and nothing at all was printed.
    let python = debian_program("python3", "python3");
    let dir = scratch_dir("wrapper");
    let wrapper = script(
        &dir,
        "python3",
        &format!("#!/bin/sh\nexec {} \"$@\"\n", python.display()),
    );
    let output = run(inger_run()
        .args(["--stats", "--"])
        .arg(&wrapper)
        .args(["-c", "print(6 * 7)"]));
    let stderr = text(&output.stderr);
    assert_eq!(describe(output.status), "exit 0", "{stderr}");
    assert_eq!(text(&output.stdout), "42\n");
    let hint = format!("execs {}, which runs without inger", python.display());
    assert!(stderr.contains(&hint), "no hint:\n{stderr}");
    assert!(stderr.contains("--inherit"), "{stderr}");
    assert!(
        stderr.contains(&format!("up to its exec of {}", python.display())),
        "the report up to the exec, labelled:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "script                      {}, run by its interpreter",
            wrapper.display()
        )),
        "the script and its interpreter:\n{stderr}"
    );
    assert_eq!(split_reports(&output.stderr).1.len(), 1, "{stderr}");

    // With --inherit the real program runs under inger: no hint, one summed report.
    let output = run(inger_run()
        .args(["--stats", "--inherit", "--"])
        .arg(&wrapper)
        .args(["-c", "print(sum(range(3 * 10**6)))"]));
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("runs without inger"), "{stderr}");
    let reports = split_reports(&output.stderr).1;
    assert_eq!(reports.len(), 1, "{stderr}");
    assert_eq!(
        reports[0].programs,
        Some(2),
        "the shell and python: {stderr}"
    );
    assert!(reports[0].preemptions > 0, "python was preempted: {stderr}");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn env_in_a_shebang_line_names_the_program_it_finds() {
    let dir = scratch_dir("env-shebang");
    let wrapper = script(&dir, "hello", "#!/usr/bin/env sh\necho hello from $0\n");
    let output = run(inger_run()
        .env("PATH", "/usr/bin:/bin")
        .args(["--stats", "--"])
        .arg(&wrapper));
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        text(&output.stdout),
        format!("hello from {}\n", wrapper.display())
    );
    // env looks sh up in PATH: /usr/bin first (where merged-/usr systems have it).
    let sh = ["/usr/bin/sh", "/bin/sh"]
        .into_iter()
        .find(|path| Path::new(path).exists())
        .expect("a shell");
    assert!(
        stderr.contains(&format!("execs {sh}, which runs without inger")),
        "env looks sh up in PATH:\n{stderr}"
    );
    assert!(
        stderr.contains("run by its interpreter /usr/bin/env"),
        "{stderr}"
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_failed_exec_leaves_a_final_report_that_says_so() {
    let sh = debian_program("sh", "dash");
    let dir = scratch_dir("failed-exec");
    // Exists but may not be executed: the exec is announced, then fails (EACCES).
    let not_executable = dir.join("not-executable");
    fs::write(&not_executable, "echo never\n").unwrap();
    let output = run(inger_run()
        .args(["--stats", "--"])
        .arg(&sh)
        .arg("-c")
        .arg(format!("exec {}", not_executable.display())));
    let stderr = text(&output.stderr);
    assert_eq!(describe(output.status), "exit 126", "{stderr}");
    assert!(
        stderr.contains(&format!("up to its exec of {}", not_executable.display())),
        "{stderr}"
    );
    assert!(stderr.contains("(after an exec that failed)"), "{stderr}");
    assert_eq!(split_reports(&output.stderr).1.len(), 2, "{stderr}");

    // A file that does not exist is not announced (shells try each PATH entry in turn).
    let output = run(inger_run()
        .args(["--stats", "--"])
        .arg(&sh)
        .args(["-c", "exec /nonexistent/program"]));
    let stderr = text(&output.stderr);
    assert_eq!(describe(output.status), "exit 127", "{stderr}");
    assert!(!stderr.contains("which runs without inger"), "{stderr}");
    assert_eq!(split_reports(&output.stderr).1.len(), 1, "{stderr}");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_variadic_exec_functions_pass_every_argument() {
    let program = c_program("exec_list");
    for mode in ["execl", "execle", "execlp", "missing"] {
        let direct = run(Command::new(&program).arg(mode));
        let under = run(inger_run().args(["--stats", "--"]).arg(&program).arg(mode));
        let stderr = text(&under.stderr);
        assert_eq!(
            describe(under.status),
            describe(direct.status),
            "{mode}: {stderr}"
        );
        assert_eq!(
            text(&under.stdout),
            text(&direct.stdout),
            "{mode}: {stderr}"
        );
        // "missing" execs a file that does not exist: nothing to announce.
        assert_eq!(
            stderr.contains("which runs without inger"),
            mode != "missing",
            "{mode}: the exec is reported:\n{stderr}"
        );
    }
}
