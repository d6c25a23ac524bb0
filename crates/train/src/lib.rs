//! The dissect trainer: CLIP training on Burn with online sample selection in the loop,
//! atomic resumable checkpoints, JSONL logs, per-visit records and held-out evaluation.

pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod error;
pub mod evaluate;
pub mod metrics;
pub mod schedule;
pub mod trainer;

pub use compare::{ComparisonReport, compare, strategy_result};
pub use config::TrainConfig;
pub use error::{Result, TrainError};
pub use evaluate::EvalSet;
pub use metrics::{EpochSummary, EvalReport};
pub use trainer::{MAPPED_SCORES_FILE, RunOutcome, load_trained, train};
