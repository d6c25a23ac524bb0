//! Errors of the model crate.

use thiserror::Error;

/// Everything that can go wrong building, running, saving or loading a CLIP model.
#[derive(Debug, Error)]
pub enum ModelError {
    #[error("unknown model preset {0:?} (expected one of micro, tiny, small, vit-b-32)")]
    UnknownPreset(String),
    #[error("invalid model config: {field}: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error("model config TOML: {0}")]
    Toml(String),
    #[error("batch: {0}")]
    Batch(String),
    #[error("non-finite {what}: {value}")]
    NonFinite { what: &'static str, value: f32 },
    #[error("checkpoint record: {0}")]
    Record(String),
    #[error("tensor data: {0}")]
    Data(String),
}
