//! Error type shared by every metric and report function.

use thiserror::Error;

/// Everything that can go wrong when computing metrics or writing reports.
#[derive(Debug, Error)]
pub enum EvalError {
    /// A feature matrix was given dimension 0.
    #[error("feature dimension must be positive")]
    ZeroDim,
    /// A feature buffer's length is not a multiple of its dimension.
    #[error("{what}: buffer of {len} floats is not a multiple of dimension {dim}")]
    RaggedFeatures {
        /// Which features.
        what: &'static str,
        /// Floats in the buffer.
        len: usize,
        /// The row dimension.
        dim: usize,
    },
    /// Two feature matrices that must share a dimension do not.
    #[error("{what}: dimension {got} does not match {expected}")]
    DimMismatch {
        /// Which features.
        what: &'static str,
        /// The dimension required.
        expected: usize,
        /// The dimension given.
        got: usize,
    },
    /// A feature matrix holds a NaN or infinite value.
    #[error("{what}: non-finite value at row {row}")]
    NonFinite {
        /// Which features.
        what: &'static str,
        /// Row of the first non-finite value.
        row: usize,
    },
    /// An input has a different number of rows or entries than another it pairs with.
    #[error("{what}: length {got} does not match {expected}")]
    LengthMismatch {
        /// Which inputs, e.g. "labels vs image rows".
        what: &'static str,
        /// The length required.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// An index (an image of a text, a class label) is not below its bound.
    #[error("{what}: index {index} out of range (< {bound} required)")]
    IndexOutOfRange {
        /// Which indices.
        what: &'static str,
        /// The offending index.
        index: usize,
        /// The exclusive upper bound.
        bound: usize,
    },
    /// An image has no text in the retrieval ground truth; the value is the image index.
    #[error("image {0} has no caption, so image-to-text retrieval is undefined for it")]
    ImageWithoutText(usize),
    /// Too little input to compute on (no queries, fewer than 2 pairs, …); the value says what.
    #[error("empty input: {0}")]
    Empty(&'static str),
    /// An otherwise invalid argument (histogram bins or edges, prompt template count); the
    /// value says what.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// Drawing or writing a plot failed, or the bundled font could not be loaded.
    #[error("plot: {0}")]
    Plot(String),
    /// JSON (de)serialisation failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// An I/O error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Result of the eval crate's fallible functions.
pub type Result<T> = std::result::Result<T, EvalError>;
