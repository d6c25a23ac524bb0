//! Several strategies on one dataset and one budget, with one seed or several: the paper's
//! main table, and with seeds its mean ± sd.

use std::path::{Path, PathBuf};

use dissect_data::{DatasetManifest, HeadlineMetric};
use dissect_eval::{
    BandCurve, EvalReport, NamedCurve, NoiseShare, ScoreTrajectories, SeedSummary, StrategyResult, fill_time_to_full,
    plot_headline_vs_time, plot_noise_fraction, plot_score_trajectories, plot_seed_bands, plot_selected_histograms,
    seeds_to_markdown, summarize_seeds, to_json, to_markdown,
};
use dissect_select::Strategy;

use crate::checkpoint::write_atomic;
use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::observer::Observer;
use crate::stop::StopSignal;
use crate::trainer::{RunOutcome, train_with};

/// The rows of a comparison: one seed's, or every seed's with a summary per strategy.
#[derive(Debug, Clone)]
pub enum ComparisonRows {
    /// One seed: one row per strategy.
    OneSeed(Vec<StrategyResult>),
    /// Several seeds: one row per strategy and seed, seed by seed, and one summary per
    /// strategy (every column's mean ± sd and spread).
    Seeds {
        /// Every run's row.
        results: Vec<StrategyResult>,
        /// Every strategy's statistics over the seeds.
        summaries: Vec<SeedSummary>,
    },
}

impl ComparisonRows {
    /// Every run's row, seed by seed.
    pub fn results(&self) -> &[StrategyResult] {
        match self {
            ComparisonRows::OneSeed(results) | ComparisonRows::Seeds { results, .. } => results,
        }
    }

    /// Every strategy's statistics over the seeds (one seed gives sd 0).
    pub fn summaries(&self) -> Vec<SeedSummary> {
        match self {
            ComparisonRows::OneSeed(results) => summarize_seeds(std::slice::from_ref(results)),
            ComparisonRows::Seeds { summaries, .. } => summaries.clone(),
        }
    }

    /// The noisy share of the selected rows next to the data's: per run with one seed, per
    /// strategy (its mean over the seeds) with several.
    pub fn noise_shares(&self) -> Vec<NoiseShare> {
        match self {
            ComparisonRows::OneSeed(results) => results
                .iter()
                .map(|r| NoiseShare {
                    strategy: r.strategy,
                    selected: r.selected_noise_fraction,
                    data: r.data_noise_fraction,
                })
                .collect(),
            ComparisonRows::Seeds { results, summaries } => summaries
                .iter()
                .map(|s| NoiseShare {
                    strategy: s.strategy,
                    selected: s.selected_noise.map(|n| n.mean / 100.0),
                    data: results.iter().find(|r| r.strategy == s.strategy).and_then(|r| r.data_noise_fraction),
                })
                .collect(),
        }
    }
}

/// Where a comparison wrote its results.
#[derive(Debug, Clone)]
pub struct ComparisonReport {
    /// The comparison's rows.
    pub rows: ComparisonRows,
    /// The table as Markdown (the seed summary with several seeds).
    pub markdown: String,
    /// `table.md`.
    pub table_md: PathBuf,
    /// `table.json`.
    pub table_json: PathBuf,
    /// Every plot written (PNG and SVG).
    pub plots: Vec<PathBuf>,
    /// Each strategy's run outcome.
    pub outcomes: Vec<RunOutcome>,
}

/// Mean selected-noise fraction over the epochs from `from` on (all of them if none qualify).
fn mean_selected_noise(outcome: &RunOutcome, from: u32) -> (Option<f64>, Option<f64>) {
    let pick = |min_epoch: u32| -> Vec<(f64, f64)> {
        outcome
            .epochs
            .iter()
            .filter(|e| e.epoch >= min_epoch)
            .filter_map(|e| e.noise.and_then(|n| Some((n.selected_noise_fraction?, n.data_noise_fraction?))))
            .collect()
    };
    let mut values = pick(from);
    if values.is_empty() {
        values = pick(0);
    }
    if values.is_empty() {
        return (None, None);
    }
    let n = values.len() as f64;
    (Some(values.iter().map(|v| v.0).sum::<f64>() / n), Some(values.iter().map(|v| v.1).sum::<f64>() / n))
}

/// The value of `metric` in a held-out report (`None`: zero-shot on data without classes).
fn headline_of(metric: HeadlineMetric, eval: &EvalReport) -> Option<f64> {
    match metric {
        HeadlineMetric::MeanR1 => Some(eval.mean_r1()),
        HeadlineMetric::ZeroShotTop1 => eval.zero_shot_top1(),
    }
}

/// The comparison row of a finished run: its final evaluation, the mean selected-noise share
/// over the epochs from `noise_from_epoch` on, its wall time and the curve of the dataset's
/// headline metric.
pub fn strategy_result(
    outcome: &RunOutcome,
    noise_from_epoch: u32,
    headline: HeadlineMetric,
) -> Result<StrategyResult> {
    let eval = outcome.final_eval().ok_or_else(|| TrainError::NoEvaluation(outcome.run_dir.clone()))?;
    let (selected_noise, data_noise) = mean_selected_noise(outcome, noise_from_epoch);
    Ok(StrategyResult {
        strategy: outcome.strategy,
        eval: eval.clone(),
        selected_noise_fraction: selected_noise,
        data_noise_fraction: data_noise,
        wall_time_s: outcome.train_time_s,
        headline: headline.label().to_string(),
        headline_value: headline_of(headline, eval),
        time_to_full_s: None,
        headline_curve: outcome
            .epochs
            .iter()
            .filter_map(|e| Some((e.train_time_s, headline_of(headline, e.eval.as_ref()?)?)))
            .collect(),
    })
}

/// The headline metric of the comparison's data: its `dataset.json`'s, mean R@1 for shards.
fn headline_metric(base: &TrainConfig) -> Result<HeadlineMetric> {
    if base.train_data.is_some() || base.data.as_os_str().is_empty() {
        return Ok(HeadlineMetric::MeanR1);
    }
    Ok(DatasetManifest::load(&base.data)?.headline)
}

/// What a comparison reports as it goes, besides each run's own progress.
pub trait CompareObserver: Observer {
    /// After each strategy's run ends.
    fn strategy_done(&mut self, _outcome: &RunOutcome) {}
}

impl CompareObserver for () {}

/// Trains `strategies` one after another in `out/<strategy>/` (each resumable: a finished run
/// is not repeated) and writes `table.md`, `table.json` and the plots under `out/`. With
/// `seeds` > 1 it does that for seeds `base.seed`, `base.seed + 1`, ... in `out/seed-<s>/`
/// and writes the summary over seeds (mean ± sd, spread) as `out/table.md` and
/// `out/table.json`. Returns `Ok(None)` when `stop` interrupted a run (its checkpoint is
/// written; running the same comparison again continues it).
pub fn compare(
    base: &TrainConfig,
    strategies: &[Strategy],
    seeds: u32,
    out: &Path,
    observer: &mut dyn CompareObserver,
    stop: &StopSignal,
) -> Result<Option<ComparisonReport>> {
    if base.train_data.is_some() && base.val_data.is_none() {
        return Err(TrainError::Config(
            "val_data: a comparison ranks the runs on held-out pairs; pass held-out shards with --val-data".into(),
        ));
    }
    // Read once: every seed's table and the seed plots rank by it.
    let headline = headline_metric(base)?;
    if seeds <= 1 {
        return compare_one_seed(base, strategies, headline, out, observer, stop);
    }
    let mut per_seed = Vec::with_capacity(seeds as usize);
    for offset in 0..u64::from(seeds) {
        let config = TrainConfig { seed: base.seed + offset, ..base.clone() };
        let dir = out.join(format!("seed-{}", config.seed));
        match compare_one_seed(&config, strategies, headline, &dir, observer, stop)? {
            Some(report) => per_seed.push(report),
            None => return Ok(None),
        }
    }
    let summaries = summarize_seeds(&per_seed.iter().map(|r| r.rows.results().to_vec()).collect::<Vec<_>>());
    let band_plots = write_seed_plots(out, strategies, &per_seed, headline)?;
    let markdown = seeds_to_markdown(&summaries);
    let table_md = out.join("table.md");
    let table_json = out.join("table.json");
    write_atomic(&table_md, markdown.as_bytes())?;
    let json = serde_json::to_string_pretty(&summaries)
        .map_err(|source| TrainError::Json { path: table_json.clone(), source })?;
    write_atomic(&table_json, json.as_bytes())?;
    let (mut results, mut plots, mut outcomes) = (Vec::new(), band_plots, Vec::new());
    for seed in per_seed {
        results.extend_from_slice(seed.rows.results());
        plots.extend(seed.plots);
        outcomes.extend(seed.outcomes);
    }
    let rows = ComparisonRows::Seeds { results, summaries };
    Ok(Some(ComparisonReport { rows, markdown, table_md, table_json, plots, outcomes }))
}

/// [`compare`] with the seed of `base`.
fn compare_one_seed(
    base: &TrainConfig,
    strategies: &[Strategy],
    headline: HeadlineMetric,
    out: &Path,
    observer: &mut dyn CompareObserver,
    stop: &StopSignal,
) -> Result<Option<ComparisonReport>> {
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let mut outcomes = Vec::new();
    for &strategy in strategies {
        let mut config = base.clone();
        config.selection.strategy = strategy;
        config.out = out.join(strategy.name());
        config.validate()?;
        let outcome = train_with(&config, true, observer, stop)?;
        if outcome.interrupted {
            return Ok(None);
        }
        observer.strategy_done(&outcome);
        outcomes.push(outcome);
    }
    report(base, headline, out, outcomes).map(Some)
}

/// The table and plots of finished runs, ranked by `headline`.
fn report(
    base: &TrainConfig,
    headline: HeadlineMetric,
    out: &Path,
    outcomes: Vec<RunOutcome>,
) -> Result<ComparisonReport> {
    // Noise is compared after the warm-up, when every strategy is really selecting; an `auto`
    // warm-up counts from the latest epoch at which one of these runs ended it.
    let from = base.selection.warmup_epochs.fixed().unwrap_or_else(|| {
        let ends = outcomes.iter().flat_map(|o| o.epochs.iter().filter_map(|e| e.warmup_ended));
        ends.map(|end| end.first_selecting_epoch).max().unwrap_or(0)
    });
    let mut results = outcomes.iter().map(|o| strategy_result(o, from, headline)).collect::<Result<Vec<_>>>()?;
    fill_time_to_full(&mut results);
    let markdown = to_markdown(&results);
    let table_md = out.join("table.md");
    let table_json = out.join("table.json");
    write_atomic(&table_md, markdown.as_bytes())?;
    write_atomic(&table_json, to_json(&results)?.as_bytes())?;
    let plots = write_plots(out, &results, &outcomes)?;
    let rows = ComparisonRows::OneSeed(results);
    Ok(ComparisonReport { rows, markdown, table_md, table_json, plots, outcomes })
}

/// Per strategy, the mean ± sd over seeds of the headline metric and of the selected-noise
/// share at each epoch, as shaded bands under `out/plots/`.
fn write_seed_plots(
    out: &Path,
    strategies: &[Strategy],
    per_seed: &[ComparisonReport],
    headline: HeadlineMetric,
) -> Result<Vec<PathBuf>> {
    let dir = out.join("plots");
    std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    // Runs of one strategy across seeds, each as its per-epoch summaries.
    let runs = |strategy: Strategy| -> Vec<&RunOutcome> {
        per_seed.iter().flat_map(|r| r.outcomes.iter().filter(move |o| o.strategy == strategy)).collect()
    };
    let mut headline_bands = Vec::new();
    let mut noise_bands = Vec::new();
    for &strategy in strategies {
        let outcomes = runs(strategy);
        let headline_runs: Vec<Vec<(f64, f64)>> = outcomes
            .iter()
            .map(|o| {
                o.epochs
                    .iter()
                    .filter_map(|e| Some((f64::from(e.epoch), headline_of(headline, e.eval.as_ref()?)?)))
                    .collect()
            })
            .collect();
        let noise_runs: Vec<Vec<(f64, f64)>> = outcomes
            .iter()
            .map(|o| {
                o.epochs.iter().filter_map(|e| Some((f64::from(e.epoch), e.noise?.selected_noise_fraction?))).collect()
            })
            .collect();
        headline_bands.push(BandCurve::over_seeds(strategy.name(), &headline_runs));
        noise_bands.push(BandCurve::over_seeds(strategy.name(), &noise_runs));
    }
    let seeds = per_seed.len();
    let mut written = Vec::new();
    let metric = headline.label();
    if headline_bands.iter().any(|b| !b.points.is_empty()) {
        let title = format!("Test {metric} per epoch over {seeds} seeds");
        let files = plot_seed_bands(
            &dir.join("headline_by_epoch"),
            &headline_bands,
            &title,
            &format!("test {metric} (%)"),
            (None, 1.0),
        )?;
        written.extend([files.png, files.svg]);
    }
    if noise_bands.iter().any(|b| !b.points.is_empty()) {
        let rate = per_seed.first().and_then(|r| r.outcomes.first()).map(|o| o.data_noise_rate);
        let title = format!("Noisy pairs among selected rows over {seeds} seeds");
        let y = "noisy pairs in selected set (%)";
        let files = plot_seed_bands(&dir.join("selected_noise_by_epoch"), &noise_bands, &title, y, (rate, 100.0))?;
        written.extend([files.png, files.svg]);
    }
    Ok(written)
}

fn write_plots(out: &Path, results: &[StrategyResult], outcomes: &[RunOutcome]) -> Result<Vec<PathBuf>> {
    let dir = out.join("plots");
    std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    let mut written = Vec::new();
    let mut push = |files: dissect_eval::PlotFiles| {
        written.push(files.png);
        written.push(files.svg);
    };
    let curves = NamedCurve::headline_curves(results);
    if curves.iter().any(|c| !c.points.is_empty()) {
        let metric = dissect_eval::headline_label(results);
        let stem = if metric == HeadlineMetric::MeanR1.label() { "r1_vs_time" } else { "zero_shot_vs_time" };
        let title = format!("Test {metric} vs training wall time");
        push(plot_headline_vs_time(&dir.join(stem), &curves, &title, metric)?);
    }
    let noise: Vec<NamedCurve> = outcomes
        .iter()
        .map(|o| {
            let per_epoch: Vec<_> = o.epochs.iter().filter_map(|e| e.noise).collect();
            NamedCurve::noise_curve(o.strategy.name(), &per_epoch)
        })
        .filter(|c| !c.points.is_empty())
        .collect();
    if !noise.is_empty() {
        let rate = outcomes.first().map(|o| o.data_noise_rate);
        push(plot_noise_fraction(&dir.join("selected_noise"), &noise, rate, "Noisy pairs among selected rows")?);
    }
    for outcome in outcomes {
        let name = outcome.strategy.name();
        let trajectories = ScoreTrajectories {
            clean: outcome.epochs.iter().filter_map(|e| e.clean_scores).collect(),
            noisy: outcome.epochs.iter().filter_map(|e| e.noisy_scores).collect(),
        };
        if !trajectories.clean.is_empty() || !trajectories.noisy.is_empty() {
            push(plot_score_trajectories(
                &dir.join(format!("clipscore_trajectories_{name}")),
                &trajectories,
                &format!("CLIPScore of clean vs noisy training pairs ({name})"),
            )?);
        }
        let hists: Vec<_> = outcome.epochs.iter().filter_map(|e| e.selected_histogram.clone()).collect();
        if !hists.is_empty() {
            push(plot_selected_histograms(
                &dir.join(format!("selected_histograms_{name}")),
                &hists,
                &format!("CLIPScore of the selected rows per epoch ({name})"),
            )?);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_headline_comes_from_the_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = DatasetManifest::for_shards("train-{0..1}.tar", "test-0.tar", 32);
        manifest.headline = HeadlineMetric::ZeroShotTop1;
        manifest.save(dir.path()).unwrap();
        let config = TrainConfig { data: dir.path().to_path_buf(), ..TrainConfig::default() };
        assert_eq!(headline_metric(&config).unwrap(), HeadlineMetric::ZeroShotTop1);
        let shards = TrainConfig { train_data: Some("x.tar".into()), ..config };
        assert_eq!(headline_metric(&shards).unwrap(), HeadlineMetric::MeanR1);
    }
}
