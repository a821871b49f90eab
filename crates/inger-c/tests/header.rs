//! `include/libinger.h` is written by hand; these tests fail as soon as it and the Rust side
//! drift apart:
//!
//! - every `extern "C" fn inger_*` in `src/` is declared in the header with the same return
//!   and parameter types (Rust types mapped to C by a small explicit table), and vice versa;
//! - `libinger.so` exports exactly the functions the header declares;
//! - every `INGER_E*` code has the same value in the header, in `src/errors.rs`, and (for the
//!   core's codes) in `inger::Error::code`;
//! - the C structs have the Rust structs' fields, in order, with matching types;
//! - the header compiles cleanly as C99, C11 and C++, with and without `INGER_SHORT_NAMES`,
//!   and declares the interface of the issue exactly (checked by the C compiler).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::{c_compiler, c_sources, include_dir, libraries, scratch};

/// A function signature in canonical C spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Signature {
    returns: String,
    parameters: Vec<String>,
}

fn header_text() -> String {
    std::fs::read_to_string(include_dir().join("libinger.h")).expect("read libinger.h")
}

fn rust_sources() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut text = String::new();
    for entry in std::fs::read_dir(&dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|ext| ext == "rs") {
            text.push_str(&std::fs::read_to_string(&path).expect("read source"));
            text.push('\n');
        }
    }
    text
}

/// Removes `/* */` and `//` comments.
fn strip_c_comments(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |end| &after[end + 2..]);
            out.push(' ');
        } else if let Some(after) = rest.strip_prefix("//") {
            rest = after.find('\n').map_or("", |end| &after[end..]);
        } else {
            let c = rest.chars().next().expect("non-empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The header without comments, preprocessor lines and the `INGER_SHORT_NAMES` section.
fn header_declarations() -> String {
    let text = strip_c_comments(&header_text());
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("#ifdef INGER_SHORT_NAMES") {
            skipping = true;
        } else if skipping && trimmed.starts_with("#endif") {
            skipping = false;
        } else if !skipping && !trimmed.starts_with('#') {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Splits C or Rust type text into tokens and joins them with single spaces, so that
/// `inger_linger **` and `inger_linger * *` compare equal.
fn canonical(text: &str) -> String {
    let mut tokens = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            if !word.is_empty() {
                tokens.push(std::mem::take(&mut word));
            }
            if !c.is_whitespace() {
                tokens.push(c.to_string());
            }
        }
    }
    if !word.is_empty() {
        tokens.push(word);
    }
    tokens.join(" ")
}

/// The text inside the parentheses opening at `open`, and the index after the closing one.
fn balanced(text: &str, open: usize) -> (&str, usize) {
    let mut depth = 0;
    for (i, c) in text[open..].char_indices() {
        match c {
            '(' | '<' => depth += 1,
            ')' | '>' if text[..open + i].ends_with('-') => {} // Rust's `->`
            ')' | '>' => {
                depth -= 1;
                if depth == 0 {
                    return (&text[open + 1..open + i], open + i + 1);
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses in {}", &text[open..]);
}

/// Splits on commas outside any parentheses or angle brackets.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' | '<' => depth += 1,
            '>' if text[..i].ends_with('-') => {}
            ')' | '>' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect()
}

/// Drops the parameter name from a C parameter declaration.
fn c_parameter_type(parameter: &str) -> String {
    let tokens: Vec<String> = canonical(parameter).split(' ').map(String::from).collect();
    // A function pointer: `void ( * name ) ( ... )`.
    if let Some(star) = tokens
        .windows(2)
        .position(|pair| pair[0] == "(" && pair[1] == "*")
    {
        let mut tokens = tokens.clone();
        if tokens.get(star + 2).is_some_and(|name| name != ")") {
            tokens.remove(star + 2);
        }
        return tokens.join(" ");
    }
    let keywords = [
        "void",
        "int",
        "bool",
        "char",
        "const",
        "struct",
        "uint64_t",
        "inger_linger",
    ];
    match tokens.split_last() {
        Some((last, rest))
            if !rest.is_empty() && !keywords.contains(&last.as_str()) && last != "*" =>
        {
            rest.join(" ")
        }
        _ => tokens.join(" "),
    }
}

fn header_functions() -> BTreeMap<String, Signature> {
    let text = header_declarations();
    let mut functions = BTreeMap::new();
    for statement in text.split(';') {
        let Some(name_at) = statement.find("inger_") else {
            continue;
        };
        let Some(open) = statement[name_at..].find('(').map(|i| name_at + i) else {
            continue;
        };
        let name = statement[name_at..open].trim();
        if !name.chars().all(|c| c.is_alphanumeric() || c == '_') || statement.contains("typedef") {
            continue;
        }
        let (parameters, _) = balanced(statement, open);
        let mut parameters: Vec<String> = split_top_level(parameters)
            .into_iter()
            .map(c_parameter_type)
            .collect();
        if parameters == ["void"] {
            parameters.clear();
        }
        let returns = canonical(&statement[..name_at]);
        let signature = Signature {
            returns,
            parameters,
        };
        assert!(
            functions.insert(name.to_string(), signature).is_none(),
            "{name} declared twice"
        );
    }
    functions
}

/// The C spelling of a Rust type used at the boundary. Panics on a type missing from the
/// table, so a new one has to be added here deliberately.
fn c_type(rust: &str) -> String {
    let rust = rust.trim();
    if let Some(inner) = rust.strip_prefix("*mut ") {
        return canonical(&format!("{} *", c_type(inner)));
    }
    if let Some(inner) = rust.strip_prefix("*const ") {
        let inner = c_type(inner);
        return if inner.ends_with('*') {
            canonical(&format!("{inner} const *"))
        } else {
            canonical(&format!("const {inner} *"))
        };
    }
    let c = match canonical(rust).as_str() {
        "" => "void",
        "c_int" => "int",
        "bool" => "bool",
        "u64" => "uint64_t",
        "c_void" => "void",
        "c_char" => "char",
        "inger_linger" => "inger_linger",
        "usize" => "size_t",
        "inger_libset" => "inger_libset",
        "inger_libset_stats" => "struct inger_libset_stats",
        "inger_stats" => "struct inger_stats",
        "inger_capabilities" => "struct inger_capabilities",
        "Option < CFunction >" | "Option < unsafe extern \" C \" fn ( * mut c_void ) >" => {
            "void (*)(void *)"
        }
        other => {
            panic!("no C spelling for the Rust type `{other}`: extend c_type in tests/header.rs")
        }
    };
    canonical(c)
}

fn rust_functions() -> BTreeMap<String, Signature> {
    let text = rust_sources();
    let mut functions = BTreeMap::new();
    for (at, _) in text.match_indices("extern \"C\" fn inger_") {
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let prefix = text[line_start..at].trim();
        assert!(
            prefix == "pub" || prefix == "pub unsafe",
            "unexpected qualifiers `{prefix}` before {}",
            &text[at..at + 40]
        );
        let name_at = at + "extern \"C\" fn ".len();
        let open = name_at + text[name_at..].find('(').expect("parameter list");
        let name = text[name_at..open].to_string();
        let (parameters, after) = balanced(&text, open);
        let parameters = split_top_level(parameters)
            .into_iter()
            .map(|parameter| {
                let (_, ty) = parameter.split_once(':').expect("name: type");
                c_type(ty)
            })
            .collect();
        let rest = text[after..].trim_start();
        let returns = match rest.strip_prefix("->") {
            Some(rest) => c_type(&rest[..rest.find('{').expect("body")]),
            None => c_type(""),
        };
        let signature = Signature {
            returns,
            parameters,
        };
        assert!(
            functions.insert(name.clone(), signature).is_none(),
            "{name} defined twice"
        );
    }
    functions
}

#[test]
fn every_exported_function_is_declared_with_the_same_signature() {
    let header = header_functions();
    let rust = rust_functions();
    assert!(rust.len() >= 8, "found only {rust:?}");
    for (name, signature) in &rust {
        let declared = header
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not declared in libinger.h"));
        assert_eq!(
            declared, signature,
            "{name}: header (left) and Rust (right) differ"
        );
    }
    for name in header.keys() {
        assert!(
            rust.contains_key(name),
            "libinger.h declares {name}, which the crate does not define"
        );
    }
}

#[test]
fn the_shared_library_exports_exactly_the_declared_functions() {
    let library = libraries().dir.join("libinger.so");
    let output = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&library)
        .output()
        .expect("run nm");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let exported: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2))
        .map(String::from)
        .collect();
    let declared: Vec<String> = header_functions().into_keys().collect();
    let mut exported_sorted = exported.clone();
    exported_sorted.sort();
    assert_eq!(
        exported_sorted, declared,
        "exports of libinger.so (left) and the header (right)"
    );
}

fn header_codes() -> BTreeMap<String, i32> {
    header_text()
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("#define")).then_some(())?;
            let name = words.next()?;
            let value = words.next()?.parse().ok()?;
            (name.starts_with("INGER_E") || name == "INGER_OK").then(|| (name.to_string(), value))
        })
        .collect()
}

fn rust_codes() -> BTreeMap<String, i32> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/errors.rs"))
        .expect("errors.rs");
    text.lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("pub const ")?;
            let (name, rest) = rest.split_once(':')?;
            let value = rest
                .split_once('=')?
                .1
                .trim()
                .trim_end_matches(';')
                .parse()
                .ok()?;
            Some((name.to_string(), value))
        })
        .collect()
}

#[test]
fn error_codes_match_the_rust_constants_and_the_core() {
    let header = header_codes();
    assert_eq!(
        header,
        rust_codes(),
        "header (left) and src/errors.rs (right)"
    );
    use inger_core::Error;
    let core = [
        ("INGER_ESTACK", Error::StackAllocation { errno: 12 }),
        ("INGER_ESIGNALINUSE", Error::SignalInUse { signal: 60 }),
        (
            "INGER_ESYSTEM",
            Error::System {
                call: "timer_create",
                errno: 22,
            },
        ),
        ("INGER_ECONFIG", Error::InvalidConfig(String::from("x"))),
        ("INGER_EINITIALIZED", Error::AlreadyInitialized),
        ("INGER_EFINISHED", Error::Finished),
        ("INGER_ERUNNING", Error::AlreadyRunning),
        ("INGER_EINHANDLER", Error::InSignalHandler),
        ("INGER_EWRONGTHREAD", Error::WrongThread),
    ];
    for (name, error) in core {
        assert_eq!(header.get(name), Some(&error.code()), "{name} vs {error:?}");
    }
    let mut values: Vec<i32> = header.values().copied().collect();
    values.sort();
    values.dedup();
    assert_eq!(
        values.len(),
        header.len(),
        "two codes share a value: {header:?}"
    );
}

/// The fields of `typedef struct <name> { ... }` in the header, as (C type, name).
fn header_struct(name: &str) -> Vec<(String, String)> {
    let text = strip_c_comments(&header_text());
    let start = text
        .find(&format!("typedef struct {name} {{"))
        .unwrap_or_else(|| panic!("struct {name}"));
    let body = &text[start..];
    let body = &body[body.find('{').expect("{") + 1..body.find('}').expect("}")];
    body.split(';')
        .map(str::trim)
        .filter(|field| !field.is_empty())
        .map(|field| {
            let (ty, name) = field.rsplit_once(' ').expect("type name");
            (canonical(ty), name.to_string())
        })
        .collect()
}

/// The fields of `pub struct <name> { ... }` in the Rust sources, mapped to C.
fn rust_struct(name: &str) -> Vec<(String, String)> {
    let text = rust_sources();
    let start = text
        .find(&format!("pub struct {name} {{"))
        .unwrap_or_else(|| panic!("struct {name}"));
    let body = &text[start..];
    let body = &body[body.find('{').expect("{") + 1..body.find('}').expect("}")];
    body.lines()
        .map(str::trim)
        .filter_map(|line| line.strip_prefix("pub "))
        .map(|field| {
            let (name, ty) = field.split_once(':').expect("name: type");
            (c_type(ty.trim().trim_end_matches(',')), name.to_string())
        })
        .collect()
}

#[test]
fn structs_match_field_by_field() {
    for name in ["inger_stats", "inger_capabilities"] {
        let header = header_struct(name);
        assert!(!header.is_empty());
        assert_eq!(
            header,
            rust_struct(name),
            "{name}: header (left) and Rust (right)"
        );
    }
}

/// Runs the compiler on `source` with `flags`, expecting success without diagnostics.
fn compiles_cleanly(compiler: &str, flags: &[&str], source: &Path) {
    let output = Command::new(compiler)
        .args(flags)
        .arg("-I")
        .arg(include_dir())
        .arg(source)
        .output()
        .unwrap_or_else(|error| panic!("run {compiler}: {error}"));
    let diagnostics = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && diagnostics.trim().is_empty(),
        "{compiler} {flags:?} {}:\n{diagnostics}",
        source.display()
    );
}

#[test]
fn the_header_compiles_as_c_and_cpp_and_declares_the_issue_interface() {
    let dir = scratch("header-compiles");
    let object = dir.join("out.o");
    let object = object.to_str().expect("utf-8 path");
    let interface = c_sources().join("interface.c");
    let cc = c_compiler();
    let strict = [
        "-c",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic-errors",
        "-Wstrict-prototypes",
        "-o",
        object,
    ];
    for standard in ["-std=c99", "-std=c11", "-std=c17"] {
        let mut flags = vec![standard];
        flags.extend(strict);
        compiles_cleanly(&cc, &flags, &interface);
        flags.push("-DINGER_SHORT_NAMES");
        compiles_cleanly(&cc, &flags, &interface);
    }
    let cpp = dir.join("interface.cpp");
    std::fs::copy(&interface, &cpp).expect("copy");
    for short in [false, true] {
        let mut flags = vec![
            "-std=c++17",
            "-c",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic-errors",
            "-o",
            object,
        ];
        if short {
            flags.push("-DINGER_SHORT_NAMES");
        }
        compiles_cleanly("g++", &flags, &cpp);
    }
}
