//! Model dimensions, one config per tower as open_clip structures them: presets and TOML
//! loading with validation.
//!
//! A [`ClipConfig`] holds the shared embedding width, the image tower ([`VisionConfig`]: a ViT
//! or open_clip's `ModifiedResNet`) and the text tower ([`TextConfig`]). In TOML (a run's
//! `model.toml`) the image tower is a table named by its kind, `[vision.vit]` or
//! `[vision.resnet]`, and the text tower is `[text]`.

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// Dimensions of a CLIP dual encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipConfig {
    /// Width of the shared image-text embedding space.
    pub embed_dim: usize,
    /// The image tower.
    pub vision: VisionConfig,
    /// The text tower.
    pub text: TextConfig,
    /// QuickGELU (`x · σ(1.702 x)`) in both towers' MLPs instead of exact GELU: OpenAI's CLIP
    /// weights and open_clip's `-quickgelu` models were trained with it (open_clip's
    /// `quick_gelu`). The ResNet stages use ReLU either way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quick_gelu: bool,
}

/// The image tower: a vision transformer or a ResNet with attention pooling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum VisionConfig {
    /// A ViT (open_clip's `VisionTransformer`).
    Vit(VitConfig),
    /// open_clip's `ModifiedResNet` (the CLIP ResNets: RN50, RN101, ...).
    ResNet(ResNetConfig),
}

/// A ViT image tower.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    /// Square input image side in pixels.
    pub image_size: usize,
    /// Square patch side in pixels; must divide `image_size`.
    pub patch_size: usize,
    /// Image channels (3 for RGB).
    #[serde(default = "default_channels")]
    pub channels: usize,
    /// Width of the transformer.
    pub width: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Attention heads; must divide `width`.
    pub heads: usize,
    /// MLP hidden width as a multiple of `width`.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: usize,
}

/// open_clip's `ModifiedResNet`: a three-convolution stem with average pooling, four stages
/// of bottleneck blocks (strided by average pooling, not by the convolutions), and attention
/// pooling of the last feature map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetConfig {
    /// Square input image side in pixels; a multiple of 32 (the tower downsamples by 32 and
    /// the attention pool's positions are sized from the result).
    pub image_size: usize,
    /// Bottleneck blocks of the four stages (`[3, 4, 6, 3]` for RN50).
    pub layers: [usize; 4],
    /// Width of the stem and of the first stage's bottlenecks; the last stage outputs 32×.
    pub width: usize,
    /// Attention heads of the pool; must divide `32 · width`.
    pub heads: usize,
}

/// The causal text transformer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextConfig {
    /// Token positions per caption (including start and end-of-text tokens).
    pub context_length: usize,
    /// Rows of the token embedding (at least the tokenizer's vocabulary).
    pub vocab_size: usize,
    /// Width of the transformer.
    pub width: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Attention heads; must divide `width`.
    pub heads: usize,
    /// MLP hidden width as a multiple of `width`.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: usize,
}

fn default_channels() -> usize {
    3
}

fn default_mlp_ratio() -> usize {
    4
}

/// Names accepted by [`ClipConfig::preset`].
pub const PRESETS: [&str; 6] = ["micro", "tiny", "small", "vit-b-32", "rn-tiny", "rn50"];

/// The `[text]` table shared by the small presets.
fn small_text(width: usize, layers: usize, heads: usize, context_length: usize, vocab_size: usize) -> TextConfig {
    TextConfig { context_length, vocab_size, width, layers, heads, mlp_ratio: 4 }
}

/// CLIP's text transformer (77 positions, CLIP's 49,408-token vocabulary, width 512).
fn clip_text() -> TextConfig {
    small_text(512, 12, 8, 77, 49408)
}

fn vit(image_size: usize, patch_size: usize, width: usize, layers: usize, heads: usize) -> VisionConfig {
    VisionConfig::Vit(VitConfig { image_size, patch_size, channels: 3, width, layers, heads, mlp_ratio: 4 })
}

impl ClipConfig {
    /// Smallest preset, for fast tests and demos (~0.3 M parameters).
    pub fn micro() -> Self {
        Self { embed_dim: 64, vision: vit(16, 4, 64, 2, 2), text: small_text(64, 2, 2, 16, 512), quick_gelu: false }
    }

    /// CPU-friendly preset (~1.77 M parameters), the one the benchmarks use.
    pub fn tiny() -> Self {
        Self { embed_dim: 128, vision: vit(32, 4, 128, 4, 4), text: small_text(128, 4, 4, 16, 1024), quick_gelu: false }
    }

    /// A step up from `tiny` (64 px images, width 256, 6+6 layers).
    pub fn small() -> Self {
        Self { embed_dim: 256, vision: vit(64, 8, 256, 6, 4), text: small_text(256, 6, 4, 32, 8192), quick_gelu: false }
    }

    /// The open_clip ViT-B/32 dimensions.
    pub fn vit_b_32() -> Self {
        Self { embed_dim: 512, vision: vit(224, 32, 768, 12, 12), text: clip_text(), quick_gelu: false }
    }

    /// A ResNet CLIP that trains on two CPU cores: one bottleneck per stage, stem width 16
    /// (a 512-wide attention pool with 8 heads of 64), `tiny`'s text tower.
    pub fn rn_tiny() -> Self {
        Self {
            embed_dim: 128,
            vision: VisionConfig::ResNet(ResNetConfig { image_size: 32, layers: [1, 1, 1, 1], width: 16, heads: 8 }),
            text: small_text(128, 4, 4, 16, 1024),
            quick_gelu: false,
        }
    }

    /// open_clip's RN50 (`RN50.json`: 224 px, stages `[3, 4, 6, 3]`, width 64, 32 heads).
    pub fn rn50() -> Self {
        Self {
            embed_dim: 1024,
            vision: VisionConfig::ResNet(ResNetConfig { image_size: 224, layers: [3, 4, 6, 3], width: 64, heads: 32 }),
            text: clip_text(),
            quick_gelu: false,
        }
    }

    /// A preset by name (one of [`PRESETS`]; `_` for `-` and case are tolerated), with
    /// QuickGELU when the name ends in `-quickgelu` as open_clip's do (`ViT-B-32-quickgelu`).
    pub fn preset(name: &str) -> Result<Self, ModelError> {
        let lower = name.to_ascii_lowercase().replace('_', "-");
        if let Some(base) = lower.strip_suffix("-quickgelu") {
            return Ok(Self { quick_gelu: true, ..Self::preset(base)? });
        }
        match lower.as_str() {
            "micro" => Ok(Self::micro()),
            "tiny" => Ok(Self::tiny()),
            "small" => Ok(Self::small()),
            "vit-b-32" | "vit-b/32" => Ok(Self::vit_b_32()),
            "rn-tiny" => Ok(Self::rn_tiny()),
            "rn50" => Ok(Self::rn50()),
            _ => Err(ModelError::UnknownPreset(name.to_string())),
        }
    }

    /// Parses and validates a TOML document with the tables of this struct.
    pub fn from_toml_str(text: &str) -> Result<Self, ModelError> {
        let cfg: Self = toml::from_str(text).map_err(|e| ModelError::Toml(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Serialises to TOML (the inverse of [`ClipConfig::from_toml_str`]).
    pub fn to_toml_string(&self) -> Result<String, ModelError> {
        toml::to_string(self).map_err(|e| ModelError::Toml(e.to_string()))
    }

    /// Square input image side in pixels.
    pub fn image_size(&self) -> usize {
        match &self.vision {
            VisionConfig::Vit(v) => v.image_size,
            VisionConfig::ResNet(r) => r.image_size,
        }
    }

    /// Sets the input image side (the trainer sizes presets to the dataset's images).
    pub fn set_image_size(&mut self, side: usize) {
        match &mut self.vision {
            VisionConfig::Vit(v) => v.image_size = side,
            VisionConfig::ResNet(r) => r.image_size = side,
        }
    }

    /// Image channels.
    pub fn channels(&self) -> usize {
        match &self.vision {
            VisionConfig::Vit(v) => v.channels,
            // open_clip's ResNet stem takes RGB.
            VisionConfig::ResNet(_) => 3,
        }
    }

    /// Checks every dimension; the error names the offending field.
    pub fn validate(&self) -> Result<(), ModelError> {
        positive(&[("embed_dim", self.embed_dim)])?;
        match &self.vision {
            VisionConfig::Vit(v) => v.validate()?,
            VisionConfig::ResNet(r) => r.validate()?,
        }
        self.text.validate()
    }

    /// Parameter count implied by the dimensions (equals the trainable count of `Clip`;
    /// BatchNorm running statistics are buffers, not parameters, as in PyTorch).
    pub fn expected_num_params(&self) -> usize {
        let vision = match &self.vision {
            VisionConfig::Vit(v) => v.num_params(self.embed_dim),
            VisionConfig::ResNet(r) => r.num_params(self.embed_dim),
        };
        vision + self.text.num_params(self.embed_dim) + 1
    }
}

/// An error for the first field of `fields` that is zero.
fn positive(fields: &[(&'static str, usize)]) -> Result<(), ModelError> {
    match fields.iter().find(|(_, value)| *value == 0) {
        Some(&(field, _)) => Err(ModelError::InvalidConfig { field, reason: "must be at least 1".into() }),
        None => Ok(()),
    }
}

fn heads_divide(field: &'static str, width: usize, heads: usize) -> Result<(), ModelError> {
    if width.is_multiple_of(heads) {
        return Ok(());
    }
    Err(ModelError::InvalidConfig { field, reason: format!("width {width} is not divisible by {heads} heads") })
}

/// Parameters of a pre-LayerNorm transformer block of width `w`.
fn block_params(w: usize, mlp_ratio: usize) -> usize {
    let hidden = w * mlp_ratio;
    // two LayerNorms, fused qkv (+bias), out proj (+bias), MLP in/out (+biases)
    4 * w + (3 * w * w + 3 * w) + (w * w + w) + (w * hidden + hidden) + (hidden * w + w)
}

impl VitConfig {
    fn validate(&self) -> Result<(), ModelError> {
        positive(&[
            ("vision.image_size", self.image_size),
            ("vision.patch_size", self.patch_size),
            ("vision.channels", self.channels),
            ("vision.width", self.width),
            ("vision.layers", self.layers),
            ("vision.heads", self.heads),
            ("vision.mlp_ratio", self.mlp_ratio),
        ])?;
        if !self.image_size.is_multiple_of(self.patch_size) {
            return Err(ModelError::InvalidConfig {
                field: "vision.image_size",
                reason: format!("{} is not divisible by patch_size {}", self.image_size, self.patch_size),
            });
        }
        heads_divide("vision.heads", self.width, self.heads)
    }

    /// Patches per image side.
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Patches per image.
    pub fn num_patches(&self) -> usize {
        self.grid_size() * self.grid_size()
    }

    fn num_params(&self, embed_dim: usize) -> usize {
        let w = self.width;
        let patch_in = self.channels * self.patch_size * self.patch_size;
        // patch embedding, class token, positions, ln_pre, blocks, ln_post, projection
        patch_in * w
            + w
            + (self.num_patches() + 1) * w
            + 2 * w
            + self.layers * block_params(w, self.mlp_ratio)
            + 2 * w
            + w * embed_dim
    }
}

impl ResNetConfig {
    /// Channels of the last stage's output, the attention pool's width: 32 × `width`.
    pub fn pool_width(&self) -> usize {
        self.width * 32
    }

    /// Side of the last feature map: `image_size / 32`.
    pub fn grid_size(&self) -> usize {
        self.image_size / 32
    }

    fn validate(&self) -> Result<(), ModelError> {
        positive(&[
            ("vision.image_size", self.image_size),
            ("vision.width", self.width),
            ("vision.heads", self.heads),
            ("vision.layers", self.layers.iter().copied().min().unwrap_or(0)),
        ])?;
        if !self.image_size.is_multiple_of(32) {
            return Err(ModelError::InvalidConfig {
                field: "vision.image_size",
                reason: format!("{} is not a multiple of 32, which a ResNet tower needs", self.image_size),
            });
        }
        if !self.width.is_multiple_of(2) {
            return Err(ModelError::InvalidConfig {
                field: "vision.width",
                reason: format!("{} is odd; the stem's first convolutions are half as wide", self.width),
            });
        }
        heads_divide("vision.heads", self.pool_width(), self.heads)
    }

    fn num_params(&self, embed_dim: usize) -> usize {
        let conv = |c_in: usize, c_out: usize, k: usize| c_in * c_out * k * k;
        let bn = |c: usize| 2 * c;
        let half = self.width / 2;
        let stem =
            conv(3, half, 3) + bn(half) + conv(half, half, 3) + bn(half) + conv(half, self.width, 3) + bn(self.width);
        let mut inplanes = self.width;
        let mut stages = 0;
        for (stage, &blocks) in self.layers.iter().enumerate() {
            let planes = self.width << stage;
            for block in 0..blocks {
                let stride = if stage > 0 && block == 0 { 2 } else { 1 };
                stages += conv(inplanes, planes, 1) + bn(planes) + conv(planes, planes, 3) + bn(planes);
                stages += conv(planes, 4 * planes, 1) + bn(4 * planes);
                if stride > 1 || inplanes != 4 * planes {
                    stages += conv(inplanes, 4 * planes, 1) + bn(4 * planes);
                }
                inplanes = 4 * planes;
            }
        }
        let d = self.pool_width();
        let pool = (self.grid_size() * self.grid_size() + 1) * d + 3 * (d * d + d) + d * embed_dim + embed_dim;
        stem + stages + pool
    }
}

impl TextConfig {
    fn validate(&self) -> Result<(), ModelError> {
        positive(&[
            ("text.context_length", self.context_length),
            ("text.vocab_size", self.vocab_size),
            ("text.width", self.width),
            ("text.layers", self.layers),
            ("text.heads", self.heads),
            ("text.mlp_ratio", self.mlp_ratio),
        ])?;
        heads_divide("text.heads", self.width, self.heads)?;
        // Token ids travel as i64 inside Burn; anything larger cannot be embedded anyway.
        if self.vocab_size > i32::MAX as usize {
            return Err(ModelError::InvalidConfig { field: "text.vocab_size", reason: "larger than 2^31-1".into() });
        }
        Ok(())
    }

    fn num_params(&self, embed_dim: usize) -> usize {
        let w = self.width;
        // token embedding, positions, blocks, ln_final, projection
        self.vocab_size * w
            + self.context_length * w
            + self.layers * block_params(w, self.mlp_ratio)
            + 2 * w
            + w * embed_dim
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_have_open_clips_sizes() {
        for name in PRESETS {
            let cfg = ClipConfig::preset(name).expect("preset exists");
            cfg.validate().expect("preset is valid");
        }
        assert_eq!(ClipConfig::tiny().expected_num_params(), 1_767_425);
        assert!(ClipConfig::micro().expected_num_params() < 400_000);
        // open_clip 3.3.0: `sum(p.numel() for p in create_model(name).parameters())`.
        assert_eq!(ClipConfig::vit_b_32().expected_num_params(), 151_277_313);
        assert_eq!(ClipConfig::rn50().expected_num_params(), 102_007_137);
        assert!(matches!(ClipConfig::preset("huge"), Err(ModelError::UnknownPreset(_))));
        assert_eq!(ClipConfig::preset("RN_TINY").unwrap(), ClipConfig::rn_tiny());
    }

    #[test]
    fn validation_names_the_field() {
        let invalid = |edit: fn(&mut ClipConfig), field: &str| {
            let mut cfg = ClipConfig::tiny();
            edit(&mut cfg);
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        };
        invalid(|c| c.set_image_size(30), "vision.image_size");
        invalid(|c| c.text.heads = 3, "text.heads");
        invalid(|c| c.embed_dim = 0, "embed_dim");
        let mut cfg = ClipConfig::rn_tiny();
        cfg.set_image_size(48);
        assert!(cfg.validate().unwrap_err().to_string().contains("multiple of 32"));
        cfg.set_image_size(64);
        cfg.validate().unwrap();
        if let VisionConfig::ResNet(r) = &mut cfg.vision {
            r.layers[2] = 0;
        }
        assert!(cfg.validate().unwrap_err().to_string().contains("vision.layers"));
    }

    #[test]
    fn toml_round_trip_and_defaults() {
        for cfg in [ClipConfig::small(), ClipConfig::rn50()] {
            let text = cfg.to_toml_string().unwrap();
            assert_eq!(ClipConfig::from_toml_str(&text).unwrap(), cfg);
        }
        let minimal = r#"
            embed_dim = 128
            [vision.vit]
            image_size = 32
            patch_size = 4
            width = 128
            layers = 4
            heads = 4
            [text]
            context_length = 16
            vocab_size = 1024
            width = 128
            layers = 4
            heads = 4
        "#;
        assert_eq!(ClipConfig::from_toml_str(minimal).unwrap(), ClipConfig::tiny());
        let bad = minimal.replace("patch_size = 4", "patch_size = 6");
        assert!(ClipConfig::from_toml_str(&bad).is_err());
        let unknown = minimal.replace("patch_size = 4", "patch_size = 4\nls_init_value = 0.1");
        assert!(ClipConfig::from_toml_str(&unknown).unwrap_err().to_string().contains("ls_init_value"));
        // The flat layout of earlier versions is refused by name.
        assert!(ClipConfig::from_toml_str("image_size = 32").unwrap_err().to_string().contains("image_size"));
    }
}
