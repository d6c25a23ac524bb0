//! How a run reports progress without printing: the caller passes an [`Observer`] and
//! decides what to show (the CLI draws a progress bar; a library user may log or ignore it).

use std::path::Path;

use dissect_select::Strategy;

use crate::log::StepLog;
use crate::metrics::EpochSummary;

/// Where a run starts.
#[derive(Debug, Clone)]
pub struct RunStart<'a> {
    /// The run folder.
    pub run_dir: &'a Path,
    /// The strategy being trained.
    pub strategy: Strategy,
    /// Steps already taken (non-zero when resumed).
    pub step: u64,
    /// Steps the whole run will take (`max_steps` aside).
    pub total_steps: u64,
    /// Whether the run continues from a checkpoint.
    pub resumed: bool,
}

/// Callbacks of a training run, each with a default that does nothing.
pub trait Observer {
    /// A setting that is valid but probably not what was meant (before the run starts).
    fn warning(&mut self, _message: &str) {}
    /// Once, after the run is set up and before the first step.
    fn run_started(&mut self, _start: &RunStart<'_>) {}
    /// After every optimiser step.
    fn step_done(&mut self, _step: &StepLog) {}
    /// Before the held-out evaluation at an epoch end (which can take a while).
    fn evaluating(&mut self, _epoch: u32, _pairs: usize) {}
    /// After every epoch, with its summary.
    fn epoch_done(&mut self, _summary: &EpochSummary) {}
    /// After a checkpoint is complete on disk.
    fn checkpoint_written(&mut self, _dir: &Path, _step: u64) {}
    /// When the run ends (finished, stopped by `max_steps`, or interrupted).
    fn run_ended(&mut self) {}
}

/// Reports nothing.
impl Observer for () {}
