//! Fused CPU kernels with their own backward nodes, for operations that Burn 0.22.1's `flex`
//! backend runs slowly (scalar, single-threaded, or decomposed into many autodiff nodes).
//! Each is a backend extension: on `flex` devices the kernel runs; on LibTorch devices (the
//! `tch` feature) LibTorch's native op runs as one node, its backward LibTorch's own (`tape`
//! records the forward on LibTorch's autograd tape; GELU calls `gelu_backward`); on any other
//! device the model takes Burn's own operation, so results there are Burn's.
//!
//! - [`gelu`]: exact GELU (erf form), vectorised and multi-threaded.
//! - [`layer_norm`]: LayerNorm forward and backward in one pass each.
//! - [`attention`] and [`self_attention`]: scaled dot-product attention, one task per batch
//!   item, its heads in turn; `self_attention` reads the heads from the packed q/k/v projection
//!   and returns that projection's gradient in one buffer.
//! - [`conv2d`] and [`batch_norm_train`]: Burn's ops, except on LibTorch devices, where each
//!   is one taped node like attention and LayerNorm there (cuDNN's convolution and BatchNorm,
//!   LibTorch's fused attention, forward and backward).
//!
//! Each is tested against Burn's own operations (forward and gradients) in its module, GELU
//! and LayerNorm against f64 references too.

// Burn marks burn-tch deprecated; its LibTorch arms stay behind the `tch` feature until Burn's
// CUDA build works offline.
#![cfg_attr(feature = "tch", allow(deprecated))]

mod attention;
mod cpu;
mod gelu;
mod native;
mod norm;
#[cfg(feature = "tch")]
mod tape;

pub use attention::{attention, self_attention};
pub use gelu::gelu;
pub use native::{batch_norm_train, conv2d};
pub use norm::layer_norm;
