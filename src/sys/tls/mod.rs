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

use core::ffi::c_void;
use std::sync::OnceLock;

use crate::arch;
use crate::error::Error;

mod discovery;

use discovery::Image;

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

/// glibc's internals if they were all found and consistent, else `None`. Looked up once
/// (`wanted` false: never looked up, as under `INGER_SHARED_TLS`), outside any signal
/// handler; the first call decides.
pub(crate) fn glibc(wanted: bool) -> Option<&'static Glibc> {
    GLIBC
        .get_or_init(|| if wanted { Glibc::find() } else { None })
        .as_ref()
}

impl Glibc {
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
