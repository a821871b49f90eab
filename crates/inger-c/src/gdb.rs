//! inger's gdb script (`src/gdb/inger_gdb.py` of the core crate), embedded in `libinger.so`
//! and in programs linked with `libinger.a`, so that gdb passes inger's timer signal silently
//! and names the function entry in backtraces.
//!
//! Rust programs get the script from the core crate's `debugger_visualizer` attribute, but
//! rustc writes that section only into executables; for the C libraries this crate writes the
//! same `.debug_gdb_scripts` entry itself. An entry is one byte saying "inline Python script"
//! (4), the script's name and a newline, the script, and a NUL (gdb's "dotdebug_gdb_scripts
//! section" format). gdb runs it when it loads the library or program, if its auto-load safe
//! path allows (see the README's "Debugging and profiling").

/// The script's text.
const SCRIPT: &[u8] = include_bytes!("../../../src/gdb/inger_gdb.py");
/// gdb's entry kind for an inline Python script (`SECTION_SCRIPT_ID_PYTHON_TEXT`).
const PYTHON_TEXT: u8 = 4;
/// The name gdb shows for the script (`info auto-load python-scripts`).
const NAME: &[u8] = b"inger_gdb.py\n";
const ENTRY_LEN: usize = 1 + NAME.len() + SCRIPT.len() + 1;

/// The section entry, assembled at compile time.
const fn entry() -> [u8; ENTRY_LEN] {
    let mut out = [0u8; ENTRY_LEN];
    out[0] = PYTHON_TEXT;
    let mut at = 1;
    let mut i = 0;
    while i < NAME.len() {
        out[at] = NAME[i];
        at += 1;
        i += 1;
    }
    i = 0;
    while i < SCRIPT.len() {
        out[at] = SCRIPT[i];
        at += 1;
        i += 1;
    }
    out // the last byte stays 0: the terminating NUL
}

const _: () = assert!(
    {
        // The script must not contain a NUL, which would end the entry early.
        let mut i = 0;
        let mut clean = true;
        while i < SCRIPT.len() {
            clean &= SCRIPT[i] != 0;
            i += 1;
        }
        clean
    },
    "the gdb script contains a NUL byte"
);

#[unsafe(link_section = ".debug_gdb_scripts")]
#[used]
static GDB_SCRIPT: [u8; ENTRY_LEN] = entry();
