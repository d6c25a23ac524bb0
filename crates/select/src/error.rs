use std::path::PathBuf;

/// Everything the selection core can refuse. Messages name the offending value so a
/// user can fix their config or data without reading the source.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// The selection rate `r` lies outside `(0, 1]`.
    #[error("selection rate must be in (0, 1], got {0}")]
    InvalidRate(f64),
    /// The momentum `β` lies outside `[0, 1)`.
    #[error("momentum beta must be in [0, 1), got {0}")]
    InvalidMomentum(f64),
    /// A strategy name that matches no [`crate::Strategy`].
    #[error("unknown strategy '{0}' (expected one of: {list})", list = crate::Strategy::ALL.map(crate::Strategy::name).join(", "))]
    UnknownStrategy(String),
    /// A warm-up rows value other than `random` or `all`.
    #[error("unknown warm-up rows '{0}' (expected random or all)")]
    UnknownWarmupRows(String),
    /// A warm-up length that is neither a number of epochs nor `auto`.
    #[error("warm-up epochs must be a number of epochs or 'auto', got '{0}'")]
    InvalidWarmupEpochs(String),
    /// [`crate::Selector::end_warmup`] on a selector whose `W` is a fixed number of epochs.
    #[error("the warm-up is fixed at W = {0} epochs; only an 'auto' warm-up can be ended")]
    FixedWarmup(String),
    /// [`crate::Selector::select`] got a batch without rows.
    #[error("the batch is empty")]
    EmptyBatch,
    /// A batch row's dataset index is not below the score state's length.
    #[error("dataset index {index} at batch position {position} is out of range: the score state holds {len} samples")]
    IndexOutOfRange {
        /// The offending dataset index.
        index: u64,
        /// Its position in the batch.
        position: usize,
        /// Samples the score state holds.
        len: u64,
    },
    /// A per-row input has a different length than the batch's indices.
    #[error("length mismatch: the batch has {batch} indices but {what} has {len} values")]
    LengthMismatch {
        /// Which input, e.g. "CLIP scores".
        what: &'static str,
        /// Rows in the batch (its number of indices).
        batch: usize,
        /// Values the input has.
        len: usize,
    },
    /// The strategy needs an input (see [`crate::ScoreNeeds`]) that the batch lacks.
    #[error("strategy '{strategy}' needs {what}, but none were given")]
    MissingInput {
        /// Name of the strategy.
        strategy: &'static str,
        /// The missing input, e.g. "per-sample losses".
        what: &'static str,
    },
    /// A per-row input value is NaN or infinite.
    #[error("{what} at batch position {position} is not finite ({value})")]
    NonFinite {
        /// Which input, e.g. "CLIP scores".
        what: &'static str,
        /// Batch position of the value.
        position: usize,
        /// The non-finite value.
        value: f32,
    },
    /// A score state of this many samples cannot be allocated or addressed on this platform.
    #[error("score state of {0} samples does not fit in memory on this platform")]
    TooLarge(u64),
    /// A record or score-state file that is foreign, corrupt, truncated or misnamed.
    #[error("{path}: {message}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// An I/O error on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl SelectError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SelectError::Io { path: path.into(), source }
    }

    pub(crate) fn bad_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        SelectError::BadFile { path: path.into(), message: message.into() }
    }
}
