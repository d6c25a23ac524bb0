//! Model weights as bytes (Burn's burnpack record), for checkpoints.

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;

use crate::error::ModelError;
use crate::model::Clip;

/// Model weights as burnpack bytes (full precision, with `ParamId`s so optimiser state
/// written alongside stays attached).
pub fn model_to_bytes(model: &Clip) -> Result<Vec<u8>, ModelError> {
    let bytes = model.clone().into_record().into_bytes().map_err(|e| ModelError::Record(e.to_string()))?;
    Ok(bytes.to_vec())
}

/// Loads weights written by [`model_to_bytes`] into `model` (built with the same config; its
/// device is kept).
pub fn model_from_bytes(model: Clip, bytes: &[u8]) -> Result<Clip, ModelError> {
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| ModelError::Record(e.to_string()))?;
    model.try_load_record(record).map_err(|e| ModelError::Record(e.to_string()))
}
