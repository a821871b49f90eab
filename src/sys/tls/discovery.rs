//! Finding glibc's TLS internals at start-up: the allocator and destructor entry points, the
//! thread-descriptor offsets glibc publishes for debuggers, the static TLS images of the
//! loaded modules, and libc's unexported list of thread-local destructors.
//!
//! Context: caller, once per process (outside any signal handler).

use core::ffi::{CStr, c_void};

use super::{Glibc, PTHREAD_KEY_2NDLEVEL_SIZE, PTHREAD_KEY_DATA_SIZE, get};
use crate::arch;

impl Glibc {
    /// Finds glibc's internals and checks them for consistency; `None` if anything is
    /// missing or does not add up.
    pub(super) fn find() -> Option<Glibc> {
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
}

/// One module's static TLS image and where its block sits below the thread pointer.
pub(super) struct Image {
    pub(super) below_tp: usize,
    pub(super) image: *const u8,
    pub(super) file_size: usize,
    pub(super) mem_size: usize,
}

impl Image {
    /// Re-initialises this module's part of the static TLS area of `block`.
    pub(super) fn copy_into(&self, block: usize) {
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
