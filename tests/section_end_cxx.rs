//! A C++ exception through a redirected critical section, caught by the redirected frame's
//! direct caller (`tests/c/section_end/cxx_throw.cpp`): the function's comparator runs under
//! libc's `qsort` when its deadline passes, so the runtime redirects `qsort`'s return and the
//! comparator then throws. The catching frame calls `qsort` itself, so in the unwinder's
//! cleanup phase the redirect stub's frame has the same identity as the handler's; without
//! the stub's own personality routine, libgcc took the stub for the handler and aborted the
//! process (in any build: the frame shapes come from the C++ code, not from Rust's inlining).
//!
//! One test in this binary: it reads the process-wide redirect counter to know that its own
//! redirect was armed.

mod common;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use common::{Library, as_fn};

/// `long cxx_sort_catching(long (*armed)(void))`.
type SortCatching = unsafe extern "C" fn(extern "C" fn() -> i64) -> i64;

/// The redirect counter when the current call began.
static REDIRECTS_BEFORE: AtomicU64 = AtomicU64::new(0);

/// Whether a redirect was armed since the call began (called by the comparator).
extern "C" fn redirect_armed() -> i64 {
    i64::from(inger::stats().redirects > REDIRECTS_BEFORE.load(Relaxed))
}

#[test]
fn a_cxx_exception_caught_right_above_a_redirected_qsort_is_caught() {
    let library = Library::open(&common::compile_c(
        "section_end/cxx_throw.cpp",
        "cxx_throw",
        &["-Wl,--no-as-needed", "-lstdc++"],
    ));
    // SAFETY: `cxx_sort_catching` is defined in cxx_throw.cpp with exactly this signature.
    let sort_catching = unsafe { as_fn::<SortCatching>(library.address("cxx_sort_catching")) };
    for round in 0..20 {
        let before = inger::stats();
        REDIRECTS_BEFORE.store(before.redirects, Relaxed);
        // SAFETY: the function only calls back into `redirect_armed`, which is safe anywhere.
        let linger = inger::launch(
            move || unsafe { sort_catching(redirect_armed) },
            Duration::from_micros(100),
        )
        .expect("launch");
        let (caught, _) = common::finish(linger, Duration::from_micros(100), 1_000_000);
        let after = inger::stats();
        assert_eq!(
            caught, 1,
            "round {round}: 1 = caught after a redirect, 2 = no redirect was armed, 0 = no \
             exception: {after:?}"
        );
        assert!(after.redirects > before.redirects, "{after:?}");
    }
}
