//! Writes the awkward-but-valid image fixtures of `tests/fixtures/awkward/`: every colour mode
//! the `image` crate decodes, with and without transparency, 16-bit channels, a palette with a
//! transparent entry, CMYK and YCCK JPEGs, a JPEG with an EXIF orientation, an animated GIF,
//! a 1×1 image and very wide and tall ones, each with a sidecar caption, so that the folder
//! packs as it is (`animated-webp.webp` comes from Pillow: see the folder's README).
//!
//! `cargo run -p dissect-data --example awkward_images -- crates/data/tests/fixtures/awkward`

use std::path::Path;

use image::{DynamicImage, ImageBuffer, Luma, LumaA, Rgb, Rgba};

type Fixture = (&'static str, Vec<u8>, &'static str);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(out) = std::env::args().nth(1) else {
        return Err("usage: awkward_images <output folder>".into());
    };
    let out = Path::new(&out);
    std::fs::create_dir_all(out)?;
    let fixtures: Vec<Fixture> = [png_fixtures()?, jpeg_fixtures()?, vec![animated_gif()?]].concat();
    for (name, bytes, caption) in fixtures {
        std::fs::write(out.join(name), bytes)?;
        std::fs::write(out.join(name).with_extension("txt"), caption)?;
    }
    Ok(())
}

/// 16×16 pictures: a centred 8×8 square of `inside` on `outside` (the square spans 4..12).
fn square<P: image::Pixel>(outside: P, inside: P) -> ImageBuffer<P, Vec<P::Subpixel>> {
    ImageBuffer::from_fn(16, 16, |x, y| if (4..12).contains(&x) && (4..12).contains(&y) { inside } else { outside })
}

fn encode(img: DynamicImage, format: image::ImageFormat) -> Result<Vec<u8>, image::ImageError> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, format)?;
    Ok(buf.into_inner())
}

fn png_fixtures() -> Result<Vec<Fixture>, Box<dyn std::error::Error>> {
    use image::ImageFormat::Png;
    let clear = Rgba([0u8, 0, 0, 0]);
    Ok(vec![
        (
            "rgba-line-art.png",
            encode(square(clear, Rgba([0, 0, 0, 255])).into(), Png)?,
            "a black square drawn on a transparent background",
        ),
        (
            "grey-alpha.png",
            encode(square(LumaA([0u8, 0]), LumaA([64, 255])).into(), Png)?,
            "a dark grey square on a transparent background",
        ),
        (
            "rgba16-half-red.png",
            encode(ImageBuffer::from_pixel(16, 16, Rgba([65535u16, 0, 0, 32896])).into(), Png)?,
            "a half transparent red picture",
        ),
        (
            "rgb16.png",
            encode(ImageBuffer::from_pixel(16, 16, Rgb([65535u16, 32896, 0])).into(), Png)?,
            "an orange picture with sixteen bits a channel",
        ),
        (
            "grey16.png",
            encode(ImageBuffer::from_pixel(16, 16, Luma([16448u16])).into(), Png)?,
            "a dark grey picture with sixteen bits",
        ),
        ("grey.png", encode(square(Luma([255u8]), Luma([0])).into(), Png)?, "a black square on white, in grey"),
        ("one-pixel.png", encode(ImageBuffer::from_pixel(1, 1, Rgb([255u8, 0, 0])).into(), Png)?, "one red pixel"),
        (
            "wide.png",
            encode(ImageBuffer::from_pixel(2000, 1, Rgb([0u8, 0, 255])).into(), Png)?,
            "a very wide blue line",
        ),
        (
            "tall.png",
            encode(ImageBuffer::from_pixel(1, 2000, Rgb([0u8, 255, 0])).into(), Png)?,
            "a very tall green line",
        ),
        ("palette-transparent.png", palette_png()?, "a red square on a transparent palette background"),
    ])
}

/// An indexed PNG whose entry 0 is fully transparent (tRNS): a red square on nothing.
fn palette_png() -> Result<Vec<u8>, png::EncodingError> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, 16, 16);
    encoder.set_color(png::ColorType::Indexed);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_palette(vec![0, 0, 0, 255, 0, 0]);
    encoder.set_trns(vec![0, 255]);
    let indices: Vec<u8> = square(Luma([0u8]), Luma([1])).into_raw();
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&indices)?;
    writer.finish()?;
    Ok(bytes)
}

fn jpeg_fixtures() -> Result<Vec<Fixture>, Box<dyn std::error::Error>> {
    use jpeg_encoder::ColorType;
    // Red in CMYK ink amounts (0 = no ink): no cyan, full magenta and yellow, no black.
    let red_cmyk: Vec<u8> = [0u8, 255, 255, 0].repeat(16 * 16);
    // 16×8: the left half black, the right half white; EXIF orientation 6 shows it turned a
    // quarter clockwise, 8 wide and 16 tall with the black half on top.
    let halves: Vec<u8> = (0..16 * 8).flat_map(|i| if i % 16 < 8 { [0u8; 3] } else { [255; 3] }).collect();
    let grey = square(Luma([255u8]), Luma([0])).into_raw();
    Ok(vec![
        ("cmyk.jpg", jpeg(&red_cmyk, 16, 16, ColorType::Cmyk, None)?, "a red picture stored in CMYK"),
        ("ycck.jpg", jpeg(&red_cmyk, 16, 16, ColorType::CmykAsYcck, None)?, "a red picture stored in YCCK"),
        (
            "exif-rotated.jpg",
            jpeg(&halves, 16, 8, ColorType::Rgb, Some(exif_orientation(6)))?,
            "a picture whose top half is black and bottom half white once turned upright",
        ),
        ("grey-jpeg.jpg", jpeg(&grey, 16, 16, ColorType::Luma, None)?, "a black square on white in a grey JPEG"),
    ])
}

fn jpeg(
    pixels: &[u8],
    width: u16,
    height: u16,
    color: jpeg_encoder::ColorType,
    exif: Option<Vec<u8>>,
) -> Result<Vec<u8>, jpeg_encoder::EncodingError> {
    let mut bytes = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut bytes, 95);
    if let Some(exif) = exif {
        encoder.add_app_segment(1, exif)?;
    }
    encoder.encode(pixels, width, height, color)?;
    Ok(bytes)
}

/// An EXIF APP1 payload holding only the orientation tag (0x0112, one SHORT), big-endian.
fn exif_orientation(orientation: u16) -> Vec<u8> {
    let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08".to_vec(); // TIFF header, first IFD at offset 8
    exif.extend_from_slice(&1u16.to_be_bytes()); // one entry
    exif.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1]); // tag, type SHORT, count 1
    exif.extend_from_slice(&orientation.to_be_bytes());
    exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // value padding, no next IFD
    exif
}

/// Two frames, red then blue: a viewer's still shows the first.
fn animated_gif() -> Result<Fixture, image::ImageError> {
    let mut bytes = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut bytes);
        encoder.set_repeat(image::codecs::gif::Repeat::Infinite)?;
        for colour in [[255u8, 0, 0, 255], [0, 0, 255, 255]] {
            let frame = image::Frame::new(ImageBuffer::from_pixel(16, 16, Rgba(colour)));
            encoder.encode_frame(frame)?;
        }
    }
    Ok(("animated-gif.gif", bytes, "an animation whose first frame is red"))
}
