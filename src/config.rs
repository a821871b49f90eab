//! Process-wide settings: a builder plus environment variables.
//!
//! Context: caller only (never the signal handler, which reads the validated copies the
//! runtime keeps).
//!
//! The settings are fixed the first time they are needed (the first launch, or an explicit
//! [`Config::install`]). Every `INGER_*` variable of the library is read here, once, the first
//! time any of them is needed (the README lists the same table):
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `INGER_STACK_SIZE` | least stack size of each preemptible function, bytes; `K`/`M`/`G` suffixes (see [`Config::stack_size`]) | `2M` |
//! | `INGER_SIGNAL` | the timer signal: a number, `SIGRTMIN+n` or `SIGRTMAX-n` | `SIGRTMAX-4` |
//! | `INGER_PREEMPT` | `0`, `off`, `false` or `no` turns timer preemption off (kill switch) | on |
//! | `INGER_RETRY_US` | first retry interval after a deferred preemption, microseconds | `50` |
//! | `INGER_REDIRECT` | `0`, `off`, `false` or `no`: a deadline that passes in a critical section is retried instead of taking effect at its end (diagnostics) | on |
//! | `INGER_CANCEL_GRACE_US` | how long dropping a paused continuation lets it unwind before discarding it, microseconds (`0`: discard at once) | `1000` |
//! | `INGER_SHARED_TLS` | any value but `0`: functions share their caller's thread-locals (diagnostics) | off |
//! | `INGER_NONPREEMPTIBLE` | comma-separated libraries never paused inside (file names or prefixes) | none |
//! | `INGER_NONPREEMPTIBLE_SYMBOLS` | comma-separated Rust path prefixes of code never paused inside | none |
//!
//! `INGER_PREEMPT=0` wins over everything, including [`Config::preemption`]: it is the
//! operator's switch for ruling inger's signal out when chasing a problem. Functions then
//! run until they complete or call [`pause`](crate::pause).

use std::sync::OnceLock;
use std::time::Duration;

use crate::error::Error;
use crate::sys::process::page_size;

/// The smallest stack accepted: room for the function's header, a few frames, and a
/// kernel signal frame with a full XSAVE area.
pub const MIN_STACK_SIZE: usize = 64 * 1024;
const DEFAULT_STACK_SIZE: usize = 2 * 1024 * 1024;
const DEFAULT_RETRY: Duration = Duration::from_micros(50);
const DEFAULT_CANCEL_GRACE: Duration = Duration::from_millis(1);
/// Below this a retry would arrive before the previous signal round trip finished, which
/// livelocks (see DESIGN.md §2).
const MIN_RETRY: Duration = Duration::from_micros(20);

/// Builder for inger's process-wide settings.
///
/// ```
/// # fn main() -> Result<(), inger::Error> {
/// inger::Config::from_env()?
///     .stack_size(256 * 1024)
///     .install()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub(crate) stack_size: usize,
    pub(crate) signal: Option<i32>,
    pub(crate) preemption: bool,
    pub(crate) retry: Duration,
    pub(crate) cancel_grace: Duration,
    pub(crate) shared_tls: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            stack_size: DEFAULT_STACK_SIZE,
            signal: None,
            preemption: true,
            retry: DEFAULT_RETRY,
            cancel_grace: DEFAULT_CANCEL_GRACE,
            shared_tls: false,
        }
    }
}

impl Config {
    /// The built-in defaults, ignoring the environment (except the `INGER_PREEMPT` kill switch,
    /// which always applies).
    pub fn new() -> Self {
        Self::default()
    }

    /// The defaults with the `INGER_*` environment variables applied.
    pub fn from_env() -> Result<Self, Error> {
        let mut config = Self::default();
        let environment = environment();
        config.shared_tls = environment.shared_tls;
        if let Some(value) = &environment.stack_size {
            config.stack_size = parse_size(value)
                .ok_or_else(|| Error::InvalidConfig(format!("INGER_STACK_SIZE={value:?}")))?;
        }
        if let Some(value) = &environment.signal {
            config.signal = Some(
                parse_signal(value)
                    .ok_or_else(|| Error::InvalidConfig(format!("INGER_SIGNAL={value:?}")))?,
            );
        }
        if let Some(value) = &environment.retry_us {
            let micros: u64 = value
                .trim()
                .parse()
                .map_err(|_| Error::InvalidConfig(format!("INGER_RETRY_US={value:?}")))?;
            config.retry = Duration::from_micros(micros);
        }
        if let Some(value) = &environment.cancel_grace_us {
            let micros: u64 = value
                .trim()
                .parse()
                .map_err(|_| Error::InvalidConfig(format!("INGER_CANCEL_GRACE_US={value:?}")))?;
            config.cancel_grace = Duration::from_micros(micros);
        }
        Ok(config)
    }

    /// Stack size of every preemptible function, in bytes: at least this much, since a stack
    /// and its 64 KiB guard take the smallest power of two that holds both (2 MiB asks for a
    /// 4 MiB slot, of which 4 MiB − 64 KiB is stack). Only the pages a function touches cost
    /// memory; the rest is address space.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = bytes;
        self
    }

    /// The real-time signal used for preemption.
    pub fn signal(mut self, signal: i32) -> Self {
        self.signal = Some(signal);
        self
    }

    /// Turns timer preemption on or off. Off, budgets are ignored: functions run until they
    /// complete or [`pause`](crate::pause).
    pub fn preemption(mut self, enabled: bool) -> Self {
        self.preemption = enabled;
        self
    }

    /// First retry interval when a deadline passes while the function cannot be paused
    /// (it doubles on each further retry, twice at most).
    pub fn retry_interval(mut self, interval: Duration) -> Self {
        self.retry = interval;
        self
    }

    /// Whether each function gets its own thread-local storage (the default, where glibc's
    /// TLS internals are found) or shares its caller's, except errno (`false`, as
    /// `INGER_SHARED_TLS=1`: continuations then resume only on their launching thread).
    ///
    /// ```
    /// let config = inger::Config::new().private_tls(false);
    /// assert_ne!(config, inger::Config::new());
    /// ```
    pub fn private_tls(mut self, private: bool) -> Self {
        self.shared_tls = !private;
        self
    }

    /// How long dropping a paused continuation lets the function unwind (from its next
    /// cancellation point, running its destructors) before its stack is discarded instead;
    /// `Duration::ZERO` discards at once. The grace is wall-clock time, then (for a function
    /// still running at its end, whose thread was descheduled) as much again in CPU time,
    /// bounded in wall time. See [`Continuation`](crate::Continuation).
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// Makes these the process-wide settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad value, [`Error::AlreadyInitialized`] once settings
    /// are in force (after the first launch or an earlier `install`).
    pub fn install(self) -> Result<(), Error> {
        let settings = self.validate()?;
        let mut installed = false;
        SETTINGS.get_or_init(|| {
            installed = true;
            Ok(settings)
        });
        if installed {
            Ok(())
        } else {
            Err(Error::AlreadyInitialized)
        }
    }

    fn validate(self) -> Result<Settings, Error> {
        if self.stack_size < MIN_STACK_SIZE {
            return Err(Error::InvalidConfig(format!(
                "stack size {} is below the minimum of {MIN_STACK_SIZE} bytes",
                self.stack_size
            )));
        }
        if self.stack_size > (1 << 40) {
            return Err(Error::InvalidConfig(format!(
                "stack size {} is absurdly large",
                self.stack_size
            )));
        }
        let signal = self.signal.unwrap_or_else(|| libc::SIGRTMAX() - 4);
        if signal < libc::SIGRTMIN() || signal > libc::SIGRTMAX() {
            return Err(Error::InvalidConfig(format!(
                "signal {signal} is not a real-time signal usable by applications ({}..={})",
                libc::SIGRTMIN(),
                libc::SIGRTMAX()
            )));
        }
        if self.retry < MIN_RETRY {
            return Err(Error::InvalidConfig(format!(
                "retry interval {:?} is below the minimum of {MIN_RETRY:?}",
                self.retry
            )));
        }
        let kill_switch = environment().preemption_off;
        Ok(Settings {
            stack_size: round_to_page(self.stack_size),
            signal,
            preemption: self.preemption && !kill_switch,
            retry_ns: self.retry.as_nanos().min(u64::MAX as u128) as u64,
            cancel_grace: self.cancel_grace,
            redirect: !environment().redirect_off,
            shared_tls: self.shared_tls,
        })
    }
}

/// The validated settings in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) stack_size: usize,
    pub(crate) signal: i32,
    pub(crate) preemption: bool,
    pub(crate) retry_ns: u64,
    pub(crate) cancel_grace: Duration,
    /// Functions share their caller's thread-locals (`INGER_SHARED_TLS`, [`Config::private_tls`]).
    pub(crate) shared_tls: bool,
    /// Deadlines that pass in a critical section take effect at its end (`INGER_REDIRECT`).
    pub(crate) redirect: bool,
}

static SETTINGS: OnceLock<Result<Settings, Error>> = OnceLock::new();

/// The settings in force, fixing them from the environment if nobody installed any.
pub(crate) fn settings() -> Result<&'static Settings, Error> {
    SETTINGS
        .get_or_init(|| Config::from_env().and_then(Config::validate))
        .as_ref()
        .map_err(Clone::clone)
}

/// Whether timer preemption is enabled in this process (false under the
/// `INGER_PREEMPT=0` kill switch or [`Config::preemption`]`(false)`).
pub fn preemption_enabled() -> bool {
    settings().map(|s| s.preemption).unwrap_or(false)
}

/// The library's `INGER_*` environment variables (see the module docs), read once.
#[derive(Debug, Default)]
pub(crate) struct Environment {
    stack_size: Option<String>,
    signal: Option<String>,
    retry_us: Option<String>,
    cancel_grace_us: Option<String>,
    /// `INGER_PREEMPT` is `0`, `off`, `false` or `no`.
    preemption_off: bool,
    /// `INGER_REDIRECT` is `0`, `off`, `false` or `no`.
    redirect_off: bool,
    /// `INGER_SHARED_TLS` is set to anything but `0`.
    pub(crate) shared_tls: bool,
    /// `INGER_NONPREEMPTIBLE`, split at commas.
    pub(crate) non_preemptible: Vec<String>,
    /// `INGER_NONPREEMPTIBLE_SYMBOLS`, split at commas.
    pub(crate) non_preemptible_symbols: Vec<String>,
}

impl Environment {
    fn read() -> Environment {
        fn var(name: &str) -> Option<String> {
            std::env::var(name).ok().filter(|v| !v.trim().is_empty())
        }
        fn is_off(value: &str) -> bool {
            matches!(value.trim(), "0" | "off" | "false" | "no")
        }
        fn list(name: &str) -> Vec<String> {
            var(name)
                .map(|value| {
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|item| !item.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        }
        Environment {
            stack_size: var("INGER_STACK_SIZE"),
            signal: var("INGER_SIGNAL"),
            retry_us: var("INGER_RETRY_US"),
            cancel_grace_us: var("INGER_CANCEL_GRACE_US"),
            preemption_off: var("INGER_PREEMPT").is_some_and(|v| is_off(&v)),
            redirect_off: var("INGER_REDIRECT").is_some_and(|v| is_off(&v)),
            shared_tls: std::env::var_os("INGER_SHARED_TLS").is_some_and(|v| v != "0"),
            non_preemptible: list("INGER_NONPREEMPTIBLE"),
            non_preemptible_symbols: list("INGER_NONPREEMPTIBLE_SYMBOLS"),
        }
    }
}

/// The `INGER_*` variables as they were when first needed.
pub(crate) fn environment() -> &'static Environment {
    static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();
    ENVIRONMENT.get_or_init(Environment::read)
}

fn round_to_page(bytes: usize) -> usize {
    let page = page_size();
    bytes.div_ceil(page) * page
}

/// Parses `4096`, `64K`, `2M`, `1G` (case-insensitive, optional `B`/`iB`).
fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim().to_ascii_uppercase();
    let text = text
        .strip_suffix("IB")
        .or_else(|| text.strip_suffix('B'))
        .unwrap_or(&text);
    let (digits, shift) = match text.chars().last()? {
        'K' => (&text[..text.len() - 1], 10),
        'M' => (&text[..text.len() - 1], 20),
        'G' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    digits.trim().parse::<usize>().ok()?.checked_mul(1 << shift)
}

/// Parses `40`, `SIGRTMIN+3`, `SIGRTMAX-2`, `RTMIN`, `rtmax-1`.
fn parse_signal(text: &str) -> Option<i32> {
    let text = text.trim().to_ascii_uppercase();
    let text = text.strip_prefix("SIG").unwrap_or(&text);
    if let Ok(number) = text.parse::<i32>() {
        return Some(number);
    }
    let (base, rest) = if let Some(rest) = text.strip_prefix("RTMIN") {
        (libc::SIGRTMIN(), rest)
    } else if let Some(rest) = text.strip_prefix("RTMAX") {
        (libc::SIGRTMAX(), rest)
    } else {
        return None;
    };
    if rest.is_empty() {
        return Some(base);
    }
    let offset: i32 = rest[1..].parse().ok()?;
    match rest.as_bytes()[0] {
        b'+' => Some(base + offset),
        b'-' => Some(base - offset),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("64k"), Some(64 * 1024));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn signals_parse_relative_to_the_realtime_range() {
        assert_eq!(parse_signal("40"), Some(40));
        assert_eq!(parse_signal("SIGRTMIN+3"), Some(libc::SIGRTMIN() + 3));
        assert_eq!(parse_signal("rtmax-2"), Some(libc::SIGRTMAX() - 2));
        assert_eq!(parse_signal("SIGRTMAX"), Some(libc::SIGRTMAX()));
        assert_eq!(parse_signal("SIGUSR1"), None);
    }

    #[test]
    fn validation_rejects_bad_values() {
        assert!(Config::new().stack_size(1024).validate().is_err());
        assert!(Config::new().signal(libc::SIGUSR1).validate().is_err());
        assert!(
            Config::new()
                .retry_interval(Duration::from_micros(1))
                .validate()
                .is_err()
        );
        let ok = Config::new().stack_size(100_000).validate().unwrap();
        assert_eq!(ok.stack_size % page_size(), 0);
        assert!(ok.stack_size >= 100_000);
    }
}
