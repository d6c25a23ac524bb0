//! Row-major feature matrices over borrowed `f32` slices, and the shared dot product.

use crate::error::{EvalError, Result};

/// A borrowed `[rows × dim]` row-major matrix of features.
#[derive(Debug, Clone, Copy)]
pub struct Features<'a> {
    data: &'a [f32],
    rows: usize,
    dim: usize,
}

impl<'a> Features<'a> {
    /// Wraps `data` as rows of `dim` floats. Rejects ragged buffers and non-finite values
    /// (a NaN would silently never rank above anything and corrupt every metric).
    pub fn new(what: &'static str, data: &'a [f32], dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(EvalError::ZeroDim);
        }
        if !data.len().is_multiple_of(dim) {
            return Err(EvalError::RaggedFeatures { what, len: data.len(), dim });
        }
        if let Some(pos) = data.iter().position(|v| !v.is_finite()) {
            return Err(EvalError::NonFinite { what, row: pos / dim });
        }
        Ok(Self { data, rows: data.len() / dim, dim })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Floats per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The whole row-major buffer, `rows() · dim()` floats.
    pub fn data(&self) -> &'a [f32] {
        self.data
    }

    /// Row `i`; callers index within `rows()`.
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// Dot product with 8 independent accumulators so the compiler vectorises it.
///
/// Every similarity in this crate goes through this one function: the retrieval ranks compare
/// scores computed in different loops, and only an identical summation order guarantees that
/// a pair compared with itself is bit-for-bit equal (so the correct candidate at the best score
/// is found again in the counting pass and subtracted).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    reduce(&acc, tail_dot(ra, rb))
}

#[inline(always)]
fn tail_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut tail = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        tail += x * y;
    }
    tail
}

#[inline(always)]
fn reduce(acc: &[f32; 8], tail: f32) -> f32 {
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// L2-normalises `v` in place; a zero vector stays zero (there is no direction to keep).
pub fn normalize(v: &mut [f32]) {
    let n = dot(v, v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}
