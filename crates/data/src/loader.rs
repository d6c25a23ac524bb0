//! Multi-threaded batch loader with deterministic shuffling and resumable epochs.
//!
//! One reader thread streams shards (order shuffled by `(seed, epoch)`) through a seeded
//! shuffle buffer and cuts the stream into batches; decode threads turn whole batches into
//! tensors; the consumer puts batches back into order. Which samples land in which batch is
//! decided by the reader alone, so the batch sequence is identical for any thread count.
//! Checks that need no decoding (truncated member, empty caption, missing image) happen in the
//! reader, so resuming at batch `n` only re-reads bytes; an image that fails to decode is
//! dropped from its batch, which is then one sample short.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::lines::map_in_chunks;
use crate::preprocess::{PreprocessConfig, decode_and_preprocess, decode_and_preprocess_views};
use crate::shard::{RawSample, SampleMeta, Shard, ShardReader, ShardSet};
use crate::tokenizer::{TextTokenizer, TokenBatch};

/// Per-epoch counts of what was delivered and what was skipped. Each skipped sample counts
/// once, for the first of these reasons in this order: truncated member, empty caption,
/// missing image, image that fails to decode ([`skip_reason`] and decoding) — the same
/// classification `dissect data inspect` reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadStats {
    /// Samples delivered in batches.
    pub samples: u64,
    /// Samples whose image failed to decode.
    pub skipped_corrupt_image: u64,
    /// Samples without an image member.
    pub skipped_missing_image: u64,
    /// Samples with an empty (or whitespace-only) caption.
    pub skipped_empty_caption: u64,
    /// Samples with a member cut short by the end of the tar file.
    pub skipped_truncated: u64,
    /// Usable samples left over after the last full batch (with `drop_last`): not trained
    /// this epoch, though the next epoch's shuffle may use them.
    pub dropped_last: u64,
    /// Shards that could not be opened at all.
    pub unreadable_shards: u64,
}

impl LoadStats {
    /// Samples skipped as unusable (not counting `dropped_last`).
    pub fn skipped(&self) -> u64 {
        self.skipped_corrupt_image + self.skipped_missing_image + self.skipped_empty_caption + self.skipped_truncated
    }

    /// Adds another count to this one.
    pub fn add(&mut self, o: &LoadStats) {
        self.samples += o.samples;
        self.skipped_corrupt_image += o.skipped_corrupt_image;
        self.skipped_missing_image += o.skipped_missing_image;
        self.skipped_empty_caption += o.skipped_empty_caption;
        self.skipped_truncated += o.skipped_truncated;
        self.dropped_last += o.dropped_last;
        self.unreadable_shards += o.unreadable_shards;
    }

    fn count(&mut self, reason: SkipReason) {
        match reason {
            SkipReason::Truncated => self.skipped_truncated += 1,
            SkipReason::EmptyCaption => self.skipped_empty_caption += 1,
            SkipReason::MissingImage => self.skipped_missing_image += 1,
        }
    }
}

/// Why a raw sample is unusable before any decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// A member was cut short by the end of the tar file.
    Truncated,
    /// The caption is missing, empty or whitespace only.
    EmptyCaption,
    /// There is no image member.
    MissingImage,
}

/// The checks that need no decoding, in the order the loader applies them; `None` when the
/// sample goes on to be decoded.
pub fn skip_reason(raw: &RawSample) -> Option<SkipReason> {
    if raw.truncated {
        Some(SkipReason::Truncated)
    } else if raw.caption.as_deref().is_none_or(|c| c.trim().is_empty()) {
        Some(SkipReason::EmptyCaption)
    } else if raw.image.is_none() {
        Some(SkipReason::MissingImage)
    } else {
        None
    }
}

/// A sample that passed the cheap checks, still encoded.
#[derive(Debug, Clone)]
pub(crate) struct RawItem {
    pub index: u64,
    pub image: Vec<u8>,
    pub caption: String,
    pub meta: SampleMeta,
}

/// Streams one shard's usable samples with their global indices, counting skips.
pub(crate) fn scan_shard(shard: &Shard, stats: &mut LoadStats, mut f: impl FnMut(RawItem) -> bool) {
    let mut reader = match ShardReader::open(&shard.path) {
        Ok(r) => r,
        Err(_) => {
            stats.unreadable_shards += 1;
            return;
        }
    };
    let mut pos = 0u64;
    let mut go_on = true;
    reader.for_each(|raw| {
        // Extra samples beyond the indexed count would collide with the next shard's indices.
        if !go_on || pos >= shard.samples {
            return;
        }
        let index = shard.first_index + pos;
        pos += 1;
        if let Some(reason) = skip_reason(&raw) {
            stats.count(reason);
            return;
        }
        let (Some(caption), Some((_, image))) = (raw.caption, raw.image) else { return };
        go_on = f(RawItem { index, image, caption, meta: raw.meta.unwrap_or_default() });
    });
}

/// A batch ready for the model.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Position of this batch in the epoch (resume from `batch_number + 1`).
    pub batch_number: u64,
    /// `len · 3 · image_size²` floats, CHW per image, as training takes them (random crops
    /// when the loader augments).
    pub images: Vec<f32>,
    /// The same images' deterministic centre crops, only when `images` are augmented: the
    /// scoring pass ranks on these, so a pair's score history does not follow its crops.
    pub deterministic_images: Option<Vec<f32>>,
    /// Side length of every image, in pixels.
    pub image_size: u32,
    /// Tokenized captions, one row per sample.
    pub tokens: TokenBatch,
    /// Stable global dataset indices.
    pub indices: Vec<u64>,
    /// Caption of each sample, as stored in the shard.
    pub captions: Vec<String>,
    /// Ground-truth noisy flag of each sample from its metadata; `None` when not recorded.
    pub noisy: Vec<Option<bool>>,
    /// Class label of each sample from its metadata, if any.
    pub classes: Vec<Option<u32>>,
    /// Images that failed to decode in this batch (which is that much shorter) and in any
    /// batches just before it whose every image failed. They travel with the batch so that a
    /// consumer that checkpoints mid-epoch can keep the count (see [`Epoch::stats`]).
    pub corrupt_images: u64,
}

impl Batch {
    /// The images the scoring pass takes: the deterministic crops when training augments.
    pub fn scoring_images(&self) -> &[f32] {
        self.deterministic_images.as_deref().unwrap_or(&self.images)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.indices.len()
    }
    /// Whether the batch holds no sample.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// How a [`Loader`] reads, shuffles, decodes and batches.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Samples per batch, counted before decoding (a failed decode makes a batch shorter).
    pub batch_size: usize,
    /// Text context length (CLIP: 77).
    pub context_len: usize,
    /// Image preprocessing.
    pub preprocess: PreprocessConfig,
    /// Decode threads.
    pub threads: usize,
    /// Batches decoded ahead of the consumer.
    pub prefetch: usize,
    /// Shuffle the shard order and the samples (through the shuffle buffer) per epoch.
    pub shuffle: bool,
    /// Samples held in the shuffle buffer (bigger = better mixing across shards, more memory).
    pub shuffle_buffer: usize,
    /// Seed of the shuffles and the random crops; combined with the epoch.
    pub seed: u64,
    /// Drop the last partial batch of an epoch (counted in [`LoadStats::dropped_last`]).
    pub drop_last: bool,
    /// Data-parallel split by shard: rank `r` of `w` takes every `w`-th shard of the epoch order.
    pub rank: usize,
    /// Number of data-parallel ranks `w`.
    pub world_size: usize,
    /// Decode only one part of every batch (a process of a job of several, which trains only
    /// on its slice): every process reads the same batches, and each decodes its contiguous
    /// part of them ([`batch_parts`]). Every batch is then delivered, even with no image of the
    /// part decoded, so that the processes stay in step.
    pub part: Option<BatchPart>,
}

/// Part `index` of `parts` of every batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPart {
    /// Which part, `0..parts`.
    pub index: usize,
    /// How many parts each batch is cut into.
    pub parts: usize,
}

/// The contiguous row ranges of `parts` parts of `len` rows, in order: sizes differ by at most
/// one (the first parts take the extra rows), and with fewer rows than parts the last parts
/// are empty.
pub fn batch_parts(len: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.max(1);
    let (base, extra) = (len / parts, len % parts);
    let mut start = 0;
    (0..parts)
        .map(|p| {
            let end = start + base + usize::from(p < extra);
            let rows = start..end;
            start = end;
            rows
        })
        .collect()
}

impl LoaderConfig {
    /// Defaults for `batch_size` and square images of side `image_size`: context length 32,
    /// one decode thread per core, 4 batches prefetched, shuffling with a 10 000-sample buffer,
    /// seed 0, `drop_last`, a single rank and no random crop.
    pub fn new(batch_size: usize, image_size: u32) -> Self {
        Self {
            batch_size,
            context_len: 32,
            preprocess: PreprocessConfig::new(image_size),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            prefetch: 4,
            shuffle: true,
            shuffle_buffer: 10_000,
            seed: 0,
            drop_last: true,
            rank: 0,
            world_size: 1,
            part: None,
        }
    }
}

/// Batches over a shard set.
pub struct Loader {
    shards: Arc<ShardSet>,
    tokenizer: Arc<TextTokenizer>,
    cfg: LoaderConfig,
}

fn mix(a: u64, b: u64) -> u64 {
    // SplitMix64 finaliser: decorrelates (seed, epoch, index) triples for per-sample RNGs.
    let mut z = a ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct Job {
    seq: u64,
    batch_number: u64,
    items: Vec<RawItem>,
    /// The samples left over after the last full batch with `drop_last`: decoded only to be
    /// counted (usable or corrupt), never delivered.
    leftover: bool,
}

impl Loader {
    /// A loader over `shards`; fails unless `batch_size > 0`, `context_len >= 2` and
    /// `rank < world_size`.
    pub fn new(shards: ShardSet, tokenizer: Arc<TextTokenizer>, cfg: LoaderConfig) -> Result<Self> {
        if cfg.batch_size == 0 || cfg.world_size == 0 || cfg.rank >= cfg.world_size || cfg.context_len < 2 {
            return Err(DataError::Invalid(format!(
                "loader needs batch_size > 0, context_len >= 2 and rank < world_size (got {}, {}, {}/{})",
                cfg.batch_size, cfg.context_len, cfg.rank, cfg.world_size
            )));
        }
        Ok(Self { shards: Arc::new(shards), tokenizer, cfg })
    }

    /// The loader's configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.cfg
    }

    /// Samples in the whole set (all ranks), including ones that may be skipped.
    pub fn num_samples(&self) -> u64 {
        self.shards.num_samples()
    }

    /// Upper bound on batches per epoch for this rank (exact when nothing is skipped and
    /// `world_size` is 1).
    pub fn batches_per_epoch(&self) -> u64 {
        let n = self.num_samples() / self.cfg.world_size as u64;
        let b = self.cfg.batch_size as u64;
        if self.cfg.drop_last { n / b } else { n.div_ceil(b) }
    }

    /// Starts epoch `epoch`, skipping its first `start_batch` batches (resume).
    pub fn epoch(&self, epoch: u64, start_batch: u64) -> Epoch {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(LoadStats::default()));
        let threads = self.cfg.threads.max(1);
        let prefetch = self.cfg.prefetch.max(1);
        let (job_tx, job_rx) = bounded::<Job>(prefetch);
        let (res_tx, res_rx) = bounded::<(u64, Option<Batch>, u64)>(prefetch);
        let mut handles = Vec::with_capacity(threads + 1);
        {
            let (shards, cfg, stats, stop) = (self.shards.clone(), self.cfg.clone(), stats.clone(), stop.clone());
            handles
                .push(std::thread::spawn(move || read_epoch(&shards, &cfg, epoch, start_batch, &stats, &stop, job_tx)));
        }
        for _ in 0..threads {
            let (rx, tx) = (job_rx.clone(), res_tx.clone());
            let (tok, cfg, stats) = (self.tokenizer.clone(), self.cfg.clone(), stats.clone());
            handles.push(std::thread::spawn(move || decode_worker(&tok, &cfg, epoch, &stats, rx, tx)));
        }
        Epoch {
            results: res_rx,
            pending: BTreeMap::new(),
            next_seq: 0,
            carried_corrupt: 0,
            stats,
            stop,
            _handles: handles,
        }
    }
}

fn read_epoch(
    set: &ShardSet,
    cfg: &LoaderConfig,
    epoch: u64,
    start_batch: u64,
    stats: &Mutex<LoadStats>,
    stop: &AtomicBool,
    jobs: Sender<Job>,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(mix(cfg.seed, epoch));
    let mut order: Vec<usize> = (0..set.shards.len()).collect();
    if cfg.shuffle {
        order.shuffle(&mut rng);
    }
    let mine = order.into_iter().enumerate().filter(|(k, _)| k % cfg.world_size == cfg.rank).map(|(_, s)| s);
    let cap = if cfg.shuffle { cfg.shuffle_buffer.max(1) } else { 1 };
    let mut buffer: Vec<RawItem> = Vec::with_capacity(cap.min(1 << 16));
    let mut pending: Vec<RawItem> = Vec::with_capacity(cfg.batch_size);
    let (mut batch_number, mut seq) = (0u64, 0u64);
    let mut local = LoadStats::default();

    // Returns false when the consumer is gone.
    let mut emit = |item: RawItem, pending: &mut Vec<RawItem>| -> bool {
        if batch_number < start_batch {
            // Resuming: count the batch but drop its bytes undecoded.
            if pending.len() + 1 == cfg.batch_size {
                pending.clear();
                batch_number += 1;
            } else {
                pending.push(item);
            }
            return true;
        }
        pending.push(item);
        if pending.len() == cfg.batch_size {
            let items = std::mem::replace(pending, Vec::with_capacity(cfg.batch_size));
            let ok = jobs.send(Job { seq, batch_number, items, leftover: false }).is_ok();
            seq += 1;
            batch_number += 1;
            return ok;
        }
        true
    };

    let mut alive = true;
    for s in mine {
        if !alive || stop.load(Ordering::Relaxed) {
            break;
        }
        scan_shard(&set.shards[s], &mut local, |item| {
            if buffer.len() < cap {
                buffer.push(item);
                return true;
            }
            let j = rng.random_range(0..buffer.len());
            let out = std::mem::replace(&mut buffer[j], item);
            alive = emit(out, &mut pending) && !stop.load(Ordering::Relaxed);
            alive
        });
    }
    while alive && !buffer.is_empty() {
        let j = rng.random_range(0..buffer.len());
        let item = buffer.swap_remove(j);
        alive = emit(item, &mut pending);
    }
    if alive && !pending.is_empty() && batch_number >= start_batch {
        let _ = jobs.send(Job { seq, batch_number, items: pending, leftover: cfg.drop_last });
    }
    if let Ok(mut s) = stats.lock() {
        s.add(&local);
    }
}

fn decode_worker(
    tok: &TextTokenizer,
    cfg: &LoaderConfig,
    epoch: u64,
    stats: &Mutex<LoadStats>,
    jobs: Receiver<Job>,
    out: Sender<(u64, Option<Batch>, u64)>,
) {
    for job in jobs {
        let seq = job.seq;
        let (result, corrupt) = if job.leftover {
            count_leftover(job, cfg, epoch, stats);
            (None, 0)
        } else {
            decode_batch(job, tok, cfg, epoch, stats)
        };
        if out.send((seq, result, corrupt)).is_err() {
            return;
        }
    }
}

/// Decodes one batch; returns it (unless no image decoded) and how many images failed.
fn decode_batch(
    job: Job,
    tok: &TextTokenizer,
    cfg: &LoaderConfig,
    epoch: u64,
    stats: &Mutex<LoadStats>,
) -> (Option<Batch>, u64) {
    let mut b = Batch {
        batch_number: job.batch_number,
        image_size: cfg.preprocess.image_size,
        images: Vec::with_capacity(job.items.len() * cfg.preprocess.image_len()),
        ..Default::default()
    };
    let mut corrupt = 0;
    let mut items = job.items;
    if let Some(part) = cfg.part {
        let rows = batch_parts(items.len(), part.parts).get(part.index).cloned().unwrap_or(0..0);
        items.truncate(rows.end);
        items.drain(..rows.start);
    }
    for item in items {
        let seed = mix(mix(cfg.seed, epoch), item.index);
        match decode_and_preprocess_views(&item.image, &cfg.preprocess, seed) {
            Ok(views) => {
                b.images.extend_from_slice(&views.train);
                if let Some(centre) = views.deterministic {
                    b.deterministic_images.get_or_insert_with(Vec::new).extend_from_slice(&centre);
                }
                b.indices.push(item.index);
                b.noisy.push(item.meta.noisy);
                b.classes.push(item.meta.class);
                b.captions.push(item.caption);
            }
            Err(_) => corrupt += 1,
        }
    }
    let texts: Vec<&str> = b.captions.iter().map(String::as_str).collect();
    // Plain captions do not fail to encode; if one ever does, the batch is dropped whole
    // and counted rather than stopping the run.
    let mut local = LoadStats::default();
    let result = match tok.encode_batch(&texts, cfg.context_len) {
        // A part with no image decoded is still delivered: the other parts of its batch are.
        Ok(t) if !b.indices.is_empty() || cfg.part.is_some() => {
            b.tokens = t;
            local.samples += b.indices.len() as u64;
            Some(b)
        }
        Ok(_) => None,
        Err(_) => {
            local.skipped_empty_caption += b.indices.len() as u64;
            None
        }
    };
    if let Ok(mut s) = stats.lock() {
        s.add(&local);
    }
    (result, corrupt)
}

/// Counts the leftover samples of a `drop_last` epoch as dropped or corrupt, so an epoch
/// reports every unusable sample of the data, as `dissect data inspect` does.
fn count_leftover(job: Job, cfg: &LoaderConfig, epoch: u64, stats: &Mutex<LoadStats>) {
    let mut local = LoadStats::default();
    for item in job.items {
        let seed = mix(mix(cfg.seed, epoch), item.index);
        match decode_and_preprocess(&item.image, &cfg.preprocess, seed) {
            Ok(_) => local.dropped_last += 1,
            Err(_) => local.skipped_corrupt_image += 1,
        }
    }
    if let Ok(mut s) = stats.lock() {
        s.add(&local);
    }
}

/// Iterator over one epoch's batches, in order.
pub struct Epoch {
    results: Receiver<(u64, Option<Batch>, u64)>,
    pending: BTreeMap<u64, (Option<Batch>, u64)>,
    next_seq: u64,
    /// Decode failures of wholly corrupt batches not yet handed on with a delivered batch.
    carried_corrupt: u64,
    stats: Arc<Mutex<LoadStats>>,
    stop: Arc<AtomicBool>,
    _handles: Vec<JoinHandle<()>>,
}

impl Epoch {
    /// Counts so far; complete once the iterator has returned `None`. Decode failures inside
    /// delivered batches are not here but in each [`Batch::corrupt_images`]: add those up for
    /// the epoch's total. (The other skips are counted over the whole epoch even when it was
    /// started at a later batch, so a resumed epoch reports them in full.)
    pub fn stats(&self) -> LoadStats {
        let mut stats = self.stats.lock().map(|s| *s).unwrap_or_default();
        stats.skipped_corrupt_image += self.carried_corrupt;
        stats
    }
}

impl Iterator for Epoch {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        loop {
            if let Some((batch, corrupt)) = self.pending.remove(&self.next_seq) {
                self.next_seq += 1;
                self.carried_corrupt += corrupt;
                match batch {
                    Some(mut b) => {
                        b.corrupt_images = std::mem::take(&mut self.carried_corrupt);
                        return Some(b);
                    }
                    None => continue, // every image of that batch was corrupt, or the leftover
                }
            }
            match self.results.recv() {
                Ok((seq, batch, corrupt)) => {
                    self.pending.insert(seq, (batch, corrupt));
                }
                Err(_) => {
                    // All workers are done. Anything left means a lost job; move past it.
                    let first = *self.pending.keys().next()?;
                    self.next_seq = first;
                }
            }
        }
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        // Threads notice the closed channels or this flag and end on their own; joining here
        // could block the caller on slow I/O.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A decoded held-out sample.
#[derive(Debug, Clone)]
pub struct DecodedSample {
    /// Stable global dataset index.
    pub index: u64,
    /// CHW floats, `3 · image_size²`.
    pub image: Vec<f32>,
    /// Caption as stored in the shard.
    pub caption: String,
    /// The sample's metadata (empty when it had none).
    pub meta: SampleMeta,
}

/// Loads and preprocesses a whole (small) split in index order, for evaluation. Random crops
/// are disabled: evaluation must be deterministic.
pub fn load_all(
    set: &ShardSet,
    preprocess: &PreprocessConfig,
    threads: usize,
) -> Result<(Vec<DecodedSample>, LoadStats)> {
    let mut cfg = preprocess.clone();
    cfg.random_resized_crop = None;
    let mut stats = LoadStats::default();
    let mut raws = Vec::new();
    let mut shards: Vec<&Shard> = set.shards.iter().collect();
    shards.sort_by_key(|s| s.first_index);
    for s in shards {
        scan_shard(s, &mut stats, |item| {
            raws.push(item);
            true
        });
    }
    let decoded = map_in_chunks(&raws, threads, |r| {
        decode_and_preprocess(&r.image, &cfg, 0).ok().map(|image| DecodedSample {
            index: r.index,
            image,
            caption: r.caption.clone(),
            meta: r.meta.clone(),
        })
    })?;
    let mut out = Vec::with_capacity(raws.len());
    for d in decoded {
        match d {
            Some(s) => out.push(s),
            None => stats.skipped_corrupt_image += 1,
        }
    }
    stats.samples = out.len() as u64;
    out.sort_by_key(|s| s.index);
    Ok((out, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::{SampleOut, ShardWriter};

    const N: usize = 61;

    fn png(i: usize, side: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(side, side, |x, y| {
            image::Rgb([(i * 7 % 256) as u8, (x as usize * 13 + y as usize * 31 + i) as u8, (x * y) as u8])
        });
        let mut c = std::io::Cursor::new(Vec::new());
        img.write_to(&mut c, image::ImageFormat::Png).unwrap();
        c.into_inner()
    }

    /// 61 samples in shards of 7: #10 has a corrupt image, #20 an empty caption, and the last
    /// one (#60, a big image) is cut in the middle of its image member.
    fn dataset(dir: &std::path::Path) -> ShardSet {
        let mut w = ShardWriter::new(dir, "t", 7).unwrap();
        for i in 0..N {
            let img = match i {
                10 => b"definitely not a png".to_vec(),
                60 => png(i, 64),
                _ => png(i, 10),
            };
            let cap = if i == 20 { String::new() } else { format!("caption {i} of a thing") };
            let meta =
                SampleMeta { noisy: Some(i.is_multiple_of(3)), class: Some((i % 5) as u32), ..Default::default() };
            w.write(&SampleOut { image_ext: "png", image: &img, caption: &cap, meta: (i != 60).then_some(&meta) })
                .unwrap();
        }
        w.finish().unwrap();
        let last = dir.join("t-000008.tar");
        let len = std::fs::metadata(&last).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
        f.set_len(len - 1024 - 1024 - 2000).unwrap();
        ShardSet::from_pattern(&format!("{}/t-{{000000..000008}}.tar", dir.display())).unwrap()
    }

    fn tokenizer() -> Arc<TextTokenizer> {
        let caps: Vec<String> = (0..N).map(|i| format!("caption {i} of a thing")).collect();
        Arc::new(TextTokenizer::train(caps.into_iter(), 300).unwrap())
    }

    fn cfg(threads: usize) -> LoaderConfig {
        let mut c = LoaderConfig::new(8, 8);
        c.threads = threads;
        c.shuffle_buffer = 16;
        c.seed = 11;
        c.context_len = 12;
        c
    }

    fn run(l: &Loader, epoch: u64, start: u64) -> (Vec<Batch>, LoadStats) {
        let mut e = l.epoch(epoch, start);
        let batches: Vec<Batch> = e.by_ref().collect();
        (batches, e.stats())
    }

    fn ids(b: &[Batch]) -> Vec<Vec<u64>> {
        b.iter().map(|b| b.indices.clone()).collect()
    }

    #[test]
    fn batch_parts_cover_the_rows_in_order() {
        assert_eq!(batch_parts(8, 1), vec![0..8]);
        assert_eq!(batch_parts(8, 2), vec![0..4, 4..8]);
        assert_eq!(batch_parts(6, 4), vec![0..2, 2..4, 4..5, 5..6]);
        assert_eq!(batch_parts(2, 4), vec![0..1, 1..2, 2..2, 2..2]);
    }

    /// Three loaders each decoding their part of every batch deliver, together, the rows of
    /// one loader decoding everything, every batch on each of them (a corrupt image makes only
    /// its own part shorter).
    #[test]
    fn parts_of_every_batch_add_up_to_the_whole() {
        let dir = tempfile::tempdir().unwrap();
        let set = dataset(dir.path());
        let whole = Loader::new(set.clone(), tokenizer(), cfg(2)).unwrap();
        let (all, all_stats) = run(&whole, 1, 0);
        let parts: Vec<(Vec<Batch>, LoadStats)> = (0..3)
            .map(|index| {
                let config = LoaderConfig { part: Some(BatchPart { index, parts: 3 }), ..cfg(2) };
                run(&Loader::new(set.clone(), tokenizer(), config).unwrap(), 1, 0)
            })
            .collect();
        let batches = parts[0].0.len();
        assert!(parts.iter().all(|(b, _)| b.len() == batches));
        let mut corrupt = 0;
        for i in 0..batches {
            let rows: Vec<u64> = parts.iter().flat_map(|(b, _)| b[i].indices.clone()).collect();
            let whole_batch = all.iter().find(|b| b.batch_number == parts[0].0[i].batch_number);
            assert_eq!(rows, whole_batch.map(|b| b.indices.clone()).unwrap_or_default(), "batch {i}");
            corrupt += parts.iter().map(|(b, _)| b[i].corrupt_images).sum::<u64>();
        }
        let whole_corrupt: u64 = all.iter().map(|b| b.corrupt_images).sum::<u64>() + all_stats.skipped_corrupt_image;
        let parts_corrupt = corrupt + parts[0].1.skipped_corrupt_image;
        assert_eq!(parts_corrupt, whole_corrupt, "every decode failure is counted once");
    }

    #[test]
    fn deterministic_across_threads_runs_and_resume() {
        let d = tempfile::tempdir().unwrap();
        let set = dataset(d.path());
        assert_eq!(set.num_samples(), N as u64);
        let tok = tokenizer();
        let l1 = Loader::new(set.clone(), tok.clone(), cfg(1)).unwrap();
        let l3 = Loader::new(set.clone(), tok.clone(), cfg(3)).unwrap();
        let (a, stats) = run(&l1, 0, 0);
        let (b, _) = run(&l3, 0, 0);
        assert_eq!(ids(&a), ids(&b));
        assert_eq!(a.iter().map(|b| &b.images).collect::<Vec<_>>(), b.iter().map(|b| &b.images).collect::<Vec<_>>());
        assert_eq!(ids(&a), ids(&run(&l3, 0, 0).0));

        // 59 raw samples pass the cheap checks → 7 full batches (drop_last) and 3 left over;
        // the corrupt image is in a batch (which is one short) or among the leftovers.
        let corrupt = |stats: &LoadStats, batches: &[Batch]| {
            stats.skipped_corrupt_image + batches.iter().map(|b| b.corrupt_images).sum::<u64>()
        };
        assert_eq!(corrupt(&stats, &a), 1);
        assert_eq!(stats.skipped_empty_caption, 1);
        assert_eq!(stats.skipped_truncated, 1);
        assert_eq!(stats.skipped_missing_image, 0);
        assert_eq!(a.len(), 7);
        let delivered: usize = a.iter().map(Batch::len).sum();
        assert_eq!(stats.samples, delivered as u64);
        assert_eq!(stats.samples + stats.dropped_last + 1, 59);
        // The epoch reports what `dissect data inspect` reports for the same shards.
        let inspected = crate::inspect(&set, &PreprocessConfig::new(8)).unwrap();
        let epoch_total = LoadStats { skipped_corrupt_image: corrupt(&stats, &a), ..stats };
        assert_eq!(
            (inspected.corrupt_images, inspected.missing_images, inspected.empty_captions, inspected.truncated),
            (
                epoch_total.skipped_corrupt_image,
                epoch_total.skipped_missing_image,
                epoch_total.skipped_empty_caption,
                epoch_total.skipped_truncated
            )
        );

        // Stable indices: each index always carries the same caption and metadata.
        let (c, _) = run(&l3, 1, 0);
        assert_ne!(ids(&a), ids(&c));
        for batch in a.iter().chain(&c) {
            assert_eq!(batch.tokens.len(), batch.len());
            assert_eq!(batch.images.len(), batch.len() * 3 * 64);
            for (k, &i) in batch.indices.iter().enumerate() {
                assert_eq!(batch.captions[k], format!("caption {i} of a thing"));
                assert_eq!(batch.classes[k], Some((i % 5) as u32));
                assert_eq!(batch.noisy[k], Some(i.is_multiple_of(3)));
                assert!(![10, 20, 60].contains(&i));
            }
        }

        // Resume at batch 3 equals the tail of the full epoch, and the batches before it
        // carry the decode failures the resumed epoch does not see again.
        let (r, resumed_stats) = run(&l3, 0, 3);
        assert_eq!(ids(&r), ids(&a)[3..].to_vec());
        assert_eq!(corrupt(&resumed_stats, &r) + corrupt(&LoadStats::default(), &a[..3]), 1);
        assert_eq!((resumed_stats.skipped_empty_caption, resumed_stats.skipped_truncated), (1, 1));
        assert_eq!(r[0].batch_number, 3);
        assert_eq!(r[0].images, a[3].images);

        // Without drop_last the remainder comes as a last short batch.
        let mut c2 = cfg(2);
        c2.drop_last = false;
        let (t, _) = run(&Loader::new(set.clone(), tok.clone(), c2).unwrap(), 0, 0);
        assert_eq!(t.len(), 8);
        assert_eq!(ids(&t)[..7], ids(&a)[..]);

        // Two ranks see disjoint samples.
        let mut seen = std::collections::HashSet::new();
        for rank in 0..2 {
            let mut c = cfg(2);
            c.world_size = 2;
            c.rank = rank;
            c.drop_last = false;
            for b in run(&Loader::new(set.clone(), tok.clone(), c).unwrap(), 0, 0).0 {
                for i in b.indices {
                    assert!(seen.insert(i));
                }
            }
        }
        assert_eq!(seen.len(), N - 3);
    }

    #[test]
    fn early_drop_does_not_hang() {
        let d = tempfile::tempdir().unwrap();
        let l = Loader::new(dataset(d.path()), tokenizer(), cfg(2)).unwrap();
        let mut e = l.epoch(0, 0);
        assert!(e.next().is_some());
        drop(e);
    }

    #[test]
    fn load_all_in_index_order() {
        let d = tempfile::tempdir().unwrap();
        let set = dataset(d.path());
        let (all, stats) = load_all(&set, &PreprocessConfig::new(8), 3).unwrap();
        assert_eq!(all.len(), N - 3);
        assert!(all.windows(2).all(|w| w[0].index < w[1].index));
        assert_eq!(all[0].image.len(), 192);
        assert_eq!((stats.samples, stats.skipped()), (58, 3));
    }
}
