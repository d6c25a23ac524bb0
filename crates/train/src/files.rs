//! The files of a run folder, named in one place.

use std::path::{Path, PathBuf};

use dissect_select::RecordFormat;

/// The resolved config the run was started with.
pub const CONFIG_FILE: &str = "config.toml";
/// The model's config (preset resolved against the data and the tokenizer).
pub const MODEL_CONFIG_FILE: &str = "model.toml";
/// The BPE tokenizer trained on the training captions.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// One JSON line per step and per epoch.
pub const LOG_FILE: &str = "log.jsonl";
/// The run's outcome, written when it ends.
pub const SUMMARY_FILE: &str = "summary.json";
/// The live score state while `mapped_scores` is on (removed when the run ends: the newest
/// checkpoint holds its snapshot).
pub const MAPPED_SCORES_FILE: &str = "scores.mapped";

/// Paths inside one run folder.
#[derive(Debug, Clone)]
pub struct RunFiles {
    root: PathBuf,
}

impl RunFiles {
    /// The files of the run folder `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RunFiles { root: root.into() }
    }

    /// The run folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `config.toml`.
    pub fn config(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }

    /// `model.toml`.
    pub fn model_config(&self) -> PathBuf {
        self.root.join(MODEL_CONFIG_FILE)
    }

    /// `tokenizer.json`.
    pub fn tokenizer(&self) -> PathBuf {
        self.root.join(TOKENIZER_FILE)
    }

    /// `log.jsonl`.
    pub fn log(&self) -> PathBuf {
        self.root.join(LOG_FILE)
    }

    /// `summary.json`.
    pub fn summary(&self) -> PathBuf {
        self.root.join(SUMMARY_FILE)
    }

    /// `scores.mapped`.
    pub fn mapped_scores(&self) -> PathBuf {
        self.root.join(MAPPED_SCORES_FILE)
    }

    /// `visits.dsv` or `visits.csv`.
    pub fn records(&self, format: RecordFormat) -> PathBuf {
        self.root.join(format!("visits.{}", format.extension()))
    }
}
