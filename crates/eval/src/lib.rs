//! dissect-eval: evaluation metrics and reports for CLIP-style models trained with online
//! sample selection. Works on plain `f32` feature matrices and score vectors; no deep-learning
//! dependency.
//!
//! - [`retrieval`]: image→text / text→image Recall@K and mean/median rank (blocked, threaded).
//! - [`zeroshot`]: zero-shot classification from prompt-ensembled class embeddings.
//! - [`clipscore`]: mean CLIPScore of matched vs shifted pairs.
//! - [`noise`]: noise-detection metrics of a selection strategy.
//! - [`table`]: the strategy comparison table (Markdown, JSON).
//! - [`plots`]: report plots (PNG + SVG, bundled font).

pub mod clipscore;
pub mod error;
pub mod features;
pub mod noise;
pub mod plots;
pub mod retrieval;
pub mod table;
pub mod zeroshot;

pub use clipscore::{ClipScoreReport, clip_score, clip_score_matched_vs_random};
pub use error::{EvalError, Result};
pub use features::{Features, dot, normalize};
pub use noise::{NoiseDetection, Visit, noise_detection, noise_detection_per_epoch, roc_auc};
pub use plots::{
    EpochHistogram, EpochScoreSummary, NamedCurve, PlotFiles, ScoreTrajectories, plot_noise_fraction, plot_r1_vs_time,
    plot_score_trajectories, plot_selected_histograms, score_trajectories, selected_histograms, summarize_scores,
};
pub use retrieval::{
    RetrievalMetrics, RetrievalRanks, RetrievalReport, RetrievalTargets, default_threads, retrieval_metrics,
    retrieval_ranks,
};
pub use table::{FULL_STRATEGY, StrategyResult, fill_time_to_full, from_json, time_to_reach, to_json, to_markdown};
pub use zeroshot::{ZeroShotReport, class_embeddings, zero_shot_accuracy};
