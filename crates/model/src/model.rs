//! The CLIP dual encoder: ViT image tower, causal text transformer, learnable temperature.

use burn::module::{Module, Param};
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::ClipConfig;
use crate::error::ModelError;
use crate::kernels::{gelu, layer_norm};

/// Initial temperature of open_clip: `ln(1/0.07)`.
pub fn initial_logit_scale() -> f32 {
    (1.0f32 / 0.07).ln()
}

/// Seeded parameter initialiser. Burn's own RNG is global per backend, so tests running in
/// parallel threads would interleave draws; a private ChaCha stream keeps `seed → weights` exact.
struct Init<'a> {
    rng: ChaCha8Rng,
    device: &'a Device,
}

impl Init<'_> {
    fn normal_vec(&mut self, n: usize, std: f32) -> Vec<f32> {
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

    fn normal<const D: usize>(&mut self, shape: [usize; D], std: f32) -> Param<Tensor<D>> {
        let n = shape.iter().product();
        let data = TensorData::new(self.normal_vec(n, std), shape);
        Param::from_tensor(Tensor::from_data(data, self.device))
    }

    fn zeros<const D: usize>(&self, shape: [usize; D]) -> Param<Tensor<D>> {
        Param::from_tensor(Tensor::zeros(shape, self.device))
    }

    /// A Burn `Linear` (weight stored `[d_in, d_out]`) with normal weights and zero bias.
    fn linear(&mut self, d_in: usize, d_out: usize, std: f32, bias: bool) -> Linear {
        Linear { weight: self.normal([d_in, d_out], std), bias: bias.then(|| self.zeros([d_out])) }
    }

    fn layer_norm(&self, d: usize) -> LayerNorm {
        LayerNormConfig::new(d).init(self.device)
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
        let [b, l, d] = x.dims();
        let h = self.heads;
        let dk = d / h;
        // [b, l, 3d] -> [3, b, h, l, dk]
        let qkv = linear_rows(&self.qkv, x).reshape([b, l, 3, h, dk]).permute([2, 0, 3, 1, 4]);
        let q: Tensor<4> = qkv.clone().narrow(0, 0, 1).squeeze_dim(0);
        let k: Tensor<4> = qkv.clone().narrow(0, 1, 1).squeeze_dim(0);
        let v: Tensor<4> = qkv.narrow(0, 2, 1).squeeze_dim(0);
        // The backend's attention op: a fused kernel on the no-grad path, a differentiable
        // decomposition under autodiff. `is_causal` is the same mask as
        // `generate_autoregressive_mask` without materialising it.
        let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: causal };
        let ctx = attention(q, k, v, None, None, options);
        linear_rows(&self.out, ctx.swap_dims(1, 2).reshape([b, l, d]))
    }
}

/// A linear layer over the rows of `[b, l, d]` as one 2-D GEMM: `flex` runs a broadcast
/// batched matmul for 3-D inputs, which is much slower than one large matrix product.
fn linear_rows(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [b, l, d] = x.dims();
    let y = layer.forward(x.reshape([b * l, d]));
    let out = y.dims()[1];
    y.reshape([b, l, out])
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
}

impl Block {
    fn new(init: &mut Init<'_>, width: usize, heads: usize, layers: usize, ratio: usize) -> Self {
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
        }
    }

    /// `[b, l, d]` → `[b, l, d]`.
    pub fn forward(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(layer_norm(&self.ln_1, x), causal);
        let h = gelu(linear_rows(&self.mlp_fc, layer_norm(&self.ln_2, x.clone())));
        x + linear_rows(&self.mlp_proj, h)
    }
}

/// ViT image tower.
#[derive(Module, Debug)]
pub struct VisionTower {
    /// Patch embedding as a linear map over flattened `[c, p, p]` patches (no bias, like
    /// open_clip's conv1); reshape + permute + matmul is faster than conv2d on `flex`.
    pub patch_embed: Linear,
    /// The class token prepended to the patches.
    pub class_embedding: Param<Tensor<1>>,
    /// Learned positions of the class token and the patches.
    pub positional_embedding: Param<Tensor<2>>,
    /// Norm before the blocks.
    pub ln_pre: LayerNorm,
    /// The transformer blocks.
    pub blocks: Vec<Block>,
    /// Norm of the class token's output.
    pub ln_post: LayerNorm,
    /// Projection into the shared embedding space.
    pub proj: Linear,
    /// Square patch side in pixels.
    pub patch_size: usize,
}

impl VisionTower {
    fn new(init: &mut Init<'_>, cfg: &ClipConfig) -> Self {
        let w = cfg.vision_width;
        let scale = (w as f32).powf(-0.5);
        let patch_in = cfg.channels * cfg.patch_size * cfg.patch_size;
        Self {
            patch_embed: init.linear(patch_in, w, (patch_in as f32).powf(-0.5), false),
            class_embedding: init.normal([w], scale),
            positional_embedding: init.normal([cfg.num_patches() + 1, w], scale),
            ln_pre: init.layer_norm(w),
            blocks: (0..cfg.vision_layers)
                .map(|_| Block::new(init, w, cfg.vision_heads, cfg.vision_layers, cfg.mlp_ratio))
                .collect(),
            ln_post: init.layer_norm(w),
            proj: init.linear(w, cfg.embed_dim, scale, false),
            patch_size: cfg.patch_size,
        }
    }

    /// `[b, c, h, w]` images → `[b, embed_dim]` unnormalised features.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let [b, c, h, w] = images.dims();
        let p = self.patch_size;
        let (gh, gw) = (h / p, w / p);
        let x: Tensor<3> =
            images.reshape([b, c, gh, p, gw, p]).permute([0, 2, 4, 1, 3, 5]).reshape([b, gh * gw, c * p * p]);
        let x = linear_rows(&self.patch_embed, x);
        let width = x.dims()[2];
        let cls = self.class_embedding.val().reshape([1, 1, width]).expand([b, 1, width]);
        let x = Tensor::cat(vec![cls, x], 1) + self.positional_embedding.val().unsqueeze_dim(0);
        let mut x = layer_norm(&self.ln_pre, x);
        for block in &self.blocks {
            x = block.forward(x, false);
        }
        let cls: Tensor<2> = x.narrow(1, 0, 1).squeeze_dim(1);
        self.proj.forward(layer_norm(&self.ln_post, cls))
    }
}

/// Causal text transformer tower.
#[derive(Module, Debug)]
pub struct TextTower {
    /// Token embedding, `[vocab_size, width]`.
    pub token_embedding: Embedding,
    /// Learned positions, `[context_length, width]`.
    pub positional_embedding: Param<Tensor<2>>,
    /// The causal transformer blocks.
    pub blocks: Vec<Block>,
    /// Norm after the blocks.
    pub ln_final: LayerNorm,
    /// Projection of the end-of-text position into the shared embedding space.
    pub text_projection: Linear,
}

impl TextTower {
    fn new(init: &mut Init<'_>, cfg: &ClipConfig) -> Self {
        let w = cfg.text_width;
        Self {
            token_embedding: Embedding { weight: init.normal([cfg.vocab_size, w], 0.02) },
            positional_embedding: init.normal([cfg.context_length, w], 0.01),
            blocks: (0..cfg.text_layers)
                .map(|_| Block::new(init, w, cfg.text_heads, cfg.text_layers, cfg.mlp_ratio))
                .collect(),
            ln_final: init.layer_norm(w),
            text_projection: init.linear(w, cfg.embed_dim, (w as f32).powf(-0.5), false),
        }
    }

    /// `[b, l]` token ids and `[b]` end-of-text positions → `[b, embed_dim]` features.
    pub fn forward(&self, tokens: Tensor<2, Int>, eot: Tensor<1, Int>) -> Tensor<2> {
        let [b, l] = tokens.dims();
        let device = tokens.device();
        let pos = self.positional_embedding.val().narrow(0, 0, l);
        let mut x = self.token_embedding.forward(tokens) + pos.unsqueeze_dim(0);
        for block in &self.blocks {
            x = block.forward(x, true);
        }
        let width = x.dims()[2];
        // Row `i` of the flattened [b*l, w] tensor at `i*l + eot[i]`; LayerNorm is per row,
        // so normalising only the picked rows is the same and cheaper.
        let rows = Tensor::<1, Int>::arange(0..b as i64, &device).mul_scalar(l as i64) + eot;
        let x = x.reshape([b * l, width]).select(0, rows);
        self.text_projection.forward(layer_norm(&self.ln_final, x))
    }
}

/// Output of a CLIP forward pass.
#[derive(Debug, Clone)]
pub struct ClipOutput {
    /// `[b, embed_dim]`, L2-normalised rows.
    pub image_features: Tensor<2>,
    /// `[b, embed_dim]`, L2-normalised rows.
    pub text_features: Tensor<2>,
    /// `[1]`, the log temperature `t` (logits are `exp(t) · cos`).
    pub logit_scale: Tensor<1>,
}

/// CLIP dual encoder.
#[derive(Module, Debug)]
pub struct Clip {
    /// The image tower.
    pub visual: VisionTower,
    /// The text tower.
    pub text: TextTower,
    /// `[1]`, the learnable log temperature `t`.
    pub logit_scale: Param<Tensor<1>>,
    /// Input image side (kept to validate batches).
    pub image_size: usize,
    /// Input image channels.
    pub channels: usize,
    /// Token positions per caption.
    pub context_length: usize,
    /// Token embedding rows.
    pub vocab_size: usize,
}

impl Clip {
    /// Builds a freshly initialised model; the same `seed` gives bit-identical weights.
    pub fn new(cfg: &ClipConfig, seed: u64, device: &Device) -> Result<Self, ModelError> {
        cfg.validate()?;
        let mut init = Init { rng: ChaCha8Rng::seed_from_u64(seed), device };
        let visual = VisionTower::new(&mut init, cfg);
        let text = TextTower::new(&mut init, cfg);
        let logit_scale =
            Param::from_tensor(Tensor::from_data(TensorData::new(vec![initial_logit_scale()], [1]), device));
        Ok(Self {
            visual,
            text,
            logit_scale,
            image_size: cfg.image_size,
            channels: cfg.channels,
            context_length: cfg.context_length,
            vocab_size: cfg.vocab_size,
        })
    }

    /// L2-normalised image features `[b, embed_dim]` of `[b, c, h, w]` images.
    pub fn encode_image(&self, images: Tensor<4>) -> Tensor<2> {
        l2_normalize(self.visual.forward(images))
    }

    /// L2-normalised text features `[b, embed_dim]`; `eot[i]` is the end-of-text position of
    /// row `i` (tokens after it cannot influence the result: the attention is causal).
    pub fn encode_text(&self, tokens: Tensor<2, Int>, eot: Tensor<1, Int>) -> Tensor<2> {
        l2_normalize(self.text.forward(tokens, eot))
    }

    /// Both towers and the temperature.
    ///
    /// Without the autodiff tape (scoring pass, evaluation) the towers run on two threads:
    /// they are independent until the loss, and many of the CPU backend's element-wise kernels
    /// are single-threaded, so this keeps the second core busy (scoring pass of `tiny` at
    /// batch 256: median 0.59 s → 0.52 s over five paired `bench_step` runs). Under autodiff
    /// it measured no faster, so training stays on one thread. Each tower's arithmetic is the
    /// same either way.
    pub fn forward(&self, images: Tensor<4>, tokens: Tensor<2, Int>, eot: Tensor<1, Int>) -> ClipOutput {
        let logit_scale = self.logit_scale.val();
        if logit_scale.device().is_autodiff() {
            return ClipOutput {
                image_features: self.encode_image(images),
                text_features: self.encode_text(tokens, eot),
                logit_scale,
            };
        }
        let (image_features, text_features) = std::thread::scope(|scope| {
            let text = scope.spawn(|| self.encode_text(tokens, eot));
            let image = self.encode_image(images);
            let text = text.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (image, text)
        });
        ClipOutput { image_features, text_features, logit_scale }
    }

    /// Current log temperature `t` as a number.
    pub fn logit_scale_value(&self) -> f32 {
        self.logit_scale.val().into_scalar::<f32>()
    }
}

/// Divides each row by its L2 norm (floored at 1e-12 so a zero row stays finite).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}
