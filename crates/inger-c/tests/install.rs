//! The documented install step: `install.sh` into a temporary PREFIX, then a program built
//! exactly as the README says, `cc prog.c $(pkg-config --cflags --libs inger)`, and its
//! static twin with `inger-static`, both run.

mod common;

use std::path::Path;
use std::process::Command;

use common::{assert_success, c_compiler, c_sources, libraries, run_command, scratch, target_dir};

#[test]
fn install_into_a_prefix_then_build_with_pkg_config() {
    libraries(); // built, so the script can run with --no-build
    let prefix = scratch("install-prefix");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh");
    let output = Command::new("sh")
        .arg(&script)
        .arg("--prefix")
        .arg(&prefix)
        .arg("--target-dir")
        .arg(target_dir())
        .arg("--no-build")
        .output()
        .expect("run install.sh");
    assert!(
        output.status.success(),
        "install.sh failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for file in [
        "lib/libinger.so",
        "lib/libinger.a",
        "include/libinger.h",
        "lib/pkgconfig/inger.pc",
        "lib/pkgconfig/inger-static.pc",
    ] {
        assert!(prefix.join(file).is_file(), "{file} was not installed");
    }
    let pkgconfig = prefix.join("lib/pkgconfig");
    let version = Command::new("pkg-config")
        .args(["--modversion", "inger"])
        .env("PKG_CONFIG_PATH", &pkgconfig)
        .output()
        .expect("run pkg-config (install Debian's pkg-config package)");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        env!("CARGO_PKG_VERSION")
    );

    let source = c_sources().join("completion.c");
    let work = scratch("install-programs");
    for (package, program) in [("inger", "dynamic"), ("inger-static", "static")] {
        let binary = work.join(program);
        // The command line of the README, through a shell, as a user would type it. The
        // test sources also include check.h from their own directory.
        let line = format!(
            "{cc} -std=c11 -Wall -Werror -I '{tests}' '{source}' -o '{binary}' $(pkg-config --cflags --libs {package})",
            cc = c_compiler(),
            tests = c_sources().display(),
            source = source.display(),
            binary = binary.display(),
        );
        let output = Command::new("sh")
            .args(["-c", &line])
            .env("PKG_CONFIG_PATH", &pkgconfig)
            .output()
            .expect("run the compiler");
        assert!(
            output.status.success(),
            "{line}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // The installed shared library is found through LD_LIBRARY_PATH, as for any
        // library installed outside the loader's default path.
        let output = run_command(Command::new(&binary).env("LD_LIBRARY_PATH", prefix.join("lib")));
        assert_success(&output, "completion ok");
    }
    // The static program does not need the installed shared library at all.
    let output = run_command(Command::new(work.join("static")).env_remove("LD_LIBRARY_PATH"));
    assert_success(&output, "completion ok");
    let _ = std::fs::remove_dir_all(&prefix);
    let _ = std::fs::remove_dir_all(&work);
}
