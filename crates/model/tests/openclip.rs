//! Parity with open_clip, the reference implementation: a small random-initialised open_clip
//! ViT CLIP, its weights and its features for a few inputs were written by
//! `bench/openclip_fixture.py make` (open_clip 3.3.0); our model loads those weights under
//! open_clip's names and must give the same features.

use std::path::Path;

use dissect_model::burn::tensor::Device;
use dissect_model::{Clip, ClipBatch, ClipConfig, OpenClipConfig, TensorFile, load_open_clip, to_open_clip};

fn fixture() -> (TensorFile, std::collections::BTreeMap<String, dissect_model::HostTensor>, ClipConfig) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openclip_vit.safetensors");
    let mut file = TensorFile::read(&path).expect("the committed fixture");
    let probe = file.take_prefix("fixture.");
    let json = file.metadata.get("open_clip_config").expect("the model config in the metadata").clone();
    let config = OpenClipConfig::from_json(&json).unwrap().to_clip_config().unwrap();
    (file, probe, config)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn open_clip_weights_give_open_clips_features() {
    let (weights, probe, config) = fixture();
    let device = Device::flex();
    let model = load_open_clip(Clip::new(&config, 0, &device).unwrap(), &weights, &config).unwrap();
    let tokens: Vec<u32> = probe["tokens"].values.iter().map(|&t| t as u32).collect();
    let eot: Vec<usize> = probe["eot"].values.iter().map(|&e| e as usize).collect();
    let batch = ClipBatch::from_host(&config, &probe["images"].values, &tokens, &eot, &device).unwrap();
    let out = model.forward(batch.images, batch.tokens, batch.eot);
    let image = out.image_features.try_into_vec_as::<f32>().unwrap();
    let text = out.text_features.try_into_vec_as::<f32>().unwrap();
    let (di, dt) =
        (max_abs_diff(&image, &probe["image_features"].values), max_abs_diff(&text, &probe["text_features"].values));
    assert!(di < 1e-4 && dt < 1e-4, "max |Δ| image {di:e}, text {dt:e}");
    assert!((model.logit_scale_value() - weights.tensors["logit_scale"].values[0]).abs() < 1e-6);

    // Out again under the same names, layouts and values, bit for bit.
    let exported = to_open_clip(&model, &config).unwrap();
    assert_eq!(exported.tensors, weights.tensors);
    let reread = TensorFile::from_bytes(&exported.to_bytes().unwrap()).unwrap();
    assert_eq!(reread.tensors, weights.tensors);
}

#[test]
fn a_missing_extra_or_misshapen_tensor_is_named() {
    let (weights, _, config) = fixture();
    let model = || Clip::new(&config, 0, &Device::flex().autodiff()).unwrap();
    let err = |w: &TensorFile| load_open_clip(model(), w, &config).unwrap_err().to_string();

    let mut missing = weights.clone();
    missing.tensors.remove("visual.transformer.resblocks.1.mlp.c_fc.bias");
    assert!(err(&missing).contains("tensor visual.transformer.resblocks.1.mlp.c_fc.bias is missing"));

    let mut extra = weights.clone();
    let stray = extra.tensors["ln_final.bias"].clone();
    extra.tensors.insert("visual.head.bias".into(), stray);
    assert!(err(&extra).contains("tensor visual.head.bias has no place"), "{}", err(&extra));

    let mut misshapen = weights.clone();
    let proj = misshapen.tensors.get_mut("text_projection").unwrap();
    proj.shape = vec![32, 64];
    let message = err(&misshapen);
    assert!(message.contains("text_projection has shape [32, 64], this model needs [64, 32]"), "{message}");

    // Loaded onto the training device, the weights stay trainable.
    let trained = load_open_clip(model(), &weights, &config).unwrap();
    assert!(trained.logit_scale.val().is_require_grad());
}
