//! A request to stop a run cleanly, e.g. from a Ctrl-C handler the caller installs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Shared flag checked at every step boundary: once set, the run writes a checkpoint and
/// returns (its outcome says it was interrupted). Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<AtomicBool>);

impl StopSignal {
    /// A signal that nobody has raised yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to stop at the next step boundary.
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was requested.
    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
