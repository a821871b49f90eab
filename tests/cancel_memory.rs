//! Cancelling a paused function gives its stack's memory back: a retired stack's pages are
//! discarded. (Its own binary, because it measures the process's resident set size, which
//! other tests running at the same time would disturb.)

use std::hint::black_box;
use std::time::Duration;

/// Resident set size of this process, in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .expect("rss field")
        .parse()
        .expect("number");
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    pages * page
}

#[test]
fn cancelled_stacks_give_their_memory_back() {
    // Each paused function dirties a few pages of its stack; without the pages of cancelled
    // stacks going back to the kernel, 10,000 of them would hold tens of MiB.
    let dirty = || {
        let linger = inger::launch(
            || {
                let buffer = black_box([1u8; 16 * 1024]);
                inger::pause();
                buffer.len()
            },
            Duration::MAX,
        )
        .expect("launch");
        assert!(linger.is_continuation());
        linger
    };
    // Warm up the allocator and the runtime first.
    for _ in 0..100 {
        drop(dirty());
    }
    let start = rss_bytes();
    for _ in 0..10 {
        let batch: Vec<_> = (0..1000).map(|_| dirty()).collect();
        drop(batch);
    }
    let grown = rss_bytes().saturating_sub(start);
    assert!(
        grown < 32 << 20,
        "RSS grew by {grown} bytes after cancelling 10,000 functions that each dirtied 16 KiB"
    );
}
