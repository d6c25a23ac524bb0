//! dissect-train
