//! LayerNorm for the `flex` CPU backend as one fused kernel with its own backward node.
//!
//! Under autodiff Burn 0.22.1 has no LayerNorm node: the op decomposes into mean, subtract,
//! variance, divide, scale and shift nodes, each a full pass over the activation forward and
//! more backward. Here the forward is one pass per row and the backward one pass per row plus
//! the column sums for the gain and bias, in parallel row chunks. Column sums are combined in
//! chunk order, so the result does not depend on thread timing. On LibTorch devices LibTorch's
//! LayerNorm runs, with its own backward from its tape; other devices use Burn's
//! `LayerNorm::forward`.

#[cfg(feature = "tch")]
use burn::backend::LibTorch;
#[cfg(feature = "tch")]
use burn::backend::libtorch::TchTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::Tensor;
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::CheckpointStrategy;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops};
use rayon::prelude::*;

use burn_flex::FlexTensor;

use super::cpu::{F32Values, f32_tensor, forward_node, register_gradients, uses_fused_ops};
#[cfg(feature = "tch")]
use super::tape::taped;
use crate::precision;

/// LayerNorm over the last dimension as one backend extension: our kernel on `flex` and
/// LibTorch's on LibTorch, each under autodiff with its own backward (ours; LibTorch's from its
/// tape, `tape.rs`).
#[backend_extension(Flex, LibTorch: cfg(feature = "tch"), Autodiff)]
pub trait FastLayerNormOps: Backend {
    /// `(x - mean) / sqrt(var + eps) · gamma + beta` per row of the last dimension.
    fn fast_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self>;
}

/// `ln.forward(x)`: the fused kernel on the CPU, Burn's LayerNorm elsewhere. The model builds
/// its LayerNorms with `LayerNormConfig`'s default epsilon, which this uses.
///
/// Under `bf16` LibTorch's LayerNorm takes the gain and shift in bf16 and accumulates the
/// row statistics in f32 inside; Burn's own LayerNorm computes in f32 and hands back bf16,
/// as open_clip's `LayerNormFp32` does.
pub fn layer_norm<const D: usize>(ln: &LayerNorm, x: Tensor<D>) -> Tensor<D> {
    match (&ln.beta, uses_fused_ops(&x)) {
        (Some(beta), true) => {
            let eps = LayerNormConfig::new(1).epsilon;
            Tensor::from_dispatch(<Dispatch as FastLayerNormOps>::fast_layer_norm(
                x.into_dispatch(),
                precision::activation(ln.gamma.val()).into_dispatch(),
                precision::activation(beta.val()).into_dispatch(),
                eps,
            ))
        }
        _ => precision::activation(ln.forward(precision::to_f32(x))),
    }
}

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 256;

/// Mean and `1 / sqrt(var + eps)` of one row (two passes, as Burn's own op).
#[inline(always)]
fn row_stats(row: &[f32], eps: f32) -> (f32, f32) {
    let d = row.len() as f32;
    let mean = row.iter().sum::<f32>() / d;
    let var = row.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / d;
    (mean, 1.0 / (var + eps).sqrt())
}

impl FastLayerNormOps for Flex {
    fn fast_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        let shape = x.layout().shape().clone();
        let (x, gamma, beta) = (F32Values::new(&x), F32Values::new(&gamma), F32Values::new(&beta));
        let (xs, gs, bs) = (x.as_slice(), gamma.as_slice(), beta.as_slice());
        let d = gs.len();
        let eps = eps as f32;
        let mut out = vec![0f32; xs.len()];
        out.par_chunks_mut(ROWS_PER_TASK * d).zip(xs.par_chunks(ROWS_PER_TASK * d)).for_each(|(out, xs)| {
            for (o, row) in out.chunks_exact_mut(d).zip(xs.chunks_exact(d)) {
                let (mean, rstd) = row_stats(row, eps);
                for (((o, &v), &g), &b) in o.iter_mut().zip(row).zip(gs).zip(bs) {
                    *o = (v - mean) * rstd * g + b;
                }
            }
        });
        f32_tensor(out, shape)
    }
}

/// Gradients of the input, the gain and the bias of [`FastLayerNormOps::fast_layer_norm`] on
/// `flex`.
fn flex_layer_norm_backward(
    x: FlexTensor,
    gamma: FlexTensor,
    grad: FlexTensor,
    eps: f64,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let shape = x.layout().shape().clone();
    let param_shape = gamma.layout().shape().clone();
    let (x, gamma, grad) = (F32Values::new(&x), F32Values::new(&gamma), F32Values::new(&grad));
    let (xs, gs, dys) = (x.as_slice(), gamma.as_slice(), grad.as_slice());
    let d = gs.len();
    let eps = eps as f32;
    let mut dx = vec![0f32; xs.len()];
    let chunk = ROWS_PER_TASK * d;
    // Per chunk: dx rows, and that chunk's partial column sums for the gain and bias.
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(chunk)
        .zip(xs.par_chunks(chunk))
        .zip(dys.par_chunks(chunk))
        .map(|((dx, xs), dys)| {
            let (mut dgamma, mut dbeta) = (vec![0f32; d], vec![0f32; d]);
            for ((dx, row), dy) in dx.chunks_exact_mut(d).zip(xs.chunks_exact(d)).zip(dys.chunks_exact(d)) {
                let (mean, rstd) = row_stats(row, eps);
                // dx = rstd · (g - mean(g) - x̂ · mean(g · x̂)) with g = dy · gamma.
                let (mut sum_g, mut sum_gx) = (0f32, 0f32);
                for (((&v, &dy), &gm), (dg, db)) in
                    row.iter().zip(dy).zip(gs).zip(dgamma.iter_mut().zip(dbeta.iter_mut()))
                {
                    let xhat = (v - mean) * rstd;
                    let g = dy * gm;
                    sum_g += g;
                    sum_gx += g * xhat;
                    *dg += dy * xhat;
                    *db += dy;
                }
                let (mean_g, mean_gx) = (sum_g / d as f32, sum_gx / d as f32);
                for (((o, &v), &dy), &gm) in dx.iter_mut().zip(row).zip(dy).zip(gs) {
                    let xhat = (v - mean) * rstd;
                    *o = rstd * (dy * gm - mean_g - xhat * mean_gx);
                }
            }
            (dgamma, dbeta)
        })
        .collect();
    let (mut dgamma, mut dbeta) = (vec![0f32; d], vec![0f32; d]);
    for (pg, pb) in &partials {
        for (acc, v) in dgamma.iter_mut().zip(pg) {
            *acc += v;
        }
        for (acc, v) in dbeta.iter_mut().zip(pb) {
            *acc += v;
        }
    }
    (f32_tensor(dx, shape), f32_tensor(dgamma, param_shape.clone()), f32_tensor(dbeta, param_shape))
}

/// On LibTorch: its native LayerNorm.
#[cfg(feature = "tch")]
impl FastLayerNormOps for LibTorch {
    fn fast_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        TchTensor::new(libtorch_layer_norm(&x.tensor, &gamma.tensor, &beta.tensor, eps))
    }
}

#[cfg(feature = "tch")]
fn libtorch_layer_norm(x: &tch::Tensor, gamma: &tch::Tensor, beta: &tch::Tensor, eps: f64) -> tch::Tensor {
    let d = gamma.size()[0];
    x.layer_norm([d], Some(gamma), Some(beta), eps, false)
}

/// Under autodiff on LibTorch: one node recorded on LibTorch's tape, whose backward is
/// LibTorch's LayerNorm backward on the row statistics its forward saved.
#[cfg(feature = "tch")]
impl<C: CheckpointStrategy> FastLayerNormOps for Autodiff<LibTorch, C> {
    fn fast_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        taped::<C, _, 3>([x, gamma, beta], |[x, gamma, beta]| (libtorch_layer_norm(x, gamma, beta, eps), ())).0
    }
}

/// Under autodiff on `flex`: one node whose backward is our kernel's.
impl<C: CheckpointStrategy> FastLayerNormOps for Autodiff<Flex, C> {
    fn fast_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct FastLayerNorm;

        impl Backward<Flex, 3> for FastLayerNorm {
            // Input, gain and epsilon; the row statistics are recomputed (one cheap pass).
            type State = (FlexTensor, FlexTensor, f64);

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                register_gradients::<Flex, _, 3>(ops, grads, |(x, gamma, eps), grad| {
                    let (dx, dgamma, dbeta) = flex_layer_norm_backward(x, gamma, grad, eps);
                    [dx, dgamma, dbeta]
                });
            }
        }

        let forward = |[x, gamma, beta]: [FlexTensor; 3]| (Flex::fast_layer_norm(x, gamma, beta, eps), ());
        forward_node::<Flex, C, _, _, 3>(FastLayerNorm, [x, gamma, beta], forward, |[x, gamma, _]| (x, gamma, eps)).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::tensor::{Device, TensorData};

    fn values(n: usize, seed: u32) -> Vec<f32> {
        // A fixed, uneven spread of values (no RNG needed).
        (0..n).map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 2001) as f32 / 250.0 - 4.0).collect()
    }

    fn norm(device: &Device, d: usize) -> LayerNorm {
        let mut ln = LayerNormConfig::new(d).init(device);
        ln.gamma = Param::from_tensor(Tensor::from_data(TensorData::new(values(d, 7), [d]), device));
        ln.beta = Some(Param::from_tensor(Tensor::from_data(TensorData::new(values(d, 9), [d]), device)));
        ln
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn fused_layer_norm_matches_burn_forward_and_backward() {
        matches_burn_forward_and_backward(Device::flex());
    }

    /// LibTorch's LayerNorm, its backward from LibTorch's tape.
    #[cfg(feature = "tch")]
    #[test]
    #[allow(deprecated)] // burn-tch, behind the `tch` feature
    fn libtorch_layer_norm_matches_burn_forward_and_backward() {
        matches_burn_forward_and_backward(Device::libtorch());
    }

    fn matches_burn_forward_and_backward(cpu: Device) {
        let (rows, d) = (700, 48); // more rows than one parallel task
        let x_values = values(rows * d, 3);
        let w_values = values(rows * d, 5);
        let train = cpu.clone().autodiff();

        let x = Tensor::<2>::from_data(TensorData::new(x_values.clone(), [rows, d]), &cpu);
        let ln = norm(&cpu, d);
        let ours: Vec<f32> = layer_norm(&ln, x.clone()).try_into_vec_as().unwrap();
        let burns: Vec<f32> = ln.forward(x).try_into_vec_as().unwrap();
        assert!(max_diff(&ours, &burns) < 1e-5, "forward differs by {}", max_diff(&ours, &burns));

        // Gradients of sum(w · ln(x)) with respect to x, gamma and beta.
        let grads_of = |fused: bool| -> [Vec<f32>; 3] {
            let ln = norm(&train, d);
            let x = Tensor::<2>::from_data(TensorData::new(x_values.clone(), [rows, d]), &train).require_grad();
            let w = Tensor::<2>::from_data(TensorData::new(w_values.clone(), [rows, d]), &train);
            let y = if fused { layer_norm(&ln, x.clone()) } else { ln.forward(x.clone()) };
            let grads = (y * w).sum().backward();
            let beta = ln.beta.as_ref().expect("beta").val();
            [
                x.grad(&grads).expect("dx").try_into_vec_as().unwrap(),
                ln.gamma.val().grad(&grads).expect("dgamma").try_into_vec_as().unwrap(),
                beta.grad(&grads).expect("dbeta").try_into_vec_as().unwrap(),
            ]
        };
        let (ours, burns) = (grads_of(true), grads_of(false));
        for (name, a, b, tol) in [
            ("x", &ours[0], &burns[0], 1e-4),
            ("gamma", &ours[1], &burns[1], 1e-4),
            ("beta", &ours[2], &burns[2], 1e-4),
        ] {
            // Gain and bias gradients are sums over 700 rows of values up to ~16: compare
            // relative to their size.
            let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            let diff = max_diff(a, b) / scale;
            assert!(diff < tol, "d{name} differs by {diff} (relative)");
        }
    }
}
