//! Fused CPU kernels with their own backward nodes, for operations that Burn 0.22.1's `flex`
//! backend runs slowly (scalar, single-threaded, or decomposed into many autodiff nodes).
//! Each is a backend extension: on `flex` devices the kernel runs; on LibTorch devices (the
//! `tch` feature) LibTorch's native forward runs under the same single backward node; on any
//! other device the model takes Burn's own operation, so results there are Burn's.
//!
//! - [`gelu`]: exact GELU (erf form), vectorised and multi-threaded.
//! - [`layer_norm`]: LayerNorm forward and backward in one pass each.
//!
//! Both are tested against f64 references and against Burn's own operations (forward and
//! gradients) in their modules.

// Burn marks burn-tch deprecated; its LibTorch arms stay behind the `tch` feature until Burn's
// CUDA build works offline.
#![cfg_attr(feature = "tch", allow(deprecated))]

mod cpu;
mod gelu;
mod norm;

pub use gelu::gelu;
pub use norm::layer_norm;
