//! The CLIP dual encoder: an image tower (ViT or ModifiedResNet), the causal text
//! transformer, and a learnable temperature.

use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::config::{ClipConfig, VisionConfig};
use crate::error::ModelError;
use crate::layers::Init;
use crate::precision::{self, with_precision};
use crate::resnet::{ModifiedResNet, NormMode, RunningStats};
use crate::text::TextTransformer;
use crate::vit::VisionTransformer;

/// Initial temperature of open_clip: `ln(1/0.07)`.
pub fn initial_logit_scale() -> f32 {
    (1.0f32 / 0.07).ln()
}

/// The image tower.
// One tower per model, moved rarely: the size of the larger variant costs nothing, and Burn's
// module derive would have to see through a `Box` to keep the parameter paths.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum VisionTower {
    /// A vision transformer.
    Vit(VisionTransformer),
    /// open_clip's ModifiedResNet.
    ResNet(ModifiedResNet),
}

impl VisionTower {
    /// `[b, c, h, w]` images → `[b, embed_dim]` unnormalised features; `mode` says how a
    /// ResNet's BatchNorms normalise (a ViT has none).
    pub fn forward(&self, images: Tensor<4>, mode: &mut NormMode) -> Tensor<2> {
        match self {
            VisionTower::Vit(vit) => vit.forward(images),
            VisionTower::ResNet(resnet) => resnet.forward(images, mode),
        }
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
    pub text: TextTransformer,
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
    /// A locked ResNet image tower's BatchNorm keeps its running statistics in training too
    /// ([`Clip::lock`]).
    pub image_stats_frozen: bool,
}

impl Clip {
    /// Builds a freshly initialised model; the same `seed` gives bit-identical weights.
    pub fn new(cfg: &ClipConfig, seed: u64, device: &Device) -> Result<Self, ModelError> {
        cfg.validate()?;
        let mut init = Init::new(seed, device);
        let visual = match &cfg.vision {
            VisionConfig::Vit(vit) => {
                VisionTower::Vit(VisionTransformer::new(&mut init, vit, cfg.embed_dim, cfg.quick_gelu))
            }
            VisionConfig::ResNet(resnet) => VisionTower::ResNet(ModifiedResNet::new(&mut init, resnet, cfg.embed_dim)),
        };
        let text = TextTransformer::new(&mut init, &cfg.text, cfg.embed_dim, cfg.quick_gelu);
        let logit_scale =
            Param::from_tensor(Tensor::from_data(TensorData::new(vec![initial_logit_scale()], [1]), device));
        Ok(Self {
            visual,
            text,
            logit_scale,
            image_size: cfg.image_size(),
            channels: cfg.channels(),
            context_length: cfg.text.context_length,
            vocab_size: cfg.text.vocab_size,
            image_stats_frozen: false,
        })
    }

    /// L2-normalised image features `[b, embed_dim]` of `[b, c, h, w]` images, BatchNorm (if
    /// any) with its running statistics.
    pub fn encode_image(&self, images: Tensor<4>) -> Tensor<2> {
        unit_features(self.visual.forward(images, &mut NormMode::Inference))
    }

    /// L2-normalised text features `[b, embed_dim]`; `eot[i]` is the end-of-text position of
    /// row `i` (tokens after it cannot influence the result: the attention is causal).
    pub fn encode_text(&self, tokens: Tensor<2, Int>, eot: Tensor<1, Int>) -> Tensor<2> {
        unit_features(self.text.forward(tokens, eot))
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
            // The precision is per thread: the text tower's thread takes this one's.
            let precision = precision::current();
            let text = scope.spawn(move || with_precision(precision, || self.encode_text(tokens, eot)));
            let image = self.encode_image(images);
            let text = text.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (image, text)
        });
        ClipOutput { image_features, text_features, logit_scale }
    }

    /// The training forward pass: [`Clip::forward`] with BatchNorm on the batch's own
    /// statistics. Returns the running-statistics updates (empty for a ViT), which
    /// [`Clip::apply_running_stats`] sets after the optimiser step.
    pub fn forward_train(
        &self,
        images: Tensor<4>,
        tokens: Tensor<2, Int>,
        eot: Tensor<1, Int>,
    ) -> (ClipOutput, Vec<RunningStats>) {
        let VisionTower::ResNet(resnet) = &self.visual else {
            return (self.forward(images, tokens, eot), Vec::new());
        };
        if self.image_stats_frozen {
            return (self.forward(images, tokens, eot), Vec::new());
        }
        let mut mode = NormMode::Training(Vec::new());
        let image_features = unit_features(resnet.forward(images, &mut mode));
        let text_features = self.encode_text(tokens, eot);
        let stats = match mode {
            NormMode::Training(stats) => stats,
            NormMode::Inference => Vec::new(),
        };
        (ClipOutput { image_features, text_features, logit_scale: self.logit_scale.val() }, stats)
    }

    /// Sets the running statistics of a training forward pass (nothing for a ViT or a locked
    /// ResNet tower).
    pub fn apply_running_stats(&mut self, stats: Vec<RunningStats>) {
        if self.image_stats_frozen {
            return;
        }
        if let VisionTower::ResNet(resnet) = &mut self.visual {
            resnet.apply_running_stats(stats);
        }
    }

    /// Current log temperature `t` as a number.
    pub fn logit_scale_value(&self) -> f32 {
        self.logit_scale.val().into_scalar::<f32>()
    }

    /// Width of the shared embedding space (the towers' output features).
    pub fn embed_dim(&self) -> usize {
        self.text.text_projection.weight.dims()[1]
    }
}

/// A tower's output as unit-length f32 rows: the logits, the loss and the scores are f32
/// under every precision.
fn unit_features(x: Tensor<2>) -> Tensor<2> {
    l2_normalize(precision::to_f32(x))
}

/// Divides each row by its L2 norm (floored at 1e-12 so a zero row stays finite).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}
