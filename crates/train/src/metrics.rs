//! Per-epoch accounting: what was selected, how noisy it was, how scores moved.

use dissect_data::{Batch, LoadStats};
use dissect_eval::{
    EpochHistogram, EpochScoreSummary, EvalReport, Histogram, NoiseDetection, Visit, noise_detection, summarize_scores,
};
use dissect_select::{AutoWarmupEnd, Selection};
use serde::{Deserialize, Serialize};

/// Seconds one step spent in each part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StepTimes {
    /// Waiting for the loader.
    pub data: f64,
    /// The scoring pass (and reference scores for the oracle strategies).
    pub scoring: f64,
    /// The selection core.
    pub selection: f64,
    /// Forward + backward on the kept rows and the optimiser step.
    pub training: f64,
}

impl StepTimes {
    /// The whole step.
    pub fn total(&self) -> f64 {
        self.data + self.scoring + self.selection + self.training
    }
}

/// One trained step as an epoch's statistics see it.
pub(crate) struct StepRecord<'a> {
    /// The batch as the loader delivered it.
    pub batch: &'a Batch,
    /// Every rank's selection, in rank order (which is batch row order).
    pub selections: &'a [Selection],
    /// The raw CLIPScore of every row, when the step had a scoring pass.
    pub raw_scores: Option<Vec<f32>>,
    /// The step's loss.
    pub loss: f32,
    /// Where the step's time went.
    pub time: StepTimes,
}

/// Raw material of one epoch, kept until the epoch ends (and in checkpoints mid-epoch).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EpochAccumulator {
    /// Optimiser steps.
    pub steps: u64,
    /// Rows delivered by the loader.
    pub samples_seen: u64,
    /// Rows kept by the selection.
    pub samples_trained: u64,
    /// Sum of the steps' losses.
    pub loss_sum: f64,
    /// Seconds waiting for the loader.
    pub time_data_s: f64,
    /// Seconds in the scoring pass.
    pub time_scoring_s: f64,
    /// Seconds in the selection core.
    pub time_selection_s: f64,
    /// Seconds in the training pass and the optimiser step.
    pub time_training_s: f64,
    /// Images of delivered batches that failed to decode (the loader reports the other
    /// skips for the whole epoch at its end; these travel with the batches, so a resumed
    /// epoch still counts the ones before the checkpoint).
    pub corrupt_images: u64,
    /// One per visit with a ground-truth flag: (noisy, selected, rank key, CLIPScore).
    pub visits: Vec<(bool, bool, Option<f32>, Option<f32>)>,
    /// CLIPScore histogram of the selected rows, once a scored row was selected.
    pub selected_hist: Option<Histogram>,
    /// Sum of the finite CLIPScores of every visit, flagged or not (the auto warm-up's
    /// signal; data without ground truth has no `visits`).
    #[serde(default)]
    pub score_sum: f64,
    /// How many visits `score_sum` adds up.
    #[serde(default)]
    pub score_count: u64,
}

impl EpochAccumulator {
    /// Counts one trained step: its rows, loss, time and every visit. The epoch's score
    /// statistics take the raw CLIPScore for every strategy (a DISSect record holds it clamped
    /// at 0), so they are the same quantity whichever strategy ran.
    pub(crate) fn add_step(&mut self, step: &StepRecord<'_>) {
        self.steps += 1;
        self.samples_seen += step.batch.len() as u64;
        self.samples_trained += step.selections.iter().map(|s| s.positions.len() as u64).sum::<u64>();
        self.loss_sum += f64::from(step.loss);
        self.time_data_s += step.time.data;
        self.time_scoring_s += step.time.scoring;
        self.time_selection_s += step.time.selection;
        self.time_training_s += step.time.training;
        self.corrupt_images += step.batch.corrupt_images;
        let visits = step.selections.iter().flat_map(|s| &s.records);
        for (row, (record, noisy)) in visits.zip(&step.batch.noisy).enumerate() {
            let score = step.raw_scores.as_ref().and_then(|r| r.get(row).copied()).unwrap_or(record.curr);
            self.add_visit(*noisy, record.selected, record.rank_key, score);
        }
    }

    /// Counts one sample visit: its ground-truth flag (if known), whether it was kept, its
    /// ranking key and its CLIPScore (NaN when the step had no scoring pass).
    pub fn add_visit(&mut self, noisy: Option<bool>, selected: bool, rank_key: f32, curr: f32) {
        let finite = |v: f32| v.is_finite().then_some(v);
        if curr.is_finite() {
            self.score_sum += f64::from(curr);
            self.score_count += 1;
        }
        if let Some(noisy) = noisy {
            self.visits.push((noisy, selected, finite(rank_key), finite(curr)));
        }
        if selected && curr.is_finite() {
            self.selected_hist.get_or_insert_with(Histogram::clip_scores).add(f64::from(curr), noisy);
        }
    }
}

/// What one epoch did: steps, rows, loss, time split, noise detection, score statistics,
/// skipped samples and (when evaluated) the held-out report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochSummary {
    /// The epoch (0-based).
    pub epoch: u32,
    /// Optimiser steps in it.
    pub steps: u64,
    /// Rows delivered by the loader.
    pub samples_seen: u64,
    /// Rows kept by the selection.
    pub samples_trained: u64,
    /// Mean of the steps' losses.
    pub mean_loss: f64,
    /// Cumulative training wall time at the end of this epoch (evaluation excluded).
    pub train_time_s: f64,
    /// Seconds waiting for the loader.
    pub time_data_s: f64,
    /// Seconds in the scoring pass.
    pub time_scoring_s: f64,
    /// Seconds in the selection core.
    pub time_selection_s: f64,
    /// Seconds in training passes and optimiser steps.
    pub time_training_s: f64,
    /// How well the selection told noisy from clean pairs (data with ground-truth flags).
    pub noise: Option<NoiseDetection>,
    /// CLIPScore statistics of the clean pairs visited (steps with a scoring pass): the raw
    /// `100 · cos` for every strategy, also for DISSect, whose selection clamps it at 0.
    pub clean_scores: Option<EpochScoreSummary>,
    /// CLIPScore statistics of the noisy pairs visited.
    pub noisy_scores: Option<EpochScoreSummary>,
    /// Mean raw CLIPScore of every pair visited (steps with a scoring pass), with or without
    /// ground-truth flags.
    #[serde(default)]
    pub mean_score: Option<f64>,
    /// Set on the epoch at whose end an `auto` warm-up ended, with why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_ended: Option<AutoWarmupEnd>,
    /// CLIPScore histogram of the kept rows.
    pub selected_histogram: Option<EpochHistogram>,
    /// What the loader delivered and skipped this epoch (decode failures of delivered batches
    /// included).
    pub load: LoadStats,
    /// The held-out evaluation after the epoch, when one was due.
    pub eval: Option<EvalReport>,
}

impl EpochSummary {
    /// Summarises an epoch's accumulator (`eval` is filled in by the caller).
    pub fn from_accumulator(epoch: u32, acc: &EpochAccumulator, train_time_s: f64, load: LoadStats) -> Self {
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
        let histogram = acc.selected_hist.clone().map(|histogram| EpochHistogram { epoch: epoch as usize, histogram });
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
            mean_score: (acc.score_count > 0).then(|| acc.score_sum / acc.score_count as f64),
            warmup_ended: None,
            selected_histogram: histogram,
            load,
            eval: None,
        }
    }
}
