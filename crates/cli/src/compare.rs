//! `dissect compare`: several strategies on one dataset and budget, side by side.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use dissect_eval::noise_notes;
use dissect_select::Strategy;
use dissect_train::{ComparisonReport, StopSignal, TrainConfig};

use crate::interrupt;
use crate::options::TrainOptions;
use crate::progress::Progress;

#[derive(Args)]
pub struct CompareArgs {
    #[command(flatten)]
    options: TrainOptions,
    /// Strategies, comma separated [default: every strategy without a reference model].
    #[arg(long, value_delimiter = ',')]
    strategies: Vec<Strategy>,
    /// Output folder: one run folder per strategy, table.md, table.json, plots/ (with
    /// --seeds, those per seed in seed-<s>/, and the summary over seeds at the top).
    #[arg(long, default_value = "runs/compare")]
    out: PathBuf,
    /// Run every strategy with this many seeds (--seed, --seed + 1, ...) and report each
    /// column as mean ± sd over them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    seeds: u32,
}

pub fn run(args: &CompareArgs) -> Result<ExitCode> {
    if dissect_dist::Rendezvous::from_env()?.is_some() {
        anyhow::bail!(
            "compare runs in one process; in a job of several processes launch `dissect train --strategy S` once per strategy"
        );
    }
    let config = args.options.resolve(toml::Table::new())?;
    let strategies = match args.strategies.as_slice() {
        [] => Strategy::without_reference().collect(),
        chosen => chosen.to_vec(),
    };
    run_comparison(&config, &strategies, args.seeds, &args.out, !args.options.no_progress)
}

fn run_comparison(
    config: &TrainConfig,
    strategies: &[Strategy],
    seeds: u32,
    out: &Path,
    show_bar: bool,
) -> Result<ExitCode> {
    let stop = interrupt::install()?;
    let Some(_) = compare_and_print(config, strategies, seeds, out, show_bar, &stop)? else {
        return Ok(interrupted_comparison());
    };
    Ok(ExitCode::SUCCESS)
}

/// Runs the comparison and prints its table, noise notes and where its files are; `None`
/// when a stop request interrupted it.
pub fn compare_and_print(
    config: &TrainConfig,
    strategies: &[Strategy],
    seeds: u32,
    out: &Path,
    show_bar: bool,
    stop: &StopSignal,
) -> Result<Option<ComparisonReport>> {
    let mut progress = Progress::new(show_bar, Some(strategies.len() * seeds as usize));
    let Some(report) = dissect_train::compare(config, strategies, seeds, out, &mut progress, stop)? else {
        return Ok(None);
    };
    println!("\n{}", report.markdown);
    for line in noise_notes(&report.rows.noise_shares()) {
        println!("{line}");
    }
    println!("table: {} and {}", report.table_md.display(), report.table_json.display());
    let runs = if seeds > 1 { out.join("seed-<s>") } else { out.to_path_buf() };
    println!("plots: {}", runs.join("plots").display());
    println!("per-strategy runs (logs, visit records, checkpoints): {}/<strategy>/", runs.display());
    Ok(Some(report))
}

pub fn interrupted_comparison() -> ExitCode {
    eprintln!("interrupted: run the same command again to continue where it stopped");
    ExitCode::from(interrupt::exit_status())
}
