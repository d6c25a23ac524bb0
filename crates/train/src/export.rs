//! `dissect export`: a trained run's model in open_clip's format, for the PyTorch world.

use std::path::{Path, PathBuf};

use dissect_model::burn::tensor::Device;
use dissect_model::{ClipBatch, HostTensor, OpenClipConfig, TensorFile, to_open_clip};

use crate::checkpoint::load_trained;
use crate::checkpoint::write_atomic;
use crate::error::{Result, TrainError};

/// The state dict under open_clip's names.
pub const OPEN_CLIP_WEIGHTS_FILE: &str = "open_clip_model.safetensors";
/// open_clip's model-config JSON.
pub const OPEN_CLIP_CONFIG_FILE: &str = "open_clip_config.json";
/// A few inputs and this model's features for them, to check the export in open_clip
/// (`bench/openclip_fixture.py check-export`).
pub const PROBE_FILE: &str = "probe.safetensors";

/// Writes the model of `run` (its latest checkpoint) or of a checkpoint folder into `out`:
/// [`OPEN_CLIP_WEIGHTS_FILE`] with open_clip's state-dict names, [`OPEN_CLIP_CONFIG_FILE`]
/// (`open_clip.create_model`'s `model_cfg`; text pooling at the tokenizer's end-of-text id),
/// the run's `tokenizer.json`, and [`PROBE_FILE`]. Returns the folder.
pub fn export_open_clip(run: &Path, out: &Path) -> Result<PathBuf> {
    let device = Device::flex();
    let (model, config, tokenizer) = load_trained(run, &device)?;
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let mut open_clip = OpenClipConfig::from_clip_config(&config);
    let end = tokenizer.end_id() as usize;
    if end + 1 != config.text.vocab_size {
        // open_clip's default pools at the highest token id (CLIP's end-of-text token); ours
        // has another id, so name it.
        (open_clip.text_cfg.pool_type, open_clip.text_cfg.eos_id) = (Some("eos".into()), Some(end));
    }
    let weights = to_open_clip(&model)?;
    write(out, OPEN_CLIP_WEIGHTS_FILE, &weights.to_bytes()?)?;
    let json = serde_json::to_vec_pretty(&open_clip)
        .map_err(|e| TrainError::Checkpoint { path: out.join(OPEN_CLIP_CONFIG_FILE), message: e.to_string() })?;
    write(out, OPEN_CLIP_CONFIG_FILE, &json)?;
    tokenizer.save(&out.join(crate::files::TOKENIZER_FILE))?;
    write(out, PROBE_FILE, &probe(&model, &config, &tokenizer, &device)?.to_bytes()?)?;
    Ok(out.to_path_buf())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    write_atomic(&dir.join(name), bytes)
}

/// Three captions and seeded images with this model's features for them.
fn probe(
    model: &dissect_model::Clip,
    config: &dissect_model::ClipConfig,
    tokenizer: &dissect_data::TextTokenizer,
    device: &Device,
) -> Result<TensorFile> {
    let captions = ["a red circle at the top left", "two blue squares", "a photo of a dog"];
    let tokens = tokenizer.encode_batch(&captions, config.text.context_length)?;
    let pixels = config.channels() * config.image_size() * config.image_size();
    let images: Vec<f32> = (0..captions.len() * pixels).map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 2.0).collect();
    let batch = ClipBatch::from_host(config, &images, &tokens.ids, &tokens.eot_positions, device)?;
    let out = model.forward(batch.images, batch.tokens, batch.eot);
    let host = |t: dissect_model::burn::tensor::Tensor<2>| {
        t.try_into_vec_as::<f32>().map_err(|e| TrainError::Model(dissect_model::ModelError::Data(format!("{e:?}"))))
    };
    let rows = captions.len();
    let mut file = TensorFile::default();
    let mut put = |name: &str, shape: Vec<usize>, values: Vec<f32>| {
        file.tensors.insert(name.into(), HostTensor { shape, values });
    };
    put("images", vec![rows, config.channels(), config.image_size(), config.image_size()], images);
    put("tokens", vec![rows, tokens.context_len], tokens.ids.iter().map(|&t| t as f32).collect());
    put("image_features", vec![rows, config.embed_dim], host(out.image_features)?);
    put("text_features", vec![rows, config.embed_dim], host(out.text_features)?);
    Ok(file)
}
