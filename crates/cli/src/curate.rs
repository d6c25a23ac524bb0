//! `dissect curate` and `dissect scores export`: what a finished run's selection state says
//! about every training sample.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct CurateArgs {
    /// Run folder whose final selection state ranks the samples.
    run: PathBuf,
    /// Fraction of the training samples to keep (the best ranked).
    #[arg(long)]
    keep: f64,
    /// Dataset folder to write (must not exist yet): the kept samples, the run's held-out
    /// split, dataset.json.
    #[arg(long)]
    out: PathBuf,
}

pub fn curate(args: &CurateArgs) -> Result<()> {
    let report = dissect_train::curate(&args.run, args.keep, &args.out)?;
    println!("kept {} of {} training samples, ranked by {}", report.kept, report.samples, report.ranked_by);
    if let Some(removed) = report.noisy_removed() {
        println!(
            "noisy pairs (ground truth): {} of {} removed ({:.1}%), {:.1}% of the kept samples are noisy",
            report.noisy - report.noisy_kept,
            report.noisy,
            100.0 * removed,
            100.0 * report.noisy_kept as f64 / report.kept.max(1) as f64
        );
    }
    println!("train on it with: dissect train --data {}", args.out.display());
    Ok(())
}

#[derive(Subcommand)]
pub enum ScoresCommand {
    /// One CSV row per training sample: dataset index, shard, key, last CLIPScore, warm-up
    /// score, history, final ranking key, times selected, last epoch seen, noisy flag.
    Export {
        /// Run folder.
        run: PathBuf,
        /// CSV file to write.
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn scores(command: &ScoresCommand) -> Result<()> {
    match command {
        ScoresCommand::Export { run, out } => {
            let rows = dissect_train::export_scores(run, out)?;
            println!("wrote {rows} rows to {}", out.display());
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct ExportArgs {
    /// Run folder (its latest checkpoint) or checkpoint folder.
    run: PathBuf,
    /// Folder for open_clip_model.safetensors, open_clip_config.json, tokenizer.json and
    /// probe.safetensors.
    #[arg(long)]
    out: PathBuf,
}

pub fn export(args: &ExportArgs) -> Result<()> {
    let out = dissect_train::export_open_clip(&args.run, &args.out)?;
    println!(
        "wrote {} and {} to {}",
        dissect_train::OPEN_CLIP_WEIGHTS_FILE,
        dissect_train::OPEN_CLIP_CONFIG_FILE,
        out.display()
    );
    println!(
        "in PyTorch: model = open_clip.model.CLIP(**json.load(open(\"{}\"))) ... load_state_dict(strict=True); \
         check it with: python bench/openclip_fixture.py check-export {}",
        out.join(dissect_train::OPEN_CLIP_CONFIG_FILE).display(),
        out.display()
    );
    Ok(())
}
