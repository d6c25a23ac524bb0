//! Error type of the data crate.

use std::path::PathBuf;

/// Everything that can go wrong while reading, writing or generating data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bad shard pattern `{pattern}`: {reason}")]
    Pattern { pattern: String, reason: String },
    #[error("no shards matched `{0}`")]
    NoShards(String),
    #[error("bad index file {path}: {reason}")]
    Index { path: PathBuf, reason: String },
    #[error("JSON error in {context}: {source}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("image error: {0}")]
    Image(#[from] image::ImageError),
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("bad input {path}: {reason}")]
    Input { path: PathBuf, reason: String },
    #[error(
        "Fashion-MNIST files not found ({0}); install them with \
         `apt-get update && apt-get install -y dataset-fashion-mnist`"
    )]
    FashionMnistMissing(String),
}

impl DataError {
    /// Wraps an I/O error with the path it happened on, so messages say which file failed.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), source }
    }

    pub(crate) fn json(context: impl Into<String>, source: serde_json::Error) -> Self {
        DataError::Json { context: context.into(), source }
    }
}

pub type Result<T> = std::result::Result<T, DataError>;
