//! `POST /thumbnail`: decode a PNG or JPEG with `image`, shrink it to fit a square of
//! [`THUMBNAIL_SIDE`] pixels, answer a PNG.
//!
//! Shrinking is done the way careful thumbnailers do it (Pillow's `reducing_gap`, libvips'
//! shrink-then-reduce): first an integer box reduction to at most twice the final size, then
//! `image`'s Lanczos3 resize of that small intermediate. The box reduction is written here, row
//! by row with a cancellation point per row; the resize it leaves to `image` is small.

use image::codecs::png::PngEncoder;
use image::imageops::FilterType;
use image::{ImageEncoder, ImageReader, Limits, RgbaImage};

use super::io::CheckpointReader;
use super::{Output, WorkError};

/// The largest width or height accepted (`image`'s strict dimension limits).
pub const MAX_SIDE: u32 = 4096;
/// The most the decoder may allocate (`image`'s `max_alloc`): a 4096×4096 RGBA image with 8
/// bits per channel (64 MiB) fits, one with 16 bits does not.
pub const MAX_DECODER_ALLOC: u64 = 80 << 20;
/// Thumbnails fit in a square of this side.
pub const THUMBNAIL_SIDE: u32 = 128;
/// Bytes of compressed input the decoder gets per refill (a cancellation point each).
const READ_CHUNK: usize = 128;

pub(super) fn run(body: Vec<u8>) -> Result<Output, WorkError> {
    let image = decode(body)?;
    inger::checkpoint();
    let thumbnail = shrink(&image);
    drop(image);
    inger::checkpoint();
    let mut png = Vec::new();
    PngEncoder::new(&mut png)
        .write_image(
            thumbnail.as_raw(),
            thumbnail.width(),
            thumbnail.height(),
            image::ExtendedColorType::Rgba8,
        )
        .map_err(|error| WorkError::Invalid(format!("encoding the thumbnail: {error}")))?;
    Ok(Output {
        content_type: super::content_type(super::Kind::Thumbnail),
        body: png,
    })
}

/// Decodes `body` (PNG or JPEG, by its magic bytes) within the limits, to RGBA with 8 bits per
/// channel; a cancellation point every few hundred bytes of input.
pub(super) fn decode(body: Vec<u8>) -> Result<RgbaImage, WorkError> {
    let mut reader = ImageReader::new(CheckpointReader::new(body, READ_CHUNK))
        .with_guessed_format()
        .map_err(|error| WorkError::Invalid(error.to_string()))?;
    match reader.format() {
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg) => {}
        _ => return Err(WorkError::Invalid("not a PNG or JPEG image".into())),
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODER_ALLOC);
    reader.limits(limits);
    let image = reader.decode().map_err(|error| match error {
        image::ImageError::Limits(limit) => WorkError::Limit(limit.to_string()),
        other => WorkError::Invalid(other.to_string()),
    })?;
    Ok(image.into_rgba8())
}

/// The thumbnail's size: `image` scaled to fit the square, aspect kept, never enlarged.
fn target_size(width: u32, height: u32) -> (u32, u32) {
    if width <= THUMBNAIL_SIDE && height <= THUMBNAIL_SIDE {
        return (width, height);
    }
    let scale = f64::from(THUMBNAIL_SIDE) / f64::from(width.max(height));
    let fit = |side: u32| ((f64::from(side) * scale).round() as u32).clamp(1, THUMBNAIL_SIDE);
    (fit(width), fit(height))
}

fn shrink(image: &RgbaImage) -> RgbaImage {
    let (width, height) = image.dimensions();
    let (target_width, target_height) = target_size(width, height);
    if (target_width, target_height) == (width, height) {
        return image.clone();
    }
    let factor = (width / (2 * target_width))
        .min(height / (2 * target_height))
        .max(1);
    let reduced = if factor > 1 {
        box_reduce(image, factor)
    } else {
        image.clone()
    };
    image::imageops::resize(&reduced, target_width, target_height, FilterType::Lanczos3)
}

/// Averages each `factor`×`factor` box of pixels into one (boxes at the right and bottom edges
/// may be smaller); a cancellation point per output row.
fn box_reduce(image: &RgbaImage, factor: u32) -> RgbaImage {
    let (width, height) = image.dimensions();
    let out_width = width.div_ceil(factor);
    let out_height = height.div_ceil(factor);
    let mut out = RgbaImage::new(out_width, out_height);
    let mut sums = vec![0u32; out_width as usize * 4];
    let source = image.as_raw();
    let row_bytes = width as usize * 4;
    for out_y in 0..out_height {
        inger::checkpoint();
        sums.fill(0);
        let first = out_y * factor;
        let last = (first + factor).min(height);
        for y in first..last {
            let row = &source[y as usize * row_bytes..][..row_bytes];
            for (x, pixel) in row.chunks_exact(4).enumerate() {
                let sum = &mut sums[x / factor as usize * 4..][..4];
                for (total, &channel) in sum.iter_mut().zip(pixel) {
                    *total += u32::from(channel);
                }
            }
        }
        let rows = last - first;
        for out_x in 0..out_width {
            let columns = (width - out_x * factor).min(factor);
            let count = rows * columns;
            let sum = &sums[out_x as usize * 4..][..4];
            let pixel = out.get_pixel_mut(out_x, out_y);
            for (channel, &total) in pixel.0.iter_mut().zip(sum) {
                *channel = ((total + count / 2) / count) as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_fit_the_square_and_keep_the_aspect() {
        assert_eq!(target_size(100, 50), (100, 50));
        assert_eq!(target_size(1024, 512), (128, 64));
        assert_eq!(target_size(300, 4096), (9, 128));
        assert_eq!(target_size(4096, 1), (128, 1));
    }

    #[test]
    fn box_reduction_averages_each_box_including_partial_edges() {
        let mut image = RgbaImage::new(3, 3);
        for (x, y, pixel) in image.enumerate_pixels_mut() {
            *pixel = image::Rgba([(10 * (x + 3 * y)) as u8, 0, 255, 255]);
        }
        let reduced = box_reduce(&image, 2);
        assert_eq!(reduced.dimensions(), (2, 2));
        // (0 + 10 + 30 + 40) / 4, (20 + 50) / 2, (60 + 70) / 2, 80.
        let red: Vec<u8> = reduced.pixels().map(|p| p.0[0]).collect();
        assert_eq!(red, [20, 35, 65, 80]);
        assert!(reduced.pixels().all(|p| p.0[1..] == [0, 255, 255]));
    }
}
