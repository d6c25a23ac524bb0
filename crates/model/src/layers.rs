//! Pieces both towers share: the seeded initialiser, multi-head attention and the
//! pre-LayerNorm transformer block.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use burn::tensor::activation::sigmoid;

use crate::kernels::{gelu, layer_norm, self_attention};
use crate::precision;

/// Seeded parameter initialiser. Burn's own RNG is global per backend, so tests running in
/// parallel threads would interleave draws; a private ChaCha stream keeps `seed → weights` exact.
pub(crate) struct Init<'a> {
    rng: ChaCha8Rng,
    device: &'a Device,
}

impl<'a> Init<'a> {
    /// A seeded initialiser placing tensors on `device`.
    pub(crate) fn new(seed: u64, device: &'a Device) -> Self {
        Self { rng: ChaCha8Rng::seed_from_u64(seed), device }
    }

    pub(crate) fn normal_vec(&mut self, n: usize, std: f32) -> Vec<f32> {
        let mut out = Vec::with_capacity(n + 1);
        // Box–Muller, two samples per pair of uniforms.
        while out.len() < n {
            let u1: f64 = self.rng.random_range(f64::MIN_POSITIVE..1.0);
            let u2: f64 = self.rng.random::<f64>();
            let r = (-2.0 * u1.ln()).sqrt();
            let theta = 2.0 * std::f64::consts::PI * u2;
            out.push((r * theta.cos()) as f32 * std);
            out.push((r * theta.sin()) as f32 * std);
        }
        out.truncate(n);
        out
    }

    pub(crate) fn normal<const D: usize>(&mut self, shape: [usize; D], std: f32) -> Param<Tensor<D>> {
        let n = shape.iter().product();
        let data = TensorData::new(self.normal_vec(n, std), shape);
        Param::from_tensor(Tensor::from_data(data, self.device))
    }

    pub(crate) fn zeros<const D: usize>(&self, shape: [usize; D]) -> Param<Tensor<D>> {
        Param::from_tensor(Tensor::zeros(shape, self.device))
    }

    /// A Burn `Linear` (weight stored `[d_in, d_out]`) with normal weights and zero bias.
    pub(crate) fn linear(&mut self, d_in: usize, d_out: usize, std: f32, bias: bool) -> Linear {
        Linear { weight: self.normal([d_in, d_out], std), bias: bias.then(|| self.zeros([d_out])) }
    }

    pub(crate) fn layer_norm(&self, d: usize) -> LayerNorm {
        LayerNormConfig::new(d).init(self.device)
    }

    /// A constant tensor that takes no gradient (BatchNorm running statistics).
    pub(crate) fn buffer(&self, d: usize, value: f32) -> Param<Tensor<1>> {
        Param::from_tensor(Tensor::full([d], value, self.device)).set_require_grad(false)
    }

    /// Ones (BatchNorm gains).
    pub(crate) fn ones(&self, d: usize) -> Param<Tensor<1>> {
        Param::from_tensor(Tensor::ones([d], self.device))
    }
}

/// Multi-head self-attention with a fused q/k/v projection (one GEMM instead of three) and
/// no dropout, as in CLIP pre-training.
#[derive(Module, Debug)]
pub struct Attention {
    /// The fused query/key/value projection, `[d, 3d]`.
    pub qkv: Linear,
    /// The output projection.
    pub out: Linear,
    /// Attention heads.
    pub heads: usize,
}

impl Attention {
    /// `[b, l, d]` → `[b, l, d]`; `causal` masks every position's view of later ones.
    pub fn forward(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        // Under autocast q/k/v and the context stay bf16 from one product to the next.
        let ctx = self_attention(linear_rows_lowered(&self.qkv, x), self.heads, causal);
        linear_rows(&self.out, ctx)
    }
}

/// A linear layer over the rows of `[b, l, d]` as one 2-D GEMM: `flex` runs a broadcast
/// batched matmul for 3-D inputs, which is much slower than one large matrix product.
pub(crate) fn linear_rows(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    precision::activation(linear_rows_lowered(layer, x))
}

/// [`linear_rows`] left in bf16 under autocast (see `precision::linear_lowered`).
pub(crate) fn linear_rows_lowered(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [b, l, d] = x.dims();
    let y = precision::linear_lowered(layer, x.reshape([b * l, d]));
    let out = y.dims()[1];
    y.reshape([b, l, out])
}

/// A transformer block's dimensions: width, heads, the tower's depth (it scales the init)
/// and the MLP's width ratio.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockShape {
    pub width: usize,
    pub heads: usize,
    pub layers: usize,
    pub mlp_ratio: usize,
}

/// QuickGELU, `x · σ(1.702 x)`: the sigmoid approximation of GELU OpenAI's CLIP trained with.
pub(crate) fn quick_gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    sigmoid(x.clone().mul_scalar(1.702)) * x
}

/// Pre-LayerNorm transformer block: `x + attn(ln(x))`, then `x + mlp(ln(x))` with GELU.
#[derive(Module, Debug)]
pub struct Block {
    /// Norm before attention.
    pub ln_1: LayerNorm,
    /// Self-attention.
    pub attn: Attention,
    /// Norm before the MLP.
    pub ln_2: LayerNorm,
    /// MLP expansion (`mlp_ratio` × width).
    pub mlp_fc: Linear,
    /// MLP projection back to the width.
    pub mlp_proj: Linear,
    /// QuickGELU instead of exact GELU in the MLP (see `ClipConfig::quick_gelu`).
    pub quick_gelu: bool,
}

impl Block {
    pub(crate) fn new(init: &mut Init<'_>, shape: BlockShape, quick_gelu: bool) -> Self {
        let BlockShape { width, heads, layers, mlp_ratio: ratio } = shape;
        // open_clip's text-transformer init, used for both towers.
        let w = width as f32;
        let attn_std = w.powf(-0.5);
        let proj_std = w.powf(-0.5) * (2.0 * layers as f32).powf(-0.5);
        let fc_std = (2.0 * w).powf(-0.5);
        Self {
            ln_1: init.layer_norm(width),
            attn: Attention {
                qkv: init.linear(width, 3 * width, attn_std, true),
                out: init.linear(width, width, proj_std, true),
                heads,
            },
            ln_2: init.layer_norm(width),
            mlp_fc: init.linear(width, ratio * width, fc_std, true),
            mlp_proj: init.linear(ratio * width, width, proj_std, true),
            quick_gelu,
        }
    }

    /// `[b, l, d]` → `[b, l, d]`.
    pub fn forward(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(layer_norm(&self.ln_1, x), causal);
        let h = linear_rows(&self.mlp_fc, layer_norm(&self.ln_2, x.clone()));
        let h = if self.quick_gelu { quick_gelu(h) } else { gelu(h) };
        let x = x + linear_rows(&self.mlp_proj, h);
        precision::debug_check_activation(&x, "a transformer block's output");
        x
    }
}
