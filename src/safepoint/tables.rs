//! The tables the safe-point check reads: every loaded module's code ranges and unwind
//! information, which modules are non-preemptible, the standard library's critical sections,
//! and the blocking system-call wrappers.
//!
//! Context: built by the caller (start-up, `mark_non_preemptible*`) or the refresher thread;
//! read by the signal handler through [`current`] and the `Tables` methods, which are
//! async-signal-safe.
//!
//! Tables are built outside any signal handler (at start-up, and by a background thread when
//! the handler meets code in no known module) and published through one atomic pointer. A
//! handler reads whichever tables were current when it started; replaced tables are never
//! freed, since a handler on another thread may still be reading them (a refresh happens only
//! when modules were loaded or unloaded, so this is bounded by the program's `dlopen`s).

use core::ffi::CStr;
use core::ops::Range;
use core::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, Once};

use framehop::x86_64::UnwinderX86_64;
use framehop::{ExplicitModuleSectionInfo, Module, MustNotAllocateDuringUnwind, Unwinder};

use super::symbols;
use crate::sys::modules::{self, LoadedModule, Refresher};

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
    /// Entries of libc's blocking calls at cancellation points ([`BLOCKING_ENTRIES`]).
    blocking: Vec<Range<usize>>,
    /// The implementations of libc's pure routines ([`PURE_ROUTINES`]), as selected at run
    /// time, with their extent from the unwind tables.
    pure: Vec<Range<usize>>,
    /// Functions whose return is never redirected ([`NEVER_REDIRECTED`]).
    never_redirected: Vec<Range<usize>>,

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

    /// Whether `address` is inside a libc function that blocks at a cancellation point (the
    /// entry the program called, which may block through inner libc frames).
    pub(crate) fn is_blocking_entry(&self, address: usize) -> bool {
        contains(&self.blocking, address)
    }

    /// Whether `address` is inside one of libc's pure routines.
    pub(crate) fn is_pure(&self, address: usize) -> bool {
        contains(&self.pure, address)
    }

    /// Whether `address` is inside a function whose return must not be redirected.
    pub(crate) fn is_never_redirected(&self, address: usize) -> bool {
        contains(&self.never_redirected, address)
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
    // Sanitizer run-time libraries: their allocators and interceptors take internal locks
    // (a function paused inside AddressSanitizer's `malloc` deadlocked its caller's).
    "libasan",
    "liblsan",
    "libtsan",
    "libubsan",
    "libhwasan",
];

/// glibc functions that block in a system call at a POSIX cancellation point, possibly through
/// inner libc frames (`pthread_cond_wait` waits in `__futex_abstimed_wait_common`). A function
/// interrupted at that system call, with this entry as its outermost libc frame and
/// preemptible code above, can be paused: glibc itself supports asynchronous interruption
/// there (it is where pthread cancellation acts), none of these holds an internal lock while
/// it waits (a condition variable's mutex is released), and the call restarts (or reports
/// `EINTR`, which callers retry) on resume. Functions that may wait with a lock held (stdio
/// on a `FILE`, `system`, name lookups) are not entries, so waiting inside them stays
/// non-preemptible.
const BLOCKING_ENTRIES: &[&CStr] = &[
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
    c"epoll_pwait2",
    c"nanosleep",
    c"clock_nanosleep",
    c"__clock_nanosleep",
    c"sleep",
    c"usleep",
    c"pause",
    c"sigsuspend",
    c"sigwait",
    c"sigwaitinfo",
    c"sigtimedwait",
    c"wait",
    c"waitpid",
    c"waitid",
    c"wait3",
    c"wait4",
    c"syscall",
    c"msgrcv",
    c"msgsnd",
    c"mq_receive",
    c"mq_send",
    c"mq_timedreceive",
    c"mq_timedsend",
    c"open",
    c"open64",
    c"openat",
    c"openat64",
    c"creat",
    c"close",
    c"fsync",
    c"fdatasync",
    c"msync",
    c"tcdrain",
    c"fcntl",
    c"fcntl64",
    c"lockf",
    c"pthread_cond_wait",
    c"pthread_cond_timedwait",
    c"pthread_cond_clockwait",
    c"pthread_join",
    c"pthread_timedjoin_np",
    c"pthread_clockjoin_np",
    c"sem_wait",
    c"sem_timedwait",
    c"sem_clockwait",
];

/// libc's pure memory and string routines: a function whose innermost frames are in one of
/// them, with every other frame preemptible, may be paused there. glibc's manual
/// (`manual/string.texi`) annotates each of these `MT-Safe AS-Safe AC-Safe` with no
/// qualifier: they touch only the memory their arguments point to, take no lock, keep no
/// state between calls and do not allocate, so pausing one half-way and running other code
/// (which may call it too) is like a signal handler interrupting it, which AS-Safe permits.
/// Left out on purpose: routines the manual qualifies (`strcasecmp`, `strcoll` and the other
/// locale-dependent ones, `mtslocale`), those that allocate (`strdup`, `strndup`:
/// `ascuheap`), and `strtok` (`mtasurace`). The address of each is resolved at start-up to the
/// implementation the IFUNC selected for this processor, and its extent comes from the unwind
/// tables (an optimised implementation is one function with several entry points).
const PURE_ROUTINES: &[&CStr] = &[
    c"memcpy",
    c"memmove",
    c"mempcpy",
    c"memset",
    c"memccpy",
    c"memcmp",
    c"bcmp",
    c"memchr",
    c"memrchr",
    c"rawmemchr",
    c"memmem",
    c"bcopy",
    c"bzero",
    c"strlen",
    c"strnlen",
    c"strcpy",
    c"stpcpy",
    c"strncpy",
    c"stpncpy",
    c"strcat",
    c"strncat",
    c"strcmp",
    c"strncmp",
    c"strchr",
    c"strchrnul",
    c"strrchr",
    c"index",
    c"rindex",
    c"strstr",
    c"strspn",
    c"strcspn",
    c"strpbrk",
    c"wmemcpy",
    c"wmempcpy",
    c"wmemmove",
    c"wmemset",
    c"wmemcmp",
    c"wmemchr",
    c"wcslen",
    c"wcsnlen",
    c"wcscpy",
    c"wcpcpy",
    c"wcsncpy",
    c"wcpncpy",
    c"wcscat",
    c"wcsncat",
    c"wcscmp",
    c"wcsncmp",
    c"wcschr",
    c"wcschrnul",
    c"wcsrchr",
    c"wcsstr",
    c"wcsspn",
    c"wcscspn",
    c"wcspbrk",
];

/// Functions whose return address is never redirected (see `arch::redirect`): they read
/// their own return address, or save it to return to later, so a redirect installed before
/// they did would be seen by them. The `dl*` family finds its caller's module from its
/// return address (for `RTLD_NEXT` and namespaces); the `setjmp` family and `getcontext`
/// save it as the point to come back to; `vfork` returns twice on one stack. A preemption
/// inside one of them falls back to retrying.
const NEVER_REDIRECTED: &[&CStr] = &[
    c"dlopen",
    c"dlmopen",
    c"dlsym",
    c"dlvsym",
    c"dladdr",
    c"dladdr1",
    c"dlinfo",
    c"dlclose",
    c"dlerror",
    c"dl_iterate_phdr",
    c"_dl_find_object",
    c"setjmp",
    c"_setjmp",
    c"sigsetjmp",
    c"__sigsetjmp",
    c"getcontext",
    c"swapcontext",
    c"vfork",
    c"__libc_start_main",
];

static TABLES: AtomicPtr<Tables> = AtomicPtr::new(core::ptr::null_mut());
static INIT: Once = Once::new();
static EXTRA_NON_PREEMPTIBLE: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Load biases of modules that must never be paused inside whatever their name: the
/// originals of libsets' libraries (their copies, under other names, stay preemptible).
static NON_PREEMPTIBLE_MODULES: Mutex<Vec<usize>> = Mutex::new(Vec::new());
/// Path prefixes of code in the executable that must never be paused (user-named).
static EXTRA_SYMBOL_PREFIXES: Mutex<Vec<String>> = Mutex::new(Vec::new());
static REFRESHER: Refresher = Refresher::new();
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
        let environment = crate::config::environment();
        EXTRA_SYMBOL_PREFIXES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(environment.non_preemptible_symbols.iter().cloned());
        EXTRA_NON_PREEMPTIBLE
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(environment.non_preemptible.iter().cloned());
        refresh(true);
        REFRESHER.start(|| refresh(false));
    });
}

/// Asks the refresher thread to rebuild the tables (code was found in no known module).
/// Context: signal handler; async-signal-safe.
pub(crate) fn request_refresh() {
    REFRESHER.request();
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

/// Declares the loaded module whose load bias is `bias` non-preemptible (a libset's
/// original library), and rebuilds the tables.
pub(crate) fn mark_module_non_preemptible(bias: usize) {
    {
        let mut modules = NON_PREEMPTIBLE_MODULES
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if modules.contains(&bias) {
            return;
        }
        modules.push(bias);
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
    let generation = modules::generation();
    if !force && current().is_some_and(|tables| tables.generation == generation) {
        return;
    }
    let tables = Box::new(build(generation));
    // The previous tables are leaked on purpose (see the module docs).
    TABLES.store(Box::into_raw(tables), Ordering::Release);
}

/// The executable's load bias (its `dlpi_addr`).
#[cfg(test)]
pub(crate) fn executable_load_bias() -> usize {
    modules::executable_load_bias()
}

fn build(generation: u64) -> Tables {
    let extra = EXTRA_NON_PREEMPTIBLE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let marked_modules = NON_PREEMPTIBLE_MODULES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let modules = modules::loaded();
    let mut code = Vec::new();
    let mut unwinder = StackUnwinder::new();
    let mut libc_range: Option<Range<usize>> = None;
    for module in &modules {
        let file = module.file_name();
        let preemptible = !(NON_PREEMPTIBLE.iter().any(|stem| file.starts_with(stem))
            || marked_modules.contains(&module.bias)
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
    let libc = modules
        .iter()
        .find(|module| module.file_name().starts_with("libc.so"));
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
        blocking: named_functions(BLOCKING_ENTRIES, libc_range.as_ref()),
        pure: pure_routines(libc),
        never_redirected: named_functions(NEVER_REDIRECTED, libc_range.as_ref()),
        unwinder,
        generation,
    }
}

/// The framehop module for one loaded image, from its in-memory `.eh_frame_hdr` and
/// `.eh_frame`.
fn unwind_module(module: &LoadedModule) -> Option<Module<&'static [u8]>> {
    let text = module.executable.first()?.clone();
    let text_end = module.executable.iter().map(|range| range.end).max()?;
    let hdr = module.eh_frame_hdr.clone()?;
    let hdr_bytes = module.loaded_bytes(hdr.clone())?;
    let eh_frame = eh_frame_address(hdr.start, hdr_bytes)?;
    // `.eh_frame` has no segment of its own: it runs to the end of the segment holding it.
    let segment_end = module.segment_end(eh_frame)?;
    let eh_frame_bytes = module.loaded_bytes(eh_frame..segment_end)?;
    let text_bytes = module.loaded_bytes(text.clone())?;
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
pub(crate) fn eh_frame_address(hdr_address: usize, hdr: &[u8]) -> Option<usize> {
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

/// The address ranges of the exported libc functions `names` (with their symbol sizes).
fn named_functions(names: &[&CStr], libc_range: Option<&Range<usize>>) -> Vec<Range<usize>> {
    let Some(libc_range) = libc_range else {
        return Vec::new();
    };
    let mut ranges: Vec<Range<usize>> = names
        .iter()
        .filter_map(|name| modules::function_range(name, libc_range))
        .collect();
    ranges.sort_unstable_by_key(|range| range.start);
    ranges
}

/// The extents of the implementations the IFUNCs selected for [`PURE_ROUTINES`].
fn pure_routines(libc: Option<&LoadedModule>) -> Vec<Range<usize>> {
    let Some(libc) = libc else {
        return Vec::new();
    };
    let Some(sections) = super::eh::EhSections::of(libc) else {
        return Vec::new();
    };
    let text = libc.executable.first().cloned().unwrap_or(0..0);
    let mut ranges: Vec<Range<usize>> = PURE_ROUTINES
        .iter()
        .filter_map(|name| {
            let address = modules::resolve(name)?;
            text.contains(&address)
                .then(|| sections.function_extent(address))
                .flatten()
        })
        .collect();
    ranges.sort_unstable_by_key(|range| range.start);
    ranges.dedup();
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
    fn pure_routines_are_the_selected_implementations() {
        init();
        let tables = current().expect("built");
        let memcpy = crate::sys::modules::resolve(c"memcpy").expect("memcpy");
        assert!(tables.is_pure(memcpy), "the IFUNC's choice is pure");
        assert!(!tables.is_pure(libc::malloc as *const () as usize));
        assert!(
            !tables.is_pure(libc::strcoll as *const () as usize),
            "locale-dependent"
        );
    }

    #[test]
    fn blocking_wrappers_are_found() {
        init();
        let tables = current().expect("built");
        assert!(tables.is_blocking_entry(libc::read as *const () as usize));
        assert!(tables.is_blocking_entry(libc::nanosleep as *const () as usize));
        assert!(!tables.is_blocking_entry(libc::malloc as *const () as usize));
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
