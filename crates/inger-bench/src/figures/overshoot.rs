//! How late a timeout takes effect in real code (issue 12): `preempt_overshoot_<workload>`
//! for a 2 ms budget, with the timer signals each preemption needed.
//!
//! Each workload is a loop of small steps (an allocation, a `format!`, a 64 MiB copy, ...)
//! that runs until told to stop. One sample launches it with a 2 ms budget and measures from
//! the deadline (the instant before `launch` plus 2 ms) to `launch` returning the
//! continuation; the loop is then told to stop and resumed to completion, so its stack is
//! reused. The counters of `inger::stats()` before and after the launch give the timer
//! signals the preemption took: the deadline's own signal plus one per retry. Before each
//! sample, one sample of a bare timer's lateness (`timer_floor_<workload>`) gives the floor
//! under the same load, since the machine's load changes from row to row.
//!
//! Some workloads are paused seconds late today (a loop of 64 MiB copies lives in glibc's
//! `memcpy`). So that such a row cannot take minutes, every sample has a cap: a watchdog
//! thread tells the loop to stop once the overshoot reaches it, the function then returns by
//! itself, and the sample is recorded as the overshoot at that moment, a lower bound (the
//! note counts these). Every row also has a time budget, after which it takes no more
//! samples (the note says so).

use std::collections::HashMap;
use std::fs::File;
use std::hint::black_box;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::floors::{DISTURBED_SHARE, FLOOR_DISTANCE, floor_sample};
use super::preemption::total_deferrals;
use super::{BenchResult, Scale, broken};
use crate::bare::BareTimer;
use crate::report::{Figure, Unit};
use crate::stats::Samples;
use crate::timing::{involuntary_switches, nanos};
use crate::work;

/// The budget of every sample (issue 12's).
pub const BUDGET: Duration = Duration::from_millis(2);

/// Tells the running workload to return. Set by the caller after a preemption, and by the
/// watchdog when a sample reaches its cap.
static STOP: AtomicBool = AtomicBool::new(false);

/// Whether the watchdog set [`STOP`] (the sample reached its cap).
static CAPPED: AtomicBool = AtomicBool::new(false);

/// One workload: its name (the row is `preempt_overshoot_<name>`) and how to build its state.
#[derive(Clone, Copy)]
pub struct Workload {
    /// Short name.
    pub name: &'static str,
    /// The overshoot row.
    pub row: &'static str,
    /// The timer-signals-per-preemption row.
    pub signals_row: &'static str,
    /// The row of the bare timer's lateness, sampled in turn with the workload's.
    pub floor_row: &'static str,
    /// What one step does (for the README and the note).
    pub description: &'static str,
    prepare: fn() -> BenchResult<Box<dyn Step>>,
    /// Whether stdout goes to `/dev/null` while the row runs.
    redirect_stdout: bool,
}

/// A workload's state, moved into the preemptible function and back.
trait Step: Send {
    /// One step of the loop.
    fn step(&mut self);
}

macro_rules! workload {
    ($name:literal, $description:literal, $prepare:expr, $redirect:expr) => {
        Workload {
            name: $name,
            row: concat!("preempt_overshoot_", $name),
            signals_row: concat!("signals_per_preempt_", $name),
            floor_row: concat!("timer_floor_", $name),
            description: $description,
            prepare: $prepare,
            redirect_stdout: $redirect,
        }
    };
}

/// The `spin` workload.
pub const SPIN: Workload = workload!(
    "spin",
    "register-only arithmetic (plain Rust, never deferred)",
    || Ok(Box::new(Spin(0))),
    false
);

/// The `alloc` workload.
pub const ALLOC: Workload = workload!(
    "alloc",
    "a Vec of 1 to 32 u64s, replacing one of 64 live ones",
    || Ok(Box::new(Alloc::default())),
    false
);

/// The `hashmap` workload.
pub const HASHMAP: Workload = workload!(
    "hashmap",
    "insert a cloned String key and value into a HashMap of up to 4,096, look one up",
    || Ok(Box::new(Map::new())),
    false
);

/// The `format` workload.
pub const FORMAT: Workload = workload!(
    "format",
    "format! of an integer, a float and a string",
    || Ok(Box::new(Format(0))),
    false
);

/// The `print` workload.
pub const PRINT: Workload = workload!(
    "print",
    "println! of a formatted line (stdout redirected to /dev/null for the row)",
    || Ok(Box::new(Print(0))),
    true
);

/// The `file_write` workload.
pub const FILE_WRITE: Workload = workload!(
    "file_write",
    "write_all of a 100-byte line to a BufWriter<File> in the temporary directory (rewound every 8 MiB)",
    || Ok(Box::new(FileWrite::new()?)),
    false
);

/// The `sort_strings` workload.
pub const SORT_STRINGS: Workload = workload!(
    "sort_strings",
    "clone a Vec of 2,000 Strings and sort_unstable it",
    || Ok(Box::new(SortStrings::new())),
    false
);

/// The `copy_64mib` workload.
pub const COPY_64MIB: Workload = workload!(
    "copy_64mib",
    "copy_from_slice of a 64 MiB buffer (glibc's memcpy)",
    || Ok(Box::new(Copy64::new())),
    false
);

/// The `serde_json` workload.
pub const SERDE_JSON: Workload = workload!(
    "serde_json",
    "serde_json parse of a 15 KB document into a Value, then to_string",
    || Ok(Box::new(Json::new())),
    false
);

/// The workloads, in the order they run.
pub const WORKLOADS: &[Workload] = &[
    SPIN,
    ALLOC,
    HASHMAP,
    FORMAT,
    PRINT,
    FILE_WRITE,
    SORT_STRINGS,
    COPY_64MIB,
    SERDE_JSON,
];

struct Spin(u64);
impl Step for Spin {
    fn step(&mut self) {
        self.0 ^= work::spin(black_box(500));
    }
}

#[derive(Default)]
struct Alloc {
    live: Vec<Vec<u64>>,
    i: usize,
}
impl Step for Alloc {
    fn step(&mut self) {
        let len = 1 + self.i % 32;
        let fresh: Vec<u64> = (0..len as u64).collect();
        if self.live.len() < 64 {
            self.live.push(fresh);
        } else {
            self.live[self.i % 64] = fresh;
        }
        self.i = self.i.wrapping_add(7);
        black_box(&self.live);
    }
}

struct Map {
    keys: Vec<String>,
    map: HashMap<String, String>,
    i: usize,
}
impl Map {
    fn new() -> Self {
        let keys = (0..4_096)
            .map(|i| format!("key-{i:05}-{}", i * 31))
            .collect();
        Map {
            keys,
            map: HashMap::new(),
            i: 0,
        }
    }
}
impl Step for Map {
    fn step(&mut self) {
        if self.map.len() >= self.keys.len() {
            self.map.clear();
        }
        let key = &self.keys[self.i % self.keys.len()];
        self.map.insert(key.clone(), key.clone());
        black_box(self.map.get(&self.keys[(self.i * 7) % self.keys.len()]));
        self.i += 1;
    }
}

struct Format(u64);
impl Step for Format {
    fn step(&mut self) {
        self.0 += 1;
        black_box(format!(
            "{:>8} {:.3} {:?}",
            self.0,
            self.0 as f64 / 7.0,
            "value"
        ));
    }
}

struct Print(u64);
impl Step for Print {
    fn step(&mut self) {
        self.0 += 1;
        println!("line {:>8} of output {:.2}", self.0, self.0 as f64 / 3.0);
    }
}

struct FileWrite {
    writer: BufWriter<File>,
    written: usize,
    path: std::path::PathBuf,
}
impl FileWrite {
    fn new() -> BenchResult<Self> {
        let path = std::env::temp_dir().join(format!("inger-bench-{}.out", std::process::id()));
        let file = File::create(&path)?;
        Ok(FileWrite {
            writer: BufWriter::new(file),
            written: 0,
            path,
        })
    }
}
impl Step for FileWrite {
    fn step(&mut self) {
        const LINE: &[u8; 100] = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 file line ....  \n";
        // Errors (a full disk) end the benchmark run at the next sample's checks.
        let _ = self.writer.write_all(LINE);
        self.written += LINE.len();
        if self.written >= 8 << 20 {
            let _ = self.writer.seek(SeekFrom::Start(0));
            self.written = 0;
        }
    }
}
impl Drop for FileWrite {
    fn drop(&mut self) {
        let _ = self.writer.flush();
        let _ = std::fs::remove_file(&self.path);
    }
}

struct SortStrings {
    source: Vec<String>,
}
impl SortStrings {
    fn new() -> Self {
        let mut rng = 0x243f_6a88_85a3_08d3u64;
        let source = (0..2_000)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let len = 8 + (rng % 17) as usize;
                (0..len)
                    .map(|k| char::from(b'a' + ((rng >> (k * 2)) % 26) as u8))
                    .collect()
            })
            .collect();
        SortStrings { source }
    }
}
impl Step for SortStrings {
    fn step(&mut self) {
        let mut sorted = self.source.clone();
        sorted.sort_unstable();
        black_box(&sorted);
    }
}

const COPY_BYTES: usize = 64 << 20;

struct Copy64 {
    source: Vec<u8>,
    target: Vec<u8>,
}
impl Copy64 {
    fn new() -> Self {
        // Both written now, so their pages are resident before the first sample.
        Copy64 {
            source: vec![0x5a; COPY_BYTES],
            target: vec![0xa5; COPY_BYTES],
        }
    }
}
impl Step for Copy64 {
    fn step(&mut self) {
        self.target.copy_from_slice(&self.source);
        black_box(&self.target);
    }
}

struct Json {
    text: String,
}
impl Json {
    fn new() -> Self {
        let items: Vec<String> = (0..120)
            .map(|i| {
                format!(
                    r#"{{"id":{i},"name":"item number {i}","price":{}.{:02},"tags":["a","b{i}"],"nested":{{"ok":true,"ratio":{}}}}}"#,
                    i * 3,
                    i % 100,
                    i as f64 / 7.0
                )
            })
            .collect();
        Json {
            text: format!(r#"{{"items":[{}],"count":120}}"#, items.join(",")),
        }
    }
}
impl Step for Json {
    fn step(&mut self) {
        let value: serde_json::Value = serde_json::from_str(&self.text).unwrap_or_default();
        black_box(serde_json::to_string(&value).unwrap_or_default());
    }
}

/// How many samples a row takes, and for how long at most.
#[derive(Debug, Clone, Copy)]
struct Limits {
    samples: usize,
    warmup: usize,
    /// A sample whose overshoot reaches this is stopped by the watchdog.
    cap: Duration,
    /// No new sample starts after the row has run this long.
    row_budget: Duration,
}

impl Limits {
    fn for_scale(scale: Scale) -> Self {
        Limits {
            samples: scale.pick(200, 2_000),
            warmup: 3,
            cap: scale.pick(Duration::from_millis(50), Duration::from_millis(500)),
            row_budget: scale.pick(Duration::from_secs(2), Duration::from_secs(20)),
        }
    }
}

/// Sets [`STOP`] when an alarm time passes, unless disarmed before.
///
/// It is woken only when it waits without an alarm: each sample's alarm is later than the
/// one before, so a watchdog waiting for an earlier (since disarmed) alarm wakes then, finds
/// the new one and waits on. Waking it for every sample would let it preempt the measuring
/// thread on its CPU at every launch.
struct Watchdog {
    shared: Arc<(Mutex<Alarm>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Alarm {
    at: Option<Instant>,
    idle: bool,
    quit: bool,
}

impl Watchdog {
    fn start() -> Self {
        let shared = Arc::new((Mutex::new(Alarm::default()), Condvar::new()));
        let theirs = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            let (lock, wake) = &*theirs;
            let mut alarm = lock.lock().unwrap_or_else(|e| e.into_inner());
            while !alarm.quit {
                match alarm.at {
                    None => {
                        alarm.idle = true;
                        alarm = wake.wait(alarm).unwrap_or_else(|e| e.into_inner());
                        alarm.idle = false;
                    }
                    Some(at) => {
                        let now = Instant::now();
                        if now >= at {
                            CAPPED.store(true, Relaxed);
                            // Release: a loop that sees STOP also sees CAPPED.
                            STOP.store(true, Release);
                            alarm.at = None;
                        } else {
                            alarm = wake
                                .wait_timeout(alarm, at - now)
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                        }
                    }
                }
            }
        });
        Watchdog {
            shared,
            thread: Some(thread),
        }
    }

    /// Sets the alarm (later than any set before) or, with `None`, disarms it.
    fn set(&self, at: Option<Instant>) {
        let (lock, wake) = &*self.shared;
        let mut alarm = lock.lock().unwrap_or_else(|e| e.into_inner());
        alarm.at = at;
        if at.is_some() && alarm.idle {
            wake.notify_one();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (lock, wake) = &*self.shared;
        lock.lock().unwrap_or_else(|e| e.into_inner()).quit = true;
        wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Points stdout (fd 1) at `/dev/null` until dropped.
struct SilencedStdout {
    saved: libc::c_int,
}

impl SilencedStdout {
    fn new() -> BenchResult<Self> {
        std::io::stdout().flush()?;
        let null = File::options().write(true).open("/dev/null")?;
        // SAFETY: dup of fd 1, which is open for the whole program.
        let saved = unsafe { libc::dup(1) };
        if saved < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: both descriptors are open; dup2 replaces fd 1 atomically.
        if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 1) } < 0 {
            let error = std::io::Error::last_os_error();
            // SAFETY: `saved` is ours.
            unsafe { libc::close(saved) };
            return Err(error.into());
        }
        Ok(SilencedStdout { saved })
    }
}

impl Drop for SilencedStdout {
    fn drop(&mut self) {
        let _ = std::io::stdout().flush();
        // SAFETY: `saved` is the original fd 1, ours to restore and close.
        unsafe {
            libc::dup2(self.saved, 1);
            libc::close(self.saved);
        }
    }
}

/// What one row saw besides the overshoots.
#[derive(Default)]
struct Seen {
    capped: usize,
    descheduled: usize,
    preemptions: u64,
    retries: u64,
    deferrals: u64,
    deferred_library: u64,
    deferred_std: u64,
    deferred_nopreempt: u64,
    stopped_by_time: bool,
}

/// The figures of one workload, `preempt_overshoot_<name>` and `signals_per_preempt_<name>`,
/// measured by a child process of the run ([`measure_here`] there): these rows drive the
/// preemption machinery through its hardest cases, and a crash in one of them (a finding to
/// report) must not take the rest of the run with it. Each row also starts from a fresh
/// process, whatever the rows before it left in the heap or the stack pools.
pub fn measure(workload: &Workload, scale: Scale) -> BenchResult<Vec<Figure>> {
    crate::child::run(workload.row, scale == Scale::Quick, &[]).map_err(broken)
}

/// The workload whose row is `row`, if any.
pub fn by_row(row: &str) -> Option<&'static Workload> {
    WORKLOADS.iter().find(|workload| workload.row == row)
}

/// [`measure`] in this process.
pub fn measure_here(workload: &Workload, scale: Scale) -> BenchResult<Vec<Figure>> {
    let limits = Limits::for_scale(scale);
    let _silenced = if workload.redirect_stdout {
        Some(SilencedStdout::new()?)
    } else {
        None
    };
    let watchdog = Watchdog::start();
    let bare = BareTimer::new()?;
    let mut state = Some((workload.prepare)()?);
    let mut floor = Samples::with_capacity(limits.samples);
    let mut floor_descheduled = 0usize;
    let mut overshoots = Samples::with_capacity(limits.samples);
    let mut signals = Samples::with_capacity(limits.samples);
    let mut seen = Seen::default();
    let row_start = Instant::now();
    let mut taken = 0usize;
    while taken < limits.warmup + limits.samples {
        if taken > limits.warmup && row_start.elapsed() >= limits.row_budget {
            seen.stopped_by_time = true;
            break;
        }
        let recording = taken >= limits.warmup;
        taken += 1;
        // The floor in the same conditions: one bare-timer sample before each workload sample.
        let floor_sample = floor_sample(&bare)?;
        if recording {
            floor.push(floor_sample.lateness);
            floor_descheduled += usize::from(floor_sample.descheduled);
        }
        let mut steps = state.take().ok_or_else(|| broken("workload state lost"))?;
        STOP.store(false, Relaxed);
        CAPPED.store(false, Relaxed);
        let before = inger::stats();
        let switches = involuntary_switches();
        // Armed before the clock starts, so its cost is not counted; the cap is then a
        // little later than `start + BUDGET + cap`, which only makes it generous.
        watchdog.set(Some(Instant::now() + BUDGET + limits.cap));
        let start = Instant::now();
        let linger = inger::launch(
            move || {
                while !STOP.load(Acquire) {
                    steps.step();
                }
                steps
            },
            BUDGET,
        )?;
        let back = Instant::now();
        watchdog.set(None);
        let after = inger::stats();
        let overshoot = nanos(back.duration_since(start)) - nanos(BUDGET);
        let preempted = match linger {
            inger::Linger::Completion(steps) => {
                state = Some(steps);
                false
            }
            inger::Linger::Continuation(paused) => {
                if paused.yielded() {
                    return Err(broken("the workload paused itself"));
                }
                STOP.store(true, Relaxed);
                state = paused.resume(Duration::MAX)?.completion();
                if state.is_none() {
                    return Err(broken("the stopped workload did not finish"));
                }
                true
            }
        };
        if !preempted && !CAPPED.load(Relaxed) {
            return Err(broken(format!(
                "{} returned before its cap without being preempted (is INGER_PREEMPT=0 set?)",
                workload.name
            )));
        }
        if !recording {
            continue;
        }
        let retries = after.retries.saturating_sub(before.retries);
        overshoots.push(overshoot);
        // The deadline's signal, and one per retry; for a capped sample, a lower bound.
        signals.push(1.0 + retries as f64);
        seen.capped += usize::from(!preempted);
        seen.descheduled += usize::from(involuntary_switches() != switches);
        seen.retries += retries;
        seen.preemptions += after.preemptions.saturating_sub(before.preemptions);
        seen.deferrals += total_deferrals(&after).saturating_sub(total_deferrals(&before));
        seen.deferred_library += after
            .deferred_library
            .saturating_sub(before.deferred_library);
        seen.deferred_std += after.deferred_std.saturating_sub(before.deferred_std);
        seen.deferred_nopreempt += after
            .deferred_nopreempt
            .saturating_sub(before.deferred_nopreempt);
    }
    drop(state);
    let recorded = overshoots.len();
    let mut note = format!(
        "{}: {recorded} samples, {} descheduled by the kernel; preemptions {}, deferrals {} (library {}, std {}, nopreempt {}), retries {}",
        workload.description,
        seen.descheduled,
        seen.preemptions,
        seen.deferrals,
        seen.deferred_library,
        seen.deferred_std,
        seen.deferred_nopreempt,
        seen.retries,
    );
    if seen.capped > 0 {
        note.push_str(&format!(
            "; {} samples reached the cap of {} ms and were stopped: their overshoot and signal count are lower bounds",
            seen.capped,
            limits.cap.as_millis()
        ));
    }
    let busy = (seen.descheduled + floor_descheduled) as f64 / (2 * recorded.max(1)) as f64;
    let disturbed = busy > DISTURBED_SHARE;
    if disturbed {
        note.push_str(&format!(
            "; warning: {:.0} % of the samples (both kinds) were descheduled by the kernel: the machine is busy, the tails measure its scheduler",
            busy * 100.0
        ));
    }
    if seen.stopped_by_time {
        note.push_str(&format!(
            "; sampling stopped by the row's time budget of {:.1} s",
            limits.row_budget.as_secs_f64()
        ));
    }
    Ok(vec![
        Figure::new(workload.row, overshoots, Unit::Microseconds)
            .with_note(note)
            .disturbed_if(disturbed),
        Figure::new(workload.signals_row, signals, Unit::Count)
            .with_note(format!(
                "timer signals per preemption (1 + retries) of {}",
                workload.row
            ))
            .disturbed_if(disturbed),
        Figure::new(workload.floor_row, floor, Unit::Microseconds)
            .with_note(format!(
                "a bare timer {} ms ahead, sampled before each sample of {} ({floor_descheduled} descheduled by the kernel)",
                FLOOR_DISTANCE.as_millis(),
                workload.row
            ))
            .disturbed_if(disturbed),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_document_parses_and_round_trips() {
        let json = Json::new();
        let value: serde_json::Value = serde_json::from_str(&json.text).expect("valid JSON");
        assert_eq!(value["count"], 120);
        assert_eq!(value["items"].as_array().map(Vec::len), Some(120));
        let again: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&value).unwrap()).unwrap();
        assert_eq!(again, value);
        assert!(
            (13_000..17_000).contains(&json.text.len()),
            "{} bytes, described as about 15 KB",
            json.text.len()
        );
    }

    #[test]
    fn workload_steps_do_their_work() {
        let mut alloc = Alloc::default();
        for _ in 0..100 {
            alloc.step();
        }
        assert_eq!(alloc.live.len(), 64);
        let mut map = Map::new();
        for _ in 0..5_000 {
            map.step();
        }
        assert!(!map.map.is_empty() && map.map.len() <= 4_096);
        let sort = SortStrings::new();
        assert_eq!(sort.source.len(), 2_000);
        assert!(sort.source.iter().all(|s| (8..=24).contains(&s.len())));
        let mut file = FileWrite::new().unwrap();
        let path = file.path.clone();
        for _ in 0..(9 << 20) / 100 {
            file.step();
        }
        // Rewound once at 8 MiB: about 1 MiB since.
        assert!(file.written < 2 << 20, "{}", file.written);
        drop(file);
        assert!(!path.exists(), "the file is removed");
    }

    #[test]
    fn every_workload_has_its_rows_and_a_unique_name() {
        let mut names: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), WORKLOADS.len());
        for workload in WORKLOADS {
            assert_eq!(workload.row, format!("preempt_overshoot_{}", workload.name));
            assert_eq!(
                workload.signals_row,
                format!("signals_per_preempt_{}", workload.name)
            );
            assert_eq!(workload.floor_row, format!("timer_floor_{}", workload.name));
        }
        assert_eq!(WORKLOADS.iter().filter(|w| w.redirect_stdout).count(), 1);
    }
}
