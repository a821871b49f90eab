//! Request bodies, benign and hostile, made in code (nothing large is committed): the load
//! generator, the tests and the benchmark use the same ones.
//!
//! | kind | benign | hostile |
//! | --- | --- | --- |
//! | thumbnail | a 320×240 photo-like PNG, or a JPEG of it | a decompression bomb: a 4096×4096 RGBA PNG of about 70 KB that inflates to 64 MiB (within the pixel and allocation limits) |
//! | grep | a doubled-word pattern over 300 lines of prose | `^(a\|aa)+(?!a)b` over lines of `a`s, each as long as the backtracking limit allows, filling the 1 MiB upload |
//! | json | an array of 60 records | arrays nested 100 deep (under the limit of 128) around zeros, as many as the 32 MiB answer allows |

use std::io::Write as _;

use flate2::{Compress, Compression, FlushCompress, Status};
use image::ImageEncoder;

use crate::work::{self, Job, Kind};

/// A small deterministic generator (SplitMix64), so that every run sends the same bytes.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The benign job of `kind` (`variant` picks among a few, such as PNG or JPEG).
pub fn benign(kind: Kind, variant: u64) -> Job {
    let body = match kind {
        Kind::Thumbnail if variant % 2 == 1 => photo_jpeg(320, 240),
        Kind::Thumbnail => photo_png(320, 240),
        Kind::Grep => prose_grep(300),
        Kind::Json => records_json(60),
    };
    Job { kind, body }
}

/// The hostile job of `kind`, full size (see the module docs).
pub fn hostile(kind: Kind) -> Job {
    let body = match kind {
        Kind::Thumbnail => png_bomb(work::MAX_SIDE),
        Kind::Grep => backtracking_grep(Kind::Grep.max_body()),
        Kind::Json => nested_json(100, work::MAX_ANSWER_BYTES),
    };
    Job { kind, body }
}

/// A photo-like picture: smooth gradients, a few soft discs and mild noise.
fn photo(width: u32, height: u32) -> image::RgbImage {
    let mut rng = Rng::new(7);
    let discs: Vec<(f64, f64, f64, [f64; 3])> = (0..6)
        .map(|_| {
            let x = rng.unit() * f64::from(width);
            let y = rng.unit() * f64::from(height);
            let r = 20.0 + rng.unit() * f64::from(height) / 3.0;
            (x, y, r, [rng.unit(), rng.unit(), rng.unit()])
        })
        .collect();
    image::RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (f64::from(x), f64::from(y));
        let mut rgb = [
            fx / f64::from(width) * 160.0,
            fy / f64::from(height) * 160.0,
            90.0,
        ];
        for (cx, cy, r, colour) in &discs {
            let d = ((fx - cx).powi(2) + (fy - cy).powi(2)).sqrt();
            let weight = (1.0 - d / r).clamp(0.0, 1.0);
            for (channel, c) in rgb.iter_mut().zip(colour) {
                *channel = *channel * (1.0 - weight) + 255.0 * c * weight;
            }
        }
        let noise = (rng.below(9) as f64) - 4.0;
        image::Rgb(rgb.map(|channel| (channel + noise).clamp(0.0, 255.0) as u8))
    })
}

/// [`photo`] as a PNG.
pub fn photo_png(width: u32, height: u32) -> Vec<u8> {
    let picture = photo(width, height);
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(
            picture.as_raw(),
            width,
            height,
            image::ExtendedColorType::Rgb8,
        )
        .expect("encoding a PNG in memory cannot fail");
    png
}

/// [`photo`] as a baseline JPEG (quality 85).
pub fn photo_jpeg(width: u32, height: u32) -> Vec<u8> {
    let picture = photo(width, height);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
        .write_image(
            picture.as_raw(),
            width,
            height,
            image::ExtendedColorType::Rgb8,
        )
        .expect("encoding a JPEG in memory cannot fail");
    jpeg
}

/// A PNG of `side`×`side` transparent black RGBA pixels whose compressed data is built
/// directly: about 1,000 times smaller than the 64 MiB it inflates to at full size. Every row
/// is marked with the Paeth filter, the costliest to undo (its pixels stay zero).
pub fn png_bomb(side: u32) -> Vec<u8> {
    // Each row is a filter-type byte (4, Paeth) followed by the filtered pixels: zeros.
    let mut row = vec![0u8; 1 + side as usize * 4];
    row[0] = 4;
    png_file(side, side, &zlib_of_rows(&row, side as usize))
}

/// A zlib stream of `rows` copies of `row`, built from one repeated deflate block: once a
/// piece of whole rows at least as long as deflate's 32 KiB window has been compressed, the
/// compressed form of the next piece (flushed to a byte boundary) only refers back into
/// identical data, so the same bytes can be repeated.
fn zlib_of_rows(row: &[u8], rows: usize) -> Vec<u8> {
    let rows_per_piece = (32usize << 10).div_ceil(row.len()).max(1);
    let piece = row.repeat(rows_per_piece);
    let mut compress = Compress::new(Compression::best(), false);
    let mut stream = vec![0x78, 0xda];
    let pieces = rows / rows_per_piece;
    let rest = row.repeat(rows % rows_per_piece);
    if pieces >= 2 {
        stream.extend(deflate(&mut compress, &piece, FlushCompress::Sync));
        let repeated = deflate(&mut compress, &piece, FlushCompress::Sync);
        for _ in 1..pieces {
            stream.extend_from_slice(&repeated);
        }
        stream.extend(deflate(&mut compress, &rest, FlushCompress::Finish));
    } else {
        stream.extend(deflate(
            &mut compress,
            &row.repeat(rows),
            FlushCompress::Finish,
        ));
    }
    stream.extend_from_slice(&adler32_of_rows(row, rows).to_be_bytes());
    stream
}

/// Adler-32 of `rows` copies of `row`, without materialising them.
fn adler32_of_rows(row: &[u8], rows: usize) -> u32 {
    const MOD: u64 = 65521;
    // One row from state (a, b): a' = a + S, b' = b + n·a + W, with S the byte sum and W the
    // sum of each byte weighted by the count of bytes from it to the end of the row.
    let n = row.len() as u64;
    let sum: u64 = row.iter().map(|&byte| u64::from(byte)).sum::<u64>() % MOD;
    let weighted: u64 = row
        .iter()
        .enumerate()
        .map(|(index, &byte)| u64::from(byte) * (n - index as u64) % MOD)
        .sum::<u64>()
        % MOD;
    let (mut a, mut b) = (1u64, 0u64);
    for _ in 0..rows {
        b = (b + n % MOD * a + weighted) % MOD;
        a = (a + sum) % MOD;
    }
    ((b as u32) << 16) | a as u32
}

/// Compresses all of `input` with `flush`, returning the bytes produced.
fn deflate(compress: &mut Compress, mut input: &[u8], flush: FlushCompress) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 64 + 64);
    loop {
        let consumed_before = compress.total_in();
        let status = compress
            .compress_vec(input, &mut out, flush)
            .expect("deflating in memory cannot fail");
        input = &input[(compress.total_in() - consumed_before) as usize..];
        let done = match flush {
            FlushCompress::Finish => status == Status::StreamEnd,
            _ => input.is_empty() && out.len() < out.capacity(),
        };
        if done {
            return out;
        }
        out.reserve(out.capacity().max(64));
    }
}

/// A PNG file: signature, IHDR (8-bit RGBA), the zlib stream in 64 KiB IDAT chunks, IEND.
fn png_file(width: u32, height: u32, zlib: &[u8]) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 6, 0, 0, 0]); // depth 8, RGBA, deflate, adaptive, progressive
    chunk(&mut png, b"IHDR", &header);
    for data in zlib.chunks(64 << 10) {
        chunk(&mut png, b"IDAT", data);
    }
    chunk(&mut png, b"IEND", &[]);
    png
}

fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = png.len();
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let crc = crc32fast::hash(&png[start..]);
    png.extend_from_slice(&crc.to_be_bytes());
}

const WORDS: [&str; 24] = [
    "the",
    "quick",
    "service",
    "decodes",
    "an",
    "image",
    "while",
    "a",
    "pattern",
    "is",
    "matched",
    "against",
    "every",
    "line",
    "of",
    "text",
    "and",
    "documents",
    "are",
    "parsed",
    "then",
    "printed",
    "again",
    "today",
];

/// A doubled-word search (`\b(\w+) \1\b`, a backreference) over `lines` lines of prose, one
/// in seven with a doubled word.
fn prose_grep(lines: usize) -> Vec<u8> {
    let mut rng = Rng::new(11);
    let mut body = b"\\b(\\w+) \\1\\b\n".to_vec();
    for line in 0..lines {
        let count = 6 + rng.below(8) as usize;
        let words: Vec<&str> = (0..count)
            .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
            .collect();
        for (index, word) in words.iter().enumerate() {
            if index > 0 {
                body.push(b' ');
            }
            body.extend_from_slice(word.as_bytes());
            if line % 7 == 3 && index == count / 2 {
                let _ = write!(body, " {word}");
            }
        }
        body.push(b'\n');
    }
    body
}

/// The catastrophic pattern of the hostile grep: alternatives that overlap, then a
/// look-around (which keeps it in fancy-regex's backtracking engine), against `a`s with no
/// `b`: the engine tries every way to split the line, about 1.6^n.
pub const HOSTILE_PATTERN: &str = "^(a|aa)+(?!a)b";

/// The longest line of `a`s the hostile pattern fails on within the backtracking limit.
pub fn hostile_line_length() -> usize {
    let regex = fancy_regex::RegexBuilder::new(HOSTILE_PATTERN)
        .backtrack_limit(work::BACKTRACK_LIMIT)
        .build()
        .expect("the hostile pattern compiles");
    let mut length = 1;
    while regex.is_match(&"a".repeat(length + 1)).is_ok() {
        length += 1;
    }
    length
}

/// [`HOSTILE_PATTERN`] over as many lines of [`hostile_line_length`] `a`s as fit in `bytes`.
pub fn backtracking_grep(bytes: usize) -> Vec<u8> {
    let line = "a".repeat(hostile_line_length());
    let mut body = format!("{HOSTILE_PATTERN}\n").into_bytes();
    while body.len() + line.len() < bytes {
        body.extend_from_slice(line.as_bytes());
        body.push(b'\n');
    }
    body
}

/// `count` records of assorted JSON values.
fn records_json(count: usize) -> Vec<u8> {
    let mut rng = Rng::new(13);
    let records: Vec<serde_json::Value> = (0..count)
        .map(|id| {
            let tags: Vec<&str> = (0..rng.below(4))
                .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
                .collect();
            serde_json::json!({
                "id": id,
                "name": format!("{} {}", WORDS[id % WORDS.len()], id),
                "score": (rng.unit() * 1000.0).round() / 10.0,
                "active": rng.below(2) == 1,
                "tags": tags,
                "owner": { "team": WORDS[(id * 7) % WORDS.len()], "since": 2000 + id % 25 },
                "note": serde_json::Value::Null,
            })
        })
        .collect();
    serde_json::to_vec(&records).expect("serialising a Value cannot fail")
}

/// Arrays nested `depth` deep around as many zeros as keep the pretty-printed answer under
/// `answer_cap` bytes (each zero is printed on its own line, indented by `2 × depth` spaces).
pub fn nested_json(depth: usize, answer_cap: usize) -> Vec<u8> {
    let per_leaf = 2 * depth + 3;
    let framing = depth * (2 * depth + 2);
    let leaves = (answer_cap.saturating_sub(framing) / per_leaf) * 98 / 100;
    let mut body = "[".repeat(depth).into_bytes();
    for leaf in 0..leaves.max(1) {
        if leaf > 0 {
            body.push(b',');
        }
        body.push(b'0');
    }
    body.extend_from_slice("]".repeat(depth).as_bytes());
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bomb_is_small_and_inflates_to_the_full_image() {
        let bomb = png_bomb(work::MAX_SIDE);
        assert!(bomb.len() < 200 << 10, "{} bytes", bomb.len());
        let reader = image::ImageReader::new(std::io::Cursor::new(&bomb))
            .with_guessed_format()
            .unwrap();
        assert_eq!(
            reader.into_dimensions().unwrap(),
            (work::MAX_SIDE, work::MAX_SIDE)
        );
        // The same construction at a side whose decode is quick: every pixel is there.
        let small = png_bomb(300);
        let decoded = image::load_from_memory(&small).unwrap().into_rgba8();
        assert_eq!(decoded.dimensions(), (300, 300));
        assert!(decoded.pixels().all(|pixel| pixel.0 == [0; 4]));
    }

    #[test]
    fn adler32_of_rows_matches_the_bytewise_sum() {
        let row = [4u8, 0, 7, 255, 1];
        let data = row.repeat(50_000);
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in &data {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!(adler32_of_rows(&row, 50_000), (b << 16) | a);
    }

    #[test]
    fn hostile_grep_lines_stay_within_the_backtracking_limit() {
        let length = hostile_line_length();
        assert!(length >= 10, "{length}");
        let few_lines = backtracking_grep(10 * (length + 1) + HOSTILE_PATTERN.len() + 1);
        let answer = work::run(Job {
            kind: Kind::Grep,
            body: few_lines,
        });
        assert_eq!(
            answer.unwrap().body,
            b"",
            "no line matches, none is refused"
        );
        assert!(backtracking_grep(Kind::Grep.max_body()).len() <= Kind::Grep.max_body());
    }

    #[test]
    fn hostile_json_stays_within_the_depth_and_answer_limits() {
        let document = nested_json(100, 64 << 10);
        let answer = work::run(Job {
            kind: Kind::Json,
            body: document,
        })
        .unwrap();
        assert!(answer.body.len() <= 64 << 10 && answer.body.len() > 60 << 10);
        assert!(nested_json(100, work::MAX_ANSWER_BYTES).len() <= Kind::Json.max_body());
    }

    #[test]
    fn benign_jobs_succeed() {
        for kind in Kind::ALL {
            for variant in 0..2 {
                let output = work::run(benign(kind, variant)).unwrap();
                assert!(!output.body.is_empty(), "{kind:?}");
            }
        }
    }
}
