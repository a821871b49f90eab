//! The C examples in `examples/c/` build with their Makefile (against the shared and the
//! static library) and print correct results.

mod common;

use std::process::Command;

use common::{assert_success, libraries, run_command, scratch, workspace_root};

#[test]
fn c_examples_build_and_run() {
    let libraries = libraries();
    for link in ["dynamic", "static"] {
        let out = scratch(&format!("examples-{link}"));
        let output = Command::new("make")
            .arg("-C")
            .arg(workspace_root().join("examples/c"))
            .arg(format!("LIBDIR={}", libraries.dir.display()))
            .arg(format!("OUT={}", out.display()))
            .arg(format!("LINK={link}"))
            .arg("CFLAGS=-std=c11 -O2 -Wall -Wextra -Werror")
            .output()
            .expect("run make");
        assert!(
            output.status.success(),
            "make ({link}) failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );

        let timeout = assert_success(
            &run_command(&mut Command::new(out.join("timeout"))),
            "primes below 500000: 41538",
        );
        // The small job's line depends on the machine's load (it has a 1 s budget); when it
        // finished, its result must be right.
        assert!(
            timeout.contains("primes below 100000: 9592 (finished within 1 s)")
                || timeout.contains("primes below 100000: not finished within 1 s"),
            "{timeout}"
        );
        assert!(timeout.contains("gave up after 20 ms"), "{timeout}");

        let round_robin = assert_success(
            &run_command(&mut Command::new(out.join("round_robin"))),
            "preemptions",
        );
        for line in [
            "polite counter         result             20000000",
            "sum of squares         result   662921401752298880",
            "longest Collatz chain  result                  524",
            "Fibonacci mod 1e9+7    result            908460138",
        ] {
            assert!(
                round_robin.contains(line),
                "missing {line:?} in:\n{round_robin}"
            );
        }
        let _ = std::fs::remove_dir_all(&out);
    }
}
