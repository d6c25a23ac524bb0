//! `inspect`: what a shard set holds, and which samples a training epoch would skip.

use serde::Serialize;

use crate::decode::decode;
use crate::duplicates::{DuplicateGroups, caption_key, content_key};
use crate::error::{DataError, Result};
use crate::loader::{SkipReason, skip_reason};
use crate::preprocess::{PreprocessConfig, preprocess_rgb};
use crate::shard::{ShardReader, ShardSet};

/// Caption-length histogram buckets, in words.
pub const CAPTION_BUCKETS: [(usize, usize); 6] = [(0, 0), (1, 4), (5, 9), (10, 19), (20, 49), (50, usize::MAX)];

/// Statistics of a shard set, from [`inspect`]. Each unusable sample is counted once, for the
/// first reason in the loader's order (truncated, empty caption, missing image, corrupt image).
#[derive(Debug, Clone, Default, Serialize)]
pub struct InspectReport {
    /// Shards in the set.
    pub shards: usize,
    /// Samples (keys) read, counting unusable ones.
    pub samples: u64,
    /// `(shard file name, samples)` per shard, in set order; 0 for an unreadable shard.
    pub per_shard: Vec<(String, u64)>,
    /// Counts per caption-length bucket, in words: 0, 1–4, 5–9, 10–19, 20–49, 50 and more.
    pub caption_words: [u64; 6],
    /// Samples whose image fails to decode, oversized ones included (as the loader counts them).
    pub corrupt_images: u64,
    /// Of `corrupt_images`, those refused for having more pixels than the limit.
    pub oversized_images: u64,
    /// The pixel limit the images were decoded under.
    pub max_image_pixels: u64,
    /// The side the images were preprocessed at to find identical ones.
    pub image_size: u32,
    /// Usable samples whose image is identical to another's after preprocessing.
    pub duplicate_images: DuplicateGroups,
    /// Usable samples whose caption equals another's up to case and white space.
    pub duplicate_captions: DuplicateGroups,
    /// Samples without an image member.
    pub missing_images: u64,
    /// Samples with a member cut short by the end of the tar file.
    pub truncated: u64,
    /// Samples with a missing, empty or whitespace-only caption.
    pub empty_captions: u64,
    /// Samples whose metadata flags them noisy.
    pub noisy_flagged: u64,
    /// Shards that could not be opened.
    pub unreadable_shards: u64,
    /// Up to 20 `shard:key` names of bad members, for a human to look at.
    pub examples: Vec<String>,
}

impl std::fmt::Display for InspectReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "shards: {}  samples: {}", self.shards, self.samples)?;
        writeln!(
            f,
            "corrupt images: {}  missing images: {}  truncated: {}  empty captions: {}  unreadable shards: {}",
            self.corrupt_images, self.missing_images, self.truncated, self.empty_captions, self.unreadable_shards
        )?;
        if self.oversized_images > 0 {
            writeln!(
                f,
                "of the corrupt images, {} are above the limit of {} pixels (raise it with --max-image-pixels)",
                self.oversized_images, self.max_image_pixels
            )?;
        }
        writeln!(f, "noisy-flagged (metadata): {}", self.noisy_flagged)?;
        writeln!(f, "identical images at {} px: {}", self.image_size, self.duplicate_images)?;
        writeln!(f, "identical captions (case and spacing aside): {}", self.duplicate_captions)?;
        if self.duplicate_images.any() || self.duplicate_captions.any() {
            writeln!(
                f,
                "  on a held-out split identical images tie in retrieval, and a tie with a wrong answer counts as a \
                 miss; identical caption strings are one shared answer, captions differing in case or spacing tie"
            )?;
        }
        writeln!(f, "caption length (words):")?;
        let max = self.caption_words.iter().copied().max().unwrap_or(0).max(1);
        for ((lo, hi), n) in CAPTION_BUCKETS.iter().zip(self.caption_words) {
            let label = if *hi == usize::MAX {
                format!("{lo}+")
            } else if lo == hi {
                format!("{lo}")
            } else {
                format!("{lo}-{hi}")
            };
            writeln!(f, "  {label:>6} {n:>9} {}", "#".repeat((n * 40 / max) as usize))?;
        }
        for e in &self.examples {
            writeln!(f, "  bad: {e}")?;
        }
        Ok(())
    }
}

/// Reads every sample, decoding images as the loader does (under `preprocess.max_image_pixels`)
/// to find the ones a training epoch would skip, and preprocessing them (centre crop at
/// `preprocess.image_size`) to find identical ones.
pub fn inspect(set: &ShardSet, preprocess: &PreprocessConfig) -> Result<InspectReport> {
    let max_image_pixels = preprocess.max_image_pixels;
    let mut r = InspectReport {
        shards: set.shards.len(),
        max_image_pixels,
        image_size: preprocess.image_size,
        ..Default::default()
    };
    let mut centre = preprocess.clone();
    centre.random_resized_crop = None;
    let mut pixels = vec![0.0; centre.image_len()];
    let (mut image_keys, mut caption_keys) = (Vec::new(), Vec::new());
    for s in &set.shards {
        let name = s.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let Ok(mut reader) = ShardReader::open(&s.path) else {
            r.unreadable_shards += 1;
            r.per_shard.push((name, 0));
            continue;
        };
        let mut n = 0;
        reader.for_each(|raw| {
            n += 1;
            let bad = |what: &str, r: &mut InspectReport| {
                if r.examples.len() < 20 {
                    r.examples.push(format!("{name}:{} ({what})", raw.key));
                }
            };
            if !raw.truncated {
                let words = raw.caption.as_deref().map_or(0, |c| c.split_whitespace().count());
                if let Some(b) = CAPTION_BUCKETS.iter().position(|(lo, hi)| (*lo..=*hi).contains(&words)) {
                    r.caption_words[b] += 1;
                }
            }
            // One reason per sample, in the loader's order, so the counts equal a training
            // epoch's skipped-sample counts.
            match skip_reason(&raw) {
                Some(SkipReason::Truncated) => {
                    r.truncated += 1;
                    bad("truncated", &mut r);
                }
                Some(SkipReason::EmptyCaption) => {
                    r.empty_captions += 1;
                    bad("empty caption", &mut r);
                }
                Some(SkipReason::MissingImage) => {
                    r.missing_images += 1;
                    bad("no image", &mut r);
                }
                None => match raw.image.as_ref().map(|(_, bytes)| decode(bytes, max_image_pixels)) {
                    Some(Err(e @ DataError::ImageTooLarge { .. })) => {
                        r.corrupt_images += 1;
                        r.oversized_images += 1;
                        bad(&e.to_string(), &mut r);
                    }
                    Some(Err(_)) => {
                        r.corrupt_images += 1;
                        bad("corrupt image", &mut r);
                    }
                    Some(Ok(rgb)) => {
                        if preprocess_rgb(&rgb, &centre, None, &mut pixels).is_ok() {
                            image_keys.push(content_key(&pixels));
                        }
                        caption_keys.push(caption_key(raw.caption.as_deref().unwrap_or_default()));
                    }
                    None => {}
                },
            }
            if raw.meta.as_ref().and_then(|m| m.noisy) == Some(true) {
                r.noisy_flagged += 1;
            }
        });
        r.samples += n;
        r.per_shard.push((name, n));
    }
    r.duplicate_images = DuplicateGroups::of(image_keys);
    r.duplicate_captions = DuplicateGroups::of(caption_keys);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::{SampleOut, ShardWriter};

    #[test]
    fn counts_each_unusable_sample_once_in_the_loaders_order() {
        let d = tempfile::tempdir().unwrap();
        let mut w = ShardWriter::new(d.path(), "t", 10).unwrap();
        let mut png = std::io::Cursor::new(Vec::new());
        image::RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3])).write_to(&mut png, image::ImageFormat::Png).unwrap();
        let png = png.into_inner();
        let samples: [(&[u8], &str); 4] =
            [(&png, "a good one"), (b"garbage", "a corrupt image"), (b"garbage", ""), (&png, "two words")];
        for (image, caption) in samples {
            w.write(&SampleOut { image_ext: "png", image, caption, meta: None }).unwrap();
        }
        w.finish().unwrap();
        let set = ShardSet::from_pattern(&d.path().join("t-000000.tar").to_string_lossy()).unwrap();
        let report = inspect(&set, &PreprocessConfig::new(8)).unwrap();
        assert_eq!((report.samples, report.corrupt_images, report.empty_captions), (4, 1, 1));
        assert_eq!(report.caption_words[1], 3, "captions of 1–4 words");
        // The two usable samples hold the same image; their captions differ.
        assert_eq!((report.duplicate_images.duplicated, report.duplicate_captions.groups), (2, 0));
        assert!(report.to_string().contains("corrupt images: 1"), "{report}");
    }
}
