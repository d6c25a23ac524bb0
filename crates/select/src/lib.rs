//! The online selection core of dissect: which rows of a batch a contrastive step trains on.
//!
//! It implements every strategy of DESIGN.md section 2 on plain slices — dataset indices,
//! CLIPScores, per-sample losses — so any trainer can use it; it has no deep-learning
//! dependency. Per-sample history lives in a dense [`ScoreState`] keyed by stable dataset
//! index, which can be saved with a checkpoint or memory-mapped for huge datasets.

mod error;
mod records;
mod selector;
pub mod simulate;
mod state;
mod strategy;

pub use error::SelectError;
pub use records::{RecordFormat, RecordWriter, VisitRecord, read_records};
pub use selector::{BatchScores, Selection, Selector, top_k};
pub use state::{ScoreState, Slot, flags};
pub use strategy::{ScoreNeeds, SelectionConfig, Strategy, WarmupRows};
