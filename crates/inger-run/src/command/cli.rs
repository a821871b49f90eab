//! Command-line parsing: `inger-run [OPTIONS] [--] PROGRAM [ARGS...]`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// The usage text printed by `--help`.
pub(crate) const USAGE: &str = "\
usage: inger-run [OPTIONS] [--] PROGRAM [ARGS...]

Runs PROGRAM with its main inside a preemptible function (inger) that is preempted
every time slice and resumed at once, until main returns. Exit status, standard
streams and signals are the program's own.

options:
  --slice DURATION   time slice, e.g. 20us, 50us (default), 1ms; a bare number is in us.
                     A slice is main's CPU time: a program that sleeps or waits (for
                     input, a child, a lock) is not preempted meanwhile and costs no CPU
  --wall-slices      measure slices in wall-clock time instead: main is also preempted
                     while it sleeps or waits (a stronger test of inger's safe points in
                     blocking calls, at the cost of a signal every slice)
  --stats            print the slice's clock, preemptions, deferrals, retries, the
                     longest deferral and wait, timer signals and interrupted, restarted
                     and shielded calls to stderr when the program exits (or execs a
                     program that runs without inger), and what the program did with
                     inger's signal
  --stats-file PATH  write that report to PATH instead of stderr (implies --stats)
  --stats-per-process
                     with --inherit, add one line per process to the summed report
                     (implies --stats)
  --inherit          let child processes run under inger too (by default only PROGRAM
                     does: its environment is restored before its code runs); with
                     --stats, one report sums every process, written by PROGRAM's
                     process, never by a child
  --private-tls      give main inger's private thread-local storage instead of the
                     main thread's (a stronger test of inger; see the README)
  --preload PATH     the preload library (default: $INGER_RUN_PRELOAD, else
                     libinger_preload.so next to this executable or in ../lib)
  -h, --help         print this help
  -V, --version      print the version

Only the main thread's main is preempted; other threads run normally. Blocking calls
(pause, sigsuspend, poll, select, epoll_wait, sleeps, semaphore waits, socket calls
with timeouts) run with inger's signal blocked, so none returns early or fails with
EINTR because of it. Statically linked and set-user-ID programs cannot be preloaded
and are refused.
";

/// What the command was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// Run a program.
    Run(Options),
    /// Print the usage text.
    Help,
    /// Print the version.
    Version,
}

/// The settings for running a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) slice: Duration,
    /// Slices of wall-clock time instead of `main`'s CPU time.
    pub(crate) wall_slices: bool,
    pub(crate) stats: bool,
    pub(crate) stats_file: Option<PathBuf>,
    pub(crate) per_process: bool,
    pub(crate) inherit: bool,
    pub(crate) private_tls: bool,
    pub(crate) preload: Option<PathBuf>,
    /// The program as given (a name looked up in `PATH`, or a path).
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
}

/// Parses the arguments after the command's own name.
pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Request, String> {
    let mut args = args.into_iter();
    let mut slice = Duration::from_nanos(crate::protocol::DEFAULT_SLICE_NS);
    let mut wall_slices = false;
    let mut stats = false;
    let mut stats_file = None;
    let mut per_process = false;
    let mut inherit = false;
    let mut private_tls = false;
    let mut preload = None;
    let program = loop {
        let Some(arg) = args.next() else {
            return Err("no program given".to_owned());
        };
        let Some(text) = arg.to_str() else { break arg };
        if !text.starts_with('-') {
            break arg;
        }
        let (name, inline_value) = match text.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_owned())),
            _ => (text, None),
        };
        let mut value = |what: &str| -> Result<OsString, String> {
            match &inline_value {
                Some(value) => Ok(OsString::from(value)),
                None => args.next().ok_or_else(|| format!("{name} needs {what}")),
            }
        };
        match name {
            "--" => match args.next() {
                Some(program) => break program,
                None => return Err("no program given after --".to_owned()),
            },
            "--slice" => {
                let text = value("a duration")?;
                slice = parse_duration(&text.to_string_lossy())?;
            }
            "--preload" => preload = Some(PathBuf::from(value("a path")?)),
            "--stats-file" => {
                stats_file = Some(PathBuf::from(value("a path")?));
                stats = true;
            }
            "--stats-per-process" if inline_value.is_none() => {
                per_process = true;
                stats = true;
            }
            "--wall-slices" if inline_value.is_none() => wall_slices = true,
            "--stats" if inline_value.is_none() => stats = true,
            "--inherit" if inline_value.is_none() => inherit = true,
            "--private-tls" if inline_value.is_none() => private_tls = true,
            "-h" | "--help" => return Ok(Request::Help),
            "-V" | "--version" => return Ok(Request::Version),
            _ => return Err(format!("unknown option {text:?}")),
        }
    };
    Ok(Request::Run(Options {
        slice,
        wall_slices,
        stats,
        stats_file,
        per_process,
        inherit,
        private_tls,
        preload,
        program,
        args: args.collect(),
    }))
}

/// Shortest slice accepted: below it the program would spend nearly all its time being paused.
const MIN_SLICE: Duration = Duration::from_micros(1);
/// Longest slice accepted.
const MAX_SLICE: Duration = Duration::from_secs(3600);

/// Parses `50us`, `20µs`, `1.5ms`, `100000ns`, `1s`; a bare number is in microseconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let nanos_per_unit = match unit.trim() {
        "ns" => 1.0,
        "" | "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => {
            return Err(format!(
                "bad duration {text:?}: use a unit of ns, us, ms or s (e.g. 50us)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?} (e.g. 50us)"))?;
    let slice = Duration::from_nanos((value * nanos_per_unit).round() as u64);
    if !(MIN_SLICE..=MAX_SLICE).contains(&slice) {
        return Err(format!(
            "slice {text:?} is out of range ({MIN_SLICE:?} to {MAX_SLICE:?})"
        ));
    }
    Ok(slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Request, String> {
        parse(args.iter().map(OsString::from))
    }

    fn options(args: &[&str]) -> Options {
        match run(args) {
            Ok(Request::Run(options)) => options,
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("50us"), Ok(Duration::from_micros(50)));
        assert_eq!(parse_duration("20µs"), Ok(Duration::from_micros(20)));
        assert_eq!(parse_duration("1.5ms"), Ok(Duration::from_micros(1500)));
        assert_eq!(parse_duration("100000ns"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_micros(30)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("50 parsecs").is_err());
        assert!(parse_duration("us").is_err());
        assert!(parse_duration("10ns").is_err(), "below the minimum");
        assert!(parse_duration("2h").is_err());
    }

    #[test]
    fn options_stop_at_the_program() {
        let parsed = options(&["--slice", "20us", "--stats", "--", "sort", "-r", "--stats"]);
        assert_eq!(parsed.slice, Duration::from_micros(20));
        assert!(parsed.stats);
        assert!(!parsed.inherit);
        assert_eq!(parsed.program, "sort");
        assert_eq!(parsed.args, ["-r", "--stats"]);

        let parsed = options(&["--slice=1ms", "--inherit", "--private-tls", "wc", "-l"]);
        assert_eq!(parsed.slice, Duration::from_millis(1));
        assert!(parsed.inherit);
        assert!(parsed.private_tls);
        assert_eq!(parsed.program, "wc");
        assert_eq!(parsed.args, ["-l"]);

        let parsed = options(&["--stats-file=/tmp/r.txt", "--stats-per-process", "true"]);
        assert!(parsed.stats, "--stats-file implies --stats");
        assert_eq!(parsed.stats_file, Some(PathBuf::from("/tmp/r.txt")));
        assert!(parsed.per_process);
        assert!(!options(&["true"]).per_process);

        let parsed = options(&["--preload", "/x/lib.so", "--", "--weird-name"]);
        assert_eq!(parsed.preload, Some(PathBuf::from("/x/lib.so")));
        assert_eq!(parsed.program, "--weird-name");
        assert_eq!(options(&["true"]).slice, Duration::from_micros(50));
        assert!(
            !options(&["true"]).wall_slices,
            "CPU-time slices by default"
        );
        assert!(options(&["--wall-slices", "true"]).wall_slices);
    }

    #[test]
    fn mistakes_are_reported() {
        assert!(run(&[]).is_err());
        assert!(run(&["--stats"]).is_err());
        assert!(run(&["--"]).is_err());
        assert!(run(&["--slice"]).is_err());
        assert!(run(&["--bogus", "true"]).is_err());
        assert!(run(&["--stats=yes", "true"]).is_err());
        assert!(run(&["--wall-slices=1", "true"]).is_err());
        assert!(run(&["--stats-file"]).is_err());
        assert_eq!(run(&["--help", "true"]), Ok(Request::Help));
        assert_eq!(run(&["-V"]), Ok(Request::Version));
    }
}
