//! Per-epoch accounting: what was selected, how noisy it was, how scores moved.

use dissect_eval::{EpochHistogram, EpochScoreSummary, NoiseDetection, Visit, noise_detection, summarize_scores};
use serde::{Deserialize, Serialize};

/// Fixed CLIPScore histogram bins shared by all epochs and runs, so panels compare.
pub const HIST_LO: f64 = -20.0;
pub const HIST_HI: f64 = 100.0;
pub const HIST_BINS: usize = 24;

/// Raw material of one epoch, kept until the epoch ends (and in checkpoints mid-epoch).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EpochAccumulator {
    pub steps: u64,
    pub samples_seen: u64,
    pub samples_trained: u64,
    pub loss_sum: f64,
    pub time_data_s: f64,
    pub time_scoring_s: f64,
    pub time_selection_s: f64,
    pub time_training_s: f64,
    /// One per visit with a ground-truth flag: (noisy, selected, rank key, CLIPScore).
    pub visits: Vec<(bool, bool, Option<f32>, Option<f32>)>,
    /// CLIPScore histogram of the selected rows: (all, noisy) per bin.
    pub selected_hist: Vec<(u64, u64)>,
}

impl EpochAccumulator {
    pub fn add_visit(&mut self, noisy: Option<bool>, selected: bool, rank_key: f32, curr: f32) {
        let finite = |v: f32| v.is_finite().then_some(v);
        if let Some(noisy) = noisy {
            self.visits.push((noisy, selected, finite(rank_key), finite(curr)));
        }
        if selected && curr.is_finite() {
            if self.selected_hist.is_empty() {
                self.selected_hist = vec![(0, 0); HIST_BINS];
            }
            let width = (HIST_HI - HIST_LO) / HIST_BINS as f64;
            let bin = (((f64::from(curr) - HIST_LO) / width).floor().max(0.0) as usize).min(HIST_BINS - 1);
            self.selected_hist[bin].0 += 1;
            self.selected_hist[bin].1 += u64::from(noisy == Some(true));
        }
    }
}

/// Held-out metrics after an epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub tr_r1: f64,
    pub tr_r5: f64,
    pub tr_r10: f64,
    pub tr_mean_rank: f64,
    pub tr_median_rank: f64,
    pub ir_r1: f64,
    pub ir_r5: f64,
    pub ir_r10: f64,
    pub ir_mean_rank: f64,
    pub ir_median_rank: f64,
    pub zero_shot_top1: Option<f64>,
    pub zero_shot_top5: Option<f64>,
    pub clipscore_matched: f64,
    pub clipscore_random: f64,
    pub images: usize,
    pub texts: usize,
}

impl EvalReport {
    pub fn mean_r1(&self) -> f64 {
        (self.tr_r1 + self.ir_r1) / 2.0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochSummary {
    pub epoch: u32,
    pub steps: u64,
    pub samples_seen: u64,
    pub samples_trained: u64,
    pub mean_loss: f64,
    /// Cumulative training wall time at the end of this epoch (evaluation excluded).
    pub train_time_s: f64,
    pub time_data_s: f64,
    pub time_scoring_s: f64,
    pub time_selection_s: f64,
    pub time_training_s: f64,
    pub noise: Option<NoiseDetection>,
    pub clean_scores: Option<EpochScoreSummary>,
    pub noisy_scores: Option<EpochScoreSummary>,
    pub selected_histogram: Option<EpochHistogram>,
    pub skipped_samples: u64,
    pub eval: Option<EvalReport>,
}

impl EpochSummary {
    pub fn from_accumulator(epoch: u32, acc: &EpochAccumulator, train_time_s: f64, skipped_samples: u64) -> Self {
        let visits: Vec<Visit> = acc
            .visits
            .iter()
            .map(|&(noisy, selected, key, _)| Visit {
                epoch: epoch as usize,
                noisy,
                selected,
                score: key.map(f64::from),
            })
            .collect();
        let noise = (!visits.is_empty()).then(|| noise_detection(&visits, Some(epoch as usize)));
        let scores = |want_noisy: bool| -> Vec<f64> {
            acc.visits.iter().filter(|v| v.0 == want_noisy).filter_map(|v| v.3.map(f64::from)).collect()
        };
        let histogram = (!acc.selected_hist.is_empty()).then(|| {
            let width = (HIST_HI - HIST_LO) / HIST_BINS as f64;
            EpochHistogram {
                epoch: epoch as usize,
                edges: (0..=HIST_BINS).map(|i| HIST_LO + width * i as f64).collect(),
                counts: acc.selected_hist.iter().map(|b| b.0).collect(),
                noisy: Some(acc.selected_hist.iter().map(|b| b.1).collect()),
            }
        });
        EpochSummary {
            epoch,
            steps: acc.steps,
            samples_seen: acc.samples_seen,
            samples_trained: acc.samples_trained,
            mean_loss: acc.loss_sum / acc.steps.max(1) as f64,
            train_time_s,
            time_data_s: acc.time_data_s,
            time_scoring_s: acc.time_scoring_s,
            time_selection_s: acc.time_selection_s,
            time_training_s: acc.time_training_s,
            noise,
            clean_scores: summarize_scores(epoch as usize, &scores(false)),
            noisy_scores: summarize_scores(epoch as usize, &scores(true)),
            selected_histogram: histogram,
            skipped_samples,
            eval: None,
        }
    }
}
