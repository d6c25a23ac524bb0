//! A batch of image-text pairs as tensors, built from the loader's host buffers.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::config::ClipConfig;
use crate::error::ModelError;

/// One batch of image-text pairs as tensors.
#[derive(Debug, Clone)]
pub struct ClipBatch {
    /// `[b, c, h, w]` normalised pixels.
    pub images: Tensor<4>,
    /// `[b, l]` token ids, `l ≤ context_length`.
    pub tokens: Tensor<2, Int>,
    /// `[b]` end-of-text position of each row.
    pub eot: Tensor<1, Int>,
}

impl ClipBatch {
    /// Builds a batch from host buffers, checking every size and index against `cfg`.
    ///
    /// `images` is `b·c·h·w` floats in NCHW order, `tokens` is `b·l` ids row by row.
    pub fn from_host(
        cfg: &ClipConfig,
        images: &[f32],
        tokens: &[u32],
        eot: &[usize],
        device: &Device,
    ) -> Result<Self, ModelError> {
        let b = eot.len();
        if b == 0 {
            return Err(ModelError::Batch("empty batch".into()));
        }
        let per_image = cfg.channels() * cfg.image_size() * cfg.image_size();
        if images.len() != b * per_image {
            return Err(ModelError::Batch(format!("{} image floats for {b} rows of {per_image}", images.len())));
        }
        if !tokens.len().is_multiple_of(b) {
            return Err(ModelError::Batch(format!("{} tokens do not split into {b} rows", tokens.len())));
        }
        let l = tokens.len() / b;
        if l == 0 || l > cfg.text.context_length {
            return Err(ModelError::Batch(format!(
                "token rows of length {l}, expected 1..={}",
                cfg.text.context_length
            )));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= cfg.text.vocab_size) {
            return Err(ModelError::Batch(format!("token id {bad} outside the vocabulary of {}", cfg.text.vocab_size)));
        }
        if let Some(&bad) = eot.iter().find(|&&p| p >= l) {
            return Err(ModelError::Batch(format!("end-of-text position {bad} outside rows of length {l}")));
        }
        let s = cfg.image_size();
        let images = Tensor::from_data(TensorData::new(images.to_vec(), [b, cfg.channels(), s, s]), device);
        let tokens = Tensor::from_data(TensorData::new(tokens.iter().map(|&t| t as i64).collect(), [b, l]), device);
        Ok(Self { images, tokens, eot: index_tensor(eot, device) })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.images.dims()[0]
    }

    /// Always false for a batch built by [`ClipBatch::from_host`].
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows `rows` (in that order) as a new batch on the same device — the training pass
    /// of a selected step.
    pub fn select_rows(&self, rows: &[usize]) -> Result<Self, ModelError> {
        let b = self.len();
        if rows.is_empty() {
            return Err(ModelError::Batch("no rows selected".into()));
        }
        if let Some(&bad) = rows.iter().find(|&&r| r >= b) {
            return Err(ModelError::Batch(format!("selected row {bad} of a batch of {b}")));
        }
        let idx = index_tensor(rows, &self.images.device());
        Ok(Self {
            images: self.images.clone().select(0, idx.clone()),
            tokens: self.tokens.clone().select(0, idx.clone()),
            eot: self.eot.clone().select(0, idx),
        })
    }

    /// The same batch on `device` (e.g. the autodiff device of the training model).
    pub fn to_device(&self, device: &Device) -> Self {
        Self {
            images: self.images.clone().to_device(device),
            tokens: self.tokens.clone().to_device(device),
            eot: self.eot.clone().to_device(device),
        }
    }
}

pub(crate) fn index_tensor(values: &[usize], device: &Device) -> Tensor<1, Int> {
    let data: Vec<i64> = values.iter().map(|&v| v as i64).collect();
    Tensor::from_data(TensorData::new(data, [values.len()]), device)
}
