//! The ViT image tower.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;

use crate::config::VitConfig;
use crate::kernels::layer_norm;
use crate::layers::{Block, BlockShape, Init, linear_rows};
use crate::precision;

/// ViT image tower (open_clip's `VisionTransformer` without its optional extras).
#[derive(Module, Debug)]
pub struct VisionTransformer {
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

impl VisionTransformer {
    pub(crate) fn new(init: &mut Init<'_>, cfg: &VitConfig, embed_dim: usize, quick_gelu: bool) -> Self {
        let w = cfg.width;
        let shape = BlockShape { width: w, heads: cfg.heads, layers: cfg.layers, mlp_ratio: cfg.mlp_ratio };
        let scale = (w as f32).powf(-0.5);
        let patch_in = cfg.channels * cfg.patch_size * cfg.patch_size;
        Self {
            patch_embed: init.linear(patch_in, w, (patch_in as f32).powf(-0.5), false),
            class_embedding: init.normal([w], scale),
            positional_embedding: init.normal([cfg.num_patches() + 1, w], scale),
            ln_pre: init.layer_norm(w),
            blocks: (0..cfg.layers).map(|_| Block::new(init, shape, quick_gelu)).collect(),
            ln_post: init.layer_norm(w),
            proj: init.linear(w, embed_dim, scale, false),
            patch_size: cfg.patch_size,
        }
    }

    /// `[b, c, h, w]` images → `[b, embed_dim]` unnormalised features.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let [b, c, h, w] = images.dims();
        let images = precision::activation(images);
        let p = self.patch_size;
        let (gh, gw) = (h / p, w / p);
        let x: Tensor<3> =
            images.reshape([b, c, gh, p, gw, p]).permute([0, 2, 4, 1, 3, 5]).reshape([b, gh * gw, c * p * p]);
        let x = linear_rows(&self.patch_embed, x);
        let width = x.dims()[2];
        let cls = precision::activation(self.class_embedding.val()).reshape([1, 1, width]).expand([b, 1, width]);
        let positions = precision::activation(self.positional_embedding.val());
        let x = Tensor::cat(vec![cls, x], 1) + positions.unsqueeze_dim(0);
        let mut x = layer_norm(&self.ln_pre, x);
        for block in &self.blocks {
            x = block.forward(x, false);
        }
        let cls: Tensor<2> = x.narrow(1, 0, 1).squeeze_dim(1);
        let features = precision::linear(&self.proj, layer_norm(&self.ln_post, cls));
        precision::debug_check_activation(&features, "the ViT's output");
        features
    }
}
