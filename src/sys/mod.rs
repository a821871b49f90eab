//! Operating-system and glibc specifics: clocks, timers, signals, memory, the module table.
//! Nothing outside this module calls these interfaces directly.

pub(crate) mod clock;
pub(crate) mod memory;
pub(crate) mod signal;
pub(crate) mod timer;
pub(crate) mod tls;
