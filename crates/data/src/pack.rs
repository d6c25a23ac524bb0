//! `pack` (folder or CSV/TSV → shards) and `inspect` (shard statistics).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{DataError, Result};
use crate::loader::{SkipReason, skip_reason};
use crate::noise::inject_noise;
use crate::preprocess::decode;
use crate::shard::{IMAGE_EXTS, SampleMeta, SampleOut, ShardReader, ShardSet, ShardWriter};

/// What [`pack`] reads and how it writes the shards.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// A folder of images with sidecar `.txt` captions, or a `.csv`/`.tsv` of `path,caption`.
    pub input: PathBuf,
    /// Output directory for the shards and index (created if missing).
    pub out: PathBuf,
    /// Shard name prefix: shards are `{name}-000000.tar`, index `{name}.index.json`.
    pub name: String,
    /// Maximum samples per shard (> 0).
    pub shard_size: u64,
    /// Fraction of pairs whose caption is swapped by noise injection, 0–1; above 0, every
    /// sample gets a `noisy` flag in its metadata.
    pub noise_rate: f64,
    /// Seed of the noise injection.
    pub seed: u64,
}

/// What [`pack`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct PackReport {
    /// Samples written.
    pub samples: u64,
    /// Shards written.
    pub shards: usize,
    /// Pattern of the written shards, relative to `out`.
    pub pattern: String,
    /// Inputs without a caption or whose image file could not be read.
    pub skipped: u64,
    /// Pairs whose caption was swapped by noise injection.
    pub noisy: u64,
}

fn ext_of(p: &Path) -> Option<String> {
    p.extension().map(|e| e.to_string_lossy().to_ascii_lowercase())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    for e in rd {
        let p = e.map_err(|e| DataError::io(dir, e))?.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else if ext_of(&p).is_some_and(|e| IMAGE_EXTS.contains(&e.as_str())) {
            out.push(p);
        }
    }
    Ok(())
}

/// Splits one CSV/TSV line, honouring double quotes (`""` is a literal quote).
pub fn split_delimited(line: &str, delim: char) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        let cur = fields.last_mut().expect("fields is never empty");
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            c if c == delim && !quoted => fields.push(String::new()),
            c => cur.push(c),
        }
    }
    fields
}

/// (image path, caption) pairs from the input, in a stable (sorted / file) order.
fn collect_pairs(input: &Path) -> Result<(Vec<(PathBuf, String)>, u64)> {
    let mut skipped = 0;
    if input.is_dir() {
        let mut images = Vec::new();
        walk(input, &mut images)?;
        images.sort();
        let mut pairs = Vec::with_capacity(images.len());
        for img in images {
            match std::fs::read_to_string(img.with_extension("txt")) {
                Ok(c) if !c.trim().is_empty() => pairs.push((img, c.trim().to_string())),
                _ => skipped += 1,
            }
        }
        return Ok((pairs, skipped));
    }
    let delim = match ext_of(input).as_deref() {
        Some("tsv") | Some("tab") => '\t',
        Some("csv") => ',',
        _ => {
            return Err(DataError::Input {
                path: input.to_path_buf(),
                reason: "expected a folder, a .csv or a .tsv file".into(),
            });
        }
    };
    let text = std::fs::read_to_string(input).map_err(|e| DataError::io(input, e))?;
    let base = input.parent().unwrap_or(Path::new("."));
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f = split_delimited(line, delim);
        if n == 0
            && f.first().is_some_and(|h| {
                ["path", "filepath", "image", "file", "url"].contains(&h.trim().to_ascii_lowercase().as_str())
            })
        {
            continue; // header row
        }
        match f.as_slice() {
            [path, caption, ..] if !caption.trim().is_empty() => {
                let p = Path::new(path.trim());
                pairs.push((if p.is_absolute() { p.to_path_buf() } else { base.join(p) }, caption.trim().to_string()));
            }
            _ => skipped += 1,
        }
    }
    Ok((pairs, skipped))
}

/// Packs images and captions into shards plus an index. Image bytes are copied unchanged
/// (no re-encoding); unreadable files are skipped and counted.
pub fn pack(opts: &PackOptions) -> Result<PackReport> {
    let (mut pairs, mut skipped) = collect_pairs(&opts.input)?;
    // Drop missing files before noise injection so the flagged count matches what is written.
    let before = pairs.len();
    pairs.retain(|(p, _)| p.is_file());
    skipped += (before - pairs.len()) as u64;
    let mut captions: Vec<String> = pairs.iter().map(|p| p.1.clone()).collect();
    let noise = inject_noise(&mut captions, opts.noise_rate, opts.seed)?;
    let noisy: std::collections::HashSet<usize> = noise.noisy.iter().copied().collect();
    let mut w = ShardWriter::new(&opts.out, &opts.name, opts.shard_size)?;
    let mut samples = 0;
    for (i, ((path, original), caption)) in pairs.iter().zip(&captions).enumerate() {
        let Ok(bytes) = std::fs::read(path) else {
            skipped += 1;
            continue;
        };
        let ext = ext_of(path).unwrap_or_else(|| "jpg".into());
        let meta = (opts.noise_rate > 0.0).then(|| SampleMeta {
            noisy: Some(noisy.contains(&i)),
            original_caption: noisy.contains(&i).then(|| original.clone()),
            ..Default::default()
        });
        w.write(&SampleOut { image_ext: &ext, image: &bytes, caption, meta: meta.as_ref() })?;
        samples += 1;
    }
    let (pattern, index) = w.finish()?;
    Ok(PackReport { samples, shards: index.shards.len(), pattern, skipped, noisy: noise.noisy.len() as u64 })
}

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
    /// Samples whose image fails to decode.
    pub corrupt_images: u64,
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
        writeln!(f, "noisy-flagged (metadata): {}", self.noisy_flagged)?;
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

/// Reads every sample, decoding images to find corrupt ones.
pub fn inspect(set: &ShardSet) -> Result<InspectReport> {
    let mut r = InspectReport { shards: set.shards.len(), ..Default::default() };
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
                None => {
                    if raw.image.as_ref().is_some_and(|(_, bytes)| decode(bytes).is_err()) {
                        r.corrupt_images += 1;
                        bad("corrupt image", &mut r);
                    }
                }
            }
            if raw.meta.as_ref().and_then(|m| m.noisy) == Some(true) {
                r.noisy_flagged += 1;
            }
        });
        r.samples += n;
        r.per_shard.push((name, n));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(seed: u8) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(5, 4, image::Rgb([seed, 2, 3]));
        let mut c = std::io::Cursor::new(Vec::new());
        img.write_to(&mut c, image::ImageFormat::Png).unwrap();
        c.into_inner()
    }

    #[test]
    fn csv_split() {
        assert_eq!(split_delimited(r#"a.jpg,"a ""red"", big dog""#, ','), vec!["a.jpg", r#"a "red", big dog"#]);
        assert_eq!(split_delimited("a\tb c", '\t'), vec!["a", "b c"]);
    }

    #[test]
    fn pack_folder_and_csv_then_inspect() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        for i in 0..6u8 {
            let dir = if i % 2 == 0 { src.clone() } else { src.join("sub") };
            std::fs::write(dir.join(format!("im{i}.png")), png(i)).unwrap();
            if i != 5 {
                std::fs::write(dir.join(format!("im{i}.txt")), format!("caption number {i}")).unwrap();
            }
        }
        std::fs::write(src.join("bad.jpg"), b"garbage").unwrap();
        std::fs::write(src.join("bad.txt"), "a corrupt one").unwrap();
        let opts = PackOptions {
            input: src.clone(),
            out: d.path().join("out"),
            name: "data".into(),
            shard_size: 4,
            noise_rate: 0.0,
            seed: 0,
        };
        let rep = pack(&opts).unwrap();
        assert_eq!((rep.samples, rep.skipped, rep.shards), (6, 1, 2));
        let set = ShardSet::from_pattern(&d.path().join("out").join(&rep.pattern).to_string_lossy()).unwrap();
        let ins = inspect(&set).unwrap();
        assert_eq!((ins.samples, ins.corrupt_images, ins.empty_captions), (6, 1, 0));
        assert_eq!(ins.caption_words[1], 6);
        assert!(ins.to_string().contains("corrupt images: 1"));

        let csv = d.path().join("list.csv");
        std::fs::write(&csv, "path,caption\nsrc/im0.png,\"zero, with comma\"\nsrc/missing.png,nope\nsrc/im2.png,two\n")
            .unwrap();
        let rep = pack(&PackOptions { input: csv, out: d.path().join("out2"), noise_rate: 0.5, ..opts }).unwrap();
        assert_eq!((rep.samples, rep.skipped, rep.noisy), (2, 1, 1));
    }
}
