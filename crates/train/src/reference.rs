//! The frozen reference model of the oracle strategies (`oracle-clipscore`,
//! `oracle-cliploss`): a trained run loaded once, scoring each batch with its own tokenizer.

use std::sync::Arc;

use dissect_data::{Batch, TextTokenizer};
use dissect_model::burn::tensor::Device;
use dissect_model::{Clip, ClipBatch, ClipConfig};
use dissect_select::Strategy;

use crate::checkpoint::load_trained;
use crate::config::TrainConfig;
use crate::error::Result;

/// The frozen reference model of the oracle strategies, with its own tokenizer.
pub(crate) struct Reference {
    model: Clip,
    config: ClipConfig,
    tokenizer: Arc<TextTokenizer>,
}

pub(crate) fn reference(config: &TrainConfig, device: &Device) -> Result<Option<Reference>> {
    match (&config.reference, config.selection.strategy.is_oracle()) {
        (Some(path), true) => {
            let (model, config, tokenizer) = load_trained(path, device)?;
            Ok(Some(Reference { model, config, tokenizer }))
        }
        _ => Ok(None),
    }
}

impl Reference {
    /// Scores of the rows of `batch` (a process's part of the step's batch: negCLIPLoss
    /// contrasts against that part's rows), tokenized with the reference run's own tokenizer.
    pub(crate) fn scores(&self, strategy: Strategy, batch: &Batch, device: &Device) -> Result<Vec<f32>> {
        let captions: Vec<&str> = batch.captions.iter().map(String::as_str).collect();
        let tokens = self.tokenizer.encode_batch(&captions, self.config.text.context_length)?;
        let images = batch.scoring_images();
        let host = ClipBatch::from_host(&self.config, images, &tokens.ids, &tokens.eot_positions, device)?;
        let out = self.model.forward(host.images, host.tokens, host.eot);
        let scores = match strategy {
            Strategy::OracleCliploss => dissect_model::neg_clip_loss(&out),
            _ => dissect_model::clip_scores(&out.image_features, &out.text_features),
        };
        Ok(dissect_model::to_vec_f32(scores)?)
    }
}
