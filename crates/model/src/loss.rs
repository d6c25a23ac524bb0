//! Contrastive losses and per-sample scores.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

use crate::error::ModelError;
use crate::model::ClipOutput;

/// `S = exp(t) · F Gᵀ`, `[b, b]`: row `i` scores image `i` against every caption.
pub fn logits(out: &ClipOutput) -> Tensor<2> {
    let scale = out.logit_scale.clone().exp().reshape([1, 1]);
    out.image_features.clone().matmul(out.text_features.clone().transpose()) * scale
}

/// Per-sample symmetric InfoNCE, `[b]`: `ℓ_j = ½(CE(row j of S) + CE(column j of S))` with the
/// matching caption/image as target.
pub fn per_sample_loss(out: &ClipOutput) -> Tensor<1> {
    let s = logits(out);
    let [b, _] = s.dims();
    let diag = Tensor::<1, Int>::arange(0..b as i64, &s.device()).reshape([b, 1]);
    let image_to_text = log_softmax(s.clone(), 1).gather(1, diag.clone());
    // log_softmax over dim 0 normalises columns; entry (j, j) is caption j's target.
    let text_to_image = log_softmax(s, 0).gather(1, diag);
    (image_to_text + text_to_image).reshape([b]).mul_scalar(-0.5)
}

/// Symmetric InfoNCE over the batch, `[1]`: the mean of image→text and text→image
/// cross-entropy (equal to the mean of [`per_sample_loss`]).
pub fn clip_loss(out: &ClipOutput) -> Tensor<1> {
    per_sample_loss(out).mean()
}

/// CLIPScore `100 · cos(f_j, g_j)` per row, `[b]`, unclamped (features must be L2-normalised).
pub fn clip_scores(image_features: &Tensor<2>, text_features: &Tensor<2>) -> Tensor<1> {
    let [b, _] = image_features.dims();
    (image_features.clone() * text_features.clone()).sum_dim(1).reshape([b]).mul_scalar(100.0)
}

/// negCLIPLoss-style oracle score, `[b]`: the pair's scaled similarity minus the mean of its
/// row and column log-sum-exp over the in-batch contrasts, i.e. `−ℓ_j`. Higher is better.
pub fn neg_clip_loss(out: &ClipOutput) -> Tensor<1> {
    per_sample_loss(out).neg()
}

/// Copies a 1-d float tensor to the host.
pub fn to_vec_f32(t: Tensor<1>) -> Result<Vec<f32>, ModelError> {
    t.try_into_vec_as::<f32>().map_err(|e| ModelError::Data(format!("{e:?}")))
}

/// Copies a one-element tensor to the host.
pub fn scalar_f32(t: Tensor<1>) -> Result<f32, ModelError> {
    let v = to_vec_f32(t)?;
    v.first().copied().ok_or_else(|| ModelError::Data("empty tensor where a scalar was expected".into()))
}
