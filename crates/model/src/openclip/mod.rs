//! open_clip's names and layouts: its CLIP state dict in safetensors files, in and out
//! ([`weights`]), and in PyTorch's files, in ([`pytorch`]); its model-config JSON ([`config`]).

mod config;
mod pytorch;
mod weights;

pub use config::{OpenClipConfig, OpenClipTextConfig, OpenClipVisionConfig};
pub use weights::{HostTensor, TensorFile, load_open_clip, to_open_clip};
