//! Parity with open_clip, the reference implementation: small random-initialised open_clip
//! CLIPs (a ViT and a ModifiedResNet image tower), their weights and their features for a few
//! inputs were written by `bench/openclip_fixture.py make` (open_clip 3.3.0); our model loads
//! those weights under open_clip's names and must give the same features. A third has
//! QuickGELU, and comes as PyTorch files too (an open_clip_train checkpoint, a bare state dict).

use std::path::Path;

use dissect_model::burn::tensor::Device;
use dissect_model::{
    Clip, ClipBatch, ClipConfig, OpenClipConfig, TensorFile, VisionConfig, load_open_clip, to_open_clip,
};

const VIT: &str = "openclip_vit.safetensors";
const RESNET: &str = "openclip_resnet.safetensors";
const VIT_QUICK_GELU: &str = "openclip_vit_quickgelu.safetensors";

fn fixture(name: &str) -> (TensorFile, std::collections::BTreeMap<String, dissect_model::HostTensor>, ClipConfig) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
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

fn probe_batch(
    probe: &std::collections::BTreeMap<String, dissect_model::HostTensor>,
    config: &ClipConfig,
    device: &Device,
) -> ClipBatch {
    let tokens: Vec<u32> = probe["tokens"].values.iter().map(|&t| t as u32).collect();
    let eot: Vec<usize> = probe["eot"].values.iter().map(|&e| e as usize).collect();
    ClipBatch::from_host(config, &probe["images"].values, &tokens, &eot, device).unwrap()
}

#[test]
fn open_clip_vit_weights_give_open_clips_features() {
    features_and_round_trip(VIT);
}

#[test]
fn open_clip_resnet_weights_give_open_clips_features() {
    let (_, _, config) = fixture(RESNET);
    assert!(matches!(config.vision, VisionConfig::ResNet(_)));
    features_and_round_trip(RESNET);
}

#[test]
fn open_clip_quick_gelu_weights_give_open_clips_features() {
    let (weights, probe, config) = fixture(VIT_QUICK_GELU);
    assert!(config.quick_gelu, "quick_gelu: true in the fixture's model config");
    features_and_round_trip(VIT_QUICK_GELU);
    // The fixture tells the activations apart: the same weights with exact GELU miss it.
    let gelu = ClipConfig { quick_gelu: false, ..config };
    let (image, _) = features(&gelu, &weights, &probe);
    assert!(max_abs_diff(&image, &probe["image_features"].values) > 1e-3);
}

/// The QuickGELU fixture's weights as PyTorch wrote them: an open_clip_train checkpoint
/// (`state_dict`, `module.` names) and a bare state dict read to the same tensors.
#[test]
fn pytorch_checkpoints_read_as_the_same_state_dict() {
    let (weights, _, _) = fixture(VIT_QUICK_GELU);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for file in ["openclip_vit_quickgelu_epoch_1.pt", "openclip_vit_quickgelu_open_clip_pytorch_model.bin"] {
        let read = TensorFile::read_pytorch(&dir.join(file)).unwrap();
        assert_eq!(read.tensors, weights.tensors, "{file}");
    }
    let not_torch = TensorFile::read_pytorch(&dir.join(VIT)).unwrap_err().to_string();
    assert!(not_torch.contains(VIT) && not_torch.contains("TorchScript"), "{not_torch}");
}

fn features(
    config: &ClipConfig,
    weights: &TensorFile,
    probe: &std::collections::BTreeMap<String, dissect_model::HostTensor>,
) -> (Vec<f32>, Vec<f32>) {
    let device = Device::flex();
    let model = load_open_clip(Clip::new(config, 0, &device).unwrap(), weights).unwrap();
    let batch = probe_batch(probe, config, &device);
    let out = model.forward(batch.images, batch.tokens, batch.eot);
    (out.image_features.try_into_vec_as::<f32>().unwrap(), out.text_features.try_into_vec_as::<f32>().unwrap())
}

fn features_and_round_trip(name: &str) {
    let (weights, probe, config) = fixture(name);
    let device = Device::flex();
    let model = load_open_clip(Clip::new(&config, 0, &device).unwrap(), &weights).unwrap();
    let batch = probe_batch(&probe, &config, &device);
    let out = model.forward(batch.images, batch.tokens, batch.eot);
    let image = out.image_features.try_into_vec_as::<f32>().unwrap();
    let text = out.text_features.try_into_vec_as::<f32>().unwrap();
    let (di, dt) =
        (max_abs_diff(&image, &probe["image_features"].values), max_abs_diff(&text, &probe["text_features"].values));
    assert!(di < 1e-4 && dt < 1e-4, "max |Δ| image {di:e}, text {dt:e}");
    assert!((model.logit_scale_value() - weights.tensors["logit_scale"].values[0]).abs() < 1e-6);

    // Out again under the same names, layouts and values, bit for bit.
    let exported = to_open_clip(&model).unwrap();
    assert_eq!(exported.tensors, weights.tensors);
    let reread = TensorFile::from_bytes(&exported.to_bytes().unwrap()).unwrap();
    assert_eq!(reread.tensors, weights.tensors);
}

/// open_clip's training-mode pass (`model.visual.train()`): BatchNorm normalises with the
/// batch's statistics and moves its running statistics by momentum 0.1 towards the batch's
/// mean and unbiased variance. Ours must give the same features and leave the same statistics.
#[test]
fn resnet_training_pass_matches_open_clips_batch_norm() {
    let (weights, probe, config) = fixture(RESNET);
    let device = Device::flex().autodiff();
    let mut model = load_open_clip(Clip::new(&config, 0, &device).unwrap(), &weights).unwrap();
    let batch = probe_batch(&probe, &config, &device);
    let (out, running) = model.forward_train(batch.images, batch.tokens, batch.eot);
    let image = out.image_features.try_into_vec_as::<f32>().unwrap();
    let d = max_abs_diff(&image, &probe["train_image_features"].values);
    assert!(d < 1e-4, "training-mode image features: max |Δ| {d:e}");
    model.apply_running_stats(running);
    let after = to_open_clip(&model).unwrap();
    let mut checked = 0;
    for (name, expected) in probe.iter().filter_map(|(k, v)| k.strip_prefix("after_train.").map(|n| (n, v))) {
        let d = max_abs_diff(&after.tensors[name].values, &expected.values);
        assert!(d < 1e-5, "{name}: max |Δ| {d:e}");
        checked += 1;
    }
    // Stem 3, five bottlenecks of 3, four shortcuts: 22 BatchNorms, two statistics each.
    assert_eq!(checked, 44);
}

#[test]
fn a_missing_extra_or_misshapen_tensor_is_named() {
    let (weights, _, config) = fixture(VIT);
    let model = || Clip::new(&config, 0, &Device::flex().autodiff()).unwrap();
    let err = |w: &TensorFile| load_open_clip(model(), w).unwrap_err().to_string();

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
    let trained = load_open_clip(model(), &weights).unwrap();
    assert!(trained.logit_scale.val().is_require_grad());

    // A ResNet's running statistics are named like its weights, and stay without gradient.
    let (weights, _, config) = fixture(RESNET);
    let mut missing = weights.clone();
    missing.tensors.remove("visual.layer1.0.downsample.1.running_var");
    let message = load_open_clip(Clip::new(&config, 0, &Device::flex()).unwrap(), &missing).unwrap_err().to_string();
    assert!(message.contains("visual.layer1.0.downsample.1.running_var is missing"), "{message}");
    let trained = load_open_clip(Clip::new(&config, 0, &Device::flex().autodiff()).unwrap(), &weights).unwrap();
    let dissect_model::VisionTower::ResNet(resnet) = &trained.visual else { unreachable!("a ResNet fixture") };
    assert!(!resnet.bn1.running_mean.val().is_require_grad());
    assert!(resnet.bn1.weight.val().is_require_grad());
}

/// open_clip's `-quickgelu` model names: the preset's dimensions with QuickGELU; its config
/// round-trips through open_clip's JSON (`"quick_gelu": true`) and our TOML.
#[test]
fn quickgelu_preset_names() {
    let quick = ClipConfig::preset("ViT-B-32-quickgelu").unwrap();
    assert_eq!(quick, ClipConfig { quick_gelu: true, ..ClipConfig::vit_b_32() });
    assert!(ClipConfig::preset("rn50-quickgelu").unwrap().quick_gelu);
    let json = serde_json::to_string(&OpenClipConfig::from_clip_config(&quick)).unwrap();
    assert!(json.contains("\"quick_gelu\":true"), "{json}");
    assert_eq!(OpenClipConfig::from_json(&json).unwrap().to_clip_config().unwrap(), quick);
    assert_eq!(ClipConfig::from_toml_str(&quick.to_toml_string().unwrap()).unwrap(), quick);
    assert!(!ClipConfig::vit_b_32().to_toml_string().unwrap().contains("quick_gelu"), "old model.toml files unchanged");
    assert!(ClipConfig::preset("vit-b-32-gelu").is_err());
}
