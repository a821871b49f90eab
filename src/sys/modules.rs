//! The dynamic loader's table of loaded modules (their segments, as libsets and the
//! safe-point tables need them), symbol lookups in them, and the thread that refreshes
//! inger's view of them.
//!
//! Context: caller (start-up, refresher thread), except [`Refresher::request`], which the
//! signal handler calls.

use core::ffi::{CStr, c_int, c_void};
use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// What `dl_iterate_phdr` reports about one loaded module, with its memory viewed in place.
pub(crate) struct LoadedModule {
    /// The path the loader knows it by (empty for the executable).
    pub(crate) name: String,
    /// Load bias: added to the module's virtual addresses to get run-time addresses.
    pub(crate) bias: usize,
    /// Run-time address ranges of its executable `PT_LOAD` segments.
    pub(crate) executable: Vec<Range<usize>>,
    /// Its `PT_GNU_EH_FRAME` segment (`.eh_frame_hdr`), if any.
    pub(crate) eh_frame_hdr: Option<Range<usize>>,
    /// Run-time address ranges of all its `PT_LOAD` segments.
    pub(crate) loads: Vec<Range<usize>>,
    /// Its writable `PT_LOAD` segments.
    pub(crate) writable: Vec<WritableSegment>,
    /// Its `PT_GNU_RELRO` range: read-only once the loader has relocated it.
    pub(crate) relro: Option<Range<usize>>,
    /// Run-time address of its `PT_DYNAMIC` array, if any.
    pub(crate) dynamic: Option<usize>,
    /// Its TLS module id (0: no thread-local storage).
    pub(crate) tls_modid: usize,
}

/// A writable `PT_LOAD` segment of a loaded module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WritableSegment {
    /// Its run-time address range (`p_memsz` bytes).
    pub(crate) range: Range<usize>,
    /// Where its bytes from the file end (`p_filesz`): beyond, the loader zero-filled it, and
    /// whole pages beyond are anonymous memory.
    pub(crate) file_end: usize,
}

impl LoadedModule {
    /// The file name of the module (the last path component).
    pub(crate) fn file_name(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or("")
    }

    /// The bytes of `range` if it lies inside one of this module's loaded segments.
    /// Modules inger runs code of are never unloaded (see the README's limits), so the
    /// view lives as long as the process.
    pub(crate) fn loaded_bytes(&self, range: Range<usize>) -> Option<&'static [u8]> {
        if !self
            .loads
            .iter()
            .any(|load| load.start <= range.start && range.end <= load.end)
        {
            return None;
        }
        // SAFETY: the range lies inside a loaded, readable segment of a module that stays
        // loaded (see above).
        Some(unsafe { core::slice::from_raw_parts(range.start as *const u8, range.len()) })
    }

    /// The end of the loaded segment that contains `address`.
    pub(crate) fn segment_end(&self, address: usize) -> Option<usize> {
        self.loads
            .iter()
            .find(|load| load.contains(&address))
            .map(|load| load.end)
    }
}

/// `dlpi_adds + dlpi_subs`: changes whenever a module is loaded or unloaded.
pub(crate) fn generation() -> u64 {
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: valid info and our out-pointer.
        let (info, out) = unsafe { (&*info, &mut *data.cast::<u64>()) };
        *out = info.dlpi_adds.wrapping_add(info.dlpi_subs);
        1 // the counters are process-wide: one module is enough
    }
    let mut generation = 0u64;
    // SAFETY: callback and data match dl_iterate_phdr's contract.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut generation).cast()) };
    generation
}

/// Every loaded module, the executable first.
pub(crate) fn loaded() -> Vec<LoadedModule> {
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: valid info and our out-pointer.
        let (info, out) = unsafe { (&*info, &mut *data.cast::<Vec<LoadedModule>>()) };
        let name = if info.dlpi_name.is_null() {
            String::new()
        } else {
            // SAFETY: a non-null dlpi_name is NUL-terminated.
            unsafe { CStr::from_ptr(info.dlpi_name) }
                .to_string_lossy()
                .into_owned()
        };
        let bias = info.dlpi_addr as usize;
        let mut module = LoadedModule {
            name,
            bias,
            executable: Vec::new(),
            eh_frame_hdr: None,
            loads: Vec::new(),
            writable: Vec::new(),
            relro: None,
            dynamic: None,
            tls_modid: info.dlpi_tls_modid,
        };
        for index in 0..info.dlpi_phnum as usize {
            // SAFETY: dlpi_phdr points to dlpi_phnum headers.
            let header = unsafe { &*info.dlpi_phdr.add(index) };
            let start = bias + header.p_vaddr as usize;
            let range = start..start + header.p_memsz as usize;
            match header.p_type {
                libc::PT_LOAD => {
                    if header.p_flags & libc::PF_X != 0 {
                        module.executable.push(range.clone());
                    }
                    if header.p_flags & libc::PF_W != 0 {
                        module.writable.push(WritableSegment {
                            range: range.clone(),
                            file_end: start + header.p_filesz as usize,
                        });
                    }
                    module.loads.push(range);
                }
                libc::PT_GNU_EH_FRAME => module.eh_frame_hdr = Some(range),
                libc::PT_GNU_RELRO => module.relro = Some(range),
                libc::PT_DYNAMIC => module.dynamic = Some(start),
                _ => {}
            }
        }
        out.push(module);
        0
    }
    let mut modules = Vec::new();
    // SAFETY: callback and data match dl_iterate_phdr's contract.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut modules).cast()) };
    modules
}

/// The loaded module whose load bias is `bias`, if any.
pub(crate) fn loaded_at(bias: usize) -> Option<LoadedModule> {
    loaded().into_iter().find(|module| module.bias == bias)
}

/// The executable's load bias (its `dlpi_addr`).
#[cfg(test)]
pub(crate) fn executable_load_bias() -> usize {
    loaded().first().map_or(0, |module| module.bias)
}

/// The address the program's symbol lookup gives `name` (`dlsym(RTLD_DEFAULT)`, which for an
/// IFUNC is the implementation its resolver selected for this processor).
pub(crate) fn resolve(name: &CStr) -> Option<usize> {
    // SAFETY: dlsym with a NUL-terminated name has no other preconditions.
    let address = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as usize;
    (address != 0).then_some(address)
}

/// The address range of the function `name` as the program's symbol lookup resolves it
/// (`dlsym(RTLD_DEFAULT)`, which for an IFUNC is the implementation it selected), with its
/// size from the dynamic symbol table; `None` unless it lies inside `within`.
pub(crate) fn function_range(name: &CStr, within: &Range<usize>) -> Option<Range<usize>> {
    const RTLD_DL_SYMENT: c_int = 1;
    let address = resolve(name)?;
    if !within.contains(&address) {
        return None;
    }
    // SAFETY: zeroed Dl_info is a valid out-parameter.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    let mut symbol: *const libc::Elf64_Sym = core::ptr::null();
    // SAFETY: dladdr1 with RTLD_DL_SYMENT stores a pointer to the symbol's ElfW(Sym).
    let found = unsafe {
        libc::dladdr1(
            address as *const c_void,
            &mut info,
            (&raw mut symbol).cast(),
            RTLD_DL_SYMENT,
        )
    };
    if found == 0 {
        return None;
    }
    // SAFETY: on success `symbol` points into the module's dynamic symbol table.
    let size = unsafe { symbol.as_ref() }.map_or(0, |symbol| symbol.st_size as usize);
    (size > 0).then(|| address..address + size)
}

/// A background thread that runs a rebuild whenever it is asked to, so that the signal
/// handler, which must not allocate, can ask for one.
pub(crate) struct Refresher {
    fd: AtomicI32,
    requested: AtomicBool,
}

impl Refresher {
    /// A refresher with no thread yet.
    pub(crate) const fn new() -> Self {
        Refresher {
            fd: AtomicI32::new(-1),
            requested: AtomicBool::new(false),
        }
    }

    /// Starts the thread, which calls `rebuild` once per batch of requests. If the thread or
    /// its pipe cannot be created, requests are ignored (code in unknown modules then stays
    /// non-preemptible until the next explicit rebuild).
    pub(crate) fn start(&'static self, rebuild: fn()) {
        let mut fds = [0 as c_int; 2];
        // SAFETY: `fds` is a valid out-parameter for two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return;
        }
        let read_fd = fds[0];
        // The reader blocks: clear O_NONBLOCK on its end only.
        // SAFETY: plain fcntl on a descriptor we own.
        unsafe { libc::fcntl(read_fd, libc::F_SETFL, 0) };
        // The refresher must never run the program's signal handlers (a process-directed
        // signal the program's threads block would otherwise land here): it starts with every
        // signal blocked, inherited from this thread's mask for the moment of the spawn.
        // SAFETY: full/saved sets are valid; only this thread's mask changes, and is restored.
        let saved = unsafe {
            let mut all: libc::sigset_t = core::mem::zeroed();
            libc::sigfillset(&mut all);
            let mut saved: libc::sigset_t = core::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut saved);
            saved
        };
        let spawned = std::thread::Builder::new()
            .name("inger-modules".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let mut buffer = [0u8; 64];
                loop {
                    // SAFETY: reading into a local buffer from our pipe.
                    let n =
                        unsafe { libc::read(read_fd, buffer.as_mut_ptr().cast(), buffer.len()) };
                    if n == 0 || (n < 0 && crate::error::last_errno() != libc::EINTR) {
                        return;
                    }
                    self.requested.store(false, Ordering::Relaxed);
                    rebuild();
                }
            });
        // SAFETY: restores the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &saved, core::ptr::null_mut()) };
        if spawned.is_ok() {
            self.fd.store(fds[1], Ordering::Relaxed);
        }
    }

    /// Asks for a rebuild. Context: signal handler or caller; async-signal-safe: one `write`
    /// to a pipe, at most once until the thread has run.
    pub(crate) fn request(&self) {
        let fd = self.fd.load(Ordering::Relaxed);
        if fd >= 0 && !self.requested.swap(true, Ordering::Relaxed) {
            // SAFETY: writing one byte from a local to a pipe we own; failure (a full pipe)
            // means a request is already queued.
            unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
        }
    }
}
