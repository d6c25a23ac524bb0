//! Pieces shared by the fused CPU kernels (`gelu.rs`, `norm.rs`): which tensors take them, and
//! moving `flex` tensors to and from plain `f32` slices.

use burn::tensor::{DType, Device, Shape, Tensor, TensorData};
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

#[cfg(feature = "tch")]
fn on_libtorch<const D: usize>(x: &Tensor<D>) -> bool {
    matches!(x.device().inner().as_dispatch(), burn::backend::DispatchDevice::LibTorch(_)) && x.dtype() == DType::F32
}

#[cfg(not(feature = "tch"))]
fn on_libtorch<const D: usize>(_x: &Tensor<D>) -> bool {
    false
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
