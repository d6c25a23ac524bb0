//! A comparison run with several seeds: every column as mean ± standard deviation with its
//! spread, and a mark on each strategy whose headline metric's range overlaps the `full`
//! run's (a difference the seeds cannot settle).

use serde::{Deserialize, Serialize};

use dissect_select::Strategy;

use crate::table::StrategyResult;

/// Mean, sample standard deviation (n − 1; 0 for one value) and range of one column.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Values the statistics are over.
    pub n: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation.
    pub sd: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Spread {
    /// The statistics of `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let sd =
            if n > 1 { (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() } else { 0.0 };
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Spread { n, mean, sd, min, max })
    }

    /// Whether the two ranges `[min, max]` overlap.
    pub fn overlaps(&self, other: &Spread) -> bool {
        self.min <= other.max && other.min <= self.max
    }
}

/// One strategy over every seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedSummary {
    /// The strategy (written by its name).
    pub strategy: Strategy,
    /// Seeds the strategy ran with.
    pub seeds: usize,
    /// Final image→text R@1, R@5, R@10 (%).
    pub tr: [Option<Spread>; 3],
    /// Final text→image R@1, R@5, R@10 (%).
    pub ir: [Option<Spread>; 3],
    /// Final mean R@1 `(TR R@1 + IR R@1) / 2` (%).
    pub mean_r1: Option<Spread>,
    /// The dataset's headline metric, as tables name it.
    pub headline: String,
    /// Its final value (%).
    pub headline_value: Option<Spread>,
    /// Zero-shot top-1 (%), on data with class names.
    pub zero_shot: Option<Spread>,
    /// Noisy share of the selected rows (%).
    pub selected_noise: Option<Spread>,
    /// Training wall time (s).
    pub wall_time_s: Option<Spread>,
    /// Time to the same seed's `full` final headline (s), over the seeds that reached it.
    pub time_to_full_s: Option<Spread>,
    /// Seeds whose run reached the same seed's `full` final headline.
    pub reached_full: usize,
    /// Whether the headline's range overlaps the `full` strategy's (`None` for `full` itself
    /// or without a `full` row): a difference within the seed spread.
    pub within_full_spread: Option<bool>,
}

/// Summarises `runs[s]`, the comparison rows of seed `s` (each already passed through
/// [`crate::fill_time_to_full`]), strategy by strategy in the order of the first seed.
pub fn summarize_seeds(runs: &[Vec<StrategyResult>]) -> Vec<SeedSummary> {
    let Some(first) = runs.first() else { return Vec::new() };
    let mut rows: Vec<SeedSummary> = first
        .iter()
        .map(|r| {
            let rows: Vec<&StrategyResult> =
                runs.iter().filter_map(|seed| seed.iter().find(|x| x.strategy == r.strategy)).collect();
            summary(r.strategy, &rows)
        })
        .collect();
    let full = rows.iter().find(|r| r.strategy == Strategy::Full).and_then(|r| r.headline_value);
    for row in &mut rows {
        if row.strategy != Strategy::Full {
            row.within_full_spread = full.zip(row.headline_value).map(|(f, m)| m.overlaps(&f));
        }
    }
    rows
}

fn summary(strategy: Strategy, rows: &[&StrategyResult]) -> SeedSummary {
    let column =
        |f: &dyn Fn(&StrategyResult) -> Option<f64>| Spread::of(&rows.iter().filter_map(|r| f(r)).collect::<Vec<_>>());
    let (tr, ir) =
        (|r: &StrategyResult| r.eval.retrieval.image_to_text, |r: &StrategyResult| r.eval.retrieval.text_to_image);
    SeedSummary {
        strategy,
        seeds: rows.len(),
        tr: [column(&|r| Some(tr(r).r1)), column(&|r| Some(tr(r).r5)), column(&|r| Some(tr(r).r10))],
        ir: [column(&|r| Some(ir(r).r1)), column(&|r| Some(ir(r).r5)), column(&|r| Some(ir(r).r10))],
        mean_r1: column(&|r| Some(r.mean_r1())),
        headline: rows.first().map_or_else(|| "mean R@1".to_string(), |r| r.headline.clone()),
        headline_value: column(&|r| Some(r.final_headline())),
        zero_shot: column(&|r| r.eval.zero_shot_top1()),
        selected_noise: column(&|r| r.selected_noise_fraction.map(|f| 100.0 * f)),
        wall_time_s: column(&|r| Some(r.wall_time_s)),
        time_to_full_s: column(&|r| r.time_to_full_s),
        reached_full: rows.iter().filter(|r| r.time_to_full_s.is_some()).count(),
        within_full_spread: None,
    }
}

fn cell(spread: Option<Spread>) -> String {
    spread.map_or_else(|| "—".to_string(), |s| format!("{:.1} ± {:.1}", s.mean, s.sd))
}

/// Markdown table of the summaries: mean ± sd per column, the headline metric with its
/// range, and `≈ full` on strategies whose headline range overlaps the `full` run's.
pub fn seeds_to_markdown(rows: &[SeedSummary]) -> String {
    let seeds = rows.iter().map(|r| r.seeds).max().unwrap_or(0);
    let headline = rows.first().map_or("mean R@1", |r| r.headline.as_str());
    let mut s = format!(
        "Mean ± sd over {seeds} seeds (sample sd); headline metric: {headline}, with its range (min–max over \
         seeds); ≈ full: the range overlaps full's, so the seeds do not separate the two.\n\n\
         | Strategy | TR R@1 | TR R@5 | TR R@10 | IR R@1 | IR R@5 | IR R@10 | Zero-shot | {headline} (range) | \
         Selected noise % | Wall time (s) | Time to full {headline} (s) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for r in rows {
        let name = r.strategy.name();
        let mark = if r.within_full_spread == Some(true) { " ≈ full" } else { "" };
        let value = r.headline_value.map_or_else(
            || "—".to_string(),
            |m| format!("{:.1} ± {:.1} ({:.1}–{:.1}){mark}", m.mean, m.sd, m.min, m.max),
        );
        let time_to_full = match r.time_to_full_s {
            Some(t) => format!("{:.1} ± {:.1} ({}/{})", t.mean, t.sd, r.reached_full, r.seeds),
            None => format!("— (0/{})", r.seeds),
        };
        let cells: Vec<String> = r.tr.iter().chain(&r.ir).map(|c| cell(*c)).collect();
        s.push_str(&format!(
            "| {name} | {} | {} | {value} | {} | {} | {time_to_full} |\n",
            cells.join(" | "),
            cell(r.zero_shot),
            cell(r.selected_noise),
            cell(r.wall_time_s),
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClipScoreReport, EvalReport, RetrievalMetrics, RetrievalReport};

    fn row(name: &str, r1: f64, wall: f64, time_to_full: Option<f64>) -> StrategyResult {
        let direction = |r1: f64| RetrievalMetrics {
            r1,
            r5: 2.0 * r1,
            r10: 3.0 * r1,
            mean_rank: 3.0,
            median_rank: 2.0,
            queries: 10,
        };
        StrategyResult {
            strategy: name.parse().unwrap(),
            eval: EvalReport {
                retrieval: RetrievalReport { image_to_text: direction(r1), text_to_image: direction(r1 + 2.0) },
                retrieval_scene: None,
                zero_shot: None,
                zero_shot_folder: None,
                clipscore: ClipScoreReport { matched: 30.0, random: 10.0, shift: 1 },
                images: 10,
                texts: 10,
            },
            selected_noise_fraction: Some(0.25),
            data_noise_fraction: Some(0.4),
            wall_time_s: wall,
            headline: "mean R@1".into(),
            headline_value: None,
            time_to_full_s: time_to_full,
            headline_curve: Vec::new(),
        }
    }

    #[test]
    fn spread_by_hand() {
        let s = Spread::of(&[2.0, 4.0, 9.0]).unwrap();
        assert_eq!((s.n, s.mean, s.min, s.max), (3, 5.0, 2.0, 9.0));
        // Sum of squared deviations 9 + 1 + 16 = 26 over n − 1 = 2.
        assert!((s.sd - 13f64.sqrt()).abs() < 1e-12);
        assert_eq!(Spread::of(&[7.0]).unwrap().sd, 0.0);
        assert!(Spread::of(&[]).is_none());
        let (a, b) = (Spread::of(&[1.0, 3.0]).unwrap(), Spread::of(&[3.0, 5.0]).unwrap());
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&Spread::of(&[3.5, 4.0]).unwrap()));
    }

    #[test]
    fn summaries_mark_differences_within_the_seed_spread() {
        let runs = vec![
            vec![
                row("full", 10.0, 100.0, Some(90.0)),
                row("random", 4.0, 50.0, None),
                row("clipscore", 9.0, 60.0, None),
            ],
            vec![
                row("full", 14.0, 110.0, Some(100.0)),
                row("random", 6.0, 55.0, None),
                row("clipscore", 13.0, 61.0, Some(40.0)),
            ],
        ];
        let rows = summarize_seeds(&runs);
        assert_eq!(rows.iter().map(|r| r.strategy.name()).collect::<Vec<_>>(), ["full", "random", "clipscore"]);
        let full = &rows[0];
        // Mean R@1 = TR R@1 + 1: 11 and 15.
        let m = full.mean_r1.unwrap();
        assert_eq!((m.mean, m.min, m.max), (13.0, 11.0, 15.0));
        assert!((m.sd - 8f64.sqrt()).abs() < 1e-12);
        assert_eq!(full.within_full_spread, None);
        assert_eq!(rows[1].within_full_spread, Some(false)); // 5–7 vs 11–15
        assert_eq!(rows[2].within_full_spread, Some(true)); // 10–14 vs 11–15
        assert_eq!((rows[2].reached_full, rows[2].time_to_full_s.unwrap().mean), (1, 40.0));
        assert_eq!(rows[1].selected_noise.unwrap().mean, 25.0);
        let md = seeds_to_markdown(&rows);
        assert!(md.contains("over 2 seeds") && md.contains("headline metric: mean R@1"), "{md}");
        assert!(md.contains("| clipscore | 11.0 ± 2.8 |"), "{md}");
        assert!(md.contains("| — | 12.0 ± 2.8 (10.0–14.0) ≈ full |"), "{md}");
        assert!(md.contains("| random |") && md.contains("— (0/2)"), "{md}");
        assert!(!md.lines().find(|l| l.starts_with("| random")).unwrap().contains('≈'));
    }
}
