//! What a comparison says about DISSect, in words: the verdict lines `dissect demo` prints per
//! regime and the notes `compare` prints under its table, both measured from the table itself.

use dissect_select::Strategy;

use crate::seeds::{SeedSummary, Spread};

/// The noisy share of one run's (or, over seeds, one strategy's mean) selected rows next to
/// the data's, as fractions (0–1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseShare {
    /// The strategy.
    pub strategy: Strategy,
    /// Noisy share of the rows it selected after warm-up.
    pub selected: Option<f64>,
    /// Noisy share of the rows it visited.
    pub data: Option<f64>,
}

/// One line per DISSect run that kept more noisy rows than the data holds: the sign that the
/// model was still learning the clean pairs (docs/when-dissect-works.md), worth saying next to
/// the table rather than leaving the reader to wonder.
pub fn noise_notes(shares: &[NoiseShare]) -> Vec<String> {
    shares
        .iter()
        .filter(|share| share.strategy.is_dissect())
        .filter_map(|share| match (share.selected, share.data) {
            (Some(kept), Some(data)) if kept > data => Some(format!(
                "note: {} kept {:.1}% noisy rows after warm-up, more than the data's {:.1}%: its history \
                 gap favours the pairs learned slowest while the model is still learning the clean ones \
                 (see docs/when-dissect-works.md)",
                share.strategy.name(),
                100.0 * kept,
                100.0 * data
            )),
            _ => None,
        })
        .collect()
}

/// For each DISSect variant in one regime, in words: whether it kept noisy rows out (against
/// the data's share and the best filter's), where its headline metric lies against `full`'s
/// and `random`'s, and in how many seeds it reached `full`'s final headline. Empty without a
/// `full` and a `random` row.
pub fn regime_verdicts(regime: &str, summaries: &[SeedSummary]) -> Vec<String> {
    let find = |strategy: Strategy| summaries.iter().find(|s| s.strategy == strategy);
    let (Some(full), Some(random)) = (find(Strategy::Full), find(Strategy::Random)) else { return Vec::new() };
    let data_noise = full.selected_noise.map(|n| n.mean);
    let best_filter = summaries
        .iter()
        .filter(|s| !s.strategy.is_dissect() && s.strategy != Strategy::Full)
        .filter_map(|s| Some((s.strategy.name(), s.selected_noise?)))
        .min_by(|a, b| a.1.mean.total_cmp(&b.1.mean));
    summaries
        .iter()
        .filter(|s| s.strategy.is_dissect())
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
            let (headline, reached) = (headline_against(s, full, random), reached_full(s, full));
            format!("{regime}: {} {noise}; {headline}; {reached}.", s.strategy.name())
        })
        .collect()
}

/// Where a strategy's headline metric lies against `full`'s and `random`'s.
fn headline_against(s: &SeedSummary, full: &SeedSummary, random: &SeedSummary) -> String {
    match (s.headline_value, full.headline_value, random.headline_value) {
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
    }
}

/// In how many seeds, and after how much training, a strategy reached `full`'s final headline.
fn reached_full(s: &SeedSummary, full: &SeedSummary) -> String {
    match s.time_to_full_s {
        Some(t) if s.reached_full > 0 => format!(
            "it reached full's final {} in {}/{} seeds, after {} s of training (full: {})",
            s.headline,
            s.reached_full,
            s.seeds,
            pm(&t, ""),
            full.wall_time_s.map_or("?".into(), |w| format!("{} s", pm(&w, "")))
        ),
        _ => format!("it never reached full's final {} ({}/{} seeds)", s.headline, s.reached_full, s.seeds),
    }
}

/// Points of selected-noise share within which a run counts as keeping the data's share: the
/// sampling error of an epoch's share is about 1.5 points at the demo's size, so smaller
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
    fn noise_notes_name_only_dissect_runs_above_the_data_rate() {
        let share = |strategy, selected| NoiseShare { strategy, selected, data: Some(0.4) };
        let shares = [
            share(Strategy::BigLoss, Some(0.65)),
            share(Strategy::DissectWarmup, Some(0.2)),
            share(Strategy::DissectMomentum, Some(0.621)),
            share(Strategy::DissectMomentum, None),
        ];
        let lines = noise_notes(&shares);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("dissect-momentum kept 62.1% noisy rows") && lines[0].contains("40.0%"));
    }

    #[test]
    fn ranges_decide_above_below_and_within() {
        let spread = |min: f64, max: f64| Spread { n: 2, mean: (min + max) / 2.0, sd: 0.0, min, max };
        assert_eq!(relation(&spread(3.0, 4.0), &spread(1.0, 2.0)), "above");
        assert_eq!(relation(&spread(1.0, 2.0), &spread(3.0, 4.0)), "below");
        assert_eq!(relation(&spread(1.0, 3.0), &spread(2.0, 4.0)), "within the seed spread of");
        assert_eq!(noise_effect(&spread(10.0, 20.0), 40.0), "keeps noisy rows out");
        assert_eq!(noise_effect(&spread(45.0, 60.0), 40.0), "lets more noisy rows in");
        assert_eq!(noise_effect(&spread(39.0, 41.0), 40.0), "keeps about the data's share of noisy rows");
    }
}
