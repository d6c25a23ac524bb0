//! `dataset.json`: the one format every crate reads to use a dataset folder (generated,
//! packed, or made for foreign shards), and the headline metric it names.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::shard::{ShardSet, write_atomic};

/// File name of the manifest in a generated dataset directory.
pub const MANIFEST_FILE: &str = "dataset.json";

/// `dataset.json`: what the trainer and evaluator need to use a generated dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetManifest {
    /// The benchmark's name.
    pub name: String,
    /// Shard patterns relative to the manifest's directory.
    pub train: String,
    /// Shard pattern of the test split, relative to the manifest's directory.
    pub test: String,
    /// Samples in the train split.
    pub train_size: u64,
    /// Samples in the test split.
    pub test_size: u64,
    /// Model input side length the dataset was made for.
    pub image_size: u32,
    /// Class names, in label order.
    pub class_names: Vec<String>,
    /// Zero-shot prompt templates, `{}` = class name.
    pub templates: Vec<String>,
    /// Requested fraction of noisy train pairs, 0–1.
    pub noise_rate: f64,
    /// Train pairs whose caption was actually swapped.
    pub noisy_count: u64,
    /// Seed the dataset was generated from.
    pub seed: u64,
    /// The metric a comparison on this data ranks by and measures "time to reach full" with.
    #[serde(default)]
    pub headline: HeadlineMetric,
}

/// What "better" means on a dataset: caption data is about retrieval, class-caption data
/// (every caption is a class name in a template) about naming the class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadlineMetric {
    /// `(TR R@1 + IR R@1) / 2` on the held-out pairs.
    #[default]
    MeanR1,
    /// Zero-shot top-1 accuracy over the dataset's classes.
    ZeroShotTop1,
}

impl HeadlineMetric {
    /// The metric's name in tables.
    pub fn label(self) -> &'static str {
        match self {
            HeadlineMetric::MeanR1 => "mean R@1",
            HeadlineMetric::ZeroShotTop1 => "zero-shot top-1",
        }
    }
}

impl DatasetManifest {
    /// Loads `dataset.json` from a directory or a direct path.
    pub fn load(path: &Path) -> Result<Self> {
        let file = if path.is_dir() { path.join(MANIFEST_FILE) } else { path.to_path_buf() };
        let text = std::fs::read_to_string(&file).map_err(|e| DataError::io(&file, e))?;
        serde_json::from_str(&text).map_err(|e| DataError::json(file.display().to_string(), e))
    }

    /// Writes `dataset.json` into `dir`, atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| DataError::json("manifest", e))?;
        write_atomic(&dir.join(MANIFEST_FILE), text.as_bytes())
    }

    /// A manifest for shards that came without one (open_clip-style patterns, several joined
    /// with `::`, relative to the working folder): no held-out split when `test` is empty, no
    /// classes, no recorded noise rate.
    pub fn for_shards(train: &str, test: &str, image_size: u32) -> Self {
        DatasetManifest {
            name: "shards".into(),
            train: train.into(),
            test: test.into(),
            train_size: 0,
            test_size: 0,
            image_size,
            class_names: Vec::new(),
            templates: Vec::new(),
            noise_rate: 0.0,
            noisy_count: 0,
            seed: 0,
            headline: HeadlineMetric::MeanR1,
        }
    }

    /// Opens the train shards; `dir` is the manifest's directory.
    pub fn train_set(&self, dir: &Path) -> Result<ShardSet> {
        ShardSet::from_pattern(&dir.join(&self.train).to_string_lossy())
    }

    /// Opens the test shards; `dir` is the manifest's directory.
    pub fn test_set(&self, dir: &Path) -> Result<ShardSet> {
        ShardSet::from_pattern(&dir.join(&self.test).to_string_lossy())
    }

    /// Prompts for every class: `[class][template]`.
    pub fn prompts(&self) -> Vec<Vec<String>> {
        self.class_names.iter().map(|c| self.templates.iter().map(|t| t.replace("{}", c)).collect()).collect()
    }
}
