//! The dynamic loader's `dlopen` family for libsets: opening a named library, loading an
//! independent copy of one from an in-memory file, and the file a loaded library came from.
//!
//! Context: caller or a function's stack with preemption deferred (these take the loader's
//! lock and allocate); never a signal handler.
//!
//! # How glibc 2.36 recognises an object it already loaded
//!
//! `dlopen` returns the loaded object instead of loading again when the name it is given
//! matches a loaded object's name (or its `DT_SONAME`), or when the file it opens has the
//! device and inode number of a loaded object's file. A copy therefore needs a file of its
//! own (a fresh inode: an in-memory file from `memfd_create`, never a hard link) and a name
//! no loaded object has: `/proc/self/fd/N`, with descriptor `N` kept open as long as the copy
//! is loaded. (If it were closed, the next in-memory file could get the same number, and
//! `dlopen` would return the old copy by name.) `RTLD_DEEPBIND` makes the copy's references
//! to its own symbols bind to itself first: without it they bind to the first instance in
//! the global scope (the original, if the program links it), and the copy would share the
//! original's globals.

use core::ffi::{CStr, c_int, c_void};
use core::ptr::NonNull;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::last_errno;

/// A handle from `dlopen`, never closed (code of a libset's library and its copies may run
/// at any time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Handle(NonNull<c_void>);

// SAFETY: a dlopen handle is process-wide; dlsym and dlinfo may be called with it from any
// thread (they take the loader's lock).
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

/// What the loader knows about a loaded object (its public `struct link_map` fields).
pub(crate) struct LinkMap {
    /// The load bias (`l_addr`).
    pub(crate) bias: usize,
    /// The path it was loaded from (`l_name`; empty for the executable).
    pub(crate) name: String,
}

/// The loader's last error message.
fn dlerror_message() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated message owned by the loader.
    let message = unsafe { libc::dlerror() };
    if message.is_null() {
        return "unknown dynamic loader error".to_owned();
    }
    // SAFETY: as above.
    unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned()
}

impl Handle {
    /// The library `name` (a soname like `libz.so.1` or a path), if it is loaded already;
    /// else loads it with `RTLD_NOW | RTLD_LOCAL` (its symbols stay out of the global scope).
    pub(crate) fn open(name: &str) -> Result<Handle, String> {
        let c_name = CString::new(name).map_err(|_| "the name contains a NUL byte".to_owned())?;
        // SAFETY: a NUL-terminated name; RTLD_NOLOAD loads nothing.
        let loaded = unsafe {
            libc::dlopen(
                c_name.as_ptr(),
                libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_LOCAL,
            )
        };
        if let Some(handle) = NonNull::new(loaded) {
            return Ok(Handle(handle));
        }
        // SAFETY: as above; the library's constructors run, as for any dlopen.
        let opened = unsafe { libc::dlopen(c_name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        NonNull::new(opened).map(Handle).ok_or_else(dlerror_message)
    }

    /// Loads an independent copy of a library from the in-memory file `fd` (see the module
    /// docs), with `RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND`. Its constructors run here.
    pub(crate) fn open_copy(fd: &OwnedFd) -> Result<Handle, String> {
        let path = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(|_| "unreachable NUL".to_owned())?;
        // SAFETY: a NUL-terminated path of a descriptor we keep open.
        let opened = unsafe {
            libc::dlopen(
                path.as_ptr(),
                libc::RTLD_NOW | libc::RTLD_LOCAL | libc::RTLD_DEEPBIND,
            )
        };
        NonNull::new(opened).map(Handle).ok_or_else(dlerror_message)
    }

    /// The address of `name` in this object and its dependencies (for an IFUNC, the
    /// implementation its resolver selected).
    pub(crate) fn symbol(&self, name: &CStr) -> Option<usize> {
        // SAFETY: a live handle and a NUL-terminated name.
        let address = unsafe { libc::dlsym(self.0.as_ptr(), name.as_ptr()) } as usize;
        (address != 0).then_some(address)
    }

    /// The object's link map entry.
    pub(crate) fn link_map(&self) -> Result<LinkMap, String> {
        /// `RTLD_DI_LINKMAP` from `<dlfcn.h>`.
        const RTLD_DI_LINKMAP: c_int = 2;
        /// The public head of glibc's `struct link_map` (`<link.h>`).
        #[repr(C)]
        struct PublicLinkMap {
            l_addr: usize,
            l_name: *const core::ffi::c_char,
            l_ld: *const c_void,
            l_next: *const PublicLinkMap,
            l_prev: *const PublicLinkMap,
        }
        let mut map: *mut PublicLinkMap = core::ptr::null_mut();
        // SAFETY: RTLD_DI_LINKMAP stores a `struct link_map *` into the out-parameter.
        let failed =
            unsafe { libc::dlinfo(self.0.as_ptr(), RTLD_DI_LINKMAP, (&raw mut map).cast()) } != 0;
        if failed || map.is_null() {
            return Err(dlerror_message());
        }
        // SAFETY: the loader's link map entry of a loaded object; `l_addr` and `l_name` are
        // public fields of `<link.h>`.
        let (bias, name) = unsafe { ((*map).l_addr as usize, (*map).l_name) };
        let name = if name.is_null() {
            String::new()
        } else {
            // SAFETY: `l_name` is NUL-terminated.
            unsafe { CStr::from_ptr(name) }
                .to_string_lossy()
                .into_owned()
        };
        Ok(LinkMap { bias, name })
    }
}

/// The address `name` has in the global scope (`dlsym(RTLD_DEFAULT)`), as a lazily bound
/// call of a module would find it.
pub(crate) fn global_symbol(name: &CStr) -> Option<usize> {
    super::modules::resolve(name)
}

/// A library's file, opened for reading, with its identity.
pub(crate) struct SourceFile {
    fd: OwnedFd,
    /// Its size in bytes.
    pub(crate) size: u64,
    /// Device and inode number.
    pub(crate) id: (u64, u64),
}

impl SourceFile {
    /// Opens `path` (close-on-exec) and reads its identity.
    pub(crate) fn open(path: &str) -> Result<SourceFile, String> {
        let c_path = CString::new(path).map_err(|_| "the path contains a NUL byte".to_owned())?;
        // SAFETY: a NUL-terminated path.
        let raw = unsafe { libc::open(c_path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(format!(
                "cannot open {path}: {}",
                std::io::Error::from_raw_os_error(last_errno())
            ));
        }
        // SAFETY: `raw` is a descriptor we just opened and own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: a zeroed stat is a valid out-parameter.
        let mut stat: libc::stat = unsafe { core::mem::zeroed() };
        // SAFETY: a live descriptor and a valid out-parameter.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } != 0 {
            return Err(format!(
                "cannot stat {path}: {}",
                std::io::Error::from_raw_os_error(last_errno())
            ));
        }
        Ok(SourceFile {
            fd,
            size: stat.st_size as u64,
            id: (stat.st_dev, stat.st_ino),
        })
    }

    /// Reads `len` bytes at `offset`.
    pub(crate) fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, String> {
        let mut bytes = vec![0u8; len];
        let mut done = 0;
        while done < len {
            // SAFETY: reading into the unfilled tail of our buffer.
            let n = unsafe {
                libc::pread(
                    self.fd.as_raw_fd(),
                    bytes[done..].as_mut_ptr().cast(),
                    len - done,
                    (offset + done as u64) as libc::off_t,
                )
            };
            match n {
                0 => return Err("the file is shorter than its program headers say".to_owned()),
                n if n < 0 && last_errno() == libc::EINTR => continue,
                n if n < 0 => {
                    return Err(format!(
                        "read: {}",
                        std::io::Error::from_raw_os_error(last_errno())
                    ));
                }
                n => done += n as usize,
            }
        }
        Ok(bytes)
    }

    /// A new in-memory file (close-on-exec) named `name` (as `/proc/self/maps` shows it) of
    /// this file's size, holding only the byte ranges `ranges` of it (the rest are holes,
    /// which read as zeroes and cost no memory).
    pub(crate) fn memfd_copy(&self, name: &str, ranges: &[(u64, u64)]) -> Result<OwnedFd, String> {
        let c_name = CString::new(name).map_err(|_| "the name contains a NUL byte".to_owned())?;
        // SAFETY: a NUL-terminated name and valid flags.
        let raw = unsafe { libc::memfd_create(c_name.as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(format!(
                "memfd_create: {}",
                std::io::Error::from_raw_os_error(last_errno())
            ));
        }
        // SAFETY: a descriptor we just created and own.
        let memfd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sizing our own in-memory file.
        if unsafe { libc::ftruncate(memfd.as_raw_fd(), self.size as libc::off_t) } != 0 {
            return Err(format!(
                "ftruncate: {}",
                std::io::Error::from_raw_os_error(last_errno())
            ));
        }
        for &(start, end) in ranges {
            let end = end.min(self.size);
            let mut at = start;
            while at < end {
                let chunk = ((end - at) as usize).min(1 << 20);
                let bytes = self.read_at(at, chunk)?;
                let mut written = 0;
                while written < bytes.len() {
                    // SAFETY: writing bytes we own into our own in-memory file.
                    let n = unsafe {
                        libc::pwrite(
                            memfd.as_raw_fd(),
                            bytes[written..].as_ptr().cast(),
                            bytes.len() - written,
                            (at + written as u64) as libc::off_t,
                        )
                    };
                    match n {
                        n if n > 0 => written += n as usize,
                        n if n < 0 && last_errno() == libc::EINTR => {}
                        _ => {
                            return Err(format!(
                                "writing the in-memory copy: {}",
                                std::io::Error::from_raw_os_error(last_errno())
                            ));
                        }
                    }
                }
                at += chunk as u64;
            }
        }
        Ok(memfd)
    }
}

/// The device and inode number of the file mapped at `address`, from `/proc/self/maps`
/// (`None` if no file is mapped there).
pub(crate) fn mapped_file_id(address: usize) -> Option<(u64, u64)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    for line in maps.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (range, _perms, _offset, device, inode) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        let (start, end) = range.split_once('-')?;
        let (start, end) = (
            usize::from_str_radix(start, 16).ok()?,
            usize::from_str_radix(end, 16).ok()?,
        );
        if !(start..end).contains(&address) {
            continue;
        }
        let (major, minor) = device.split_once(':')?;
        let (major, minor) = (
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?,
        );
        let inode: u64 = inode.parse().ok()?;
        return (inode != 0).then(|| (libc::makedev(major, minor), inode));
    }
    None
}
