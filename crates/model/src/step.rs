//! One training step (forward + backward on the kept rows, clipping, AdamW, temperature clamp)
//! and the scoring pass (a forward pass without the autodiff tape); the step of a process of
//! a multi-process job is in `distributed.rs`.

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Tensor};

use crate::batch::ClipBatch;
use crate::error::ModelError;
use crate::loss::{clip_loss, clip_scores, per_sample_loss, to_vec_f32};
use crate::model::{Clip, ClipOutput};
use crate::optim::{ClipOptimizer, clamp_logit_scale, clip_coefficient, grad_norm_squared, scale_grads};
use crate::resnet::RunningStats;

/// What one optimiser step reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Contrastive loss of the batch before the update.
    pub loss: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
}

/// A step's loss as [`apply_gradients`] takes it: still on the device (read with the gradient
/// norm in the step's one host read), or already on the host (a job of processes sums it in
/// its all-reduce).
pub(crate) enum StepLoss {
    Device(Box<Tensor<1>>),
    Host(f32),
}

pub(crate) fn model_device(model: &Clip) -> Device {
    model.logit_scale.val().device()
}

/// Forward + backward on `batch` (all of it: select rows first with
/// [`ClipBatch::select_rows`]), global gradient clipping, AdamW step, temperature clamp.
///
/// `model` must live on an autodiff device (`Device::flex().autodiff()`); the batch is moved
/// there. A non-finite loss or gradient norm returns [`ModelError::NonFinite`] before the
/// update, so the last good state (e.g. a checkpoint) stays valid.
pub fn train_step(
    model: Clip,
    optim: &mut ClipOptimizer,
    batch: &ClipBatch,
    lr: f64,
    max_grad_norm: Option<f32>,
) -> Result<(Clip, StepStats), ModelError> {
    let (loss, grads, running) = loss_and_gradients(&model, batch);
    apply_gradients(model, optim, (grads, running), loss, lr, max_grad_norm)
}

/// [`train_step`] in `accum` micro-batches (open_clip's `--accum-freq`): the features of every
/// micro-batch are computed first without the tape and cached; then each micro-batch runs
/// forward + backward with its own features tracked and the others' cached, so the contrastive
/// loss still sees the whole batch as its negatives, and the gradients add up to the whole
/// batch's. Only one micro-batch's activations are held for the backward at a time.
///
/// The loss equals [`train_step`]'s on the same batch, and so do the gradients up to float
/// rounding. The temperature's gradient is taken once (open_clip's loop adds it `accum` times).
/// A ResNet normalises each micro-batch with its own statistics (as open_clip's loop does), so
/// there the step is not the whole batch's, and the running statistics take the last
/// micro-batch's update.
pub fn train_step_accumulated(
    model: Clip,
    optim: &mut ClipOptimizer,
    batch: &ClipBatch,
    accum: usize,
    lr: f64,
    max_grad_norm: Option<f32>,
) -> Result<(Clip, StepStats), ModelError> {
    let parts = micro_batches(batch, accum)?;
    if parts.len() == 1 {
        return train_step(model, optim, batch, lr, max_grad_norm);
    }
    let device = model_device(&model);
    let cached = cached_features(&model, &parts, &device);
    let mut sum = GradientsAccumulator::<Clip>::new();
    let (mut first_loss, mut running) = (None, Vec::new());
    for (j, part) in parts.iter().enumerate() {
        let part = part.to_device(&device);
        let (out, stats) = model.forward_train(part.images, part.tokens, part.eot);
        let swap = |cache: &[Tensor<2>], live: Tensor<2>| {
            let mut all: Vec<Tensor<2>> = cache.to_vec();
            all[j] = live;
            Tensor::cat(all, 0)
        };
        // The temperature takes its gradient from the first micro-batch only: every one holds
        // the whole batch's loss.
        let logit_scale = if j == 0 { out.logit_scale } else { out.logit_scale.detach() };
        let whole = ClipOutput {
            image_features: swap(&cached.0, out.image_features),
            text_features: swap(&cached.1, out.text_features),
            logit_scale,
        };
        let loss = clip_loss(&whole);
        if j == 0 {
            first_loss = Some(loss.clone().detach());
        }
        sum.accumulate(&model, GradientsParams::from_grads(loss.backward(), &model));
        running = stats;
    }
    let loss = first_loss.ok_or_else(|| ModelError::Data("a step of no micro-batch".into()))?;
    apply_gradients(model, optim, (sum.grads(), running), StepLoss::Device(Box::new(loss)), lr, max_grad_norm)
}

/// `batch` cut into at most `accum` contiguous micro-batches of sizes differing by at most one.
fn micro_batches(batch: &ClipBatch, accum: usize) -> Result<Vec<ClipBatch>, ModelError> {
    let b = batch.len();
    let parts = accum.clamp(1, b.max(1));
    (0..parts)
        .map(|p| {
            let rows: Vec<usize> = (p * b / parts..(p + 1) * b / parts).collect();
            batch.select_rows(&rows)
        })
        .collect()
}

/// Every micro-batch's image and text features without the tape (BatchNorm on the
/// micro-batch's statistics, as the tracked pass will use), on the model's device.
fn cached_features(model: &Clip, parts: &[ClipBatch], device: &Device) -> (Vec<Tensor<2>>, Vec<Tensor<2>>) {
    let valid = model.valid();
    let inner = model_device(&valid);
    parts
        .iter()
        .map(|part| {
            let part = part.to_device(&inner);
            let (out, _) = valid.forward_train(part.images, part.tokens, part.eot);
            (out.image_features.to_device(device), out.text_features.to_device(device))
        })
        .unzip()
}

/// Forward (training mode) + backward of the loss on `batch`; returns the loss (on the device,
/// detached), the gradients keyed by the model's parameter ids, and the BatchNorm running
/// statistics to set after the step.
fn loss_and_gradients(model: &Clip, batch: &ClipBatch) -> (StepLoss, GradientsParams, Vec<RunningStats>) {
    let batch = batch.to_device(&model_device(model));
    let (out, running) = model.forward_train(batch.images, batch.tokens, batch.eot);
    let loss = clip_loss(&out);
    let value = StepLoss::Device(Box::new(loss.clone().detach()));
    (value, GradientsParams::from_grads(loss.backward(), model), running)
}

/// Global gradient clipping, AdamW step and temperature clamp, then the BatchNorm running
/// statistics of the step's forward pass.
///
/// The loss and the gradient norm come to the host in one read, after the backward pass and
/// before the update: the step's only wait for the device (a GPU runs the forward and backward
/// passes while the host queues them). A non-finite loss or norm is an error before the
/// update.
pub(crate) fn apply_gradients(
    model: Clip,
    optim: &mut ClipOptimizer,
    (mut grads, running): (GradientsParams, Vec<RunningStats>),
    loss: StepLoss,
    lr: f64,
    max_grad_norm: Option<f32>,
) -> Result<(Clip, StepStats), ModelError> {
    let norm_squared = grad_norm_squared(optim.params(), &grads)?;
    let (loss, grad_norm) = read_loss_and_norm(loss, norm_squared)?;
    if !loss.is_finite() {
        return Err(ModelError::NonFinite { what: "loss", value: loss });
    }
    if !grad_norm.is_finite() {
        return Err(ModelError::NonFinite { what: "gradient norm", value: grad_norm });
    }
    scale_grads(optim.params(), &mut grads, clip_coefficient(grad_norm, max_grad_norm));
    let model = optim.step(lr, model, grads);
    let mut model = clamp_logit_scale(model);
    model.apply_running_stats(running);
    Ok((model, StepStats { loss, grad_norm }))
}

/// The loss and `sqrt(norm_squared)` on the host, in one read of the device.
fn read_loss_and_norm(loss: StepLoss, norm_squared: Option<Tensor<1>>) -> Result<(f32, f32), ModelError> {
    let has_norm = norm_squared.is_some();
    // The gradients live on the autodiff device's inner device; the loss joins them there.
    let grads_device = norm_squared.as_ref().map(Tensor::device);
    let (host_loss, mut on_device) = match loss {
        StepLoss::Device(loss) => {
            let loss = loss.reshape([1]);
            let loss = match grads_device {
                Some(device) => loss.to_device(&device),
                None => loss,
            };
            (None, vec![loss])
        }
        StepLoss::Host(value) => (Some(value), Vec::new()),
    };
    on_device.extend(norm_squared);
    let values = if on_device.is_empty() { Vec::new() } else { to_vec_f32(Tensor::cat(on_device, 0))? };
    let mut values = values.into_iter();
    let loss = host_loss.or_else(|| values.next()).unwrap_or(f32::NAN);
    let norm = if has_norm { values.next().map_or(f32::NAN, f32::sqrt) } else { 0.0 };
    Ok((loss, norm))
}

/// Per-row scores of the scoring pass.
#[derive(Debug, Clone, PartialEq)]
pub struct RowScores {
    /// `100 · cos(f_j, g_j)`, unclamped.
    pub clip_scores: Vec<f32>,
    /// Per-sample symmetric InfoNCE `ℓ_j` over the whole batch.
    pub per_sample_loss: Vec<f32>,
}

/// The scoring pass: a forward pass over the whole batch without the autodiff tape.
///
/// `model` may be the training (autodiff) model or its `valid()` copy; it is scored without
/// the tape either way.
pub fn score_batch(model: &Clip, batch: &ClipBatch) -> Result<RowScores, ModelError> {
    score_untracked(&model.valid(), batch)
}

/// [`score_batch`] for a model already without the tape.
fn score_untracked(model: &Clip, batch: &ClipBatch) -> Result<RowScores, ModelError> {
    let batch = batch.to_device(&model_device(model));
    row_scores(&model.forward(batch.images, batch.tokens, batch.eot))
}

/// The scores of every row of `out`, against the rows of `out`.
pub(crate) fn row_scores(out: &ClipOutput) -> Result<RowScores, ModelError> {
    let scores = clip_scores(&out.image_features, &out.text_features);
    Ok(RowScores { clip_scores: to_vec_f32(scores)?, per_sample_loss: to_vec_f32(per_sample_loss(out))? })
}
