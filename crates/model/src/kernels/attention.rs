//! Scaled dot-product attention as one node with its own backward: on the `flex` CPU backend
//! our kernel; on LibTorch devices (the `tch` feature) LibTorch's `scaled_dot_product_attention`
//! with LibTorch's own gradients (see `native.rs`); Burn's attention everywhere else.
//!
//! Under autodiff Burn 0.22.1 decomposes attention into a batched matmul, a scale, a mask, a
//! softmax (max, subtract, exp, sum, divide) and a second matmul, each a node that writes the
//! whole `[b, h, l_q, l_k]` score tensor, and as many again backward; its `exp` is libm's, one
//! element at a time. On the `tiny` vision tower (65 tokens, 4 heads of 32, batch 256) forward
//! and backward took about 80 ms a layer on 2 cores, a fifth of the training step. Here each
//! (batch, head) slice is one task: its scores, softmax and weighted sum stay in a per-thread
//! buffer of `l_q · l_k` floats, the products are burn-flex's own GEMM on that thread, the
//! softmax uses the vectorised `exp` of `cpu.rs`, and the backward recomputes the
//! probabilities rather than keeping them. The same layer took 30–37 ms. Every slice is
//! computed the same way whichever thread runs it, so results do not depend on thread timing.

#[cfg(feature = "tch")]
use burn::backend::libtorch::TchTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::module::attention as burn_attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Shape, Tensor};
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::CheckpointStrategy;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use rayon::prelude::*;

use super::cpu::{F32Values, exp_nonpositive_f32, f32_tensor, uses_fused_ops};

/// Scaled dot-product attention of `[b, h, l_q, d]` queries over `[b, h, l_k, d]` keys and
/// values, scaled by `1 / sqrt(d)`; `causal` masks every query's view of later keys (query `i`
/// sees keys `0..=i`).
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: bool) -> Tensor<4> {
    if uses_fused_ops(&q) {
        return Tensor::from_dispatch(<Dispatch as FastAttentionOps>::fast_attention(
            q.into_dispatch(),
            k.into_dispatch(),
            v.into_dispatch(),
            causal,
        ));
    }
    // A fused kernel on the no-grad path, a differentiable decomposition under autodiff;
    // `is_causal` is the mask of `generate_autoregressive_mask` without materialising it.
    let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: causal };
    burn_attention(q, k, v, None, None, options)
}

/// Attention and its backward as one backend extension: our kernel on `flex`, LibTorch's op
/// on LibTorch, and one backward node for autodiff over either.
#[backend_extension(Flex, LibTorch: cfg(feature = "tch"), Autodiff)]
pub trait FastAttentionOps: Backend {
    /// The attention of [`attention`].
    fn fast_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        causal: bool,
    ) -> FloatTensor<Self>;
    /// Gradients of the queries, keys and values.
    fn fast_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        causal: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// One (batch, head) slice's problem: `l_q` queries over `l_k` keys of width `d`, the same
/// for every slice of a call.
#[derive(Clone, Copy, Debug)]
struct Dims {
    l_q: usize,
    l_k: usize,
    d: usize,
    causal: bool,
    scale: f32,
}

impl Dims {
    fn of(q: &Shape, k: &Shape, causal: bool) -> Self {
        let (l_q, d, l_k) = (q[2], q[3], k[2]);
        Self { l_q, l_k, d, causal, scale: 1.0 / (d as f32).sqrt() }
    }

    /// The keys query `i` sees: all of them, or `0..=i` when causal.
    fn visible(&self, i: usize) -> usize {
        if self.causal { (i + 1).min(self.l_k) } else { self.l_k }
    }
}

impl FastAttentionOps for Flex {
    fn fast_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        causal: bool,
    ) -> FloatTensor<Self> {
        let shape = q.layout().shape().clone();
        let dims = Dims::of(&shape, k.layout().shape(), causal);
        let (q, k, v) = (F32Values::new(&q), F32Values::new(&k), F32Values::new(&v));
        let (qs, ks, vs) = (q.as_slice(), k.as_slice(), v.as_slice());
        let (q_len, kv_len) = (dims.l_q * dims.d, dims.l_k * dims.d);
        assert!(qs.len() / q_len == ks.len() / kv_len && ks.len() == vs.len(), "attention: q, k, v disagree");
        let mut out = vec![0f32; qs.len()];
        out.par_chunks_mut(q_len).enumerate().for_each_init(
            || Scratch::new(&dims),
            |scratch, (s, out)| {
                let (q, k, v) = (&qs[s * q_len..][..q_len], &ks[s * kv_len..][..kv_len], &vs[s * kv_len..][..kv_len]);
                forward_slice(&dims, [q, k, v], scratch, out);
            },
        );
        f32_tensor(out, shape)
    }

    fn fast_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        causal: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (q_shape, kv_shape) = (q.layout().shape().clone(), k.layout().shape().clone());
        let dims = Dims::of(&q_shape, &kv_shape, causal);
        let (q, k, v, grad) = (F32Values::new(&q), F32Values::new(&k), F32Values::new(&v), F32Values::new(&grad));
        let (qs, ks, vs, gs) = (q.as_slice(), k.as_slice(), v.as_slice(), grad.as_slice());
        let (q_len, kv_len) = (dims.l_q * dims.d, dims.l_k * dims.d);
        let (mut dq, mut dk, mut dv) = (vec![0f32; qs.len()], vec![0f32; ks.len()], vec![0f32; vs.len()]);
        dq.par_chunks_mut(q_len)
            .zip(dk.par_chunks_mut(kv_len))
            .zip(dv.par_chunks_mut(kv_len))
            .enumerate()
            .for_each_init(
                || Scratch::new(&dims),
                |scratch, (s, ((dq, dk), dv))| {
                    let (q, k, v) =
                        (&qs[s * q_len..][..q_len], &ks[s * kv_len..][..kv_len], &vs[s * kv_len..][..kv_len]);
                    let grad = &gs[s * q_len..][..q_len];
                    backward_slice(&dims, [q, k, v, grad], scratch, [dq, dk, dv]);
                },
            );
        (f32_tensor(dq, q_shape), f32_tensor(dk, kv_shape.clone()), f32_tensor(dv, kv_shape))
    }
}

/// On LibTorch: `scaled_dot_product_attention` (flash or memory-efficient kernels on a GPU),
/// and its gradients from LibTorch's autograd.
#[cfg(feature = "tch")]
impl FastAttentionOps for burn::backend::LibTorch {
    fn fast_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        causal: bool,
    ) -> FloatTensor<Self> {
        TchTensor::new(sdpa(&q.tensor, &k.tensor, &v.tensor, causal))
    }

    fn fast_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        causal: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let inputs = [&q.tensor, &k.tensor, &v.tensor];
        let [dq, dk, dv] = super::native::libtorch_gradients(inputs, &grad.tensor, |[q, k, v]| sdpa(q, k, v, causal));
        (TchTensor::new(dq), TchTensor::new(dk), TchTensor::new(dv))
    }
}

#[cfg(feature = "tch")]
fn sdpa(q: &tch::Tensor, k: &tch::Tensor, v: &tch::Tensor, causal: bool) -> tch::Tensor {
    tch::Tensor::scaled_dot_product_attention(q, k, v, None::<&tch::Tensor>, 0.0, causal, None::<f64>, false)
}

/// One thread's buffers: the probabilities and their gradient, `l_q × l_k` each, and one row
/// of `l_k` products.
struct Scratch {
    probs: Vec<f32>,
    dprobs: Vec<f32>,
    row: Vec<f32>,
}

impl Scratch {
    fn new(dims: &Dims) -> Self {
        let scores = dims.l_q * dims.l_k;
        Self { probs: vec![0.0; scores], dprobs: vec![0.0; scores], row: vec![0.0; dims.l_k] }
    }
}

/// A matrix view: `rows × cols` elements of a slice, element `(r, c)` at `r · row_stride +
/// c · col_stride`, so a transpose is the same slice with the strides swapped.
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    /// A row-major `rows × cols` matrix.
    fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    fn t(self) -> Self {
        Self { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }

    /// Whether every element lies inside `data`.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride < self.data.len()
    }
}

/// `dst = scale · a · b` for a row-major `dst`, on this thread (the slices are the parallel
/// tasks): burn-flex's GEMM, whose result does not depend on which thread runs it.
fn matmul(dst: &mut [f32], a: View<'_>, b: View<'_>, scale: f32) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    assert!(b.rows == k && dst.len() == m * n && a.in_bounds() && b.in_bounds(), "matmul shapes");
    // SAFETY: the assert above keeps every element gemm reads inside `a.data` and `b.data`,
    // and every element it writes (m × n, row-major) inside `dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            0.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The row-wise softmax of the scaled scores already in `probs` (`l_q × l_k`); masked keys
/// get probability 0.
fn softmax_rows(dims: &Dims, probs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, the only feature `softmax_rows_avx2` is compiled with.
        return unsafe { softmax_rows_avx2(dims, probs) };
    }
    softmax_rows_impl(dims, probs)
}

/// `dS = P ∘ (dP − rowsum(P ∘ dP))` in place of `dP`, row by row (`row`: `l_k` floats of room).
fn softmax_backward_rows(dims: &Dims, probs: &[f32], dprobs: &mut [f32], row: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, the only feature `softmax_backward_rows_avx2` is compiled with.
        return unsafe { softmax_backward_rows_avx2(dims, probs, dprobs, row) };
    }
    softmax_backward_rows_impl(dims, probs, dprobs, row)
}

// The AVX2 builds (8 lanes instead of the baseline's SSE2 4). The loops use no fused
// multiply-add and fix their summation order, so both builds give the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn softmax_rows_avx2(dims: &Dims, probs: &mut [f32]) {
    softmax_rows_impl(dims, probs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn softmax_backward_rows_avx2(dims: &Dims, probs: &[f32], dprobs: &mut [f32], row: &mut [f32]) {
    softmax_backward_rows_impl(dims, probs, dprobs, row)
}

#[inline(always)]
fn softmax_rows_impl(dims: &Dims, probs: &mut [f32]) {
    for (i, row) in probs.chunks_exact_mut(dims.l_k).enumerate() {
        let (row, masked) = row.split_at_mut(dims.visible(i));
        let max = lanes_fold(row, f32::NEG_INFINITY, f32::max);
        for p in row.iter_mut() {
            *p = exp_nonpositive_f32(*p - max);
        }
        let inv = 1.0 / lanes_fold(row, 0.0, |a, b| a + b);
        for p in row.iter_mut() {
            *p *= inv;
        }
        masked.fill(0.0);
    }
}

#[inline(always)]
fn softmax_backward_rows_impl(dims: &Dims, probs: &[f32], dprobs: &mut [f32], products: &mut [f32]) {
    for (p, ds) in probs.chunks_exact(dims.l_k).zip(dprobs.chunks_exact_mut(dims.l_k)) {
        for ((o, &p), &ds) in products.iter_mut().zip(p).zip(ds.iter()) {
            *o = p * ds;
        }
        let row_dot = lanes_fold(products, 0.0, |a, b| a + b);
        for (&p, ds) in p.iter().zip(ds.iter_mut()) {
            *ds = p * (*ds - row_dot);
        }
    }
}

/// `values` folded with `f` in 8 interleaved lanes, then the lanes in order: a fixed order
/// that vectorises (the compiler may not reorder a plain left fold of floats).
#[inline(always)]
fn lanes_fold(values: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [init; 8];
    let chunks = values.chunks_exact(8);
    let tail = chunks.remainder().iter().fold(init, |a, &b| f(a, b));
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = f(*lane, x);
        }
    }
    f(lanes.into_iter().fold(init, &f), tail)
}

/// One slice's output `P · V`, with `P = softmax(s · Q Kᵀ)` (`s` the scale).
fn forward_slice(dims: &Dims, [q, k, v]: [&[f32]; 3], scratch: &mut Scratch, out: &mut [f32]) {
    let (q, k, v) = (View::new(q, dims.l_q, dims.d), View::new(k, dims.l_k, dims.d), View::new(v, dims.l_k, dims.d));
    matmul(&mut scratch.probs, q, k.t(), dims.scale);
    softmax_rows(dims, &mut scratch.probs);
    matmul(out, View::new(&scratch.probs, dims.l_q, dims.l_k), v, 1.0);
}

/// One slice's gradients. With `P` the probabilities and `G` the output's gradient:
/// `dV = Pᵀ G`, `dP = G Vᵀ`, `dS = P ∘ (dP − rowsum(P ∘ dP))`, `dQ = s · dS K`,
/// `dK = s · dSᵀ Q`.
fn backward_slice(dims: &Dims, [q, k, v, grad]: [&[f32]; 4], scratch: &mut Scratch, [dq, dk, dv]: [&mut [f32]; 3]) {
    let (l_q, l_k, d) = (dims.l_q, dims.l_k, dims.d);
    let (q, k, v, grad) = (View::new(q, l_q, d), View::new(k, l_k, d), View::new(v, l_k, d), View::new(grad, l_q, d));
    matmul(&mut scratch.probs, q, k.t(), dims.scale);
    softmax_rows(dims, &mut scratch.probs);
    matmul(dv, View::new(&scratch.probs, l_q, l_k).t(), grad, 1.0);
    matmul(&mut scratch.dprobs, grad, v.t(), 1.0);
    softmax_backward_rows(dims, &scratch.probs, &mut scratch.dprobs, &mut scratch.row);
    let dscores = View::new(&scratch.dprobs, l_q, l_k);
    matmul(dq, dscores, k, dims.scale);
    matmul(dk, dscores.t(), q, dims.scale);
}

impl<B: Backend + FastAttentionOps, C: CheckpointStrategy> FastAttentionOps for Autodiff<B, C> {
    fn fast_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        causal: bool,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct FastAttention;

        impl<B: Backend + FastAttentionOps> Backward<B, 3> for FastAttention {
            // The inputs; the probabilities are recomputed (cheaper than keeping `l_q · l_k`
            // floats per slice between the passes).
            type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, bool);

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let grad = grads.consume::<B>(&ops.node);
                let (q, k, v, causal) = ops.state;
                let (dq, dk, dv) = B::fast_attention_backward(q, k, v, grad, causal);
                for (node, d) in ops.parents.into_iter().zip([dq, dk, dv]) {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, d);
                    }
                }
            }
        }

        let (q, q_guard) = q.into_parts();
        let (k, k_guard) = k.into_parts();
        let (v, v_guard) = v.into_parts();
        match FastAttention.prepare::<C>([q_guard, k_guard, v_guard]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::fast_attention(q.clone(), k.clone(), v.clone(), causal);
                prep.finish((q, k, v, causal), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fast_attention(q, k, v, causal)),
        }
    }

    fn fast_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        causal: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // Second derivatives are never taken in training; this keeps the trait complete.
        let (dq, dk, dv) = B::fast_attention_backward(
            q.into_primitive(),
            k.into_primitive(),
            v.into_primitive(),
            grad.into_primitive(),
            causal,
        );
        (Self::from_inner(dq), Self::from_inner(dk), Self::from_inner(dv))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn values(n: usize, seed: u32) -> Vec<f32> {
        // A fixed, uneven spread of values (no RNG needed).
        (0..n).map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 2001) as f32 / 1000.0 - 1.0).collect()
    }

    fn tensor(shape: [usize; 4], seed: u32, device: &Device) -> Tensor<4> {
        Tensor::from_data(TensorData::new(values(shape.iter().product(), seed), shape), device)
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    /// The output and the gradients of `sum(w · attention(q, k, v))` with respect to q, k, v.
    fn run(device: &Device, fused: bool, q_shape: [usize; 4], kv_shape: [usize; 4], causal: bool) -> [Vec<f32>; 4] {
        let device = device.clone().autodiff();
        let q = tensor(q_shape, 1, &device).require_grad();
        let (k, v) = (tensor(kv_shape, 2, &device).require_grad(), tensor(kv_shape, 3, &device).require_grad());
        let w = tensor(q_shape, 4, &device);
        let y = if fused {
            attention(q.clone(), k.clone(), v.clone(), causal)
        } else {
            let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: causal };
            burn_attention(q.clone(), k.clone(), v.clone(), None, None, options)
        };
        let grads = (y.clone() * w).sum().backward();
        let flat = |t: Tensor<4>| -> Vec<f32> { t.try_into_vec_as().expect("f32 values") };
        let grad = |t: &Tensor<4>| flat(t.grad(&grads).expect("gradient"));
        [flat(y), grad(&q), grad(&k), grad(&v)]
    }

    /// Our attention against Burn's on `device`: self-attention, causal or not, with a width
    /// that is not a multiple of 8 and more slices than threads; and one query over many keys
    /// (the ResNet's attention pool).
    fn matches_burn_forward_and_gradients(device: &Device) {
        for (q_shape, kv_shape, causal) in [
            ([3, 5, 17, 12], [3, 5, 17, 12], false),
            ([3, 5, 17, 12], [3, 5, 17, 12], true),
            ([4, 2, 1, 16], [4, 2, 9, 16], false),
        ] {
            let ours = run(device, true, q_shape, kv_shape, causal);
            let burns = run(device, false, q_shape, kv_shape, causal);
            for (name, a, b) in
                ["output", "dq", "dk", "dv"].into_iter().zip(&ours).zip(&burns).map(|((n, a), b)| (n, a, b))
            {
                let diff = max_diff(a, b);
                assert!(diff < 1e-5, "{name} differs by {diff} ({q_shape:?}, causal {causal})");
                assert!(b.iter().any(|&x| x.abs() > 1e-3), "{name} is not trivially zero");
            }
        }
    }

    #[test]
    fn fused_attention_matches_burn_forward_and_gradients() {
        matches_burn_forward_and_gradients(&Device::flex());
    }

    #[test]
    #[cfg(feature = "tch")]
    fn libtorch_attention_matches_burn_forward_and_gradients() {
        matches_burn_forward_and_gradients(&Device::libtorch());
    }

    #[test]
    fn the_causal_mask_hides_later_keys() {
        // The first query sees only the first key: its output is that key's value exactly.
        let device = Device::flex();
        let (q, k, v) =
            (tensor([1, 1, 4, 8], 1, &device), tensor([1, 1, 4, 8], 2, &device), tensor([1, 1, 4, 8], 3, &device));
        let out: Vec<f32> = attention(q, k, v.clone(), true).try_into_vec_as().unwrap();
        let v: Vec<f32> = v.try_into_vec_as().unwrap();
        assert_eq!(&out[..8], &v[..8]);
    }
}
