//! Model dimensions: presets and TOML loading with validation.

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// Dimensions of a CLIP dual encoder (ViT image tower + causal text transformer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipConfig {
    /// Square input image side in pixels.
    pub image_size: usize,
    /// Square patch side in pixels; must divide `image_size`.
    pub patch_size: usize,
    /// Image channels (3 for RGB).
    #[serde(default = "default_channels")]
    pub channels: usize,
    /// Width of the image transformer.
    pub vision_width: usize,
    /// Blocks of the image transformer.
    pub vision_layers: usize,
    /// Attention heads of the image transformer; must divide `vision_width`.
    pub vision_heads: usize,
    /// Width of the text transformer.
    pub text_width: usize,
    /// Blocks of the text transformer.
    pub text_layers: usize,
    /// Attention heads of the text transformer; must divide `text_width`.
    pub text_heads: usize,
    /// Token positions per caption (including start and end-of-text tokens).
    pub context_length: usize,
    /// Rows of the token embedding (at least the tokenizer's vocabulary).
    pub vocab_size: usize,
    /// Width of the shared image-text embedding space.
    pub embed_dim: usize,
    /// MLP hidden width as a multiple of the tower width.
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
pub const PRESETS: [&str; 4] = ["micro", "tiny", "small", "vit-b-32"];

impl ClipConfig {
    /// Smallest preset, for fast tests and demos (~0.3 M parameters).
    pub fn micro() -> Self {
        Self {
            image_size: 16,
            patch_size: 4,
            channels: 3,
            vision_width: 64,
            vision_layers: 2,
            vision_heads: 2,
            text_width: 64,
            text_layers: 2,
            text_heads: 2,
            context_length: 16,
            vocab_size: 512,
            embed_dim: 64,
            mlp_ratio: 4,
        }
    }

    /// CPU-friendly preset (~1.77 M parameters), the one the benchmarks use.
    pub fn tiny() -> Self {
        Self {
            image_size: 32,
            patch_size: 4,
            channels: 3,
            vision_width: 128,
            vision_layers: 4,
            vision_heads: 4,
            text_width: 128,
            text_layers: 4,
            text_heads: 4,
            context_length: 16,
            vocab_size: 1024,
            embed_dim: 128,
            mlp_ratio: 4,
        }
    }

    /// A step up from `tiny` (64 px images, width 256, 6+6 layers).
    pub fn small() -> Self {
        Self {
            image_size: 64,
            patch_size: 8,
            channels: 3,
            vision_width: 256,
            vision_layers: 6,
            vision_heads: 4,
            text_width: 256,
            text_layers: 6,
            text_heads: 4,
            context_length: 32,
            vocab_size: 8192,
            embed_dim: 256,
            mlp_ratio: 4,
        }
    }

    /// The open_clip ViT-B/32 dimensions.
    pub fn vit_b_32() -> Self {
        Self {
            image_size: 224,
            patch_size: 32,
            channels: 3,
            vision_width: 768,
            vision_layers: 12,
            vision_heads: 12,
            text_width: 512,
            text_layers: 12,
            text_heads: 8,
            context_length: 77,
            vocab_size: 49408,
            embed_dim: 512,
            mlp_ratio: 4,
        }
    }

    /// A preset by name (`micro`, `tiny`, `small`, `vit-b-32`; `_` and case are tolerated).
    pub fn preset(name: &str) -> Result<Self, ModelError> {
        match name.to_ascii_lowercase().replace('_', "-").as_str() {
            "micro" => Ok(Self::micro()),
            "tiny" => Ok(Self::tiny()),
            "small" => Ok(Self::small()),
            "vit-b-32" | "vit-b/32" => Ok(Self::vit_b_32()),
            _ => Err(ModelError::UnknownPreset(name.to_string())),
        }
    }

    /// Parses and validates a TOML table with the fields of this struct.
    pub fn from_toml_str(text: &str) -> Result<Self, ModelError> {
        let cfg: Self = toml::from_str(text).map_err(|e| ModelError::Toml(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Serialises to TOML (the inverse of [`ClipConfig::from_toml_str`]).
    pub fn to_toml_string(&self) -> Result<String, ModelError> {
        toml::to_string(self).map_err(|e| ModelError::Toml(e.to_string()))
    }

    /// Checks every dimension; the error names the offending field.
    pub fn validate(&self) -> Result<(), ModelError> {
        let positive = [
            ("image_size", self.image_size),
            ("patch_size", self.patch_size),
            ("channels", self.channels),
            ("vision_width", self.vision_width),
            ("vision_layers", self.vision_layers),
            ("vision_heads", self.vision_heads),
            ("text_width", self.text_width),
            ("text_layers", self.text_layers),
            ("text_heads", self.text_heads),
            ("context_length", self.context_length),
            ("vocab_size", self.vocab_size),
            ("embed_dim", self.embed_dim),
            ("mlp_ratio", self.mlp_ratio),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ModelError::InvalidConfig { field, reason: "must be at least 1".into() });
            }
        }
        if !self.image_size.is_multiple_of(self.patch_size) {
            return Err(ModelError::InvalidConfig {
                field: "image_size",
                reason: format!("{} is not divisible by patch_size {}", self.image_size, self.patch_size),
            });
        }
        if !self.vision_width.is_multiple_of(self.vision_heads) {
            return Err(ModelError::InvalidConfig {
                field: "vision_heads",
                reason: format!("vision_width {} is not divisible by {} heads", self.vision_width, self.vision_heads),
            });
        }
        if !self.text_width.is_multiple_of(self.text_heads) {
            return Err(ModelError::InvalidConfig {
                field: "text_heads",
                reason: format!("text_width {} is not divisible by {} heads", self.text_width, self.text_heads),
            });
        }
        // Token ids travel as i64 inside Burn; anything larger cannot be embedded anyway.
        if self.vocab_size > i32::MAX as usize {
            return Err(ModelError::InvalidConfig { field: "vocab_size", reason: "larger than 2^31-1".into() });
        }
        Ok(())
    }

    /// Patches per image side.
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Patches per image.
    pub fn num_patches(&self) -> usize {
        self.grid_size() * self.grid_size()
    }

    /// Parameter count implied by the dimensions (equals `Clip::num_params`).
    pub fn expected_num_params(&self) -> usize {
        let block = |w: usize| {
            let hidden = w * self.mlp_ratio;
            // two LayerNorms, fused qkv (+bias), out proj (+bias), MLP in/out (+biases)
            4 * w + (3 * w * w + 3 * w) + (w * w + w) + (w * hidden + hidden) + (hidden * w + w)
        };
        let vw = self.vision_width;
        let tw = self.text_width;
        let patch_in = self.channels * self.patch_size * self.patch_size;
        let vision = patch_in * vw
            + vw
            + (self.num_patches() + 1) * vw
            + 2 * vw
            + self.vision_layers * block(vw)
            + 2 * vw
            + vw * self.embed_dim;
        let text = self.vocab_size * tw
            + self.context_length * tw
            + self.text_layers * block(tw)
            + 2 * tw
            + tw * self.embed_dim;
        vision + text + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_tiny_has_the_documented_size() {
        for name in PRESETS {
            let cfg = ClipConfig::preset(name).expect("preset exists");
            cfg.validate().expect("preset is valid");
        }
        assert_eq!(ClipConfig::tiny().expected_num_params(), 1_767_425);
        assert!(ClipConfig::micro().expected_num_params() < 400_000);
        // open_clip ViT-B/32 has 151,277,313 parameters.
        assert_eq!(ClipConfig::vit_b_32().expected_num_params(), 151_277_313);
        assert!(matches!(ClipConfig::preset("huge"), Err(ModelError::UnknownPreset(_))));
    }

    #[test]
    fn validation_names_the_field() {
        let mut cfg = ClipConfig::tiny();
        cfg.patch_size = 5;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("image_size"), "{err}");
        let mut cfg = ClipConfig::tiny();
        cfg.text_heads = 3;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("text_heads"), "{err}");
        let mut cfg = ClipConfig::tiny();
        cfg.vision_layers = 0;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("vision_layers"), "{err}");
    }

    #[test]
    fn toml_round_trip_and_defaults() {
        let cfg = ClipConfig::small();
        let text = cfg.to_toml_string().unwrap();
        assert_eq!(ClipConfig::from_toml_str(&text).unwrap(), cfg);
        let minimal = r#"
            image_size = 32
            patch_size = 4
            vision_width = 128
            vision_layers = 4
            vision_heads = 4
            text_width = 128
            text_layers = 4
            text_heads = 4
            context_length = 16
            vocab_size = 1024
            embed_dim = 128
        "#;
        assert_eq!(ClipConfig::from_toml_str(minimal).unwrap(), ClipConfig::tiny());
        let bad = minimal.replace("patch_size = 4", "patch_size = 6");
        assert!(ClipConfig::from_toml_str(&bad).is_err());
        assert!(ClipConfig::from_toml_str("image_size = \"x\"").is_err());
    }
}
