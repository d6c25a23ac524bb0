//! Errors of the model crate.

use thiserror::Error;

/// Everything that can go wrong building, running, saving or loading a CLIP model.
#[derive(Debug, Error)]
pub enum ModelError {
    /// A preset name that does not exist.
    #[error(
        "unknown model preset {0:?} (expected one of micro, tiny, small, vit-b-32, rn-tiny, rn50, each also as \
         NAME-quickgelu, or an open_clip model-config .json)"
    )]
    UnknownPreset(String),
    /// A config dimension that cannot build a model.
    #[error("invalid model config: {field}: {reason}")]
    InvalidConfig {
        /// The config field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A model config file that does not parse.
    #[error("model config TOML: {0}")]
    Toml(String),
    /// Batch buffers that do not fit the model (sizes, token ids, end-of-text positions).
    #[error("batch: {0}")]
    Batch(String),
    /// The loss or the gradient norm became NaN or infinite (the step was not applied).
    #[error("non-finite {what}: {value}")]
    NonFinite {
        /// "loss" or "gradient norm".
        what: &'static str,
        /// The value.
        value: f32,
    },
    /// Weights or optimiser state that do not serialise or do not fit the model.
    #[error("checkpoint record: {0}")]
    Record(String),
    /// Tensor data that cannot be read back to the host.
    #[error("tensor data: {0}")]
    Data(String),
    /// A collective operation between the processes of a job failed.
    #[error(transparent)]
    Distributed(#[from] dissect_dist::DistError),
}
