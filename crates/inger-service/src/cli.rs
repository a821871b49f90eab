//! Command-line parsing shared by the programs: `--name value` pairs and durations.

use std::time::Duration;

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
    let units = [("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0)];
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
                let value = args.next().ok_or_else(|| format!("--{name} needs a value"))?;
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
    text.parse().map_err(|error: T::Err| format!("{text:?}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_flags_and_leftovers() {
        let args = ["--mode", "inger", "--quick", "--budget=5ms", "--port", "9"];
        let mut args = Args::parse(args.map(String::from), &["quick"]).unwrap();
        assert!(args.flag("quick"));
        assert_eq!(args.value("budget", Duration::ZERO, parse_duration), Ok(Duration::from_millis(5)));
        assert_eq!(args.value("mode", String::new(), parse), Ok("inger".to_string()));
        assert_eq!(args.value("workers", 2usize, parse), Ok(2));
        assert_eq!(args.finish().unwrap_err(), "unknown option --port");
        assert!(Args::parse(["--port".to_string()], &[]).is_err());
        assert!(Args::parse(["stray".to_string()], &[]).is_err());
        assert!(parse_duration("-1ms").is_err());
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
    }
}
