//! Built-in benchmarks: generate train shards (with injected noise) and a clean test split.

use std::path::{Path, PathBuf};

use image::{ExtendedColorType, ImageEncoder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::lines::map_in_chunks;
use crate::manifest::{DatasetManifest, HeadlineMetric};
use crate::noise::inject_noise;
use crate::shard::{SampleMeta, SampleOut, ShardWriter};
use crate::{fmnist, shapes};

/// A built-in benchmark that `generate` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Benchmark {
    /// Coloured shapes with compositional captions, generated from a seed (no download).
    NoisyShapes,
    /// Fashion-MNIST images from Debian's `dataset-fashion-mnist` with class captions.
    FashionMnist,
}

impl Benchmark {
    /// Every benchmark, in the order the CLI lists them.
    pub const ALL: [Benchmark; 2] = [Benchmark::NoisyShapes, Benchmark::FashionMnist];

    /// The benchmark's name on the command line and in `dataset.json`.
    pub fn name(self) -> &'static str {
        match self {
            Benchmark::NoisyShapes => "noisy-shapes",
            Benchmark::FashionMnist => "fashion-mnist",
        }
    }
}

impl std::fmt::Display for Benchmark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Benchmark {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        Benchmark::ALL.into_iter().find(|b| b.name() == s.trim()).ok_or_else(|| {
            let names: Vec<&str> = Benchmark::ALL.iter().map(|b| b.name()).collect();
            DataError::Invalid(format!("unknown benchmark '{s}' (expected one of: {})", names.join(", ")))
        })
    }
}

/// How generated images are stored in the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageFormat {
    /// Lossless PNG (the default: the pictures are exactly what the generator drew).
    #[default]
    Png,
    /// Baseline JPEG at quality 90, as web-scale datasets store their images: smaller shards and
    /// the decoder real data needs, e.g. to measure the loader.
    Jpeg,
}

impl ImageFormat {
    /// The file extension of the image members (`png` or `jpg`).
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpg",
        }
    }
}

impl std::str::FromStr for ImageFormat {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "png" => Ok(ImageFormat::Png),
            "jpeg" | "jpg" => Ok(ImageFormat::Jpeg),
            other => Err(DataError::Invalid(format!("unknown image format '{other}' (expected png or jpeg)"))),
        }
    }
}

/// The JPEG quality of generated images: high enough that the shapes keep their colours.
const JPEG_QUALITY: u8 = 90;

/// Defaults: noisy-shapes 20 000 train / 1 000 test at 32×32; Fashion-MNIST all 60 000 / 10 000
/// at 28×28 (native size).
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Which benchmark to write.
    pub benchmark: Benchmark,
    /// Output directory (created if missing).
    pub out: PathBuf,
    /// Fraction of train captions swapped by noise injection, 0–1.
    pub noise_rate: f64,
    /// Seed of the images, captions and noise.
    pub seed: u64,
    /// Train samples; `None` = the benchmark's default (Fashion-MNIST: capped at the split size).
    pub train_size: Option<usize>,
    /// Test samples; `None` = the benchmark's default (Fashion-MNIST: capped at the split size).
    pub test_size: Option<usize>,
    /// Image side length in pixels; `None` = the benchmark's default. noisy-shapes draws at
    /// this size (8–1024); Fashion-MNIST images stay 28×28 and only the manifest records it.
    pub image_size: Option<u32>,
    /// Maximum samples per shard (> 0).
    pub shard_size: u64,
    /// How the images are encoded. Fashion-MNIST's stay PNG (grey, 28×28).
    pub image_format: ImageFormat,
}

impl GenerateOptions {
    /// Options for `benchmark` into `out`: noise rate 0.2, seed 0, default sizes, 5000 samples
    /// per shard.
    pub fn new(benchmark: Benchmark, out: impl Into<PathBuf>) -> Self {
        Self {
            benchmark,
            out: out.into(),
            noise_rate: 0.2,
            seed: 0,
            train_size: None,
            test_size: None,
            image_size: None,
            shard_size: 5000,
            image_format: ImageFormat::Png,
        }
    }
}

/// One generated pair; its image is encoded in the options' `image_format` (fashion-mnist refuses
/// any but PNG).
struct Item {
    image: Vec<u8>,
    caption: String,
    meta: SampleMeta,
}

fn encode_png(raw: &[u8], w: u32, h: u32, color: ExtendedColorType) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    image::codecs::png::PngEncoder::new_with_quality(
        &mut buf,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::Adaptive,
    )
    .write_image(raw, w, h, color)?;
    Ok(buf)
}

fn encode_rgb(raw: &[u8], side: u32, format: ImageFormat) -> Result<Vec<u8>> {
    match format {
        ImageFormat::Png => encode_png(raw, side, side, ExtendedColorType::Rgb8),
        ImageFormat::Jpeg => {
            let mut buf = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, JPEG_QUALITY).write_image(
                raw,
                side,
                side,
                ExtendedColorType::Rgb8,
            )?;
            Ok(buf)
        }
    }
}

/// Scenes drawn (in the seed's order) before their encoding is spread over the cores: bounds the
/// raw pixels held at once (1024 × 224² × 3 bytes ≈ 150 MB at 224 px).
const SCENES_PER_CHUNK: usize = 1024;

fn shapes_items(n: usize, image_size: u32, format: ImageFormat, seed: u64) -> Result<Vec<Item>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let mut items = Vec::with_capacity(n);
    let mut left = n;
    while left > 0 {
        let scenes: Vec<shapes::Scene> =
            (0..left.min(SCENES_PER_CHUNK)).map(|_| shapes::generate_scene(&mut rng, image_size)).collect();
        left -= scenes.len();
        for item in map_in_chunks(&scenes, threads, |s| shape_item(s, image_size, format))? {
            items.push(item?);
        }
    }
    Ok(items)
}

fn shape_item(scene: &shapes::Scene, image_size: u32, format: ImageFormat) -> Result<Item> {
    let mut meta = SampleMeta { class: Some(scene.class()), ..Default::default() };
    let objs = serde_json::to_value(&scene.objects).map_err(|e| DataError::json("objects", e))?;
    meta.extra.insert("objects".into(), objs);
    Ok(Item { image: encode_rgb(scene.image.as_raw(), image_size, format)?, caption: scene.caption.clone(), meta })
}

fn fmnist_items(split: &fmnist::IdxSplit, n: usize, seed: u64) -> Result<Vec<Item>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n.min(split.len()))
        .map(|i| {
            let label = split.labels[i] as usize;
            let words = fmnist::CLASS_WORDS[label];
            let word = words[rng.random_range(0..words.len())];
            let np = format!("{} {word}", if word.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" });
            let t = fmnist::CAPTION_TEMPLATES[rng.random_range(0..fmnist::CAPTION_TEMPLATES.len())];
            Ok(Item {
                image: encode_png(split.image(i), split.cols as u32, split.rows as u32, ExtendedColorType::L8)?,
                caption: t.replace("{}", &np),
                meta: SampleMeta { class: Some(label as u32), ..Default::default() },
            })
        })
        .collect()
}

fn write_split(dir: &Path, name: &str, items: &[Item], format: ImageFormat, shard_size: u64) -> Result<String> {
    let mut w = ShardWriter::new(dir, name, shard_size)?;
    for it in items {
        w.write(&SampleOut {
            image_ext: format.extension(),
            image: &it.image,
            caption: &it.caption,
            meta: Some(&it.meta),
        })?;
    }
    Ok(w.finish()?.0)
}

/// Generates a benchmark into `opts.out` and writes its `dataset.json`.
pub fn generate(opts: &GenerateOptions) -> Result<DatasetManifest> {
    if opts.shard_size == 0 {
        return Err(DataError::Invalid("shard size must be > 0".into()));
    }
    // Distinct streams for train/test/noise so changing one size never changes the others.
    let seed_of = |k: u64| opts.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(k);
    let (mut train, test, image_size, class_names, templates, headline) = match opts.benchmark {
        Benchmark::NoisyShapes => {
            let size = opts.image_size.unwrap_or(32);
            if !(8..=1024).contains(&size) {
                return Err(DataError::Invalid(format!("image size {size} not in 8..=1024")));
            }
            (
                shapes_items(opts.train_size.unwrap_or(20_000), size, opts.image_format, seed_of(1))?,
                shapes_items(opts.test_size.unwrap_or(1_000), size, opts.image_format, seed_of(2))?,
                size,
                shapes::SHAPES.to_vec(),
                shapes::ZERO_SHOT_TEMPLATES.to_vec(),
                HeadlineMetric::MeanR1,
            )
        }
        Benchmark::FashionMnist => {
            if opts.image_format != ImageFormat::Png {
                return Err(DataError::Invalid("fashion-mnist images are stored as PNG only".into()));
            }
            let tr = fmnist::load_split(true)?;
            let te = fmnist::load_split(false)?;
            (
                fmnist_items(&tr, opts.train_size.unwrap_or(tr.len()), seed_of(1))?,
                fmnist_items(&te, opts.test_size.unwrap_or(te.len()), seed_of(2))?,
                opts.image_size.unwrap_or(28),
                fmnist::CLASS_NAMES.to_vec(),
                fmnist::ZERO_SHOT_TEMPLATES.to_vec(),
                // Its captions are class names in templates: retrieval among them is ambiguous.
                HeadlineMetric::ZeroShotTop1,
            )
        }
    };
    if train.is_empty() || test.is_empty() {
        return Err(DataError::Invalid("train and test sizes must be > 0".into()));
    }
    let mut captions: Vec<String> = train.iter().map(|i| i.caption.clone()).collect();
    let report = inject_noise(&mut captions, opts.noise_rate, seed_of(3))?;
    let noisy: std::collections::HashSet<usize> = report.noisy.iter().copied().collect();
    for (i, (item, cap)) in train.iter_mut().zip(captions).enumerate() {
        let is_noisy = noisy.contains(&i);
        item.meta.noisy = Some(is_noisy);
        if is_noisy {
            item.meta.original_caption = Some(std::mem::replace(&mut item.caption, cap));
        }
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| DataError::io(&opts.out, e))?;
    let manifest = DatasetManifest {
        name: opts.benchmark.name().to_string(),
        train: write_split(&opts.out, "train", &train, opts.image_format, opts.shard_size)?,
        test: write_split(&opts.out, "test", &test, opts.image_format, opts.shard_size)?,
        train_size: train.len() as u64,
        test_size: test.len() as u64,
        image_size,
        class_names: class_names.iter().map(|s| s.to_string()).collect(),
        templates: templates.iter().map(|s| s.to_string()).collect(),
        noise_rate: opts.noise_rate,
        noisy_count: report.noisy.len() as u64,
        seed: opts.seed,
        headline,
    };
    manifest.save(&opts.out)?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::ShardReader;

    fn read_all(set: &crate::shard::ShardSet) -> Vec<crate::shard::RawSample> {
        let mut v = Vec::new();
        for s in &set.shards {
            ShardReader::open(&s.path).unwrap().for_each(|r| v.push(r));
        }
        v
    }

    #[test]
    fn noisy_shapes_generate_is_deterministic_with_exact_noise() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        let mut o = GenerateOptions::new(Benchmark::NoisyShapes, d1.path());
        o.train_size = Some(500);
        o.test_size = Some(50);
        o.shard_size = 200;
        o.noise_rate = 0.3;
        o.seed = 5;
        let m = generate(&o).unwrap();
        assert_eq!(m.noisy_count, 150);
        assert_eq!(m.train, "train-{000000..000002}.tar");
        let back = DatasetManifest::load(d1.path()).unwrap();
        assert_eq!(back, m);
        assert_eq!(m.prompts()[0][2], "a picture of a circle");
        assert_eq!(m.headline, HeadlineMetric::MeanR1);
        // A dataset.json written before the field existed reads as mean R@1.
        let mut old: serde_json::Value = serde_json::to_value(&m).unwrap();
        old.as_object_mut().unwrap().remove("headline");
        assert_eq!(serde_json::from_value::<DatasetManifest>(old).unwrap().headline, HeadlineMetric::MeanR1);
        o.out = d2.path().to_path_buf();
        generate(&o).unwrap();
        for f in ["train-000000.tar", "train-000002.tar", "test-000000.tar", "train.index.json"] {
            assert_eq!(std::fs::read(d1.path().join(f)).unwrap(), std::fs::read(d2.path().join(f)).unwrap(), "{f}");
        }
        let train = read_all(&m.train_set(d1.path()).unwrap());
        let flagged: Vec<_> = train.iter().filter(|s| s.meta.as_ref().unwrap().noisy == Some(true)).collect();
        assert_eq!(flagged.len(), 150);
        for s in flagged {
            let meta = s.meta.as_ref().unwrap();
            assert_ne!(meta.original_caption.as_deref(), s.caption.as_deref());
        }
        let test = read_all(&m.test_set(d1.path()).unwrap());
        assert_eq!(test.len(), 50);
        assert!(test.iter().all(|s| s.meta.as_ref().unwrap().noisy.is_none()));
    }

    #[test]
    fn jpeg_images_are_the_png_scenes_within_jpeg_loss() {
        let (png_dir, jpeg_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut o = GenerateOptions::new(Benchmark::NoisyShapes, png_dir.path());
        (o.train_size, o.test_size, o.image_size) = (Some(40), Some(10), Some(48));
        let png = generate(&o).unwrap();
        o.out = jpeg_dir.path().to_path_buf();
        o.image_format = "jpeg".parse().unwrap();
        let jpeg = generate(&o).unwrap();
        // The format changes the bytes only: the same scenes, captions, noise and manifest.
        assert_eq!(jpeg.noisy_count, png.noisy_count);
        let (a, b) =
            (read_all(&png.train_set(png_dir.path()).unwrap()), read_all(&jpeg.train_set(o.out.as_path()).unwrap()));
        assert_eq!(a.len(), b.len());
        for (p, j) in a.iter().zip(&b) {
            assert_eq!((p.caption.as_deref(), &p.meta), (j.caption.as_deref(), &j.meta));
            let (p, j) = (p.image.as_ref().unwrap(), j.image.as_ref().unwrap());
            assert_eq!((p.0.as_str(), j.0.as_str()), ("png", "jpg"));
            let (p, j) = (crate::decode(&p.1, 1 << 20).unwrap(), crate::decode(&j.1, 1 << 20).unwrap());
            assert_eq!(p.dimensions(), j.dimensions());
            let diff: f64 = p.as_raw().iter().zip(j.as_raw()).map(|(x, y)| f64::from(x.abs_diff(*y))).sum();
            // Quality 90 on a noisy background: a few levels of 255 on average, not a different picture.
            assert!(diff / (p.as_raw().len() as f64) < 6.0, "mean |png - jpeg| = {}", diff / p.as_raw().len() as f64);
        }
        let err = "gif".parse::<ImageFormat>().unwrap_err().to_string();
        assert!(err.contains("png or jpeg"), "{err}");
        o.benchmark = Benchmark::FashionMnist;
        assert!(generate(&o).unwrap_err().to_string().contains("PNG only"));
    }

    #[test]
    fn fashion_mnist_generate_if_installed() {
        let d = tempfile::tempdir().unwrap();
        let mut o = GenerateOptions::new(Benchmark::FashionMnist, d.path());
        o.train_size = Some(300);
        o.test_size = Some(100);
        match generate(&o) {
            Ok(m) => {
                assert_eq!((m.train_size, m.test_size, m.noisy_count), (300, 100, 60));
                assert_eq!(m.class_names.len(), 10);
                assert_eq!(m.headline, HeadlineMetric::ZeroShotTop1);
                let t = read_all(&m.test_set(d.path()).unwrap());
                let img = image::load_from_memory(&t[0].image.as_ref().unwrap().1).unwrap();
                assert_eq!((img.width(), img.height()), (28, 28));
            }
            Err(DataError::FashionMnistMissing(msg)) => {
                assert!(DataError::FashionMnistMissing(msg.clone()).to_string().contains("apt-get install"));
                eprintln!("SKIPPED: Fashion-MNIST not installed ({msg})");
            }
            Err(e) => panic!("{e}"),
        }
    }
}
