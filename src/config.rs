//! Process-wide settings: a builder plus environment variables.
//!
//! The settings are fixed the first time they are needed (the first launch, or an explicit
//! [`Config::install`]). Environment variables, read at that moment:
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `INGER_STACK_SIZE` | stack size of each preemptible function, bytes; `K`/`M`/`G` suffixes | `2M` |
//! | `INGER_SIGNAL` | the timer signal: a number, `SIGRTMIN+n` or `SIGRTMAX-n` | `SIGRTMAX-4` |
//! | `INGER_PREEMPT` | `0`, `off` or `false` turns timer preemption off (kill switch) | on |
//! | `INGER_RETRY_US` | first retry interval after a deferred preemption, microseconds | `50` |
//!
//! `INGER_PREEMPT=0` wins over everything, including [`Config::preemption`]: it is the
//! operator's switch for ruling inger's signal out when chasing a problem. Functions then
//! run until they complete or call [`pause`](crate::pause).

use std::sync::OnceLock;
use std::time::Duration;

use crate::error::Error;

/// The smallest stack accepted: room for the function's header, a few frames, and a
/// kernel signal frame with a full XSAVE area.
pub const MIN_STACK_SIZE: usize = 64 * 1024;
const DEFAULT_STACK_SIZE: usize = 2 * 1024 * 1024;
const DEFAULT_RETRY: Duration = Duration::from_micros(50);
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            stack_size: DEFAULT_STACK_SIZE,
            signal: None,
            preemption: true,
            retry: DEFAULT_RETRY,
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
        if let Some(value) = env("INGER_STACK_SIZE") {
            config.stack_size = parse_size(&value)
                .ok_or_else(|| Error::InvalidConfig(format!("INGER_STACK_SIZE={value:?}")))?;
        }
        if let Some(value) = env("INGER_SIGNAL") {
            config.signal = Some(
                parse_signal(&value)
                    .ok_or_else(|| Error::InvalidConfig(format!("INGER_SIGNAL={value:?}")))?,
            );
        }
        if let Some(value) = env("INGER_RETRY_US") {
            let micros: u64 = value
                .trim()
                .parse()
                .map_err(|_| Error::InvalidConfig(format!("INGER_RETRY_US={value:?}")))?;
            config.retry = Duration::from_micros(micros);
        }
        Ok(config)
    }

    /// Stack size of every preemptible function, in bytes (rounded up to whole pages). Only
    /// the pages a function touches cost memory.
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
        let kill_switch = env("INGER_PREEMPT")
            .map(|v| matches!(v.trim(), "0" | "off" | "false" | "no"))
            .unwrap_or(false);
        Ok(Settings {
            stack_size: round_to_page(self.stack_size),
            signal,
            preemption: self.preemption && !kill_switch,
            retry_ns: self.retry.as_nanos().min(u64::MAX as u128) as u64,
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

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as usize } else { 4096 }
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
