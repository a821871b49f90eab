//! Libsets (issue 13): taking a pooled copy of a library, a routed call against a direct
//! one, and renewing a cancelled function's copy. The C libraries are written here and
//! compiled with the system C compiler (`$CC`, or `cc`) into a temporary directory.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{BenchResult, Scale, broken};
use crate::report::{Figure, Unit};
use crate::timing::{collect, nanos};

/// A library with global state.
const LIBRARY: &str = "long bench_total;\n\
    long bench_add(long value) { bench_total += value; return bench_total; }\n";
/// Its caller, which knows nothing of inger: `bench_add` through its PLT.
const DRIVER: &str = "long bench_add(long value);\n\
    long drive_add(long value) { return bench_add(value); }\n";

/// Calls of `drive_add` per call-overhead sample.
const CALLS_PER_SAMPLE: u32 = 1_000;

/// `drive_add`, of one driver/library pair.
type DriveAdd = unsafe extern "C" fn(i64) -> i64;

/// Two pairs: one whose library is a routed libset, and one left alone (the baseline).
struct Libraries {
    routed: DriveAdd,
    direct: DriveAdd,
    libset: inger::Libset,
}

fn compile(
    directory: &Path,
    stem: &str,
    source: &str,
    link: Option<&Path>,
) -> BenchResult<PathBuf> {
    let source_path = directory.join(format!("{stem}.c"));
    std::fs::write(&source_path, source)?;
    let output = directory.join(format!("lib{stem}.so"));
    let mut command = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".to_owned()));
    command
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&output)
        .arg(&source_path);
    if let Some(library) = link {
        command
            .arg(library)
            .arg(format!("-Wl,-rpath,{}", directory.display()));
    }
    let status = command.status()?;
    if !status.success() {
        return Err(broken(format!("compiling {stem}.c failed")));
    }
    Ok(output)
}

/// Loads `path` for good and returns its `drive_add`.
fn drive_add(path: &Path) -> BenchResult<DriveAdd> {
    let name = std::ffi::CString::new(path.to_str().ok_or("non-UTF-8 path")?)?;
    // SAFETY: loading a library we just compiled, whose constructors are trivial.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW) };
    if handle.is_null() {
        return Err(broken(format!("dlopen {} failed", path.display())));
    }
    // SAFETY: a valid handle and a NUL-terminated name.
    let address = unsafe { libc::dlsym(handle, c"drive_add".as_ptr()) };
    if address.is_null() {
        return Err(broken("drive_add missing"));
    }
    // SAFETY: drive_add has exactly this C signature.
    Ok(unsafe { core::mem::transmute::<*mut libc::c_void, DriveAdd>(address) })
}

fn libraries() -> BenchResult<&'static Libraries> {
    static LIBRARIES: OnceLock<Libraries> = OnceLock::new();
    if let Some(libraries) = LIBRARIES.get() {
        return Ok(libraries);
    }
    let directory = std::env::temp_dir().join(format!("inger-bench-libset-{}", std::process::id()));
    std::fs::create_dir_all(&directory)?;
    let direct_library = compile(&directory, "bench_direct", LIBRARY, None)?;
    let direct = drive_add(&compile(
        &directory,
        "bench_direct_driver",
        DRIVER,
        Some(&direct_library),
    )?)?;
    let routed_library = compile(&directory, "bench_routed", LIBRARY, None)?;
    let routed = drive_add(&compile(
        &directory,
        "bench_routed_driver",
        DRIVER,
        Some(&routed_library),
    )?)?;
    let libset = inger::Libset::open(routed_library.to_str().ok_or("non-UTF-8 path")?, 4)?;
    libset.route()?;
    let _ = std::fs::remove_dir_all(&directory); // the loaded libraries stay mapped
    Ok(LIBRARIES.get_or_init(|| Libraries {
        routed,
        direct,
        libset,
    }))
}

/// Times `CALLS_PER_SAMPLE` calls of `f` inside one preemptible function (which holds its
/// copy already when `f` is routed), per call.
fn time_calls_inside(f: DriveAdd, scale: Scale) -> BenchResult<crate::stats::Samples> {
    let samples = scale.pick(2_000, 20_000);
    let result = inger::launch(
        move || {
            // SAFETY: drive_add has this signature; a first call takes the copy.
            unsafe { f(0) };
            collect(samples, 100, || -> Result<f64, ()> {
                let start = Instant::now();
                for index in 0..CALLS_PER_SAMPLE {
                    // SAFETY: as above.
                    black_box(unsafe { f(black_box(i64::from(index & 1))) });
                }
                Ok(nanos(start.elapsed()) / f64::from(CALLS_PER_SAMPLE))
            })
        },
        Duration::MAX,
    )?;
    let samples = result
        .completion()
        .ok_or_else(|| broken("the calling function did not complete"))?;
    samples.map_err(|()| broken("unreachable"))
}

/// `libset_direct_call` (a call from a library into another through its PLT, inside a
/// preemptible function) and `libset_call_overhead` (the same call routed to the function's
/// own copy), per call.
pub(super) fn libset_call_overhead(scale: Scale) -> BenchResult<Vec<Figure>> {
    let libraries = libraries()?;
    let direct = time_calls_inside(libraries.direct, scale)?;
    let routed = time_calls_inside(libraries.routed, scale)?;
    Ok(vec![
        Figure::new("libset_direct_call", direct, Unit::Nanoseconds),
        Figure::new("libset_call_overhead", routed, Unit::Nanoseconds)
            .with_note("routed call into the function's own copy (compare libset_direct_call)"),
    ])
}

/// `libset_first_use`: a function's first use of a libset (`Libset::acquire`) taking a copy
/// from the pool, timed inside the function; the copy goes back when it returns.
pub(super) fn libset_first_use(scale: Scale) -> BenchResult<Vec<Figure>> {
    let libset = libraries()?.libset;
    let samples = collect(scale.pick(2_000, 20_000), 100, || -> BenchResult<f64> {
        let linger = inger::launch(
            move || {
                let start = Instant::now();
                let held = libset.acquire();
                (nanos(start.elapsed()), held.is_ok_and(|held| held))
            },
            Duration::MAX,
        )?;
        match linger.completion() {
            Some((elapsed, true)) => Ok(elapsed),
            _ => Err(broken("the function did not take a copy")),
        }
    })?;
    Ok(vec![Figure::new(
        "libset_first_use",
        samples,
        Unit::Nanoseconds,
    )])
}

/// Launches a function that (if `hold`) takes a copy, then pauses; times dropping it.
fn time_drop(libset: inger::Libset, hold: bool) -> BenchResult<f64> {
    let linger = inger::launch(
        move || {
            if hold {
                let _ = libset.acquire();
            }
            inger::pause();
        },
        Duration::MAX,
    )?;
    if !linger.yielded() || (libset.stats().copies_in_use == 1) != hold {
        return Err(broken("the function did not pause as planned"));
    }
    let start = Instant::now();
    drop(linger);
    Ok(nanos(start.elapsed()))
}

/// `libset_renew`: dropping a function paused (by `pause()`) while it holds a copy, which
/// discards it and renews the copy, against `libset_renew_baseline`: the same drop of a
/// function that holds no copy, measured alternately in the same loop.
pub(super) fn libset_renew(scale: Scale) -> BenchResult<Vec<Figure>> {
    let libset = libraries()?.libset;
    let mut baseline = crate::stats::Samples::with_capacity(scale.pick(500, 5_000));
    let samples = collect(scale.pick(500, 5_000), 20, || -> BenchResult<f64> {
        baseline.push(time_drop(libset, false)?);
        time_drop(libset, true)
    })?;
    let baseline: crate::stats::Samples = baseline.values().iter().skip(20).copied().collect();
    Ok(vec![
        Figure::new("libset_renew_baseline", baseline, Unit::Nanoseconds)
            .with_note("dropping a paused function that holds no copy"),
        Figure::new("libset_renew", samples, Unit::Nanoseconds).with_more_note(format!(
            "dropping one that holds a copy: {} bytes restored per renewal",
            libset.stats().renew_bytes
        )),
    ])
}
