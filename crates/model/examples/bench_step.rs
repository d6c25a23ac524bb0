//! Times a full training step, a no-grad scoring pass, and a selected step (score B rows,
//! train on the top k = floor(r·B) by per-sample loss) of a CLIP preset on Burn `flex`, or on
//! another device (`--device tch:cuda` in a `--features tch` build); then the update alone
//! (gradient clipping and AdamW, from one backward pass's gradients to a host read), whose
//! small per-parameter operations a step's FLOPs do not show.
//!
//! `cargo run --release -p dissect-model --example bench_step -- --preset tiny --batch 256 --steps 5`
//!
//! Compare with `bench/torch_clip.py` (the identical model in PyTorch) run right after, same
//! threads; see `bench/README.md`.

use std::time::Instant;

use anyhow::{Context, bail};
use dissect_model::burn::module::Module;
use dissect_model::burn::optim::GradientsParams;
use dissect_model::{
    AdamWSettings, Clip, ClipBatch, ClipConfig, ClipOptimizer, Precision, clip_grad_norm, clip_loss, device_from_name,
    score_batch, train_step, with_precision,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Args {
    preset: String,
    batch: usize,
    steps: usize,
    ratio: f64,
    device: String,
    precision: Precision,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        preset: "tiny".into(),
        batch: 256,
        steps: 5,
        ratio: 0.3,
        device: "cpu".into(),
        precision: Precision::Fp32,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--preset" => args.preset = value,
            "--batch" => args.batch = value.parse().context("--batch")?,
            "--steps" => args.steps = value.parse().context("--steps")?,
            "--ratio" => args.ratio = value.parse().context("--ratio")?,
            "--device" => args.device = value,
            "--precision" => args.precision = value.parse()?,
            _ => bail!("unknown flag {flag} (use --preset --batch --steps --ratio --device --precision)"),
        }
    }
    if args.batch < 2 || args.steps == 0 || !(0.0..=1.0).contains(&args.ratio) {
        bail!("need --batch >= 2, --steps >= 1, 0 <= --ratio <= 1");
    }
    Ok(args)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() -> anyhow::Result<()> {
    // As the `dissect` binary does: freed tensor buffers stay in the process for reuse.
    dissect_model::keep_freed_memory();
    let args = parse_args()?;
    with_precision(args.precision, || bench(&args))
}

/// The timed rounds, in the precision of `args`.
fn bench(args: &Args) -> anyhow::Result<()> {
    let cfg = ClipConfig::preset(&args.preset)?;
    let b = args.batch;
    let k = ((b as f64 * args.ratio).floor() as usize).max(1);

    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let n = b * cfg.channels() * cfg.image_size() * cfg.image_size();
    let images: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let l = cfg.text.context_length;
    let tokens: Vec<u32> = (0..b * l).map(|_| rng.random_range(1..cfg.text.vocab_size as u32)).collect();
    let eot: Vec<usize> = (0..b).map(|_| rng.random_range(l / 2..l)).collect();

    let device = device_from_name(&args.device)?;
    args.precision.check_device(&device)?;
    let train_dev = device.clone().autodiff();
    let batch = ClipBatch::from_host(&cfg, &images, &tokens, &eot, &device)?;
    let train_batch = batch.to_device(&train_dev);
    let mut model = Clip::new(&cfg, 0, &train_dev)?;
    let mut optim = ClipOptimizer::new(&model, AdamWSettings::default());
    // Trainable parameters, as PyTorch counts them (BatchNorm running statistics are buffers).
    let params: usize = optim.params().iter().map(|p| p.shape.iter().product::<usize>()).sum();
    let (name, preset, precision) = (&args.device, &args.preset, args.precision.name());
    println!("burn {name}: preset {preset} precision {precision} params {params} batch {b} k {k} steps {}", args.steps);

    let (mut full, mut score, mut selected) = (vec![], vec![], vec![]);
    // One untimed warm-up round, then `steps` timed rounds.
    for round in 0..=args.steps {
        let t = Instant::now();
        let (m, stats) = train_step(model, &mut optim, &train_batch, 1e-4, Some(1.0))?;
        model = m;
        let t_full = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let scores = score_batch(&model.valid(), &batch)?;
        let t_score = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let scores_sel = score_batch(&model.valid(), &batch)?;
        let mut order: Vec<usize> = (0..b).collect();
        let loss = &scores_sel.per_sample_loss;
        order.sort_by(|&i, &j| loss[j].total_cmp(&loss[i]).then(i.cmp(&j)));
        order.truncate(k);
        let sub = batch.select_rows(&order)?;
        let (m, _) = train_step(model, &mut optim, &sub, 1e-4, Some(1.0))?;
        model = m;
        let t_sel = t.elapsed().as_secs_f64();

        if round > 0 {
            full.push(t_full);
            score.push(t_score);
            selected.push(t_sel);
        }
        println!("round {round}: full {t_full:.3}s score {t_score:.3}s selected {t_sel:.3}s loss {:.4}", stats.loss);
        let _ = scores;
    }
    let (f, s, sel) = (median(full), median(score), median(selected));
    let r = k as f64 / b as f64;
    println!("median full step      {f:.3} s  ({:.1} samples/s)", b as f64 / f);
    println!("median scoring pass   {s:.3} s  (score/full {:.3})", s / f);
    println!("median selected step  {sel:.3} s");
    println!("selected/full {:.3}  vs cost model (1+3r)/3 = {:.3} at r = {r:.3}", sel / f, (1.0 + 3.0 * r) / 3.0);
    let tensors = optim.params().len();
    let u = time_update(model, &mut optim, &train_batch, args.steps)?;
    println!("median update         {u:.4} s  (update/full {:.3}, {tensors} parameter tensors)", u / f);
    Ok(())
}

/// The median time of the update alone over `steps` timed rounds after one warm-up: clipping
/// (the norm read to the host, as a step reads it) and AdamW, from the gradients of one
/// backward pass until a host read of the updated temperature, which waits for the device.
fn time_update(mut model: Clip, optim: &mut ClipOptimizer, batch: &ClipBatch, steps: usize) -> anyhow::Result<f64> {
    let mut times = vec![];
    for round in 0..=steps {
        let (out, _) = model.forward_train(batch.images.clone(), batch.tokens.clone(), batch.eot.clone());
        let mut grads = GradientsParams::from_grads(clip_loss(&out).backward(), &model);
        model.logit_scale_value(); // the backward pass has finished on the device
        let t = Instant::now();
        clip_grad_norm(optim.params(), &mut grads, Some(1.0))?;
        model = optim.step(1e-4, model, grads);
        model.logit_scale_value();
        if round > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(median(times))
}
