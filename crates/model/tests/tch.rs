//! LibTorch parity: the same model, weights and batches trained for a few steps on LibTorch's
//! CPU device give the losses that `flex` gives. Runs in a `--features tch` build (README, "GPU
//! with LibTorch"); other builds list it as ignored, with the reason.

use dissect_model::burn::module::Module;
use dissect_model::burn::tensor::Device;
use dissect_model::{
    AdamWSettings, Clip, ClipBatch, ClipConfig, ClipOptimizer, device_from_name, model_from_bytes, model_to_bytes,
    score_batch, train_step,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Losses and gradient norms of `steps` training steps of `preset` from the weights `init` on
/// `device`, each step on its own batch of 32 random pairs, and the per-sample losses of a last
/// scoring pass.
fn losses(preset: &str, device: &Device, init: &[u8], steps: usize) -> (Vec<(f32, f32)>, Vec<f32>) {
    let config = ClipConfig::preset(preset).unwrap();
    let train_device = device.clone().autodiff();
    let model = Clip::new(&config, 0, &train_device).unwrap();
    let mut model = model_from_bytes(model, init).unwrap();
    let mut optim = ClipOptimizer::new(&model, AdamWSettings::default());
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut batch = || {
        let (b, l) = (32, config.text.context_length);
        let side = config.image_size();
        let images: Vec<f32> = (0..b * config.channels() * side * side).map(|_| rng.random_range(-1.0..1.0)).collect();
        let tokens: Vec<u32> = (0..b * l).map(|_| rng.random_range(1..config.text.vocab_size as u32)).collect();
        let eot: Vec<usize> = (0..b).map(|_| rng.random_range(1..l)).collect();
        ClipBatch::from_host(&config, &images, &tokens, &eot, device).unwrap()
    };
    let mut step_losses = Vec::new();
    for _ in 0..steps {
        let (next, stats) = train_step(model, &mut optim, &batch(), 1e-3, Some(1.0)).unwrap();
        model = next;
        step_losses.push((stats.loss, stats.grad_norm));
    }
    let scores = score_batch(&model.valid(), &batch()).unwrap();
    (step_losses, scores.per_sample_loss)
}

#[test]
#[cfg_attr(not(feature = "tch"), ignore = "needs a `--features tch` build (README: GPU with LibTorch)")]
fn libtorch_cpu_trains_to_the_losses_of_flex() {
    // `micro` is a ViT, `rn-tiny` a ResNet: between them every op LibTorch runs differently
    // from flex (LayerNorm, GELU, attention, convolution and their backward).
    for preset in ["micro", "rn-tiny"] {
        let config = ClipConfig::preset(preset).unwrap();
        let init = model_to_bytes(&Clip::new(&config, 0, &Device::flex().autodiff()).unwrap()).unwrap();
        let tch = device_from_name("tch").expect("a --features tch build");
        let (flex_steps, flex_scores) = losses(preset, &Device::flex(), &init, 4);
        let (tch_steps, tch_scores) = losses(preset, &tch, &init, 4);
        // The gradient norm checks the backward passes too.
        for (step, ((loss_a, norm_a), (loss_b, norm_b))) in flex_steps.iter().zip(&tch_steps).enumerate() {
            assert!((loss_a - loss_b).abs() < 1e-4, "{preset} step {step}: flex loss {loss_a}, LibTorch {loss_b}");
            assert!(
                (norm_a - norm_b).abs() < 1e-4 * norm_a.max(1.0),
                "{preset} step {step}: gradient norm {norm_a} vs {norm_b}"
            );
        }
        let worst = flex_scores.iter().zip(&tch_scores).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-3, "{preset}: per-sample losses after training differ by up to {worst}");
        assert!(flex_steps[0].0 != flex_steps[3].0, "{preset}: the steps trained");
    }
}
