//! The programs' command lines: `--name value` pairs, durations, and the service program
//! itself ([`service_main`]), which `inger-service` runs and `inger-load` runs as a child.

use std::time::Duration;

use crate::budget::Budget;
use crate::protect::{Mode, process};
use crate::server::{Config, Server};

/// Parses a duration such as `20ms`, `1.5s`, `500us` (or `500µs`), `250ns`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(inger_service::cli::parse_duration("20ms"), Ok(Duration::from_millis(20)));
/// assert_eq!(inger_service::cli::parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert!(inger_service::cli::parse_duration("20").is_err());
/// ```
///
/// # Errors
/// A message naming the accepted units for anything else.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let units = [
        ("ns", 1e-9),
        ("us", 1e-6),
        ("µs", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
    ];
    for (unit, scale) in units {
        if let Some(number) = text.strip_suffix(unit) {
            let value: f64 = number
                .parse()
                .map_err(|_| format!("{text:?}: not a number followed by a unit"))?;
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!("{text:?}: not a non-negative duration"));
            }
            return Ok(Duration::from_secs_f64(value * scale));
        }
    }
    Err(format!("{text:?}: give a unit (ns, us, ms, s), e.g. 20ms"))
}

/// The arguments of a program as `--name value` pairs and bare `--flag`s.
#[derive(Debug)]
pub struct Args {
    pairs: Vec<(String, Option<String>)>,
}

impl Args {
    /// Splits `args` (without the program name); `flags` are the names that take no value.
    ///
    /// # Errors
    /// An argument that is not `--name`, or a `--name` without its value.
    pub fn parse(args: impl IntoIterator<Item = String>, flags: &[&str]) -> Result<Args, String> {
        let mut pairs = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let Some(name) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument {arg:?}"));
            };
            if let Some((name, value)) = name.split_once('=') {
                pairs.push((name.to_string(), Some(value.to_string())));
            } else if flags.contains(&name) {
                pairs.push((name.to_string(), None));
            } else {
                let value = args
                    .next()
                    .ok_or_else(|| format!("--{name} needs a value"))?;
                pairs.push((name.to_string(), Some(value)));
            }
        }
        Ok(Args { pairs })
    }

    /// Whether the flag `--name` was given.
    pub fn flag(&mut self, name: &str) -> bool {
        let before = self.pairs.len();
        self.pairs.retain(|(key, _)| key != name);
        self.pairs.len() != before
    }

    /// The value of `--name` parsed with `parse`, or `default` if absent (the last one given
    /// wins).
    ///
    /// # Errors
    /// The parser's message, prefixed with the option's name.
    pub fn value<T>(
        &mut self,
        name: &str,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, String> {
        let mut result = default;
        let mut rest = Vec::new();
        for (key, value) in self.pairs.drain(..) {
            if key == name {
                let value = value.unwrap_or_default();
                result = parse(&value).map_err(|why| format!("--{name}: {why}"))?;
            } else {
                rest.push((key, value));
            }
        }
        self.pairs = rest;
        Ok(result)
    }

    /// Fails if any argument was not consumed.
    ///
    /// # Errors
    /// Names the first unknown option.
    pub fn finish(self) -> Result<(), String> {
        match self.pairs.first() {
            Some((name, _)) => Err(format!("unknown option --{name}")),
            None => Ok(()),
        }
    }
}

/// Parses any `FromStr` value, with its error as a string.
///
/// # Errors
/// The value's own parse error.
pub fn parse<T: core::str::FromStr>(text: &str) -> Result<T, String>
where
    T::Err: core::fmt::Display,
{
    text.parse()
        .map_err(|error: T::Err| format!("{text:?}: {error}"))
}

/// The service program's `--help`.
pub const SERVICE_HELP: &str = "\
inger-service: an HTTP service whose requests each get a CPU budget (loopback only)

  --mode MODE        none | tokio-timeout | blocking-timeout | process | inger   (default inger)
  --budget DURATION  CPU budget of a request, e.g. 20ms                        (default 20ms)
  --slice DURATION   inger: slice a request runs before yielding its thread    (default 1ms)
  --grace DURATION   inger: time to reach a cancellation point and unwind      (default 5ms)
  --port PORT        port on 127.0.0.1; 0 picks a free one                     (default 8080)
  --workers N        async worker threads                                      (default 2)
  --processes N      process: worker processes                                 (default 4)
  --concurrency N    requests in progress at most; others wait for a slot      (default 4 x workers)
  --queue-timeout D  a request waiting longer for a slot is shed with 503     (default 1s)

Endpoints: POST /thumbnail (PNG or JPEG), POST /grep (pattern on the first line, then the
text), POST /json, GET /metrics (Prometheus), GET /health. Over-budget requests get 503.
Prints `listening on http://127.0.0.1:PORT` once ready; stops on SIGINT or SIGTERM.
";

/// The service program: parses `args` (without the program name; `--help` lists them) and
/// serves until SIGINT or SIGTERM; with `--worker`, serves as a `process`-mode worker on
/// standard input and output instead.
///
/// # Errors
/// A message for bad arguments or a service that cannot start.
pub fn service_main(args: impl IntoIterator<Item = String>) -> Result<(), String> {
    let mut args = Args::parse(args, &["help", "worker"])?;
    if args.flag("help") {
        print!("{SERVICE_HELP}");
        return Ok(());
    }
    if args.flag("worker") {
        return process::serve_worker().map_err(|error| format!("worker: {error}"));
    }
    let defaults = Budget::default();
    let mode = args.value("mode", Mode::Inger, parse)?;
    let budget = Budget {
        cpu: args.value("budget", defaults.cpu, parse_duration)?,
        slice: args.value("slice", defaults.slice, parse_duration)?,
        grace: args.value("grace", defaults.grace, parse_duration)?,
    };
    let port = args.value("port", 8080u16, parse)?;
    let workers = args.value("workers", 2usize, parse)?;
    let processes = args.value("processes", 4usize, parse)?;
    let concurrency = args.value("concurrency", 4 * workers.max(1), parse)?;
    let queue_timeout = args.value("queue-timeout", Duration::from_secs(1), parse_duration)?;
    args.finish()?;
    if budget.cpu.is_zero() || budget.slice.is_zero() {
        return Err("--budget and --slice must be more than zero".into());
    }
    let program = std::env::current_exe().map_err(|error| format!("own executable: {error}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
        .map_err(|error| format!("tokio runtime: {error}"))?;
    runtime.block_on(async {
        let mut config = Config::new(mode, program);
        config.budget = budget;
        config.port = port;
        config.processes = processes;
        config.concurrency = concurrency;
        config.queue_timeout = queue_timeout;
        let server = Server::start(config)
            .await
            .map_err(|error| format!("cannot start on port {port}: {error}"))?;
        println!(
            "listening on http://{} (mode {mode}, budget {:?}, {workers} workers)",
            server.address(),
            budget.cpu
        );
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(|error| format!("SIGTERM handler: {error}"))?;
        tokio::select! {
            _ = server.run() => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        Ok::<(), String>(())
    })?;
    // Abandoned blocking threads may still be running: do not wait for them.
    runtime.shutdown_background();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_flags_and_leftovers() {
        let args = ["--mode", "inger", "--quick", "--budget=5ms", "--port", "9"];
        let mut args = Args::parse(args.map(String::from), &["quick"]).unwrap();
        assert!(args.flag("quick"));
        assert_eq!(
            args.value("budget", Duration::ZERO, parse_duration),
            Ok(Duration::from_millis(5))
        );
        assert_eq!(
            args.value("mode", String::new(), parse),
            Ok("inger".to_string())
        );
        assert_eq!(args.value("workers", 2usize, parse), Ok(2));
        assert_eq!(args.finish().unwrap_err(), "unknown option --port");
        assert!(Args::parse(["--port".to_string()], &[]).is_err());
        assert!(Args::parse(["stray".to_string()], &[]).is_err());
        assert!(parse_duration("-1ms").is_err());
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
    }
}
