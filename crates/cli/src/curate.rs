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
