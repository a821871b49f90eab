//! The standard library's critical sections, found in the executable's symbol table.
//!
//! Some of the Rust standard library's functions hold a lock or run one-time initialisation
//! while calling user code or the allocator: a function paused there would leave the lock held
//! or the initialisation half done, and its caller would deadlock or panic touching the same
//! thing (stdout, a `LazyLock`, the environment). Their code is linked into the executable, so
//! the module table alone cannot tell it apart from user code; their *names* can. At start-up
//! inger reads the executable's `.symtab` (not mapped in memory, so from `/proc/self/exe`),
//! demangles the candidates and keeps the address ranges of:
//!
//! | what | symbols |
//! | --- | --- |
//! | stdio printing (stdout/stderr locks held while user `Display` code runs) | `std::io::stdio::*` |
//! | `Once`, `OnceLock`, `LazyLock` initialisation | `std::sys::sync::once::*`, `OnceLock<..>::initialize`, `LazyLock<..>::force` |
//! | panic machinery (panic hooks, the panic count) | `std::panicking::*` except `catch_unwind`/`try` |
//! | environment access (the environment lock) | `std::env::*`, `std::sys::env::*`, `std::sys::pal::unix::os::*env*` |
//! | thread-local destructor registration | `std::sys::thread_local::*` |
//! | backtrace printing (the backtrace lock) | `std::sys::backtrace::lock`, `BacktraceLock` |
//! | channel slot writes and reads (a receiver spins on a half-written slot) | `std::sync::mpmc::*::{write, read, start_send, start_recv}` |

//! | global allocator entry points (a custom allocator may not be reentrant) | `__rust_alloc*`, `__rust_dealloc`, `__rust_realloc`, `__rg_*`, `__rdl_*` |
//!
//! A stripped executable has no `.symtab`: inger then knows none of these ranges, reports it
//! through [`crate::capabilities`] (`std_critical_sections: false`), and only the library and
//! `nopreempt` rules protect it. Inline copies of these functions in user code (generics
//! monomorphised and inlined into callers) are not covered; the out-of-line cores they call
//! (`Once::call`, the stdio lock) are.

use std::ops::Range;

use object::{Object, ObjectSymbol, SymbolKind};

/// Address ranges (sorted, load bias applied) of the standard library's critical sections.
#[cfg(test)]
pub(crate) fn std_critical_sections(load_bias: usize) -> Option<Vec<Range<usize>>> {
    critical_sections(load_bias, &[])
}

/// The standard library's critical sections plus every function whose demangled path starts
/// with one of `prefixes` (user-named code, e.g. `tokio::runtime` or `parking_lot`).
pub(crate) fn critical_sections(
    load_bias: usize,
    prefixes: &[String],
) -> Option<Vec<Range<usize>>> {
    let data = std::fs::read("/proc/self/exe").ok()?;
    let file = object::File::parse(&*data).ok()?;
    let mut ranges = Vec::new();
    let mut any_symbol = false;
    // Cheap filters before demangling: the first path segment appears in the mangled name.
    let first_segments: Vec<&str> = prefixes
        .iter()
        .map(|prefix| prefix.split("::").next().unwrap_or(prefix))
        .collect();
    for symbol in file.symbols() {
        any_symbol = true;
        if symbol.kind() != SymbolKind::Text || symbol.size() == 0 {
            continue;
        }
        let Ok(name) = symbol.name() else { continue };
        if is_critical(name) || matches_prefix(name, prefixes, &first_segments) {
            let start = load_bias.wrapping_add(symbol.address() as usize);
            ranges.push(start..start + symbol.size() as usize);
        }
    }
    if !any_symbol {
        return None;
    }
    ranges.sort_unstable_by_key(|range| range.start);
    Some(ranges)
}

/// Whether a (mangled) symbol's demangled path starts with one of `prefixes`.
fn matches_prefix(mangled: &str, prefixes: &[String], first_segments: &[&str]) -> bool {
    if prefixes.is_empty()
        || !first_segments
            .iter()
            .any(|segment| mangled.contains(segment))
    {
        return false;
    }
    rust_path(mangled).is_some_and(|path| {
        prefixes
            .iter()
            .any(|prefix| path.starts_with(prefix.as_str()))
    })
}

/// The demangled Rust path of a symbol, without the hash suffix (`{:#}`) and without the
/// leading `<` of a trait or inherent impl (`<std::io::stdio::Stdout as ..>::write_fmt`).
fn rust_path(mangled: &str) -> Option<String> {
    let demangled = rustc_demangle::try_demangle(mangled).ok()?;
    let path = format!("{demangled:#}");
    Some(path.trim_start_matches('<').to_owned())
}

/// Whether a (mangled) symbol name is one of the critical sections listed in the module docs.
pub(crate) fn is_critical(mangled: &str) -> bool {
    if let Some(rest) = mangled
        .strip_prefix("__rust_")
        .or_else(|| mangled.strip_prefix("__rg_"))
        .or_else(|| mangled.strip_prefix("__rdl_"))
    {
        return matches!(rest, "alloc" | "dealloc" | "realloc" | "alloc_zeroed");
    }
    // Cheap filter before demangling: every path we want goes through `std`.
    if !mangled.contains("std") {
        return false;
    }
    let Some(path) = rust_path(mangled) else {
        return false;
    };
    let path = path.as_str();
    if path.starts_with("std::io::stdio::")
        || path.starts_with("std::sys::sync::once::")
        || path.starts_with("std::sys::thread_local::")
        || path.starts_with("std::env::")
        || path.starts_with("std::sys::env::")
        || path.starts_with("std::sys::backtrace::lock")
        || path.starts_with("std::sys::backtrace::BacktraceLock")
    {
        return true;
    }
    if path.starts_with("std::sys::pal::unix::os::") {
        return path.contains("env");
    }
    if path.starts_with("std::panicking::") {
        return !(path.contains("catch_unwind") || path.contains("::try"));
    }
    if path.starts_with("std::sync::once_lock::OnceLock<") {
        return path.contains("initialize");
    }
    if path.starts_with("std::sync::lazy_lock::LazyLock<") {
        return path.contains("force") || path.contains("really_init");
    }
    if path.starts_with("std::sync::mpmc::") {
        // A receiver on the same thread spins on a slot whose sender was paused half-way
        // through writing it: the slot writes and reads are critical, the waits are not.
        return ["::write", "::read", "::start_send", "::start_recv"]
            .iter()
            .any(|name| path.ends_with(name));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn critical_names_are_recognised() {
        assert!(is_critical("__rust_alloc"));
        assert!(is_critical("__rdl_dealloc"));
        assert!(!is_critical("__rust_probestack"));
        assert!(is_critical("_ZN3std2io5stdio6_print17h0123456789abcdefE"));
        assert!(is_critical(
            "_ZN3std3sys4sync4once5futex4Once4call17h0123456789abcdefE"
        ));
        assert!(is_critical(
            "_ZN3std9panicking20rust_panic_with_hook17h0123456789abcdefE"
        ));
        assert!(!is_critical(
            "_ZN3std9panicking3try7do_call17h0123456789abcdefE"
        ));
        assert!(!is_critical("_ZN4core3fmt5write17h0123456789abcdefE"));
        assert!(!is_critical("_ZN5myapp4main17h0123456789abcdefE"));
    }

    #[test]
    fn this_test_binary_has_std_sections() {
        let ranges = std_critical_sections(crate::safepoint::tables::executable_load_bias())
            .expect("test binaries keep their symbol table");
        assert!(!ranges.is_empty());
        let stdout = std::io::stdout as fn() -> std::io::Stdout as usize;
        assert!(
            ranges.iter().any(|range| range.contains(&stdout)),
            "std::io::stdout is a critical section"
        );
    }
}
