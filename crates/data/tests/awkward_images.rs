//! Awkward but valid image files (tests/fixtures/awkward, written by the `awkward_images`
//! example and, for the animated WebP, Pillow) come out of decoding and preprocessing as a
//! photo viewer shows them, pack with nothing skipped, and `inspect` and the loader agree.
//! Expected colours are what Pillow shows after `ImageOps.exif_transpose` and compositing
//! onto white, except the 16-bit grey, which Pillow's `convert("RGB")` clips to white.

use std::path::{Path, PathBuf};

use dissect_data::{
    DEFAULT_MAX_IMAGE_PIXELS, DataError, DatasetManifest, PackOptions, PreprocessConfig, TestSplit, decode,
    decode_and_preprocess, inspect, load_all, pack,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/awkward")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap()
}

/// Asserts the decoded pixel at (x, y), within `tol` per channel (JPEG is lossy).
fn assert_pixel(name: &str, x: u32, y: u32, want: [u8; 3], tol: u8) {
    let rgb = decode(&read(name), DEFAULT_MAX_IMAGE_PIXELS).unwrap_or_else(|e| panic!("{name}: {e}"));
    let got = rgb.get_pixel(x, y).0;
    let close = got.iter().zip(want).all(|(&g, w)| g.abs_diff(w) <= tol);
    assert!(close, "{name} at ({x}, {y}): got {got:?}, want {want:?} ± {tol}");
}

const WHITE: [u8; 3] = [255; 3];

#[test]
fn transparency_is_composited_onto_white() {
    for (name, inside) in
        [("rgba-line-art.png", [0, 0, 0]), ("grey-alpha.png", [64, 64, 64]), ("palette-transparent.png", [255, 0, 0])]
    {
        assert_pixel(name, 0, 0, WHITE, 0);
        assert_pixel(name, 15, 15, WHITE, 0);
        assert_pixel(name, 8, 8, inside, 0);
    }
    // 16-bit red at alpha 32896/65535 (128 of 255): red stays 255, green and blue become 127.
    assert_pixel("rgba16-half-red.png", 3, 3, [255, 127, 127], 0);
}

#[test]
fn sixteen_bit_channels_are_scaled_to_eight() {
    assert_pixel("rgb16.png", 5, 5, [255, 128, 0], 0);
    assert_pixel("grey16.png", 5, 5, [64, 64, 64], 0);
}

#[test]
fn cmyk_and_ycck_jpegs_are_converted() {
    assert_pixel("cmyk.jpg", 8, 8, [255, 0, 0], 8);
    assert_pixel("ycck.jpg", 8, 8, [255, 0, 0], 8);
}

#[test]
fn exif_orientation_is_applied() {
    // Stored 16 wide and 8 tall, left half black; orientation 6 shows it 8 wide and 16 tall
    // with the black half on top.
    let rgb = decode(&read("exif-rotated.jpg"), DEFAULT_MAX_IMAGE_PIXELS).unwrap();
    assert_eq!(rgb.dimensions(), (8, 16));
    assert_pixel("exif-rotated.jpg", 4, 2, [0, 0, 0], 12);
    assert_pixel("exif-rotated.jpg", 4, 13, WHITE, 12);
}

#[test]
fn animations_give_their_first_frame() {
    assert_pixel("animated-gif.gif", 8, 8, [255, 0, 0], 0);
    assert_pixel("animated-webp.webp", 8, 8, [0, 255, 0], 0);
}

#[test]
fn grey_tiny_wide_and_tall_images_decode() {
    assert_pixel("grey.png", 8, 8, [0, 0, 0], 0);
    assert_pixel("grey-jpeg.jpg", 0, 0, WHITE, 6);
    assert_pixel("one-pixel.png", 0, 0, [255, 0, 0], 0);
    assert_pixel("wide.png", 1999, 0, [0, 0, 255], 0);
    assert_pixel("tall.png", 0, 1999, [0, 255, 0], 0);
}

/// The 0–1 pixel value of channel `c` at (x, y) of a preprocessed CHW tensor.
fn unnormalised(t: &[f32], cfg: &PreprocessConfig, c: usize, x: usize, y: usize) -> f32 {
    let s = cfg.image_size as usize;
    t[c * s * s + y * s + x] * cfg.std[c] + cfg.mean[c]
}

#[test]
fn line_art_preprocesses_to_a_dark_shape_on_white() {
    let cfg = PreprocessConfig::new(8);
    let t = decode_and_preprocess(&read("rgba-line-art.png"), &cfg, 0).unwrap();
    for c in 0..3 {
        assert!(unnormalised(&t, &cfg, c, 0, 0) > 0.99, "corner of channel {c} is white");
        assert!(unnormalised(&t, &cfg, c, 4, 4) < 0.01, "centre of channel {c} is black");
    }
    // Every fixture, however small or thin, preprocesses to a full tensor.
    for name in ["one-pixel.png", "wide.png", "tall.png", "animated-webp.webp", "cmyk.jpg"] {
        assert_eq!(decode_and_preprocess(&read(name), &cfg, 0).unwrap().len(), cfg.image_len(), "{name}");
    }
}

fn fixture_count() -> usize {
    std::fs::read_dir(fixtures())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "txt"))
        .count()
}

#[test]
fn every_fixture_packs_inspects_and_loads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("awkward");
    let mut opts = PackOptions::new(fixtures(), &out);
    (opts.test_split, opts.image_size) = (TestSplit::Count(4), 16);
    let report = pack(&opts).unwrap();
    assert_eq!(report.skipped, 0, "{:?}", report.problems);
    let n = fixture_count();
    assert_eq!((report.manifest.train_size + report.manifest.test_size) as usize, n);

    let manifest = DatasetManifest::load(&out).unwrap();
    let cfg = PreprocessConfig::new(16);
    for set in [manifest.train_set(&out).unwrap(), manifest.test_set(&out).unwrap()] {
        let inspected = inspect(&set, &cfg).unwrap();
        let (loaded, stats) = load_all(&set, &cfg, 2).unwrap();
        assert_eq!(inspected.corrupt_images, 0);
        assert_eq!((stats.skipped(), loaded.len() as u64), (0, inspected.samples));
    }
}

#[test]
fn an_oversized_image_is_refused_from_its_header_with_its_size() {
    // 9,500 × 9,500 = 90.25 M pixels, just above the default limit: written row by row, so
    // neither the test nor the decoder ever holds the picture.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.png");
    {
        let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut encoder = png::Encoder::new(file, 9_500, 9_500);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_compression(png::Compression::Fastest);
        let mut writer = encoder.write_header().unwrap().into_stream_writer().unwrap();
        let row = vec![255u8; 9_500];
        for _ in 0..9_500 {
            std::io::Write::write_all(&mut writer, &row).unwrap();
        }
        writer.finish().unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    let err = decode(&bytes, DEFAULT_MAX_IMAGE_PIXELS).unwrap_err();
    assert!(matches!(err, DataError::ImageTooLarge { width: 9_500, height: 9_500, limit: DEFAULT_MAX_IMAGE_PIXELS }));
    let message = err.to_string();
    assert!(message.contains("9500 x 9500") && message.contains("--max-image-pixels"), "{message}");
    // Raising the limit lets it through.
    assert_eq!(decode(&bytes, 100_000_000).unwrap().dimensions(), (9_500, 9_500));
}

#[test]
fn pack_names_an_image_above_the_limit_and_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for name in ["one-pixel", "rgb16", "wide"] {
        std::fs::copy(fixtures().join(format!("{name}.png")), input.join(format!("{name}.png"))).unwrap();
        std::fs::write(input.join(format!("{name}.txt")), name).unwrap();
    }
    let mut opts = PackOptions::new(&input, dir.path().join("out"));
    (opts.test_split, opts.max_image_pixels) = (TestSplit::Count(1), 1_000);
    let report = pack(&opts).unwrap();
    assert_eq!(report.skipped, 1);
    let problem = &report.problems[0];
    assert!(
        problem.contains("wide.png") && problem.contains("2000 x 1") && problem.contains("1000 pixels"),
        "{problem}"
    );
    assert!(problem.contains("--max-image-pixels"), "{problem}");
}
