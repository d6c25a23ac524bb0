//! The training configuration: one TOML file, every field optional, unknown fields refused.

use std::path::{Path, PathBuf};

use dissect_select::{SelectionConfig, Strategy, WarmupRows};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Dataset folder holding `dataset.json` (see `dissect data generate`).
    pub data: PathBuf,
    /// Run folder: config, tokenizer, logs, visit records, checkpoints.
    pub out: PathBuf,
    /// Model preset: micro, tiny, small, vit-b-32.
    pub model: String,
    pub epochs: u32,
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up steps before the cosine decay.
    pub warmup_steps: u64,
    pub weight_decay: f64,
    /// Global gradient-norm clip; 0 disables clipping.
    pub max_grad_norm: f32,
    pub strategy: Strategy,
    /// Selection rate r: fraction of each batch trained on.
    pub rate: f64,
    /// W for dissect-warmup.
    pub warmup_epochs: u32,
    /// β for dissect-momentum.
    pub momentum: f64,
    /// Rows trained on in epochs 0..W: "random" (the rule) or "all" (every row, any strategy).
    pub warmup_rows: WarmupRows,
    pub seed: u64,
    /// Compute device: "cpu" (Burn flex), or "cuda" / "cuda:N" in a build with `--features cuda`.
    pub device: String,
    /// Data-parallel ranks: the batch is split into `ranks` equal local batches, each scored,
    /// selected from and trained on by its own device (`cuda:K…` from `device`, or CPU threads
    /// sharing the CPU), with the gradients averaged. 1 = no data parallelism.
    pub ranks: usize,
    /// Decode threads of the loader.
    pub loader_threads: usize,
    /// Write a checkpoint every this many steps (0: only at epoch ends).
    pub checkpoint_every: u64,
    /// Checkpoints kept on disk (the newest ones).
    pub keep_checkpoints: usize,
    /// Evaluate on the held-out split every this many epochs (0: never; the last epoch always).
    pub eval_every: u32,
    /// Run folder or checkpoint folder of the frozen reference model (oracle strategies).
    pub reference: Option<PathBuf>,
    /// Keep the per-sample score state (24 bytes a sample) in a memory-mapped file
    /// `<out>/scores.mapped` instead of RAM, for datasets of hundreds of millions of pairs.
    pub mapped_scores: bool,
    /// Run the scoring pass even for full/random, to record CLIPScore trajectories.
    pub track_scores: bool,
    /// Visit-record format: "dsv" (compact binary), "csv", or "none".
    pub records: String,
    /// Upper bound of the BPE vocabulary trained on the captions.
    pub vocab_size: usize,
    /// Stop after this many optimiser steps in total (tests, smoke runs).
    pub max_steps: Option<u64>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            data: PathBuf::from("data/noisy-shapes"),
            out: PathBuf::from("runs/train"),
            model: "tiny".into(),
            epochs: 10,
            batch_size: 256,
            lr: 1e-3,
            warmup_steps: 50,
            weight_decay: 0.1,
            max_grad_norm: 1.0,
            strategy: Strategy::DissectWarmup,
            rate: 0.3,
            warmup_epochs: 2,
            momentum: 0.9,
            warmup_rows: WarmupRows::Random,
            seed: 0,
            device: "cpu".into(),
            ranks: 1,
            loader_threads: 2,
            checkpoint_every: 0,
            keep_checkpoints: 2,
            eval_every: 1,
            reference: None,
            mapped_scores: false,
            track_scores: false,
            records: "dsv".into(),
            vocab_size: 1024,
            max_steps: None,
            progress: true,
        }
    }
}

impl TrainConfig {
    /// Reads a TOML config; a wrong field or value is reported with its name and line.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let config: TrainConfig =
            toml::from_str(&text).map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?;
        config.validate()?;
        Ok(config)
    }

    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| TrainError::Config(e.to_string()))
    }

    pub fn selection(&self) -> Result<SelectionConfig> {
        let config = SelectionConfig::new(self.strategy, self.rate)
            .map_err(|e| TrainError::Config(format!("rate: {e}")))?
            .with_warmup_epochs(self.warmup_epochs)
            .with_warmup_rows(self.warmup_rows)
            .with_momentum(self.momentum)
            .map_err(|e| TrainError::Config(format!("momentum: {e}")))?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, why: String| Err(TrainError::Config(format!("{field}: {why}")));
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1".into());
        }
        if let Err(e) = dissect_model::rank_devices(&self.device, self.ranks) {
            return Err(TrainError::Config(e.to_string()));
        }
        if self.batch_size < 2 {
            return bad("batch_size", format!("a contrastive batch needs at least 2 rows, got {}", self.batch_size));
        }
        if !self.batch_size.is_multiple_of(self.ranks) {
            return bad(
                "ranks",
                format!("batch_size {} does not split into {} equal local batches", self.batch_size, self.ranks),
            );
        }
        let local_batch = self.batch_size / self.ranks;
        let kept = self.selection()?.keep_count(local_batch);
        if kept < 2 {
            let per_rank = if self.ranks > 1 {
                format!(" (the local batch of each of {} ranks)", self.ranks)
            } else {
                String::new()
            };
            return bad(
                "rate",
                format!("keeps {kept} of {local_batch} rows{per_rank}; a contrastive loss needs at least 2 rows"),
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", format!("must be a positive number, got {}", self.lr));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", format!("must be ≥ 0, got {}", self.weight_decay));
        }
        if !(self.max_grad_norm.is_finite() && self.max_grad_norm >= 0.0) {
            return bad("max_grad_norm", format!("must be ≥ 0, got {}", self.max_grad_norm));
        }
        if !matches!(self.records.as_str(), "dsv" | "csv" | "none") {
            return bad("records", format!("expected dsv, csv or none, got '{}'", self.records));
        }
        if self.keep_checkpoints == 0 {
            return bad("keep_checkpoints", "must be at least 1".into());
        }
        if self.strategy.is_oracle() && self.reference.is_none() {
            return bad(
                "reference",
                format!("strategy {} needs a reference model (a run or checkpoint folder)", self.strategy),
            );
        }
        dissect_model::ClipConfig::preset(&self.model).map_err(|e| TrainError::Config(format!("model: {e}")))?;
        self.selection()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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
        check("rate = 1.5", "rate");
        check("strategy = \"dissect\"", "strategy");
        check("batch_size = 1", "batch_size");
        check("model = \"huge\"", "model");
        check("strategy = \"oracle-clipscore\"", "reference");
        check("device = \"tpu\"", "device");
        check("warmup_rows = \"some\"", "warmup_rows");
        check("ranks = 0", "ranks: must be at least 1");
        check("ranks = 3", "ranks: batch_size 256 does not split into 3");
        #[cfg(not(feature = "cuda"))]
        check("ranks = 2\ndevice = \"cuda:7\"", "cuda:7");
        check("rate = 0.005", "rate: keeps 1 of 256 rows");
        check("batch_size = 16\nranks = 8", "rate: keeps 1 of 2 rows (the local batch of each of 8 ranks)");
        std::fs::write(&path, "strategy = \"dissect-momentum\"\nrate = 0.5\nepochs = 3\nwarmup_rows = \"all\"\n")
            .unwrap();
        let config = TrainConfig::from_toml_file(&path).unwrap();
        assert_eq!((config.strategy, config.rate, config.epochs), (Strategy::DissectMomentum, 0.5, 3));
        assert_eq!(config.selection().unwrap().warmup_rows, WarmupRows::All);
        let again: TrainConfig = toml::from_str(&config.to_toml().unwrap()).unwrap();
        assert_eq!(again, config);
    }
}
