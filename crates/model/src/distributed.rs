//! The training step of one process of a multi-process data-parallel job: global negatives
//! (every process's kept rows are every row's negatives, as open_clip's `ClipLoss` gathers
//! them), gradients summed over the processes in one all-reduce, the same update everywhere.
//!
//! How the gradient reaches each process's own rows without a differentiable all-gather:
//! each process gathers the features of every process's rows (without the tape), computes its
//! part of the loss on them as fresh leaves, and takes the gradient with respect to those
//! features. Its own rows' share of that gradient (with `gather_with_grad`, summed over the
//! processes first) is then pushed through its own towers by a second, surrogate backward,
//! `Σ f·∂o/∂f`, whose parameter gradient is the chain rule's. The parameter gradients of all
//! processes are then summed.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use dissect_dist::Collective;

use crate::batch::ClipBatch;
use crate::error::ModelError;
use crate::loss::{per_sample_loss, scalar_f32, to_vec_f32};
use crate::model::{Clip, ClipOutput};
use crate::optim::{ClipOptimizer, ParamInfo};
use crate::resnet::RunningStats;
use crate::step::{RowScores, StepLoss, StepStats, apply_gradients, model_device, row_scores};

/// How a distributed step's contrastive loss sees the other processes' rows (open_clip's
/// `--local-loss` and `--gather-with-grad`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GlobalNegatives {
    /// Each process computes only its own rows' terms of the loss (its images against every
    /// caption, its captions against every image) instead of the whole `N × N` logit matrix:
    /// `N / world` times less memory and compute for the logits, the same loss.
    pub local_loss: bool,
    /// Gradients flow back from every process's loss to the owner of each row. With
    /// `local_loss` this is what makes the gradient the whole batch's; without it a row's
    /// gradient only has its own process's terms (open_clip's behaviour, kept for parity).
    /// Without `local_loss` every process already has the whole loss, so the gradient is exact
    /// either way (open_clip's is that divided by the world size when it is off).
    pub gather_with_grad: bool,
}

/// One optimiser step of this process in a job of `comm.world_size()` processes: forward of
/// `batch` (this process's kept rows; `None` when it kept none), the loss over every process's rows, the
/// parameter gradients summed over the processes, clipping by their global norm, AdamW and the
/// temperature clamp — the same update on every process, so the replicas stay equal.
///
/// The loss and the update equal [`crate::train_step`]'s on the rows of all processes
/// together (up to float rounding), except with `local_loss` and not `gather_with_grad`. A
/// ResNet normalises each process's rows with their own statistics and keeps its own running
/// statistics (as DistributedDataParallel without SyncBatchNorm).
pub fn train_step_distributed(
    model: Clip,
    optim: &mut ClipOptimizer,
    batch: Option<&ClipBatch>,
    comm: &dyn Collective,
    negatives: GlobalNegatives,
    lr: f64,
    max_grad_norm: Option<f32>,
) -> Result<(Clip, StepStats), ModelError> {
    let device = model_device(&model);
    let local = batch.map(|batch| {
        let batch = batch.to_device(&device);
        model.forward_train(batch.images, batch.tokens, batch.eot)
    });
    let gathered = GatheredFeatures::gather(local.as_ref().map(|(out, _)| out), model.embed_dim(), comm)?;
    let feature_grads = gathered.loss_gradients(model.logit_scale_value(), negatives, &device, comm)?;
    let surrogate = surrogate_objective(&model, local.as_ref().map(|(out, _)| out), &feature_grads, &device)?;
    let mut grads = GradientsParams::from_grads(surrogate.backward(), &model);
    let loss = sum_over_processes(optim.params(), &mut grads, feature_grads.loss_part, &device, comm)?;
    let running: Vec<RunningStats> = local.map(|(_, running)| running).unwrap_or_default();
    apply_gradients(model, optim, (grads, running), StepLoss::Host(loss), lr, max_grad_norm)
}

/// The scoring pass over the rows of every process: this process's `batch` (`None`: it has no
/// rows) is encoded without the tape, the features of all are gathered, and every row is
/// scored against the whole batch, as [`crate::score_batch`] scores all rows in one process.
pub fn score_gathered(model: &Clip, batch: Option<&ClipBatch>, comm: &dyn Collective) -> Result<RowScores, ModelError> {
    let model = model.valid();
    let device = model_device(&model);
    let local = batch.map(|b| {
        let b = b.to_device(&device);
        model.forward(b.images, b.tokens, b.eot)
    });
    let gathered = GatheredFeatures::gather(local.as_ref(), model.embed_dim(), comm)?;
    let shape = [gathered.total_rows(), gathered.dim];
    let out = ClipOutput {
        image_features: Tensor::from_data(TensorData::new(gathered.images, shape), &device),
        text_features: Tensor::from_data(TensorData::new(gathered.texts, shape), &device),
        logit_scale: model.logit_scale.val(),
    };
    row_scores(&out)
}

/// Every process's features of its rows, stacked in rank order, without the tape.
struct GatheredFeatures {
    /// `[N · d]`, row-major.
    images: Vec<f32>,
    /// `[N · d]`, row-major.
    texts: Vec<f32>,
    /// Rows of each process, in rank order.
    rows: Vec<usize>,
    dim: usize,
    rank: usize,
}

impl GatheredFeatures {
    /// One all-gather of each process's image and text features together.
    fn gather(local: Option<&ClipOutput>, dim: usize, comm: &dyn Collective) -> Result<Self, ModelError> {
        let mut mine = Vec::new();
        if let Some(out) = local {
            mine = flat(out.image_features.clone())?;
            mine.extend(flat(out.text_features.clone())?);
        }
        let all = comm.all_gather(&mine)?;
        let rows: Vec<usize> = all.iter().map(|part| part.len() / (2 * dim)).collect();
        let (mut images, mut texts) = (Vec::new(), Vec::new());
        for part in &all {
            let (image, text) = part.split_at(part.len() / 2);
            images.extend_from_slice(image);
            texts.extend_from_slice(text);
        }
        Ok(Self { images, texts, rows, dim, rank: comm.rank() })
    }

    fn total_rows(&self) -> usize {
        self.rows.iter().sum()
    }

    /// This process's rows among all, `start..end`.
    fn own_rows(&self) -> std::ops::Range<usize> {
        let start: usize = self.rows[..self.rank].iter().sum();
        start..start + self.rows[self.rank]
    }

    /// This process's part of the loss on the gathered features, differentiated with respect
    /// to them and to the temperature; the gradients of its own rows, summed over the
    /// processes with `gather_with_grad`.
    fn loss_gradients(
        &self,
        log_scale: f32,
        negatives: GlobalNegatives,
        device: &Device,
        comm: &dyn Collective,
    ) -> Result<FeatureGradients, ModelError> {
        let (n, d) = (self.total_rows(), self.dim);
        let leaf = |data: &[f32]| Tensor::<2>::from_data(TensorData::new(data.to_vec(), [n, d]), device).require_grad();
        let (images, texts) = (leaf(&self.images), leaf(&self.texts));
        let scale = Tensor::<1>::from_data(TensorData::new(vec![log_scale], [1]), device).require_grad();
        let own = self.own_rows();
        let world = comm.world_size() as f32;
        let (objective, scale_share) = if negatives.local_loss {
            // Σ over own rows of ℓ_j / N: the processes' parts add up to the mean over all rows.
            (own_rows_loss(&images, &texts, &scale, own.clone()).sum().div_scalar(n as f32), 1.0)
        } else {
            // The whole loss on every process: its own rows' gradients are exact as they are,
            // and the temperature's is counted once over the processes.
            let out =
                ClipOutput { image_features: images.clone(), text_features: texts.clone(), logit_scale: scale.clone() };
            (per_sample_loss(&out).mean(), 1.0 / world)
        };
        let value = scalar_f32(objective.clone())?;
        let grads = objective.backward();
        let image_grad = flat(images.grad(&grads).ok_or_else(no_gradient)?)?;
        let text_grad = flat(texts.grad(&grads).ok_or_else(no_gradient)?)?;
        let scale_grad = scalar_f32(scale.grad(&grads).ok_or_else(no_gradient)?)?;
        let (image_grad, text_grad) = match negatives.local_loss && negatives.gather_with_grad {
            true => {
                let mut both = [image_grad, text_grad].concat();
                comm.all_reduce_sum(&mut both)?;
                let text = both.split_off(n * d);
                (both, text)
            }
            false => (image_grad, text_grad),
        };
        let slice = |g: &[f32]| g[own.start * d..own.end * d].to_vec();
        Ok(FeatureGradients {
            images: slice(&image_grad),
            texts: slice(&text_grad),
            rows: own.len(),
            scale: scale_grad * scale_share,
            loss_part: if negatives.local_loss { value } else { value / world },
        })
    }
}

/// `ℓ_j` of rows `own` of the whole batch: `½(CE(image j against every caption) + CE(caption j
/// against every image))`, `[own.len()]`.
fn own_rows_loss(
    images: &Tensor<2>,
    texts: &Tensor<2>,
    log_scale: &Tensor<1>,
    own: std::ops::Range<usize>,
) -> Tensor<1> {
    use burn::tensor::Int;
    use burn::tensor::activation::log_softmax;
    let rows = own.len();
    let scale = log_scale.clone().exp().reshape([1, 1]);
    let device = images.device();
    let own_images = images.clone().slice(own.start..own.end);
    let own_texts = texts.clone().slice(own.start..own.end);
    let image_to_text = own_images.matmul(texts.clone().transpose()) * scale.clone();
    let text_to_image = own_texts.matmul(images.clone().transpose()) * scale;
    let targets = Tensor::<1, Int>::arange(own.start as i64..own.end as i64, &device).reshape([rows, 1]);
    let i2t = log_softmax(image_to_text, 1).gather(1, targets.clone());
    let t2i = log_softmax(text_to_image, 1).gather(1, targets);
    (i2t + t2i).reshape([rows]).mul_scalar(-0.5)
}

/// The gradient of this process's part of the loss with respect to its own rows' features and
/// the temperature, and the part's value.
struct FeatureGradients {
    images: Vec<f32>,
    texts: Vec<f32>,
    rows: usize,
    scale: f32,
    /// What this process adds to the loss (the processes' parts sum to it).
    loss_part: f32,
}

/// `Σ f·gf + Σ t·gt + s·gs` with the tracked features and temperature: its backward gives
/// the parameter gradients of the loss through this process's rows.
fn surrogate_objective(
    model: &Clip,
    local: Option<&ClipOutput>,
    grads: &FeatureGradients,
    device: &Device,
) -> Result<Tensor<1>, ModelError> {
    let constant =
        |data: &[f32], shape: [usize; 2]| Tensor::<2>::from_data(TensorData::new(data.to_vec(), shape), device);
    let scale = model.logit_scale.val().mul_scalar(grads.scale).sum();
    let Some(out) = local else { return Ok(scale) };
    let d = model.embed_dim();
    let images = (out.image_features.clone() * constant(&grads.images, [grads.rows, d])).sum();
    let texts = (out.text_features.clone() * constant(&grads.texts, [grads.rows, d])).sum();
    Ok(images + texts + scale)
}

/// Sums the parameter gradients and the loss parts over the processes in one all-reduce and
/// puts the sums back into `grads`; returns the loss. A parameter takes a gradient when any
/// process has one for it (a process with no rows has only the temperature's), so a locked
/// tower stays without one.
fn sum_over_processes(
    params: &[ParamInfo],
    grads: &mut GradientsParams,
    loss_part: f32,
    device: &Device,
    comm: &dyn Collective,
) -> Result<f32, ModelError> {
    let mut buffer = vec![loss_part];
    let mut present = Vec::with_capacity(params.len());
    for p in params {
        let grad = take_flat(grads, p)?;
        present.push(if grad.is_some() { 1.0 } else { 0.0 });
        let len = p.shape.iter().product();
        buffer.extend(grad.unwrap_or_else(|| vec![0.0; len]));
    }
    buffer.extend(present);
    comm.all_reduce_sum(&mut buffer)?;
    let inner = device.clone().inner();
    let mut offset = 1;
    let flags = buffer.len() - params.len();
    for (i, p) in params.iter().enumerate() {
        let len: usize = p.shape.iter().product();
        if buffer[flags + i] > 0.0 {
            register(grads, p, buffer[offset..offset + len].to_vec(), &inner)?;
        }
        offset += len;
    }
    Ok(buffer[0])
}

/// Removes `p`'s gradient from `grads` as host floats.
fn take_flat(grads: &mut GradientsParams, p: &ParamInfo) -> Result<Option<Vec<f32>>, ModelError> {
    let len: usize = p.shape.iter().product();
    let host = |t: Option<Tensor<1>>| t.map(to_vec_f32).transpose();
    match p.shape.len() {
        1 => host(grads.remove::<1>(p.id)),
        2 => host(grads.remove::<2>(p.id).map(|g| g.reshape([len]))),
        3 => host(grads.remove::<3>(p.id).map(|g| g.reshape([len]))),
        4 => host(grads.remove::<4>(p.id).map(|g| g.reshape([len]))),
        rank => Err(ModelError::Data(format!("parameter {} of unsupported rank {rank}", p.path))),
    }
}

/// Registers host floats as `p`'s gradient, in its shape.
fn register(grads: &mut GradientsParams, p: &ParamInfo, data: Vec<f32>, device: &Device) -> Result<(), ModelError> {
    let s = &p.shape;
    match s.len() {
        1 => grads.register(p.id, Tensor::<1>::from_data(TensorData::new(data, [s[0]]), device)),
        2 => grads.register(p.id, Tensor::<2>::from_data(TensorData::new(data, [s[0], s[1]]), device)),
        3 => grads.register(p.id, Tensor::<3>::from_data(TensorData::new(data, [s[0], s[1], s[2]]), device)),
        4 => grads.register(p.id, Tensor::<4>::from_data(TensorData::new(data, [s[0], s[1], s[2], s[3]]), device)),
        rank => return Err(ModelError::Data(format!("parameter {} of unsupported rank {rank}", p.path))),
    }
    Ok(())
}

/// A 2-d tensor's values, row-major.
fn flat(t: Tensor<2>) -> Result<Vec<f32>, ModelError> {
    let [rows, cols] = t.dims();
    to_vec_f32(t.reshape([rows * cols]))
}

fn no_gradient() -> ModelError {
    ModelError::Data("the gathered features took no gradient".into())
}
