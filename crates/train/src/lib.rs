#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod checkpoint;
mod compare;
mod config;
mod curate;
mod error;
mod evaluate;
mod export;
mod files;
mod job;
mod log;
mod metrics;
mod observer;
mod ranks;
mod reference;
mod schedule;
mod setup;
mod stop;
mod trainer;
mod zeroshot;

pub use checkpoint::{TrainerState, latest_checkpoint, load_model_config, load_trained, read_trainer_state};
pub use compare::{CompareObserver, ComparisonReport, ComparisonRows, compare, strategy_result};
pub use config::{Augmentation, OptimConfig, TrainConfig, merge_tables};
pub use curate::{CurateReport, curate, export_scores};
pub use error::{Result, TrainError};
pub use evaluate::EvalSet;
pub use export::{OPEN_CLIP_CONFIG_FILE, OPEN_CLIP_WEIGHTS_FILE, PROBE_FILE, export_open_clip};
pub use files::{CONFIG_FILE, LOG_FILE, MAPPED_SCORES_FILE, RunFiles, SUMMARY_FILE, TOKENIZER_FILE};
pub use log::{LogRecord, StepLog, read_log};
pub use metrics::{EpochAccumulator, EpochSummary, StepTimes};
pub use observer::{Observer, RunStart};
pub use ranks::SelectionScope;
pub use schedule::{LrScheduler, Schedule, cosine_lr};
pub use stop::StopSignal;
pub use trainer::{Ending, Job, Run, RunOutcome, train, train_in, train_with};
pub use zeroshot::{ZeroShotFolder, ZeroShotTemplates};
