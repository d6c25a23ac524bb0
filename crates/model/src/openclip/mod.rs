//! open_clip's names and layouts: its CLIP state dict in safetensors files, in and out
//! ([`weights`]), and its model-config JSON ([`config`]).

mod config;
mod weights;

pub use config::{OpenClipConfig, OpenClipTextConfig, OpenClipVisionConfig};
pub use weights::{HostTensor, TensorFile, load_open_clip, to_open_clip};
