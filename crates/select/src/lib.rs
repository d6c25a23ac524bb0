#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod error;
mod records;
mod selector;
pub mod simulate;
mod state;
mod strategy;
mod warmup;

pub use error::SelectError;
pub use records::{RecordFormat, RecordWriter, VisitRecord, read_records};
pub use selector::{BatchScores, Selection, Selector, top_k};
pub use state::{ScoreState, Slot, flags};
pub use strategy::{ScoreNeeds, SelectionConfig, Strategy, WarmupRows};
pub use warmup::{AUTO_WARMUP_SLOWDOWN, AutoWarmupEnd, WarmupEpochs, auto_warmup_end};
