//! What a libset needs to know of a library's file before copying it: the byte ranges its
//! loadable segments come from (a copy holds only those) and whether it uses initial-exec
//! thread-local storage (which a copy cannot be given).
//!
//! Context: caller, or a function's stack with preemption deferred. Pure parsing of bytes
//! read from the file: the reads are the caller's.

use std::collections::BTreeSet;

use object::{Object, ObjectSymbol, SymbolKind};

/// The parts of an ELF file a copy needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LibraryImage {
    /// `(start, end)` file offsets a copy must hold: the headers and each `PT_LOAD`'s bytes.
    pub(crate) ranges: Vec<(u64, u64)>,
    /// `DF_STATIC_TLS` is set: the library uses the initial-exec TLS model, so every
    /// instance needs a block of the static TLS area, which glibc sizes at start-up.
    pub(crate) static_tls: bool,
}

/// `e_ident`, `e_type` and friends of `<elf.h>`, for 64-bit little-endian x86-64 objects.
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
const HEADER_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const DT_NULL: u64 = 0;
const DT_FLAGS: u64 = 30;
const DF_STATIC_TLS: u64 = 0x10;

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Where the program headers are: `(offset, count)`, from the 64-byte ELF header.
///
/// # Errors
/// Why the file is not a 64-bit little-endian x86-64 shared object.
pub(crate) fn program_headers(header: &[u8]) -> Result<(u64, usize), String> {
    if header.len() < HEADER_SIZE || &header[..4] != ELF_MAGIC {
        return Err("not an ELF file".to_owned());
    }
    if header[4] != ELFCLASS64 || header[5] != ELFDATA2LSB {
        return Err("not a 64-bit little-endian ELF file".to_owned());
    }
    if u16_at(header, 16) != Some(ET_DYN) {
        return Err("not a shared object".to_owned());
    }
    if u16_at(header, 18) != Some(EM_X86_64) {
        return Err("not an x86-64 object".to_owned());
    }
    let offset = u64_at(header, 32).ok_or("truncated ELF header")?;
    let entry_size = u16_at(header, 54).ok_or("truncated ELF header")? as usize;
    let count = u16_at(header, 56).ok_or("truncated ELF header")? as usize;
    if entry_size != PHDR_SIZE {
        return Err(format!("unexpected program header size {entry_size}"));
    }
    Ok((offset, count))
}

/// The image, from the program headers (`count` entries of `phdrs`) and a reader of file
/// bytes (`read(offset, len)`, for the dynamic segment).
///
/// # Errors
/// Why the headers make no sense.
pub(crate) fn parse(
    phdrs_offset: u64,
    phdrs: &[u8],
    count: usize,
    mut read: impl FnMut(u64, usize) -> Result<Vec<u8>, String>,
) -> Result<LibraryImage, String> {
    let headers_end = phdrs_offset + (count * PHDR_SIZE) as u64;
    let mut ranges = vec![(0, headers_end.max(HEADER_SIZE as u64))];
    let mut dynamic = None;
    for index in 0..count {
        let at = index * PHDR_SIZE;
        let p_type = u32_at(phdrs, at).ok_or("truncated program headers")?;
        let p_offset = u64_at(phdrs, at + 8).ok_or("truncated program headers")?;
        let p_filesz = u64_at(phdrs, at + 32).ok_or("truncated program headers")?;
        match p_type {
            PT_LOAD if p_filesz > 0 => ranges.push((p_offset, p_offset + p_filesz)),
            PT_DYNAMIC => dynamic = Some((p_offset, p_filesz)),
            _ => {}
        }
    }
    let mut static_tls = false;
    if let Some((offset, size)) = dynamic {
        let bytes = read(offset, size as usize)?;
        for entry in bytes.chunks_exact(16) {
            let tag = u64_at(entry, 0).unwrap_or(DT_NULL);
            let value = u64_at(entry, 8).unwrap_or(0);
            match tag {
                DT_NULL => break,
                DT_FLAGS => static_tls = value & DF_STATIC_TLS != 0,
                _ => {}
            }
        }
    }
    ranges.sort_unstable();
    Ok(LibraryImage { ranges, static_tls })
}

/// The names of the data objects and thread-local variables a library exports (from its
/// dynamic symbol table): references to them from other modules cannot be routed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Exports {
    pub(crate) data: BTreeSet<String>,
    pub(crate) tls: BTreeSet<String>,
}

/// The exports of the library whose whole file is `bytes`.
///
/// # Errors
/// Why the file could not be parsed.
pub(crate) fn exports(bytes: &[u8]) -> Result<Exports, String> {
    let file = object::File::parse(bytes).map_err(|error| error.to_string())?;
    let mut exports = Exports::default();
    for symbol in file.dynamic_symbols() {
        if symbol.is_undefined() {
            continue;
        }
        let Ok(name) = symbol.name() else { continue };
        match symbol.kind() {
            SymbolKind::Data | SymbolKind::Unknown if !name.is_empty() => {
                exports.data.insert(name.to_owned());
            }
            SymbolKind::Tls => {
                exports.tls.insert(name.to_owned());
            }
            _ => {}
        }
    }
    Ok(exports)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF header with `count` program headers at offset 64.
    fn header(e_type: u16, machine: u16, count: u16) -> Vec<u8> {
        let mut bytes = vec![0u8; 64];
        bytes[..4].copy_from_slice(ELF_MAGIC);
        bytes[4] = ELFCLASS64;
        bytes[5] = ELFDATA2LSB;
        bytes[16..18].copy_from_slice(&e_type.to_le_bytes());
        bytes[18..20].copy_from_slice(&machine.to_le_bytes());
        bytes[32..40].copy_from_slice(&64u64.to_le_bytes());
        bytes[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        bytes[56..58].copy_from_slice(&count.to_le_bytes());
        bytes
    }

    fn phdr(p_type: u32, offset: u64, filesz: u64) -> Vec<u8> {
        let mut bytes = vec![0u8; PHDR_SIZE];
        bytes[..4].copy_from_slice(&p_type.to_le_bytes());
        bytes[8..16].copy_from_slice(&offset.to_le_bytes());
        bytes[32..40].copy_from_slice(&filesz.to_le_bytes());
        bytes
    }

    #[test]
    fn headers_of_a_shared_object_are_found_and_others_refused() {
        assert_eq!(program_headers(&header(ET_DYN, EM_X86_64, 3)), Ok((64, 3)));
        assert!(
            program_headers(&header(2, EM_X86_64, 3)).is_err(),
            "ET_EXEC"
        );
        assert!(program_headers(&header(ET_DYN, 183, 3)).is_err(), "aarch64");
        assert!(program_headers(b"#!/bin/sh\n").is_err());
    }

    #[test]
    fn loadable_ranges_and_the_static_tls_flag() {
        let mut phdrs = phdr(PT_LOAD, 0, 0x1000);
        phdrs.extend(phdr(PT_LOAD, 0x3000, 0x500));
        phdrs.extend(phdr(PT_DYNAMIC, 0x3100, 48));
        let dynamic = |flags: u64| {
            let mut bytes = Vec::new();
            for (tag, value) in [(DT_FLAGS, flags), (DT_NULL, 0), (DT_FLAGS, DF_STATIC_TLS)] {
                bytes.extend(tag.to_le_bytes());
                bytes.extend(value.to_le_bytes());
            }
            bytes
        };
        let image = parse(64, &phdrs, 3, |offset, len| {
            assert_eq!((offset, len), (0x3100, 48));
            Ok(dynamic(0x8))
        })
        .expect("parsed");
        assert_eq!(
            image.ranges,
            vec![(0, 64 + 3 * 56), (0, 0x1000), (0x3000, 0x3500)]
        );
        assert!(!image.static_tls, "the flag after DT_NULL does not count");
        let image = parse(64, &phdrs, 3, |_, _| Ok(dynamic(0x8 | DF_STATIC_TLS))).expect("parsed");
        assert!(image.static_tls);
    }
}
