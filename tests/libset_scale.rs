//! Libsets under load (issue 13): a `flex` scanner (non-reentrant by default) used by two
//! preemptible functions interleaved under 20-50 µs slices while the caller scans between
//! resumes, with and without a libset; 10,000 cancellations inside a copy with flat memory;
//! 200 functions paused at once, each inside its own copy.

mod common;

use std::ffi::{CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Counter, Library, as_fn};
use inger::{Libset, Linger};

type Begin = unsafe extern "C" fn(*const c_char);
type Next = unsafe extern "C" fn() -> c_int;

/// Generates `tests/c/libset/scanner.l` with `flex` and compiles it under `stem`.
fn scanner_library(stem: &str) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/libset/scanner.l");
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("flex");
    std::fs::create_dir_all(&out_dir).expect("flex output directory");
    let generated = out_dir.join(format!("{stem}.c"));
    let status = Command::new("flex")
        .arg("-o")
        .arg(&generated)
        .arg(&source)
        .status()
        .expect("running flex (scripts/test installs it)");
    assert!(status.success(), "flex failed");
    common::compile_c(
        generated.to_str().expect("UTF-8"),
        &format!("lib{stem}"),
        &[],
    )
}

/// The scanner's two entry points, wherever they are.
#[derive(Clone, Copy)]
struct Scanner {
    begin: Begin,
    next: Next,
}

impl Scanner {
    /// The scanner of the loaded library `library`.
    fn of(library: &Library) -> Scanner {
        // SAFETY: the scanner's functions have exactly these C signatures.
        unsafe {
            Scanner {
                begin: as_fn(library.address("scanner_begin")),
                next: as_fn(library.address("scanner_next")),
            }
        }
    }

    /// The running function's copy's scanner (the original's outside any function).
    fn of_libset(libset: Libset) -> Scanner {
        let address = |name| libset.symbol(name).expect("scanner symbol");
        // SAFETY: as in `of`; the addresses are the copy's functions.
        unsafe {
            Scanner {
                begin: core::mem::transmute::<*mut c_void, Begin>(address("scanner_begin")),
                next: core::mem::transmute::<*mut c_void, Next>(address("scanner_next")),
            }
        }
    }

    /// Scans all of `text`: the token codes in order.
    fn scan(&self, text: &CString) -> Vec<u8> {
        // SAFETY: `text` outlives the scan; the scanner copies it (yy_scan_string).
        unsafe { (self.begin)(text.as_ptr()) };
        let mut tokens = Vec::new();
        loop {
            // SAFETY: a scan was begun.
            match unsafe { (self.next)() } {
                0 => return tokens,
                token => tokens.push(token as u8),
            }
        }
    }
}

/// A deterministic program-like text of about `lines` lines.
fn program_text(seed: u64, lines: usize) -> CString {
    let mut state = seed;
    let mut text = String::new();
    for line in 0..lines {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        match state >> 61 {
            0 => text.push_str(&format!("x{line} = {} + y;\n", state >> 40)),
            1 => text.push_str(&format!(
                "if (a{line} <= {}) {{ b = c * d; }}\n",
                state >> 50
            )),
            2 => text.push_str("while (p != q) { p = p / 2 - 1; }\n"),
            3 => text.push_str(&format!("call(f{line}, {}, z);\n", state >> 45)),
            4 => text.push_str("# comment @ $ ~\n"),
            _ => text.push_str(&format!("return r{} == s;\n", state >> 55)),
        }
    }
    CString::new(text).expect("no NUL")
}

/// Two functions scanning `texts[0]` and `texts[1]` with `scanner(0)` / `scanner(1)`
/// (called inside them), interleaved under 30 and 45 µs slices, while the caller scans
/// `texts[2]` with `caller` between resumes. Returns the three streams (the caller's first
/// and last, which must agree) and how often each function was paused.
fn interleave(
    texts: &'static [CString; 3],
    scanner: fn(usize) -> Scanner,
    caller: Scanner,
) -> ([Vec<u8>; 3], [u64; 2]) {
    let launch = |which: usize| {
        inger::launch(
            move || scanner(which).scan(&texts[which]),
            Duration::from_micros(30 + 15 * which as u64),
        )
        .expect("launch")
    };
    let mut lingers: [Linger<'static, Vec<u8>>; 2] = [launch(0), launch(1)];
    let mut pauses = [0u64; 2];
    let mut caller_streams = Vec::new();
    while lingers.iter().any(Linger::is_continuation) {
        for (which, linger) in lingers.iter_mut().enumerate() {
            if linger.is_continuation() {
                pauses[which] += 1;
                inger::resume(linger, Duration::from_micros(30 + 15 * which as u64))
                    .expect("resume");
            }
            caller_streams.push(caller.scan(&texts[2]));
        }
    }
    let [first, second] = lingers;
    let caller_stream = caller_streams.pop().expect("the caller scanned");
    let caller_consistent = caller_streams.iter().all(|s| *s == caller_stream);
    assert!(caller_consistent, "the caller's own scans disagree");
    (
        [
            first.completion().expect("completed"),
            second.completion().expect("completed"),
            caller_stream,
        ],
        pauses,
    )
}

#[test]
fn a_flex_scanner_interleaved_under_short_slices_scans_correctly_only_with_a_libset() {
    let texts: &'static [CString; 3] = Box::leak(Box::new([
        program_text(1, 40_000),
        program_text(2, 30_000),
        program_text(3, 50),
    ]));

    // The direct run: one scan after the other, nothing interleaved.
    let direct_library = Library::open(&scanner_library("libset_flex_direct"));
    let direct = Scanner::of(&direct_library);
    let expected: Vec<Vec<u8>> = texts.iter().map(|text| direct.scan(text)).collect();
    assert!(expected[0].len() > 100_000, "a large input");
    assert_ne!(expected[0], expected[1]);

    // Without a libset: one instance, shared by both functions and the caller.
    static SHARED: std::sync::OnceLock<Scanner> = std::sync::OnceLock::new();
    let shared_library = Library::open(&scanner_library("libset_flex_shared"));
    SHARED.get_or_init(|| Scanner::of(&shared_library));
    let (streams, pauses) = interleave(texts, |_| *SHARED.get().unwrap(), *SHARED.get().unwrap());
    assert!(
        pauses.iter().all(|&p| p > 3),
        "both functions were paused: {pauses:?}"
    );
    assert!(
        streams[0] != expected[0] || streams[1] != expected[1],
        "without a libset the shared scanner loses the functions' places"
    );

    // With a libset: each function scans in its own copy, the caller in the original.
    static LIBSET: std::sync::OnceLock<Libset> = std::sync::OnceLock::new();
    let path = scanner_library("libset_flex_isolated");
    let original = Library::open(&path);
    let libset = *LIBSET.get_or_init(|| {
        Libset::open(path.to_str().expect("UTF-8"), 2).expect("open the scanner's libset")
    });
    let (streams, pauses) = interleave(
        texts,
        |_| Scanner::of_libset(*LIBSET.get().unwrap()),
        Scanner::of(&original),
    );
    assert!(
        pauses.iter().all(|&p| p > 3),
        "both functions were paused: {pauses:?}"
    );
    for (which, stream) in streams.iter().enumerate() {
        assert!(
            *stream == expected[which],
            "stream {which} differs from the direct run"
        );
    }
    let stats = libset.stats();
    assert_eq!(stats.copies_loaded, 2, "{stats:?}");
    assert_eq!(stats.copies_in_use, 0, "{stats:?}");
    assert_eq!(stats.copies_renewed, 0, "{stats:?}");
}

/// The process's (address space, resident) sizes in pages.
fn memory_pages() -> (u64, u64) {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let mut fields = statm
        .split_whitespace()
        .map(|f| f.parse::<u64>().expect("a number"));
    (fields.next().unwrap(), fields.next().unwrap())
}

#[test]
fn ten_thousand_cancellations_inside_a_copy_renew_it_and_keep_memory_flat() {
    let counter: &'static Counter = Box::leak(Box::new(Counter::load("libset_scale_cancel")));
    let libset = Libset::open(counter.name(), 1).expect("open");
    libset.route().expect("route");
    // Paused by its budget while it computes inside its copy, then cancelled: it unwinds from
    // its next cancellation point (its stack is reused; a discarded stack stays reserved,
    // see DESIGN.md section 6, which is not what this test measures), and its copy is renewed.
    let cancel_once = || {
        let linger = inger::launch(
            move || {
                assert_eq!(counter.add(5), 5, "a renewed copy starts from zero");
                loop {
                    counter.grind(20_000);
                    inger::checkpoint();
                }
            },
            Duration::from_micros(50),
        )
        .expect("launch");
        let paused = linger.continuation().expect("paused");
        let unwound = paused.cancel_cooperatively(Duration::from_secs(1));
        assert!(
            unwound.expect("cancel").is_none(),
            "unwound at its next checkpoint"
        );
    };
    for _ in 0..500 {
        cancel_once(); // warm-up: pools and allocator reach their steady state
    }
    let before = memory_pages();
    for _ in 0..10_000 {
        cancel_once();
    }
    let after = memory_pages();
    let stats = libset.stats();
    // A function paused before its first routed call holds no copy: nothing to renew.
    assert_eq!(stats.copies_renewed, stats.copies_taken, "{stats:?}");
    assert!(stats.copies_renewed >= 10_000, "{stats:?}");
    assert_eq!(stats.copies_loaded, 1, "{stats:?}");
    assert_eq!(stats.copies_in_use, 0, "{stats:?}");
    // 1,024 pages (4 MiB) of slack for the test harness; a copy leaked per cancellation
    // would be tens of thousands of pages.
    assert!(
        after.0 <= before.0 + 1024,
        "address space grew: {before:?} -> {after:?}"
    );
    assert!(
        after.1 <= before.1 + 1024,
        "resident set grew: {before:?} -> {after:?}"
    );
    assert_eq!(counter.get(), 0, "the caller's original was never touched");
}

#[test]
fn two_hundred_functions_paused_at_once_each_inside_its_own_copy() {
    let counter: &'static Counter = Box::leak(Box::new(Counter::load("libset_scale_many")));
    let libset = Libset::open(counter.name(), 200).expect("open");
    libset.route().expect("route");
    let busy_flags: &'static [std::sync::atomic::AtomicUsize; 200] = Box::leak(Box::new(
        [const { std::sync::atomic::AtomicUsize::new(0) }; 200],
    ));
    let lingers: Vec<_> = (0..200)
        .map(|index| {
            let mut linger = inger::launch(
                move || {
                    let value = index as i64 + 1;
                    assert_eq!(counter.add(value), value, "its own fresh copy");
                    let busy = libset.symbol("counter_busy").expect("counter_busy");
                    busy_flags[index].store(busy as usize, std::sync::atomic::Ordering::SeqCst);
                    counter.grind(i64::MAX) // sets its copy's flag, and never returns
                },
                Duration::from_micros(200),
            )
            .expect("launch");
            // Resumed until it is inside counter_grind (its copy's flag is set).
            loop {
                assert!(linger.is_continuation(), "function {index} cannot finish");
                let flag = busy_flags[index].load(std::sync::atomic::Ordering::SeqCst);
                if flag != 0 && common::read_flag(flag as *mut c_void) == 1 {
                    break;
                }
                inger::resume(&mut linger, Duration::from_micros(200)).expect("resume");
            }
            linger
        })
        .collect();
    let stats = libset.stats();
    assert_eq!(stats.copies_in_use, 200, "{stats:?}");
    assert_eq!(stats.copies_loaded, 200, "{stats:?}");
    let mut flags: Vec<usize> = busy_flags
        .iter()
        .map(|f| f.load(std::sync::atomic::Ordering::SeqCst))
        .collect();
    for &flag in &flags {
        assert_eq!(
            common::read_flag(flag as *mut c_void),
            1,
            "paused inside counter_grind"
        );
    }
    flags.sort_unstable();
    flags.dedup();
    assert_eq!(flags.len(), 200, "200 distinct copies");
    assert_eq!(counter.get(), 0, "the caller's original was never touched");
    drop(lingers);
    let stats = libset.stats();
    assert_eq!(stats.copies_in_use, 0, "{stats:?}");
    assert_eq!(stats.copies_renewed, 200, "{stats:?}");
}
