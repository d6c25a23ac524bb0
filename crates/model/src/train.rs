//! Training-step building blocks: batches, AdamW with open_clip's decay groups, global
//! gradient clipping, the temperature clamp, the scoring pass, and byte-level checkpoints.

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Int, Tensor, TensorData};

use crate::config::ClipConfig;
use crate::error::ModelError;
use crate::loss::{clip_loss, clip_scores, per_sample_loss, scalar_f32, to_vec_f32};
use crate::model::Clip;

/// One batch of image-text pairs as tensors.
#[derive(Debug, Clone)]
pub struct ClipBatch {
    /// `[b, c, h, w]` normalised pixels.
    pub images: Tensor<4>,
    /// `[b, l]` token ids, `l ≤ context_length`.
    pub tokens: Tensor<2, Int>,
    /// `[b]` end-of-text position of each row.
    pub eot: Tensor<1, Int>,
}

impl ClipBatch {
    /// Builds a batch from host buffers, checking every size and index against `cfg`.
    ///
    /// `images` is `b·c·h·w` floats in NCHW order, `tokens` is `b·l` ids row by row.
    pub fn from_host(
        cfg: &ClipConfig,
        images: &[f32],
        tokens: &[u32],
        eot: &[usize],
        device: &Device,
    ) -> Result<Self, ModelError> {
        let b = eot.len();
        if b == 0 {
            return Err(ModelError::Batch("empty batch".into()));
        }
        let per_image = cfg.channels * cfg.image_size * cfg.image_size;
        if images.len() != b * per_image {
            return Err(ModelError::Batch(format!("{} image floats for {b} rows of {per_image}", images.len())));
        }
        if !tokens.len().is_multiple_of(b) {
            return Err(ModelError::Batch(format!("{} tokens do not split into {b} rows", tokens.len())));
        }
        let l = tokens.len() / b;
        if l == 0 || l > cfg.context_length {
            return Err(ModelError::Batch(format!("token rows of length {l}, expected 1..={}", cfg.context_length)));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(ModelError::Batch(format!("token id {bad} outside the vocabulary of {}", cfg.vocab_size)));
        }
        if let Some(&bad) = eot.iter().find(|&&p| p >= l) {
            return Err(ModelError::Batch(format!("end-of-text position {bad} outside rows of length {l}")));
        }
        let s = cfg.image_size;
        let images = Tensor::from_data(TensorData::new(images.to_vec(), [b, cfg.channels, s, s]), device);
        let tokens = Tensor::from_data(TensorData::new(tokens.iter().map(|&t| t as i64).collect(), [b, l]), device);
        Ok(Self { images, tokens, eot: index_tensor(eot, device) })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.images.dims()[0]
    }

    /// Always false for a batch built by [`ClipBatch::from_host`].
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows `rows` (in that order) as a new batch on the same device — the training pass
    /// of a selected step.
    pub fn select_rows(&self, rows: &[usize]) -> Result<Self, ModelError> {
        let b = self.len();
        if rows.is_empty() {
            return Err(ModelError::Batch("no rows selected".into()));
        }
        if let Some(&bad) = rows.iter().find(|&&r| r >= b) {
            return Err(ModelError::Batch(format!("selected row {bad} of a batch of {b}")));
        }
        let idx = index_tensor(rows, &self.images.device());
        Ok(Self {
            images: self.images.clone().select(0, idx.clone()),
            tokens: self.tokens.clone().select(0, idx.clone()),
            eot: self.eot.clone().select(0, idx),
        })
    }

    /// The same batch on `device` (e.g. the autodiff device of the training model).
    pub fn to_device(&self, device: &Device) -> Self {
        Self {
            images: self.images.clone().to_device(device),
            tokens: self.tokens.clone().to_device(device),
            eot: self.eot.clone().to_device(device),
        }
    }
}

fn index_tensor(values: &[usize], device: &Device) -> Tensor<1, Int> {
    let data: Vec<i64> = values.iter().map(|&v| v as i64).collect();
    Tensor::from_data(TensorData::new(data, [values.len()]), device)
}

/// One parameter of the model as the optimiser sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamInfo {
    /// Module path, e.g. `visual.blocks.0.attn.qkv.weight` (the path Burn's optimiser uses).
    pub path: String,
    pub id: ParamId,
    pub shape: Vec<usize>,
    /// Whether AdamW's decoupled weight decay applies (only matrices of linear layers).
    pub decay: bool,
}

/// Lists every float parameter with its path, shape and decay group.
pub fn param_infos(model: &Clip) -> Vec<ParamInfo> {
    let mut visitor = ParamCollector::default();
    model.visit(&mut visitor);
    visitor.out
}

#[derive(Default)]
struct ParamCollector {
    // (field name, type of the struct holding the field)
    stack: Vec<(String, String)>,
    out: Vec<ParamInfo>,
}

impl ModuleVisitor for ParamCollector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack.push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let path = self.stack.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(".");
        // open_clip decays `ndim >= 2` tensors except embeddings/positions; here that is
        // exactly the `weight` of a `Linear` (patch embedding and projections included).
        let decay = D == 2 && self.stack.last().is_some_and(|(n, ty)| n == "weight" && ty == "Struct:Linear");
        self.out.push(ParamInfo { path, id: param.id, shape: param.val().dims().to_vec(), decay });
    }
}

/// AdamW hyper-parameters (PyTorch/open_clip conventions, set explicitly because Burn's
/// defaults differ: epsilon 1e-5, weight decay 1e-4, beta2 0.999).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWSettings {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
}

impl Default for AdamWSettings {
    fn default() -> Self {
        Self { beta_1: 0.9, beta_2: 0.98, epsilon: 1e-6, weight_decay: 0.2 }
    }
}

/// AdamW with decoupled weight decay on linear-layer matrices only (no decay on LayerNorm
/// gains, biases, embeddings, class token, positions or the temperature), as open_clip does.
///
/// Built on Burn's `ModuleOptimizer` with a second parameter group matched by exact module
/// path, so the routing survives a model reload (paths are stable, `ParamId`s are restored
/// from the model record either way).
#[derive(Clone)]
pub struct ClipOptimizer {
    inner: ModuleOptimizer,
    params: Vec<ParamInfo>,
    settings: AdamWSettings,
}

impl ClipOptimizer {
    pub fn new(model: &Clip, settings: AdamWSettings) -> Self {
        let params = param_infos(model);
        let adamw = |wd: f32| {
            AdamWConfig::new()
                .with_beta_1(settings.beta_1)
                .with_beta_2(settings.beta_2)
                .with_epsilon(settings.epsilon)
                .with_weight_decay(wd)
        };
        let decay_paths: Vec<String> = params.iter().filter(|p| p.decay).map(|p| p.path.clone()).collect();
        // Group 0 (fallback, all params): no decay. Later groups win, so decay paths use group 1.
        let inner = adamw(0.0).init().with_group(
            ParamGroup::from_paths(decay_paths),
            adamw(settings.weight_decay).build(),
            None,
        );
        Self { inner, params, settings }
    }

    pub fn settings(&self) -> AdamWSettings {
        self.settings
    }

    /// Parameters with their decay flag, in module order.
    pub fn params(&self) -> &[ParamInfo] {
        &self.params
    }

    /// One AdamW update; parameters without a gradient are left untouched.
    pub fn step(&mut self, lr: f64, model: Clip, grads: GradientsParams) -> Clip {
        self.inner.step(lr, model, grads)
    }

    /// The optimiser state (moments, step counts) as burnpack bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let bytes = self.inner.into_bytes().map_err(|e| ModelError::Record(e.to_string()))?;
        Ok(bytes.to_vec())
    }

    /// Restores the state written by [`ClipOptimizer::to_bytes`]. Load the model first: the
    /// state is keyed by the `ParamId`s that the model record restores.
    pub fn load_bytes(&mut self, bytes: &[u8]) -> Result<(), ModelError> {
        let inner = self
            .inner
            .clone()
            .from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
            .map_err(|e| ModelError::Record(e.to_string()))?;
        self.inner = inner;
        Ok(())
    }
}

/// Scales all gradients by `min(1, max_norm / (‖g‖ + 1e-6))` where `‖g‖` is the L2 norm over
/// every parameter together (as `torch.nn.utils.clip_grad_norm_`); returns the pre-clip norm.
/// `max_norm = None` only measures.
pub fn clip_grad_norm(
    params: &[ParamInfo],
    grads: &mut GradientsParams,
    max_norm: Option<f32>,
) -> Result<f32, ModelError> {
    let mut total: Option<Tensor<1>> = None;
    for p in params {
        let sq = match p.shape.len() {
            1 => grads.get::<1>(p.id).map(|g| g.square().sum()),
            2 => grads.get::<2>(p.id).map(|g| g.square().sum()),
            3 => grads.get::<3>(p.id).map(|g| g.square().sum()),
            4 => grads.get::<4>(p.id).map(|g| g.square().sum()),
            rank => {
                return Err(ModelError::Data(format!("parameter {} of unsupported rank {rank}", p.path)));
            }
        };
        if let Some(sq) = sq {
            total = Some(match total {
                Some(t) => t + sq,
                None => sq,
            });
        }
    }
    let norm = match total {
        Some(t) => scalar_f32(t)?.sqrt(),
        None => 0.0,
    };
    if let Some(max) = max_norm {
        let coef = max / (norm + 1e-6);
        if norm.is_finite() && coef < 1.0 {
            for p in params {
                match p.shape.len() {
                    1 => scale_grad::<1>(grads, p.id, coef),
                    2 => scale_grad::<2>(grads, p.id, coef),
                    3 => scale_grad::<3>(grads, p.id, coef),
                    _ => scale_grad::<4>(grads, p.id, coef),
                }
            }
        }
    }
    Ok(norm)
}

fn scale_grad<const D: usize>(grads: &mut GradientsParams, id: ParamId, coef: f32) {
    if let Some(g) = grads.remove::<D>(id) {
        grads.register(id, g.mul_scalar(coef));
    }
}

/// Upper bound of the log temperature: `ln 100`, so logits are at most `100 · cos`.
pub fn max_logit_scale() -> f32 {
    100f32.ln()
}

/// Clamps the log temperature to `[0, ln 100]` (open_clip does this after every step).
pub fn clamp_logit_scale(mut model: Clip) -> Result<Clip, ModelError> {
    let t = model.logit_scale.val();
    let value = scalar_f32(t.clone())?;
    let clamped = value.clamp(0.0, max_logit_scale());
    if clamped != value {
        let device = t.device();
        // The temperature is always trainable on an autodiff device, even if the value we
        // replace was a derived (non-leaf) tensor.
        let require_grad = t.is_require_grad() || device.is_autodiff();
        model.logit_scale = model.logit_scale.map(|_| {
            // A fresh leaf (not `clamp` of the old one) so the next backward reaches the param.
            let fresh = Tensor::from_data(TensorData::new(vec![clamped], [1]), &device);
            if require_grad { fresh.require_grad() } else { fresh }
        });
    }
    Ok(model)
}

/// What one optimiser step reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Contrastive loss of the batch before the update.
    pub loss: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
}

fn model_device(model: &Clip) -> Device {
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
    let (loss, grads) = loss_and_gradients(&model, batch, 1.0)?;
    apply_gradients(model, optim, grads, loss, lr, max_grad_norm)
}

/// One data-parallel step: rank `r` runs forward + backward of its own rows
/// `rank_batches[r]` on a replica of `model` on `rank_devices[r]` (inner devices; the replica
/// gets their autodiff twin), each in its own thread. Each rank's contrastive loss uses its
/// own rows as negatives (open_clip's `--local-loss` without feature gathering); the
/// gradients are averaged onto the model's device, clipped there by their global norm, and
/// one AdamW step updates the model, which the next step forks to the ranks again.
///
/// With one rank this is exactly [`train_step`]. The reported loss is the mean of the ranks'
/// losses. Gradients are summed in rank order, so the result does not depend on thread timing.
pub fn train_step_ranks(
    model: Clip,
    optim: &mut ClipOptimizer,
    rank_batches: &[ClipBatch],
    rank_devices: &[Device],
    lr: f64,
    max_grad_norm: Option<f32>,
) -> Result<(Clip, StepStats), ModelError> {
    check_ranks(rank_batches.len(), rank_devices.len())?;
    if let [batch] = rank_batches {
        return train_step(model, optim, batch, lr, max_grad_norm);
    }
    let scale = 1.0 / rank_batches.len() as f32;
    let per_rank = std::thread::scope(|scope| {
        let handles: Vec<_> = rank_batches
            .iter()
            .zip(rank_devices)
            .map(|(batch, device)| {
                let replica = model.clone().fork(&device.clone().autodiff());
                scope.spawn(move || loss_and_gradients(&replica, batch, scale).map(|(l, g)| (l, g, replica)))
            })
            .collect();
        handles.into_iter().map(join_rank).collect::<Vec<_>>()
    });
    let home = model_device(&model);
    let mut sum = GradientsAccumulator::<Clip>::new();
    let mut loss = 0.0;
    for result in per_rank {
        let (rank_loss, grads, replica) = result?;
        loss += rank_loss;
        sum.accumulate(&model, grads.to_device(&home, &replica));
    }
    apply_gradients(model, optim, sum.grads(), loss * scale, lr, max_grad_norm)
}

fn check_ranks(batches: usize, devices: usize) -> Result<(), ModelError> {
    if batches == 0 || batches != devices {
        return Err(ModelError::Batch(format!("{batches} rank batches for {devices} rank devices")));
    }
    Ok(())
}

fn join_rank<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T, ModelError>>) -> Result<T, ModelError> {
    handle.join().unwrap_or_else(|_| Err(ModelError::Batch("a data-parallel rank's thread panicked".into())))
}

/// Forward + backward of `loss · scale` on `batch`; returns the unscaled loss and the
/// gradients keyed by the model's parameter ids.
fn loss_and_gradients(model: &Clip, batch: &ClipBatch, scale: f32) -> Result<(f32, GradientsParams), ModelError> {
    let batch = batch.to_device(&model_device(model));
    let out = model.forward(batch.images, batch.tokens, batch.eot);
    let loss = clip_loss(&out);
    let loss_value = scalar_f32(loss.clone())?;
    if !loss_value.is_finite() {
        return Err(ModelError::NonFinite { what: "loss", value: loss_value });
    }
    let loss = if scale == 1.0 { loss } else { loss.mul_scalar(scale) };
    Ok((loss_value, GradientsParams::from_grads(loss.backward(), model)))
}

/// Global gradient clipping, AdamW step and temperature clamp.
fn apply_gradients(
    model: Clip,
    optim: &mut ClipOptimizer,
    mut grads: GradientsParams,
    loss: f32,
    lr: f64,
    max_grad_norm: Option<f32>,
) -> Result<(Clip, StepStats), ModelError> {
    let grad_norm = clip_grad_norm(&optim.params, &mut grads, max_grad_norm)?;
    if !grad_norm.is_finite() {
        return Err(ModelError::NonFinite { what: "gradient norm", value: grad_norm });
    }
    let model = optim.step(lr, model, grads);
    let model = clamp_logit_scale(model)?;
    Ok((model, StepStats { loss, grad_norm }))
}

/// Per-row scores of the scoring pass.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchScores {
    /// `100 · cos(f_j, g_j)`, unclamped.
    pub clip_scores: Vec<f32>,
    /// Per-sample symmetric InfoNCE `ℓ_j` over the whole batch.
    pub per_sample_loss: Vec<f32>,
}

/// The scoring pass: a forward pass over the whole batch without the autodiff tape.
///
/// `model` may be the training (autodiff) model or its `valid()` copy; it is scored without
/// the tape either way.
pub fn score_batch(model: &Clip, batch: &ClipBatch) -> Result<BatchScores, ModelError> {
    score_untracked(&model.valid(), batch)
}

/// [`score_batch`] for a model already without the tape.
fn score_untracked(model: &Clip, batch: &ClipBatch) -> Result<BatchScores, ModelError> {
    let batch = batch.to_device(&model_device(model));
    let out = model.forward(batch.images, batch.tokens, batch.eot);
    let scores = clip_scores(&out.image_features, &out.text_features);
    Ok(BatchScores { clip_scores: to_vec_f32(scores)?, per_sample_loss: to_vec_f32(per_sample_loss(&out))? })
}

/// The scoring pass of a data-parallel step: rank `r` scores `rank_batches[r]` on a copy of
/// `model` (training model or `valid()` copy) on `rank_devices[r]`, each in its own thread;
/// results in rank order. With one rank this is exactly [`score_batch`].
pub fn score_batches(
    model: &Clip,
    rank_batches: &[ClipBatch],
    rank_devices: &[Device],
) -> Result<Vec<BatchScores>, ModelError> {
    check_ranks(rank_batches.len(), rank_devices.len())?;
    let model = model.valid();
    if let [batch] = rank_batches {
        return Ok(vec![score_untracked(&model, batch)?]);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = rank_batches
            .iter()
            .zip(rank_devices)
            .map(|(batch, device)| {
                let replica = model.clone().fork(device);
                scope.spawn(move || score_untracked(&replica, batch))
            })
            .collect();
        handles.into_iter().map(join_rank).collect()
    })
}

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
