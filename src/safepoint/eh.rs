//! A loaded module's `.eh_frame`: the extent of the function that contains an address.
//!
//! Context: caller (building tables, preparing a cancellation); read-only parsing of mapped
//! memory with gimli, which allocates nothing.

use core::ops::Range;

use gimli::{BaseAddresses, EhFrame, EhFrameHdr, LittleEndian, UnwindSection};

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
}
