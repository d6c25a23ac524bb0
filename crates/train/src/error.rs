//! Errors of the trainer; each says which field, file or step it is about.

use std::path::PathBuf;

/// Why a run could not be set up, continued or finished.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A config field has a wrong name or value, or the run folder refuses the config
    /// (`field: why`).
    #[error("config: {0}")]
    Config(String),
    /// Reading or preparing the data failed.
    #[error(transparent)]
    Data(#[from] dissect_data::DataError),
    /// The model or a step failed.
    #[error(transparent)]
    Model(#[from] dissect_model::ModelError),
    /// A collective operation between the processes of a job failed, or another process sent
    /// what this one cannot use.
    #[error(transparent)]
    Distributed(#[from] dissect_dist::DistError),
    /// The selection core refused an input or a state file.
    #[error(transparent)]
    Select(#[from] dissect_select::SelectError),
    /// An evaluation or a report failed.
    #[error(transparent)]
    Eval(#[from] dissect_eval::EvalError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A checkpoint (or another run file) is missing, incomplete or of another format.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Writing a checkpoint failed (a full disk, say); no partial checkpoint is left and the
    /// previous one is intact.
    #[error("writing a checkpoint failed: {source}. {last_good}")]
    CheckpointFailed {
        /// What failed.
        source: Box<TrainError>,
        /// Which checkpoint to continue from.
        last_good: String,
    },
    /// A run object used again after one of its steps failed (its model is gone).
    #[error("the run stopped after a failed step; open it again from its last checkpoint")]
    StoppedAfterFailure,
    /// A run to compare has no held-out evaluation.
    #[error("run {0} has no evaluation to compare")]
    NoEvaluation(PathBuf),
    /// A held-out split without one usable pair.
    #[error("the held-out split of {0} has no usable pair")]
    EmptyHeldOut(PathBuf),
    /// An `auto` warm-up that cannot be judged: an epoch without a mean CLIPScore.
    #[error("selection.warmup_epochs = auto needs the mean CLIPScore of every epoch, but epoch {0} has none")]
    NoScoresToJudgeWarmup(u32),
    /// A report (JSON) could not be written out.
    #[error("writing {path}: {source}")]
    Json {
        /// The file it was for.
        path: PathBuf,
        /// What serde_json said.
        source: serde_json::Error,
    },
    /// The loss or the gradient norm became NaN or infinite; the last good checkpoint stays.
    #[error("training stopped at epoch {epoch}, step {step}: {message}. {checkpoint}")]
    Diverged {
        /// Epoch of the failed step.
        epoch: u32,
        /// Steps taken before it.
        step: u64,
        /// What became non-finite.
        message: String,
        /// Where to continue from.
        checkpoint: String,
    },
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io { path: path.into(), source }
    }
}

/// A result with [`TrainError`].
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
