//! The arithmetic of the passes, by open_clip's `--precision` names:
//!
//! - `amp_bf16` (torch.autocast with bfloat16, open_clip_train's default): inside
//!   [`with_precision`], the matrix products of the linear layers, the attention and the
//!   convolutions compute in bf16 and hand back f32, while LayerNorm and BatchNorm, GELU,
//!   softmax outside attention and the residual stream stay f32.
//! - `bf16`: the towers compute in bf16 from end to end. Each parameter is cast from its f32
//!   master copy where a tower reads it, the images and token embeddings enter in bf16, and
//!   every activation (residual stream, LayerNorm, BatchNorm, GELU) stays bf16; LibTorch's
//!   norms accumulate their statistics in f32 internally. open_clip's `bf16` instead stores
//!   the linear and convolution weights in bf16 and updates them there, which rounds away
//!   updates smaller than 1/256 of a weight; here AdamW updates f32 weights.
//!
//! In both, the parameters and the optimiser state, the towers' output features, the logits,
//! the contrastive loss and the CLIPScores the selector stores stay f32.
//!
//! The precision is a property of a forward pass, not of the weights, so, like torch.autocast,
//! it is a per-thread setting that the layers read, rather than an argument threaded through
//! every layer's `forward`.

use std::cell::Cell;
use std::str::FromStr;

use burn::nn::Linear;
use burn::tensor::{DType, Device, FloatDType, Tensor};
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
    /// The towers entirely in bf16 on f32 master weights; features, loss and scores in f32.
    Bf16,
}

impl Precision {
    /// The name open_clip gives it.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::AmpBf16 => "amp_bf16",
            Precision::Bf16 => "bf16",
        }
    }

    /// The dtype of the activations inside the towers.
    fn activation_dtype(self) -> DType {
        match self {
            Precision::Fp32 | Precision::AmpBf16 => DType::F32,
            Precision::Bf16 => DType::BF16,
        }
    }

    /// Refuses a precision the device has no fast arithmetic for: bf16 needs LibTorch (`tch`,
    /// `tch:cuda`) or Burn's CUDA backend; Burn's `flex` CPU backend would emulate it slowly.
    pub fn check_device(self, device: &Device) -> Result<(), ModelError> {
        if self != Precision::Fp32 && device.clone().inner() == Device::flex() {
            return Err(ModelError::InvalidConfig {
                field: "precision",
                reason: format!(
                    "{} needs a device with bf16 arithmetic (tch, tch:cuda or cuda); the cpu device (Burn's flex) \
                     trains in fp32",
                    self.name()
                ),
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
            "bf16" => Ok(Precision::Bf16),
            other => Err(ModelError::InvalidConfig {
                field: "precision",
                reason: format!(
                    "unknown precision {other:?} (expected fp32, amp_bf16 or bf16; open_clip's fp16, amp and \
                     pure_bf16 are not supported)"
                ),
            }),
        }
    }
}

thread_local! {
    static CURRENT: Cell<Precision> = const { Cell::new(Precision::Fp32) };
}

/// Runs `f` with `precision` as this thread's forward precision, then restores the previous one
/// (also when `f` panics).
pub fn with_precision<R>(precision: Precision, f: impl FnOnce() -> R) -> R {
    struct Restore(Precision);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|cell| cell.set(self.0));
        }
    }
    let _restore = Restore(CURRENT.with(|cell| cell.replace(precision)));
    f()
}

/// This thread's forward precision (for a thread that runs part of a pass).
pub(crate) fn current() -> Precision {
    CURRENT.with(Cell::get)
}

/// `x` in `dtype`, without an autodiff node when it is there already.
fn cast<const D: usize>(x: Tensor<D>, dtype: DType) -> Tensor<D> {
    match dtype {
        _ if x.dtype() == dtype => x,
        DType::BF16 => x.cast(FloatDType::BF16),
        _ => x.cast(FloatDType::F32),
    }
}

/// `x` in the precision the matrix products take: bf16 under either bf16 precision.
pub(crate) fn lower<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    match current() {
        Precision::AmpBf16 | Precision::Bf16 => cast(x, DType::BF16),
        Precision::Fp32 => x,
    }
}

/// A tensor in the activations' dtype: a matrix product's result back in f32 under autocast,
/// and under `bf16` a parameter, an embedding or the images as they enter a tower.
pub(crate) fn activation<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    match current() {
        Precision::Fp32 => x,
        precision => cast(x, precision.activation_dtype()),
    }
}

/// `x` in f32, whatever the precision: a tower's output features (for the loss and the
/// scores), or the input of a norm that Burn computes in f32.
pub(crate) fn to_f32<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    cast(x, DType::F32)
}

/// Panics in debug and unit-test builds when `x` is not in the activations' dtype: a bf16
/// tensor meeting an f32 one on LibTorch silently promotes to f32, which would turn a `bf16`
/// tower back to f32 from there on without an error.
pub(crate) fn debug_check_activation<const D: usize>(x: &Tensor<D>, at: &str) {
    if cfg!(any(test, debug_assertions)) {
        let expected = current().activation_dtype();
        assert_eq!(x.dtype(), expected, "{at}: not in the activations' dtype under {}", current().name());
    }
}

/// `layer(x)` on `[n, d_in]` rows, its product in bf16 under either bf16 precision, handed
/// back in the activations' dtype.
pub(crate) fn linear(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    activation(linear_lowered(layer, x))
}

/// `layer(x)` on `[n, d_in]` rows, left in bf16 under either bf16 precision: for a result that
/// goes on into another bf16 operation (attention), which autocast would otherwise cast to f32
/// and back.
pub(crate) fn linear_lowered(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    if current() == Precision::Fp32 {
        return layer.forward(x);
    }
    // Burn's linear op is one autodiff node for the product and the bias (a product and an
    // addition would be two).
    let bias = layer.bias.as_ref().map(|bias| lower(bias.val()));
    burn::tensor::module::linear(lower(x), lower(layer.weight.val()), bias)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_flex_refuses_bf16() {
        assert_eq!("amp_bf16".parse::<Precision>().unwrap(), Precision::AmpBf16);
        assert_eq!(" FP32 ".parse::<Precision>().unwrap(), Precision::Fp32);
        assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::Bf16);
        let err = "fp16".parse::<Precision>().unwrap_err().to_string();
        assert!(err.contains("precision") && err.contains("amp_bf16") && err.contains("bf16"), "{err}");
        for precision in [Precision::AmpBf16, Precision::Bf16] {
            let err = precision.check_device(&Device::flex()).unwrap_err().to_string();
            assert!(err.contains("tch") && err.contains(precision.name()), "{err}");
        }
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

    /// Under `bf16` on LibTorch each tower stays bf16 to its exit (every transformer block and
    /// bottleneck checks its output's dtype in test builds, so an f32 promotion anywhere in the
    /// residual stream fails here), the features and the loss are f32, the first loss is
    /// fp32's within bf16's rounding, and the parameters that the casts feed (embeddings,
    /// norms, projections, convolutions) take f32 gradients.
    #[cfg(feature = "tch")]
    #[test]
    #[allow(deprecated)] // burn-tch, behind the `tch` feature
    fn bf16_towers_compute_in_bf16_and_train_f32_weights() {
        use crate::batch::ClipBatch;
        use crate::config::ClipConfig;
        use crate::loss::{clip_loss, scalar_f32};
        use crate::model::{Clip, VisionTower};
        use crate::resnet::NormMode;
        use rand::{Rng, SeedableRng};

        let device = Device::libtorch();
        for preset in ["micro", "rn-tiny"] {
            let config = ClipConfig::preset(preset).unwrap();
            let model = Clip::new(&config, 0, &device.clone().autodiff()).unwrap();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
            let (b, l, side) = (16, config.text.context_length, config.image_size());
            let images: Vec<f32> = (0..b * 3 * side * side).map(|_| rng.random_range(-1.0..1.0)).collect();
            let tokens: Vec<u32> = (0..b * l).map(|_| rng.random_range(1..config.text.vocab_size as u32)).collect();
            let eot: Vec<usize> = (0..b).map(|_| rng.random_range(1..l)).collect();
            let batch = ClipBatch::from_host(&config, &images, &tokens, &eot, &device.clone().autodiff()).unwrap();
            let exact = scalar_f32(clip_loss(
                &model.forward_train(batch.images.clone(), batch.tokens.clone(), batch.eot.clone()).0,
            ))
            .unwrap();
            let loss = with_precision(Precision::Bf16, || {
                let mut mode = NormMode::Training(Vec::new());
                assert_eq!(model.visual.forward(batch.images.clone(), &mut mode).dtype(), DType::BF16, "{preset}");
                assert_eq!(model.text.forward(batch.tokens.clone(), batch.eot.clone()).dtype(), DType::BF16);
                let (out, _) = model.forward_train(batch.images.clone(), batch.tokens.clone(), batch.eot.clone());
                assert_eq!((out.image_features.dtype(), out.text_features.dtype()), (DType::F32, DType::F32));
                clip_loss(&out)
            });
            assert_eq!(loss.dtype(), DType::F32);
            let grads = loss.clone().backward();
            let value = scalar_f32(loss).unwrap();
            assert!((value - exact).abs() < 0.02 * exact, "{preset}: bf16 loss {value}, fp32 {exact}");
            let mut gradient_dtypes = vec![
                model.text.token_embedding.weight.val().grad(&grads).map(|g| g.dtype()),
                model.text.positional_embedding.val().grad(&grads).map(|g| g.dtype()),
                model.text.ln_final.gamma.val().grad(&grads).map(|g| g.dtype()),
                model.text.text_projection.weight.val().grad(&grads).map(|g| g.dtype()),
            ];
            match &model.visual {
                VisionTower::Vit(vit) => gradient_dtypes.extend([
                    vit.class_embedding.val().grad(&grads).map(|g| g.dtype()),
                    vit.blocks[0].ln_1.gamma.val().grad(&grads).map(|g| g.dtype()),
                    vit.blocks[0].attn.qkv.weight.val().grad(&grads).map(|g| g.dtype()),
                ]),
                VisionTower::ResNet(resnet) => gradient_dtypes.extend([
                    resnet.conv1.weight.val().grad(&grads).map(|g| g.dtype()),
                    resnet.bn1.weight.val().grad(&grads).map(|g| g.dtype()),
                    resnet.attnpool.positional_embedding.val().grad(&grads).map(|g| g.dtype()),
                ]),
            }
            assert!(gradient_dtypes.iter().all(|d| *d == Some(DType::F32)), "{preset}: {gradient_dtypes:?}");
        }
    }
}
