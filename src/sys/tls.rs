//! Private thread-local storage for each preemptible function, from glibc's own allocator.
//!
//! A function that can be paused and resumed later, possibly on another thread, behaves like
//! code on a thread of its own; sharing its caller's thread-locals would let safe code alias a
//! `RefCell` borrow or a `thread_rng` across a pause. So each function gets its own *block*: a
//! static TLS area plus a thread-control block (TCB, glibc's `struct pthread`), allocated by
//! the dynamic loader's `_dl_allocate_tls` and installed by writing the fs base.
//!
//! # What glibc 2.36 reads from the TCB, and what we put there
//!
//! The block starts zeroed (glibc clears the TCB) with its own DTV. Then, field by field:
//!
//! | field | value | why |
//! | --- | --- | --- |
//! | `header.tcb` (+0), `header.self` (+16) | the block | `%fs:0` is the ABI's thread pointer; `THREAD_SELF` reads +16 |
//! | `header.multiple_threads` (+24) | the thread's, refreshed at each resume and propagated back | libc elides locks when it reads 0 |
//! | `header.sysinfo` (+32) | the thread's | vsyscall entry |
//! | `header.stack_guard` (+40) | the thread's | `-fstack-protector` canary: frames spanning a switch check it against the other context's value |
//! | `header.pointer_guard` (+48) | the thread's | `setjmp`/`atexit` pointer mangling; else atexit handlers registered inside crash at exit |
//! | `header.feature_1` (+72) | the thread's | CET state |
//! | `list` (`_thread_db_pthread_list`) | an empty list node (pointing to itself) | `fork` unlinks the caller's descriptor in the child |
//! | `tid` (`_thread_db_pthread_tid`) | the running thread's id, refreshed on migration | mutex ownership, `raise`, `pthread_kill` |
//! | `robust_head` (tid + 16, cross-checked against `cancelhandling` − 40) | an empty list of its own | robust mutexes locked inside link into it |
//! | `specific[0]` (`_thread_db_pthread_specific`) | the block's own `specific_1stblock` | pthread keys below 32 live inline |
//! | rseq `cpu_id` (`__rseq_offset` + 4) | `RSEQ_CPU_ID_REGISTRATION_FAILED` | the kernel never updates this copy: `sched_getcpu` must ask the kernel instead of reading a stale value |
//!
//! Offsets come from the descriptors glibc publishes for debuggers (`_thread_db_*`) and from
//! `__rseq_offset`; the two derived ones are cross-checked, and if anything is missing or
//! inconsistent inger falls back to shared TLS (see [`crate::capabilities`]).
//!
//! # Reuse
//!
//! Blocks are pooled with their stacks. A fresh block would get a fresh malloc tcache (and
//! possibly a new arena) on its first allocation, and those are never returned; so a block is
//! reused rather than freed, and on reuse only the *program's* TLS images are re-initialised:
//! libc's own block keeps its tcache and arena (errno and the locale are reset explicitly),
//! dynamically allocated TLS of `dlopen`ed modules is freed so it is re-created from its image
//! on first access, and pthread-key values are cleared (their destructors are not run).
//!
//! # Limits (documented in the README)
//!
//! - Not supported inside a function: `pthread_exit` and pthread cancellation (they would
//!   unwind the function's stack as if it were a thread); `setuid`/`setgid` and friends
//!   (glibc's set-id broadcast waits on the real thread's TCB, which is not installed);
//!   pthread-key destructors (values are discarded).
//! - `uselocale` inside a function applies to that function only and is reset at its start.
//! - A library `dlopen`ed after start-up that uses the initial-exec TLS model gets no
//!   initialised copy in blocks created before it was loaded.

use core::ffi::{CStr, c_void};
use std::sync::OnceLock;

use crate::arch;
use crate::error::Error;

/// What inger knows about glibc's TLS internals in this process.
pub(crate) struct Glibc {
    allocate_tls: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    call_tls_dtors: unsafe extern "C" fn(),
    tid: usize,
    robust_head: usize,
    specific: usize,
    specific_first_block: usize,
    specific_used: usize,
    cancelhandling: usize,
    rseq_cpu_id: Option<isize>,
    /// Static TLS images of the program's modules, except libc's.
    images: Vec<Image>,
    /// libc's static TLS image (errno, locale, malloc tcache and arena, TLS destructor list).
    libc_image: Option<Image>,
    /// Offset below the thread pointer of libc's `tls_dtor_list` (the list of thread-local
    /// destructors registered with `__cxa_thread_atexit_impl`), if it could be located.
    dtor_list_below_tp: Option<usize>,
    /// Module ids with static TLS (libc's included): their DTV entries are never freed.
    static_modids: Vec<usize>,
    /// DTV generation of blocks that have seen no module loaded after start-up: their DTVs
    /// hold no dynamically allocated TLS, so reuse skips the DTV walk.
    base_generation: usize,
}

/// One module's static TLS image and where its block sits below the thread pointer.
struct Image {
    below_tp: usize,
    image: *const u8,
    file_size: usize,
    mem_size: usize,
}

// SAFETY: `Image::image` points to read-only data of a loaded module, never written.
unsafe impl Send for Glibc {}
// SAFETY: as above; everything else is plain data.
unsafe impl Sync for Glibc {}

const PTHREAD_KEY_2NDLEVEL_SIZE: usize = 32;
const PTHREAD_KEY_DATA_SIZE: usize = 16;
const RSEQ_CPU_ID_REGISTRATION_FAILED: u32 = -2i32 as u32;
/// `TLS_DTV_UNALLOCATED` in glibc.
const DTV_UNALLOCATED: usize = usize::MAX;

static GLIBC: OnceLock<Option<Glibc>> = OnceLock::new();

/// glibc's internals if they were all found and consistent (private TLS), else `None`
/// (shared TLS). Looked up once, outside any signal handler.
pub(crate) fn glibc() -> Option<&'static Glibc> {
    GLIBC
        .get_or_init(|| {
            if crate::config::environment().shared_tls {
                return None;
            }
            Glibc::find()
        })
        .as_ref()
}

fn symbol(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name has no other preconditions.
    let address = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!address.is_null()).then_some(address)
}

/// A `_thread_db_*` field descriptor: `{ bits, count, offset }`.
fn field_offset(name: &CStr) -> Option<usize> {
    let descriptor = symbol(name)?.cast::<u32>();
    // SAFETY: glibc's descriptors are three consecutive u32s in read-only data.
    Some(unsafe { descriptor.add(2).read() } as usize)
}

impl Glibc {
    fn find() -> Option<Glibc> {
        // SAFETY: the symbols have these C signatures in glibc 2.36 (and since 2.0 / 2.18).
        let allocate_tls = unsafe {
            core::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void) -> *mut c_void>(
                symbol(c"_dl_allocate_tls")?,
            )
        };
        // SAFETY: as above.
        let call_tls_dtors = unsafe {
            core::mem::transmute::<*mut c_void, unsafe extern "C" fn()>(symbol(
                c"__call_tls_dtors",
            )?)
        };
        // SAFETY: `_thread_db_sizeof_pthread` is a u32 in read-only data.
        let size = unsafe { symbol(c"_thread_db_sizeof_pthread")?.cast::<u32>().read() } as usize;
        let tid = field_offset(c"_thread_db_pthread_tid")?;
        let cancelhandling = field_offset(c"_thread_db_pthread_cancelhandling")?;
        let specific = field_offset(c"_thread_db_pthread_specific")?;
        let report_events = field_offset(c"_thread_db_pthread_report_events")?;
        let list = field_offset(c"_thread_db_pthread_list")?;
        // struct pthread (nptl/descr.h): tid, pid, robust_prev, robust_head{list, futex_offset,
        // list_op_pending}, cleanup, cleanup_jmp_buf, cancelhandling, flags,
        // specific_1stblock[32], specific[32], specific_used, report_events.
        let robust_head = tid + 16;
        let specific_first_block =
            specific.checked_sub(PTHREAD_KEY_2NDLEVEL_SIZE * PTHREAD_KEY_DATA_SIZE)?;
        let specific_used = report_events.checked_sub(1)?;
        let consistent = robust_head + 40 == cancelhandling
            && cancelhandling + 8 == specific_first_block
            && specific + 32 * 8 == specific_used
            && specific_used < size
            && list + 16 == tid
            && size >= 1024;
        if !consistent {
            return None;
        }
        let rseq_cpu_id = symbol(c"__rseq_offset").map(|offset| {
            // SAFETY: `__rseq_offset` is a ptrdiff_t in libc's data.
            unsafe { offset.cast::<isize>().read() + 4 }
        });
        let (images, libc_image, static_modids) = static_images()?;
        // SAFETY: the calling thread's TCB holds its DTV pointer at +8; the word before the
        // first module entry is the DTV's generation counter.
        let base_generation = unsafe { get::<*const usize>(arch::thread_pointer(), 8).read() };
        Some(Glibc {
            allocate_tls,
            call_tls_dtors,
            tid,
            robust_head,
            specific,
            specific_first_block,
            specific_used,
            cancelhandling,
            rseq_cpu_id,
            images,
            dtor_list_below_tp: libc_image.as_ref().and_then(locate_dtor_list),
            libc_image,
            static_modids,
            base_generation,
        })
    }

    /// Allocates and initialises a block for functions run by the thread `tid`, copying the
    /// guard values from the calling context's TCB. Returns its thread pointer.
    pub(crate) fn new_block(&self, tid: i32) -> Result<usize, Error> {
        // SAFETY: _dl_allocate_tls(NULL) allocates a zeroed TCB with initialised static TLS.
        let block = unsafe { (self.allocate_tls)(core::ptr::null_mut()) } as usize;
        if block == 0 {
            return Err(Error::StackAllocation {
                errno: libc::ENOMEM,
            });
        }
        let current = arch::thread_pointer();
        // SAFETY: `block` is a fresh TCB of `_thread_db_sizeof_pthread` bytes; `current` is the
        // live TCB of the calling context; all offsets were validated in `find`.
        unsafe {
            put(block, 0, block);
            put(block, 16, block);
            // `list` (just before `tid`): an empty circular list node, so that glibc's fork,
            // which unlinks the calling thread's descriptor in the child, finds a valid node.
            put(
                block,
                tid_list_offset(self.tid),
                block + tid_list_offset(self.tid),
            );
            put(
                block,
                tid_list_offset(self.tid) + 8,
                block + tid_list_offset(self.tid),
            );
            copy::<u32>(block, current, 24); // multiple_threads
            copy::<usize>(block, current, 32); // sysinfo
            copy::<usize>(block, current, 40); // stack_guard
            copy::<usize>(block, current, 48); // pointer_guard
            copy::<u32>(block, current, 72); // feature_1
            copy::<usize>(block, current, self.robust_head + 8); // futex_offset
            if let Some(cpu_id) = self.rseq_cpu_id {
                ((block as isize + cpu_id) as *mut u32).write(RSEQ_CPU_ID_REGISTRATION_FAILED);
            }
        }
        self.reset_thread_state(block, tid);
        Ok(block)
    }

    /// Whether [`reuse_block`](Self::reuse_block) would free memory (dynamic TLS of modules
    /// loaded after start-up, or pthread-key storage beyond the first 32 keys): reuse is
    /// async-signal-safe only when it would not.
    pub(crate) fn reuse_frees(&self, block: usize) -> bool {
        // SAFETY: `block` is a live TCB; `block + 8` holds its DTV pointer, whose first
        // entry is the DTV's generation; `specific_used` was validated in `find`.
        unsafe {
            let dtv = get::<usize>(block, 8) as *const usize;
            dtv.read() > self.base_generation || get::<u8>(block, self.specific_used) != 0
        }
    }

    /// Makes a used block look fresh to the next function (see the module docs).
    pub(crate) fn reuse_block(&self, block: usize, tid: i32) {
        for image in &self.images {
            image.copy_into(block);
        }
        self.free_dynamic_tls(block);
        self.reset_thread_state(block, tid);
    }

    /// Resets a block whose function was cancelled while paused. Its list of thread-local
    /// destructors names objects of the discarded function: it is emptied without running
    /// them (the list nodes leak, a few dozen bytes each). The rest of libc's part is kept:
    /// a function is never paused inside libc, so its malloc cache is consistent and stays
    /// with the block. If the list could not be located, libc's whole part is re-initialised
    /// instead, abandoning that cache (about 15 KB).
    pub(crate) fn reset_cancelled_block(&self, block: usize, tid: i32) {
        match (self.dtor_list_below_tp, &self.libc_image) {
            // SAFETY: the list head is a pointer-sized word of libc's static TLS in `block`.
            (Some(below_tp), _) => unsafe { ((block - below_tp) as *mut usize).write(0) },
            (None, Some(libc_image)) => libc_image.copy_into(block),
            (None, None) => {}
        }
        self.reuse_block(block, tid);
    }

    /// Per-function TCB state: thread id, robust list, pthread keys, cancellation.
    fn reset_thread_state(&self, block: usize, tid: i32) {
        // SAFETY: `block` is a live TCB; offsets validated in `find`.
        unsafe {
            self.set_tid(block, tid);
            put(block, self.robust_head, block + self.robust_head); // empty circular list
            put(block, self.robust_head + 16, 0usize); // list_op_pending
            put(block, self.cancelhandling, 0u32);
            if get::<u8>(block, self.specific_used) != 0 {
                for index in 1..PTHREAD_KEY_2NDLEVEL_SIZE {
                    let level2 = get::<usize>(block, self.specific + index * 8);
                    if level2 != 0 {
                        libc::free(level2 as *mut c_void);
                        put(block, self.specific + index * 8, 0usize);
                    }
                }
                core::ptr::write_bytes(
                    (block + self.specific_first_block) as *mut u8,
                    0,
                    PTHREAD_KEY_2NDLEVEL_SIZE * PTHREAD_KEY_DATA_SIZE,
                );
                put(block, self.specific_used, 0u8);
            }
            put(block, self.specific, block + self.specific_first_block);
        }
    }

    /// Records the id of the kernel thread now running the block's function.
    pub(crate) fn set_tid(&self, block: usize, tid: i32) {
        // SAFETY: `block` is a live TCB and `tid` a validated offset.
        unsafe { put(block, self.tid, tid) };
    }

    /// Frees TLS that `__tls_get_addr` allocated in this block for `dlopen`ed modules, so the
    /// next access re-creates it from the module's image.
    fn free_dynamic_tls(&self, block: usize) {
        // SAFETY: `block + 8` holds the DTV pointer, which points one entry past the length
        // word; entries are `{ val, to_free }` pairs (glibc's `dtv_t`).
        unsafe {
            let dtv = get::<usize>(block, 8) as *mut usize;
            if dtv.read() <= self.base_generation {
                return; // no module loaded after start-up has TLS allocated in this block
            }
            let length = dtv.sub(2).read();
            for modid in 1..=length {
                let entry = dtv.add(modid * 2);
                let value = entry.read();
                if value == 0 || value == DTV_UNALLOCATED || self.static_modids.contains(&modid) {
                    continue;
                }
                libc::free(entry.add(1).read() as *mut c_void);
                entry.write(DTV_UNALLOCATED);
                entry.add(1).write(0);
            }
        }
    }

    /// Copies the multiple-threads flag from `from` to `to` if it is set there.
    pub(crate) fn propagate_multiple_threads(from: usize, to: usize) {
        // SAFETY: both are live TCBs; +24 is `header.multiple_threads`.
        unsafe {
            if get::<u32>(from, 24) != 0 && get::<u32>(to, 24) == 0 {
                put(to, 24, 1u32);
            }
        }
    }

    /// Runs the thread-local destructors registered by the function whose block is installed.
    pub(crate) fn run_tls_destructors(&self) {
        // SAFETY: called in the function's own context, as a thread exit would.
        unsafe { (self.call_tls_dtors)() };
    }
}

/// Finds libc's `tls_dtor_list` (a static, unexported thread-local) by registering a
/// destructor for a marker object on the calling thread and seeing which word of libc's
/// static TLS block starts pointing at a node naming that object; then unlinks and frees the
/// node again. Runs once, outside any handler.
fn locate_dtor_list(libc_image: &Image) -> Option<usize> {
    unsafe extern "C" {
        fn __cxa_thread_atexit_impl(
            destructor: unsafe extern "C" fn(*mut c_void),
            object: *mut c_void,
            dso_symbol: *mut c_void,
        ) -> i32;
    }
    unsafe extern "C" fn never_run(_: *mut c_void) {}
    static MARKER: u8 = 0;
    let marker = (&raw const MARKER).cast_mut().cast::<c_void>();
    let block = arch::thread_pointer() - libc_image.below_tp;
    let words = libc_image.mem_size / 8;
    // Only the list head may change below: the malloc cache and arena of this thread exist
    // already (warmed here), and errno is pinned to 0 around the snapshot and the comparison.
    // SAFETY: a plain allocation and its release.
    unsafe { libc::free(libc::malloc(64)) };
    let saved_errno = crate::sys::signal::errno();
    crate::sys::signal::set_errno(0);
    let snapshot: Vec<usize> = (0..words)
        // SAFETY: libc's static TLS block of the calling thread, `mem_size` bytes.
        .map(|index| unsafe { (block as *const usize).add(index).read() })
        .collect();
    // SAFETY: registering a no-op destructor for a static object of this module.
    let registered = unsafe { __cxa_thread_atexit_impl(never_run, marker, marker) } == 0;
    crate::sys::signal::set_errno(0);
    let mut found = None;
    for (index, &before) in snapshot.iter().enumerate().filter(|_| registered) {
        // SAFETY: as above.
        let word = unsafe { (block as *mut usize).add(index) };
        // SAFETY: as above.
        let now = unsafe { word.read() };
        if now == before || now % 8 != 0 || now <= 0xffff {
            continue;
        }
        // A node is `{ func (mangled), obj, map, next }`; ours names the marker. Only the list
        // head, the malloc cache or the arena could have changed (see above): each is a
        // pointer to live heap memory at least 16 bytes long.
        // SAFETY: per the above, `now` points to readable heap memory.
        if unsafe { (now as *const usize).add(1).read() } == marker as usize {
            // Unlink our node (it was pushed at the head) and free it.
            // SAFETY: the node is ours, allocated by glibc with malloc.
            unsafe {
                word.write((now as *const usize).add(3).read());
                libc::free(now as *mut c_void);
            }
            found = Some(libc_image.below_tp - index * 8);
            break;
        }
    }
    crate::sys::signal::set_errno(saved_errno);
    found
}

/// Offset of `struct pthread`'s `list` node: the 16 bytes just before `tid` (checked against
/// `_thread_db_pthread_list` in `find`).
fn tid_list_offset(tid: usize) -> usize {
    tid - 16
}

/// Per-function libc state to reset when a function starts in a block: errno and the locale
/// (which also refreshes the ctype tables `isalpha` and friends read). Runs in the function's
/// context, with its block installed.
pub(crate) fn enter_block() {
    crate::sys::signal::set_errno(0);
    /// `LC_GLOBAL_LOCALE` from `<locale.h>`: `(locale_t) -1`.
    const LC_GLOBAL_LOCALE: libc::locale_t = usize::MAX as libc::locale_t;
    // SAFETY: LC_GLOBAL_LOCALE is always a valid argument.
    unsafe { libc::uselocale(LC_GLOBAL_LOCALE) };
}

impl Image {
    /// Re-initialises this module's part of the static TLS area of `block`.
    fn copy_into(&self, block: usize) {
        let target = (block - self.below_tp) as *mut u8;
        // SAFETY: the module's static block lies `below_tp` bytes below every thread pointer,
        // inside the static TLS area `_dl_allocate_tls` sized for all of them.
        unsafe {
            core::ptr::copy_nonoverlapping(self.image, target, self.file_size);
            core::ptr::write_bytes(
                target.add(self.file_size),
                0,
                self.mem_size - self.file_size,
            );
        }
    }
}

/// The static TLS images of all loaded modules except libc, libc's, and the ids of every
/// module with static TLS.
fn static_images() -> Option<(Vec<Image>, Option<Image>, Vec<usize>)> {
    struct Scan {
        tp: usize,
        images: Vec<Image>,
        libc: Option<Image>,
        modids: Vec<usize>,
    }
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> i32 {
        // SAFETY: dl_iterate_phdr passes a valid info and our `data` pointer.
        let (info, scan) = unsafe { (&*info, &mut *data.cast::<Scan>()) };
        if info.dlpi_tls_modid == 0 || info.dlpi_tls_data.is_null() {
            return 0;
        }
        let below_tp = scan.tp.wrapping_sub(info.dlpi_tls_data as usize);
        if below_tp == 0 || below_tp > (1 << 20) {
            return 0; // not in the static area: dynamic TLS, handled through the DTV
        }
        scan.modids.push(info.dlpi_tls_modid);
        let name = if info.dlpi_name.is_null() {
            ""
        } else {
            // SAFETY: a non-null dlpi_name is a NUL-terminated string.
            unsafe { CStr::from_ptr(info.dlpi_name) }
                .to_str()
                .unwrap_or("")
        };
        let is_libc = name.rsplit('/').next().unwrap_or("").starts_with("libc.so");
        for index in 0..info.dlpi_phnum as usize {
            // SAFETY: dlpi_phdr points to dlpi_phnum headers.
            let header = unsafe { &*info.dlpi_phdr.add(index) };
            if header.p_type == libc::PT_TLS {
                let image = Image {
                    below_tp,
                    image: (info.dlpi_addr as usize + header.p_vaddr as usize) as *const u8,
                    file_size: header.p_filesz as usize,
                    mem_size: header.p_memsz as usize,
                };
                if is_libc {
                    scan.libc = Some(image);
                } else {
                    scan.images.push(image);
                }
            }
        }
        0
    }
    let mut scan = Scan {
        tp: arch::thread_pointer(),
        images: Vec::new(),
        libc: None,
        modids: Vec::new(),
    };
    // SAFETY: the callback matches dl_iterate_phdr's contract; `scan` outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut scan).cast()) };
    if scan.modids.is_empty() {
        return None;
    }
    Some((scan.images, scan.libc, scan.modids))
}

/// # Safety
/// `base + offset` must be valid for a write of `T`.
unsafe fn put<T>(base: usize, offset: usize, value: T) {
    // SAFETY: per the contract.
    unsafe { ((base + offset) as *mut T).write(value) }
}

/// # Safety
/// `base + offset` must be valid for a read of `T`.
unsafe fn get<T: Copy>(base: usize, offset: usize) -> T {
    // SAFETY: per the contract.
    unsafe { ((base + offset) as *const T).read() }
}

/// # Safety
/// Both `to + offset` and `from + offset` must be valid for `T`.
unsafe fn copy<T: Copy>(to: usize, from: usize, offset: usize) {
    // SAFETY: per the contract.
    unsafe { put(to, offset, get::<T>(from, offset)) }
}
