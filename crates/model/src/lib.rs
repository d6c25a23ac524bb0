//! dissect-model (in progress)
