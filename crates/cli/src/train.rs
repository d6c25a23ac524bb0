//! `dissect train`: one model, one selection strategy.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use dissect_select::Strategy;
use dissect_train::RunOutcome;

use crate::interrupt;
use crate::job;
use crate::options::TrainOptions;
use crate::progress::Progress;

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    options: TrainOptions,
    /// Selection strategy (full, random, small-loss, big-loss, clipscore, dissect-warmup,
    /// dissect-momentum, dissect-gated, oracle-clipscore, oracle-cliploss).
    #[arg(long)]
    strategy: Option<Strategy>,
    /// Run folder.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in --out from its latest checkpoint.
    #[arg(long)]
    resume: bool,
    /// In a job of several processes, how long the rendezvous and each collective may wait for
    /// the others before the run fails [default: 600].
    #[arg(long, value_name = "SECONDS")]
    dist_timeout: Option<u64>,
}

pub fn run(args: &TrainArgs) -> Result<ExitCode> {
    let mut extra = toml::Table::new();
    if let Some(out) = &args.out {
        extra.insert("out".into(), toml::Value::String(out.to_string_lossy().into_owned()));
    }
    if let Some(strategy) = args.strategy {
        let mut selection = toml::Table::new();
        selection.insert("strategy".into(), toml::Value::String(strategy.name().into()));
        extra.insert("selection".into(), toml::Value::Table(selection));
    }
    let config = args.options.resolve(extra)?;
    let job = job::from_env(&config, args.dist_timeout)?;
    let stop = interrupt::install()?;
    if job.comm.rank() != 0 {
        // Rank 0 reports, evaluates and writes the run folder; the others only train.
        let outcome = dissect_train::train_in(&config, args.resume, job, &mut (), &stop)?;
        return Ok(if outcome.interrupted { ExitCode::from(interrupt::exit_status()) } else { ExitCode::SUCCESS });
    }
    let mut progress = Progress::new(!args.options.no_progress, None);
    let outcome = dissect_train::train_in(&config, args.resume, job, &mut progress, &stop)?;
    println!("run folder: {}", outcome.run_dir.display());
    if outcome.interrupted {
        return Ok(interrupted(&outcome));
    }
    if let Some(eval) = outcome.final_eval() {
        let (tr, ir) = (&eval.retrieval.image_to_text, &eval.retrieval.text_to_image);
        println!(
            "final test: TR R@1/5/10 {:.1}/{:.1}/{:.1}  IR R@1/5/10 {:.1}/{:.1}/{:.1}{}  ({} steps, {:.0} s training)",
            tr.r1,
            tr.r5,
            tr.r10,
            ir.r1,
            ir.r5,
            ir.r10,
            eval.zero_shot_top1().map_or(String::new(), |z| format!("  zero-shot {z:.1}")),
            outcome.steps,
            outcome.train_time_s
        );
    }
    if outcome.stopped_early {
        println!("stopped at --max-steps; continue with --resume");
    }
    Ok(ExitCode::SUCCESS)
}

/// Says where an interrupted run stands and returns the signal's exit status.
pub fn interrupted(outcome: &RunOutcome) -> ExitCode {
    eprintln!(
        "interrupted at step {}: checkpoint {} written; run the same command with --resume to continue",
        outcome.steps,
        outcome.last_checkpoint.display()
    );
    ExitCode::from(interrupt::exit_status())
}
