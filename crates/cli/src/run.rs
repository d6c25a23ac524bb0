//! `dissect demo | train | eval | compare`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use dissect_data::{Benchmark, DatasetManifest, GenerateOptions, PreprocessConfig, generate};
use dissect_eval::{SeedSummary, Spread, summarize_seeds};
use dissect_select::{SelectionConfig, Strategy};
use dissect_train::{ComparisonReport, EvalSet, OptimConfig, RunOutcome, StopSignal, TrainConfig, load_trained};

use crate::interrupt;
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
}

pub fn train(args: &TrainArgs) -> Result<ExitCode> {
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
    let stop = interrupt::install()?;
    let mut progress = Progress::new(!args.options.no_progress, None);
    let outcome = dissect_train::train_with(&config, args.resume, &mut progress, &stop)?;
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
fn interrupted(outcome: &RunOutcome) -> ExitCode {
    eprintln!(
        "interrupted at step {}: checkpoint {} written; run the same command with --resume to continue",
        outcome.steps,
        outcome.last_checkpoint.display()
    );
    ExitCode::from(interrupt::exit_status())
}

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
}

pub fn eval(args: &EvalArgs) -> Result<ExitCode> {
    let device = dissect_model::device_from_name(&args.device)?;
    let (model, config, tokenizer) = load_trained(&args.run, &device)?;
    let (manifest, data_dir) = match (&args.data, &args.val_data) {
        (Some(dir), _) => (DatasetManifest::load(dir)?, dir.clone()),
        (None, Some(shards)) => (DatasetManifest::for_shards("", shards, config.image_size() as u32), PathBuf::new()),
        (None, None) => anyhow::bail!("--data or --val-data names the held-out pairs"),
    };
    let preprocess = PreprocessConfig::new(config.image_size() as u32);
    let set = EvalSet::load(&data_dir, &manifest, &tokenizer, &config, &preprocess, 2)?;
    let started = Instant::now();
    let report = set.evaluate(&model, &config, &device, 0)?;
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
    if let Some(z) = &report.zero_shot {
        println!("zero-shot top-1 {:.2}{}", z.top1, z.top5.map_or(String::new(), |t| format!("  top-5 {t:.2}")));
    }
    println!("CLIPScore matched {:.2} vs random pairs {:.2}", report.clipscore.matched, report.clipscore.random);
    if let Some(path) = &args.json {
        dissect_io::write_atomic(path, serde_json::to_string_pretty(&report)?.as_bytes())
            .with_context(|| path.display().to_string())?;
    }
    Ok(ExitCode::SUCCESS)
}

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

pub fn compare(args: &CompareArgs) -> Result<ExitCode> {
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
fn compare_and_print(
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
    for line in noise_readings(&noise_shares(&report)) {
        println!("{line}");
    }
    println!("table: {} and {}", report.table_md.display(), report.table_json.display());
    let runs = if seeds > 1 { out.join("seed-<s>") } else { out.to_path_buf() };
    println!("plots: {}", runs.join("plots").display());
    println!("per-strategy runs (logs, visit records, checkpoints): {}/<strategy>/", runs.display());
    Ok(Some(report))
}

fn interrupted_comparison() -> ExitCode {
    eprintln!("interrupted: run the same command again to continue where it stopped");
    ExitCode::from(interrupt::exit_status())
}

/// `(strategy, selected-noise share, data-noise share)` of each run; with several seeds, one
/// per strategy with its mean selected-noise share over the seeds.
fn noise_shares(report: &dissect_train::ComparisonReport) -> Vec<(&str, Option<f64>, Option<f64>)> {
    let data = |strategy: &str| report.results.iter().find(|r| r.strategy == strategy)?.data_noise_fraction;
    if report.summaries.is_empty() {
        return report
            .results
            .iter()
            .map(|r| (r.strategy.as_str(), r.selected_noise_fraction, r.data_noise_fraction))
            .collect();
    }
    report
        .summaries
        .iter()
        .map(|s| (s.strategy.as_str(), s.selected_noise.map(|n| n.mean / 100.0), data(&s.strategy)))
        .collect()
}

/// One line per DISSect run that kept more noisy rows than the data holds: the sign that the
/// model was still learning the clean pairs (docs/when-dissect-works.md), worth saying next to
/// the table rather than leaving the reader to wonder. `shares` as [`noise_shares`] gives them.
fn noise_readings(shares: &[(&str, Option<f64>, Option<f64>)]) -> Vec<String> {
    shares
        .iter()
        .filter(|(strategy, _, _)| strategy.starts_with("dissect"))
        .filter_map(|&(strategy, kept, data)| match (kept, data) {
            (Some(kept), Some(data)) if kept > data => Some(format!(
                "note: {strategy} kept {:.1}% noisy rows after warm-up, more than the data's {:.1}%: its history \
                 gap favours the pairs learned slowest while the model is still learning the clean ones \
                 (see docs/when-dissect-works.md)",
                100.0 * kept,
                100.0 * data
            )),
            _ => None,
        })
        .collect()
}

#[derive(Args)]
pub struct DemoArgs {
    /// The one-minute version (used by the tests): fewer samples, epochs and strategies' steps.
    #[arg(long)]
    quick: bool,
    /// Output folder.
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Seeds per strategy (--seed, --seed + 1, ...) [default: 3, and 1 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    seeds: Option<u32>,
}

/// The demo's settings, kept in one place so the README can quote them.
pub struct DemoPlan {
    pub train_size: usize,
    pub test_size: usize,
    pub batch_size: usize,
    pub model: &'static str,
    pub lr: f64,
    /// Linear learning-rate warm-up steps.
    pub warmup_steps: u64,
    /// Seeds per strategy: one seed cannot rank strategies at this scale.
    pub seeds: u32,
    /// Every strategy from random weights (the paper's protocol).
    pub cold: RegimePlan,
    /// Epochs of `full` on clean captions of other scenes that make the warm start's model.
    pub clean_epochs: u32,
    /// Every strategy from that model, on the same noisy data as the cold start.
    pub warm: RegimePlan,
}

/// How long each strategy trains in one regime, and its warm-up `W`.
pub struct RegimePlan {
    pub epochs: u32,
    pub warmup_epochs: u32,
}

/// The demo's strategies: every one without a reference model except `big-loss` (which
/// keeps the noisiest rows on purpose and only fills the budget here; `compare` runs it).
pub const DEMO_STRATEGIES: [Strategy; 6] = [
    Strategy::Full,
    Strategy::Random,
    Strategy::SmallLoss,
    Strategy::Clipscore,
    Strategy::DissectWarmup,
    Strategy::DissectMomentum,
];

pub fn demo_plan(quick: bool) -> DemoPlan {
    if quick {
        DemoPlan {
            train_size: 1024,
            test_size: 256,
            batch_size: 128,
            model: "micro",
            lr: 1e-3,
            warmup_steps: 4,
            seeds: 1,
            cold: RegimePlan { epochs: 2, warmup_epochs: 1 },
            clean_epochs: 1,
            warm: RegimePlan { epochs: 2, warmup_epochs: 1 },
        }
    } else {
        DemoPlan {
            train_size: 4096,
            test_size: 1000,
            // Batch 64 / lr 1e-3 learns in this budget where 256 / 5e-3 did not (README).
            batch_size: 64,
            model: "micro",
            lr: 1e-3,
            warmup_steps: 50,
            seeds: 3,
            cold: RegimePlan { epochs: 6, warmup_epochs: 2 },
            clean_epochs: 6,
            // The model already knows the clean pairs: one epoch records DISSect's history.
            warm: RegimePlan { epochs: 3, warmup_epochs: 1 },
        }
    }
}

pub fn demo(args: &DemoArgs) -> Result<ExitCode> {
    let plan = demo_plan(args.quick);
    let seeds = args.seeds.unwrap_or(plan.seeds);
    let stop = interrupt::install()?;
    let noisy = demo_data(&args.out.join("data"), 0.4, args.seed, &plan)?;
    let cold = cold_start_config(&plan, noisy, args.seed);
    let strategies = DEMO_STRATEGIES;
    let runs = format!("{} strategies × {seeds} seeds at r = 0.3 (batch {})", strategies.len(), plan.batch_size);
    eprintln!(
        "\n== cold start: the {} CLIP from random weights, {} epochs, W = {}, {runs}",
        plan.model, cold.epochs, plan.cold.warmup_epochs
    );
    let Some(cold_report) = compare_and_print(&cold, &strategies, seeds, &args.out.join("cold-start"), true, &stop)?
    else {
        return Ok(interrupted_comparison());
    };

    eprintln!("\n== warm start: first `full` for {} epochs on clean captions of other scenes", plan.clean_epochs);
    let clean_model = train_clean_model(args, &plan, &cold, &stop)?;
    if clean_model.interrupted {
        return Ok(interrupted(&clean_model));
    }
    let warm = TrainConfig {
        init: Some(clean_model.run_dir),
        epochs: plan.warm.epochs,
        selection: SelectionConfig { warmup_epochs: plan.warm.warmup_epochs.into(), ..cold.selection },
        ..cold.clone()
    };
    eprintln!(
        "   then every strategy from that model on the cold start's noisy data, {} epochs, W = {}, {runs}",
        warm.epochs, plan.warm.warmup_epochs
    );
    let Some(warm_report) = compare_and_print(&warm, &strategies, seeds, &args.out.join("warm-start"), true, &stop)?
    else {
        return Ok(interrupted_comparison());
    };

    println!("\n## Where DISSect helps, measured (mean ± sd over {seeds} seed(s))");
    for (regime, report) in [("cold start", &cold_report), ("warm start", &warm_report)] {
        for line in regime_verdicts(regime, &seed_summaries(report)) {
            println!("- {line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every cold-start run: the plan's model, optimiser and epochs on `data`, r = 0.3.
fn cold_start_config(plan: &DemoPlan, data: PathBuf, seed: u64) -> TrainConfig {
    let defaults = TrainConfig::default();
    TrainConfig {
        data,
        model: plan.model.into(),
        epochs: plan.cold.epochs,
        batch_size: plan.batch_size,
        seed,
        optim: OptimConfig { lr: plan.lr, warmup_steps: plan.warmup_steps, ..defaults.optim },
        selection: SelectionConfig { rate: 0.3, warmup_epochs: plan.cold.warmup_epochs.into(), ..defaults.selection },
        ..defaults
    }
}

/// The warm start's model: `full`, with the cold start's settings, on clean captions of other
/// scenes (another data seed); resumed, or only reported, when it is there already.
fn train_clean_model(args: &DemoArgs, plan: &DemoPlan, cold: &TrainConfig, stop: &StopSignal) -> Result<RunOutcome> {
    let clean = demo_data(&args.out.join("clean-data"), 0.0, args.seed + 1, plan)?;
    let config = TrainConfig {
        data: clean,
        epochs: plan.clean_epochs,
        out: args.out.join("clean-model"),
        selection: SelectionConfig { strategy: Strategy::Full, ..cold.selection },
        ..cold.clone()
    };
    Ok(dissect_train::train_with(&config, true, &mut Progress::new(true, None), stop)?)
}

/// The demo's noisy-shapes set in `dir` (generated unless it is there already): `noise` of
/// the captions swapped, scenes drawn with `seed`.
fn demo_data(dir: &Path, noise: f64, seed: u64, plan: &DemoPlan) -> Result<PathBuf> {
    if DatasetManifest::load(dir).is_err() {
        eprintln!(
            "generating noisy-shapes ({} train pairs, {:.0}% noisy captions; {} clean test pairs) in {}",
            plan.train_size,
            100.0 * noise,
            plan.test_size,
            dir.display()
        );
        let mut options = GenerateOptions::new(Benchmark::NoisyShapes, dir);
        options.noise_rate = noise;
        options.seed = seed;
        options.train_size = Some(plan.train_size);
        options.test_size = Some(plan.test_size);
        generate(&options)?;
    }
    Ok(dir.to_path_buf())
}

/// The comparison's per-strategy statistics over seeds (one seed gives sd 0).
fn seed_summaries(report: &ComparisonReport) -> Vec<SeedSummary> {
    if report.summaries.is_empty() {
        summarize_seeds(std::slice::from_ref(&report.results))
    } else {
        report.summaries.clone()
    }
}

/// For each DISSect variant in one regime, in words: whether it kept noisy rows out (against
/// the data's share and the best filter's), where its headline metric lies against `full`'s
/// and `random`'s, and in how many seeds it reached `full`'s final headline.
fn regime_verdicts(regime: &str, summaries: &[SeedSummary]) -> Vec<String> {
    let find = |name: &str| summaries.iter().find(|s| s.strategy == name);
    let (Some(full), Some(random)) = (find("full"), find("random")) else { return Vec::new() };
    let data_noise = full.selected_noise.map(|n| n.mean);
    let best_filter = summaries
        .iter()
        .filter(|s| !s.strategy.starts_with("dissect") && s.strategy != "full")
        .filter_map(|s| Some((s.strategy.as_str(), s.selected_noise?)))
        .min_by(|a, b| a.1.mean.total_cmp(&b.1.mean));
    summaries
        .iter()
        .filter(|s| s.strategy.starts_with("dissect"))
        .map(|s| {
            let noise = match (s.selected_noise, data_noise) {
                (Some(kept), Some(data)) => format!(
                    "{} ({} noisy rows kept, {data:.1}% in the data{})",
                    noise_effect(&kept, data),
                    pm(&kept, "%"),
                    best_filter.map_or(String::new(), |(name, n)| format!("; {name} {}", pm(&n, "%")))
                ),
                _ => "has no noise flags to judge".to_string(),
            };
            let headline = match (s.headline_value, full.headline_value, random.headline_value) {
                (Some(h), Some(f), Some(r)) => format!(
                    "its {} {} is {} full's {} and {} random's {}",
                    s.headline,
                    pm(&h, ""),
                    relation(&h, &f),
                    pm(&f, ""),
                    relation(&h, &r),
                    pm(&r, "")
                ),
                _ => format!("no {} to compare", s.headline),
            };
            let reached = match s.time_to_full_s {
                Some(t) if s.reached_full > 0 => format!(
                    "it reached full's final {} in {}/{} seeds, after {} s of training (full: {})",
                    s.headline,
                    s.reached_full,
                    s.seeds,
                    pm(&t, ""),
                    full.wall_time_s.map_or("?".into(), |w| format!("{} s", pm(&w, "")))
                ),
                _ => format!("it never reached full's final {} ({}/{} seeds)", s.headline, s.reached_full, s.seeds),
            };
            format!("{regime}: {} {noise}; {headline}; {reached}.", s.strategy)
        })
        .collect()
}

/// Points of selected-noise share within which a run counts as keeping the data's share: the
/// sampling error of an epoch's share is about 1.5 points at this size, so smaller
/// differences say nothing.
const NOISE_MARGIN_POINTS: f64 = 2.0;

/// Whether every seed kept fewer noisy rows than the data holds, every seed more, or neither.
fn noise_effect(kept: &Spread, data: f64) -> &'static str {
    if kept.max < data - NOISE_MARGIN_POINTS {
        "keeps noisy rows out"
    } else if kept.min > data + NOISE_MARGIN_POINTS {
        "lets more noisy rows in"
    } else {
        "keeps about the data's share of noisy rows"
    }
}

/// `a` against `b` by their ranges over seeds: above or below only when they do not overlap.
fn relation(a: &Spread, b: &Spread) -> &'static str {
    if a.min > b.max {
        "above"
    } else if a.max < b.min {
        "below"
    } else {
        "within the seed spread of"
    }
}

fn pm(s: &Spread, unit: &str) -> String {
    format!("{:.1} ± {:.1}{unit}", s.mean, s.sd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_readings_name_only_dissect_runs_above_the_data_rate() {
        let data = Some(0.4);
        let shares = [
            ("big-loss", Some(0.65), data),
            ("dissect-warmup", Some(0.2), data),
            ("dissect-momentum", Some(0.621), data),
            ("dissect-momentum", None, data),
        ];
        let lines = noise_readings(&shares);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("dissect-momentum kept 62.1% noisy rows") && lines[0].contains("40.0%"));
    }
}
