//! The causal text transformer tower.

use burn::module::{Module, Param};
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::{Int, Tensor};

use crate::config::TextConfig;
use crate::kernels::layer_norm;
use crate::layers::{Block, BlockShape, Init};
use crate::precision;

/// Causal text transformer tower.
#[derive(Module, Debug)]
pub struct TextTransformer {
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

impl TextTransformer {
    pub(crate) fn new(init: &mut Init<'_>, cfg: &TextConfig, embed_dim: usize, quick_gelu: bool) -> Self {
        let w = cfg.width;
        let shape = BlockShape { width: w, heads: cfg.heads, layers: cfg.layers, mlp_ratio: cfg.mlp_ratio };
        Self {
            token_embedding: Embedding { weight: init.normal([cfg.vocab_size, w], 0.02) },
            positional_embedding: init.normal([cfg.context_length, w], 0.01),
            blocks: (0..cfg.layers).map(|_| Block::new(init, shape, quick_gelu)).collect(),
            ln_final: init.layer_norm(w),
            text_projection: init.linear(w, embed_dim, (w as f32).powf(-0.5), false),
        }
    }

    /// `[b, l]` token ids and `[b]` end-of-text positions → `[b, embed_dim]` features.
    pub fn forward(&self, tokens: Tensor<2, Int>, eot: Tensor<1, Int>) -> Tensor<2> {
        let [b, l] = tokens.dims();
        let device = tokens.device();
        // Under bf16 the gathered rows are cast, not the whole vocabulary's table.
        let pos = precision::activation(self.positional_embedding.val().narrow(0, 0, l));
        let mut x = precision::activation(self.token_embedding.forward(tokens)) + pos.unsqueeze_dim(0);
        for block in &self.blocks {
            x = block.forward(x, true);
        }
        let width = x.dims()[2];
        // Row `i` of the flattened [b*l, w] tensor at `i*l + eot[i]`; LayerNorm is per row,
        // so normalising only the picked rows is the same and cheaper.
        let rows = Tensor::<1, Int>::arange(0..b as i64, &device).mul_scalar(l as i64) + eot;
        let x = x.reshape([b * l, width]).select(0, rows);
        let features = precision::linear(&self.text_projection, layer_norm(&self.ln_final, x));
        precision::debug_check_activation(&features, "the text tower's output");
        features
    }
}
