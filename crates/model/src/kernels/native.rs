//! Convolution and training-mode BatchNorm with LibTorch's own backward on LibTorch devices
//! (the `tch` feature), Burn's operations everywhere else; and the helper that takes LibTorch's
//! gradients of an op, which the LibTorch attention of `attention.rs` uses too.
//!
//! burn-tch 0.22.1 leaves three training paths to Burn's generic rules:
//! - under autodiff, attention decomposes into matmul, scale, mask and softmax nodes, so a GPU
//!   never runs a fused (flash or memory-efficient) attention kernel while training;
//! - a convolution's weight gradient is a convolution with the batch as channels and the
//!   output gradient as a kernel the size of the feature map;
//! - BatchNorm's statistics and gradients are a dozen whole-tensor ops, two of them
//!   transposing copies.
//!
//! On an H200 the `rn50` training step took 3.6× PyTorch's that way (bench/README.md). Here
//! each op is one autodiff node whose forward is LibTorch's op and whose backward runs that op
//! once more under LibTorch's autograd and takes LibTorch's gradients: the kernels PyTorch
//! trains with, for one extra forward per backward. That took the `rn50` step to 1.6×.

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
pub(super) use libtorch::libtorch_gradients;

#[cfg(feature = "tch")]
mod libtorch {
    use burn::backend::libtorch::TchTensor;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{AutodiffBackend, Backend, Dispatch, LibTorch, backend_extension};
    use burn::tensor::Tensor;
    use burn::tensor::module::BatchNormTrainOutput;
    use burn_autodiff::Autodiff;
    use burn_autodiff::checkpoint::base::Checkpointer;
    use burn_autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn_autodiff::grads::Gradients;
    use burn_autodiff::ops::{Backward, Ops, OpsKind};

    use super::super::cpu::register_gradients;

    /// The two ops and their gradients as one backend extension, for LibTorch and autodiff
    /// over it; no other backend reaches it (the callers above route by device).
    #[backend_extension(LibTorch: cfg(feature = "tch"), Autodiff)]
    pub trait LibTorchGradOps: Backend {
        /// The convolution of [`super::conv2d`].
        fn native_conv2d(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            stride: usize,
            padding: usize,
        ) -> FloatTensor<Self>;
        /// Gradients of the input and the weight.
        fn native_conv2d_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            stride: usize,
            padding: usize,
        ) -> (FloatTensor<Self>, FloatTensor<Self>);
        /// The output, batch mean and biased batch variance of [`super::batch_norm_train`].
        fn native_batch_norm_train(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            epsilon: f64,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
        /// Gradients of the input, the gain and the shift.
        fn native_batch_norm_train_backward(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            grad: FloatTensor<Self>,
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

    /// LibTorch's training-mode BatchNorm (the momentum only matters for running statistics,
    /// which are kept by the caller, not here).
    fn bn(x: &tch::Tensor, gamma: &tch::Tensor, beta: &tch::Tensor, epsilon: f64) -> tch::Tensor {
        x.batch_norm(Some(gamma), Some(beta), None::<&tch::Tensor>, None, true, 0.1, epsilon, true)
    }

    fn conv(x: &tch::Tensor, weight: &tch::Tensor, stride: usize, padding: usize) -> tch::Tensor {
        let (s, p) = (stride as i64, padding as i64);
        x.conv2d(weight, None::<&tch::Tensor>, [s, s], [p, p], [1, 1], 1)
    }

    /// The gradients of `forward(inputs)` with respect to each input, given the output's
    /// gradient `grad`, from LibTorch's autograd: `forward` runs on detached copies that require
    /// gradients, and the backward pass starts from `sum(output · grad)`, whose gradient with
    /// respect to the output is exactly `grad`.
    pub(crate) fn libtorch_gradients<const N: usize>(
        inputs: [&tch::Tensor; N],
        grad: &tch::Tensor,
        forward: impl FnOnce(&[tch::Tensor; N]) -> tch::Tensor,
    ) -> [tch::Tensor; N] {
        tch::with_grad(|| {
            let leaves = inputs.map(|t| t.detach().set_requires_grad(true));
            let objective = (forward(&leaves) * grad).sum(None::<tch::Kind>);
            let grads = tch::Tensor::run_backward(&[objective], &leaves, false, false);
            grads.try_into().unwrap_or_else(|grads: Vec<_>| panic!("{} gradients for {N} inputs", grads.len()))
        })
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

        fn native_conv2d_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            stride: usize,
            padding: usize,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            let [dx, dweight] = libtorch_gradients([&x.tensor, &weight.tensor], &grad.tensor, |[x, weight]| {
                conv(x, weight, stride, padding)
            });
            (TchTensor::new(dx), TchTensor::new(dweight))
        }

        fn native_batch_norm_train(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            epsilon: f64,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            // One kernel for the statistics and the output; it returns 1 / sqrt(var + eps).
            let (output, mean, inv_std) = x.tensor.internal_native_batch_norm_legit_no_stats(
                Some(&gamma.tensor),
                Some(&beta.tensor),
                true,
                0.1,
                epsilon,
            );
            let variance = inv_std.square().reciprocal() - epsilon;
            (TchTensor::new(output), TchTensor::new(mean), TchTensor::new(variance))
        }

        fn native_batch_norm_train_backward(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            epsilon: f64,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            let inputs = [&x.tensor, &gamma.tensor, &beta.tensor];
            let [dx, dgamma, dbeta] =
                libtorch_gradients(inputs, &grad.tensor, |[x, gamma, beta]| bn(x, gamma, beta, epsilon));
            (TchTensor::new(dx), TchTensor::new(dgamma), TchTensor::new(dbeta))
        }
    }

    impl<B: Backend + LibTorchGradOps, C: CheckpointStrategy> LibTorchGradOps for Autodiff<B, C> {
        fn native_conv2d(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            stride: usize,
            padding: usize,
        ) -> FloatTensor<Self> {
            #[derive(Debug)]
            struct NativeConv2d;

            impl<B: Backend + LibTorchGradOps> Backward<B, 2> for NativeConv2d {
                type State = (FloatTensor<B>, FloatTensor<B>, usize, usize);

                fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                    register_gradients::<B, _, 2>(ops, grads, |(x, weight, stride, padding), grad| {
                        let (dx, dweight) = B::native_conv2d_backward(x, weight, grad, stride, padding);
                        [dx, dweight]
                    });
                }
            }

            let (x, x_guard) = x.into_parts();
            let (weight, weight_guard) = weight.into_parts();
            match NativeConv2d.prepare::<C>([x_guard, weight_guard]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => {
                    let out = B::native_conv2d(x.clone(), weight.clone(), stride, padding);
                    prep.finish((x, weight, stride, padding), out)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::native_conv2d(x, weight, stride, padding)),
            }
        }

        fn native_conv2d_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            stride: usize,
            padding: usize,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            // Second derivatives are never taken in training; this keeps the trait complete.
            let (dx, dweight) = B::native_conv2d_backward(
                x.into_primitive(),
                weight.into_primitive(),
                grad.into_primitive(),
                stride,
                padding,
            );
            (Self::from_inner(dx), Self::from_inner(dweight))
        }
        fn native_batch_norm_train(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            epsilon: f64,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            #[derive(Debug)]
            struct NativeBatchNorm;

            impl<B: Backend + LibTorchGradOps> Backward<B, 3> for NativeBatchNorm {
                type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, f64);

                fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                    register_gradients::<B, _, 3>(ops, grads, |(x, gamma, beta, epsilon), grad| {
                        let (dx, dgamma, dbeta) = B::native_batch_norm_train_backward(x, gamma, beta, grad, epsilon);
                        [dx, dgamma, dbeta]
                    });
                }
            }

            let (x, x_guard) = x.into_parts();
            let (gamma, gamma_guard) = gamma.into_parts();
            let (beta, beta_guard) = beta.into_parts();
            // The statistics leave as constants: only the output carries gradients.
            let (output, mean, variance) =
                match NativeBatchNorm.prepare::<C>([x_guard, gamma_guard, beta_guard]).compute_bound().stateful() {
                    OpsKind::Tracked(prep) => {
                        let (output, mean, variance) =
                            B::native_batch_norm_train(x.clone(), gamma.clone(), beta.clone(), epsilon);
                        (prep.finish((x, gamma, beta, epsilon), output), mean, variance)
                    }
                    OpsKind::UnTracked(prep) => {
                        let (output, mean, variance) = B::native_batch_norm_train(x, gamma, beta, epsilon);
                        (prep.finish(output), mean, variance)
                    }
                };
            (output, Self::from_inner(mean), Self::from_inner(variance))
        }

        fn native_batch_norm_train_backward(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            epsilon: f64,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            // Second derivatives are never taken in training; this keeps the trait complete.
            let (dx, dgamma, dbeta) = B::native_batch_norm_train_backward(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                grad.into_primitive(),
                epsilon,
            );
            (Self::from_inner(dx), Self::from_inner(dgamma), Self::from_inner(dbeta))
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
