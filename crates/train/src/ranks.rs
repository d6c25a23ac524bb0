//! Data parallelism inside one step: each rank takes a contiguous slice of the batch,
//! scores it on its own device, selects from it and trains on what it kept.

use std::ops::Range;

use dissect_data::Batch;
use dissect_model::burn::tensor::Device;
use dissect_model::{ClipBatch, ClipConfig, RowScores};
use dissect_select::{Selection, Selector};
use rand_chacha::ChaCha8Rng;

use crate::error::Result;

/// The contiguous row ranges of the ranks' local batches: equal for a full batch (the config
/// checks `batch_size % ranks`); a batch left short by skipped samples gives the first ranks
/// one row more, and one with fewer rows than ranks leaves the last ranks idle this step.
pub(crate) fn rank_slices(len: usize, ranks: usize) -> Vec<Range<usize>> {
    let parts = ranks.min(len).max(1);
    let (base, extra) = (len / parts, len % parts);
    let mut start = 0;
    (0..parts)
        .map(|r| {
            let end = start + base + usize::from(r < extra);
            let rows = start..end;
            start = end;
            rows
        })
        .collect()
}

/// Each rank's rows of `batch` as tensors on its device.
pub(crate) fn rank_batches(
    batch: &Batch,
    images: &[f32],
    ranks: &[Range<usize>],
    config: &ClipConfig,
    devices: &[Device],
) -> Result<Vec<ClipBatch>> {
    let per_image = images.len() / batch.len().max(1);
    let context = batch.tokens.context_len;
    ranks
        .iter()
        .zip(devices)
        .map(|(rows, device)| {
            Ok(ClipBatch::from_host(
                config,
                &images[rows.start * per_image..rows.end * per_image],
                &batch.tokens.ids[rows.start * context..rows.end * context],
                &batch.tokens.eot_positions[rows.clone()],
                device,
            )?)
        })
        .collect()
}

/// The scores one step selects by, per rank.
pub(crate) struct RankScores {
    /// The scoring pass of the model being trained, when the strategy needs it.
    pub current: Option<Vec<RowScores>>,
    /// The frozen reference model's scores (oracle strategies).
    pub reference: Option<Vec<Vec<f32>>>,
}

impl RankScores {
    /// Each rank selects from its own slice, in rank order, from the one selector, so the
    /// state updates and the RNG draws are the same however the ranks' threads were timed.
    pub(crate) fn select(
        &self,
        batch: &Batch,
        ranks: &[Range<usize>],
        selector: &mut Selector,
        (epoch, step): (u32, u64),
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Selection>> {
        ranks
            .iter()
            .enumerate()
            .map(|(rank, rows)| {
                let current = self.current.as_ref().map(|c| &c[rank]);
                let input = dissect_select::BatchScores {
                    indices: &batch.indices[rows.clone()],
                    clip_scores: current.map(|s| s.clip_scores.as_slice()),
                    losses: current.map(|s| s.per_sample_loss.as_slice()),
                    reference_scores: self.reference.as_ref().map(|r| r[rank].as_slice()),
                };
                Ok(selector.select(&input, epoch, step, rng)?)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::rank_slices;

    #[test]
    fn rank_slices_cover_the_batch_in_order() {
        assert_eq!(rank_slices(8, 1), vec![0..8]);
        assert_eq!(rank_slices(8, 2), vec![0..4, 4..8]);
        // Two samples skipped from a batch of 8 on 4 ranks.
        assert_eq!(rank_slices(6, 4), vec![0..2, 2..4, 4..5, 5..6]);
        assert_eq!(rank_slices(2, 4), vec![0..1, 1..2]);
    }
}
