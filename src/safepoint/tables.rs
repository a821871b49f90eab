//! The tables the safe-point check reads: every loaded module's code ranges and unwind
//! information, which modules are non-preemptible, the standard library's critical sections,
//! and the blocking system-call wrappers.
//!
//! Tables are built outside any signal handler (at start-up, and by a background thread when
//! the handler meets code in no known module) and published through one atomic pointer. A
//! handler reads whichever tables were current when it started; replaced tables are never
//! freed, since a handler on another thread may still be reading them (a refresh happens only
//! when modules were loaded or unloaded, so this is bounded by the program's `dlopen`s).

use core::ffi::{CStr, c_int, c_void};
use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, Ordering};
use std::sync::{Mutex, Once};

use framehop::x86_64::UnwinderX86_64;
use framehop::{ExplicitModuleSectionInfo, Module, MustNotAllocateDuringUnwind, Unwinder};

use super::symbols;

/// The unwinder type: module data borrowed from the loaded images, no allocation while
/// unwinding.
pub(crate) type StackUnwinder = UnwinderX86_64<&'static [u8], MustNotAllocateDuringUnwind>;

/// What a code address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Ordinary code: may be paused.
    Preemptible,
    /// A non-preemptible library (loader, libc, libgcc_s, libstdc++, or named by the user).
    Library,
    /// One of the standard library's critical sections.
    StdSection,
    /// No loaded module that inger knows of.
    Unknown,
}

struct CodeRange {
    range: Range<usize>,
    preemptible: bool,
}

/// One published version of the tables.
pub(crate) struct Tables {
    code: Vec<CodeRange>,
    std_sections: Vec<Range<usize>>,
    blocking: Vec<Range<usize>>,
    pub(crate) unwinder: StackUnwinder,
    /// Whether the executable's symbol table was found (see `symbols`).
    pub(crate) std_symbols: bool,
    /// `dlpi_adds + dlpi_subs` when built: unchanged means no refresh is needed.
    generation: u64,
}

impl Tables {
    /// What `address` belongs to. Async-signal-safe (binary searches over immutable data).
    pub(crate) fn classify(&self, address: usize) -> Class {
        let index = self
            .code
            .partition_point(|code| code.range.start <= address);
        let Some(code) = index.checked_sub(1).map(|i| &self.code[i]) else {
            return Class::Unknown;
        };
        if !code.range.contains(&address) {
            return Class::Unknown;
        }
        if !code.preemptible {
            return Class::Library;
        }
        if contains(&self.std_sections, address) {
            return Class::StdSection;
        }
        Class::Preemptible
    }

    /// Whether `address` is inside a blocking system-call wrapper at a cancellation point.
    pub(crate) fn is_blocking_wrapper(&self, address: usize) -> bool {
        contains(&self.blocking, address)
    }
}

fn contains(sorted: &[Range<usize>], address: usize) -> bool {
    let index = sorted.partition_point(|range| range.start <= address);
    index > 0 && sorted[index - 1].contains(&address)
}

/// File-name stems of the libraries never paused inside.
const NON_PREEMPTIBLE: &[&str] = &[
    "ld-linux",
    "libc.so",
    "libpthread",
    "libdl.so",
    "libgcc_s",
    "libstdc++",
];

/// glibc functions that block in a system call at a POSIX cancellation point. glibc supports
/// asynchronous interruption there, and the call restarts (or reports `EINTR`) on resume.
const BLOCKING_WRAPPERS: &[&CStr] = &[
    c"read",
    c"write",
    c"readv",
    c"writev",
    c"pread",
    c"pread64",
    c"pwrite",
    c"pwrite64",
    c"recv",
    c"recvfrom",
    c"recvmsg",
    c"recvmmsg",
    c"send",
    c"sendto",
    c"sendmsg",
    c"sendmmsg",
    c"accept",
    c"accept4",
    c"connect",
    c"poll",
    c"ppoll",
    c"select",
    c"pselect",
    c"epoll_wait",
    c"epoll_pwait",
    c"nanosleep",
    c"clock_nanosleep",
    c"__clock_nanosleep",
    c"sleep",
    c"usleep",
    c"pause",
    c"sigsuspend",
    c"sigwaitinfo",
    c"sigtimedwait",
    c"wait",
    c"waitpid",
    c"waitid",
    c"wait4",
    c"syscall",
    c"msgrcv",
    c"msgsnd",
    c"open",
    c"open64",
    c"openat",
    c"openat64",
    c"fsync",
    c"fdatasync",
    c"tcdrain",
    c"fcntl",
    c"fcntl64",
    c"lockf",
];

static TABLES: AtomicPtr<Tables> = AtomicPtr::new(core::ptr::null_mut());
static INIT: Once = Once::new();
static EXTRA_NON_PREEMPTIBLE: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Path prefixes of code in the executable that must never be paused (user-named).
static EXTRA_SYMBOL_PREFIXES: Mutex<Vec<String>> = Mutex::new(Vec::new());
static REFRESH_FD: AtomicI32 = AtomicI32::new(-1);
static REFRESH_REQUESTED: AtomicBool = AtomicBool::new(false);
static BUILD: Mutex<()> = Mutex::new(());

/// The current tables, if built. Async-signal-safe.
pub(crate) fn current() -> Option<&'static Tables> {
    // SAFETY: published tables are never freed.
    unsafe { TABLES.load(Ordering::Acquire).as_ref() }
}

/// Builds the first tables and starts the refresher thread, once per process. Call outside
/// signal handlers.
pub(crate) fn init() {
    INIT.call_once(|| {
        if let Ok(prefixes) = std::env::var("INGER_NONPREEMPTIBLE_SYMBOLS") {
            let mut extra = EXTRA_SYMBOL_PREFIXES
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            extra.extend(
                prefixes
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(String::from),
            );
        }
        if let Ok(names) = std::env::var("INGER_NONPREEMPTIBLE") {
            let mut extra = EXTRA_NON_PREEMPTIBLE
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            extra.extend(
                names
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(String::from),
            );
        }
        refresh(true);
        start_refresher();
    });
}

/// Asks the refresher thread to rebuild the tables (code was found in no known module).
/// Async-signal-safe: one `write` to a pipe, at most once until the refresher has run.
pub(crate) fn request_refresh() {
    let fd = REFRESH_FD.load(Ordering::Relaxed);
    if fd >= 0 && !REFRESH_REQUESTED.swap(true, Ordering::Relaxed) {
        // SAFETY: writing one byte from a local to a pipe we own; failure (a full pipe)
        // means a request is already queued.
        unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
}

/// Declares a library (by file name or its stem, e.g. `"libfoo"` or `"libfoo.so.1"`) whose
/// code must never be paused, and rebuilds the tables. Also read from the comma-separated
/// `INGER_NONPREEMPTIBLE` environment variable at start-up.
pub(crate) fn mark_non_preemptible(name: &str) {
    {
        let mut extra = EXTRA_NON_PREEMPTIBLE
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        extra.push(name.to_owned());
    }
    refresh(true);
}

/// Declares code in the executable that must never be paused, by demangled path prefix
/// (`"tokio::runtime"`, `"parking_lot"`), and rebuilds the tables. Also read, comma-separated,
/// from `INGER_NONPREEMPTIBLE_SYMBOLS` at start-up.
pub(crate) fn mark_non_preemptible_symbols(prefixes: &[&str]) {
    {
        let mut extra = EXTRA_SYMBOL_PREFIXES
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let before = extra.len();
        for prefix in prefixes {
            if !prefix.is_empty() && !extra.iter().any(|known| known == prefix) {
                extra.push((*prefix).to_owned());
            }
        }
        if extra.len() == before {
            return;
        }
    }
    refresh(true);
}

/// Rebuilds and publishes the tables if modules changed since the last build (or `force`).
pub(crate) fn refresh(force: bool) {
    let _serial = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let generation = module_generation();
    if !force && current().is_some_and(|tables| tables.generation == generation) {
        return;
    }
    let tables = Box::new(build(generation));
    // The previous tables are leaked on purpose (see the module docs).
    TABLES.store(Box::into_raw(tables), Ordering::Release);
}

fn start_refresher() {
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` is a valid out-parameter for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return;
    }
    let read_fd = fds[0];
    // The reader blocks: clear O_NONBLOCK on its end only.
    // SAFETY: plain fcntl on a descriptor we own.
    unsafe { libc::fcntl(read_fd, libc::F_SETFL, 0) };
    let spawned = std::thread::Builder::new()
        .name("inger-modules".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut buffer = [0u8; 64];
            loop {
                // SAFETY: reading into a local buffer from our pipe.
                let n = unsafe { libc::read(read_fd, buffer.as_mut_ptr().cast(), buffer.len()) };
                if n == 0 || (n < 0 && crate::error::last_errno() != libc::EINTR) {
                    return;
                }
                REFRESH_REQUESTED.store(false, Ordering::Relaxed);
                refresh(false);
            }
        });
    if spawned.is_ok() {
        REFRESH_FD.store(fds[1], Ordering::Relaxed);
    }
}

/// What dl_iterate_phdr reports about one module.
struct ModuleInfo {
    name: String,
    bias: usize,
    executable: Vec<Range<usize>>,
    eh_frame_hdr: Option<Range<usize>>,
    loads: Vec<Range<usize>>,
}

fn module_generation() -> u64 {
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

fn loaded_modules() -> Vec<ModuleInfo> {
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: valid info and our out-pointer.
        let (info, out) = unsafe { (&*info, &mut *data.cast::<Vec<ModuleInfo>>()) };
        let name = if info.dlpi_name.is_null() {
            String::new()
        } else {
            // SAFETY: a non-null dlpi_name is NUL-terminated.
            unsafe { CStr::from_ptr(info.dlpi_name) }
                .to_string_lossy()
                .into_owned()
        };
        let bias = info.dlpi_addr as usize;
        let mut module = ModuleInfo {
            name,
            bias,
            executable: Vec::new(),
            eh_frame_hdr: None,
            loads: Vec::new(),
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
                    module.loads.push(range);
                }
                libc::PT_GNU_EH_FRAME => module.eh_frame_hdr = Some(range),
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

/// The executable's load bias (its `dlpi_addr`).
#[cfg(test)]
pub(crate) fn executable_load_bias() -> usize {
    loaded_modules().first().map_or(0, |module| module.bias)
}

fn build(generation: u64) -> Tables {
    let extra = EXTRA_NON_PREEMPTIBLE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let modules = loaded_modules();
    let mut code = Vec::new();
    let mut unwinder = StackUnwinder::new();
    let mut libc_range: Option<Range<usize>> = None;
    for module in &modules {
        let file = module.name.rsplit('/').next().unwrap_or("");
        let preemptible = !(NON_PREEMPTIBLE.iter().any(|stem| file.starts_with(stem))
            || extra
                .iter()
                .any(|name| !file.is_empty() && (file == name || file.starts_with(name.as_str()))));
        if file.starts_with("libc.so") {
            libc_range = module.executable.first().cloned();
        }
        for range in &module.executable {
            code.push(CodeRange {
                range: range.clone(),
                preemptible,
            });
        }
        if let Some(framehop_module) = unwind_module(module) {
            unwinder.add_module(framehop_module);
        }
    }
    code.sort_unstable_by_key(|code| code.range.start);
    let bias = modules.first().map_or(0, |module| module.bias);
    // The executable's symbols never change: read and demangle them once per set of
    // user-named prefixes (a few ms).
    /// The sections found, and the prefixes they were found for.
    type Cached = Option<(Vec<String>, Option<Vec<Range<usize>>>)>;
    static SECTIONS: Mutex<Cached> = Mutex::new(None);
    let prefixes = EXTRA_SYMBOL_PREFIXES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let std_sections = {
        let mut cached = SECTIONS.lock().unwrap_or_else(|p| p.into_inner());
        match &*cached {
            Some((for_prefixes, sections)) if *for_prefixes == prefixes => sections.clone(),
            _ => {
                let sections = symbols::critical_sections(bias, &prefixes);
                *cached = Some((prefixes, sections.clone()));
                sections
            }
        }
    };
    Tables {
        code,
        std_symbols: std_sections.is_some(),
        std_sections: std_sections.unwrap_or_default(),
        blocking: blocking_wrappers(libc_range),
        unwinder,
        generation,
    }
}

/// The framehop module for one loaded image, from its in-memory `.eh_frame_hdr` and
/// `.eh_frame`.
fn unwind_module(module: &ModuleInfo) -> Option<Module<&'static [u8]>> {
    let text = module.executable.first()?.clone();
    let text_end = module.executable.iter().map(|range| range.end).max()?;
    let hdr = module.eh_frame_hdr.clone()?;
    // SAFETY: PT_GNU_EH_FRAME lies inside a loaded, readable segment of a module that stays
    // loaded (inger does not support unloading modules it is running code of).
    let hdr_bytes: &'static [u8] =
        unsafe { core::slice::from_raw_parts(hdr.start as *const u8, hdr.len()) };
    let eh_frame = eh_frame_address(hdr.start, hdr_bytes)?;
    let segment_end = module
        .loads
        .iter()
        .find(|load| load.contains(&eh_frame))?
        .end;
    // SAFETY: from `.eh_frame` to the end of the loaded segment that contains it is mapped
    // and readable.
    let eh_frame_bytes: &'static [u8] =
        unsafe { core::slice::from_raw_parts(eh_frame as *const u8, segment_end - eh_frame) };
    // SAFETY: the executable segment is mapped and readable.
    let text_bytes: &'static [u8] =
        unsafe { core::slice::from_raw_parts(text.start as *const u8, text.len()) };
    let svma = |avma: usize| (avma - module.bias) as u64;
    let info = ExplicitModuleSectionInfo {
        base_svma: 0,
        text_svma: Some(svma(text.start)..svma(text.end)),
        text: Some(text_bytes),
        eh_frame_svma: Some(svma(eh_frame)..svma(segment_end)),
        eh_frame: Some(eh_frame_bytes),
        eh_frame_hdr_svma: Some(svma(hdr.start)..svma(hdr.end)),
        eh_frame_hdr: Some(hdr_bytes),
        ..Default::default()
    };
    Some(Module::new(
        module.name.clone(),
        text.start as u64..text_end as u64,
        module.bias as u64,
        info,
    ))
}

/// Decodes `eh_frame_ptr` from an `.eh_frame_hdr` (version 1).
fn eh_frame_address(hdr_address: usize, hdr: &[u8]) -> Option<usize> {
    const DW_EH_PE_UDATA4: u8 = 0x03;
    const DW_EH_PE_SDATA4: u8 = 0x0b;
    const DW_EH_PE_UDATA8: u8 = 0x04;
    const DW_EH_PE_PCREL: u8 = 0x10;
    if hdr.len() < 8 || hdr[0] != 1 {
        return None;
    }
    let encoding = hdr[1];
    let field = hdr_address + 4;
    let value = match encoding & 0x0f {
        DW_EH_PE_SDATA4 => i32::from_le_bytes(hdr[4..8].try_into().ok()?) as isize as usize,
        DW_EH_PE_UDATA4 => u32::from_le_bytes(hdr[4..8].try_into().ok()?) as usize,
        DW_EH_PE_UDATA8 if hdr.len() >= 12 => {
            u64::from_le_bytes(hdr[4..12].try_into().ok()?) as usize
        }
        _ => return None,
    };
    match encoding & 0x70 {
        0 => Some(value),
        DW_EH_PE_PCREL => Some(field.wrapping_add(value)),
        _ => None,
    }
}

/// Address ranges of libc's blocking system-call wrappers.
fn blocking_wrappers(libc_range: Option<Range<usize>>) -> Vec<Range<usize>> {
    const RTLD_DL_SYMENT: c_int = 1;
    let Some(libc_range) = libc_range else {
        return Vec::new();
    };
    let mut ranges = Vec::new();
    for name in BLOCKING_WRAPPERS {
        // SAFETY: dlsym with a NUL-terminated name.
        let address = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as usize;
        if !libc_range.contains(&address) {
            continue;
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
            continue;
        }
        // SAFETY: on success `symbol` points into the module's dynamic symbol table.
        let size = unsafe { symbol.as_ref() }.map_or(0, |symbol| symbol.st_size as usize);
        if size > 0 {
            ranges.push(address..address + size);
        }
    }
    ranges.sort_unstable_by_key(|range| range.start);
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libc_is_a_library_and_our_code_is_preemptible() {
        init();
        let tables = current().expect("built");
        assert_eq!(
            tables.classify(libc::malloc as *const () as usize),
            Class::Library
        );
        assert_eq!(
            tables.classify(libc::getpid as *const () as usize),
            Class::Library
        );
        let ours = libc_is_a_library_and_our_code_is_preemptible as *const () as usize;
        assert_eq!(tables.classify(ours), Class::Preemptible);
        assert_eq!(tables.classify(16), Class::Unknown);
    }

    #[test]
    fn blocking_wrappers_are_found() {
        init();
        let tables = current().expect("built");
        assert!(tables.is_blocking_wrapper(libc::read as *const () as usize));
        assert!(tables.is_blocking_wrapper(libc::nanosleep as *const () as usize));
        assert!(!tables.is_blocking_wrapper(libc::malloc as *const () as usize));
    }

    #[test]
    fn std_sections_are_classified() {
        init();
        let tables = current().expect("built");
        assert!(tables.std_symbols);
        let stdout = std::io::stdout as fn() -> std::io::Stdout as usize;
        assert_eq!(tables.classify(stdout), Class::StdSection);
    }
}

#[cfg(test)]
mod symbol_prefix_tests {
    use super::*;

    #[inline(never)]
    fn marked_function_for_the_prefix_test(x: u64) -> u64 {
        std::hint::black_box(x) + 1
    }

    #[test]
    fn user_named_symbol_prefixes_become_critical_sections() {
        init();
        let address = marked_function_for_the_prefix_test as *const () as usize;
        assert_eq!(
            std::hint::black_box(marked_function_for_the_prefix_test(1)),
            2
        );
        assert_eq!(
            current().expect("built").classify(address),
            Class::Preemptible
        );
        mark_non_preemptible_symbols(&[
            "inger::safepoint::tables::symbol_prefix_tests::marked_function",
        ]);
        assert_eq!(
            current().expect("built").classify(address),
            Class::StdSection
        );
    }
}
