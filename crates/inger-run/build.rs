//! Link options of the preload library (`libinger_preload.so`).
//!
//! The library interposes `sigaction` and the signal-mask functions for the program, and
//! the inger core linked into the same library calls those functions too. `--wrap=NAME`
//! sends every call to `NAME` *from inside the library* (the core's, and the Rust standard
//! library's) to `__wrap_NAME` instead, while the program keeps calling the exported `NAME`.
//! So the core sees its own handler for its timer signal and the program sees its own view
//! (see `src/preload/signals/mod.rs`), with no need to guess who is calling. `timer_create`
//! is wrapped (not exported) so that the library learns which timers are inger's.

fn main() {
    for symbol in [
        "sigaction",
        "sigprocmask",
        "pthread_sigmask",
        "timer_create",
    ] {
        println!("cargo:rustc-cdylib-link-arg=-Wl,--wrap={symbol}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
