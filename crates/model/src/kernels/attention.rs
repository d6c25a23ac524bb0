//! Scaled dot-product attention as one node with its own backward: on the `flex` CPU backend
//! our kernel; on LibTorch devices (the `tch` feature) LibTorch's `scaled_dot_product_attention`
//! with LibTorch's own backward (see `tape.rs`); Burn's attention everywhere else.
//!
//! Under autodiff Burn 0.22.1 decomposes attention into a batched matmul, a scale, a mask, a
//! softmax (max, subtract, exp, sum, divide) and a second matmul, each a node that writes the
//! whole `[b, h, l_q, l_k]` score tensor, and as many again backward; its `exp` is libm's, one
//! element at a time. On the `tiny` vision tower (65 tokens, 4 heads of 32, batch 256) forward
//! and backward took about 80 ms a layer on 2 cores, a fifth of the training step. Here each
//! batch item is one task, its heads in turn: a head's scores, softmax and weighted sum stay in
//! a per-thread buffer of `l_q · l_k` floats, the products are burn-flex's own GEMM on that
//! thread, the softmax uses the vectorised `exp` of `cpu.rs`, and the backward recomputes the
//! probabilities rather than keeping them. The same layer took 30–37 ms (timed one after the
//! other, not alternating; alternating in the whole step, bench/HISTORY.md). Every slice is
//! computed the same way whichever thread runs it, so results do not depend on thread timing.
//!
//! The transformer blocks call [`self_attention`] on the packed q/k/v projection itself: the
//! kernel reads each head's rows where they lie and writes the projection's gradient in one
//! buffer, so nothing is split, copied, zero-filled or summed around the op (measured in
//! bench/HISTORY.md, 2026-12-03). [`attention`] takes q, k and v apart (the ResNet's
//! attention pool, one query over many keys), reads strided views in place and writes its
//! outputs in `[b, l, h, d]` order, so the caller's `swap_dims(1, 2)` back is free.

#[cfg(feature = "tch")]
use burn::backend::libtorch::TchTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::tensor::module::attention as burn_attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Shape, Tensor};
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::CheckpointStrategy;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops};
use rayon::prelude::*;

use burn_flex::FlexTensor;

use super::cpu::{exp_nonpositive_f32, f32_tensor, forward_node, register_gradients, uses_fused_ops};
#[cfg(feature = "tch")]
use super::tape::taped;

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

/// Multi-head self-attention over a packed projection, as one node: `qkv` is `[b, l, 3·h·d]`,
/// each row holding the queries, then the keys, then the values of every head in turn (`h·d`
/// each, as one fused q/k/v linear layer writes them); the result is `[b, l, h·d]`, the heads'
/// outputs side by side. On `flex` and LibTorch the kernel reads the heads where they lie in
/// `qkv` and writes the gradient of `qkv` in one buffer. Splitting first would cost, under
/// Burn's autodiff, a copy of q, k and v forward (a reshape of a strided view copies on `flex`),
/// and backward a zero-filled `qkv`-sized buffer per part, its slice assignment, the sum of
/// the three, and a copy out of the permuted layout.
pub fn self_attention(qkv: Tensor<3>, heads: usize, causal: bool) -> Tensor<3> {
    if uses_fused_ops(&qkv) {
        return Tensor::from_dispatch(<Dispatch as FastAttentionOps>::fast_self_attention(
            qkv.into_dispatch(),
            heads,
            causal,
        ));
    }
    let [q, k, v] = split_packed(qkv, heads);
    merge_heads(attention(q, k, v, causal))
}

/// The `[b, h, l, d]` queries, keys and values of a packed `[b, l, 3·h·d]` projection, as
/// strided views (Burn's ops, for devices without the fused node).
fn split_packed(qkv: Tensor<3>, heads: usize) -> [Tensor<4>; 3] {
    let [b, l, packed] = qkv.dims();
    let split = qkv.reshape([b, l, 3, heads, packed / (3 * heads)]).permute([2, 0, 3, 1, 4]);
    [0, 1, 2].map(|i| split.clone().narrow(0, i, 1).squeeze_dim(0))
}

/// `[b, h, l, d]` attention outputs as `[b, l, h·d]`, the heads side by side.
fn merge_heads(ctx: Tensor<4>) -> Tensor<3> {
    let [b, h, l, d] = ctx.dims();
    ctx.swap_dims(1, 2).reshape([b, l, h * d])
}

/// Attention as one backend extension: our kernel on `flex`, LibTorch's op on LibTorch, and
/// one node for autodiff over either, whose backward is our kernel's on `flex` and LibTorch's
/// own (from its tape, `tape.rs`) on LibTorch.
#[backend_extension(Flex, LibTorch: cfg(feature = "tch"), Autodiff)]
pub trait FastAttentionOps: Backend {
    /// The attention of [`attention`].
    fn fast_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        causal: bool,
    ) -> FloatTensor<Self>;
    /// The attention of [`self_attention`].
    fn fast_self_attention(qkv: FloatTensor<Self>, heads: usize, causal: bool) -> FloatTensor<Self>;
}

/// One call's sizes: `batch × heads` independent slices, each `l_q` queries over `l_k` keys
/// of width `d`.
#[derive(Clone, Copy, Debug)]
struct Dims {
    batch: usize,
    heads: usize,
    l_q: usize,
    l_k: usize,
    d: usize,
    causal: bool,
    scale: f32,
}

impl Dims {
    fn of(q: &Shape, k: &Shape, causal: bool) -> Self {
        assert!(q[0] == k[0] && q[1] == k[1] && q[3] == k[3], "attention: q {q:?} and k {k:?} disagree");
        let (batch, heads, l_q, d, l_k) = (q[0], q[1], q[2], q[3], k[2]);
        Self { batch, heads, l_q, l_k, d, causal, scale: 1.0 / (d as f32).sqrt() }
    }

    /// The sizes of [`self_attention`] on a `[b, l, 3·h·d]` packed projection.
    fn packed(qkv: &Shape, heads: usize, causal: bool) -> Self {
        let (batch, l, packed) = (qkv[0], qkv[1], qkv[2]);
        assert!(heads > 0 && packed % (3 * heads) == 0, "self-attention: width {packed} is not 3 × {heads} heads");
        let d = packed / (3 * heads);
        Self { batch, heads, l_q: l, l_k: l, d, causal, scale: 1.0 / (d as f32).sqrt() }
    }

    /// The width of one part (queries, keys or values) of a row: every head's.
    fn width(&self) -> usize {
        self.heads * self.d
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
        let dims = Dims::of(q.layout().shape(), k.layout().shape(), causal);
        let out = forward_items(&dims, [&Rows::new(&q), &Rows::new(&k), &Rows::new(&v)]);
        heads_last(out, &dims, dims.l_q)
    }

    fn fast_self_attention(qkv: FloatTensor<Self>, heads: usize, causal: bool) -> FloatTensor<Self> {
        let dims = Dims::packed(qkv.layout().shape(), heads, causal);
        let qkv = qkv.to_contiguous();
        let [q, k, v] = [0, 1, 2].map(|part| Rows::packed(&qkv, part, 3, &dims));
        let out = forward_items(&dims, [&q, &k, &v]);
        f32_tensor(out, Shape::new([dims.batch, dims.l_q, dims.width()]))
    }
}

/// Gradients of the queries, keys and values of [`FastAttentionOps::fast_attention`] on `flex`.
fn flex_attention_backward(
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    grad: FlexTensor,
    causal: bool,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let dims = Dims::of(q.layout().shape(), k.layout().shape(), causal);
    let inputs = [&Rows::new(&q), &Rows::new(&k), &Rows::new(&v), &Rows::new(&grad)];
    let (q_item, kv_item) = (dims.l_q * dims.width(), dims.l_k * dims.width());
    let (mut dq, mut dk, mut dv) =
        (vec![0f32; dims.batch * q_item], vec![0f32; dims.batch * kv_item], vec![0f32; dims.batch * kv_item]);
    let items = dq
        .par_chunks_mut(q_item)
        .zip(dk.par_chunks_mut(kv_item))
        .zip(dv.par_chunks_mut(kv_item))
        .map(|((dq, dk), dv)| ItemGrads::Apart([dq, dk, dv]));
    backward_items(&dims, inputs, items);
    (heads_last(dq, &dims, dims.l_q), heads_last(dk, &dims, dims.l_k), heads_last(dv, &dims, dims.l_k))
}

/// The gradient of the packed projection of [`FastAttentionOps::fast_self_attention`] on `flex`.
fn flex_self_attention_backward(qkv: FlexTensor, grad: FlexTensor, heads: usize, causal: bool) -> FlexTensor {
    let dims = Dims::packed(qkv.layout().shape(), heads, causal);
    let (qkv, grad) = (qkv.to_contiguous(), grad.to_contiguous());
    let [q, k, v] = [0, 1, 2].map(|part| Rows::packed(&qkv, part, 3, &dims));
    let grad = Rows::packed(&grad, 0, 1, &dims);
    let item = dims.l_q * 3 * dims.width();
    let mut dqkv = vec![0f32; dims.batch * item];
    backward_items(&dims, [&q, &k, &v, &grad], dqkv.par_chunks_mut(item).map(ItemGrads::Packed));
    f32_tensor(dqkv, qkv.layout().shape().clone())
}

/// The `[b, l_q, h, d]` attention of every batch item, one task per item, its heads in turn.
fn forward_items(dims: &Dims, [q, k, v]: [&Rows; 3]) -> Vec<f32> {
    let mut out = vec![0f32; dims.batch * dims.l_q * dims.width()];
    out.par_chunks_mut(dims.l_q * dims.width()).enumerate().for_each_init(
        || Scratch::new(dims),
        |scratch, (b, out)| {
            for h in 0..dims.heads {
                let qkv =
                    [q.view(b, h, dims.l_q, dims.d), k.view(b, h, dims.l_k, dims.d), v.view(b, h, dims.l_k, dims.d)];
                forward_slice(dims, qkv, scratch, RowsMut::head(out, h, dims.l_q, dims.heads, dims.d));
            }
        },
    );
    out
}

/// The gradients of every batch item, one task per item (`items` in batch order), its heads
/// in turn.
fn backward_items<'a>(
    dims: &Dims,
    [q, k, v, grad]: [&Rows; 4],
    items: impl IndexedParallelIterator<Item = ItemGrads<'a>>,
) {
    let d = dims.d;
    items.enumerate().for_each_init(
        || Scratch::new(dims),
        |scratch, (b, mut grads)| {
            for h in 0..dims.heads {
                let inputs = [
                    q.view(b, h, dims.l_q, d),
                    k.view(b, h, dims.l_k, d),
                    v.view(b, h, dims.l_k, d),
                    grad.view(b, h, dims.l_q, d),
                ];
                backward_slice(dims, inputs, scratch, &mut grads, h);
            }
        },
    );
}

/// Where one batch item's gradients go: three buffers, each `[l, h, d]` (the 4-D
/// [`attention`]), or one `[l, 3·h·d]` buffer laid out as the packed projection.
enum ItemGrads<'a> {
    Apart([&'a mut [f32]; 3]),
    Packed(&'a mut [f32]),
}

impl ItemGrads<'_> {
    /// The rows of head `h` in the gradient of the queries (`part` 0), keys (1) or values (2).
    fn rows(&mut self, part: usize, h: usize, dims: &Dims) -> RowsMut<'_> {
        let (d, width) = (dims.d, dims.width());
        match self {
            Self::Apart(parts) => {
                let rows = if part == 0 { dims.l_q } else { dims.l_k };
                RowsMut::head(parts[part], h, rows, dims.heads, d)
            }
            Self::Packed(item) => {
                RowsMut { data: &mut item[part * width + h * d..], rows: dims.l_q, cols: d, row_stride: 3 * width }
            }
        }
    }
}

/// The heads of an `f32` tensor read where they lie: a 4-D q, k or v (the ResNet pool's
/// strided views, the output's gradient a transposed view), or one part of the packed
/// projection, so copying them into `[b, h, l, d]` order first would cost a full pass each.
/// A 4-D tensor is copied only if its rows are not contiguous.
struct Rows {
    tensor: FlexTensor,
    offset: usize,
    /// Strides of the batch, head and row dimensions.
    strides: [usize; 3],
}

impl Rows {
    fn new(tensor: &FlexTensor) -> Self {
        let strides = tensor.layout().strides();
        let in_place = strides[3] == 1 && strides.iter().all(|&s| s >= 0);
        let tensor = if in_place { tensor.clone() } else { tensor.to_contiguous() };
        let (offset, s) = (tensor.layout().start_offset(), tensor.layout().strides());
        let strides = [s[0] as usize, s[1] as usize, s[2] as usize];
        Self { tensor, offset, strides }
    }

    /// Part `part` of a contiguous `[b, l, parts·h·d]` tensor whose rows hold `parts` groups of
    /// `h·d` values (the packed projection: queries, keys, values; or one group, the output's
    /// gradient).
    fn packed(tensor: &FlexTensor, part: usize, parts: usize, dims: &Dims) -> Self {
        let row = parts * dims.width();
        let offset = tensor.layout().start_offset() + part * dims.width();
        Self { tensor: tensor.clone(), offset, strides: [dims.l_q * row, dims.d, row] }
    }

    /// The `rows × cols` matrix of batch item `b`, head `h`.
    fn view(&self, b: usize, h: usize, rows: usize, cols: usize) -> View<'_> {
        let start = self.offset + b * self.strides[0] + h * self.strides[1];
        View { data: &self.tensor.storage()[start..], rows, cols, row_stride: self.strides[2], col_stride: 1 }
    }
}

/// One head's rows inside a batch item's output or gradient (`[l, h, d]`, or the packed
/// `[l, 3·h·d]`): `rows × cols` elements, row `r` at `r · row_stride`.
struct RowsMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
}

impl<'a> RowsMut<'a> {
    fn head(item: &'a mut [f32], h: usize, rows: usize, heads: usize, d: usize) -> Self {
        Self { data: &mut item[h * d..], rows, cols: d, row_stride: heads * d }
    }
}

/// `[b, l, h, d]` values as the `[b, h, l, d]` tensor the caller expects: a transposed view,
/// so that the model's `swap_dims(1, 2)` back to `[b, l, h·d]` is free.
fn heads_last(values: Vec<f32>, dims: &Dims, rows: usize) -> FlexTensor {
    f32_tensor(values, Shape::new([dims.batch, rows, dims.heads, dims.d])).transpose(1, 2)
}

/// On LibTorch: `scaled_dot_product_attention` (flash or memory-efficient kernels on a GPU).
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

    fn fast_self_attention(qkv: FloatTensor<Self>, heads: usize, causal: bool) -> FloatTensor<Self> {
        TchTensor::new(packed_sdpa(&qkv.tensor, heads, causal))
    }
}

/// Under autodiff on LibTorch: one node each, recorded on LibTorch's tape, so the backward is
/// the fused kernel's own backward on what its forward saved.
#[cfg(feature = "tch")]
impl<C: CheckpointStrategy> FastAttentionOps for Autodiff<burn::backend::LibTorch, C> {
    fn fast_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        causal: bool,
    ) -> FloatTensor<Self> {
        taped::<C, _, 3>([q, k, v], |[q, k, v]| (sdpa(q, k, v, causal), ())).0
    }

    fn fast_self_attention(qkv: FloatTensor<Self>, heads: usize, causal: bool) -> FloatTensor<Self> {
        taped::<C, _, 1>([qkv], |[qkv]| (packed_sdpa(qkv, heads, causal), ())).0
    }
}

/// `sdpa` of a packed `[b, l, 3·h·d]` projection, as `[b, l, h·d]`.
#[cfg(feature = "tch")]
fn packed_sdpa(qkv: &tch::Tensor, heads: usize, causal: bool) -> tch::Tensor {
    let [b, l, packed] = qkv.size()[..] else { panic!("self-attention: {:?} is not [b, l, 3·h·d]", qkv.size()) };
    let (h, d) = (heads as i64, packed / (3 * heads as i64));
    let parts = qkv.view([b, l, 3, h, d]).permute([2, 0, 3, 1, 4]);
    sdpa(&parts.get(0), &parts.get(1), &parts.get(2), causal).transpose(1, 2).reshape([b, l, h * d])
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

/// `dst = scale · a · b`, on this thread (the batch items are the parallel tasks): burn-flex's
/// GEMM, whose result does not depend on which thread runs it.
fn matmul(dst: RowsMut<'_>, a: View<'_>, b: View<'_>, scale: f32) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    let dst_fits = m == 0 || n == 0 || (m - 1) * dst.row_stride + n <= dst.data.len();
    assert!(b.rows == k && dst.rows == m && dst.cols == n && dst_fits, "matmul shapes");
    assert!(a.in_bounds() && b.in_bounds(), "matmul operands");
    // SAFETY: the asserts above keep every element gemm reads inside `a.data` and `b.data`,
    // and every element it writes (m rows of n, `row_stride` apart) inside `dst.data`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            1,
            dst.row_stride as isize,
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

/// A whole row-major `rows × cols` buffer as a destination.
fn dense<'a>(data: &'a mut [f32], rows: usize, cols: usize) -> RowsMut<'a> {
    RowsMut { data, rows, cols, row_stride: cols }
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
fn forward_slice(dims: &Dims, [q, k, v]: [View<'_>; 3], scratch: &mut Scratch, out: RowsMut<'_>) {
    matmul(dense(&mut scratch.probs, dims.l_q, dims.l_k), q, k.t(), dims.scale);
    softmax_rows(dims, &mut scratch.probs);
    matmul(out, View::new(&scratch.probs, dims.l_q, dims.l_k), v, 1.0);
}

/// One slice's gradients. With `P` the probabilities and `G` the output's gradient:
/// `dV = Pᵀ G`, `dP = G Vᵀ`, `dS = P ∘ (dP − rowsum(P ∘ dP))`, `dQ = s · dS K`,
/// `dK = s · dSᵀ Q`.
/// They go to head `h`'s rows of `grads`.
fn backward_slice(
    dims: &Dims,
    [q, k, v, grad]: [View<'_>; 4],
    scratch: &mut Scratch,
    grads: &mut ItemGrads<'_>,
    h: usize,
) {
    let (l_q, l_k) = (dims.l_q, dims.l_k);
    matmul(dense(&mut scratch.probs, l_q, l_k), q, k.t(), dims.scale);
    softmax_rows(dims, &mut scratch.probs);
    matmul(grads.rows(2, h, dims), View::new(&scratch.probs, l_q, l_k).t(), grad, 1.0);
    matmul(dense(&mut scratch.dprobs, l_q, l_k), grad, v.t(), 1.0);
    softmax_backward_rows(dims, &scratch.probs, &mut scratch.dprobs, &mut scratch.row);
    let dscores = View::new(&scratch.dprobs, l_q, l_k);
    matmul(grads.rows(0, h, dims), dscores, k, dims.scale);
    matmul(grads.rows(1, h, dims), dscores.t(), q, dims.scale);
}

/// Under autodiff on `flex`: one node each, whose backward is our kernel's.
impl<C: CheckpointStrategy> FastAttentionOps for Autodiff<Flex, C> {
    fn fast_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        causal: bool,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct FastAttention;

        impl Backward<Flex, 3> for FastAttention {
            // The inputs; the probabilities are recomputed (cheaper than keeping `l_q · l_k`
            // floats per slice between the passes).
            type State = (FlexTensor, FlexTensor, FlexTensor, bool);

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                register_gradients::<Flex, _, 3>(ops, grads, |(q, k, v, causal), grad| {
                    let (dq, dk, dv) = flex_attention_backward(q, k, v, grad, causal);
                    [dq, dk, dv]
                });
            }
        }

        let forward = |[q, k, v]: [FlexTensor; 3]| (Flex::fast_attention(q, k, v, causal), ());
        forward_node::<Flex, C, _, _, 3>(FastAttention, [q, k, v], forward, |[q, k, v]| (q, k, v, causal)).0
    }

    fn fast_self_attention(qkv: FloatTensor<Self>, heads: usize, causal: bool) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct FastSelfAttention;

        impl Backward<Flex, 1> for FastSelfAttention {
            // The packed projection; the probabilities are recomputed, as above.
            type State = (FlexTensor, usize, bool);

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                register_gradients::<Flex, _, 1>(ops, grads, |(qkv, heads, causal), grad| {
                    [flex_self_attention_backward(qkv, grad, heads, causal)]
                });
            }
        }

        let forward = |[qkv]: [FlexTensor; 1]| (Flex::fast_self_attention(qkv, heads, causal), ());
        forward_node::<Flex, C, _, _, 1>(FastSelfAttention, [qkv], forward, |[qkv]| (qkv, heads, causal)).0
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

    /// How a test takes attention over a packed `[b, l, 3·h·d]` projection: [`self_attention`]
    /// on the projection itself, or our 4-D [`attention`] or Burn's on its split parts (strided
    /// views, as the blocks used to pass and the ResNet's attention pool still does).
    #[derive(Clone, Copy, PartialEq)]
    enum Packed {
        Whole,
        SplitOurs,
        SplitBurn,
    }

    /// The output and the projection's gradient of `sum(w · attention(qkv))`, two heads.
    fn run_packed(device: &Device, how: Packed, causal: bool) -> [Vec<f32>; 2] {
        let (b, l, h, d) = (3, 9, 2, 8);
        let device = device.clone().autodiff();
        let qkv: Tensor<3> =
            Tensor::from_data(TensorData::new(values(b * l * 3 * h * d, 7), [b, l, 3 * h * d]), &device);
        let qkv = qkv.require_grad();
        let y = if how == Packed::Whole {
            self_attention(qkv.clone(), h, causal)
        } else {
            let [q, k, v] = split_packed(qkv.clone(), h);
            merge_heads(if how == Packed::SplitOurs {
                attention(q, k, v, causal)
            } else {
                let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: causal };
                burn_attention(q, k, v, None, None, options)
            })
        };
        let w: Tensor<3> = Tensor::from_data(TensorData::new(values(b * l * h * d, 8), [b, l, h * d]), &device);
        let grads = (y.clone() * w).sum().backward();
        let dqkv: Vec<f32> = qkv.grad(&grads).expect("gradient").try_into_vec_as().expect("f32 values");
        [y.try_into_vec_as().expect("f32 values"), dqkv]
    }

    /// `how` against Burn's attention of the split parts, causal and not.
    fn packed_matches_burn(device: &Device, how: Packed) {
        for causal in [false, true] {
            let (ours, burns) = (run_packed(device, how, causal), run_packed(device, Packed::SplitBurn, causal));
            for (name, a, b) in [("output", &ours[0], &burns[0]), ("d(qkv)", &ours[1], &burns[1])] {
                let diff = max_diff(a, b);
                assert!(diff < 1e-5, "{name} differs by {diff} (causal {causal})");
                assert!(b.iter().any(|&x| x.abs() > 1e-3), "{name} is not trivially zero");
            }
        }
    }

    #[test]
    fn self_attention_matches_burn_forward_and_gradients() {
        packed_matches_burn(&Device::flex(), Packed::Whole);
    }

    #[test]
    #[cfg(feature = "tch")]
    fn libtorch_self_attention_matches_burn_forward_and_gradients() {
        packed_matches_burn(&Device::libtorch(), Packed::Whole);
    }

    #[test]
    fn strided_views_match_burn_forward_and_gradients() {
        packed_matches_burn(&Device::flex(), Packed::SplitOurs);
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
