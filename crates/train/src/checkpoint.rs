//! Checkpoints: one folder per checkpoint, written in full under a temporary name and then
//! renamed, so a crash at any point leaves the previous checkpoint intact and `latest`
//! naming a complete one; and a trained model loaded back from a run or checkpoint folder.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dissect_data::TextTokenizer;
use dissect_model::burn::tensor::Device;
use dissect_model::{Clip, ClipConfig, model_from_bytes};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::files::RunFiles;
use crate::metrics::{EpochAccumulator, EpochSummary};

/// Model weights (Burn record).
pub const MODEL_FILE: &str = "model.bpk";
/// Optimiser state (Burn record).
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";
/// Score-state snapshot of the selection core.
pub const SELECTION_FILE: &str = "selection.dss";
/// The trainer's position ([`TrainerState`]).
pub const TRAINER_FILE: &str = "trainer.json";
const LATEST_FILE: &str = "latest";
/// 2: nested config sections, histogram and load counts in the epoch accumulator.
/// 3: per-tower model configs (`[vision.vit]` / `[vision.resnet]`, `[text]` in `model.toml`);
/// the weights record names the image tower's kind.
const FORMAT_VERSION: u32 = 3;

/// The trainer's position and everything needed to continue exactly from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    /// Layout version of this file (checked on load).
    pub format_version: u32,
    /// Epoch in progress (or the next one when `next_batch` is 0 and the epoch finished).
    pub epoch: u32,
    /// First batch of `epoch` not yet trained on.
    pub next_batch: u64,
    /// Optimiser steps taken.
    pub step: u64,
    /// Selection RNG (ChaCha8) seed.
    pub rng_seed: [u8; 32],
    /// Selection RNG stream.
    pub rng_stream: u64,
    /// Selection RNG word position (a string: it is a u128, which JSON numbers cannot hold).
    pub rng_word_pos: String,
    /// Training wall time so far (excluding evaluation), seconds.
    pub train_time_s: f64,
    /// Bytes of the visit-record file at checkpoint time: a resumed run truncates the file
    /// back to this length, so no visit is recorded twice.
    pub records_len: u64,
    /// Bytes of `log.jsonl` at checkpoint time (truncated back to it the same way).
    pub log_len: u64,
    /// The epoch in progress so far.
    pub epoch_accumulator: EpochAccumulator,
    /// Every finished epoch's summary.
    pub history: Vec<EpochSummary>,
}

/// The folder of a run's checkpoints.
pub fn checkpoints_dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

/// Writes `bytes` to `path` atomically (see `dissect_io`), naming the file in an error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    dissect_io::write_atomic(path, bytes).map_err(|e| TrainError::io(path, e))
}

/// What a checkpoint holds, already serialised by the caller.
pub struct CheckpointParts<'a> {
    /// Model weights.
    pub model: &'a [u8],
    /// Optimiser state.
    pub optimizer: &'a [u8],
    /// Selection state.
    pub selection: &'a dissect_select::ScoreState,
    /// Trainer position.
    pub trainer: &'a TrainerState,
}

/// Writes `checkpoints/step-NNNNNNNN/` atomically, points `latest` at it and prunes older
/// checkpoints beyond `keep`. Returns the checkpoint folder.
pub fn write_checkpoint(run: &Path, parts: &CheckpointParts<'_>, keep: usize) -> Result<PathBuf> {
    let dir = checkpoints_dir(run);
    fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    let name = format!("step-{:08}", parts.trainer.step);
    let final_dir = dir.join(&name);
    let tmp_dir = dir.join(format!(".{name}.tmp"));
    if tmp_dir.exists() {
        fs::remove_dir_all(&tmp_dir).map_err(|e| TrainError::io(&tmp_dir, e))?;
    }
    fs::create_dir_all(&tmp_dir).map_err(|e| TrainError::io(&tmp_dir, e))?;
    if let Err(e) = fill_checkpoint(&tmp_dir, parts) {
        // A failed write (a full disk, say) leaves no partial folder behind; `latest` still
        // names the previous checkpoint.
        let _ = fs::remove_dir_all(&tmp_dir);
        return Err(e);
    }
    dissect_io::commit_dir(&tmp_dir, &final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
    mark_latest(run, &name)?;
    prune(&dir, keep)?;
    Ok(final_dir)
}

/// Fills the temporary checkpoint folder. Plain writes suffice: the folder is not named as a
/// checkpoint until `dissect_io::commit_dir` has synced every file in it and renamed it.
fn fill_checkpoint(dir: &Path, parts: &CheckpointParts<'_>) -> Result<()> {
    let write =
        |name: &str, bytes: &[u8]| fs::write(dir.join(name), bytes).map_err(|e| TrainError::io(dir.join(name), e));
    write(MODEL_FILE, parts.model)?;
    write(OPTIMIZER_FILE, parts.optimizer)?;
    parts.selection.save(dir.join(SELECTION_FILE))?;
    let trainer = serde_json::to_vec_pretty(parts.trainer)
        .map_err(|e| TrainError::Checkpoint { path: dir.to_path_buf(), message: e.to_string() })?;
    write(TRAINER_FILE, &trainer)
}

fn prune(dir: &Path, keep: usize) -> Result<()> {
    let mut steps: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| TrainError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-")))
        .collect();
    steps.sort();
    let excess = steps.len().saturating_sub(keep);
    for old in &steps[..excess] {
        fs::remove_dir_all(old).map_err(|e| TrainError::io(old, e))?;
    }
    Ok(())
}

/// Names checkpoint `name` of `run` the newest (its folder must be complete).
pub(crate) fn mark_latest(run: &Path, name: &str) -> Result<()> {
    write_atomic(&checkpoints_dir(run).join(LATEST_FILE), name.as_bytes())
}

/// The newest complete checkpoint of a run, if any.
pub fn latest_checkpoint(run: &Path) -> Result<Option<PathBuf>> {
    let latest = checkpoints_dir(run).join(LATEST_FILE);
    match fs::read_to_string(&latest) {
        Ok(name) => {
            let dir = checkpoints_dir(run).join(name.trim());
            if !dir.join(TRAINER_FILE).is_file() {
                return Err(TrainError::Checkpoint {
                    path: dir,
                    message: "named by `latest` but incomplete or missing".into(),
                });
            }
            Ok(Some(dir))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TrainError::io(latest, e)),
    }
}

/// Reads a checkpoint's `trainer.json`, refusing another format version.
pub fn read_trainer_state(dir: &Path) -> Result<TrainerState> {
    let path = dir.join(TRAINER_FILE);
    let text = fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
    let state: TrainerState = serde_json::from_slice(&text)
        .map_err(|e| TrainError::Checkpoint { path: path.clone(), message: e.to_string() })?;
    if state.format_version != FORMAT_VERSION {
        return Err(TrainError::Checkpoint {
            path,
            message: format!("format version {} is not supported (expected {FORMAT_VERSION})", state.format_version),
        });
    }
    Ok(state)
}

/// Reads one file of a checkpoint folder.
pub fn read_file(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    fs::read(&path).map_err(|e| TrainError::io(path, e))
}

/// The `trainer.json` layout version this build writes.
pub fn trainer_format_version() -> u32 {
    FORMAT_VERSION
}

/// Loads a trained model (for evaluation or as an oracle reference) from a run folder (its
/// latest checkpoint) or a checkpoint folder, on `device`, with its tokenizer.
pub fn load_trained(path: &Path, device: &Device) -> Result<(Clip, ClipConfig, Arc<TextTokenizer>)> {
    let (config, run) = load_model_config(path)?;
    let checkpoint = if path.join(MODEL_FILE).is_file() {
        path.to_path_buf()
    } else {
        latest_checkpoint(&run)?.ok_or_else(|| TrainError::Checkpoint {
            path: run.clone(),
            message: "the run has no checkpoint yet".into(),
        })?
    };
    let model = Clip::new(&config, 0, device)?;
    let model = model_from_bytes(model, &read_file(&checkpoint, MODEL_FILE)?)?;
    let tokenizer = Arc::new(TextTokenizer::load(&RunFiles::new(&run).tokenizer())?);
    Ok((model, config, tokenizer))
}

/// The model config of a run folder or of a checkpoint folder inside one, and the run folder.
pub fn load_model_config(run_or_checkpoint: &Path) -> Result<(ClipConfig, PathBuf)> {
    // A checkpoint folder lives in <run>/checkpoints/<step>; accept either.
    let run = if RunFiles::new(run_or_checkpoint).model_config().is_file() {
        run_or_checkpoint.to_path_buf()
    } else {
        run_or_checkpoint.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default()
    };
    let path = RunFiles::new(&run).model_config();
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let config = ClipConfig::from_toml_str(&text).map_err(|e| {
        // Runs written before the per-tower layout (checkpoint format 2) have a flat model.toml.
        TrainError::Checkpoint {
            path: path.clone(),
            message: format!("{e} (a run from an older dissect cannot be read)"),
        }
    })?;
    Ok((config, run))
}
