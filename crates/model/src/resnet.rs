//! open_clip's `ModifiedResNet` image tower (the CLIP ResNets), layer for layer.
//!
//! Three 3×3 convolutions and a 2×2 average pool as the stem; four stages of bottleneck
//! blocks whose strided blocks downsample by average pooling before the last 1×1 convolution
//! (and before the shortcut's), so no convolution has a stride except the stem's first; and
//! an attention pool: the mean of the last feature map, as the only query, attends over the
//! map and itself with learned positions.
//!
//! BatchNorm follows PyTorch: batch statistics in the training forward pass
//! ([`NormMode::Training`], which collects the running-statistics updates), the running
//! statistics everywhere else ([`NormMode::Inference`]). The trainer's scoring pass and the
//! evaluation run in inference mode: a pair's score must not depend on which other pairs
//! share its batch, and scoring must not move the running statistics (the DISSect authors
//! score in PyTorch's train mode, which does both).

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::module::{avg_pool2d, batch_norm};
use burn::tensor::ops::AvgPoolOptions;

use crate::config::ResNetConfig;
use crate::kernels::{attention, batch_norm_train, conv2d};
use crate::layers::{Init, linear_rows_lowered};
use crate::precision;

/// PyTorch's BatchNorm defaults.
const BN_EPSILON: f64 = 1e-5;
const BN_MOMENTUM: f32 = 0.1;

/// The new running statistics of one BatchNorm after a training forward pass.
#[derive(Debug, Clone)]
pub struct RunningStats {
    /// `(1 − m)·running_mean + m·batch_mean`.
    pub mean: Tensor<1>,
    /// `(1 − m)·running_var + m·unbiased batch variance`, as PyTorch updates it.
    pub var: Tensor<1>,
}

impl RunningStats {
    /// The same statistics on `device`.
    pub fn to_device(self, device: &burn::tensor::Device) -> Self {
        Self { mean: self.mean.to_device(device), var: self.var.to_device(device) }
    }
}

/// How BatchNorm normalises in a forward pass.
#[derive(Debug)]
pub enum NormMode {
    /// With the running statistics (scoring, evaluation).
    Inference,
    /// With the batch's own statistics; each BatchNorm pushes its new running statistics,
    /// in forward order, to be applied after the step ([`ModifiedResNet::apply_running_stats`]).
    Training(Vec<RunningStats>),
}

/// PyTorch's `BatchNorm2d` (epsilon 1e-5, momentum 0.1). The running statistics are
/// parameters that take no gradient: the optimiser never sees them, the checkpoint and
/// open_clip's state dict (`running_mean`, `running_var`) carry them.
#[derive(Module, Debug)]
pub struct BatchNorm2d {
    /// Per-channel gain.
    pub weight: Param<Tensor<1>>,
    /// Per-channel shift.
    pub bias: Param<Tensor<1>>,
    /// Running mean of the inputs.
    pub running_mean: Param<Tensor<1>>,
    /// Running (unbiased) variance of the inputs.
    pub running_var: Param<Tensor<1>>,
}

impl BatchNorm2d {
    fn new(init: &Init<'_>, channels: usize) -> Self {
        Self {
            weight: init.ones(channels),
            bias: init.zeros([channels]),
            running_mean: init.buffer(channels, 0.0),
            running_var: init.buffer(channels, 1.0),
        }
    }

    /// `[b, c, h, w]` → `[b, c, h, w]`. Under `bf16` the gain, shift and statistics enter in
    /// bf16 (LibTorch accumulates the batch's statistics in f32 inside), and the statistics
    /// that update the running ones leave in f32.
    pub fn forward(&self, x: Tensor<4>, mode: &mut NormMode) -> Tensor<4> {
        let (gain, shift) = (precision::activation(self.weight.val()), precision::activation(self.bias.val()));
        match mode {
            NormMode::Inference => batch_norm(
                x,
                gain,
                shift,
                precision::activation(self.running_mean.val()),
                precision::activation(self.running_var.val()),
                BN_EPSILON,
            ),
            NormMode::Training(updates) => {
                let [b, _, h, w] = x.dims();
                let n = (b * h * w) as f32;
                let out = batch_norm_train(x, gain, shift, BN_EPSILON);
                let (mean, variance) = (precision::to_f32(out.mean), precision::to_f32(out.variance));
                // PyTorch keeps the unbiased variance in the running statistics.
                let unbiased = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
                let keep = 1.0 - BN_MOMENTUM;
                updates.push(RunningStats {
                    mean: (self.running_mean.val().mul_scalar(keep) + mean.mul_scalar(BN_MOMENTUM)).detach(),
                    var: (self.running_var.val().mul_scalar(keep) + variance.mul_scalar(BN_MOMENTUM * unbiased))
                        .detach(),
                });
                out.output
            }
        }
    }

    fn apply(&mut self, stats: RunningStats) {
        self.running_mean = self.running_mean.clone().map(|_| stats.mean).set_require_grad(false);
        self.running_var = self.running_var.clone().map(|_| stats.var).set_require_grad(false);
    }
}

/// A convolution without bias, its weight `[out, in, k, k]` as PyTorch stores it.
#[derive(Module, Debug)]
pub struct Conv {
    /// `[out, in, k, k]`.
    pub weight: Param<Tensor<4>>,
    /// Stride of the convolution.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
}

impl Conv {
    /// PyTorch's default initialisation has variance `1 / (3 · fan_in)`; a normal of the same
    /// variance (BatchNorm follows every convolution, so only the scale matters).
    fn new(init: &mut Init<'_>, c_in: usize, c_out: usize, kernel: usize, stride: usize) -> Self {
        let std = (3.0 * (c_in * kernel * kernel) as f32).powf(-0.5);
        Self { weight: init.normal([c_out, c_in, kernel, kernel], std), stride, padding: kernel / 2 }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let (s, p) = (self.stride, self.padding);
        precision::activation(conv2d(precision::lower(x), precision::lower(self.weight.val()), s, p))
    }
}

/// A convolution followed by BatchNorm.
fn conv_bn(conv: &Conv, bn: &BatchNorm2d, x: Tensor<4>, mode: &mut NormMode) -> Tensor<4> {
    bn.forward(conv.forward(x), mode)
}

/// PyTorch's `AvgPool2d(k)`: a `k × k` window, stride `k`, no padding.
fn avg_pool(x: Tensor<4>, k: usize) -> Tensor<4> {
    avg_pool2d(x, AvgPoolOptions::new([k, k]))
}

/// The shortcut of a block that changes resolution or width: average pool, 1×1 conv, BN.
#[derive(Module, Debug)]
pub struct Downsample {
    /// The 1×1 convolution (open_clip's `downsample.0`).
    pub conv: Conv,
    /// Its BatchNorm (open_clip's `downsample.1`).
    pub bn: BatchNorm2d,
    /// Average-pool window before the convolution (1: none).
    pub pool: usize,
}

/// open_clip's `Bottleneck`: 1×1, 3×3, (average pool), 1×1 expanding by 4, residual, ReLU.
#[derive(Module, Debug)]
pub struct Bottleneck {
    /// 1×1 reduction.
    pub conv1: Conv,
    /// Its BatchNorm.
    pub bn1: BatchNorm2d,
    /// 3×3.
    pub conv2: Conv,
    /// Its BatchNorm.
    pub bn2: BatchNorm2d,
    /// 1×1 expansion to 4 × planes.
    pub conv3: Conv,
    /// Its BatchNorm (gain initialised to zero, as open_clip does, so a fresh block passes its
    /// shortcut on).
    pub bn3: BatchNorm2d,
    /// The shortcut's downsampling, when the block strides or widens.
    pub downsample: Option<Downsample>,
    /// Average-pool window after the 3×3 convolution (1: none).
    pub stride: usize,
}

impl Bottleneck {
    fn new(init: &mut Init<'_>, inplanes: usize, planes: usize, stride: usize) -> Self {
        let out = 4 * planes;
        let mut bn3 = BatchNorm2d::new(init, out);
        bn3.weight = init.zeros([out]);
        Self {
            conv1: Conv::new(init, inplanes, planes, 1, 1),
            bn1: BatchNorm2d::new(init, planes),
            conv2: Conv::new(init, planes, planes, 3, 1),
            bn2: BatchNorm2d::new(init, planes),
            conv3: Conv::new(init, planes, out, 1, 1),
            bn3,
            downsample: (stride > 1 || inplanes != out).then(|| Downsample {
                conv: Conv::new(init, inplanes, out, 1, 1),
                bn: BatchNorm2d::new(init, out),
                pool: stride,
            }),
            stride,
        }
    }

    fn forward(&self, x: Tensor<4>, mode: &mut NormMode) -> Tensor<4> {
        let out = relu(conv_bn(&self.conv1, &self.bn1, x.clone(), mode));
        let out = relu(conv_bn(&self.conv2, &self.bn2, out, mode));
        let out = if self.stride > 1 { avg_pool(out, self.stride) } else { out };
        let out = conv_bn(&self.conv3, &self.bn3, out, mode);
        let identity = match &self.downsample {
            Some(d) => {
                let pooled = if d.pool > 1 { avg_pool(x, d.pool) } else { x };
                conv_bn(&d.conv, &d.bn, pooled, mode)
            }
            None => x,
        };
        let out = relu(out + identity);
        precision::debug_check_activation(&out, "a bottleneck's output");
        out
    }

    /// The BatchNorms in the order `forward` runs them.
    fn norms_mut(&mut self) -> Vec<&mut BatchNorm2d> {
        let mut norms = vec![&mut self.bn1, &mut self.bn2, &mut self.bn3];
        if let Some(d) = self.downsample.as_mut() {
            norms.push(&mut d.bn);
        }
        norms
    }
}

/// open_clip's `AttentionPool2d`: the mean of the feature map, with learned positions for it
/// and every cell, queries the cells and itself; one output row per image.
#[derive(Module, Debug)]
pub struct AttentionPool {
    /// `[cells + 1, width]`: the mean token's position first.
    pub positional_embedding: Param<Tensor<2>>,
    /// Query projection (of the mean token only).
    pub q_proj: Linear,
    /// Key projection.
    pub k_proj: Linear,
    /// Value projection.
    pub v_proj: Linear,
    /// Output projection into the shared embedding space.
    pub c_proj: Linear,
    /// Attention heads.
    pub heads: usize,
}

impl AttentionPool {
    fn new(init: &mut Init<'_>, cells: usize, width: usize, heads: usize, embed_dim: usize) -> Self {
        let std = (width as f32).powf(-0.5);
        Self {
            positional_embedding: init.normal([cells + 1, width], std),
            q_proj: init.linear(width, width, std, true),
            k_proj: init.linear(width, width, std, true),
            v_proj: init.linear(width, width, std, true),
            c_proj: init.linear(width, embed_dim, std, true),
            heads,
        }
    }

    /// `[b, d, h, w]` feature map → `[b, embed_dim]`.
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let [b, d, h, w] = x.dims();
        let cells: Tensor<3> = x.reshape([b, d, h * w]).swap_dims(1, 2);
        let mean = cells.clone().mean_dim(1);
        let positions = precision::activation(self.positional_embedding.val());
        let tokens = Tensor::cat(vec![mean, cells], 1) + positions.unsqueeze_dim(0);
        let (heads, n) = (self.heads, h * w + 1);
        let dk = d / heads;
        let split = |t: Tensor<3>, len: usize| t.reshape([b, len, heads, dk]).swap_dims(1, 2);
        // Under autocast q/k/v and the context stay bf16 from one product to the next.
        let q = split(linear_rows_lowered(&self.q_proj, tokens.clone().narrow(1, 0, 1)), 1);
        let k = split(linear_rows_lowered(&self.k_proj, tokens.clone()), n);
        let v = split(linear_rows_lowered(&self.v_proj, tokens), n);
        let ctx: Tensor<4> = attention(q, k, v, false);
        precision::linear(&self.c_proj, ctx.swap_dims(1, 2).reshape([b, d]))
    }
}

/// open_clip's `ModifiedResNet`.
#[derive(Module, Debug)]
pub struct ModifiedResNet {
    /// Stem: 3×3, stride 2, to width / 2.
    pub conv1: Conv,
    /// Its BatchNorm.
    pub bn1: BatchNorm2d,
    /// Stem: 3×3 at width / 2.
    pub conv2: Conv,
    /// Its BatchNorm.
    pub bn2: BatchNorm2d,
    /// Stem: 3×3 to width.
    pub conv3: Conv,
    /// Its BatchNorm.
    pub bn3: BatchNorm2d,
    /// The four stages (open_clip's `layer1` … `layer4`).
    pub stages: Vec<Vec<Bottleneck>>,
    /// The attention pool.
    pub attnpool: AttentionPool,
}

impl ModifiedResNet {
    pub(crate) fn new(init: &mut Init<'_>, cfg: &ResNetConfig, embed_dim: usize) -> Self {
        let (width, half) = (cfg.width, cfg.width / 2);
        let conv1 = Conv::new(init, 3, half, 3, 2);
        let bn1 = BatchNorm2d::new(init, half);
        let conv2 = Conv::new(init, half, half, 3, 1);
        let bn2 = BatchNorm2d::new(init, half);
        let conv3 = Conv::new(init, half, width, 3, 1);
        let bn3 = BatchNorm2d::new(init, width);
        let mut inplanes = width;
        let mut stages = Vec::with_capacity(4);
        for (stage, &blocks) in cfg.layers.iter().enumerate() {
            let planes = width << stage;
            let first_stride = if stage == 0 { 1 } else { 2 };
            let mut stage_blocks = Vec::with_capacity(blocks);
            for block in 0..blocks {
                let stride = if block == 0 { first_stride } else { 1 };
                stage_blocks.push(Bottleneck::new(init, inplanes, planes, stride));
                inplanes = 4 * planes;
            }
            stages.push(stage_blocks);
        }
        let cells = cfg.grid_size() * cfg.grid_size();
        let attnpool = AttentionPool::new(init, cells, cfg.pool_width(), cfg.heads, embed_dim);
        Self { conv1, bn1, conv2, bn2, conv3, bn3, stages, attnpool }
    }

    /// `[b, 3, s, s]` images → `[b, embed_dim]` unnormalised features.
    pub fn forward(&self, images: Tensor<4>, mode: &mut NormMode) -> Tensor<2> {
        let x = relu(conv_bn(&self.conv1, &self.bn1, precision::activation(images), mode));
        let x = relu(conv_bn(&self.conv2, &self.bn2, x, mode));
        let x = relu(conv_bn(&self.conv3, &self.bn3, x, mode));
        let mut x = avg_pool(x, 2);
        for block in self.stages.iter().flatten() {
            x = block.forward(x, mode);
        }
        let features = self.attnpool.forward(x);
        precision::debug_check_activation(&features, "the ResNet's output");
        features
    }

    /// Every BatchNorm in the order `forward` runs them.
    fn norms_mut(&mut self) -> Vec<&mut BatchNorm2d> {
        let mut norms = vec![&mut self.bn1, &mut self.bn2, &mut self.bn3];
        for block in self.stages.iter_mut().flatten() {
            norms.extend(block.norms_mut());
        }
        norms
    }

    /// Sets the running statistics a training forward pass collected (one per BatchNorm, in
    /// forward order; anything else is a bug and panics).
    pub fn apply_running_stats(&mut self, stats: Vec<RunningStats>) {
        let norms = self.norms_mut();
        assert_eq!(norms.len(), stats.len(), "one running-statistics update per BatchNorm");
        for (norm, stats) in norms.into_iter().zip(stats) {
            norm.apply(stats);
        }
    }
}
