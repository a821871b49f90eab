//! Finding the preload library.
//!
//! In order: `--preload PATH`, `$INGER_RUN_PRELOAD`, then `libinger_preload.so` next to the
//! `inger-run` executable (where `cargo build` puts both), then in `../lib` relative to it
//! (an installation prefix such as `/usr/local/bin` + `/usr/local/lib`).

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::protocol;

/// The library's absolute path, or a message saying where it was looked for and how to
/// build it.
pub(crate) fn preload_library(explicit: Option<&Path>) -> Result<PathBuf, String> {
    let from_env = std::env::var_os(protocol::PRELOAD_PATH).filter(|value| !value.is_empty());
    let given = explicit
        .map(Path::to_path_buf)
        .or_else(|| from_env.map(PathBuf::from));
    let path = match given {
        Some(path) => {
            if !path.is_file() {
                return Err(format!(
                    "the preload library {} does not exist",
                    path.display()
                ));
            }
            path
        }
        None => default_places()?
            .into_iter()
            .find(|candidate| candidate.is_file())
            .ok_or_else(|| missing_message(&default_places().unwrap_or_default()))?,
    };
    let path = path.canonicalize().map_err(|error| {
        format!(
            "cannot resolve the preload library {}: {error}",
            path.display()
        )
    })?;
    // LD_PRELOAD separates entries with colons and spaces.
    if path
        .as_os_str()
        .as_bytes()
        .iter()
        .any(|&b| b == b':' || b == b' ' || b == b'\t')
    {
        return Err(format!(
            "the preload library's path {} contains a colon or a space, which LD_PRELOAD cannot carry; \
             move it or pass --preload with another path",
            path.display()
        ));
    }
    Ok(path)
}

fn default_places() -> Result<Vec<PathBuf>, String> {
    let exe = std::env::current_exe()
        .map_err(|error| format!("cannot find the inger-run executable: {error}"))?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    Ok(vec![
        dir.join(protocol::LIBRARY_FILE),
        dir.join("../lib").join(protocol::LIBRARY_FILE),
    ])
}

fn missing_message(searched: &[PathBuf]) -> String {
    let places: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
    format!(
        "the preload library {} was not found (looked at {}).\n\
         From a checkout, build it together with the command: `cargo build --release -p inger-run` \
         (or `cargo run --release -p inger-run -- ...`).\n\
         For an installed inger-run, copy target/release/{} next to the inger-run executable, \
         or point --preload / ${} at it.",
        protocol::LIBRARY_FILE,
        places.join(", "),
        protocol::LIBRARY_FILE,
        protocol::PRELOAD_PATH,
    )
}

/// `LD_PRELOAD` with the library appended to whatever it already held.
pub(crate) fn ld_preload_value(existing: Option<&OsString>, library: &Path) -> OsString {
    let mut value = OsString::new();
    if let Some(existing) =
        existing.filter(|value| !value.as_bytes().iter().all(|b| *b == b' ' || *b == b':'))
    {
        value.push(existing);
        value.push(":");
    }
    value.push(library);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_is_appended() {
        let library = Path::new("/opt/libinger_preload.so");
        assert_eq!(ld_preload_value(None, library), "/opt/libinger_preload.so");
        assert_eq!(
            ld_preload_value(Some(&OsString::from("")), library),
            "/opt/libinger_preload.so"
        );
        assert_eq!(
            ld_preload_value(Some(&OsString::from("/lib/a.so")), library),
            "/lib/a.so:/opt/libinger_preload.so"
        );
    }

    #[test]
    fn an_explicit_missing_library_is_an_error() {
        let error = preload_library(Some(Path::new("/no/such/libinger_preload.so"))).unwrap_err();
        assert!(error.contains("does not exist"), "{error}");
    }
}
