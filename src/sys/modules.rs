//! The table of loaded modules whose code must never be paused (first-level safe points).
//!
//! Built with `dl_iterate_phdr` outside any signal handler, then published once; the handler
//! only reads it. A module is non-preemptible when its file name matches the list below: the
//! dynamic loader, libc (which in glibc 2.34+ includes libpthread and libdl), libgcc_s and
//! libstdc++. Their internal locks and caches (malloc arenas, stdio buffers, the loader's
//! lazy-binding state) are not reentrant, and code paused inside them would leave them
//! half-updated for the caller.

use core::ffi::{CStr, c_int, c_void};
use std::sync::OnceLock;

/// Executable address ranges of non-preemptible modules.
pub(crate) struct ModuleTable {
    ranges: Vec<(usize, usize)>,
}

/// File-name stems of modules never paused inside.
const NON_PREEMPTIBLE: &[&str] = &[
    "ld-linux",
    "libc.so",
    "libpthread",
    "libdl.so",
    "libgcc_s",
    "libstdc++",
];

static TABLE: OnceLock<ModuleTable> = OnceLock::new();

/// The table, built on first use. Call it outside signal handlers before the first preemption.
pub(crate) fn table() -> &'static ModuleTable {
    TABLE.get_or_init(ModuleTable::build)
}

/// The table if it was built; async-signal-safe (never builds).
pub(crate) fn table_if_built() -> Option<&'static ModuleTable> {
    TABLE.get()
}

impl ModuleTable {
    fn build() -> ModuleTable {
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        // SAFETY: the callback matches dl_iterate_phdr's contract; `ranges` outlives the call.
        unsafe {
            libc::dl_iterate_phdr(
                Some(visit),
                (&mut ranges as *mut Vec<(usize, usize)>).cast(),
            )
        };
        ranges.sort_unstable();
        ModuleTable { ranges }
    }

    /// Whether `ip` is in a non-preemptible module. Async-signal-safe: a binary search over an
    /// immutable sorted slice.
    pub(crate) fn is_non_preemptible(&self, ip: usize) -> bool {
        let index = self.ranges.partition_point(|&(start, _)| start <= ip);
        index > 0 && ip < self.ranges[index - 1].1
    }

    /// How many code ranges are listed.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ranges.len()
    }
}

unsafe extern "C" fn visit(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid info and our `data` pointer.
    let (info, ranges) = unsafe { (&*info, &mut *data.cast::<Vec<(usize, usize)>>()) };
    let name = if info.dlpi_name.is_null() {
        ""
    } else {
        // SAFETY: a non-null dlpi_name is a NUL-terminated string.
        unsafe { CStr::from_ptr(info.dlpi_name) }
            .to_str()
            .unwrap_or("")
    };
    let file = name.rsplit('/').next().unwrap_or(name);
    if !NON_PREEMPTIBLE.iter().any(|stem| file.starts_with(stem)) {
        return 0;
    }
    for index in 0..info.dlpi_phnum as usize {
        // SAFETY: dlpi_phdr points to dlpi_phnum program headers.
        let header = unsafe { &*info.dlpi_phdr.add(index) };
        if header.p_type == libc::PT_LOAD && header.p_flags & libc::PF_X != 0 {
            let start = info.dlpi_addr as usize + header.p_vaddr as usize;
            ranges.push((start, start + header.p_memsz as usize));
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libc_code_is_non_preemptible_and_ours_is_not() {
        let table = table();
        assert!(table.len() >= 2, "expected at least libc and the loader");
        assert!(table.is_non_preemptible(libc::getpid as *const () as usize));
        assert!(table.is_non_preemptible(libc::malloc as *const () as usize));
        assert!(!table.is_non_preemptible(
            libc_code_is_non_preemptible_and_ours_is_not as *const () as usize
        ));
    }
}
