//! open_clip's weights as PyTorch writes them (`torch.save`): a bare state dict (the
//! `open_clip_pytorch_model.bin` of a published model, a `.pt` of `model.state_dict()`) or an
//! open_clip_train checkpoint (`epoch_N.pt`: the weights under `state_dict`, with
//! DistributedDataParallel's `module.` prefix when it was trained on several GPUs). Read by
//! Burn's own PyTorch reader (`pytorch-reader`), without Python. TorchScript archives (OpenAI's
//! original `ViT-B-32.pt`) hold a program, not a state dict, and are refused with a way out.

use std::collections::BTreeMap;
use std::path::Path;

use pytorch_reader::{DType, PytorchReader};

use super::weights::{HostTensor, TensorFile};
use crate::error::ModelError;

/// The key open_clip_train stores a checkpoint's weights under.
const STATE_DICT_KEY: &str = "state_dict";
/// The prefix DistributedDataParallel puts before every parameter name.
const DDP_PREFIX: &str = "module.";

impl TensorFile {
    /// Reads a PyTorch checkpoint (see the module docs): every floating-point tensor as `f32`,
    /// integer tensors (BatchNorm's batch counts) converted too.
    pub fn read_pytorch(path: &Path) -> Result<Self, ModelError> {
        let fail = |why: String| ModelError::Record(format!("{}: {why}", path.display()));
        let reader = match PytorchReader::with_top_level_key(path, STATE_DICT_KEY) {
            Ok(reader) if !reader.is_empty() => reader,
            _ => PytorchReader::new(path).map_err(|e| fail(pytorch_error(&e.to_string())))?,
        };
        if reader.is_empty() {
            return Err(fail("holds no tensors (a TorchScript archive or another kind of file?)".into()));
        }
        let mut tensors = BTreeMap::new();
        for (name, tensor) in reader.into_tensors() {
            let bytes = tensor.read().map_err(|e| fail(e.to_string()))?;
            let values = to_f32(tensor.dtype(), &bytes).map_err(|why| fail(format!("tensor {name}: {why}")))?;
            let name = name.strip_prefix(DDP_PREFIX).map_or(name.clone(), str::to_string);
            tensors.insert(name, HostTensor { shape: tensor.shape().to_vec(), values });
        }
        Ok(TensorFile { tensors, metadata: BTreeMap::new() })
    }
}

/// The reader's message, with what to do about the usual cause.
fn pytorch_error(message: &str) -> String {
    format!(
        "not a PyTorch state dict or open_clip checkpoint ({message}); a TorchScript archive (OpenAI's \
         original .pt) can be converted once with open_clip: \
         `safetensors.torch.save_file(open_clip.create_model(name, pretrained=path).state_dict(), \"x.safetensors\")`"
    )
}

fn to_f32(dtype: DType, bytes: &[u8]) -> Result<Vec<f32>, String> {
    // The reader returns native-endian bytes.
    let words = |n: usize| bytes.chunks_exact(n);
    Ok(match dtype {
        DType::F32 => words(4).map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])).collect(),
        DType::F64 => words(8).map(|b| f64::from_ne_bytes(b.try_into().unwrap_or([0; 8])) as f32).collect(),
        DType::F16 => words(2).map(|b| half::f16::from_ne_bytes([b[0], b[1]]).to_f32()).collect(),
        DType::BF16 => words(2).map(|b| half::bf16::from_ne_bytes([b[0], b[1]]).to_f32()).collect(),
        DType::I64 => words(8).map(|b| i64::from_ne_bytes(b.try_into().unwrap_or([0; 8])) as f32).collect(),
        DType::I32 => words(4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as f32).collect(),
        other => return Err(format!("dtype {other:?} is not supported (f32, f64, f16, bf16, i64, i32)")),
    })
}
