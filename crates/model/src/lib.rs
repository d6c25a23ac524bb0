#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod batch;
mod config;
mod device;
mod distributed;
mod error;
mod kernels;
mod layers;
mod lock;
mod loss;
mod memory;
mod model;
mod openclip;
mod optim;
mod precision;
mod resnet;
mod step;
mod text;
mod vit;
mod weights;

pub use batch::ClipBatch;
pub use burn;
pub use config::{ClipConfig, PRESETS, ResNetConfig, TextConfig, VisionConfig, VitConfig};
pub use device::{device_for_local_rank, device_from_name, gpu_index};
pub use distributed::{GlobalNegatives, score_gathered, train_step_distributed};
pub use error::ModelError;
pub use layers::{Attention, Block};
pub use lock::TowerLock;
pub use loss::{clip_loss, clip_scores, logits, neg_clip_loss, per_sample_loss, scalar_f32, to_vec_f32};
pub use memory::keep_freed_memory;
pub use model::{Clip, ClipOutput, VisionTower, initial_logit_scale, l2_normalize};
pub use openclip::{
    HostTensor, OpenClipConfig, OpenClipTextConfig, OpenClipVisionConfig, TensorFile, load_open_clip, to_open_clip,
};
pub use optim::{
    AdamWSettings, ClipOptimizer, ParamInfo, clamp_logit_scale, clip_grad_norm, max_logit_scale, param_infos,
};
pub use precision::{Precision, with_precision};
pub use resnet::{AttentionPool, BatchNorm2d, Bottleneck, Conv, Downsample, ModifiedResNet, NormMode, RunningStats};
pub use step::{RowScores, StepStats, score_batch, train_step, train_step_accumulated};
pub use text::TextTransformer;
pub use vit::VisionTransformer;
pub use weights::{model_from_bytes, model_to_bytes};
