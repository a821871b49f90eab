//! `POST /json`: parse a document with `serde_json` and answer it pretty-printed (two spaces
//! per level, object keys sorted: serde_json's `Value` keeps them in a `BTreeMap`).

use super::io::{CappedWriter, CheckpointReader};
use super::{Output, WorkError};

/// serde_json's own nesting limit, left on: deeper documents are refused.
pub const MAX_DEPTH: usize = 128;
/// The largest answer produced; a document whose pretty-printed form is larger is refused.
pub const MAX_ANSWER_BYTES: usize = 32 << 20;
/// Bytes read, or written, between cancellation points.
const CHECKPOINT_BYTES: usize = 4096;

pub(super) fn run(body: Vec<u8>) -> Result<Output, WorkError> {
    let reader = CheckpointReader::new(body, CHECKPOINT_BYTES);
    let value: serde_json::Value = serde_json::from_reader(reader).map_err(|error| {
        if error.to_string().starts_with("recursion limit exceeded") {
            WorkError::Limit(format!("nested deeper than {MAX_DEPTH}: {error}"))
        } else {
            WorkError::Invalid(error.to_string())
        }
    })?;
    inger::checkpoint();
    let mut writer = CappedWriter::new(MAX_ANSWER_BYTES, CHECKPOINT_BYTES);
    serde_json::to_writer_pretty(&mut writer, &value)
        .map_err(|error| WorkError::Limit(error.to_string()))?;
    drop(value);
    let mut body = writer.bytes;
    body.push(b'\n');
    Ok(Output {
        content_type: super::content_type(super::Kind::Json),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_past_the_limit_is_refused() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(matches!(run(deep.into_bytes()), Err(WorkError::Limit(_))));
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        assert!(run(ok.into_bytes()).is_ok());
    }

    #[test]
    fn malformed_documents_are_invalid() {
        assert!(matches!(
            run(b"{\"a\": }".to_vec()),
            Err(WorkError::Invalid(_))
        ));
        assert!(matches!(
            run(b"[1] [2]".to_vec()),
            Err(WorkError::Invalid(_))
        ));
    }

    #[test]
    fn an_answer_over_the_cap_is_refused() {
        // 100 levels deep, each leaf takes about 200 bytes of indentation in the answer.
        let leaves = MAX_ANSWER_BYTES / 150;
        let wide = format!(
            "{}{}0{}",
            "[".repeat(100),
            "0,".repeat(leaves),
            "]".repeat(100)
        );
        assert!(matches!(run(wide.into_bytes()), Err(WorkError::Limit(_))));
    }
}
