//! dissect-model: the CLIP dual encoder on Burn 0.22.1, its contrastive losses, and the
//! training-step pieces (AdamW groups, gradient clipping, scoring pass, byte checkpoints)
//! that the trainer composes.

pub mod config;
mod cpu_kernel;
pub mod device;
pub mod error;
pub mod gelu;
pub mod loss;
pub mod model;
pub mod norm;
pub mod train;

pub use burn;
pub use config::{ClipConfig, PRESETS};
pub use device::{device_from_name, rank_devices};
pub use error::ModelError;
pub use loss::{clip_loss, clip_scores, logits, neg_clip_loss, per_sample_loss, scalar_f32, to_vec_f32};
pub use model::{Clip, ClipOutput, initial_logit_scale, l2_normalize};
pub use train::{
    AdamWSettings, BatchScores, ClipBatch, ClipOptimizer, ParamInfo, StepStats, clamp_logit_scale, clip_grad_norm,
    max_logit_scale, model_from_bytes, model_to_bytes, param_infos, score_batch, score_batches, train_step,
    train_step_ranks,
};
