//! LibTorch ops under Burn's autodiff whose backward is LibTorch's own: the forward runs once
//! with LibTorch's autograd on and keeps its tape, and the backward runs the kernels that tape
//! recorded (cuDNN's convolution and BatchNorm backward, the fused attention's backward) on what
//! the forward saved. Nothing runs twice: a backward that ran the forward again under LibTorch's
//! autograd cost one more forward of every convolution per step.
//!
//! The tape holds the op's output and inputs in buffers that Burn also holds. burn-tch writes
//! into a buffer in place only when no other tensor shares it, so every tensor kept here shares
//! its Burn tensor's storage count, which keeps Burn from overwriting what the tape needs. (Were
//! one overwritten anyway, LibTorch's version counter would fail the backward loudly.)

use burn::backend::LibTorch;
use burn::backend::libtorch::TchTensor;
use burn::backend::tensor::FloatTensor;
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::CheckpointStrategy;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};

/// One op's part of LibTorch's autograd tape.
#[derive(Debug, Clone)]
pub(crate) struct Tape<const N: usize> {
    /// The op's output, still attached to the tape.
    output: TchTensor,
    /// The op's inputs as the tape's leaves.
    leaves: [TchTensor; N],
}

impl<const N: usize> Tape<N> {
    /// Runs `forward` with LibTorch's autograd on, on leaves that share the inputs' buffers.
    /// Returns its output detached from the tape (the tensor Burn sees), its other results
    /// (statistics and the like, which the caller detaches) and the tape.
    fn record<R>(
        inputs: [&TchTensor; N],
        forward: impl FnOnce(&[tch::Tensor; N]) -> (tch::Tensor, R),
    ) -> (TchTensor, R, Self) {
        let leaves = inputs.map(|input| {
            let leaf = input.tensor.detach().set_requires_grad(true);
            TchTensor::from_existing(leaf, input.storage.clone())
        });
        let (output, rest) = tch::with_grad(|| forward(&leaves.each_ref().map(|leaf| leaf.tensor.shallow_clone())));
        let detached = TchTensor::new(output.detach());
        let output = TchTensor::from_existing(output, detached.storage.clone());
        (detached, rest, Self { output, leaves })
    }

    /// The gradients of the inputs that `wanted` marks, given the output's gradient `grad`:
    /// LibTorch's backward from `sum(output · grad)`, whose gradient with respect to the output
    /// is exactly `grad`. Only the wanted leaves are asked for, so LibTorch skips the others'
    /// kernels (a first convolution computes no gradient for the images).
    fn gradients(self, grad: &tch::Tensor, wanted: [bool; N]) -> [Option<tch::Tensor>; N] {
        let asked: Vec<&tch::Tensor> =
            self.leaves.iter().zip(wanted).filter(|(_, wanted)| *wanted).map(|(leaf, _)| &leaf.tensor).collect();
        if asked.is_empty() {
            return wanted.map(|_| None);
        }
        let mut gradients = tch::with_grad(|| {
            let objective = (&self.output.tensor * grad).sum(None::<tch::Kind>);
            tch::Tensor::run_backward(&[objective], &asked, false, false)
        })
        .into_iter();
        wanted.map(|wanted| wanted.then(|| gradients.next().expect("one gradient per leaf asked for")))
    }
}

/// The autodiff node of an op recorded on LibTorch's tape.
#[derive(Debug)]
struct TapedOp;

impl<const N: usize> Backward<LibTorch, N> for TapedOp {
    type State = Tape<N>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<LibTorch>(&ops.node);
        let wanted = ops.parents.each_ref().map(Option::is_some);
        for (parent, gradient) in ops.parents.into_iter().zip(ops.state.gradients(&grad.tensor, wanted)) {
            if let (Some(parent), Some(gradient)) = (parent, gradient) {
                grads.register::<LibTorch>(parent.id, TchTensor::new(gradient));
            }
        }
    }
}

/// `forward` as one autodiff node whose backward is LibTorch's: recorded on LibTorch's tape when
/// an input tracks a gradient, a plain LibTorch call otherwise. `forward` returns the output
/// that carries gradients and anything else it computes, which leaves as constants: detached,
/// and copied where the tape may have saved the same buffer (Burn writes into a buffer in place
/// when no other Burn tensor shares it).
pub(crate) fn taped<C: CheckpointStrategy, R, const N: usize>(
    inputs: [FloatTensor<Autodiff<LibTorch, C>>; N],
    forward: impl FnOnce(&[tch::Tensor; N]) -> (tch::Tensor, R),
) -> (FloatTensor<Autodiff<LibTorch, C>>, R) {
    // A clone of an inner tensor shares its buffer; the guards keep the inputs' nodes alive
    // until the output is registered.
    let primitives = inputs.each_ref().map(|t| t.primitive().clone());
    let guards = inputs.map(|t| t.into_parts().1);
    match TapedOp.prepare::<C>(guards).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (output, rest, tape) = Tape::record(primitives.each_ref(), forward);
            (prep.finish(tape, output), rest)
        }
        OpsKind::UnTracked(prep) => {
            let (output, rest) = forward(&primitives.map(|p| p.tensor));
            (prep.finish(TchTensor::new(output)), rest)
        }
    }
}
