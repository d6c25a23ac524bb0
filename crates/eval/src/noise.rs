//! Noise-detection metrics from per-visit selection records.
//!
//! A "visit" is one sample seen in one training step. With ground-truth noisy flags we measure
//! how much noise the selected rows keep, how well "not selected" flags noisy pairs, and how
//! well the strategy's ranking score separates clean from noisy pairs (ROC-AUC).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One sample visit: ground-truth flag, whether it was selected, and the strategy's ranking
/// score (higher = kept first), if the strategy ranks at all.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Visit {
    /// Epoch of the visit.
    pub epoch: usize,
    /// Ground truth: the pair is noisy.
    pub noisy: bool,
    /// The row was kept for training.
    pub selected: bool,
    /// The ranking score, `None` when the strategy did not rank.
    pub score: Option<f64>,
}

/// Noise-detection metrics over a set of visits. Fractions are in 0–1; `None` where the
/// denominator is empty.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NoiseDetection {
    /// The epoch, or `None` for an aggregate over several epochs.
    pub epoch: Option<usize>,
    /// Visits counted.
    pub visits: usize,
    /// Selected visits.
    pub selected: usize,
    /// Noisy visits.
    pub noisy: usize,
    /// Noisy visits among selected visits.
    pub selected_noise_fraction: Option<f64>,
    /// Noisy visits among all visits (the data's noise rate as seen by the trainer).
    pub data_noise_fraction: Option<f64>,
    /// "Not selected" as a noise detector: TP = noisy and not selected.
    pub precision: Option<f64>,
    /// Share of noisy visits that were not selected.
    pub recall: Option<f64>,
    /// Harmonic mean of `precision` and `recall` (0 when both are 0).
    pub f1: Option<f64>,
    /// ROC-AUC of the ranking score as a detector of CLEAN pairs, over visits with a finite
    /// score; `None` without both clean and noisy scored visits.
    pub clean_auc: Option<f64>,
}

fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Metrics over all `visits` (`epoch` is copied into the result).
pub fn noise_detection(visits: &[Visit], epoch: Option<usize>) -> NoiseDetection {
    let selected = visits.iter().filter(|v| v.selected).count();
    let noisy = visits.iter().filter(|v| v.noisy).count();
    let sel_noisy = visits.iter().filter(|v| v.selected && v.noisy).count();
    let dropped = visits.len() - selected;
    let tp = noisy - sel_noisy;
    let precision = ratio(tp, dropped);
    let recall = ratio(tp, noisy);
    let f1 = match (precision, recall) {
        (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
        (Some(_), Some(_)) => Some(0.0),
        _ => None,
    };
    let scored: Vec<(f64, bool)> =
        visits.iter().filter_map(|v| v.score.filter(|s| s.is_finite()).map(|s| (s, !v.noisy))).collect();
    NoiseDetection {
        epoch,
        visits: visits.len(),
        selected,
        noisy,
        selected_noise_fraction: ratio(sel_noisy, selected),
        data_noise_fraction: ratio(noisy, visits.len()),
        precision,
        recall,
        f1,
        clean_auc: roc_auc(&scored),
    }
}

/// Metrics per epoch, in ascending epoch order.
pub fn noise_detection_per_epoch(visits: &[Visit]) -> Vec<NoiseDetection> {
    let mut by_epoch: BTreeMap<usize, Vec<Visit>> = BTreeMap::new();
    for v in visits {
        by_epoch.entry(v.epoch).or_default().push(*v);
    }
    by_epoch.into_iter().map(|(e, vs)| noise_detection(&vs, Some(e))).collect()
}

/// ROC-AUC of `score` for detecting `positive` rows, via the Mann–Whitney rank statistic with
/// average ranks for ties (a positive tying a negative counts ½). `None` without both classes.
pub fn roc_auc(samples: &[(f64, bool)]) -> Option<f64> {
    let pos = samples.iter().filter(|s| s.1).count();
    let neg = samples.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut sorted: Vec<(f64, bool)> = samples.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum_pos = 0.0f64;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            j += 1;
        }
        // Ranks i+1..=j share their average.
        let avg = (i + 1 + j) as f64 / 2.0;
        rank_sum_pos += avg * sorted[i..j].iter().filter(|s| s.1).count() as f64;
        i = j;
    }
    let p = pos as f64;
    Some((rank_sum_pos - p * (p + 1.0) / 2.0) / (p * neg as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(epoch: usize, noisy: bool, selected: bool, score: f64) -> Visit {
        Visit { epoch, noisy, selected, score: Some(score) }
    }

    #[test]
    fn auc_hand_computed_with_ties() {
        // Perfect separation and its reverse.
        assert_eq!(roc_auc(&[(1.0, false), (2.0, true)]), Some(1.0));
        assert_eq!(roc_auc(&[(2.0, false), (1.0, true)]), Some(0.0));
        // All tied → 0.5.
        assert_eq!(roc_auc(&[(1.0, false), (1.0, true), (1.0, true)]), Some(0.5));
        // pos {3, 2}, neg {2, 1}: pairs (3>2)=1, (3>1)=1, (2=2)=.5, (2>1)=1 → 3.5/4.
        assert_eq!(roc_auc(&[(3.0, true), (2.0, true), (2.0, false), (1.0, false)]), Some(0.875));
        assert_eq!(roc_auc(&[(1.0, true)]), None);
    }

    #[test]
    fn detection_hand_computed() {
        // Epoch 0: 4 clean (3 selected), 2 noisy (1 selected).
        let mut vs = vec![
            v(0, false, true, 9.0),
            v(0, false, true, 8.0),
            v(0, false, true, 5.0),
            v(0, false, false, 2.0),
            v(0, true, true, 5.0),
            v(0, true, false, 1.0),
        ];
        // Epoch 1: nothing selected, no scores.
        vs.push(Visit { epoch: 1, noisy: true, selected: false, score: None });
        let per = noise_detection_per_epoch(&vs);
        assert_eq!(per.len(), 2);
        let e0 = per[0];
        assert_eq!(e0.epoch, Some(0));
        assert_eq!(e0.selected_noise_fraction, Some(0.25));
        assert_eq!(e0.data_noise_fraction, Some(2.0 / 6.0));
        // dropped = {clean 2.0, noisy 1.0}: TP 1 → precision 1/2, recall 1/2, F1 1/2.
        assert_eq!((e0.precision, e0.recall, e0.f1), (Some(0.5), Some(0.5), Some(0.5)));
        // clean {9,8,5,2} vs noisy {5,1}: vs 5 → 1+1+.5+0 = 2.5, vs 1 → 4 → 6.5/8.
        assert_eq!(e0.clean_auc, Some(6.5 / 8.0));
        let e1 = per[1];
        assert_eq!(e1.selected_noise_fraction, None);
        assert_eq!((e1.precision, e1.recall), (Some(1.0), Some(1.0)));
        assert_eq!(e1.clean_auc, None);
        let all = noise_detection(&vs, None);
        assert_eq!(all.visits, 7);
        assert_eq!(all.noisy, 3);
    }
}
