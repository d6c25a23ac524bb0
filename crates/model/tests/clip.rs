//! Behaviour of the CLIP model and its training-step pieces on the `micro` preset.

use dissect_dist::ThreadGroup;
use dissect_model::burn::module::Module;
use dissect_model::burn::optim::GradientsParams;
use dissect_model::burn::tensor::{Device, Tensor};
use dissect_model::{
    AdamWSettings, Clip, ClipBatch, ClipConfig, ClipOptimizer, VisionTower, clamp_logit_scale, clip_grad_norm,
    clip_loss, initial_logit_scale, logits, max_logit_scale, model_from_bytes, model_to_bytes, param_infos,
    per_sample_loss, scalar_f32, score_batch, to_vec_f32, train_step,
};
use dissect_model::{GlobalNegatives, StepStats, train_step_distributed};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn cpu() -> Device {
    Device::flex()
}

fn train_device() -> Device {
    Device::flex().autodiff()
}

/// Host buffers of a random batch: (images, tokens, eot).
fn host_batch(cfg: &ClipConfig, b: usize, seed: u64) -> (Vec<f32>, Vec<u32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = b * cfg.channels() * cfg.image_size() * cfg.image_size();
    let images = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let l = cfg.text.context_length;
    let tokens = (0..b * l).map(|_| rng.random_range(1..cfg.text.vocab_size as u32)).collect();
    let eot = (0..b).map(|_| rng.random_range(2..l)).collect();
    (images, tokens, eot)
}

fn batch(cfg: &ClipConfig, b: usize, seed: u64, device: &Device) -> ClipBatch {
    let (images, tokens, eot) = host_batch(cfg, b, seed);
    ClipBatch::from_host(cfg, &images, &tokens, &eot, device).expect("valid batch")
}

fn flat(t: Tensor<2>) -> Vec<f32> {
    t.try_into_vec_as::<f32>().expect("f32 data")
}

/// The serialised record: comparing it compares every parameter (and its id) bit for bit.
fn all_params(model: &Clip) -> Vec<u8> {
    model_to_bytes(model).expect("record")
}

#[test]
fn shapes_unit_norm_and_param_count() {
    let cfg = ClipConfig::micro();
    let model = Clip::new(&cfg, 0, &cpu()).unwrap();
    assert_eq!(model.num_params(), cfg.expected_num_params());
    let b = batch(&cfg, 5, 1, &cpu());
    let out = model.forward(b.images, b.tokens, b.eot);
    assert_eq!(out.image_features.dims(), [5, cfg.embed_dim]);
    assert_eq!(out.text_features.dims(), [5, cfg.embed_dim]);
    assert_eq!(out.logit_scale.dims(), [1]);
    assert!((scalar_f32(out.logit_scale.clone()).unwrap() - initial_logit_scale()).abs() < 1e-6);
    for feats in [out.image_features.clone(), out.text_features.clone()] {
        let norms = to_vec_f32(feats.square().sum_dim(1).reshape([5])).unwrap();
        for n in norms {
            assert!((n - 1.0).abs() < 1e-5, "squared norm {n}");
        }
    }
    assert_eq!(per_sample_loss(&out).dims(), [5]);
    assert_eq!(clip_loss(&out).dims(), [1]);
}

#[test]
fn tiny_preset_has_documented_parameter_count() {
    let cfg = ClipConfig::tiny();
    let model = Clip::new(&cfg, 0, &cpu()).unwrap();
    assert_eq!(model.num_params(), 1_767_425);
}

#[test]
fn per_sample_loss_matches_host_reference_and_mean_is_clip_loss() {
    let cfg = ClipConfig::micro();
    let model = Clip::new(&cfg, 3, &cpu()).unwrap();
    let b = 7;
    let batch = batch(&cfg, b, 2, &cpu());
    let out = model.forward(batch.images, batch.tokens, batch.eot);
    let s = flat(logits(&out));
    let lse = |vals: &[f64]| {
        let m = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        m + vals.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
    };
    let per = to_vec_f32(per_sample_loss(&out)).unwrap();
    let mut mean = 0.0;
    for j in 0..b {
        let row: Vec<f64> = (0..b).map(|k| s[j * b + k] as f64).collect();
        let col: Vec<f64> = (0..b).map(|k| s[k * b + j] as f64).collect();
        let diag = s[j * b + j] as f64;
        let expected = 0.5 * ((lse(&row) - diag) + (lse(&col) - diag));
        assert!((per[j] as f64 - expected).abs() < 1e-4, "row {j}");
        mean += per[j] as f64 / b as f64;
    }
    let total = scalar_f32(clip_loss(&out)).unwrap();
    assert!((total as f64 - mean).abs() < 1e-5);
}

#[test]
fn text_features_ignore_tokens_after_eot() {
    let cfg = ClipConfig::micro();
    let model = Clip::new(&cfg, 4, &cpu()).unwrap();
    let (_, mut tokens, eot) = host_batch(&cfg, 3, 9);
    let images = vec![0.0; 3 * 3 * cfg.image_size() * cfg.image_size()];
    let encode = |tokens: &[u32]| {
        let b = ClipBatch::from_host(&cfg, &images, tokens, &eot, &cpu()).unwrap();
        flat(model.encode_text(b.tokens, b.eot))
    };
    let before = encode(&tokens);
    let l = cfg.text.context_length;
    for (row, &e) in eot.iter().enumerate() {
        for t in &mut tokens[row * l + e + 1..(row + 1) * l] {
            *t = (*t + 7) % cfg.text.vocab_size as u32;
        }
    }
    let after = encode(&tokens);
    for (a, b) in before.iter().zip(&after) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
    // A change at or before the end of text does matter.
    tokens[eot[0]] = (tokens[eot[0]] + 1) % cfg.text.vocab_size as u32;
    let changed = encode(&tokens);
    assert!(before.iter().zip(&changed).take(cfg.embed_dim).any(|(a, b)| (a - b).abs() > 1e-4));
}

#[test]
fn decay_groups_follow_open_clip() {
    let cfg = ClipConfig::micro();
    let model = Clip::new(&cfg, 0, &cpu()).unwrap();
    let infos = param_infos(&model);
    let decay: Vec<&str> = infos.iter().filter(|p| p.decay).map(|p| p.path.as_str()).collect();
    // open_clip_train decays every tensor of 2+ dimensions whose name has no "ln", "bn",
    // "bias" or "logit_scale": the linear matrices (patch embed + 4 per block × 2 blocks +
    // proj, per tower: 19), the token embedding and the two positional embeddings. Burn's
    // paths name the image tower's variant (`Vit`).
    assert_eq!(infos.len(), 62);
    assert_eq!(decay.len(), 22, "{decay:?}");
    assert!(decay.contains(&"text.token_embedding.weight") && decay.contains(&"visual.Vit.positional_embedding"));
    assert!(decay.contains(&"visual.Vit.patch_embed.weight"));
    assert!(decay.contains(&"visual.Vit.blocks.1.attn.qkv.weight"));
    assert!(decay.contains(&"text.blocks.0.mlp_proj.weight"));
    assert!(decay.contains(&"text.text_projection.weight"));
    for p in &infos {
        let excluded = p.path.contains("ln_")
            || p.path.ends_with("bias")
            || p.path == "visual.Vit.class_embedding"
            || p.path == "logit_scale";
        assert_eq!(p.decay, !excluded, "{}", p.path);
    }

    // Routing: one step with decay 0.5 vs 0.0 from the same state and gradients changes only
    // the decay group.
    let dev = train_device();
    let model = Clip::new(&cfg, 0, &dev).unwrap();
    let b = batch(&cfg, 4, 5, &dev);
    let step = |wd: f32| {
        let settings = AdamWSettings { weight_decay: wd, ..AdamWSettings::default() };
        let mut optim = ClipOptimizer::new(&model, settings);
        let (m, _) = train_step(model.clone(), &mut optim, &b, 1e-2, None).unwrap();
        m
    };
    let (with, without) = (step(0.5), step(0.0));
    let values = |m: &Clip, path: &str| -> Vec<f32> {
        let rec = m.valid();
        let VisionTower::Vit(vit) = &rec.visual else { unreachable!("micro is a ViT") };
        match path {
            "visual.blocks.0.attn.qkv.weight" => flat(vit.blocks[0].attn.qkv.weight.val()),
            "text.text_projection.weight" => flat(rec.text.text_projection.weight.val()),
            "visual.blocks.0.ln_1.gamma" => vit.blocks[0].ln_1.gamma.val().try_into_vec_as::<f32>().unwrap(),
            "visual.class_embedding" => vit.class_embedding.val().try_into_vec_as::<f32>().unwrap(),
            "text.token_embedding.weight" => flat(rec.text.token_embedding.weight.val()),
            "visual.positional_embedding" => flat(vit.positional_embedding.val()),
            _ => unreachable!(),
        }
    };
    let decayed = [
        "visual.blocks.0.attn.qkv.weight",
        "text.text_projection.weight",
        "text.token_embedding.weight",
        "visual.positional_embedding",
    ];
    for path in decayed {
        assert_ne!(values(&with, path), values(&without, path), "{path}");
    }
    for path in ["visual.blocks.0.ln_1.gamma", "visual.class_embedding"] {
        assert_eq!(values(&with, path), values(&without, path), "{path}");
    }
}

#[test]
fn gradient_clipping_bounds_the_global_norm() {
    let cfg = ClipConfig::micro();
    let dev = train_device();
    let model = Clip::new(&cfg, 1, &dev).unwrap();
    let infos = param_infos(&model);
    let b = batch(&cfg, 8, 3, &dev);
    let grads_of = || {
        let out = model.forward(b.images.clone(), b.tokens.clone(), b.eot.clone());
        GradientsParams::from_grads(clip_loss(&out).backward(), &model)
    };
    let mut grads = grads_of();
    let norm = clip_grad_norm(&infos, &mut grads, None).unwrap();
    assert!(norm > 0.0 && norm.is_finite());
    let mut grads = grads_of();
    let max = norm / 10.0;
    let pre = clip_grad_norm(&infos, &mut grads, Some(max)).unwrap();
    assert!((pre - norm).abs() <= 1e-5 * norm);
    let post = clip_grad_norm(&infos, &mut grads, None).unwrap();
    assert!(post <= max * (1.0 + 1e-4), "{post} > {max}");
    assert!(post >= max * 0.99);
    // A bound above the norm leaves gradients alone.
    let mut grads = grads_of();
    clip_grad_norm(&infos, &mut grads, Some(norm * 2.0)).unwrap();
    let same = clip_grad_norm(&infos, &mut grads, None).unwrap();
    assert!((same - norm).abs() <= 1e-5 * norm);
}

fn run_losses(seed: u64, steps: usize) -> (Vec<f32>, Clip) {
    let cfg = ClipConfig::micro();
    let dev = train_device();
    let mut model = Clip::new(&cfg, seed, &dev).unwrap();
    let mut optim = ClipOptimizer::new(&model, AdamWSettings::default());
    let b = batch(&cfg, 16, 11, &cpu());
    let mut losses = vec![];
    for _ in 0..steps {
        let (m, stats) = train_step(model, &mut optim, &b, 1e-3, Some(1.0)).unwrap();
        model = m;
        losses.push(stats.loss);
    }
    (losses, model)
}

#[test]
fn loss_falls_on_a_fixed_batch_and_runs_are_deterministic() {
    let (losses, _) = run_losses(7, 20);
    let first = losses[0];
    let last = *losses.last().unwrap();
    eprintln!("losses: {losses:?}");
    assert!(first > 2.0 && first < 5.0, "initial loss {first}");
    assert!(last < 0.5 * first, "loss {first} -> {last}: {losses:?}");
    let (again, _) = run_losses(7, 3);
    assert_eq!(&losses[..3], &again[..], "same seed, same losses");
    let (other, _) = run_losses(8, 1);
    assert_ne!(losses[0], other[0], "different seed, different init");
}

#[test]
fn save_load_round_trip_and_resumed_step_equals_uninterrupted() {
    let cfg = ClipConfig::micro();
    let dev = train_device();
    let b = batch(&cfg, 8, 21, &cpu());
    let mut model = Clip::new(&cfg, 5, &dev).unwrap();
    let mut optim = ClipOptimizer::new(&model, AdamWSettings::default());
    for _ in 0..2 {
        model = train_step(model, &mut optim, &b, 1e-3, Some(1.0)).unwrap().0;
    }
    let model_bytes = model_to_bytes(&model).unwrap();
    let optim_bytes = optim.to_bytes().unwrap();

    // Load into a model of another seed (different weights and ParamIds).
    let fresh = Clip::new(&cfg, 99, &dev).unwrap();
    let loaded = model_from_bytes(fresh, &model_bytes).unwrap();
    let enc = |m: &Clip| {
        let v = m.valid();
        let bb = b.to_device(&cpu());
        let out = v.forward(bb.images, bb.tokens, bb.eot);
        (flat(out.image_features), flat(out.text_features))
    };
    assert_eq!(enc(&model), enc(&loaded), "bit-identical outputs after reload");
    assert_eq!(all_params(&model), all_params(&loaded));

    let mut optim2 = ClipOptimizer::new(&loaded, AdamWSettings::default());
    optim2.load_bytes(&optim_bytes).unwrap();
    let (m1, s1) = train_step(model, &mut optim, &b, 1e-3, Some(1.0)).unwrap();
    let (m2, s2) = train_step(loaded, &mut optim2, &b, 1e-3, Some(1.0)).unwrap();
    assert_eq!(s1, s2);
    assert_eq!(enc(&m1), enc(&m2), "a step after reload equals one without");

    // Garbage is an error, not a panic.
    assert!(model_from_bytes(m1, b"not a record").is_err());
    assert!(optim2.load_bytes(b"nope").is_err());
}

#[test]
fn logit_scale_is_clamped_and_keeps_training() {
    let cfg = ClipConfig::micro();
    let dev = train_device();
    let mut model = Clip::new(&cfg, 2, &dev).unwrap();
    model.logit_scale = model.logit_scale.map(|t| t.mul_scalar(3.0));
    let model = clamp_logit_scale(model);
    assert!((model.logit_scale_value() - max_logit_scale()).abs() < 1e-6);
    let mut low = Clip::new(&cfg, 2, &dev).unwrap();
    low.logit_scale = low.logit_scale.map(|t| t.mul_scalar(-1.0));
    assert_eq!(clamp_logit_scale(low).logit_scale_value(), 0.0);
    // After a clamp the temperature still receives gradients (it stays a leaf parameter).
    let b = batch(&cfg, 8, 4, &dev);
    let out = model.forward(b.images, b.tokens, b.eot);
    let grads = GradientsParams::from_grads(clip_loss(&out).backward(), &model);
    let g = grads.get::<1>(model.logit_scale.id).expect("temperature gradient");
    assert!(scalar_f32(g).unwrap() != 0.0);
}

#[test]
fn scoring_pass_and_row_selection() {
    let cfg = ClipConfig::micro();
    let model = Clip::new(&cfg, 6, &train_device()).unwrap();
    let b = batch(&cfg, 6, 8, &cpu());
    let scores = score_batch(&model.valid(), &b).unwrap();
    assert_eq!(scores.clip_scores.len(), 6);
    assert_eq!(scores.per_sample_loss.len(), 6);
    assert!(scores.clip_scores.iter().all(|s| s.abs() <= 100.0 + 1e-3));
    let v = model.valid();
    let out = v.forward(b.images.clone(), b.tokens.clone(), b.eot.clone());
    let mean = scores.per_sample_loss.iter().sum::<f32>() / 6.0;
    assert!((mean - scalar_f32(clip_loss(&out)).unwrap()).abs() < 1e-5);
    // The no-tape forward runs the towers on two threads; one after the other gives the same bits.
    assert!(flat(v.encode_image(b.images.clone())) == flat(out.image_features.clone()));
    assert!(flat(v.encode_text(b.tokens.clone(), b.eot.clone())) == flat(out.text_features.clone()));

    let keep = [4, 1, 5];
    let sub = b.select_rows(&keep).unwrap();
    assert_eq!(sub.len(), 3);
    let sub_scores = score_batch(&model, &sub).unwrap();
    for (i, &row) in keep.iter().enumerate() {
        assert!((sub_scores.clip_scores[i] - scores.clip_scores[row]).abs() < 1e-3);
    }
    assert!(b.select_rows(&[6]).is_err());
    assert!(b.select_rows(&[]).is_err());
    // The selected rows train on the autodiff device.
    let mut optim = ClipOptimizer::new(&model, AdamWSettings::default());
    let (_, stats) = train_step(model, &mut optim, &sub, 1e-3, Some(1.0)).unwrap();
    assert!(stats.loss.is_finite());
}

/// One distributed step of `world` processes (threads of a [`ThreadGroup`] here, the same code
/// as processes under torchrun), process `r` training `parts[r]`; every process's result.
fn distributed_step(
    model: &Clip,
    parts: &[Option<ClipBatch>],
    negatives: GlobalNegatives,
    max_grad_norm: Option<f32>,
) -> Vec<(Clip, StepStats)> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = ThreadGroup::new(parts.len())
            .into_iter()
            .zip(parts)
            .map(|(member, part)| {
                let model = model.clone();
                scope.spawn(move || {
                    let mut optim = ClipOptimizer::new(&model, AdamWSettings::default());
                    train_step_distributed(model, &mut optim, part.as_ref(), &member, negatives, 1e-3, max_grad_norm)
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Global negatives: processes holding parts of a batch (equal, unequal, one empty) take the
/// step one process takes on the whole batch, with open_clip's loss variants; every process
/// ends with the same model.
#[test]
fn distributed_step_equals_one_step_on_the_whole_batch() {
    let cfg = ClipConfig::micro();
    let dev = train_device();
    let whole = batch(&cfg, 12, 31, &cpu());
    let model = Clip::new(&cfg, 12, &dev).unwrap();
    let mut optim = ClipOptimizer::new(&model, AdamWSettings::default());
    let (single, single_stats) = train_step(model.clone(), &mut optim, &whole, 1e-3, Some(0.5)).unwrap();
    let rows = |range: std::ops::Range<usize>| Some(whole.select_rows(&range.collect::<Vec<_>>()).unwrap());
    let splits = [vec![rows(0..6), rows(6..12)], vec![rows(0..5), rows(5..9), rows(9..12)]];
    let exact = [
        GlobalNegatives { local_loss: false, gather_with_grad: false },
        GlobalNegatives { local_loss: false, gather_with_grad: true },
        GlobalNegatives { local_loss: true, gather_with_grad: true },
    ];
    for parts in &splits {
        for negatives in exact {
            let results = distributed_step(&model, parts, negatives, Some(0.5));
            for (stepped, stats) in &results {
                let what = format!("{} processes, {negatives:?}", parts.len());
                assert!((stats.loss - single_stats.loss).abs() < 1e-5, "{what}: loss {stats:?} vs {single_stats:?}");
                let norm = single_stats.grad_norm;
                assert!((stats.grad_norm - norm).abs() < 1e-4 * norm, "{what}: {stats:?} vs {single_stats:?}");
                let diff = max_difference(&values(stepped), &values(&single));
                assert!(diff < 1e-5, "{what}: parameters differ by {diff}");
            }
            let first = values(&results[0].0);
            assert!(results.iter().all(|(m, _)| values(m) == first), "the processes' replicas differ");
        }
    }
    // open_clip's --local-loss without --gather-with-grad: the same loss, a gradient without
    // the other processes' terms.
    let local_only = GlobalNegatives { local_loss: true, gather_with_grad: false };
    let results = distributed_step(&model, &splits[0], local_only, Some(0.5));
    assert!((results[0].1.loss - single_stats.loss).abs() < 1e-5);
    assert!((results[0].1.grad_norm - single_stats.grad_norm).abs() > 1e-3 * single_stats.grad_norm);
    // A process whose rows were all dropped still takes part.
    let with_empty = [rows(0..12), None];
    let results = distributed_step(&model, &with_empty, exact[0], Some(0.5));
    assert!(max_difference(&values(&results[1].0), &values(&single)) < 1e-5);
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn batch_validation_errors() {
    let cfg = ClipConfig::micro();
    let (images, tokens, eot) = host_batch(&cfg, 2, 0);
    let ok = ClipBatch::from_host(&cfg, &images, &tokens, &eot, &cpu());
    assert!(ok.is_ok());
    let err = |r: Result<ClipBatch, dissect_model::ModelError>| r.unwrap_err().to_string();
    assert!(err(ClipBatch::from_host(&cfg, &images[1..], &tokens, &eot, &cpu())).contains("image"));
    let mut bad = tokens.clone();
    bad[0] = cfg.text.vocab_size as u32;
    assert!(err(ClipBatch::from_host(&cfg, &images, &bad, &eot, &cpu())).contains("vocabulary"));
    assert!(err(ClipBatch::from_host(&cfg, &images, &tokens, &[0, 99], &cpu())).contains("end-of-text"));
    assert!(ClipBatch::from_host(&cfg, &[], &[], &[], &cpu()).is_err());
    // Shorter token rows than the context are fine.
    let short: Vec<u32> = tokens[..2 * 8].to_vec();
    let b = ClipBatch::from_host(&cfg, &images, &short, &[3, 7], &cpu()).unwrap();
    let model = Clip::new(&cfg, 0, &cpu()).unwrap();
    assert_eq!(model.encode_text(b.tokens, b.eot).dims(), [2, cfg.embed_dim]);
}

/// The trainable parameters (BatchNorm running statistics are buffers, as in PyTorch).
fn trainable_count(model: &Clip) -> usize {
    param_infos(model).iter().map(|p| p.shape.iter().product::<usize>()).sum()
}

#[test]
fn resnet_tower_shapes_count_decay_and_batch_norm_modes() {
    let cfg = ClipConfig::rn_tiny();
    let dev = train_device();
    let model = Clip::new(&cfg, 0, &dev).unwrap();
    // The count formula is checked against open_clip's RN50 (102,007,137) in the config tests.
    assert_eq!(trainable_count(&model), cfg.expected_num_params());
    let infos = param_infos(&model);
    assert!(infos.iter().all(|p| !p.path.contains("running")));
    for p in &infos {
        let is_norm = p.path.contains(".bn") || p.path.contains("ln_");
        let expected = p.shape.len() >= 2 && !is_norm && !p.path.ends_with("bias") && p.path != "logit_scale";
        assert_eq!(p.decay, expected, "{}", p.path);
    }
    assert!(infos.iter().any(|p| p.decay && p.shape.len() == 4), "convolution weights are decayed");

    let b = batch(&cfg, 6, 1, &dev);
    let out = model.forward(b.images.clone(), b.tokens.clone(), b.eot.clone());
    assert_eq!(out.image_features.dims(), [6, cfg.embed_dim]);

    // Scoring runs BatchNorm on the running statistics: a row's score does not depend on the
    // other rows of its batch, and scoring leaves the model untouched.
    let before = all_params(&model);
    let whole = score_batch(&model, &b).unwrap().clip_scores;
    let first_two = score_batch(&model, &b.select_rows(&[0, 1]).unwrap()).unwrap().clip_scores;
    for (a, c) in whole.iter().zip(&first_two) {
        assert!((a - c).abs() < 1e-4, "{a} vs {c}");
    }
    assert_eq!(all_params(&model), before);

    // A training step normalises with the batch's statistics and moves the running ones.
    let running = |m: &Clip| {
        let VisionTower::ResNet(r) = &m.visual else { unreachable!("rn-tiny is a ResNet") };
        flat2(r.bn1.running_mean.val())
    };
    let mut optim = ClipOptimizer::new(&model, AdamWSettings::default());
    let (stepped, stats) = train_step(model.clone(), &mut optim, &b, 1e-3, Some(1.0)).unwrap();
    assert!(stats.loss.is_finite());
    assert_ne!(running(&stepped), running(&model));
    assert!(running(&model).iter().all(|&v| v == 0.0));
    // The running statistics travel with the weights.
    let reloaded = model_from_bytes(Clip::new(&cfg, 9, &dev).unwrap(), &model_to_bytes(&stepped).unwrap()).unwrap();
    assert_eq!(running(&reloaded), running(&stepped));

    // Distributed: each process keeps the running statistics of its own rows, as
    // DistributedDataParallel without SyncBatchNorm.
    let halves = [Some(b.select_rows(&[0, 1, 2]).unwrap()), Some(b.select_rows(&[3, 4, 5]).unwrap())];
    let results = distributed_step(&model, &halves, GlobalNegatives::default(), None);
    let mut optim = ClipOptimizer::new(&model, AdamWSettings::default());
    let (rank0_alone, _) = train_step(model.clone(), &mut optim, halves[0].as_ref().unwrap(), 1e-3, None).unwrap();
    assert_eq!(running(&results[0].0), running(&rank0_alone));
}

fn flat2(t: Tensor<1>) -> Vec<f32> {
    t.try_into_vec_as::<f32>().unwrap()
}

/// Every parameter value of a module (running statistics included), in visiting order.
fn values<M: Module>(module: &M) -> Vec<f32> {
    use dissect_model::burn::module::ModuleVisitor;
    struct Collect(Vec<f32>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &dissect_model::burn::module::Param<Tensor<D>>) {
            self.0.extend(param.val().try_into_vec_as::<f32>().unwrap());
        }
    }
    let mut collect = Collect(Vec::new());
    module.visit(&mut collect);
    collect.0
}

/// A locked image tower takes no gradient and does not move; the text tower and the
/// temperature still train. With its last group unlocked, only the projection moves.
#[test]
fn a_locked_image_tower_does_not_move() {
    let cfg = ClipConfig::micro();
    let b = batch(&cfg, 4, 5, &cpu());
    let step = |lock: Option<dissect_model::TowerLock>| {
        let model = Clip::new(&cfg, 0, &train_device()).unwrap().lock(lock, None).unwrap();
        let before = model.clone();
        let mut optim = ClipOptimizer::new(&model, AdamWSettings::default());
        let (after, _) = train_step(model, &mut optim, &b, 1e-2, None).unwrap();
        (before, after)
    };
    let (before, after) = step(Some(dissect_model::TowerLock { unlocked_groups: 0 }));
    let (VisionTower::Vit(v0), VisionTower::Vit(v1)) = (&before.visual, &after.visual) else { panic!("a ViT") };
    assert_eq!(values(v0), values(v1), "the locked tower is unchanged");
    assert_ne!(values(&before.text), values(&after.text), "the text tower trains");

    let (before, after) = step(Some(dissect_model::TowerLock { unlocked_groups: 1 }));
    let (VisionTower::Vit(v0), VisionTower::Vit(v1)) = (&before.visual, &after.visual) else { panic!("a ViT") };
    assert_ne!(values(&v0.proj), values(&v1.proj), "the last group (the projection) trains");
    assert_eq!(values(&v0.ln_post), values(&v1.ln_post), "the group before it does not");
    assert_eq!(values(&v0.blocks), values(&v1.blocks));
}

/// A locked ResNet tower keeps its BatchNorm running statistics; partial locking of a ResNet
/// is refused, as in open_clip.
#[test]
fn a_locked_resnet_keeps_its_statistics() {
    let cfg = ClipConfig::rn_tiny();
    let b = batch(&cfg, 4, 6, &cpu());
    let model = Clip::new(&cfg, 0, &train_device()).unwrap();
    let partial = model.clone().lock(Some(dissect_model::TowerLock { unlocked_groups: 1 }), None);
    assert!(partial.unwrap_err().to_string().contains("lock_image_unlocked_groups"));
    let model = model.lock(Some(dissect_model::TowerLock::default()), None).unwrap();
    let before = values(&model.visual);
    let mut optim = ClipOptimizer::new(&model, AdamWSettings::default());
    let (after, _) = train_step(model, &mut optim, &b, 1e-2, None).unwrap();
    assert_eq!(values(&after.visual), before, "weights and running statistics stay");
}

/// `--accum-freq`: four micro-batches of a batch of 8 give the loss of one step over the batch
/// and, up to float rounding, its update.
#[test]
fn accumulated_micro_batches_equal_one_step_over_the_batch() {
    let cfg = ClipConfig::micro();
    let b = batch(&cfg, 8, 9, &cpu());
    let model = Clip::new(&cfg, 3, &train_device()).unwrap();
    let step = |accum: usize| {
        let mut optim = ClipOptimizer::new(&model, AdamWSettings::default());
        let (after, stats) =
            dissect_model::train_step_accumulated(model.clone(), &mut optim, &b, accum, 1e-3, Some(1.0)).unwrap();
        (values(&after), stats)
    };
    let (whole, whole_stats) = step(1);
    let (micro, micro_stats) = step(4);
    assert!((whole_stats.loss - micro_stats.loss).abs() < 1e-6, "{whole_stats:?} vs {micro_stats:?}");
    assert!((whole_stats.grad_norm - micro_stats.grad_norm).abs() < 1e-4 * whole_stats.grad_norm);
    let max_diff = whole.iter().zip(&micro).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(max_diff < 1e-5, "parameters differ by {max_diff}");
    let (_, one_row_each) = step(8);
    assert!((one_row_each.loss - whole_stats.loss).abs() < 1e-6);
}
