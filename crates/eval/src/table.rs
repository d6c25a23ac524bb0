//! Strategy comparison table (the paper's main-table layout) as Markdown and JSON.

use dissect_select::Strategy;
use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::report::EvalReport;

fn mean_r1_label() -> String {
    "mean R@1".into()
}

/// One row of the comparison: final test metrics of one strategy's run.
/// Recalls and zero-shot are percentages (0–100); noise fractions are 0–1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyResult {
    /// The strategy (written by its name).
    pub strategy: Strategy,
    /// The run's final held-out evaluation.
    pub eval: EvalReport,
    /// Mean share of noisy pairs among the selected rows (over the epochs the caller chose).
    #[serde(default)]
    pub selected_noise_fraction: Option<f64>,
    /// Share of noisy pairs among all rows visited in those epochs.
    #[serde(default)]
    pub data_noise_fraction: Option<f64>,
    /// Training wall time (evaluation excluded), seconds.
    pub wall_time_s: f64,
    /// The dataset's headline metric, as tables name it ("mean R@1", "zero-shot top-1").
    #[serde(default = "mean_r1_label")]
    pub headline: String,
    /// Its final value (`None`: the mean R@1, as tables written before the field held).
    #[serde(default)]
    pub headline_value: Option<f64>,
    /// Filled by [`fill_time_to_full`]: when the headline first reached `full`'s final one.
    #[serde(default, alias = "time_to_full_r1_s")]
    pub time_to_full_s: Option<f64>,
    /// Per-epoch `(wall time in s, headline metric)`, in time order.
    #[serde(default, alias = "r1_curve")]
    pub headline_curve: Vec<(f64, f64)>,
}

impl StrategyResult {
    /// The final `(TR R@1 + IR R@1) / 2`.
    pub fn mean_r1(&self) -> f64 {
        self.eval.mean_r1()
    }

    /// The final value of the headline metric.
    pub fn final_headline(&self) -> f64 {
        self.headline_value.unwrap_or_else(|| self.mean_r1())
    }
}

/// First wall time at which `curve` reaches `target` (≥), if ever.
pub fn time_to_reach(curve: &[(f64, f64)], target: f64) -> Option<f64> {
    curve.iter().find(|p| p.1 >= target).map(|p| p.0)
}

/// Sets every row's `time_to_full_s` to the first time its headline curve reaches the `full`
/// row's final headline (the full-data baseline is the time-to-accuracy target). Returns that target, or `None` (and clears the column) without a
/// `full` row.
pub fn fill_time_to_full(results: &mut [StrategyResult]) -> Option<f64> {
    let target = results.iter().find(|r| r.strategy == Strategy::Full).map(StrategyResult::final_headline);
    for r in results.iter_mut() {
        r.time_to_full_s = target.and_then(|t| time_to_reach(&r.headline_curve, t));
    }
    target
}

fn num(v: f64) -> String {
    format!("{v:.1}")
}

fn opt(v: Option<f64>, scale: f64) -> String {
    v.map_or_else(|| "—".to_string(), |x| num(x * scale))
}

/// Markdown table: rows are strategies; columns TR R@1/5/10, IR R@1/5/10, zero-shot,
/// selected-noise %, wall time, time to the full run's final headline metric ("—" when not
/// reached or not available).
pub fn to_markdown(results: &[StrategyResult]) -> String {
    let mut s = format!(
        "| Strategy | TR R@1 | TR R@5 | TR R@10 | IR R@1 | IR R@5 | IR R@10 | Zero-shot | \
         Selected noise % | Wall time (s) | Time to full {} (s) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        headline_label(results)
    );
    for r in results {
        let name = r.strategy.name();
        let (tr, ir) = (&r.eval.retrieval.image_to_text, &r.eval.retrieval.text_to_image);
        s.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            num(tr.r1),
            num(tr.r5),
            num(tr.r10),
            num(ir.r1),
            num(ir.r5),
            num(ir.r10),
            opt(r.eval.zero_shot_top1(), 1.0),
            opt(r.selected_noise_fraction, 100.0),
            num(r.wall_time_s),
            opt(r.time_to_full_s, 1.0),
        ));
    }
    if let Some(rate) = results.iter().find_map(|r| r.data_noise_fraction) {
        s.push_str(&format!("\nData noise rate: {:.1} %\n", rate * 100.0));
    }
    s
}

/// The headline metric the rows share (the first row's; "mean R@1" for none).
pub fn headline_label(results: &[StrategyResult]) -> &str {
    results.first().map_or("mean R@1", |r| r.headline.as_str())
}

/// The table as pretty JSON (a list of [`StrategyResult`]).
pub fn to_json(results: &[StrategyResult]) -> Result<String> {
    Ok(serde_json::to_string_pretty(results)?)
}

/// Parses what [`to_json`] wrote.
pub fn from_json(s: &str) -> Result<Vec<StrategyResult>> {
    serde_json::from_str(s).map_err(EvalError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::{ClipScoreReport, RetrievalMetrics, RetrievalReport};

    fn row(name: &str, tr: f64, ir: f64, curve: Vec<(f64, f64)>) -> StrategyResult {
        let direction = |r1: f64, r5: f64, r10: f64| RetrievalMetrics {
            r1,
            r5,
            r10,
            mean_rank: 3.0,
            median_rank: 2.0,
            queries: 100,
        };
        let retrieval =
            RetrievalReport { image_to_text: direction(tr, 50.0, 60.0), text_to_image: direction(ir, 40.0, 55.5) };
        StrategyResult {
            strategy: name.parse().unwrap(),
            eval: EvalReport {
                retrieval,
                retrieval_scene: None,
                zero_shot: None,
                zero_shot_folder: None,
                clipscore: ClipScoreReport { matched: 30.0, random: 10.0, shift: 1 },
                images: 100,
                texts: 100,
            },
            selected_noise_fraction: Some(0.123),
            data_noise_fraction: Some(0.4),
            wall_time_s: 10.0,
            headline: "mean R@1".into(),
            headline_value: None,
            time_to_full_s: None,
            headline_curve: curve,
        }
    }

    #[test]
    fn time_to_full_and_rendering() {
        let mut rs = vec![
            row("full", 30.0, 20.0, vec![(5.0, 10.0), (10.0, 25.0)]),
            row("dissect-momentum", 32.0, 24.0, vec![(3.0, 20.0), (6.0, 25.0), (9.0, 28.0)]),
            row("random", 10.0, 10.0, vec![(3.0, 5.0), (6.0, 10.0)]),
        ];
        assert_eq!(fill_time_to_full(&mut rs), Some(25.0));
        assert_eq!(rs[0].time_to_full_s, Some(10.0));
        assert_eq!(rs[1].time_to_full_s, Some(6.0));
        assert_eq!(rs[2].time_to_full_s, None);
        let md = to_markdown(&rs);
        assert!(md.contains("| dissect-momentum | 32.0 | 50.0 | 60.0 | 24.0 | 40.0 | 55.5 | — | 12.3 | 10.0 | 6.0 |"));
        assert!(md.contains("| random | 10.0 |"));
        assert!(md.contains("| — |\n"));
        assert!(md.contains("Data noise rate: 40.0 %"));
        let back = from_json(&to_json(&rs).unwrap()).unwrap();
        assert_eq!(back, rs);
        // Without a full row the column is cleared.
        let mut no_full = rs[1..].to_vec();
        assert_eq!(fill_time_to_full(&mut no_full), None);
        assert!(no_full.iter().all(|r| r.time_to_full_s.is_none()));
    }
}
