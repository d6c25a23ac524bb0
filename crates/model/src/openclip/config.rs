//! open_clip's model-config JSON (`open_clip/model_configs/*.json`) and our config of it.

use serde::{Deserialize, Serialize};

use crate::config::{ClipConfig, ResNetConfig, TextConfig, VisionConfig, VitConfig};
use crate::error::ModelError;

/// open_clip's model-config JSON (`open_clip/model_configs/*.json`) of a CLIP with a ViT or
/// ModifiedResNet image tower.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenClipConfig {
    /// Width of the shared embedding space.
    pub embed_dim: usize,
    /// The image tower.
    pub vision_cfg: OpenClipVisionConfig,
    /// The text tower.
    pub text_cfg: OpenClipTextConfig,
    /// open_clip's QuickGELU variant (OpenAI's original weights); only `false` is supported.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quick_gelu: bool,
}

/// `vision_cfg`: a ViT when `layers` is an integer, a ModifiedResNet when it is a list of four.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenClipVisionConfig {
    /// Square input side.
    pub image_size: usize,
    /// Transformer blocks (an integer), or the ResNet's four stage depths (a list).
    pub layers: serde_json::Value,
    /// Transformer width, or the ResNet's stem width.
    pub width: usize,
    /// Width of one attention head (ViT heads = width / head_width; ResNet pool heads =
    /// 32 · width / head_width; open_clip's default 64).
    #[serde(default = "default_head_width")]
    pub head_width: usize,
    /// MLP width as a multiple of the tower width (ViT).
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    /// Square patch side (ViT; `null` in open_clip's ResNet configs).
    #[serde(default)]
    pub patch_size: Option<usize>,
}

/// `text_cfg` of the causal text transformer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenClipTextConfig {
    /// Token positions.
    #[serde(default = "default_context_length")]
    pub context_length: usize,
    /// Token embedding rows.
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    /// Transformer width.
    pub width: usize,
    /// Attention heads.
    pub heads: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// MLP width as a multiple of the tower width.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    /// Where open_clip pools the text: `argmax` (the highest token id, CLIP's end-of-text) or
    /// `eos` (the first `eos_id`). Ours pools at the end-of-text position the tokenizer reports,
    /// so both describe the same model; an export sets `eos` when the tokenizer's end-of-text
    /// id is not its highest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_type: Option<String>,
    /// The end-of-text token id, with `pool_type = "eos"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_id: Option<usize>,
}

fn default_head_width() -> usize {
    64
}
fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_context_length() -> usize {
    77
}
fn default_vocab_size() -> usize {
    49408
}

fn invalid(field: &'static str, reason: String) -> ModelError {
    ModelError::InvalidConfig { field, reason }
}

/// A whole-number MLP ratio.
fn whole_ratio(r: f64, field: &'static str) -> Result<usize, ModelError> {
    (r.fract() == 0.0 && r >= 1.0)
        .then_some(r as usize)
        .ok_or_else(|| invalid(field, format!("{r} is not a whole number")))
}

/// `part / head_width`, which must divide evenly.
fn heads_of(part: usize, head_width: usize) -> Result<usize, ModelError> {
    if head_width == 0 || !part.is_multiple_of(head_width) {
        return Err(invalid("vision_cfg.head_width", format!("{head_width} does not divide {part}")));
    }
    Ok(part / head_width)
}

impl OpenClipConfig {
    /// Parses open_clip's JSON; a field this build does not implement is refused by name.
    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        serde_json::from_str(text).map_err(|e| ModelError::Toml(format!("open_clip model config: {e}")))
    }

    /// Our config of the same model.
    pub fn to_clip_config(&self) -> Result<ClipConfig, ModelError> {
        let t = &self.text_cfg;
        if !matches!(t.pool_type.as_deref(), None | Some("argmax") | Some("eos")) {
            return Err(invalid("text_cfg.pool_type", format!("{:?} is not supported (argmax or eos)", t.pool_type)));
        }
        let text = TextConfig {
            context_length: t.context_length,
            vocab_size: t.vocab_size,
            width: t.width,
            layers: t.layers,
            heads: t.heads,
            mlp_ratio: whole_ratio(t.mlp_ratio, "text_cfg.mlp_ratio")?,
        };
        let config =
            ClipConfig { embed_dim: self.embed_dim, vision: self.vision_config()?, text, quick_gelu: self.quick_gelu };
        config.validate()?;
        Ok(config)
    }

    fn vision_config(&self) -> Result<VisionConfig, ModelError> {
        let v = &self.vision_cfg;
        if let Some(layers) = v.layers.as_u64() {
            let patch_size = v.patch_size.ok_or_else(|| invalid("vision_cfg.patch_size", "a ViT needs one".into()))?;
            return Ok(VisionConfig::Vit(VitConfig {
                image_size: v.image_size,
                patch_size,
                channels: 3,
                width: v.width,
                layers: layers as usize,
                heads: heads_of(v.width, v.head_width)?,
                mlp_ratio: whole_ratio(v.mlp_ratio, "vision_cfg.mlp_ratio")?,
            }));
        }
        let stages: Vec<usize> = serde_json::from_value(v.layers.clone()).map_err(|_| {
            invalid("vision_cfg.layers", format!("{} is neither a block count nor a list of stage depths", v.layers))
        })?;
        let layers: [usize; 4] = stages.try_into().map_err(|stages: Vec<usize>| {
            invalid("vision_cfg.layers", format!("a ResNet has four stages, not {}", stages.len()))
        })?;
        Ok(VisionConfig::ResNet(ResNetConfig {
            image_size: v.image_size,
            layers,
            width: v.width,
            heads: heads_of(v.width * 32, v.head_width)?,
        }))
    }

    /// open_clip's config of one of our models (heads expressed as open_clip's `head_width`).
    pub fn from_clip_config(c: &ClipConfig) -> Self {
        let vision_cfg = match &c.vision {
            VisionConfig::Vit(v) => OpenClipVisionConfig {
                image_size: v.image_size,
                layers: v.layers.into(),
                width: v.width,
                head_width: v.width / v.heads.max(1),
                mlp_ratio: v.mlp_ratio as f64,
                patch_size: Some(v.patch_size),
            },
            VisionConfig::ResNet(r) => OpenClipVisionConfig {
                image_size: r.image_size,
                layers: r.layers.to_vec().into(),
                width: r.width,
                head_width: r.pool_width() / r.heads.max(1),
                mlp_ratio: default_mlp_ratio(),
                patch_size: None,
            },
        };
        let t = &c.text;
        OpenClipConfig {
            embed_dim: c.embed_dim,
            vision_cfg,
            text_cfg: OpenClipTextConfig {
                context_length: t.context_length,
                vocab_size: t.vocab_size,
                width: t.width,
                heads: t.heads,
                layers: t.layers,
                mlp_ratio: t.mlp_ratio as f64,
                pool_type: None,
                eos_id: None,
            },
            quick_gelu: c.quick_gelu,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_round_trip_and_unsupported_fields_are_named() {
        for config in [ClipConfig::micro(), ClipConfig::rn_tiny(), ClipConfig::rn50()] {
            let json = serde_json::to_string(&OpenClipConfig::from_clip_config(&config)).unwrap();
            assert_eq!(OpenClipConfig::from_json(&json).unwrap().to_clip_config().unwrap(), config);
        }
        // open_clip's own RN50.json, verbatim.
        let rn50 = r#"{"embed_dim": 1024, "vision_cfg": {"image_size": 224, "layers": [3, 4, 6, 3], "width": 64, "patch_size": null}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}"#;
        assert_eq!(OpenClipConfig::from_json(rn50).unwrap().to_clip_config().unwrap(), ClipConfig::rn50());
        let three = rn50.replace("[3, 4, 6, 3]", "[3, 4, 6]");
        let err = OpenClipConfig::from_json(&three).unwrap().to_clip_config().unwrap_err().to_string();
        assert!(err.contains("vision_cfg.layers") && err.contains("four stages"), "{err}");
        let extra = r#"{"embed_dim": 8, "vision_cfg": {"image_size": 16, "layers": 1, "width": 8, "patch_size": 4, "ls_init_value": 0.1}, "text_cfg": {"width": 8, "heads": 1, "layers": 1}}"#;
        let err = OpenClipConfig::from_json(extra).unwrap_err().to_string();
        assert!(err.contains("ls_init_value"), "{err}");
    }
}
