//! [`SelectError`] to Python exceptions, each message led by the argument at fault.

use dissect_select::SelectError;
use pyo3::PyErr;
use pyo3::exceptions::{PyMemoryError, PyOSError, PyValueError};

/// The Python exception for a refusal of the selection core.
///
/// Bad values are `ValueError`s whose message starts with the argument to fix
/// (`clip_scores: ...`), so a user sees which array of their call was wrong. File errors keep
/// the operating system's error number, so Python picks `FileNotFoundError`,
/// `PermissionError`, ... and fills `filename`.
pub(crate) fn to_py(err: SelectError) -> PyErr {
    let argument = match &err {
        SelectError::InvalidRate(_) => "rate",
        SelectError::InvalidMomentum(_) => "momentum",
        SelectError::UnknownStrategy(_) => "strategy",
        SelectError::UnknownWarmupRows(_) => "warmup_rows",
        SelectError::InvalidWarmupEpochs(_) | SelectError::FixedWarmup(_) => "warmup_epochs",
        SelectError::EmptyBatch | SelectError::IndexOutOfRange { .. } => "indices",
        SelectError::LengthMismatch { what, .. }
        | SelectError::MissingInput { what, .. }
        | SelectError::NonFinite { what, .. } => argument_for(what),
        SelectError::TooLarge(_) => return PyMemoryError::new_err(format!("dataset_len: {err}")),
        // The path leads the message already.
        SelectError::BadFile { .. } => return PyValueError::new_err(err.to_string()),
        SelectError::Io { path, source } => {
            return match source.raw_os_error() {
                Some(code) => PyOSError::new_err((code, source.to_string(), path.display().to_string())),
                None => PyOSError::new_err(err.to_string()),
            };
        }
    };
    PyValueError::new_err(format!("{argument}: {err}"))
}

/// The keyword of `Selector.select` that carries what the core calls `what`.
fn argument_for(what: &str) -> &'static str {
    match what {
        "CLIP scores" => "clip_scores",
        "per-sample losses" => "losses",
        "reference scores" => "reference_scores",
        // A new input of the core without a keyword here yet: still a ValueError.
        _ => "input",
    }
}
