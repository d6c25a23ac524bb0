#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod batch;
mod config;
mod device;
mod error;
mod kernels;
mod loss;
mod model;
mod openclip;
mod optim;
mod step;
mod weights;

pub use batch::ClipBatch;
pub use burn;
pub use config::{ClipConfig, PRESETS};
pub use device::{device_from_name, rank_devices};
pub use error::ModelError;
pub use loss::{clip_loss, clip_scores, logits, neg_clip_loss, per_sample_loss, scalar_f32, to_vec_f32};
pub use model::{Clip, ClipOutput, initial_logit_scale, l2_normalize};
pub use openclip::{
    HostTensor, OpenClipConfig, OpenClipTextConfig, OpenClipVisionConfig, TensorFile, load_open_clip, to_open_clip,
};
pub use optim::{
    AdamWSettings, ClipOptimizer, ParamInfo, clamp_logit_scale, clip_grad_norm, max_logit_scale, param_infos,
};
pub use step::{RowScores, StepStats, score_batch, score_batches, train_step, train_step_ranks};
pub use weights::{model_from_bytes, model_to_bytes};
