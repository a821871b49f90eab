//! Libsets: each preemptible function gets its own copy of a library the user names, so that
//! a non-reentrant library (global state, static buffers, one parser per process) can be
//! paused and cancelled inside without corrupting what the caller and other functions see.
//!
//! # Why
//!
//! Under the whole-stack rule (see `safepoint`) a library with global state has two bad
//! options: left preemptible, a function paused half-way through it leaves its globals
//! half-updated for the caller (or for the next function on the thread) to trip over; named
//! non-preemptible, it cannot be timed out, and state it keeps *between* calls (a scanner's
//! buffer, a parser's position) is still shared by everyone who uses it. A libset is the
//! third option, after the original libinger's libgotcha: every function that uses the
//! library gets a private instance of it, held from its first use until it finishes; the
//! caller, outside any function, keeps the original.
//!
//! # How copies are made
//!
//! libgotcha loaded copies into `dlmopen` namespaces, of which stock glibc has 16 (so 15
//! copies). A copy here is the library's file duplicated into an in-memory file
//! (`memfd_create`, holding only the bytes its segments load) and loaded from
//! `/proc/self/fd/N` with `RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND` in the base namespace: a new
//! inode and a new name, so glibc loads it again instead of returning the original (see
//! `sys::dynlib` for how glibc 2.36 recognises loaded objects), with its own globals, and no
//! fixed limit. `RTLD_DEEPBIND` makes the copy's references to its own symbols bind to
//! itself. Its dependencies (libc and the rest) stay shared.
//!
//! Copies are made on demand, up to the libset's maximum, and pooled: a function that needs
//! one takes a free copy (a few hundred nanoseconds) or loads a new one (a `dlopen`, some
//! hundreds of microseconds, plus a rebuild of the safe-point tables so that the copy's code
//! is known). [`Libset::open`] loads the first copy at once, so that a library that cannot be
//! copied fails there; [`Libset::reserve`] loads more ahead of time.
//!
//! # Preemption
//!
//! The original library is non-preemptible (as if named with
//! [`mark_non_preemptible`](crate::mark_non_preemptible)); the copies are ordinary code, so a
//! function may be paused anywhere in its own copy. Nobody else runs in that copy until the
//! function finishes, and what the copy calls (libc) keeps its own rules.
//!
//! # Reaching the copy
//!
//! - [`Libset::symbol`] returns the running function's copy's address of a symbol (taking a
//!   copy if it holds none), or the original's outside any function.
//! - [`Libset::route`] makes it transparent: every call that the program and its other
//!   libraries make to the library's functions through their global offset tables (PLT
//!   calls, calls without PLT, addresses taken, pointers in static tables) is redirected to a
//!   per-function stub (see `arch::libset`), which continues in the running function's copy,
//!   or in the original outside any function. A routed call costs three instructions and an
//!   indirect jump more than a direct one. See `patch` for what is routed and what is refused.
//!
//! What routing cannot reach, and how it fails:
//!
//! - the library's writable data used directly by another module (a global variable, a copy
//!   relocation into the executable) and its thread-local variables: a function's copy has
//!   its own, so such code would silently use the original's. [`Libset::route`] refuses with
//!   [`Error::Unroutable`], naming the module and the symbol, and changes nothing. Constant
//!   data is shared safely.
//! - function pointers obtained before routing (from `dlsym`, or copied out of a global
//!   offset table or a static table into other memory): they keep calling the original.
//!   Use [`Libset::symbol`] where the program looks symbols up itself.
//! - modules loaded after routing: their references bind to the original. Call
//!   [`Libset::route`] again after loading them (it only rewrites what is not routed yet).
//! - the addresses of routed functions are their stubs' addresses for every routed module
//!   (so they compare equal among themselves), not the library's own `&f`.
//! - a lazily bound PLT entry that another thread binds at the very moment it is routed may
//!   be bound to the original (route before starting threads that call the library, or link
//!   with `-z now`).
//! - a copy binds to its own dependencies first (`RTLD_DEEPBIND`): a program that interposes
//!   a function the library calls (a preloaded allocator replacing `malloc`) is bypassed by
//!   the copies.
//! - at most [`MAX_ROUTED_FUNCTIONS`] distinct functions of named libraries can be routed in
//!   a process ([`Error::TooManyRoutes`]).
//!
//! # Life of a copy
//!
//! A function holds one copy of each libset it uses, from its first routed call (or
//! [`Libset::symbol`], [`Libset::acquire`]) until it finishes. When it returns, the copy goes
//! back to the pool as it left it, as a library used by successive calls would be. When it
//! is cancelled (discarded, unwound by a cooperative cancellation) or panics, the copy is
//! **renewed** first: its writable data is restored from a snapshot taken after loading (see
//! `copies`), so the next function gets a clean copy. Renewal cannot reach memory the
//! library allocated and pointed to from its globals: that leaks, as do descriptors it
//! opened. A function that finds every copy held by others waits: a routed call pauses the
//! function (it comes back to its resumer as a yield) and tries again when resumed;
//! [`Libset::acquire`] returns [`Error::CopyLimit`] instead.
//!
//! Copies stay loaded for the life of the process. Each costs the library's loadable size in
//! memory (its code is not shared with the original's, since it comes from another file),
//! its writable data, its snapshot and one file descriptor.
//!
//! # Context
//!
//! The API runs in the caller's context or on a function's stack, never in a signal handler
//! (opening, loading and routing take the loader's lock and allocate). Only the stubs' fast
//! path is async-signal-safe; the first routed call of a function takes locks, so a signal
//! handler interrupting a function must not make it.

mod copies;
mod image;
mod patch;
mod routes;

use core::ffi::c_void;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::collections::HashMap;
use std::ffi::CString;
use std::ops::Range;
use std::sync::{Mutex, MutexGuard};

use crate::error::Error;
use crate::runtime::Lpf;
use crate::sys::dynlib::{Handle, SourceFile, mapped_file_id};
use crate::sys::modules;
use copies::LoadedCopy;
use image::{Exports, LibraryImage};

/// How many distinct functions of named libraries can be routed in one process.
pub const MAX_ROUTED_FUNCTIONS: usize = crate::arch::libset::MAX_ROUTES;

/// Libraries that cannot be copied: the runtime every copy depends on.
const NOT_COPYABLE: &[&str] = &[
    "ld-linux",
    "libc.so",
    "libpthread",
    "libdl.so",
    "libgcc_s",
    "libstdc++",
];

/// A named library whose copies preemptible functions use (see the module docs of
/// `inger::libset` in the source, and the README).
///
/// A `Libset` is a cheap handle to state that lives for the process: copy it freely.
///
/// ```no_run
/// use std::time::Duration;
///
/// // A non-reentrant library the program links (here: a flex scanner).
/// let scanner = inger::Libset::open("libscanner.so", 64)?;
/// scanner.route()?; // calls into it now reach the running function's own copy
/// let linger = inger::launch(|| { /* call the scanner as usual */ }, Duration::from_micros(50))?;
/// // Paused inside its copy? The caller may use the scanner meanwhile: it has the original.
/// drop(linger); // cancelling renews the copy for the next function
/// # Ok::<(), inger::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct Libset {
    shared: &'static Shared,
}

impl PartialEq for Libset {
    fn eq(&self, other: &Libset) -> bool {
        core::ptr::eq(self.shared, other.shared)
    }
}

impl Eq for Libset {}

impl core::fmt::Debug for Libset {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Libset")
            .field("library", &self.shared.name)
            .field("path", &self.shared.path)
            .field("max_copies", &self.max_copies())
            .finish()
    }
}

/// Counters of one libset (see [`Libset::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LibsetStats {
    /// Copies loaded so far (they stay loaded).
    pub copies_loaded: u64,
    /// Copies held by functions right now.
    pub copies_in_use: u64,
    /// Copies renewed after a function was cancelled (or panicked) holding them.
    pub copies_renewed: u64,
    /// Times a function took a copy.
    pub copies_taken: u64,
    /// Times a routed call found every copy held and paused its function to wait.
    pub copy_waits: u64,
    /// Distinct functions of the library routed to stubs.
    pub routed_functions: u64,
    /// References (global offset table entries, pointers in data) rewritten by routing.
    pub routed_references: u64,
    /// Bytes a renewal copies back into a copy (its initialised writable data; zero pages
    /// are handed back to the kernel instead).
    pub renew_bytes: u64,
}

/// What a [`Libset::route`] call rewrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Routing {
    /// References rewritten by this call (0 when everything was routed already).
    pub references: usize,
    /// Modules in which this call rewrote references.
    pub modules: usize,
    /// Distinct functions of the library routed so far, by every call.
    pub functions: usize,
}

/// The state of one libset, for the life of the process.
pub(crate) struct Shared {
    /// The name it was opened by.
    pub(crate) name: String,
    /// The file of the original.
    path: String,
    pub(crate) original: Handle,
    pub(crate) original_bias: usize,
    /// The library's extent, as offsets from a load bias (the same in every instance).
    extent: Range<usize>,
    source: SourceFile,
    image: LibraryImage,
    pub(crate) exports: Exports,
    max_copies: AtomicUsize,
    state: Mutex<State>,
    pub(crate) counters: Counters,
}

/// What the lock of a libset protects.
pub(crate) struct State {
    /// Every copy loaded (never unloaded; indices are stable).
    #[allow(
        clippy::vec_box,
        reason = "a copy keeps one address for its life while the list grows"
    )]
    pub(crate) copies: Vec<Box<LoadedCopy>>,
    /// Indices of the copies no function holds.
    free: Vec<usize>,
    /// Copies being loaded right now (outside the lock).
    loading: usize,
    /// The stubs routing this library's functions.
    pub(crate) stubs: Vec<usize>,
    /// The stub of each routed function, by its offset in the library.
    pub(crate) stub_by_offset: HashMap<usize, usize>,
}

/// A libset's counters.
#[derive(Default)]
pub(crate) struct Counters {
    loaded: AtomicU64,
    in_use: AtomicU64,
    renewed: AtomicU64,
    taken: AtomicU64,
    pub(crate) waits: AtomicU64,
    pub(crate) references: AtomicU64,
}

/// Every libset opened, in order.
static LIBSETS: Mutex<Vec<&'static Shared>> = Mutex::new(Vec::new());

/// Every libset opened so far.
pub(crate) fn all_libsets() -> Vec<&'static Shared> {
    LIBSETS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

impl Libset {
    /// The libset of `library`: a soname (`"libz.so.1"`) or path of a library the program has
    /// loaded (it is loaded with `RTLD_NOW | RTLD_LOCAL` if it is not), with at most
    /// `max_copies` copies. Loads the first copy at once. Opening a library that already has
    /// a libset returns that libset, whose maximum becomes the larger of the two.
    ///
    /// From now on the library is non-preemptible (its copies are not).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `max_copies == 0`; [`Error::LibraryNotFound`];
    /// [`Error::InitialExecTls`] if the library uses initial-exec TLS; [`Error::CopyFailed`]
    /// if it cannot be copied (libc, the loader, the executable, the library inger itself is
    /// in, a file on disk that is no longer the one loaded, a copy the loader refused);
    /// [`Error::InSignalHandler`] inside a signal handler.
    pub fn open(library: &str, max_copies: usize) -> Result<Libset, Error> {
        if max_copies == 0 {
            return Err(Error::InvalidConfig(format!(
                "the libset of {library} needs at least one copy"
            )));
        }
        crate::runtime::refuse_in_signal_handler()?;
        let _section = crate::runtime::RuntimeSection::enter();
        routes::init();
        let not_found = |reason: String| Error::LibraryNotFound {
            library: library.to_owned(),
            reason,
        };
        let original = Handle::open(library).map_err(not_found)?;
        let map = original.link_map().map_err(not_found)?;
        let mut registry = LIBSETS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = registry
            .iter()
            .find(|shared| shared.original_bias == map.bias)
        {
            existing.max_copies.fetch_max(max_copies, Relaxed);
            return Ok(Libset { shared: existing });
        }
        let shared = Shared::new(library, original, map.bias, &map.name, max_copies)?;
        let shared: &'static Shared = Box::leak(Box::new(shared));
        crate::safepoint::tables::init();
        crate::safepoint::tables::mark_module_non_preemptible(map.bias);
        shared.reserve(1)?;
        registry.push(shared);
        Ok(Libset { shared })
    }

    /// The name the libset was opened by.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The file of the original library.
    pub fn path(&self) -> &str {
        &self.shared.path
    }

    /// The most copies this libset loads.
    pub fn max_copies(&self) -> usize {
        self.shared.max_copies.load(Relaxed)
    }

    /// Loads copies ahead of time until `copies` are loaded (at most the maximum), so that
    /// functions find them in the pool.
    ///
    /// # Errors
    /// [`Error::CopyFailed`] if a copy could not be loaded.
    pub fn reserve(&self, copies: usize) -> Result<(), Error> {
        crate::runtime::refuse_in_signal_handler()?;
        let _section = crate::runtime::RuntimeSection::enter();
        self.shared.reserve(copies)
    }

    /// Makes the running preemptible function hold a copy now (if it holds none yet), so that
    /// running out of copies is an error here rather than a wait in a routed call. Returns
    /// whether a function is running (outside any function there is nothing to hold: the
    /// caller uses the original).
    ///
    /// # Errors
    /// [`Error::CopyLimit`] when every copy is held by other functions; [`Error::CopyFailed`]
    /// if a new copy could not be loaded.
    pub fn acquire(&self) -> Result<bool, Error> {
        Ok(routes::acquire(self.shared)?.is_some())
    }

    /// Whether the running preemptible function holds a copy of this library.
    pub fn holds_copy(&self) -> bool {
        routes::holding(self.shared).is_some()
    }

    /// The address of `symbol` (a function or a variable) in the running function's copy of
    /// the library, taking a copy if it holds none; outside any function, in the original.
    /// The address stays valid in that function until it finishes: do not keep it longer.
    ///
    /// # Errors
    /// [`Error::SymbolNotFound`] unless the library itself defines `symbol`; as for
    /// [`acquire`](Self::acquire).
    pub fn symbol(&self, symbol: &str) -> Result<*mut c_void, Error> {
        let missing = || Error::SymbolNotFound {
            library: self.shared.name.clone(),
            symbol: symbol.to_owned(),
        };
        let name = CString::new(symbol).map_err(|_| missing())?;
        let (handle, bias) = match routes::acquire(self.shared)? {
            Some(held) => (held.handle, held.bias),
            None => (self.shared.original, self.shared.original_bias),
        };
        let address = handle.symbol(&name).ok_or_else(missing)?;
        let own = self.shared.extent.contains(&address.wrapping_sub(bias))
            || self.shared.exports.tls.contains(symbol);
        if !own {
            return Err(missing()); // defined by a dependency, not the library
        }
        Ok(address as *mut c_void)
    }

    /// Routes the calls that the program and its other loaded libraries make into this
    /// library to the running function's copy (see the module docs for what is routed and
    /// what is refused). Calling it again routes what was loaded since.
    ///
    /// # Errors
    /// [`Error::Unroutable`] (nothing is changed then), [`Error::TooManyRoutes`],
    /// [`Error::CopyFailed`] if a reference could not be rewritten.
    pub fn route(&self) -> Result<Routing, Error> {
        crate::runtime::refuse_in_signal_handler()?;
        let _section = crate::runtime::RuntimeSection::enter();
        patch::route(self.shared)
    }

    /// This libset's counters.
    pub fn stats(&self) -> LibsetStats {
        let counters = &self.shared.counters;
        let (routed_functions, renew_bytes) = {
            // Never paused holding the lock: its caller on this thread may take it next.
            let _section = crate::runtime::RuntimeSection::enter();
            let state = self.shared.lock();
            let renew_bytes = state.copies.first().map_or(0, |copy| copy.snapshot_bytes());
            (state.stubs.len() as u64, renew_bytes as u64)
        };
        LibsetStats {
            copies_loaded: counters.loaded.load(Relaxed),
            copies_in_use: counters.in_use.load(Relaxed),
            copies_renewed: counters.renewed.load(Relaxed),
            copies_taken: counters.taken.load(Relaxed),
            copy_waits: counters.waits.load(Relaxed),
            routed_functions,
            routed_references: counters.references.load(Relaxed),
            renew_bytes,
        }
    }
}

impl Shared {
    /// Checks that `library` (loaded at `bias` from `path`) can be copied and reads what its
    /// copies need.
    fn new(
        library: &str,
        original: Handle,
        bias: usize,
        path: &str,
        max_copies: usize,
    ) -> Result<Shared, Error> {
        let refuse = |reason: String| Error::CopyFailed {
            library: library.to_owned(),
            reason,
        };
        if path.is_empty() {
            return Err(refuse("it is the executable".to_owned()));
        }
        let file_name = path.rsplit('/').next().unwrap_or(path);
        if NOT_COPYABLE.iter().any(|stem| file_name.starts_with(stem)) {
            return Err(refuse(format!(
                "{file_name} is part of the C runtime every copy depends on"
            )));
        }
        let module = modules::loaded_at(bias)
            .ok_or_else(|| refuse("it is missing from the loader's module list".to_owned()))?;
        let ours = Libset::open as fn(&str, usize) -> Result<Libset, Error> as usize;
        if module.loads.iter().any(|load| load.contains(&ours)) {
            return Err(refuse("inger itself is linked into it".to_owned()));
        }
        let source = SourceFile::open(path).map_err(refuse)?;
        let first_load = module.loads.first().map_or(0, |load| load.start);
        if mapped_file_id(first_load) != Some(source.id) {
            return Err(refuse(format!(
                "{path} on disk is not the file that was loaded (was it replaced since?)"
            )));
        }
        let header = source.read_at(0, 64).map_err(refuse)?;
        let (phdrs_offset, count) = image::program_headers(&header).map_err(refuse)?;
        let phdrs = source.read_at(phdrs_offset, count * 56).map_err(refuse)?;
        let image = image::parse(phdrs_offset, &phdrs, count, |offset, len| {
            source.read_at(offset, len)
        })
        .map_err(refuse)?;
        if image.static_tls {
            return Err(Error::InitialExecTls {
                library: library.to_owned(),
            });
        }
        let whole = source.read_at(0, source.size as usize).map_err(refuse)?;
        let exports = image::exports(&whole).map_err(refuse)?;
        let start = module
            .loads
            .iter()
            .map(|load| load.start)
            .min()
            .unwrap_or(0);
        let end = module.loads.iter().map(|load| load.end).max().unwrap_or(0);
        Ok(Shared {
            name: library.to_owned(),
            path: path.to_owned(),
            original,
            original_bias: bias,
            extent: start - bias..end - bias,
            source,
            image,
            exports,
            max_copies: AtomicUsize::new(max_copies),
            state: Mutex::new(State {
                copies: Vec::new(),
                free: Vec::new(),
                loading: 0,
                stubs: Vec::new(),
                stub_by_offset: HashMap::new(),
            }),
            counters: Counters::default(),
        })
    }

    /// The libset's state.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads one more copy (outside the lock), and makes its code known to the safe-point
    /// tables so that functions may be paused in it.
    fn load_copy(&self) -> Result<LoadedCopy, Error> {
        let file_name = self.path.rsplit('/').next().unwrap_or(&self.path);
        let copy = LoadedCopy::load(
            &self.source,
            &self.image,
            &format!("inger-libset:{file_name}"),
            self.original_bias,
        )
        .map_err(|reason| Error::CopyFailed {
            library: self.name.clone(),
            reason,
        })?;
        crate::safepoint::tables::refresh(false);
        self.counters.loaded.fetch_add(1, Relaxed);
        Ok(copy)
    }

    /// See [`Libset::reserve`].
    fn reserve(&self, copies: usize) -> Result<(), Error> {
        let wanted = copies.min(self.max_copies.load(Relaxed));
        loop {
            {
                let mut state = self.lock();
                if state.copies.len() + state.loading >= wanted {
                    return Ok(());
                }
                state.loading += 1;
            }
            let loaded = self.load_copy();
            let mut state = self.lock();
            state.loading -= 1;
            let copy = loaded?;
            let index = state.copies.len();
            state.free.push(index);
            state.copies.push(Box::new(copy));
        }
    }

    /// Takes a copy for a function: a free one, else a new one if the maximum allows.
    pub(crate) fn take(&'static self) -> Result<routes::Held, Error> {
        let held = |state: &State, copy: usize| routes::Held {
            libset: self,
            copy,
            bias: state.copies[copy].bias,
            handle: state.copies[copy].handle,
        };
        {
            let mut state = self.lock();
            if let Some(copy) = state.free.pop() {
                self.counters.taken.fetch_add(1, Relaxed);
                self.counters.in_use.fetch_add(1, Relaxed);
                return Ok(held(&state, copy));
            }
            let max_copies = self.max_copies.load(Relaxed);
            if state.copies.len() + state.loading >= max_copies {
                return Err(Error::CopyLimit {
                    library: self.name.clone(),
                    max_copies,
                });
            }
            state.loading += 1;
        }
        let loaded = self.load_copy();
        let mut state = self.lock();
        state.loading -= 1;
        let copy = loaded?;
        let index = state.copies.len();
        state.copies.push(Box::new(copy));
        self.counters.taken.fetch_add(1, Relaxed);
        self.counters.in_use.fetch_add(1, Relaxed);
        Ok(held(&state, index))
    }

    /// Returns copy `copy` to the pool, renewed first if `renew`.
    pub(crate) fn give_back(&self, copy: usize, renew: bool) {
        let mut state = self.lock();
        if renew {
            state.copies[copy].renew();
            self.counters.renewed.fetch_add(1, Relaxed);
        }
        state.free.push(copy);
        self.counters.in_use.fetch_sub(1, Relaxed);
    }
}

/// Releases the copies of a function that finished on its own stack (see
/// `routes::finished`). Context: function stack.
pub(crate) fn function_finished(lpf: &Lpf, panicked: bool) {
    routes::finished(lpf, panicked);
}

/// Releases, renewed, the copies of a paused function being discarded (see
/// `routes::abandoned`). Context: caller.
pub(crate) fn function_abandoned(lpf: &Lpf) {
    routes::abandoned(lpf);
}
