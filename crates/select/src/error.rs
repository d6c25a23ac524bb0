use std::path::PathBuf;

/// Everything the selection core can refuse. Messages name the offending value so a
/// user can fix their config or data without reading the source.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("selection rate must be in (0, 1], got {0}")]
    InvalidRate(f64),
    #[error("momentum beta must be in [0, 1), got {0}")]
    InvalidMomentum(f64),
    #[error("unknown strategy '{0}' (expected one of: {list})", list = crate::Strategy::NAMES.join(", "))]
    UnknownStrategy(String),
    #[error("unknown warm-up rows '{0}' (expected random or all)")]
    UnknownWarmupRows(String),
    #[error("the batch is empty")]
    EmptyBatch,
    #[error("dataset index {index} at batch position {position} is out of range: the score state holds {len} samples")]
    IndexOutOfRange { index: u64, position: usize, len: u64 },
    #[error("length mismatch: the batch has {batch} indices but {what} has {len} values")]
    LengthMismatch { what: &'static str, batch: usize, len: usize },
    #[error("strategy '{strategy}' needs {what}, but none were given")]
    MissingInput { strategy: &'static str, what: &'static str },
    #[error("{what} at batch position {position} is not finite ({value})")]
    NonFinite { what: &'static str, position: usize, value: f32 },
    #[error("score state of {0} samples does not fit in memory on this platform")]
    TooLarge(u64),
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl SelectError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SelectError::Io { path: path.into(), source }
    }

    pub(crate) fn bad_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        SelectError::BadFile { path: path.into(), message: message.into() }
    }
}
