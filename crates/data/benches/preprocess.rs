//! Decoded-and-preprocessed images/s per core (256×256 JPEG → 224×224 normalised CHW f32),
//! next to the plain JPEG decode rate of the same files. Single-threaded, so the rates are
//! per core.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dissect_data::{DEFAULT_MAX_IMAGE_PIXELS, PreprocessConfig, RandomResizedCrop, decode, decode_and_preprocess};
use image::{ImageEncoder, RgbImage};
use std::hint::black_box;

const N: usize = 32;

/// Photo-like content (gradients, blobs, noise) so the JPEGs have realistic entropy.
fn jpegs() -> Vec<Vec<u8>> {
    (0..N)
        .map(|k| {
            let mut s = k as u32 * 2_654_435_761 + 1;
            let img = RgbImage::from_fn(256, 256, |x, y| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let n = (s & 31) as i32 - 16;
                let blob = if ((x as i32 - 128).pow(2) + (y as i32 - 100 - k as i32).pow(2)) < 3600 { 80 } else { 0 };
                let c = |v: i32| v.clamp(0, 255) as u8;
                image::Rgb([c(x as i32 + n + blob), c(y as i32 + n), c(((x + y) / 2) as i32 - n + blob)])
            });
            let mut buf = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 90)
                .write_image(img.as_raw(), 256, 256, image::ExtendedColorType::Rgb8)
                .expect("encode");
            buf
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let files = jpegs();
    let mut g = c.benchmark_group("jpeg256");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("decode_only", |b| {
        b.iter(|| {
            for f in &files {
                black_box(decode(f, DEFAULT_MAX_IMAGE_PIXELS).expect("decode"));
            }
        })
    });
    let centre = PreprocessConfig::new(224);
    g.bench_function("decode_resize_crop_normalise_224", |b| {
        b.iter(|| {
            for (i, f) in files.iter().enumerate() {
                black_box(decode_and_preprocess(f, &centre, i as u64).expect("preprocess"));
            }
        })
    });
    let mut rrc = PreprocessConfig::new(224);
    rrc.random_resized_crop = Some(RandomResizedCrop::default());
    g.bench_function("decode_random_resized_crop_224", |b| {
        b.iter(|| {
            for (i, f) in files.iter().enumerate() {
                black_box(decode_and_preprocess(f, &rrc, i as u64).expect("preprocess"));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
