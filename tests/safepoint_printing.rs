//! Printing storm (issue 4): two threads each run a function that `println!`s thousands of
//! lines, formatting each one with a `Display` impl that computes for a while (so a deadline
//! often passes while the standard library holds stdout's lock and runs user code), under
//! slices of 20–50 µs, while each caller `println!`s a line of its own between resumes.
//!
//! If a function were ever paused with stdout's lock held, its caller's next `println!` would
//! either deadlock (the lock belongs to the function's context) or land in the middle of the
//! function's line (a reentrant acquisition): the storm runs in a child process whose stdout
//! the parent captures and checks line by line, and a hang is caught by the hang guard. A
//! second storm formats each line inside a nested function, so that the rule must be applied
//! to the outer stack of the chain.

mod common;

use std::fmt;

/// Lines printed by each function.
const LINES: u64 = 3000;
const BEGIN: &str = "@@printing-begin\n";
const END: &str = "@@printing-end\n";
const STATS: &str = "@@printing-stats";

/// The value a function line carries: deterministic, and costly to compute.
fn line_value(thread: usize, line: u64) -> u64 {
    common::spin((thread as u64) << 40 | line << 1, 400)
}

/// Computes its value while being formatted, i.e. while `println!` holds stdout's lock;
/// `nested`: in a preemptible function launched from inside the formatting.
struct Payload {
    thread: usize,
    line: u64,
    nested: bool,
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (thread, line) = (self.thread, self.line);
        let value = if self.nested {
            // The inner function's own budget never runs out; the outer one's may, and then
            // the whole chain would be paused, with stdout's lock held on the outer stack.
            inger::launch(move || line_value(thread, line), std::time::Duration::MAX)
                .expect("nested launch")
                .completion()
                .expect("a nested function with an endless budget completes")
        } else {
            line_value(thread, line)
        };
        write!(f, "{value:016x}-{:016x}-{value:016x}", !value)
    }
}

/// The function's body: computation between lines, and lines whose formatting computes too.
/// Returns a checksum of the computation done outside the printing.
fn print_lines(thread: usize, nested: bool) -> u64 {
    let mut checksum = 0u64;
    for line in 0..LINES {
        checksum = checksum.rotate_left(5) ^ common::spin(checksum ^ line, 600);
        println!(
            "F{thread} {line} {}",
            Payload {
                thread,
                line,
                nested
            }
        );
    }
    checksum
}

/// What `print_lines` returns, computed without printing.
fn expected_checksum() -> u64 {
    (0..LINES).fold(0u64, |checksum, line| {
        checksum.rotate_left(5) ^ common::spin(checksum ^ line, 600)
    })
}

/// The caller's line after its `stop`-th stop.
fn caller_line(thread: usize, stop: u64) -> String {
    format!(
        "C{thread} {stop} {:032x}",
        u128::from(stop) * 0x0123_4567_89ab_cdef
    )
}

/// The child: the storm on two threads; every check that needs no output parsing.
fn child(nested: bool) {
    let before = inger::stats();
    println!("{}", BEGIN.trim_end());
    let results = common::on_two_threads(|thread| {
        common::storm(
            || print_lines(thread, nested),
            |stop| println!("{}", caller_line(thread, stop)),
        )
    });
    println!("{}", END.trim_end());
    let expected = expected_checksum();
    for (thread, (checksum, stops)) in results.iter().enumerate() {
        assert_eq!(*checksum, expected, "thread {thread}'s result");
        println!("@@printing-stops thread={thread} stops={stops}");
    }
    common::print_stats(STATS, before);
}

/// Checks one line of the storm's output; returns (function?, thread, number).
fn parse_line(line: &str) -> Result<(bool, usize, u64), String> {
    let mut words = line.splitn(3, ' ');
    let (who, number, rest) = match (words.next(), words.next(), words.next()) {
        (Some(who), Some(number), Some(rest)) => (who, number, rest),
        _ => return Err("not three words".into()),
    };
    let function = who.starts_with('F');
    let thread: usize = who
        .strip_prefix(['F', 'C'])
        .and_then(|t| t.parse().ok())
        .filter(|t| *t < 2)
        .ok_or("bad tag")?;
    let number: u64 = number.parse().map_err(|_| "bad number")?;
    let whole = if function {
        format!(
            "F{thread} {number} {}",
            Payload {
                thread,
                line: number,
                nested: false
            }
        )
    } else {
        caller_line(thread, number)
    };
    if line != whole || rest.is_empty() {
        return Err(format!("expected {whole:?}"));
    }
    Ok((function, thread, number))
}

#[test]
fn printing_storm_on_two_threads_keeps_every_line_whole() {
    const NAME: &str = "printing_storm_on_two_threads_keeps_every_line_whole";
    if common::child_mode().as_deref() == Some("printing") {
        child(false);
        return;
    }
    check_storm(common::run_child(NAME, "printing", &[]), "printing storm");
}

/// The same storm, with each line's value computed by a nested function launched from inside
/// the formatting: when the outer budget runs out there, the innermost function is plain Rust
/// code, but the outer function's stack holds stdout's lock. The rule applies to every stack
/// of the chain, so the chain must not be paused.
#[test]
fn nested_functions_launched_inside_println_do_not_pause_the_chain_with_the_lock_held() {
    const NAME: &str =
        "nested_functions_launched_inside_println_do_not_pause_the_chain_with_the_lock_held";
    if common::child_mode().as_deref() == Some("nested") {
        child(true);
        return;
    }
    check_storm(
        common::run_child(NAME, "nested", &[]),
        "nested printing storm",
    );
}

/// Checks a printing child's output: every line whole, each once and in order, and the
/// counters.
fn check_storm(output: common::ChildOutput, what: &str) {
    output.assert_success();
    let text = output.between(BEGIN, END);
    let mut next_function_line = [0u64; 2];
    let mut next_caller_line = [0u64; 2];
    for (index, line) in text.lines().enumerate() {
        let (function, thread, number) = parse_line(line)
            .unwrap_or_else(|why| panic!("line {index} is not whole ({why}): {line:?}"));
        let next = if function {
            &mut next_function_line[thread]
        } else {
            &mut next_caller_line[thread]
        };
        assert_eq!(number, *next, "line {index} out of order: {line:?}");
        *next += 1;
    }
    assert_eq!(next_function_line, [LINES; 2], "every function line, once");
    for (thread, lines) in next_caller_line.into_iter().enumerate() {
        let stops = output.counter(&format!("@@printing-stops thread={thread}"), "stops");
        assert_eq!(lines, stops, "every caller line, once");
    }
    let preemptions = output.counter(STATS, "preemptions");
    let deferred_std = output.counter(STATS, "deferred_std");
    assert!(preemptions > 0, "no preemption in the whole storm");
    assert!(
        deferred_std > 0,
        "no deferral in the standard library's stdio sections, though the functions spent \
         much of their time formatting under stdout's lock"
    );
    // Reported, not asserted (timing): how long past a deadline the functions ran at worst.
    println!(
        "{what}: {preemptions} preemptions, {deferred_std} deferrals in std sections, {} in \
         nopreempt sections, longest deferral {} us",
        output.counter(STATS, "deferred_nopreempt"),
        output.counter(STATS, "longest_deferral_ns") / 1000
    );
}
