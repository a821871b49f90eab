//! `POST /grep`: the body's first line is a pattern (`fancy-regex`: backreferences and
//! look-around, by backtracking); the answer is every other line that matches, as
//! `number:line`.

use std::fmt::Write as _;

use fancy_regex::RegexBuilder;

use super::{Output, WorkError};

/// Backtracking steps allowed per line (`fancy-regex`'s `backtrack_limit`; its default is
/// 1,000,000, about 50 ms here). 10,000 steps take about half a millisecond and are far more
/// than ordinary patterns need.
pub const BACKTRACK_LIMIT: usize = 10_000;
/// The longest pattern accepted.
pub const MAX_PATTERN_BYTES: usize = 256;

pub(super) fn run(body: Vec<u8>) -> Result<Output, WorkError> {
    let text = String::from_utf8(body)
        .map_err(|_| WorkError::Invalid("the body is not UTF-8 text".into()))?;
    let (pattern, lines) = text.split_once('\n').unwrap_or((&text, ""));
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(WorkError::Limit(format!(
            "the pattern is longer than {MAX_PATTERN_BYTES} bytes"
        )));
    }
    let regex = RegexBuilder::new(pattern)
        .backtrack_limit(BACKTRACK_LIMIT)
        .build()
        .map_err(|error| match error {
            fancy_regex::Error::ParseError(..) => WorkError::Invalid(error.to_string()),
            other => WorkError::Limit(other.to_string()),
        })?;
    let mut answer = String::new();
    for (index, line) in lines.lines().enumerate() {
        inger::checkpoint();
        match regex.is_match(line) {
            Ok(true) => {
                let _ = writeln!(answer, "{}:{line}", index + 1);
            }
            Ok(false) => {}
            Err(error) => {
                return Err(WorkError::Limit(format!("line {}: {error}", index + 1)));
            }
        }
    }
    Ok(Output {
        content_type: super::content_type(super::Kind::Grep),
        body: answer.into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grep(body: &str) -> Result<String, WorkError> {
        run(body.as_bytes().to_vec()).map(|output| String::from_utf8(output.body).unwrap())
    }

    #[test]
    fn answers_the_matching_lines_numbered() {
        let answer = grep("\\b(\\w+) \\1\\b\nthe the cat\nno repeat\nsat on on it").unwrap();
        assert_eq!(answer, "1:the the cat\n3:sat on on it\n");
    }

    #[test]
    fn refuses_bad_and_oversized_patterns() {
        assert!(matches!(grep("(unclosed\nx"), Err(WorkError::Invalid(_))));
        let long = "a".repeat(MAX_PATTERN_BYTES + 1);
        assert!(matches!(grep(&long), Err(WorkError::Limit(_))));
    }

    #[test]
    fn a_line_over_the_backtracking_limit_is_refused() {
        let body = format!("^(a|aa)+(?!a)b\n{}", "a".repeat(40));
        let error = grep(&body).unwrap_err();
        assert!(
            matches!(&error, WorkError::Limit(why) if why.starts_with("line 1:")),
            "{error}"
        );
    }
}
