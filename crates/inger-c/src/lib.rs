//! The C API of inger: `libinger.so` and `libinger.a`, declared in `include/libinger.h`.
//!
//! Every exported function is `extern "C"`, catches Rust panics at the boundary
//! ([`boundary`]), checks its pointer arguments, and returns an error code (see [`errors`])
//! instead of aborting on bad input. The handle type and its life cycle are in [`handle`].
//! Calls from a signal handler are recognised by the core (`inger::in_signal_handler`, which
//! documents how and its limits) and refused with `INGER_EINHANDLER`. The header is written
//! by hand; `tests/header.rs` fails when it and this crate drift apart.

#![allow(
    non_camel_case_types,
    reason = "C names (inger_linger, inger_stats, inger_libset) mirror the header"
)]

pub mod boundary;
pub mod errors;
pub mod extras;
mod gdb;
pub mod handle;
pub mod libset;
