//! The run's JSONL log: one typed record per step and per epoch, appended to `log.jsonl`.
//! A resumed run truncates the file back to the length its checkpoint recorded, so every
//! step appears exactly once.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::metrics::{EpochSummary, StepTimes};

/// What one optimiser step did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    /// Epoch the step belongs to.
    pub epoch: u32,
    /// Optimiser steps before this one.
    pub step: u64,
    /// Contrastive loss of the kept rows before the update.
    pub loss: f32,
    /// Learning rate of the update.
    pub lr: f64,
    /// Log temperature after the update.
    pub logit_scale: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// Rows the loader delivered.
    pub batch: usize,
    /// Rows the selection kept (over all processes of a job).
    pub selected: usize,
    /// Rows that entered the training pass.
    pub trained_rows: usize,
    /// Whether a selection drew at random because no row had a history yet.
    pub drew_at_random: bool,
    /// Where the step's time went.
    pub time: StepTimes,
}

/// One line of `log.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum LogRecord {
    /// After every step.
    Step(StepLog),
    /// After every epoch.
    Epoch {
        /// The epoch's summary (with the held-out evaluation when one ran).
        summary: Box<EpochSummary>,
    },
}

/// Appends records to a run's `log.jsonl`.
pub struct LogWriter {
    file: File,
    path: PathBuf,
}

impl LogWriter {
    /// Opens `path` for appending, cut back to `keep_len` bytes (0 for a fresh run, the
    /// checkpoint's length for a resumed one).
    pub fn open(path: &Path, keep_len: u64) -> Result<Self> {
        let file = open_truncated(path, keep_len)?;
        Ok(LogWriter { file, path: path.to_path_buf() })
    }

    /// Appends one record as a JSON line.
    pub fn write(&mut self, record: &LogRecord) -> Result<()> {
        let line = serde_json::to_string(record)
            .map_err(|e| TrainError::Checkpoint { path: self.path.clone(), message: e.to_string() })?;
        writeln!(self.file, "{line}").map_err(|e| TrainError::io(&self.path, e))
    }

    /// Flushes and returns the file's length, which a checkpoint records.
    pub fn flushed_len(&mut self) -> Result<u64> {
        self.file.flush().map_err(|e| TrainError::io(&self.path, e))?;
        Ok(self.file.metadata().map_err(|e| TrainError::io(&self.path, e))?.len())
    }
}

/// Opens `path` for appending after cutting it to `keep_len` bytes (creating it if missing).
pub(crate) fn open_truncated(path: &Path, keep_len: u64) -> Result<File> {
    let file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| TrainError::io(path, e))?;
    file.set_len(keep_len).map_err(|e| TrainError::io(path, e))?;
    Ok(file)
}

/// Reads a run's log back (for reports and tests).
pub fn read_log(path: &Path) -> Result<Vec<LogRecord>> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| TrainError::Checkpoint {
                path: path.to_path_buf(),
                message: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}
