//! Mixed precision as open_clip's `--precision amp_bf16` (torch.autocast with bfloat16): inside
//! [`with_precision`], the matrix products of the linear layers, the attention and the
//! convolutions compute in bf16 and hand back f32, while the parameters, the optimiser state,
//! LayerNorm and BatchNorm, GELU, softmax outside attention, the contrastive loss, the logits
//! and the CLIPScores the selector stores stay f32.
//!
//! The precision is a property of a forward pass, not of the weights, so, like torch.autocast,
//! it is a per-thread setting that the layers read, rather than an argument threaded through
//! every layer's `forward`.

use std::cell::Cell;
use std::str::FromStr;

use burn::nn::Linear;
use burn::tensor::{Device, FloatDType, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// The arithmetic of the forward and backward passes (open_clip's `--precision` names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    Fp32,
    /// Matrix products, attention and convolutions in bf16, the rest in f32 (autocast).
    AmpBf16,
}

impl Precision {
    /// The name open_clip gives it.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::AmpBf16 => "amp_bf16",
        }
    }

    /// Refuses a precision the device has no fast arithmetic for: bf16 needs LibTorch (`tch`,
    /// `tch:cuda`) or Burn's CUDA backend; Burn's `flex` CPU backend would emulate it slowly.
    pub fn check_device(self, device: &Device) -> Result<(), ModelError> {
        if self == Precision::AmpBf16 && device.clone().inner() == Device::flex() {
            return Err(ModelError::InvalidConfig {
                field: "precision",
                reason: "amp_bf16 needs a device with bf16 arithmetic (tch, tch:cuda or cuda); the cpu device \
                         (Burn's flex) trains in fp32"
                    .into(),
            });
        }
        Ok(())
    }
}

impl FromStr for Precision {
    type Err = ModelError;

    fn from_str(name: &str) -> Result<Self, ModelError> {
        match name.trim().to_ascii_lowercase().as_str() {
            "fp32" => Ok(Precision::Fp32),
            "amp_bf16" | "amp-bf16" => Ok(Precision::AmpBf16),
            other => Err(ModelError::InvalidConfig {
                field: "precision",
                reason: format!(
                    "unknown precision {other:?} (expected fp32 or amp_bf16; open_clip's pure bf16, fp16 and amp \
                     are not supported)"
                ),
            }),
        }
    }
}

thread_local! {
    static AUTOCAST_BF16: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with `precision` as this thread's forward precision, then restores the previous one
/// (also when `f` panics).
pub fn with_precision<R>(precision: Precision, f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            AUTOCAST_BF16.with(|cell| cell.set(self.0));
        }
    }
    let _restore = Restore(AUTOCAST_BF16.with(|cell| cell.replace(precision == Precision::AmpBf16)));
    f()
}

/// This thread's forward precision (for a thread that runs part of a pass).
pub(crate) fn current() -> Precision {
    match AUTOCAST_BF16.with(Cell::get) {
        true => Precision::AmpBf16,
        false => Precision::Fp32,
    }
}

/// `x` in the precision the matrix products take: bf16 under autocast.
pub(crate) fn lower<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    match current() {
        Precision::AmpBf16 => x.cast(FloatDType::BF16),
        Precision::Fp32 => x,
    }
}

/// A matrix product's result back in f32 (a no-op without autocast).
pub(crate) fn restore<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    match current() {
        Precision::AmpBf16 => x.cast(FloatDType::F32),
        Precision::Fp32 => x,
    }
}

/// `layer(x)` on `[n, d_in]` rows, its product in bf16 under autocast, handed back in f32.
pub(crate) fn linear(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    restore(linear_lowered(layer, x))
}

/// `layer(x)` on `[n, d_in]` rows, left in bf16 under autocast: for a result that goes on into
/// another bf16 operation (attention), which would otherwise cast it to f32 and back.
pub(crate) fn linear_lowered(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    if current() == Precision::Fp32 {
        return layer.forward(x);
    }
    let y = lower(x).matmul(lower(layer.weight.val()));
    match &layer.bias {
        Some(bias) => y + lower(bias.val()).unsqueeze_dim(0),
        None => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_flex_refuses_bf16() {
        assert_eq!("amp_bf16".parse::<Precision>().unwrap(), Precision::AmpBf16);
        assert_eq!(" FP32 ".parse::<Precision>().unwrap(), Precision::Fp32);
        let err = "fp16".parse::<Precision>().unwrap_err().to_string();
        assert!(err.contains("precision") && err.contains("amp_bf16"), "{err}");
        let err = Precision::AmpBf16.check_device(&Device::flex()).unwrap_err().to_string();
        assert!(err.contains("tch"), "{err}");
        assert!(Precision::Fp32.check_device(&Device::flex()).is_ok());
    }

    #[test]
    fn the_setting_is_scoped_to_the_call() {
        assert_eq!(current(), Precision::Fp32);
        let inside = with_precision(Precision::AmpBf16, || {
            let nested = with_precision(Precision::Fp32, current);
            (current(), nested)
        });
        assert_eq!(inside, (Precision::AmpBf16, Precision::Fp32));
        assert_eq!(current(), Precision::Fp32);
    }

    /// On LibTorch a linear layer under autocast multiplies in bf16, hands back f32 close to
    /// the f32 product, and its f32 weight takes an f32 gradient through the casts.
    #[cfg(feature = "tch")]
    #[test]
    #[allow(deprecated)] // burn-tch, behind the `tch` feature
    fn amp_linear_on_libtorch_multiplies_in_bf16_and_returns_f32() {
        use burn::nn::LinearConfig;
        use burn::tensor::{DType, Distribution};
        let device = Device::libtorch().autodiff();
        let layer = LinearConfig::new(64, 32).init(&device);
        let x = Tensor::<2>::random([8, 64], Distribution::Normal(0.0, 1.0), &device);
        let exact = layer.forward(x.clone());
        let amp = with_precision(Precision::AmpBf16, || linear(&layer, x));
        assert_eq!(amp.dtype(), DType::F32);
        let scale: f32 = exact.clone().abs().max().into_scalar();
        let diff: f32 = (exact - amp.clone()).abs().max().into_scalar();
        assert!(diff > 0.0 && diff < 0.02 * scale, "bf16 product off by {diff} (largest value {scale})");
        let grads = amp.sum().backward();
        let weight = layer.weight.val().grad(&grads).expect("the weight's gradient");
        assert_eq!(weight.dtype(), DType::F32);
    }
}
