//! Image decode ([`decode`]: the picture a person sees) + resize/crop + normalise into CHW
//! f32 tensors.

use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::decode::{DEFAULT_MAX_IMAGE_PIXELS, decode};
use crate::error::{DataError, Result};

/// CLIP's normalisation constants (OpenAI), the usual choice for CLIP-style models.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's per-channel (RGB) standard deviations, on the 0–1 pixel scale, paired with [`CLIP_MEAN`].
pub const CLIP_STD: [f32; 3] = [0.268_629_55, 0.261_302_6, 0.275_777_1];

/// Random-resized-crop parameters (torchvision semantics: area fraction and aspect ratio).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RandomResizedCrop {
    /// Range of the crop's area as a fraction of the image's area.
    pub scale: (f32, f32),
    /// Range of the crop's aspect ratio (width / height), sampled log-uniformly.
    pub ratio: (f32, f32),
}

impl Default for RandomResizedCrop {
    fn default() -> Self {
        // open_clip's training default scale is (0.9, 1.0); mild crops keep captions true.
        Self { scale: (0.9, 1.0), ratio: (3.0 / 4.0, 4.0 / 3.0) }
    }
}

/// How an image becomes a normalised CHW tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessConfig {
    /// Output side length (square).
    pub image_size: u32,
    /// Per-channel (RGB) mean subtracted, on the 0–1 pixel scale.
    pub mean: [f32; 3],
    /// Per-channel (RGB) standard deviation divided by, on the 0–1 pixel scale; must be positive.
    pub std: [f32; 3],
    /// `Some` for training-time augmentation; `None` = resize shorter side + centre crop.
    pub random_resized_crop: Option<RandomResizedCrop>,
    /// Images of more pixels (width × height) than this are skipped undecoded.
    #[serde(default = "default_max_image_pixels")]
    pub max_image_pixels: u64,
}

fn default_max_image_pixels() -> u64 {
    DEFAULT_MAX_IMAGE_PIXELS
}

impl PreprocessConfig {
    /// Square `image_size` output with CLIP normalisation, no random crop and the default
    /// pixel limit ([`DEFAULT_MAX_IMAGE_PIXELS`]).
    pub fn new(image_size: u32) -> Self {
        Self {
            image_size,
            mean: CLIP_MEAN,
            std: CLIP_STD,
            random_resized_crop: None,
            max_image_pixels: DEFAULT_MAX_IMAGE_PIXELS,
        }
    }

    /// Floats per image (3·H·W).
    pub fn image_len(&self) -> usize {
        3 * (self.image_size as usize).pow(2)
    }

    fn validate(&self) -> Result<()> {
        if self.image_size == 0 || self.std.iter().any(|s| *s <= 0.0 || !s.is_finite()) {
            return Err(DataError::Invalid(format!(
                "image_size must be > 0 and std positive, got {} / {:?}",
                self.image_size, self.std
            )));
        }
        if self.max_image_pixels == 0 {
            return Err(DataError::Invalid("max_image_pixels must be at least 1".into()));
        }
        Ok(())
    }
}

/// Picks the source rectangle (x, y, w, h) to crop before resizing.
fn crop_rect(w: u32, h: u32, cfg: &PreprocessConfig, rng: Option<&mut ChaCha8Rng>) -> (u32, u32, u32, u32) {
    if let (Some(rrc), Some(rng)) = (cfg.random_resized_crop, rng) {
        let area = (w as f32) * (h as f32);
        // Ten tries, then fall back to the centre crop, as torchvision does.
        for _ in 0..10 {
            let target = area * rng.random_range(rrc.scale.0.min(rrc.scale.1)..=rrc.scale.0.max(rrc.scale.1));
            let (lr0, lr1) = (rrc.ratio.0.min(rrc.ratio.1).ln(), rrc.ratio.0.max(rrc.ratio.1).ln());
            let ar = rng.random_range(lr0..=lr1).exp();
            let cw = (target * ar).sqrt().round() as u32;
            let ch = (target / ar).sqrt().round() as u32;
            if cw > 0 && ch > 0 && cw <= w && ch <= h {
                let x = rng.random_range(0..=w - cw);
                let y = rng.random_range(0..=h - ch);
                return (x, y, cw, ch);
            }
        }
    }
    // Resize-shorter-side-then-centre-crop equals cropping the centred square first.
    let side = w.min(h);
    ((w - side) / 2, (h - side) / 2, side, side)
}

/// Resizes/crops an RGB image and writes normalised CHW floats into `out` (len 3·S·S).
pub fn preprocess_rgb(
    img: &RgbImage,
    cfg: &PreprocessConfig,
    rng: Option<&mut ChaCha8Rng>,
    out: &mut [f32],
) -> Result<()> {
    cfg.validate()?;
    let s = cfg.image_size;
    if out.len() != cfg.image_len() {
        return Err(DataError::Invalid("output buffer has the wrong length".into()));
    }
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return Err(DataError::Invalid("empty image".into()));
    }
    let (x, y, cw, ch) = crop_rect(w, h, cfg, rng);
    let plane = (s * s) as usize;
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * cfg.std[c]));
    let shift: [f32; 3] = std::array::from_fn(|c| cfg.mean[c] / cfg.std[c]);
    let raw = img.as_raw();
    if (x, y, cw, ch, w, h) == (0, 0, s, s, s, s) {
        for (i, px) in raw.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + i] = px[c] as f32 * scale[c] - shift[c];
            }
        }
        return Ok(());
    }
    // Separable bicubic resampling (open_clip's interpolation, antialiased when shrinking as
    // PIL's) fused with the crop and the normalisation, clipped to the pixel range as PIL's
    // 8-bit output is.
    let xs = taps(x, cw, s, w);
    let ys = taps(y, ch, s, h);
    let col_lo = xs.iter().map(|t| t.0).min().unwrap_or(0);
    let col_hi = xs.iter().map(|t| t.0 + t.1.len()).max().unwrap_or(0);
    let (s, w) = (s as usize, w as usize);
    // Vertical pass first: it runs over contiguous rows and vectorises; the horizontal pass
    // then reads one f32 row per output row and writes CHW directly.
    let mut vrow = vec![0f32; (col_hi - col_lo) * 3];
    for (oy, (start, wts)) in ys.iter().enumerate() {
        vrow.fill(0.0);
        for (k, wt) in wts.iter().enumerate() {
            let r = (start + k) * w;
            let src = &raw[(r + col_lo) * 3..(r + col_hi) * 3];
            for (a, &v) in vrow.iter_mut().zip(src) {
                *a += wt * v as f32;
            }
        }
        for (ox, (xstart, wts)) in xs.iter().enumerate() {
            let mut acc = [0f32; 3];
            for (k, wt) in wts.iter().enumerate() {
                let p = &vrow[(xstart + k - col_lo) * 3..(xstart + k - col_lo) * 3 + 3];
                for c in 0..3 {
                    acc[c] += wt * p[c];
                }
            }
            for c in 0..3 {
                out[c * plane + oy * s + ox] = acc[c].clamp(0.0, 255.0) * scale[c] - shift[c];
            }
        }
    }
    Ok(())
}

/// Keys' cubic convolution kernel with a = −0.5, radius 2: PIL's BICUBIC, which torchvision's
/// `InterpolationMode.BICUBIC` on images (open_clip's transforms) uses.
fn bicubic(x: f32) -> f32 {
    const A: f32 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Source window start and normalised bicubic weights for each of `dst` outputs covering
/// `[off, off + len)` of an axis of `total` pixels; when shrinking, the kernel is stretched by
/// the scale (antialiasing, as PIL does).
fn taps(off: u32, len: u32, dst: u32, total: u32) -> Vec<(usize, Vec<f32>)> {
    let scale = len as f32 / dst as f32;
    let stretch = scale.max(1.0);
    let support = 2.0 * stretch;
    (0..dst)
        .map(|i| {
            let centre = off as f32 + (i as f32 + 0.5) * scale;
            let lo = ((centre - support).floor().max(0.0) as usize).min(total as usize - 1);
            let hi = ((centre + support).ceil() as usize).clamp(lo + 1, total as usize);
            let mut wts: Vec<f32> = (lo..hi).map(|j| bicubic((j as f32 + 0.5 - centre) / stretch)).collect();
            let sum: f32 = wts.iter().sum();
            if sum.abs() > f32::EPSILON {
                wts.iter_mut().for_each(|v| *v /= sum);
            } else {
                // Degenerate window: take the nearest pixel.
                wts.iter_mut().for_each(|v| *v = 0.0);
                wts[0] = 1.0;
            }
            (lo, wts)
        })
        .collect()
}

/// An image as training takes it and, when training augments it, as scoring and evaluation
/// see it (the deterministic centre crop).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageViews {
    /// The view the model trains on (a random crop when augmentation is on).
    pub train: Vec<f32>,
    /// The centre crop, only when `train` is a random crop.
    pub deterministic: Option<Vec<f32>>,
}

/// Decodes once and preprocesses into both views of [`ImageViews`]; `seed` drives the crop.
pub fn decode_and_preprocess_views(bytes: &[u8], cfg: &PreprocessConfig, seed: u64) -> Result<ImageViews> {
    let rgb = decode(bytes, cfg.max_image_pixels)?;
    let train = preprocess_new(&rgb, cfg, Some(seed))?;
    let deterministic = match cfg.random_resized_crop {
        Some(_) => Some(preprocess_new(&rgb, cfg, None)?),
        None => None,
    };
    Ok(ImageViews { train, deterministic })
}

/// [`preprocess_rgb`] into a new tensor; `seed` drives the random crop (`None`: centre crop).
fn preprocess_new(rgb: &RgbImage, cfg: &PreprocessConfig, seed: Option<u64>) -> Result<Vec<f32>> {
    let mut out = vec![0.0; cfg.image_len()];
    let mut rng = seed.map(ChaCha8Rng::seed_from_u64);
    preprocess_rgb(rgb, cfg, rng.as_mut(), &mut out)?;
    Ok(out)
}

/// Decodes and preprocesses into a new CHW tensor. `seed` drives the random crop when enabled,
/// so the same sample, epoch and seed always give the same crop whatever thread does the work.
pub fn decode_and_preprocess(bytes: &[u8], cfg: &PreprocessConfig, seed: u64) -> Result<Vec<f32>> {
    preprocess_new(&decode(bytes, cfg.max_image_pixels)?, cfg, Some(seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    use image::DynamicImage;

    fn png(img: DynamicImage) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        img.write_to(&mut buf, image::ImageFormat::Png).unwrap();
        buf.into_inner()
    }

    #[test]
    fn grayscale_becomes_three_channels_and_normalises() {
        let g = image::GrayImage::from_pixel(8, 6, image::Luma([255]));
        let cfg = PreprocessConfig {
            image_size: 4,
            mean: [0.5; 3],
            std: [0.5; 3],
            random_resized_crop: None,
            ..PreprocessConfig::new(4)
        };
        let t = decode_and_preprocess(&png(DynamicImage::ImageLuma8(g)), &cfg, 0).unwrap();
        assert_eq!(t.len(), 48);
        assert!(t.iter().all(|v| (v - 1.0).abs() < 1e-5));
    }

    #[test]
    fn centre_crop_and_random_crop_are_seeded() {
        // Left half black, right half white, 16x8: the centre crop is half/half.
        let img = RgbImage::from_fn(16, 8, |x, _| if x < 8 { image::Rgb([0; 3]) } else { image::Rgb([255; 3]) });
        let bytes = png(DynamicImage::ImageRgb8(img));
        let mut cfg = PreprocessConfig {
            image_size: 8,
            mean: [0.0; 3],
            std: [1.0; 3],
            random_resized_crop: None,
            ..PreprocessConfig::new(4)
        };
        let t = decode_and_preprocess(&bytes, &cfg, 0).unwrap();
        assert!(t[0] < 0.1 && t[7] > 0.9);
        cfg.random_resized_crop = Some(RandomResizedCrop { scale: (0.2, 0.5), ..Default::default() });
        let a = decode_and_preprocess(&bytes, &cfg, 7).unwrap();
        let b = decode_and_preprocess(&bytes, &cfg, 7).unwrap();
        assert_eq!(a, b);
        assert!((1..20).any(|s| decode_and_preprocess(&bytes, &cfg, s).unwrap() != a));
    }

    #[test]
    fn resampling_matches_pil_bicubic_by_way_of_the_image_crate() {
        let img = RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, ((x + y) * 3) as u8]));
        let cfg = PreprocessConfig {
            image_size: 20,
            mean: [0.0; 3],
            std: [1.0; 3],
            random_resized_crop: None,
            ..PreprocessConfig::new(4)
        };
        let mut ours = vec![0.0; cfg.image_len()];
        preprocess_rgb(&img, &cfg, None, &mut ours).unwrap();
        let crop = image::imageops::crop_imm(&img, 5, 0, 30, 30).to_image();
        // The image crate's CatmullRom is the same kernel (a = −0.5), stretched when shrinking.
        let theirs = image::imageops::resize(&crop, 20, 20, image::imageops::FilterType::CatmullRom);
        let mut err = 0.0;
        for (i, p) in theirs.pixels().enumerate() {
            for c in 0..3 {
                err += (ours[c * 400 + i] - p[c] as f32 / 255.0).abs();
            }
        }
        assert!(err / 1200.0 < 0.02, "mean abs diff {}", err / 1200.0);
    }

    #[test]
    fn corrupt_bytes_are_an_error() {
        assert!(decode_and_preprocess(b"not an image", &PreprocessConfig::new(4), 0).is_err());
    }
}
