//! A loaded module's `.eh_frame`: the extent of the function that contains an address, and
//! whether a call site may unwind (its function's exception table lists it).
//!
//! Context: caller (building tables, preparing a cancellation); read-only parsing of mapped
//! memory with gimli, which allocates nothing.

use core::ops::Range;

use gimli::{BaseAddresses, EhFrame, EhFrameHdr, LittleEndian, Pointer, UnwindSection};

use crate::sys::modules::LoadedModule;

/// The unwind sections of one module, viewed in place.
#[derive(Clone, Copy)]
pub(crate) struct EhSections {
    hdr: &'static [u8],
    hdr_address: usize,
    eh_frame: &'static [u8],
    eh_frame_address: usize,
    text_address: usize,
}

impl EhSections {
    /// The sections of `module`, if it has an `.eh_frame_hdr` with a search table.
    pub(crate) fn of(module: &LoadedModule) -> Option<EhSections> {
        let hdr = module.eh_frame_hdr.clone()?;
        let hdr_bytes = module.loaded_bytes(hdr.clone())?;
        let eh_frame = super::tables::eh_frame_address(hdr.start, hdr_bytes)?;
        let end = module.segment_end(eh_frame)?;
        Some(EhSections {
            hdr: hdr_bytes,
            hdr_address: hdr.start,
            eh_frame: module.loaded_bytes(eh_frame..end)?,
            eh_frame_address: eh_frame,
            text_address: module.executable.first()?.start,
        })
    }

    fn bases(&self) -> BaseAddresses {
        BaseAddresses::default()
            .set_eh_frame_hdr(self.hdr_address as u64)
            .set_eh_frame(self.eh_frame_address as u64)
            .set_text(self.text_address as u64)
    }

    /// The extent of the function (its FDE) that contains `address`.
    pub(crate) fn function_extent(&self, address: usize) -> Option<Range<usize>> {
        let bases = self.bases();
        let hdr = EhFrameHdr::new(self.hdr, LittleEndian)
            .parse(&bases, 8)
            .ok()?;
        let table = hdr.table()?;
        let eh_frame = EhFrame::new(self.eh_frame, LittleEndian);
        let fde = table
            .fde_for_address(&eh_frame, &bases, address as u64, EhFrame::cie_from_offset)
            .ok()?;
        let start = fde.initial_address() as usize;
        Some(start..start + fde.len() as usize)
    }

    /// Whether a panic may unwind out of the call whose return address is `return_address`:
    /// the calling function has no exception table (nothing to run, nothing that forbids it),
    /// or its table lists the call site (a call LLVM considers able to unwind). A call site
    /// missing from a table is a call to a function known not to unwind, where a panic would
    /// abort the process. `None` when the function has no unwind information at all.
    pub(crate) fn call_may_unwind(&self, return_address: usize) -> Option<bool> {
        let bases = self.bases();
        let hdr = EhFrameHdr::new(self.hdr, LittleEndian)
            .parse(&bases, 8)
            .ok()?;
        let table = hdr.table()?;
        let eh_frame = EhFrame::new(self.eh_frame, LittleEndian);
        // The call instruction ends at the return address: look up the byte before it.
        let call = return_address.checked_sub(1)?;
        let fde = table
            .fde_for_address(&eh_frame, &bases, call as u64, EhFrame::cie_from_offset)
            .ok()?;
        let lsda = match fde.lsda() {
            None => return Some(true),
            Some(Pointer::Direct(address)) => address as usize,
            // Indirect LSDA pointers are not emitted for code on this platform.
            Some(Pointer::Indirect(_)) => return Some(false),
        };
        let function_start = fde.initial_address() as usize;
        // SAFETY: the exception table of a loaded module lies in its mapped, read-only data
        // (`.gcc_except_table`); it is only read, within the lengths its header gives.
        Some(unsafe { lsda_lists_call(lsda, function_start, call) })
    }
}

/// Whether the call-site table of the LSDA at `lsda` (for the function starting at
/// `function_start`) has an entry covering `call`.
///
/// # Safety
/// `lsda` must be the address of a well-formed LSDA in mapped memory.
unsafe fn lsda_lists_call(lsda: usize, function_start: usize, call: usize) -> bool {
    let mut reader = Reader { at: lsda };
    // SAFETY (all reads below): per the contract, the LSDA's fields are mapped.
    unsafe {
        let lpstart_encoding = reader.u8();
        if lpstart_encoding != DW_EH_PE_OMIT {
            let _ = reader.encoded(lpstart_encoding);
        }
        let ttype_encoding = reader.u8();
        if ttype_encoding != DW_EH_PE_OMIT {
            let _ = reader.uleb128(); // the offset of the types table
        }
        let call_site_encoding = reader.u8();
        let table_length = reader.uleb128();
        let end = reader.at + table_length as usize;
        let offset = call - function_start;
        while reader.at < end {
            let start = reader.encoded(call_site_encoding);
            let length = reader.encoded(call_site_encoding);
            let _landing_pad = reader.encoded(call_site_encoding);
            let _action = reader.uleb128();
            if offset >= start as usize && offset < (start + length) as usize {
                return true;
            }
        }
    }
    false
}

const DW_EH_PE_OMIT: u8 = 0xff;

/// Reads the little-endian encodings an LSDA uses.
struct Reader {
    at: usize,
}

impl Reader {
    /// # Safety
    /// The byte at `self.at` must be mapped.
    unsafe fn u8(&mut self) -> u8 {
        // SAFETY: per the contract.
        let value = unsafe { (self.at as *const u8).read() };
        self.at += 1;
        value
    }

    /// # Safety
    /// The whole LEB128 number must be mapped.
    unsafe fn uleb128(&mut self) -> u64 {
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            // SAFETY: per the contract.
            let byte = unsafe { self.u8() };
            if shift < 64 {
                value |= u64::from(byte & 0x7f) << shift;
            }
            shift += 7;
            if byte & 0x80 == 0 {
                return value;
            }
        }
    }

    /// A value in one of the fixed-size or LEB128 formats of `encoding` (the application
    /// part, relative or absolute, is ignored: call-site fields are offsets).
    ///
    /// # Safety
    /// The value must be mapped.
    unsafe fn encoded(&mut self, encoding: u8) -> u64 {
        // SAFETY (all arms): per the contract.
        unsafe {
            match encoding & 0x0f {
                0x01 => self.uleb128(),
                0x02 => u64::from(self.fixed::<2>() as u16),
                0x03 => u64::from(self.fixed::<4>() as u32),
                0x04 => self.fixed::<8>(),
                0x0a => self.fixed::<2>() as i16 as u64,
                0x0b => self.fixed::<4>() as i32 as u64,
                0x0c => self.fixed::<8>(),
                // DW_EH_PE_absptr and anything unexpected: a pointer-sized value.
                _ => self.fixed::<8>(),
            }
        }
    }

    /// # Safety
    /// `N` bytes at `self.at` must be mapped.
    unsafe fn fixed<const N: usize>(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        // SAFETY: per the contract.
        unsafe { core::ptr::copy_nonoverlapping(self.at as *const u8, bytes.as_mut_ptr(), N) };
        self.at += N;
        u64::from_le_bytes(bytes)
    }
}
