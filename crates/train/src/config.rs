//! The training configuration: one TOML file, every field optional, unknown fields refused.
//!
//! Top-level fields describe the run (data, model, budget, devices, checkpoints, logs); the
//! `[optim]` and `[selection]` sections hold the optimiser and the selection settings, each
//! declared once with its defaults (the selection section is the selection core's own
//! [`SelectionConfig`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dissect_select::{RecordFormat, SelectError, SelectionConfig};
use serde::{Deserialize, Serialize};

use dissect_data::RandomResizedCrop;
use dissect_model::{ClipConfig, OpenClipConfig, Precision, TowerLock};

use crate::error::{Result, TrainError};
use crate::ranks::SelectionScope;
use crate::schedule::{LrScheduler, Schedule};

/// Everything a training run is defined by. `dissect train --config run.toml` reads it; the
/// run folder keeps the resolved copy as `config.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Dataset folder holding `dataset.json` (`dissect data generate` or `dissect data pack`).
    pub data: PathBuf,
    /// Training shards as open_clip takes them (`cc3m/train-{0000..0575}.tar`, several
    /// patterns joined with `::`), used instead of `data`.
    pub train_data: Option<String>,
    /// Held-out shards for evaluation, with `train_data` (without them nothing is evaluated).
    pub val_data: Option<String>,
    /// Image side the model trains at on `train_data` shards (a dataset folder records its own).
    pub image_size: u32,
    /// Training augmentation: open_clip's training transform (a random resized crop of 90–100%
    /// of the area, aspect 3:4–4:3), or none. Scoring and evaluation always take the centre crop.
    pub aug: Augmentation,
    /// Images of more pixels (width × height) than this are skipped undecoded and counted as
    /// corrupt; the default is PIL's limit ([`dissect_data::DEFAULT_MAX_IMAGE_PIXELS`]).
    pub max_image_pixels: u64,
    /// Run folder: config, tokenizer, logs, visit records, checkpoints.
    pub out: PathBuf,
    /// Model preset (micro, tiny, small, vit-b-32, rn-tiny, rn50), or an open_clip model-config JSON file.
    pub model: String,
    /// Start a fresh run from these weights: a dissect run or checkpoint folder (its model
    /// config and tokenizer come along), or open_clip's state dict in a `.safetensors` file or a
    /// PyTorch `.pt`/`.pth`/`.bin` (a bare state dict or an open_clip_train checkpoint)
    /// (with `model` set to its model-config JSON).
    pub init: Option<PathBuf>,
    /// A `tokenizer.json` to use instead of training a BPE on the captions.
    pub tokenizer: Option<PathBuf>,
    /// Lock the image tower (LiT): no gradient, no update, BatchNorm statistics kept.
    pub lock_image: bool,
    /// With `lock_image`, how many of the tower's last groups still train (open_clip's).
    pub lock_image_unlocked_groups: usize,
    /// Lock the text tower.
    pub lock_text: bool,
    /// With `lock_text`, how many of the tower's last groups still train (open_clip's).
    pub lock_text_unlocked_layers: usize,
    /// Passes over the training split.
    pub epochs: u32,
    /// Rows per batch (all processes of a job together) before selection.
    pub batch_size: usize,
    /// Train the selected rows in this many micro-batches, the contrastive loss still over all
    /// of them (open_clip's `--accum-freq`): less activation memory, the same step.
    pub accum_freq: usize,
    /// The arithmetic of the passes (open_clip's `--precision`): `fp32`; `amp_bf16` (matrix
    /// products, attention and convolutions in bf16, the rest in f32); or `bf16` (the towers
    /// wholly in bf16, on f32 master weights). The bf16 kinds need a LibTorch device.
    pub precision: Precision,
    /// Burn's gradient checkpointing on the training device (its "balanced" strategy: the
    /// outputs of memory-bound operations are recomputed in the backward pass, not kept).
    pub grad_checkpointing: bool,
    /// Seed of the model initialisation, the data order and the selection RNG.
    pub seed: u64,
    /// Compute device: "cpu" (Burn flex), or "cuda" / "cuda:N" in a build with `--features cuda`.
    pub device: String,
    /// In a job of several processes (torchrun), which rows each process's selection chooses
    /// among: its own slice of the batch (`local`, the default) or the whole batch (`global`).
    pub selection_scope: SelectionScope,
    /// In a job of several processes, each computes only its own rows' terms of the
    /// contrastive loss (open_clip's `--local-loss`): the same loss with less memory.
    pub local_loss: bool,
    /// In a job of several processes, gradients flow from every process's loss terms back to
    /// the owner of each row (open_clip's `--gather-with-grad`); matters with `local_loss`.
    pub gather_with_grad: bool,
    /// In-process data-parallel ranks, which earlier versions had; only 1 is accepted now (a
    /// job of several processes replaces them). Read so that old run folders still parse.
    #[serde(default, skip_serializing)]
    pub ranks: Option<usize>,
    /// Decode threads of the loader.
    pub loader_threads: usize,
    /// Write a checkpoint every this many steps (0: only at epoch ends).
    pub checkpoint_every: u64,
    /// Checkpoints kept on disk (the newest ones).
    pub keep_checkpoints: usize,
    /// Evaluate on the held-out split every this many epochs (0: never; the last epoch always).
    pub eval_every: u32,
    /// A labelled image folder (one sub-folder per class, as ImageNet's) scored zero-shot at
    /// every evaluation, next to the held-out split.
    pub zeroshot_data: Option<PathBuf>,
    /// Its prompt templates: `imagenet` (open_clip's 80) or a file; by default the folder's
    /// `templates.txt`, else `a photo of a {}.`.
    pub zeroshot_templates: Option<String>,
    /// Run folder or checkpoint folder of the frozen reference model (oracle strategies).
    pub reference: Option<PathBuf>,
    /// Keep the per-sample score state (24 bytes a sample) in a memory-mapped file
    /// `<out>/scores.mapped` instead of RAM, for datasets of hundreds of millions of pairs.
    pub mapped_scores: bool,
    /// Run the scoring pass even for full/random, to record CLIPScore trajectories.
    pub track_scores: bool,
    /// Visit-record format: "dsv" (compact binary), "csv", or "none".
    #[serde(with = "records_setting")]
    pub records: Option<RecordFormat>,
    /// Upper bound of the BPE vocabulary trained on the captions.
    pub vocab_size: usize,
    /// Stop after this many optimiser steps in total (tests, smoke runs).
    pub max_steps: Option<u64>,
    /// Optimiser and learning-rate schedule.
    pub optim: OptimConfig,
    /// Selection strategy and its parameters.
    pub selection: SelectionConfig,
}

/// How training images are augmented.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Augmentation {
    /// open_clip's training transform: `RandomResizedCrop(scale=(0.9, 1.0))` with bicubic
    /// resampling, seeded per sample and epoch.
    #[default]
    OpenClip,
    /// The deterministic centre crop, as evaluation.
    None,
}

impl Augmentation {
    /// The random crop this augmentation takes, if any.
    pub fn random_resized_crop(self) -> Option<RandomResizedCrop> {
        match self {
            Augmentation::OpenClip => Some(RandomResizedCrop::default()),
            Augmentation::None => None,
        }
    }
}

/// AdamW (open_clip's betas and epsilon by default) with a linear warm-up, then one of
/// open_clip_train's learning-rate schedules, and global gradient-norm clipping.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up steps before the schedule.
    pub warmup_steps: u64,
    /// The schedule after the warm-up: cosine (default), const or const-cooldown.
    pub lr_scheduler: LrScheduler,
    /// Epochs of cooldown at the end of a const-cooldown schedule.
    pub epochs_cooldown: u32,
    /// Power of the cooldown (1: linear).
    pub lr_cooldown_power: f64,
    /// Learning rate at the end of the cooldown.
    pub lr_cooldown_end: f64,
    /// AdamW's first-moment decay.
    pub beta1: f64,
    /// AdamW's second-moment decay.
    pub beta2: f64,
    /// AdamW's epsilon.
    pub eps: f64,
    /// Decoupled weight decay of the decayed parameter group.
    pub weight_decay: f64,
    /// Global gradient-norm clip; 0 disables clipping.
    pub max_grad_norm: f32,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: 1e-3,
            warmup_steps: 50,
            lr_scheduler: LrScheduler::Cosine,
            epochs_cooldown: 0,
            lr_cooldown_power: 1.0,
            lr_cooldown_end: 0.0,
            // open_clip_train's defaults for ViT models.
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            weight_decay: 0.1,
            max_grad_norm: 1.0,
        }
    }
}

impl TrainConfig {
    /// The image tower's lock, if `lock_image`.
    pub fn image_lock(&self) -> Option<TowerLock> {
        self.lock_image.then_some(TowerLock { unlocked_groups: self.lock_image_unlocked_groups })
    }

    /// The text tower's lock, if `lock_text`.
    pub fn text_lock(&self) -> Option<TowerLock> {
        self.lock_text.then_some(TowerLock { unlocked_groups: self.lock_text_unlocked_layers })
    }
}

impl OptimConfig {
    /// The learning-rate schedule of a run of `epochs` epochs of `steps_per_epoch` steps.
    pub fn schedule(&self, epochs: u32, steps_per_epoch: u64) -> Schedule {
        Schedule {
            kind: self.lr_scheduler,
            base_lr: self.lr,
            warmup_steps: self.warmup_steps,
            total_steps: steps_per_epoch * u64::from(epochs),
            cooldown_steps: steps_per_epoch * u64::from(self.epochs_cooldown),
            cooldown_power: self.lr_cooldown_power,
            cooldown_end: self.lr_cooldown_end,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            data: PathBuf::from("data/noisy-shapes"),
            train_data: None,
            val_data: None,
            image_size: 224,
            aug: Augmentation::OpenClip,
            max_image_pixels: dissect_data::DEFAULT_MAX_IMAGE_PIXELS,
            out: PathBuf::from("runs/train"),
            model: "tiny".into(),
            init: None,
            tokenizer: None,
            lock_image: false,
            lock_image_unlocked_groups: 0,
            lock_text: false,
            lock_text_unlocked_layers: 0,
            epochs: 10,
            batch_size: 256,
            accum_freq: 1,
            grad_checkpointing: false,
            precision: Precision::Fp32,
            seed: 0,
            device: "cpu".into(),
            selection_scope: SelectionScope::Local,
            local_loss: false,
            gather_with_grad: false,
            ranks: None,
            loader_threads: 2,
            checkpoint_every: 0,
            keep_checkpoints: 2,
            eval_every: 1,
            zeroshot_data: None,
            zeroshot_templates: None,
            reference: None,
            mapped_scores: false,
            track_scores: false,
            records: Some(RecordFormat::Binary),
            vocab_size: 1024,
            max_steps: None,
            optim: OptimConfig::default(),
            selection: SelectionConfig::default(),
        }
    }
}

/// Settings a resumed run may change. The loader gives the same batches for any thread count,
/// the loss variants of a job of processes take the same step (but for `local_loss` alone),
/// the score state's storage does not change its values, and the zero-shot folder is only
/// evaluated; a different device or precision continues the run but gives up bit-equality
/// with an unbroken one.
const RESUMABLE_CHANGES: [&str; 13] = [
    "out",
    "precision",
    "local_loss",
    "gather_with_grad",
    "epochs",
    "max_steps",
    "checkpoint_every",
    "keep_checkpoints",
    "loader_threads",
    "device",
    "mapped_scores",
    "zeroshot_data",
    "zeroshot_templates",
];

impl TrainConfig {
    /// Reads a TOML config; a wrong field or value is reported with its name and line.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        Self::read_validated(path, Self::from_toml_str)
    }

    /// A run folder's resolved `config.toml`. A run written before a setting existed gets the
    /// value it trained with: `aug = "none"` (augmentation came later, on by default), so that
    /// resuming it with augmentation is refused by name rather than silently changing it.
    pub(crate) fn from_run_folder(path: &Path) -> Result<Self> {
        Self::read_validated(path, |text| {
            let mut table: toml::Table = toml::from_str(text).map_err(|e| TrainError::Config(e.to_string()))?;
            table.entry("aug").or_insert_with(|| toml::Value::String("none".into()));
            Self::from_table(table)
        })
    }

    /// Reads `path`, parses it with `parse` (its config errors prefixed with the path) and
    /// validates the result.
    fn read_validated(path: &Path, parse: impl FnOnce(&str) -> Result<Self>) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let config = parse(&text).map_err(|e| match e {
            TrainError::Config(why) => TrainError::Config(format!("{}: {why}", path.display())),
            other => other,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML config without validating it (see [`TrainConfig::validate`]).
    pub fn from_toml_str(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| TrainError::Config(e.to_string()))
    }

    /// Parses a config from a TOML table (a file's table with overrides merged in).
    pub fn from_table(table: toml::Table) -> Result<Self> {
        table.try_into().map_err(|e: toml::de::Error| TrainError::Config(e.to_string()))
    }

    /// The config as a TOML table, e.g. to merge overrides into.
    pub fn to_table(&self) -> Result<toml::Table> {
        toml::Table::try_from(self).map_err(|e| TrainError::Config(e.to_string()))
    }

    /// The config as the TOML text that [`TrainConfig::from_toml_str`] reads back.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| TrainError::Config(e.to_string()))
    }

    /// Checks every field; the error names the field (`selection.rate: ...`).
    pub fn validate(&self) -> Result<()> {
        self.validate_for(1)
    }

    /// [`TrainConfig::validate`] for a job of `world` processes, which split each batch.
    pub fn validate_for(&self, world: usize) -> Result<()> {
        self.validate_budget(world)?;
        self.validate_optim()?;
        self.validate_selection(world)?;
        if self.model.ends_with(".json") {
            open_clip_config(Path::new(&self.model))?;
        } else {
            dissect_model::ClipConfig::preset(&self.model).map_err(|e| bad("model", e.to_string()))?;
        }
        if let Some(init) = self.init.as_deref().filter(|p| !p.exists()) {
            return Err(bad("init", format!("{} does not exist", init.display())));
        }
        if let Some(dir) = self.zeroshot_data.as_deref().filter(|d| !d.is_dir()) {
            return Err(bad("zeroshot_data", format!("{} is not a folder", dir.display())));
        }
        match self.zeroshot_templates.as_deref() {
            Some(file) if file != "imagenet" && !Path::new(file).is_file() => {
                Err(bad("zeroshot_templates", format!("{file} is neither `imagenet` nor a file")))
            }
            _ => Ok(()),
        }
    }

    fn validate_budget(&self, world: usize) -> Result<()> {
        if self.val_data.is_some() && self.train_data.is_none() {
            return Err(bad("val_data", "goes with train_data (a dataset folder has its own held-out split)"));
        }
        if !(8..=4096).contains(&self.image_size) {
            return Err(bad("image_size", format!("must be in 8..=4096, got {}", self.image_size)));
        }
        if self.ranks.is_some_and(|ranks| ranks != 1) {
            return Err(bad(
                "ranks",
                "in-process ranks were replaced by processes: launch `torchrun --no-python --nproc-per-node N \
                 dissect train ...` (README, \"Many GPUs\")",
            ));
        }
        if self.accum_freq == 0 || (self.accum_freq > 1 && world > 1) {
            return Err(bad(
                "accum_freq",
                format!("must be at least 1, and 1 in a job of several processes; got {}", self.accum_freq),
            ));
        }
        if self.max_image_pixels == 0 {
            return Err(bad("max_image_pixels", "must be at least 1"));
        }
        if self.epochs == 0 {
            return Err(bad("epochs", "must be at least 1"));
        }
        dissect_model::device_from_name(&self.device)
            .and_then(|device| self.precision.check_device(&device))
            .map_err(|e| TrainError::Config(e.to_string()))?;
        if self.batch_size < 2 {
            return Err(bad(
                "batch_size",
                format!("a contrastive batch needs at least 2 rows, got {}", self.batch_size),
            ));
        }
        if !self.batch_size.is_multiple_of(world) {
            return Err(bad(
                "batch_size",
                format!("{} does not split into {world} equal slices, one per process", self.batch_size),
            ));
        }
        if self.keep_checkpoints == 0 {
            return Err(bad("keep_checkpoints", "must be at least 1"));
        }
        Ok(())
    }

    fn validate_optim(&self) -> Result<()> {
        let o = &self.optim;
        if !(o.lr.is_finite() && o.lr > 0.0) {
            return Err(bad("optim.lr", format!("must be a positive number, got {}", o.lr)));
        }
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            return Err(bad("optim.weight_decay", format!("must be ≥ 0, got {}", o.weight_decay)));
        }
        if !(o.max_grad_norm.is_finite() && o.max_grad_norm >= 0.0) {
            return Err(bad("optim.max_grad_norm", format!("must be ≥ 0, got {}", o.max_grad_norm)));
        }
        for (field, beta) in [("optim.beta1", o.beta1), ("optim.beta2", o.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(bad(field, format!("must be in [0, 1), got {beta}")));
            }
        }
        if !(o.eps.is_finite() && o.eps > 0.0) {
            return Err(bad("optim.eps", format!("must be a positive number, got {}", o.eps)));
        }
        self.validate_cooldown()
    }

    fn validate_cooldown(&self) -> Result<()> {
        let o = &self.optim;
        if o.lr_scheduler == LrScheduler::ConstCooldown && !(1..=self.epochs).contains(&o.epochs_cooldown) {
            return Err(bad(
                "optim.epochs_cooldown",
                format!(
                    "a const-cooldown schedule needs 1..={} cooldown epochs, got {}",
                    self.epochs, o.epochs_cooldown
                ),
            ));
        }
        if !(o.lr_cooldown_power.is_finite() && o.lr_cooldown_power > 0.0) {
            return Err(bad("optim.lr_cooldown_power", format!("must be positive, got {}", o.lr_cooldown_power)));
        }
        if !(o.lr_cooldown_end.is_finite() && (0.0..=o.lr).contains(&o.lr_cooldown_end)) {
            return Err(bad("optim.lr_cooldown_end", format!("must be in [0, lr], got {}", o.lr_cooldown_end)));
        }
        Ok(())
    }

    fn validate_selection(&self, world: usize) -> Result<()> {
        let selection = &self.selection;
        if let Err(e) = selection.validate() {
            let field = match e {
                SelectError::InvalidMomentum(_) => "selection.momentum",
                _ => "selection.rate",
            };
            return Err(bad(field, e));
        }
        let local_batch = match self.selection_scope {
            SelectionScope::Local => self.batch_size / world,
            SelectionScope::Global => self.batch_size,
        };
        let kept = selection.keep_count(local_batch);
        if kept < 2 {
            let per_rank = if local_batch < self.batch_size {
                format!(" (the slice of each of {world} processes)")
            } else {
                String::new()
            };
            return Err(bad(
                "selection.rate",
                format!("keeps {kept} of {local_batch} rows{per_rank}; a contrastive loss needs at least 2 rows"),
            ));
        }
        if selection.strategy.is_oracle() && self.reference.is_none() {
            return Err(bad(
                "reference",
                format!("strategy {} needs a reference model (a run or checkpoint folder)", selection.strategy),
            ));
        }
        Ok(())
    }

    /// Settings that are valid but probably not what was meant, each naming its field.
    pub fn warnings(&self) -> Vec<String> {
        let s = &self.selection;
        let mut out = Vec::new();
        if s.has_warmup()
            && s.strategy.needs() != Default::default()
            && s.warmup_epochs.fixed().is_some_and(|w| w >= self.epochs)
        {
            out.push(format!(
                "selection.warmup_epochs: W = {} is not below epochs = {}, so the run ends in its warm-up and never \
                 selects by {}",
                s.warmup_epochs,
                self.epochs,
                if s.strategy == dissect_select::Strategy::DissectWarmup { "the DISSect gap" } else { "its scores" }
            ));
        }
        out
    }

    /// Refuses to resume a run saved with `saved` under this config when a setting that
    /// shapes the results differs (only the run length, checkpointing, loader threads, device
    /// and score-state storage may change).
    pub fn check_resumable_from(&self, saved: &TrainConfig) -> Result<()> {
        let (before, now) = (flatten(&saved.to_table()?), flatten(&self.to_table()?));
        let keys: std::collections::BTreeSet<&String> = before.keys().chain(now.keys()).collect();
        for key in keys {
            if RESUMABLE_CHANGES.contains(&key.as_str()) || before.get(key) == now.get(key) {
                continue;
            }
            let shown = |v: Option<&toml::Value>| v.map_or("nothing".into(), |v| v.to_string());
            return Err(bad(
                key,
                format!(
                    "the run in {} was started with {}, not {}; resume it with the same value or start a new run folder",
                    self.out.display(),
                    shown(before.get(key)),
                    shown(now.get(key)),
                ),
            ));
        }
        Ok(())
    }
}

fn bad(field: &str, why: impl std::fmt::Display) -> TrainError {
    TrainError::Config(format!("{field}: {why}"))
}

/// `section.field` → value for every leaf of a table.
fn flatten(table: &toml::Table) -> BTreeMap<String, toml::Value> {
    let mut out = BTreeMap::new();
    for (key, value) in table {
        match value {
            toml::Value::Table(inner) => {
                out.extend(flatten(inner).into_iter().map(|(k, v)| (format!("{key}.{k}"), v)));
            }
            leaf => {
                out.insert(key.clone(), leaf.clone());
            }
        }
    }
    out
}

/// Merges `overrides` into `base`, section by section (a flag overriding `selection.rate`
/// keeps the file's other selection settings).
pub fn merge_tables(base: &mut toml::Table, overrides: toml::Table) {
    for (key, value) in overrides {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(over)) => merge_tables(inner, over),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// `records = "dsv" | "csv" | "none"`: TOML has no null, so "no records" is a word.
mod records_setting {
    use dissect_select::RecordFormat;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<RecordFormat>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(format) => format.serialize(s),
            None => s.serialize_str("none"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RecordFormat>, D::Error> {
        match String::deserialize(d)?.as_str() {
            "none" => Ok(None),
            "dsv" => Ok(Some(RecordFormat::Binary)),
            "csv" => Ok(Some(RecordFormat::Csv)),
            other => Err(serde::de::Error::custom(format!("expected dsv, csv or none, got '{other}'"))),
        }
    }
}

/// Our config of an open_clip model-config JSON file.
pub(crate) fn open_clip_config(path: &Path) -> Result<ClipConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let parsed = OpenClipConfig::from_json(&text).and_then(|c| c.to_clip_config());
    parsed.map_err(|e| TrainError::Config(format!("model: {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use dissect_select::{Strategy, WarmupEpochs, WarmupRows};

    use super::*;

    #[test]
    fn bad_fields_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let check = |text: &str, expect: &str| {
            std::fs::write(&path, text).unwrap();
            let err = TrainConfig::from_toml_file(&path).unwrap_err().to_string();
            assert!(err.contains(expect), "expected '{expect}' in: {err}");
        };
        check("epohcs = 3", "epohcs");
        check("[selection]\nrate = 1.5", "selection.rate");
        check("[selection]\nmomentum = 1.5", "selection.momentum");
        check("[selection]\nstrategy = \"dissect\"", "strategy");
        check("[optim]\nlr = -1.0", "optim.lr");
        check("[optim]\nlearning_rate = 1.0", "learning_rate");
        check("batch_size = 1", "batch_size");
        check("model = \"huge\"", "model");
        check("[selection]\nstrategy = \"oracle-clipscore\"", "reference");
        check("device = \"tpu\"", "device");
        check("records = \"json\"", "records");
        check("[selection]\nwarmup_rows = \"some\"", "warmup_rows");
        check("ranks = 2", "ranks: in-process ranks were replaced by processes");
        #[cfg(not(feature = "cuda"))]
        check("device = \"cuda:7\"", "cuda:7");
        check("[selection]\nrate = 0.005", "selection.rate: keeps 1 of 256 rows");
        let world = |text: &str, world: usize| TrainConfig::from_toml_str(text).unwrap().validate_for(world);
        let err = world("", 3).unwrap_err().to_string();
        assert!(err.contains("batch_size: 256 does not split into 3 equal slices"), "{err}");
        let err = world("batch_size = 16", 8).unwrap_err().to_string();
        assert!(err.contains("selection.rate: keeps 1 of 2 rows (the slice of each of 8 processes)"), "{err}");
        assert!(world("batch_size = 16\nselection_scope = \"global\"", 8).is_ok());
        assert!(world("ranks = 1", 1).is_ok(), "an old run folder's `ranks = 1` still reads");
        let text = "epochs = 3\nrecords = \"none\"\n[selection]\nstrategy = \"dissect-momentum\"\nrate = 0.5\nwarmup_rows = \"all\"\n";
        std::fs::write(&path, text).unwrap();
        let config = TrainConfig::from_toml_file(&path).unwrap();
        let s = config.selection;
        assert_eq!((s.strategy, s.rate, s.warmup_epochs, config.epochs), (Strategy::DissectMomentum, 0.5, 2.into(), 3));
        assert_eq!((s.warmup_rows, config.records), (WarmupRows::All, None));
        assert_eq!(TrainConfig::from_toml_str(&config.to_toml().unwrap()).unwrap(), config);
    }

    #[test]
    fn a_warm_up_as_long_as_the_run_is_warned_about() {
        let mut config = TrainConfig { epochs: 3, ..TrainConfig::default() };
        config.selection.warmup_epochs = 3.into();
        let warnings = config.warnings();
        assert!(warnings.len() == 1 && warnings[0].starts_with("selection.warmup_epochs: W = 3"), "{warnings:?}");
        config.selection.warmup_epochs = 2.into();
        assert!(config.warnings().is_empty());
        config.selection.strategy = Strategy::Random;
        config.selection.warmup_epochs = 9.into();
        assert!(config.warnings().is_empty(), "random has no warm-up to outlast");
        config.selection.strategy = Strategy::DissectWarmup;
        config.selection.warmup_epochs = WarmupEpochs::Auto;
        assert!(config.warnings().is_empty(), "auto ends by half the run");
        let auto = TrainConfig::from_toml_str("[selection]\nwarmup_epochs = \"auto\"").unwrap();
        assert_eq!(auto.selection.warmup_epochs, WarmupEpochs::Auto);
        assert_eq!(TrainConfig::from_toml_str(&auto.to_toml().unwrap()).unwrap(), auto);
        let err = TrainConfig::from_toml_str("[selection]\nwarmup_epochs = \"later\"").unwrap_err().to_string();
        assert!(err.contains("warmup_epochs") && err.contains("auto"), "{err}");
    }

    #[test]
    fn overrides_merge_per_section_and_resume_names_the_changed_field() {
        let mut table = TrainConfig::default().to_table().unwrap();
        let overrides: toml::Table = toml::from_str("epochs = 4\n[selection]\nrate = 0.5").unwrap();
        merge_tables(&mut table, overrides);
        let config = TrainConfig::from_table(table).unwrap();
        assert_eq!((config.epochs, config.selection.rate), (4, 0.5));
        assert_eq!(config.selection.strategy, TrainConfig::default().selection.strategy);

        let saved = TrainConfig::default();
        let more_epochs = TrainConfig { epochs: 20, ..saved.clone() };
        assert!(more_epochs.check_resumable_from(&saved).is_ok());
        let err = config.check_resumable_from(&saved).unwrap_err().to_string();
        assert!(err.starts_with("config: selection.rate: the run in"), "{err}");
    }

    #[test]
    fn a_run_folder_from_before_augmentation_resumes_only_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let mut old = TrainConfig::default().to_table().unwrap();
        old.remove("aug");
        std::fs::write(&path, toml::to_string(&old).unwrap()).unwrap();
        let saved = TrainConfig::from_run_folder(&path).unwrap();
        assert_eq!(saved.aug, Augmentation::None);
        let err = TrainConfig::default().check_resumable_from(&saved).unwrap_err().to_string();
        assert!(err.contains("aug"), "{err}");
        let without = TrainConfig { aug: Augmentation::None, ..TrainConfig::default() };
        assert!(without.check_resumable_from(&saved).is_ok());
    }
}
