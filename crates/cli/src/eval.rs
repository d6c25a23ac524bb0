//! `dissect eval`: a trained run or checkpoint on a dataset's held-out split.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use dissect_data::{DatasetManifest, PreprocessConfig};
use dissect_model::{Precision, with_precision};
use dissect_train::{EvalSet, ZeroShotFolder, ZeroShotTemplates, load_trained};

#[derive(Args)]
pub struct EvalArgs {
    /// Run folder (its latest checkpoint) or checkpoint folder.
    run: PathBuf,
    /// Dataset folder whose held-out split is evaluated.
    #[arg(long, required_unless_present = "val_data", conflicts_with = "val_data")]
    data: Option<PathBuf>,
    /// Held-out shards instead ('val-{0000..0009}.tar', several joined with '::').
    #[arg(long)]
    val_data: Option<String>,
    /// Write the report as JSON here as well.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Compute device: cpu; tch, tch:cuda, tch:cuda:N with `--features tch` (LibTorch); cuda, cuda:N
    /// with `--features cuda`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Arithmetic: fp32, amp_bf16 (open_clip's autocast) or bf16 (the towers in bf16); the
    /// bf16 kinds need a tch device.
    #[arg(long, default_value = "fp32")]
    precision: Precision,
    /// Images of more pixels (width x height) than this are skipped [default: PIL's 89478485].
    #[arg(long, default_value_t = dissect_data::DEFAULT_MAX_IMAGE_PIXELS)]
    max_image_pixels: u64,
    /// A labelled image folder (one sub-folder per class) to score zero-shot as well.
    #[arg(long)]
    zeroshot_data: Option<PathBuf>,
    /// Its templates: imagenet (open_clip's 80) or a file [default: the folder's templates.txt,
    /// else "a photo of a {}."].
    #[arg(long, requires = "zeroshot_data")]
    zeroshot_templates: Option<String>,
}

pub fn run(args: &EvalArgs) -> Result<ExitCode> {
    let device = dissect_model::device_from_name(&args.device)?;
    args.precision.check_device(&device)?;
    let (model, config, tokenizer) = load_trained(&args.run, &device)?;
    let (manifest, data_dir) = match (&args.data, &args.val_data) {
        (Some(dir), _) => (DatasetManifest::load(dir)?, dir.clone()),
        (None, Some(shards)) => (DatasetManifest::for_shards("", shards, config.image_size() as u32), PathBuf::new()),
        (None, None) => anyhow::bail!("--data or --val-data names the held-out pairs"),
    };
    let preprocess = PreprocessConfig {
        max_image_pixels: args.max_image_pixels,
        ..PreprocessConfig::new(config.image_size() as u32)
    };
    let set = EvalSet::load(&data_dir, &manifest, &tokenizer, &config, &preprocess, 2)?;
    if let Some(warning) = set.ambiguity_warning() {
        eprintln!("warning: {warning}");
    }
    let started = Instant::now();
    let mut report = with_precision(args.precision, || set.evaluate(&model, &config, &device, 0))?;
    if let Some(dir) = &args.zeroshot_data {
        let templates = ZeroShotTemplates::from_setting(args.zeroshot_templates.as_deref());
        let folder = ZeroShotFolder::load(dir, &templates, &tokenizer, &config, &preprocess, 2)?;
        report.zero_shot_folder = Some(with_precision(args.precision, || folder.evaluate(&model, &config, &device))?);
    }
    println!("{} held-out pairs, evaluated in {:.1} s", report.images, started.elapsed().as_secs_f64());
    let scene = report.retrieval_scene.as_ref();
    let directions = [("image→text", &report.retrieval.image_to_text), ("text→image", &report.retrieval.text_to_image)]
        .into_iter()
        .chain(scene.map(|r| ("image→text, same scene", &r.image_to_text)))
        .chain(scene.map(|r| ("text→image, same scene", &r.text_to_image)));
    for (name, m) in directions {
        println!(
            "{name}  R@1 {:.2}  R@5 {:.2}  R@10 {:.2}  mean rank {:.1}  median rank {:.1}",
            m.r1, m.r5, m.r10, m.mean_rank, m.median_rank
        );
    }
    let folder = args.zeroshot_data.as_ref().map(|d| format!(" on {}", d.display()));
    for (z, on) in [(&report.zero_shot, None), (&report.zero_shot_folder, folder)] {
        if let Some(z) = z {
            let top5 = z.top5.map_or(String::new(), |t| format!("  top-5 {t:.2}"));
            println!("zero-shot{} top-1 {:.2}{top5}", on.unwrap_or_default(), z.top1);
        }
    }
    println!("CLIPScore matched {:.2} vs random pairs {:.2}", report.clipscore.matched, report.clipscore.random);
    if let Some(path) = &args.json {
        dissect_io::write_atomic(path, serde_json::to_string_pretty(&report)?.as_bytes())
            .with_context(|| path.display().to_string())?;
    }
    Ok(ExitCode::SUCCESS)
}
