//! Pieces shared by the kernels (`gelu.rs`, `norm.rs`, `attention.rs`, `native.rs`): which
//! tensors take them, moving `flex` tensors to and from plain `f32` slices, an `exp` that
//! vectorises, and the forward and backward steps of a node with its own backward.

use burn::backend::Backend;
use burn::backend::tensor::FloatTensor;
use burn::tensor::{DType, Device, Shape, Tensor, TensorData};
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::strategy::CheckpointStrategy;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::FlexTensor;

/// Whether `x` takes the fused CPU kernels: an `f32` tensor on `flex`, with or without autodiff.
/// Everything else (CUDA, other dtypes) uses Burn's own ops.
pub(crate) fn uses_cpu_kernels<const D: usize>(x: &Tensor<D>) -> bool {
    x.device().inner() == Device::flex() && x.dtype() == DType::F32
}

/// Whether `x` takes the fused operations with their own backward nodes: on `flex` our CPU
/// kernels, on LibTorch (the `tch` feature) LibTorch's native LayerNorm and GELU.
pub(crate) fn uses_fused_ops<const D: usize>(x: &Tensor<D>) -> bool {
    uses_cpu_kernels(x) || on_libtorch(x)
}

/// Whether `x` is an f32 or (under `amp_bf16`) a bf16 tensor on LibTorch: its native ops take
/// either, and give gradients of the same dtype.
#[cfg(feature = "tch")]
pub(crate) fn on_libtorch<const D: usize>(x: &Tensor<D>) -> bool {
    matches!(x.device().inner().as_dispatch(), burn::backend::DispatchDevice::LibTorch(_))
        && matches!(x.dtype(), DType::F32 | DType::BF16)
}

#[cfg(not(feature = "tch"))]
pub(crate) fn on_libtorch<const D: usize>(_x: &Tensor<D>) -> bool {
    false
}

/// The forward step of a node with `N` inputs and its own backward (`node`), in Burn's
/// protocol: the inputs' guards prepare the node; `forward` computes on the inner tensors and
/// returns the output that carries gradients and anything else it computes (BatchNorm's
/// statistics leave as constants); when an input tracks a gradient, `state` picks from the
/// inputs what the backward keeps.
pub(crate) fn forward_node<B, C, T, E, const N: usize>(
    node: T,
    inputs: [FloatTensor<Autodiff<B, C>>; N],
    forward: impl FnOnce([FloatTensor<B>; N]) -> (FloatTensor<B>, E),
    state: impl FnOnce([FloatTensor<B>; N]) -> T::State,
) -> (FloatTensor<Autodiff<B, C>>, E)
where
    B: Backend,
    C: CheckpointStrategy,
    T: Backward<B, N>,
{
    // A clone of an inner tensor shares its buffer; the guards keep the inputs' nodes alive
    // until the output is registered.
    let primitives = inputs.each_ref().map(|t| t.primitive().clone());
    let guards = inputs.map(|t| t.into_parts().1);
    match node.prepare::<C>(guards).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (output, extra) = forward(primitives.clone());
            (prep.finish(state(primitives), output), extra)
        }
        OpsKind::UnTracked(prep) => {
            let (output, extra) = forward(primitives);
            (prep.finish(output), extra)
        }
    }
}

/// The backward step of a node with `N` inputs whose gradients one function computes together
/// from the node's state and its output's gradient (Burn's `unary` and `binary` compute each
/// input's gradient on its own). Each gradient is kept only for an input that tracks one.
pub(crate) fn register_gradients<B: Backend, S, const N: usize>(
    ops: Ops<S, N>,
    grads: &mut Gradients,
    gradients: impl FnOnce(S, FloatTensor<B>) -> [FloatTensor<B>; N],
) {
    let grad = grads.consume::<B>(&ops.node);
    for (parent, gradient) in ops.parents.into_iter().zip(gradients(ops.state, grad)) {
        if let Some(parent) = parent {
            grads.register::<B>(parent.id, gradient);
        }
    }
}

/// The elements of an `f32` `flex` tensor in row-major order, copied only if the tensor is not
/// contiguous already.
pub(crate) struct F32Values {
    tensor: FlexTensor,
    offset: usize,
    len: usize,
}

impl F32Values {
    pub(crate) fn new(tensor: &FlexTensor) -> Self {
        let tensor = tensor.to_contiguous();
        let (offset, len) = (tensor.layout().start_offset(), tensor.layout().num_elements());
        Self { tensor, offset, len }
    }

    pub(crate) fn as_slice(&self) -> &[f32] {
        &self.tensor.storage()[self.offset..][..self.len]
    }
}

/// A `flex` tensor owning `values` with `shape`.
pub(crate) fn f32_tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// `exp(t)` for `t ≤ 0`: `2^n · e^r` with `n = round(t / ln 2)`, `|r| ≤ ln 2 / 2` split off in
/// two parts (Cody–Waite) and a degree-7 Taylor polynomial for `e^r` (relative error < 2e-7).
#[inline(always)]
pub(crate) fn exp_nonpositive_f32(t: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Below this e^t is under f32's smallest normal; the result is 0 either way.
    let t = t.max(-87.0);
    // Round-to-nearest by the 1.5·2^23 trick (no libm call, so the loop vectorises).
    const ROUND: f32 = 12_582_912.0;
    let n = (t * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = (t - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 5040.0_f32;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // 2^n by building the exponent bits; n ≥ -126 here, so the result stays normal.
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_over_its_range() {
        for i in 0..=90_000 {
            let t = -(i as f32) / 1000.0;
            let (fast, exact) = (exp_nonpositive_f32(t), t.exp());
            assert!((fast - exact).abs() <= 3e-7 * exact + 1e-37, "exp({t}) = {fast}, expected {exact}");
        }
        // Far below the clamp the result is e^-87 = 1.65e-38, next to f32's smallest normal.
        let far = exp_nonpositive_f32(-1e4);
        assert!((0.0..1.7e-38).contains(&far), "exp(-1e4) = {far}");
    }
}
