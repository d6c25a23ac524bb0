//! Encoded bytes → the RGB picture a person sees.
//!
//! Every path that turns image bytes into pixels — packing's check, `inspect`, the training
//! loader, scoring and evaluation — goes through [`decode`], so they all see, and skip, the same
//! images. What a photo viewer shows is what comes out:
//!
//! - **Transparency** (RGBA, grey + alpha, a palette with a transparent entry) is composited
//!   onto white, as Hugging Face's CLIP image processor (`convert_to_rgb`) and img2dataset do:
//!   black line art on a transparent background stays a dark drawing on white, where dropping
//!   the alpha channel would leave a black square.
//! - **EXIF orientation** is applied. open_clip's `Image.open(...).convert("RGB")` ignores it
//!   and img2dataset's OpenCV decode (`IMREAD_UNCHANGED`) does too, so a portrait photo taken
//!   with the camera turned trains on its side there; every photo viewer rotates it, and so do we.
//! - **16-bit channels** are scaled to 8 bits (65535 → 255), **CMYK and YCCK JPEGs** are
//!   converted to RGB by the JPEG decoder, greyscale is repeated over the three channels, and an
//!   **animated GIF or WebP** gives its first frame.
//! - **Oversized images** are refused from their header, before a pixel is decoded, when
//!   width × height exceeds the pixel limit ([`DEFAULT_MAX_IMAGE_PIXELS`], PIL's default), so
//!   a decoder holds at most [`DECODE_BYTES_PER_PIXEL`] bytes per allowed pixel.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage, metadata::Orientation};

use crate::error::{DataError, Result};

/// Largest image decoded by default, in pixels (width × height): PIL's `Image.MAX_IMAGE_PIXELS`
/// (a 9,459 × 9,459 square, about 256 MiB as 8-bit RGB). Larger images are skipped with an
/// error naming their size; `max_image_pixels` (flag `--max-image-pixels`) changes the limit.
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 89_478_485;

/// Bytes a decoder may allocate per allowed pixel: a 16-bit RGBA output buffer (8 bytes) plus a
/// progressive JPEG's coefficient planes. A loader thread therefore holds at most this times
/// the pixel limit while decoding one image (about 1 GiB at the default limit).
pub const DECODE_BYTES_PER_PIXEL: u64 = 12;

/// Decodes `bytes` (format guessed from their content) into the 8-bit RGB picture a person
/// sees (see the module docs). Images above `max_pixels` pixels are refused with
/// [`DataError::ImageTooLarge`] before their pixels are decoded.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<RgbImage> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DataError::Image(image::ImageError::IoError(e)))?;
    let mut limits = Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(DECODE_BYTES_PER_PIXEL).max(1 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder()?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(DataError::ImageTooLarge { width, height, limit: max_pixels });
    }
    // A damaged EXIF block is no reason to lose the picture: it is shown unrotated.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut picture = DynamicImage::from_decoder(decoder)?;
    picture.apply_orientation(orientation);
    Ok(onto_white(picture))
}

/// Drops the alpha channel by compositing onto white (`c·a + 255·(1 − a)`, rounded), or
/// converts an opaque image to 8-bit RGB as it is.
fn onto_white(picture: DynamicImage) -> RgbImage {
    if !picture.color().has_alpha() {
        return picture.into_rgb8();
    }
    let rgba = picture.into_rgba8();
    let (width, height) = rgba.dimensions();
    let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
    for px in rgba.as_raw().chunks_exact(4) {
        let alpha = u32::from(px[3]);
        for &c in &px[..3] {
            let blended = (u32::from(c) * alpha + 255 * (255 - alpha) + 127) / 255;
            rgb.push(blended as u8);
        }
    }
    // Exactly width × height × 3 values were pushed, so the buffer always fits.
    RgbImage::from_raw(width, height, rgb).unwrap_or_else(|| RgbImage::new(width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(img: DynamicImage) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        img.write_to(&mut buf, image::ImageFormat::Png).unwrap();
        buf.into_inner()
    }

    #[test]
    fn half_transparent_red_is_pink_on_white() {
        // (255, 0, 0) at alpha 128: 255·128/255 + 127 = 255 for red, 0 + 127 for green and blue.
        let img = image::RgbaImage::from_pixel(2, 2, image::Rgba([255, 0, 0, 128]));
        let rgb = decode(&png(DynamicImage::ImageRgba8(img)), DEFAULT_MAX_IMAGE_PIXELS).unwrap();
        assert_eq!(rgb.get_pixel(1, 1).0, [255, 127, 127]);
    }

    #[test]
    fn the_pixel_limit_is_checked_from_the_header() {
        let bytes = png(DynamicImage::ImageRgb8(RgbImage::new(30, 20)));
        assert!(decode(&bytes, 600).is_ok());
        match decode(&bytes, 599) {
            Err(DataError::ImageTooLarge { width: 30, height: 20, limit: 599 }) => {}
            other => panic!("expected ImageTooLarge, got {other:?}"),
        }
    }
}
