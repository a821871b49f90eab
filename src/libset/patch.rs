//! Routing a libset's library: finding every relocated word of every other loaded module
//! that refers to the library (global offset table entries of calls, addresses taken,
//! pointers in static data), refusing where a copy could not stand in, and pointing the
//! function references at the stubs.
//!
//! Context: caller, or a function's stack with preemption deferred; never a signal handler.
//!
//! A reference is routed when the word the loader relocated holds an address inside the
//! original library's code: the stub for that address's offset from the library's load bias
//! continues at the same offset in the running function's copy (the copy is the same file,
//! so every function, version and IFUNC choice sits at the same offset). A `PLT` entry not
//! bound yet (lazy binding) is routed when its symbol resolves to the library's code. Other
//! references are left alone, except those that would make a copy silently wrong, which
//! fail the whole routing before anything is written ([`Error::Unroutable`]):
//!
//! - an address of the library's writable data (a global variable the program reads or
//!   writes: inside a function it would see the original's, not its copy's);
//! - a copy relocation of one of the library's data objects into the executable (the
//!   executable then holds the object, and the original writes it);
//! - a reference to one of the library's thread-local variables.
//!
//! Addresses of read-only data (constant tables) are shared safely and left alone.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::sync::Mutex;

use super::{Routing, Shared, all_libsets, routes};
use crate::error::Error;
use crate::sys::dynlib::global_symbol;
use crate::sys::modules::{self, LoadedModule};
use crate::sys::relocations::{self, Kind, Slot};

/// Serialises routing (two routings must not plan on the same words).
static ROUTING: Mutex<()> = Mutex::new(());

/// One word to rewrite.
struct Rewrite {
    module: usize,
    address: usize,
    offset: usize,
}

/// Routes every reference to `libset`'s library in the loaded modules (see the module docs).
///
/// # Errors
/// [`Error::Unroutable`] for a reference a copy cannot stand in for, [`Error::TooManyRoutes`]
/// when the stubs run out, [`Error::CopyFailed`] when a word could not be made writable.
pub(crate) fn route(libset: &'static Shared) -> Result<Routing, Error> {
    let _serial = ROUTING.lock().unwrap_or_else(|p| p.into_inner());
    let original = modules::loaded_at(libset.original_bias).ok_or_else(|| Error::CopyFailed {
        library: libset.name.clone(),
        reason: "the library is no longer loaded".to_owned(),
    })?;
    // Every libset's original and copies route nothing: they call into themselves.
    let mut skipped: BTreeSet<usize> = BTreeSet::new();
    for other in all_libsets() {
        skipped.insert(other.original_bias);
        skipped.extend(other.lock().copies.iter().map(|copy| copy.bias));
    }
    let loaded = modules::loaded();
    let mut rewrites = Vec::new();
    for (index, module) in loaded.iter().enumerate() {
        let file = module.file_name();
        if skipped.contains(&module.bias)
            || file.starts_with("ld-linux")
            || file.starts_with("linux-vdso")
            || file.starts_with("linux-gate")
        {
            continue;
        }
        for slot in relocations::slots(module) {
            if let Some(offset) = plan(libset, &original, module, &slot)? {
                rewrites.push(Rewrite {
                    module: index,
                    address: slot.address,
                    offset,
                });
            }
        }
    }
    let mut modules_touched = BTreeSet::new();
    let mut stubs = Vec::with_capacity(rewrites.len());
    for rewrite in &rewrites {
        stubs.push(routes::stub_for(libset, rewrite.offset)?);
    }
    for (rewrite, stub) in rewrites.iter().zip(stubs) {
        let module = &loaded[rewrite.module];
        // SAFETY: a word the loader relocated to an address of the library's code; the stub
        // continues at the same code for whoever calls it outside a function, and at its
        // copy inside one.
        unsafe { relocations::write(module, rewrite.address, routes::stub_address(stub)) }
            .map_err(|errno| Error::CopyFailed {
                library: libset.name.clone(),
                reason: format!(
                    "a reference in {} could not be rewritten: {}",
                    describe(module),
                    std::io::Error::from_raw_os_error(errno)
                ),
            })?;
        modules_touched.insert(rewrite.module);
    }
    let functions = libset.lock().stubs.len();
    libset
        .counters
        .references
        .fetch_add(rewrites.len() as u64, core::sync::atomic::Ordering::Relaxed);
    Ok(Routing {
        references: rewrites.len(),
        modules: modules_touched.len(),
        functions,
    })
}

/// What to do with one relocated word of `module`: route it (the library offset it points
/// at), leave it, or refuse.
fn plan(
    libset: &Shared,
    original: &LoadedModule,
    module: &LoadedModule,
    slot: &Slot,
) -> Result<Option<usize>, Error> {
    let unroutable = |reason: &'static str| Error::Unroutable {
        library: libset.name.clone(),
        module: describe(module),
        symbol: slot.symbol.clone(),
        reason,
    };
    let in_code = |address: usize| {
        original
            .executable
            .iter()
            .any(|range| range.contains(&address))
    };
    match slot.kind {
        Kind::Copy => {
            return if libset.exports.data.contains(&slot.symbol) {
                Err(unroutable("a data object the executable holds a copy of"))
            } else {
                Ok(None)
            };
        }
        Kind::TlsModule | Kind::TlsStatic => {
            let ours = libset.exports.tls.contains(&slot.symbol)
                && (slot.kind == Kind::TlsStatic || slot.value() == original.tls_modid);
            return if original.tls_modid != 0 && ours {
                Err(unroutable("a thread-local variable"))
            } else {
                Ok(None)
            };
        }
        Kind::JumpSlot | Kind::GlobDat | Kind::Absolute => {}
    }
    let value = slot.value();
    if in_code(value) {
        return Ok(Some(value - libset.original_bias));
    }
    if routes::is_stub(value) {
        return Ok(None); // routed already
    }
    let unbound =
        slot.kind == Kind::JumpSlot && module.loads.iter().any(|range| range.contains(&value));
    if unbound {
        // A lazily bound PLT entry that was never called: it would bind to the library if
        // that is where its symbol resolves.
        let Ok(name) = CString::new(slot.symbol.as_str()) else {
            return Ok(None);
        };
        if let Some(address) = libset.original.symbol(&name)
            && in_code(address)
            && global_symbol(&name).is_none_or(|global| global == address)
        {
            return Ok(Some(address - libset.original_bias));
        }
        return Ok(None);
    }
    if writable_data(original, value) {
        return Err(unroutable("a variable in its writable data"));
    }
    Ok(None)
}

/// Whether `address` is in the library's writable data (not its RELRO part, which is
/// read-only once relocated).
fn writable_data(original: &LoadedModule, address: usize) -> bool {
    let page = crate::sys::process::page_size();
    let read_only = original.relro.as_ref().is_some_and(|relro| {
        address >= relro.start & !(page - 1) && address < relro.end & !(page - 1)
    });
    !read_only
        && original
            .writable
            .iter()
            .any(|segment| segment.range.contains(&address))
}

/// How a module is named in messages.
fn describe(module: &LoadedModule) -> String {
    if module.name.is_empty() {
        "the executable".to_owned()
    } else {
        module.name.clone()
    }
}
