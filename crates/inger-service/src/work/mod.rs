//! The work a request asks for, as plain functions of owned input: the same code runs directly
//! (`--mode none`), on a blocking thread, in a worker process, and inside a preemptible
//! function.
//!
//! | endpoint | library | what it does | the library's own limits, as set here |
//! | --- | --- | --- | --- |
//! | `POST /thumbnail` | `image` (PNG, JPEG) | decode, shrink to fit 128×128 (integer box reduction, then Lanczos3), encode as PNG | 4096×4096 pixels, 80 MiB of decoder allocations, 8 MiB upload |
//! | `POST /grep` | `fancy-regex` | first line of the body is a pattern; answer the other lines that match it, numbered | backtracking limit of 10,000 steps per line (about 0.5 ms), 256-byte pattern, 1 MiB upload |
//! | `POST /json` | `serde_json` | parse, re-serialise pretty-printed | nesting depth 128 (serde_json's default), 1 MiB upload, 32 MiB answer |
//!
//! Each limit bounds one step (one decode, one line's match, the nesting of one document), not
//! the CPU time of a request: a decompression bomb within the pixel limit, a pattern that
//! backtracks just under the limit on each of thousands of lines, and a document nested just
//! under the depth limit whose pretty-printed form is dozens of times its size all stay within
//! them and still cost seconds. That bound on time is what the service's CPU budget adds.
//!
//! The work calls [`inger::checkpoint`] between steps (every few hundred bytes of image input,
//! each reduced row, each line, each few kilobytes of JSON read or written), so a cooperative
//! cancellation unwinds it there and frees its memory. Outside a preemptible function those
//! calls do nothing.

mod grep;
mod io;
mod json;
mod thumbnail;

pub use grep::{BACKTRACK_LIMIT, MAX_PATTERN_BYTES};
pub use json::{MAX_ANSWER_BYTES, MAX_DEPTH};
pub use thumbnail::{MAX_DECODER_ALLOC, MAX_SIDE, THUMBNAIL_SIDE};

/// What a request asks the service to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Decode an image and make a thumbnail of it.
    Thumbnail,
    /// Match a pattern against the lines of a text.
    Grep,
    /// Parse a JSON document and pretty-print it.
    Json,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 3] = [Kind::Thumbnail, Kind::Grep, Kind::Json];

    /// The endpoint's name, as in its path (`/thumbnail`) and in the metrics' labels.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Thumbnail => "thumbnail",
            Kind::Grep => "grep",
            Kind::Json => "json",
        }
    }

    /// The kind served at `path`, if any.
    pub fn from_path(path: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|kind| path.strip_prefix('/') == Some(kind.name()))
    }

    /// The largest request body accepted for this kind.
    pub fn max_body(self) -> usize {
        match self {
            Kind::Thumbnail => 8 << 20,
            Kind::Grep | Kind::Json => 1 << 20,
        }
    }

    /// A small number for the process workers' wire format.
    pub(crate) fn code(self) -> u8 {
        match self {
            Kind::Thumbnail => 1,
            Kind::Grep => 2,
            Kind::Json => 3,
        }
    }

    /// The kind with this wire code.
    pub(crate) fn from_code(code: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.code() == code)
    }
}

/// One unit of work: a kind and the request body it works on (owned, so the work can run
/// anywhere, for as long as it takes, and be cancelled without borrowing from its caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// What to compute.
    pub kind: Kind,
    /// The request body.
    pub body: Vec<u8>,
}

/// A successful answer: its content type and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The `Content-Type` of the answer.
    pub content_type: &'static str,
    /// The answer's bytes.
    pub body: Vec<u8>,
}

/// Why the work produced no answer. Either way the request is refused with `422`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkError {
    /// The input is malformed (not an image, not JSON, an invalid pattern).
    Invalid(String),
    /// The input exceeds one of the libraries' own safety limits.
    Limit(String),
}

impl core::fmt::Display for WorkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WorkError::Invalid(why) => write!(f, "invalid input: {why}"),
            WorkError::Limit(why) => write!(f, "over a safety limit: {why}"),
        }
    }
}

impl std::error::Error for WorkError {}

/// The `Content-Type` of the answers of `kind`.
pub fn content_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Thumbnail => "image/png",
        Kind::Grep => "text/plain; charset=utf-8",
        Kind::Json => "application/json",
    }
}

/// Decodes a PNG or JPEG image as `/thumbnail` does (same limits, same cancellation points),
/// to 8-bit RGBA: the step the decode benchmark times.
///
/// # Errors
/// As for the thumbnail endpoint: malformed input or over a limit.
pub fn decode_image(body: Vec<u8>) -> Result<image::RgbaImage, WorkError> {
    thumbnail::decode(body)
}

/// Does the work of `job` to the end, with no time bound (the protection modes add one).
///
/// ```
/// use inger_service::work::{run, Job, Kind};
/// let job = Job { kind: Kind::Json, body: br#"{"b":[1,2],"a":null}"#.to_vec() };
/// let output = run(job).unwrap();
/// assert_eq!(output.body, b"{\n  \"a\": null,\n  \"b\": [\n    1,\n    2\n  ]\n}\n");
/// ```
pub fn run(job: Job) -> Result<Output, WorkError> {
    match job.kind {
        Kind::Thumbnail => thumbnail::run(job.body),
        Kind::Grep => grep::run(job.body),
        Kind::Json => json::run(job.body),
    }
}
