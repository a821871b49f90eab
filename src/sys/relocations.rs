//! The dynamic relocations of loaded modules, read from their in-memory `PT_DYNAMIC`, and
//! rewriting the words they relocated (global offset table entries, pointers in data),
//! lifting `PT_GNU_RELRO` protection around the write.
//!
//! Context: caller, or a function's stack with preemption deferred; never a signal handler.
//! The modules must stay loaded meanwhile (inger never unloads them; a concurrent `dlclose`
//! of a module being read is the caller's bug, as for any use of its memory).
//!
//! glibc relocates the address-valued entries of each module's dynamic array in place when
//! it loads it (`l_info`'s pointers), except where the array is read-only (the vDSO); an
//! address is taken as relocated when it falls inside the module's loaded segments, else
//! the load bias is added.

use core::ffi::CStr;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::modules::LoadedModule;
use crate::error::last_errno;

/// What a relocated word is, for routing (x86-64 relocation types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `R_X86_64_JUMP_SLOT`: a PLT entry's target.
    JumpSlot,
    /// `R_X86_64_GLOB_DAT`: a global offset table entry (a call without PLT, or an address
    /// taken).
    GlobDat,
    /// `R_X86_64_64`: an address stored in data (a static table of function pointers).
    Absolute,
    /// `R_X86_64_COPY`: the executable holds its own copy of a library's data object.
    Copy,
    /// `R_X86_64_DTPMOD64`: the TLS module id of a thread-local variable.
    TlsModule,
    /// `R_X86_64_TPOFF64`: a static TLS offset (initial-exec model).
    TlsStatic,
}

impl Kind {
    fn from_type(r_type: u32) -> Option<Kind> {
        Some(match r_type {
            1 => Kind::Absolute,
            5 => Kind::Copy,
            6 => Kind::GlobDat,
            7 => Kind::JumpSlot,
            16 => Kind::TlsModule,
            18 => Kind::TlsStatic,
            _ => return None,
        })
    }
}

/// One relocated word of a module that names a symbol.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    /// Run-time address of the word.
    pub(crate) address: usize,
    pub(crate) kind: Kind,
    /// The symbol's name.
    pub(crate) symbol: String,
}

impl Slot {
    /// The word's current value.
    pub(crate) fn value(&self) -> usize {
        // SAFETY: a relocated word of a loaded module (see the module docs), aligned as the
        // ABI requires for these relocation types.
        unsafe { AtomicUsize::from_ptr(self.address as *mut usize) }.load(Relaxed)
    }
}

/// `d_tag` values of `<elf.h>`.
const DT_NULL: i64 = 0;
const DT_PLTRELSZ: i64 = 2;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const DT_RELA: i64 = 7;
const DT_RELASZ: i64 = 8;
const DT_STRSZ: i64 = 10;
const DT_JMPREL: i64 = 23;
/// `sizeof(Elf64_Rela)` and `sizeof(Elf64_Sym)`.
const RELA_SIZE: usize = 24;
const SYM_SIZE: usize = 24;

/// Every relocated word of `module` that names a symbol and is of a [`Kind`] routing cares
/// about.
pub(crate) fn slots(module: &LoadedModule) -> Vec<Slot> {
    let Some(dynamic) = module.dynamic else {
        return Vec::new();
    };
    let address_in = |value: u64| -> Option<usize> {
        let value = value as usize;
        let inside = |at: usize| module.loads.iter().any(|load| load.contains(&at));
        if inside(value) {
            Some(value)
        } else if inside(value.wrapping_add(module.bias)) {
            Some(value.wrapping_add(module.bias))
        } else {
            None
        }
    };
    let (mut rela, mut rela_size, mut jmprel, mut jmprel_size) = (None, 0, None, 0);
    let (mut symtab, mut strtab, mut strsz) = (None, None, 0);
    for index in 0.. {
        // SAFETY: a loaded module's dynamic array, terminated by DT_NULL; entries are
        // `{ i64 d_tag, u64 d_val }`.
        let (tag, value) = unsafe {
            let entry = (dynamic as *const u64).add(index * 2);
            (entry.read() as i64, entry.add(1).read())
        };
        match tag {
            DT_NULL => break,
            DT_RELA => rela = address_in(value),
            DT_RELASZ => rela_size = value as usize,
            DT_JMPREL => jmprel = address_in(value),
            DT_PLTRELSZ => jmprel_size = value as usize,
            DT_SYMTAB => symtab = address_in(value),
            DT_STRTAB => strtab = address_in(value),
            DT_STRSZ => strsz = value as usize,
            _ => {}
        }
    }
    let (Some(symtab), Some(strtab)) = (symtab, strtab) else {
        return Vec::new();
    };
    let name_of = |symbol: usize| -> Option<String> {
        // SAFETY: an index into the module's dynamic symbol table, named by its relocations.
        let st_name = unsafe { ((symtab + symbol * SYM_SIZE) as *const u32).read() } as usize;
        if st_name >= strsz {
            return None;
        }
        // SAFETY: an offset inside the string table, whose strings are NUL-terminated.
        let name = unsafe { CStr::from_ptr((strtab + st_name) as *const core::ffi::c_char) };
        Some(name.to_string_lossy().into_owned())
    };
    let mut found = Vec::new();
    for (table, size) in [(rela, rela_size), (jmprel, jmprel_size)] {
        let Some(table) = table else { continue };
        for index in 0..size / RELA_SIZE {
            // SAFETY: `Elf64_Rela { u64 r_offset, u64 r_info, i64 r_addend }` entries of a
            // loaded module's relocation table, `size` bytes long.
            let (offset, info) = unsafe {
                let entry = (table + index * RELA_SIZE) as *const u64;
                (entry.read(), entry.add(1).read())
            };
            let (symbol, r_type) = ((info >> 32) as usize, info as u32);
            let Some(kind) = Kind::from_type(r_type) else {
                continue;
            };
            if symbol == 0 {
                continue;
            }
            let Some(name) = name_of(symbol) else {
                continue;
            };
            found.push(Slot {
                address: module.bias.wrapping_add(offset as usize),
                kind,
                symbol: name,
            });
        }
    }
    found
}

/// Writes `value` into the relocated word at `address` of `module`. Words inside its
/// `PT_GNU_RELRO` range are made writable for the write and read-only again after it.
///
/// # Errors
/// The `errno` of a failed `mprotect`, or `EFAULT` when the word lies in no writable or
/// RELRO part of the module.
///
/// # Safety
/// The word must be one the loader relocated (a [`Slot`] of `module`), and `value` a valid
/// replacement for every reader of it (an address with the same meaning).
pub(crate) unsafe fn write(module: &LoadedModule, address: usize, value: usize) -> Result<(), i32> {
    let word = address as *mut usize;
    let page = super::process::page_size();
    // The loader protects the RELRO range's whole pages only (its last, partial page stays
    // writable with the data after it).
    let in_relro = module.relro.as_ref().is_some_and(|relro| {
        address >= relro.start & !(page - 1) && address < relro.end & !(page - 1)
    });
    if !in_relro {
        if !module
            .writable
            .iter()
            .any(|segment| segment.range.contains(&address))
        {
            return Err(libc::EFAULT);
        }
        // SAFETY: per the contract, a relocated, writable, aligned word.
        unsafe { AtomicUsize::from_ptr(word) }.store(value, Relaxed);
        return Ok(());
    }
    let start = address & !(page - 1);
    // SAFETY: the page holds part of the module's RELRO range, which the loader made
    // read-only; nothing but relocated data lives there.
    if unsafe { libc::mprotect(start as *mut _, page, libc::PROT_READ | libc::PROT_WRITE) } != 0 {
        return Err(last_errno());
    }
    // SAFETY: per the contract, a relocated, aligned word, writable now.
    unsafe { AtomicUsize::from_ptr(word) }.store(value, Relaxed);
    // SAFETY: as above: back to the loader's protection.
    if unsafe { libc::mprotect(start as *mut _, page, libc::PROT_READ) } != 0 {
        return Err(last_errno());
    }
    Ok(())
}
