#![doc = include_str!("../README.md")]
//!
//! ## Contents
//!
//! - Retrieval: [`retrieval_metrics`], [`retrieval_ranks`] — image→text / text→image Recall@K
//!   and mean/median rank (blocked, threaded).
//! - Zero-shot: [`zero_shot_accuracy`] from prompt-ensembled [`class_embeddings`].
//! - [`clip_score_matched_vs_random`]: mean CLIPScore of matched vs shifted pairs.
//! - Noise detection of a selection strategy: [`noise_detection`], [`roc_auc`].
//! - [`EvalReport`]: the held-out report; [`StrategyResult`], [`to_markdown`]: the comparison
//!   table; [`Histogram`]; report plots (PNG + SVG, bundled font): [`plot_headline_vs_time`] and
//!   the other `plot_*` functions.
#![warn(missing_docs)]

mod clipscore;
mod error;
mod features;
mod histogram;
mod noise;
mod plots;
mod report;
mod retrieval;
mod seeds;
mod table;
mod verdict;
mod zeroshot;

pub use clipscore::{ClipScoreReport, clip_score, clip_score_matched_vs_random};
pub use error::{EvalError, Result};
pub use features::{Features, dot, normalize};
pub use histogram::Histogram;
pub use noise::{NoiseDetection, Visit, noise_detection, noise_detection_per_epoch, roc_auc};
pub use plots::{
    BandCurve, EpochHistogram, EpochScoreSummary, NamedCurve, PlotFiles, ScoreTrajectories, plot_headline_vs_time,
    plot_noise_fraction, plot_score_trajectories, plot_seed_bands, plot_selected_histograms, score_trajectories,
    selected_histograms, summarize_scores,
};
pub use report::EvalReport;
pub use retrieval::{
    RetrievalMetrics, RetrievalRanks, RetrievalReport, RetrievalTargets, default_threads, retrieval_metrics,
    retrieval_ranks,
};
pub use seeds::{SeedSummary, Spread, seeds_to_markdown, summarize_seeds};
pub use table::{StrategyResult, fill_time_to_full, from_json, headline_label, time_to_reach, to_json, to_markdown};
pub use verdict::{NoiseShare, noise_notes, regime_verdicts};
pub use zeroshot::{ZeroShotReport, class_embeddings, zero_shot_accuracy, zero_shot_accuracy_any};
