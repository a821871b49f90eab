//! Processor-specific code: the context switch, the layout of a fresh stack, all access to
//! the registers saved in a signal's `ucontext`, the return-redirect stubs and the libset
//! routing stubs. Nothing outside this module touches them.

#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
mod x86_64;
#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
pub(crate) use x86_64::*;
#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
pub(crate) mod redirect {
    //! Return-address redirection (see the file for the layout and unwind information).
    pub(crate) use super::x86_64_redirect::*;
}
#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
mod x86_64_redirect;
#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
pub(crate) mod libset {
    //! Libset routing stubs and the per-context route slot (see the file for the layout).
    pub(crate) use super::x86_64_libset::*;
}
#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
mod x86_64_libset;

#[cfg(not(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu")))]
compile_error!("inger supports x86-64 Linux with glibc only");
