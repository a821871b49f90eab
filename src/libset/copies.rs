//! One copy of a libset's library: loaded from an in-memory file as an independent instance,
//! with a snapshot of its writable data taken right after loading, from which it is renewed.
//!
//! Context: caller, or a function's stack with preemption deferred (loading takes the
//! loader's lock and allocates; renewing only copies memory and advises the kernel).
//!
//! # Renewal
//!
//! A copy's state lives in its writable segments: initialised data (`.data`, the writable
//! part of `.got.plt`) and zero-initialised data (`.bss`). The `PT_GNU_RELRO` part is
//! read-only once relocated and never changes. The snapshot keeps the bytes of every writable
//! page except whole pages of `.bss` that were still zero after the copy's constructors ran:
//! those are anonymous memory, and renewing hands them back to the kernel (`MADV_DONTNEED`),
//! which makes them read as zero again and frees what they used. So renewing costs a copy of
//! the initialised data and one system call, and a copy that was renewed uses no more memory
//! than a fresh one.
//!
//! What renewal cannot reach, and what therefore leaks when a function is cancelled inside
//! its copy: memory the library allocated (`malloc`, `mmap`) and pointed to from its globals,
//! descriptors and `FILE`s it opened, its thread-local variables in threads other than the
//! cancelled function's (the function's own are dropped with its TLS block), and anything
//! it registered elsewhere (`atexit` handlers, signal handlers, threads).

use core::ops::Range;
use std::os::fd::OwnedFd;

use super::image::LibraryImage;
use crate::sys::dynlib::{Handle, SourceFile};
use crate::sys::memory;
use crate::sys::modules::{self, LoadedModule};
use crate::sys::process::page_size;

/// One loaded copy.
pub(crate) struct LoadedCopy {
    pub(crate) handle: Handle,
    /// The in-memory file it was loaded from; kept open (see `sys::dynlib`).
    _file: OwnedFd,
    /// Its load bias: the copy of the original's address `a` is at `a - original + bias`.
    pub(crate) bias: usize,
    snapshot: Snapshot,
}

/// The state a copy had after loading.
struct Snapshot {
    /// Bytes to write back: `(address, bytes)`.
    saved: Vec<(usize, Box<[u8]>)>,
    /// Anonymous, page-aligned ranges that were zero: handed back to the kernel.
    zero: Vec<Range<usize>>,
}

impl LoadedCopy {
    /// Loads a copy of the library in `source` (whose loadable ranges `image` lists), named
    /// `name` in `/proc/self/maps`, and takes its snapshot.
    ///
    /// # Errors
    /// Why the in-memory file could not be made or the loader refused it.
    pub(crate) fn load(
        source: &SourceFile,
        image: &LibraryImage,
        name: &str,
        original_bias: usize,
    ) -> Result<LoadedCopy, String> {
        let file = source.memfd_copy(name, &image.ranges)?;
        let handle = Handle::open_copy(&file)?;
        let map = handle.link_map()?;
        if map.bias == original_bias {
            return Err("the dynamic loader returned the original instead of a copy".to_owned());
        }
        let module = modules::loaded_at(map.bias)
            .ok_or_else(|| "the copy is missing from the loader's module list".to_owned())?;
        let snapshot = Snapshot::take(&module);
        Ok(LoadedCopy {
            handle,
            _file: file,
            bias: map.bias,
            snapshot,
        })
    }

    /// Restores the copy's writable data to its state after loading (see the module docs).
    /// No code of the copy may run meanwhile.
    pub(crate) fn renew(&self) {
        for (address, bytes) in &self.snapshot.saved {
            // SAFETY: `address` is a writable, non-RELRO part of this copy's segments, which
            // stay mapped; no code of the copy runs (the caller's contract).
            unsafe {
                core::ptr::copy_nonoverlapping(bytes.as_ptr(), *address as *mut u8, bytes.len())
            };
        }
        for range in &self.snapshot.zero {
            memory::discard(range.start as *mut u8, range.len());
        }
    }

    /// Bytes the snapshot holds (the cost of renewing, in copied bytes).
    pub(crate) fn snapshot_bytes(&self) -> usize {
        self.snapshot
            .saved
            .iter()
            .map(|(_, bytes)| bytes.len())
            .sum()
    }
}

impl Snapshot {
    fn take(module: &LoadedModule) -> Snapshot {
        let page = page_size();
        let down = |address: usize| address & !(page - 1);
        let up = |address: usize| (address + page - 1) & !(page - 1);
        let read_only = module
            .relro
            .as_ref()
            .map_or(0..0, |relro| down(relro.start)..down(relro.end));
        let mut snapshot = Snapshot {
            saved: Vec::new(),
            zero: Vec::new(),
        };
        for segment in &module.writable {
            // The writable pieces of the segment: before and after its read-only RELRO pages.
            let pieces = [
                segment.range.start..segment.range.end.min(read_only.start),
                segment.range.start.max(read_only.end)..segment.range.end,
            ];
            let anonymous = up(segment.file_end);
            for piece in pieces.into_iter().filter(|piece| !piece.is_empty()) {
                let file_part = piece.start..piece.end.min(anonymous);
                if !file_part.is_empty() {
                    snapshot.save(file_part);
                }
                let mut at = piece.start.max(anonymous);
                while at < piece.end {
                    // Whole pages of anonymous memory, to the end of the last one.
                    let page_range = at..at + page;
                    // SAFETY: a page of the segment's anonymous part, mapped and readable.
                    let bytes =
                        unsafe { core::slice::from_raw_parts(page_range.start as *const u8, page) };
                    if bytes.iter().all(|&byte| byte == 0) {
                        match snapshot.zero.last_mut() {
                            Some(last) if last.end == page_range.start => {
                                last.end = page_range.end;
                            }
                            _ => snapshot.zero.push(page_range),
                        }
                    } else {
                        snapshot.save(page_range);
                    }
                    at += page;
                }
            }
        }
        snapshot
    }

    fn save(&mut self, range: Range<usize>) {
        // SAFETY: a readable part of a loaded segment.
        let bytes = unsafe { core::slice::from_raw_parts(range.start as *const u8, range.len()) };
        self.saved.push((range.start, bytes.into()));
    }
}
