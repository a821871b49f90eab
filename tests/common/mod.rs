//! The support module of the core crate's integration tests (`tests/*.rs`), one for all of
//! them. A test file declares `mod common;` and uses the names re-exported here:
//!
//! | file | what it holds |
//! | --- | --- |
//! | `child.rs` | the child-process convention ([`child_mode`], [`run_child`], [`ChildOutput`]) |
//! | `process.rs` | running a process with a hang guard (also used by the C API crate's tests) |
//! | `c.rs` | compiling `tests/c/**.c` ([`compile_c`], [`compile_c_linked`]), loading and calling it ([`Library`]) |
//! | `libset.rs` | the libset tests' counter library and its driver ([`Counter`]) |
//! | `drive.rs` | resume loops ([`finish`], [`drive`], [`storm`]), [`Stops`], [`GENEROUS`] |
//! | `workloads.rs` | deterministic CPU-bound work ([`mix`], [`spin`]) |
//! | `threads.rs` | errno, thread ids, CPU affinity, [`Worker`], [`on_two_threads`], bounded waits |

// Every test file compiles this module on its own and uses a different part of it: what one
// binary leaves unused is not dead, and `pub` marks what the test files may use.
#![allow(
    dead_code,
    unused_imports,
    unreachable_pub,
    reason = "each test binary uses a different subset of these helpers"
)]

mod c;
mod child;
mod drive;
mod libset;
mod process;
mod threads;
mod workloads;

pub use c::{BusySpin, Library, as_fn, compile_c, compile_c_linked, global_address, load_busy};
pub use child::{
    CHILD_ENV, ChildOutput, child_mode, print_child_ok, print_stats, run_child, run_child_of,
};
pub use drive::{GENEROUS, Stops, drive, finish, preemptions, storm, storm_slice};
pub use libset::{Counter, read_flag};
pub use threads::{
    HANG_LIMIT, Worker, allowed_cpus, configured_cpus, current_cpu, errno, kernel_tid,
    on_two_threads, pin_to, recv_or_deadlock, set_errno,
};
pub use workloads::{busy_spin_in_rust, mix, spin};
