//! Operating-system and glibc specifics: clocks, timers, signals, memory, processes, the
//! module table, the loader's `dlopen` family and modules' relocations, glibc's TLS
//! internals, and the system unwinder's view of a stack. Nothing outside this module (and
//! `arch`, for register state) calls these interfaces directly.

pub(crate) mod clock;
pub(crate) mod debug_tools;
pub(crate) mod dynlib;
pub(crate) mod memory;
pub(crate) mod modules;
pub(crate) mod process;
pub(crate) mod relocations;
pub(crate) mod restart;
pub(crate) mod signal;
pub(crate) mod signal_frame;
pub(crate) mod timer;
pub(crate) mod tls;
pub(crate) mod unwind;
