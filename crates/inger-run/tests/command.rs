//! The command's behaviour: exit statuses and signals pass through, stdin flows, the program
//! sees its own environment, the report is printed once by the right process, and programs
//! that cannot be preloaded are refused before exec.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{debian_program, describe, inger_run, quiet, split_reports};

fn run_both(program: &Path, args: &[&str]) -> (String, String) {
    let direct = quiet({
        let mut command = Command::new(program);
        command.args(args);
        command
    });
    let under = quiet({
        let mut command = inger_run();
        command
            .args(["--slice", "20us", "--"])
            .arg(program)
            .args(args);
        command
    });
    (describe(direct.status), describe(under.status))
}

#[test]
fn exit_statuses_pass_through() {
    let sh = debian_program("sh", "dash");
    for (program, args, expected) in [
        (debian_program("true", "coreutils"), vec![], "exit 0"),
        (debian_program("false", "coreutils"), vec![], "exit 1"),
        (sh.clone(), vec!["-c", "exit 3"], "exit 3"),
        (sh, vec!["-c", "exit 255"], "exit 255"),
    ] {
        let (direct, under) = run_both(&program, &args);
        assert_eq!(direct, expected);
        assert_eq!(under, expected, "{} {args:?}", program.display());
    }
}

#[test]
fn fatal_signals_pass_through() {
    let sh = debian_program("sh", "dash");
    for script in ["kill -TERM $$", "kill -KILL $$", "kill -ABRT $$"] {
        let (direct, under) = run_both(&sh, &["-c", script]);
        assert!(direct.starts_with("signal"), "{script}: {direct}");
        assert_eq!(under, direct, "{script}");
    }
    // A real fault (not a sent signal) inside the program: inger's fault handler must hand it
    // to the default action.
    let python = debian_program("python3", "python3");
    let (direct, under) = run_both(&python, &["-c", "import ctypes; ctypes.string_at(0)"]);
    assert_eq!(direct, "signal 11");
    assert_eq!(under, direct);
}

#[test]
fn stdin_flows_through_a_pipe() {
    let cat = debian_program("cat", "coreutils");
    let mut child = inger_run()
        .args(["--slice", "20us", "--"])
        .arg(cat)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn inger-run");
    let mut stdin = child.stdin.take().unwrap();
    let payload: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let sent = payload.clone();
    let writer = std::thread::spawn(move || {
        for chunk in sent.chunks(4096) {
            stdin.write_all(chunk).expect("write to cat");
        }
    });
    let mut received = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut received)
        .unwrap();
    writer.join().unwrap();
    assert!(child.wait().unwrap().success());
    assert!(
        received == payload,
        "cat returned {} of {} bytes, or different ones",
        received.len(),
        payload.len()
    );
}

#[test]
fn the_program_sees_its_own_environment() {
    let env = debian_program("env", "coreutils");
    for preload in [None, Some("/lib/x86_64-linux-gnu/libm.so.6")] {
        let configure = |command: &mut Command| {
            command.env("INGER_RUN_TEST_MARKER", "1");
            // inger-run's own variable for finding the library belongs to the caller's
            // environment, so the program sees it too.
            command.env("INGER_RUN_PRELOAD", common::preload_library());
            match preload {
                Some(library) => command.env("LD_PRELOAD", library),
                None => command.env_remove("LD_PRELOAD"),
            };
        };
        let mut direct = Command::new(&env);
        configure(&mut direct);
        let direct = quiet(direct);
        let mut under = inger_run();
        under.arg("--").arg(&env);
        configure(&mut under);
        let under = quiet(under);
        assert!(under.status.success());
        assert_eq!(
            String::from_utf8_lossy(&under.stdout),
            String::from_utf8_lossy(&direct.stdout),
            "LD_PRELOAD={preload:?}"
        );
    }
}

#[test]
fn with_inherit_children_run_under_inger_too() {
    let sh = debian_program("sh", "dash");
    let children = "/usr/bin/true; /usr/bin/true";
    let plain = quiet({
        let mut command = inger_run();
        command
            .args(["--stats", "--"])
            .arg(&sh)
            .args(["-c", children]);
        command
    });
    assert!(plain.status.success());
    assert_eq!(
        split_reports(&plain.stderr).1.len(),
        1,
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );

    let inherited = quiet({
        let mut command = inger_run();
        command
            .args(["--stats", "--inherit", "--"])
            .arg(&sh)
            .args(["-c", children]);
        command
    });
    assert!(inherited.status.success());
    let reports = split_reports(&inherited.stderr).1;
    assert_eq!(
        reports.len(),
        1,
        "one summed report: {}",
        String::from_utf8_lossy(&inherited.stderr)
    );
    assert_eq!(
        reports[0].programs,
        Some(3),
        "the shell and both children: {}",
        String::from_utf8_lossy(&inherited.stderr)
    );
}

#[test]
fn one_report_however_the_program_ends() {
    let sh = debian_program("sh", "dash");
    for script in [
        // dash exits with _exit; a forked subshell exits too, but is not the reporting process.
        "(exit 0); exit 3",
        // xz closes stderr before exit: the report still gets out.
        "echo data | /usr/bin/xz -c >/dev/null; exec /usr/bin/xz --robot --version",
    ] {
        let output = quiet({
            let mut command = inger_run();
            command
                .args(["--stats", "--inherit", "--"])
                .arg(&sh)
                .args(["-c", script]);
            command
        });
        let reports = split_reports(&output.stderr).1;
        assert_eq!(
            reports.len(),
            1,
            "{script}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // The shell and the xz that replaced it (and the first xz) are summed.
        let programs = if script.contains("xz") { 3 } else { 1 };
        assert_eq!(
            reports[0].programs,
            Some(programs),
            "{script}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let false_ = quiet({
        let mut command = inger_run();
        command
            .args(["--stats", "--"])
            .arg(debian_program("false", "coreutils"));
        command
    });
    assert_eq!(describe(false_.status), "exit 1");
    assert_eq!(split_reports(&false_.stderr).1.len(), 1);
}

fn refused(program: &Path) -> String {
    let output = quiet({
        let mut command = inger_run();
        command.arg("--").arg(program);
        command
    });
    assert_eq!(
        describe(output.status),
        "exit 126",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.stdout.is_empty(), "the program must not have run");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn statically_linked_programs_are_refused() {
    let ldconfig = PathBuf::from("/sbin/ldconfig");
    let ldd = Command::new(debian_program("ldd", "libc-bin"))
        .arg(&ldconfig)
        .output()
        .unwrap();
    let ldd_says = String::from_utf8_lossy(&ldd.stdout) + String::from_utf8_lossy(&ldd.stderr);
    assert!(
        ldd_says.contains("statically linked") || ldd_says.contains("not a dynamic executable"),
        "this test expects Debian's /sbin/ldconfig to be static; ldd says: {ldd_says}"
    );
    let message = refused(&ldconfig);
    assert!(message.contains("statically linked"), "{message}");
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn set_id_programs_are_refused() {
    let dir = scratch_dir("set-id");
    for (mode, what) in [(0o4755, "set-user-ID"), (0o2755, "set-group-ID")] {
        let copy = dir.join(format!("echo-{mode:o}"));
        fs::copy(debian_program("echo", "coreutils"), &copy).unwrap();
        fs::set_permissions(&copy, fs::Permissions::from_mode(mode)).unwrap();
        let message = refused(&copy);
        assert!(message.contains(what), "{message}");
    }
    fs::remove_dir_all(dir).unwrap();
}

/// A minimal ELF64 header for `machine`, with no program headers at all.
fn elf_header(class: u8, machine: u16) -> Vec<u8> {
    let mut header = vec![0u8; 64];
    header[..4].copy_from_slice(b"\x7fELF");
    header[4] = class;
    header[5] = 1; // little-endian
    header[6] = 1; // version
    header[16] = 2; // ET_EXEC
    header[18..20].copy_from_slice(&machine.to_le_bytes());
    header[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    header
}

#[test]
fn foreign_and_loaderless_binaries_are_refused() {
    let dir = scratch_dir("foreign");
    let i386 = dir.join("i386");
    fs::write(&i386, elf_header(1, 3)).unwrap();
    fs::set_permissions(&i386, fs::Permissions::from_mode(0o755)).unwrap();
    assert!(refused(&i386).contains("not an x86-64 program"));

    let no_interpreter = dir.join("static");
    fs::write(&no_interpreter, elf_header(2, 62)).unwrap();
    fs::set_permissions(&no_interpreter, fs::Permissions::from_mode(0o755)).unwrap();
    assert!(refused(&no_interpreter).contains("statically linked"));

    // A script is judged by its interpreter.
    let script = dir.join("script");
    fs::write(&script, format!("#!{}\n", no_interpreter.display())).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    assert!(refused(&script).contains("statically linked"));
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn usage_errors_and_missing_things_are_reported() {
    let missing = quiet({
        let mut command = inger_run();
        command.args(["--", "no-such-program-anywhere"]);
        command
    });
    assert_eq!(describe(missing.status), "exit 127");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("command not found"));

    let no_library = quiet({
        let mut command = inger_run();
        command.args(["--preload", "/no/such/libinger_preload.so", "--", "true"]);
        command
    });
    assert_eq!(describe(no_library.status), "exit 125");
    assert!(String::from_utf8_lossy(&no_library.stderr).contains("does not exist"));

    let bad_slice = quiet({
        let mut command = inger_run();
        command.args(["--slice", "fast", "--", "true"]);
        command
    });
    assert_eq!(describe(bad_slice.status), "exit 125");
    assert!(String::from_utf8_lossy(&bad_slice.stderr).contains("bad duration"));

    let help = quiet({
        let mut command = inger_run();
        command.arg("--help");
        command
    });
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("usage: inger-run"));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--wall-slices"));
}

#[test]
fn the_library_is_found_next_to_a_copy_of_the_command() {
    // An installation: the command and the library side by side in some bin directory.
    let dir = scratch_dir("installed");
    let built = Path::new(env!("CARGO_BIN_EXE_inger-run"));
    let command = dir.join("inger-run");
    fs::copy(built, &command).unwrap();
    let alone = quiet({
        let mut c = Command::new(&command);
        c.env_remove("INGER_RUN_PRELOAD").args(["--", "true"]);
        c
    });
    assert_eq!(describe(alone.status), "exit 125");
    let message = String::from_utf8_lossy(&alone.stderr);
    assert!(
        message.contains("cargo build --release -p inger-run"),
        "{message}"
    );

    fs::copy(common::preload_library(), dir.join("libinger_preload.so")).unwrap();
    let together = quiet({
        let mut c = Command::new(&command);
        c.env_remove("INGER_RUN_PRELOAD")
            .args(["--stats", "--", "true"]);
        c
    });
    assert!(
        together.status.success(),
        "{}",
        String::from_utf8_lossy(&together.stderr)
    );
    assert_eq!(split_reports(&together.stderr).1.len(), 1);
    fs::remove_dir_all(dir).unwrap();
}
