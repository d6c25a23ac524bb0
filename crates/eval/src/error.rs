//! Error type shared by every metric and report function.

use thiserror::Error;

/// Everything that can go wrong when computing metrics or writing reports.
#[derive(Debug, Error)]
pub enum EvalError {
    #[error("feature dimension must be positive")]
    ZeroDim,
    #[error("{what}: buffer of {len} floats is not a multiple of dimension {dim}")]
    RaggedFeatures { what: &'static str, len: usize, dim: usize },
    #[error("{what}: dimension {got} does not match {expected}")]
    DimMismatch { what: &'static str, expected: usize, got: usize },
    #[error("{what}: non-finite value at row {row}")]
    NonFinite { what: &'static str, row: usize },
    #[error("{what}: length {got} does not match {expected}")]
    LengthMismatch { what: &'static str, expected: usize, got: usize },
    #[error("{what}: index {index} out of range (< {bound} required)")]
    IndexOutOfRange { what: &'static str, index: usize, bound: usize },
    #[error("image {0} has no caption, so image-to-text retrieval is undefined for it")]
    ImageWithoutText(usize),
    #[error("empty input: {0}")]
    Empty(&'static str),
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("plot: {0}")]
    Plot(String),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, EvalError>;
