//! What an online run leaves behind: its final selection state as a table of per-sample
//! scores (`dissect scores export`), and as an offline coreset of the samples it ranks best
//! (`dissect curate`), written as a dataset folder ready to train on.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use dissect_data::{DatasetManifest, RawSample, SampleMeta, SampleOut, ShardReader, ShardSet, ShardWriter};
use dissect_select::{ScoreState, Strategy};
use serde::Serialize;

use crate::checkpoint::{SELECTION_FILE, latest_checkpoint};
use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::files::RunFiles;
use crate::setup::load_data;

/// A finished (or stopped) run's data and final selection state.
struct RunState {
    config: TrainConfig,
    manifest: DatasetManifest,
    data_dir: PathBuf,
    scores: ScoreState,
}

impl RunState {
    fn open(run: &Path) -> Result<Self> {
        let config = TrainConfig::from_run_folder(&RunFiles::new(run).config())?;
        let (manifest, data_dir) = load_data(&config)?;
        let checkpoint = latest_checkpoint(run)?.ok_or_else(|| TrainError::Checkpoint {
            path: run.into(),
            message: "the run has no checkpoint yet".into(),
        })?;
        let scores = ScoreState::load(checkpoint.join(SELECTION_FILE))?;
        Ok(RunState { config, manifest, data_dir, scores })
    }

    fn strategy(&self) -> Strategy {
        self.config.selection.strategy
    }

    /// Each training sample's final ranking key (see [`Strategy::final_rank_key`]).
    fn rank_keys(&self) -> Vec<Option<f32>> {
        self.scores.slots().iter().map(|slot| self.strategy().final_rank_key(slot)).collect()
    }

    /// Calls `f(index, shard file name, sample)` for every sample of the training shards.
    fn for_each_train_sample(&self, f: impl FnMut(u64, &str, RawSample) -> Result<()>) -> Result<()> {
        for_each_sample(&self.manifest.train_set(&self.data_dir)?, f)
    }
}

/// Calls `f(global index, shard file name, sample)` for every indexed sample of `set`.
fn for_each_sample(set: &ShardSet, mut f: impl FnMut(u64, &str, RawSample) -> Result<()>) -> Result<()> {
    for shard in &set.shards {
        let name = shard.path.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned());
        let mut outcome = Ok(());
        let mut position = 0;
        ShardReader::open(&shard.path)?.for_each(|sample| {
            if outcome.is_ok() && position < shard.samples {
                outcome = f(shard.first_index + position, &name, sample);
            }
            position += 1;
        });
        outcome?;
    }
    Ok(())
}

/// One row of `dissect scores export`.
#[derive(Debug, Clone, Serialize)]
struct ScoreRow<'a> {
    index: u64,
    shard: &'a str,
    key: &'a str,
    /// The last CLIPScore seen (clamped at 0 for the DISSect strategies).
    clipscore: Option<f32>,
    /// dissect-warmup's stored warm-up score.
    warm: Option<f32>,
    /// dissect-momentum's history.
    hist: Option<f32>,
    /// The run's final ranking key.
    rank_key: Option<f32>,
    times_selected: u32,
    last_epoch: Option<u32>,
    noisy: Option<bool>,
}

/// Writes one CSV row per training sample of `run` (dataset index, shard, key, last
/// CLIPScore, warm-up score, history, final ranking key, times selected, last epoch seen,
/// ground-truth noisy flag where known) to `out`, atomically. Returns the rows written.
pub fn export_scores(run: &Path, out: &Path) -> Result<u64> {
    let state = RunState::open(run)?;
    let keys = state.rank_keys();
    let file = dissect_io::AtomicFile::create(out).map_err(|e| TrainError::io(out, e))?;
    let mut writer = csv::Writer::from_writer(file);
    let mut rows = 0;
    state.for_each_train_sample(|index, shard, sample| {
        let Some(slot) = state.scores.get(index) else { return Ok(()) };
        let seen = slot.seen();
        let row = ScoreRow {
            index,
            shard,
            key: &sample.key,
            clipscore: Some(slot.last).filter(|v| seen && v.is_finite()),
            warm: slot.warm(),
            hist: slot.hist(),
            rank_key: keys[index as usize],
            times_selected: slot.times_selected,
            last_epoch: seen.then_some(slot.last_epoch),
            noisy: sample.meta.and_then(|m| m.noisy),
        };
        writer.serialize(row).map_err(|e| csv_error(out, e))?;
        rows += 1;
        Ok(())
    })?;
    let file = writer.into_inner().map_err(|e| TrainError::io(out, e.into_error()))?;
    file.commit().map_err(|e| TrainError::io(out, e))?;
    Ok(rows)
}

fn csv_error(path: &Path, e: csv::Error) -> TrainError {
    TrainError::Checkpoint { path: path.into(), message: e.to_string() }
}

/// What [`curate`] kept.
#[derive(Debug, Clone, Serialize)]
pub struct CurateReport {
    /// The rule the samples were ranked by.
    pub ranked_by: String,
    /// Training samples of the run's data.
    pub samples: u64,
    /// Samples kept.
    pub kept: u64,
    /// Samples flagged noisy in the run's data (ground truth, where known).
    pub noisy: u64,
    /// Flagged samples among the kept ones.
    pub noisy_kept: u64,
    /// The curated dataset's `dataset.json`.
    pub manifest: DatasetManifest,
}

impl CurateReport {
    /// Share of the flagged noisy samples that the curation removed, when any were flagged.
    pub fn noisy_removed(&self) -> Option<f64> {
        (self.noisy > 0).then(|| 1.0 - self.noisy_kept as f64 / self.noisy as f64)
    }
}

/// Writes the fraction `keep` of `run`'s training samples that its final selection state ranks
/// best ([`Strategy::final_rank_key`]; ties by dataset index, unscored samples last) into a
/// new dataset folder `out` with the run's held-out split: shards, indices and
/// `dataset.json`, written under a temporary name and renamed when complete. Each kept
/// sample's metadata records its `source_index`.
pub fn curate(run: &Path, keep: f64, out: &Path) -> Result<CurateReport> {
    if !(keep > 0.0 && keep <= 1.0) {
        return Err(TrainError::Config(format!("keep: must be in (0, 1], got {keep}")));
    }
    if std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some()) {
        return Err(TrainError::Config(format!("out: {} already exists and is not empty", out.display())));
    }
    let state = RunState::open(run)?;
    let keys = state.rank_keys();
    if keys.iter().all(Option::is_none) {
        return Err(TrainError::Config(format!(
            "the run's state holds no scores to rank by ({} without a scoring pass; train with track_scores = true)",
            state.strategy()
        )));
    }
    let kept = best_indices(&keys, keep);
    let tmp = dissect_io::temp_path(out);
    let written = write_curated(&state, &kept, &tmp);
    let report = written.inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&tmp);
    })?;
    dissect_io::commit_dir(&tmp, out).map_err(|e| TrainError::io(out, e))?;
    Ok(report)
}

/// The `round(keep · n)` (at least one) indices with the highest keys.
fn best_indices(keys: &[Option<f32>], keep: f64) -> HashSet<u64> {
    let n = keys.len();
    let count = ((n as f64 * keep).round() as usize).clamp(1, n.max(1));
    let mut order: Vec<usize> = (0..n).collect();
    // Scored samples first, higher keys first, then by index, so the choice is deterministic.
    order.sort_by(|&a, &b| match (keys[a], keys[b]) {
        (Some(x), Some(y)) => y.total_cmp(&x).then(a.cmp(&b)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(&b),
    });
    order.into_iter().take(count).map(|i| i as u64).collect()
}

fn write_curated(state: &RunState, kept: &HashSet<u64>, dir: &Path) -> Result<CurateReport> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let (mut samples, mut noisy, mut noisy_kept) = (0, 0, 0);
    let mut train = ShardWriter::new(dir, "train", 10_000)?;
    state.for_each_train_sample(|index, _, sample| {
        samples += 1;
        let flagged = sample.meta.as_ref().and_then(|m| m.noisy) == Some(true);
        noisy += u64::from(flagged);
        if kept.contains(&index) {
            noisy_kept += u64::from(flagged);
            copy_sample(&mut train, sample, Some(index))?;
        }
        Ok(())
    })?;
    let (train_pattern, train_index) = train.finish()?;
    let (test_pattern, test_size) = copy_held_out(state, dir)?;
    let source = &state.manifest;
    let manifest = DatasetManifest {
        name: format!("{}-curated", source.name),
        train: train_pattern,
        test: test_pattern,
        train_size: train_index.end(),
        test_size,
        image_size: source.image_size,
        class_names: source.class_names.clone(),
        templates: source.templates.clone(),
        noise_rate: noisy_kept as f64 / train_index.end().max(1) as f64,
        noisy_count: noisy_kept,
        seed: source.seed,
        headline: source.headline,
    };
    manifest.save(dir)?;
    let ranked_by = match state.strategy() {
        gap @ (Strategy::DissectMomentum | Strategy::DissectGated) => {
            format!("the final {gap} gap (history − last CLIPScore)")
        }
        Strategy::DissectWarmup => "the final dissect-warmup gap (warm-up score − last CLIPScore)".to_string(),
        other => format!("the last CLIPScore of the {other} run"),
    };
    Ok(CurateReport { ranked_by, samples, kept: train_index.end(), noisy, noisy_kept, manifest })
}

/// The run's held-out split, copied sample by sample; `("", 0)` when it has none.
fn copy_held_out(state: &RunState, dir: &Path) -> Result<(String, u64)> {
    if state.manifest.test.is_empty() {
        return Ok((String::new(), 0));
    }
    let set = state.manifest.test_set(&state.data_dir)?;
    let mut test = ShardWriter::new(dir, "test", 10_000)?;
    for_each_sample(&set, |_, _, sample| copy_sample(&mut test, sample, None))?;
    let (pattern, index) = test.finish()?;
    Ok((pattern, index.end()))
}

/// Writes a raw sample again (image bytes unchanged), recording where it came from.
fn copy_sample(writer: &mut ShardWriter, sample: RawSample, source_index: Option<u64>) -> Result<()> {
    let (Some((ext, image)), Some(caption)) = (sample.image, sample.caption) else {
        return Ok(()); // unusable in the source too: the loader skipped it there
    };
    let mut meta: SampleMeta = sample.meta.unwrap_or_default();
    if let Some(index) = source_index {
        meta.extra.insert("source_index".into(), index.into());
    }
    writer.write(&SampleOut { image_ext: &ext, image: &image, caption: &caption, meta: Some(&meta) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::best_indices;

    #[test]
    fn the_best_keys_are_kept_and_unscored_samples_last() {
        let keys = [Some(1.0), None, Some(3.0), Some(3.0), Some(-2.0)];
        let kept = |f| {
            let mut v: Vec<u64> = best_indices(&keys, f).into_iter().collect();
            v.sort();
            v
        };
        assert_eq!(kept(0.4), [2, 3]);
        assert_eq!(kept(0.6), [0, 2, 3]);
        assert_eq!(kept(1.0), [0, 1, 2, 3, 4]);
        assert_eq!(kept(0.01), [2], "at least one, ties by index");
    }
}
