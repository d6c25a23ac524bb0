//! dissect-eval (in progress)
