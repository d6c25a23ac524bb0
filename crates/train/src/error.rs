use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("config: {0}")]
    Config(String),
    #[error(transparent)]
    Data(#[from] dissect_data::DataError),
    #[error(transparent)]
    Model(#[from] dissect_model::ModelError),
    #[error(transparent)]
    Select(#[from] dissect_select::SelectError),
    #[error(transparent)]
    Eval(#[from] dissect_eval::EvalError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("training stopped at epoch {epoch}, step {step}: {message}. {checkpoint}")]
    Diverged { epoch: u32, step: u64, message: String, checkpoint: String },
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io { path: path.into(), source }
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
