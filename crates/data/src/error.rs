//! Error type of the data crate.

use std::path::PathBuf;

/// Everything that can go wrong while reading, writing or generating data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An I/O error on a file or directory.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A shard pattern whose braces cannot be expanded.
    #[error("bad shard pattern `{pattern}`: {reason}")]
    Pattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A shard pattern or list that names no shard.
    #[error("no shards matched `{0}`")]
    NoShards(String),
    /// A shard index file that cannot be used.
    #[error("bad index file {path}: {reason}")]
    Index {
        /// The index file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// JSON that cannot be parsed or written (manifest, index, sample metadata).
    #[error("JSON error in {context}: {source}")]
    Json {
        /// The file or the kind of document involved.
        context: String,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// An image that cannot be decoded or encoded.
    #[error("image error: {0}")]
    Image(#[from] image::ImageError),
    /// An image larger than the decode limit, refused from its header before any pixel is read.
    #[error(
        "image of {width} x {height} pixels is above the limit of {limit} pixels \
         (raise it with max_image_pixels, flag --max-image-pixels)"
    )]
    ImageTooLarge {
        /// The image's width in pixels.
        width: u32,
        /// The image's height in pixels.
        height: u32,
        /// The limit it exceeds (width × height), in pixels.
        limit: u64,
    },
    /// The tokenizer library failed, or a vocabulary lacks a required special token.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// An argument, option or request the crate refuses; the message says why.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// An input file of the wrong kind or format (pack input, Fashion-MNIST IDX file).
    #[error("bad input {path}: {reason}")]
    Input {
        /// The input file or directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The Fashion-MNIST files are not installed; the value says which file is missing.
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

/// Result of the data crate's fallible functions.
pub type Result<T> = std::result::Result<T, DataError>;
