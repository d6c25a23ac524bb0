//! Convolution and training-mode BatchNorm with LibTorch's own backward on LibTorch devices
//! (the `tch` feature), Burn's operations everywhere else.
//!
//! burn-tch 0.22.1 leaves three training paths to Burn's generic rules:
//! - under autodiff, attention decomposes into matmul, scale, mask and softmax nodes, so a GPU
//!   never runs a fused (flash or memory-efficient) attention kernel while training;
//! - a convolution's weight gradient is a convolution with the batch as channels and the
//!   output gradient as a kernel the size of the feature map;
//! - BatchNorm's statistics and gradients are a dozen whole-tensor ops, two of them
//!   transposing copies.
//!
//! On an H200 the `rn50` training step took 3.6× PyTorch's that way (bench/README.md). Each
//! op became one autodiff node whose forward is LibTorch's op and whose backward ran that op
//! once more under LibTorch's autograd and took LibTorch's gradients, which took the `rn50`
//! step to 1.6× (2026-11-30). Now the forward itself is recorded on LibTorch's tape
//! (`tape.rs`), so the backward runs only LibTorch's backward kernels, as PyTorch does.

use burn::tensor::Tensor;
use burn::tensor::module::{BatchNormTrainOutput, batch_norm_train as burn_batch_norm_train, conv2d as burn_conv2d};
use burn::tensor::ops::ConvOptions;

/// A bias-free 2-D convolution, `[b, c_in, h, w]` by `[c_out, c_in, k, k]`, with the same stride
/// and zero padding on both axes.
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, stride: usize, padding: usize) -> Tensor<4> {
    #[cfg(feature = "tch")]
    if super::cpu::on_libtorch(&x) {
        return libtorch::conv2d(x, weight, stride, padding);
    }
    burn_conv2d(x, weight, None, ConvOptions::new([stride, stride], [padding, padding], [1, 1], 1))
}

/// BatchNorm of `[b, c, h, w]` with the batch's own per-channel statistics: the output, and
/// the batch mean and biased variance (both without gradient) for the running statistics.
pub fn batch_norm_train(x: Tensor<4>, gamma: Tensor<1>, beta: Tensor<1>, epsilon: f64) -> BatchNormTrainOutput<4> {
    #[cfg(feature = "tch")]
    if super::cpu::on_libtorch(&x) {
        return libtorch::batch_norm_train(x, gamma, beta, epsilon);
    }
    burn_batch_norm_train(x, gamma, beta, epsilon)
}

#[cfg(feature = "tch")]
mod libtorch {
    use burn::backend::libtorch::TchTensor;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{AutodiffBackend, Backend, Dispatch, LibTorch, backend_extension};
    use burn::tensor::Tensor;
    use burn::tensor::module::BatchNormTrainOutput;
    use burn_autodiff::Autodiff;
    use burn_autodiff::checkpoint::strategy::CheckpointStrategy;

    use super::super::tape::taped;

    /// The two ops as one backend extension, for LibTorch and autodiff over it (whose backward
    /// is LibTorch's, from its tape); no other backend reaches it (the callers above route by
    /// device).
    #[backend_extension(LibTorch: cfg(feature = "tch"), Autodiff)]
    pub trait LibTorchGradOps: Backend {
        /// The convolution of [`super::conv2d`].
        fn native_conv2d(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            stride: usize,
            padding: usize,
        ) -> FloatTensor<Self>;
        /// The output, batch mean and biased batch variance of [`super::batch_norm_train`].
        fn native_batch_norm_train(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            epsilon: f64,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    }

    pub(super) fn conv2d(x: Tensor<4>, weight: Tensor<4>, stride: usize, padding: usize) -> Tensor<4> {
        Tensor::from_dispatch(<Dispatch as LibTorchGradOps>::native_conv2d(
            x.into_dispatch(),
            weight.into_dispatch(),
            stride,
            padding,
        ))
    }

    pub(super) fn batch_norm_train(
        x: Tensor<4>,
        gamma: Tensor<1>,
        beta: Tensor<1>,
        epsilon: f64,
    ) -> BatchNormTrainOutput<4> {
        let (output, mean, variance) = <Dispatch as LibTorchGradOps>::native_batch_norm_train(
            x.into_dispatch(),
            gamma.into_dispatch(),
            beta.into_dispatch(),
            epsilon,
        );
        BatchNormTrainOutput {
            output: Tensor::from_dispatch(output),
            mean: Tensor::from_dispatch(mean),
            variance: Tensor::from_dispatch(variance),
        }
    }

    fn conv(x: &tch::Tensor, weight: &tch::Tensor, stride: usize, padding: usize) -> tch::Tensor {
        let (s, p) = (stride as i64, padding as i64);
        x.conv2d(weight, None::<&tch::Tensor>, [s, s], [p, p], [1, 1], 1)
    }

    /// LibTorch's training-mode BatchNorm in one kernel for the statistics and the output:
    /// the output, and the batch mean and biased variance, detached (the running statistics
    /// are the caller's).
    fn bn(x: &tch::Tensor, gamma: &tch::Tensor, beta: &tch::Tensor, epsilon: f64) -> (tch::Tensor, [tch::Tensor; 2]) {
        // The momentum only matters for running statistics, which this op does not keep.
        let (output, mean, inv_std) =
            x.internal_native_batch_norm_legit_no_stats(Some(gamma), Some(beta), true, 0.1, epsilon);
        let variance = inv_std.detach().square().reciprocal() - epsilon;
        // A copy of the mean: the caller's running-statistics update may scale it in place,
        // and the tape keeps the original for the backward.
        (output, [mean.detach().copy(), variance])
    }

    impl LibTorchGradOps for LibTorch {
        fn native_conv2d(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            stride: usize,
            padding: usize,
        ) -> FloatTensor<Self> {
            TchTensor::new(conv(&x.tensor, &weight.tensor, stride, padding))
        }

        fn native_batch_norm_train(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            epsilon: f64,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            let (output, [mean, variance]) = bn(&x.tensor, &gamma.tensor, &beta.tensor, epsilon);
            (TchTensor::new(output), TchTensor::new(mean), TchTensor::new(variance))
        }
    }

    impl<C: CheckpointStrategy> LibTorchGradOps for Autodiff<LibTorch, C> {
        fn native_conv2d(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            stride: usize,
            padding: usize,
        ) -> FloatTensor<Self> {
            taped::<C, _, 2>([x, weight], |[x, weight]| (conv(x, weight, stride, padding), ())).0
        }

        fn native_batch_norm_train(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            epsilon: f64,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            // The statistics leave as constants: only the output carries gradients.
            let (output, [mean, variance]) =
                taped::<C, _, 3>([x, gamma, beta], |[x, gamma, beta]| bn(x, gamma, beta, epsilon));
            (output, Self::from_inner(TchTensor::new(mean)), Self::from_inner(TchTensor::new(variance)))
        }
    }
}

#[cfg(all(test, feature = "tch"))]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.try_into_vec_as().expect("f32 values")
    }

    /// The largest difference relative to the reference's largest magnitude (at least 1).
    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max) / scale
    }

    /// `f(inputs)` and the gradients of `sum(w · f(inputs))` with respect to each input.
    fn gradients<const N: usize>(
        inputs: &[Tensor<4>; N],
        w: &Tensor<4>,
        f: impl Fn([Tensor<4>; N]) -> Tensor<4>,
    ) -> (Vec<f32>, [Vec<f32>; N]) {
        let leaves = inputs.clone().map(|t| t.require_grad());
        let y = f(leaves.clone());
        let grads = (y.clone() * w.clone()).sum().backward();
        (values(y), leaves.map(|t| values(t.grad(&grads).expect("gradient"))))
    }

    fn random(shape: [usize; 4], device: &Device) -> Tensor<4> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
    }

    #[test]
    fn conv2d_matches_burn_forward_and_gradients_on_libtorch() {
        let device = Device::libtorch().autodiff();
        for (stride, padding, kernel) in [(1, 1, 3), (2, 1, 3), (1, 0, 1)] {
            let x = random([3, 4, 9, 9], &device);
            let weight = random([5, 4, kernel, kernel], &device);
            let out_side = (9 + 2 * padding - kernel) / stride + 1;
            let w = random([3, 5, out_side, out_side], &device);
            let options = ConvOptions::new([stride, stride], [padding, padding], [1, 1], 1);
            let (ours, our_grads) =
                gradients(&[x.clone(), weight.clone()], &w, |[x, weight]| conv2d(x, weight, stride, padding));
            let (burns, burn_grads) =
                gradients(&[x, weight], &w, |[x, weight]| burn_conv2d(x, weight, None, options.clone()));
            assert!(max_diff(&ours, &burns) < 1e-5, "forward, stride {stride}");
            for (name, a, b) in [("x", &our_grads[0], &burn_grads[0]), ("weight", &our_grads[1], &burn_grads[1])] {
                let diff = max_diff(a, b);
                assert!(diff < 1e-5, "d{name} differs by {diff} (relative), stride {stride}");
            }
        }
    }

    #[test]
    fn batch_norm_train_matches_burn_output_statistics_and_gradients_on_libtorch() {
        let device = Device::libtorch().autodiff();
        let x = random([4, 3, 5, 5], &device) * 2.0 + 0.5;
        let gamma: Tensor<1> = Tensor::random([3], Distribution::Normal(1.0, 0.3), &device);
        let beta: Tensor<1> = Tensor::random([3], Distribution::Normal(0.0, 0.3), &device);
        let w = random([4, 3, 5, 5], &device);
        let run = |ours: bool| {
            let (x, gamma, beta) =
                (x.clone().require_grad(), gamma.clone().require_grad(), beta.clone().require_grad());
            let out = if ours {
                batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5)
            } else {
                burn_batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5)
            };
            let grads = (out.output.clone() * w.clone()).sum().backward();
            let flat = |t: Tensor<1>| -> Vec<f32> { t.try_into_vec_as().expect("f32 values") };
            let stats = [flat(out.mean), flat(out.variance)];
            let dx = values(x.grad(&grads).expect("dx"));
            let dparams = [flat(gamma.grad(&grads).expect("dgamma")), flat(beta.grad(&grads).expect("dbeta"))];
            (values(out.output), stats, dx, dparams)
        };
        let (ours, burns) = (run(true), run(false));
        assert!(max_diff(&ours.0, &burns.0) < 1e-5, "output");
        for (name, a, b) in [("mean", &ours.1[0], &burns.1[0]), ("variance", &ours.1[1], &burns.1[1])] {
            assert!(max_diff(a, b) < 1e-5, "{name} differs by {}", max_diff(a, b));
        }
        assert!(max_diff(&ours.2, &burns.2) < 1e-4, "dx differs by {}", max_diff(&ours.2, &burns.2));
        for (name, a, b) in [("gamma", &ours.3[0], &burns.3[0]), ("beta", &ours.3[1], &burns.3[1])] {
            assert!(max_diff(a, b) < 1e-4, "d{name} differs by {}", max_diff(a, b));
        }
    }
}
