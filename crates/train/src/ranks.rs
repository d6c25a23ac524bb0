//! Data parallelism over the processes of a job: every process loads the same batch, takes its
//! contiguous slice of it, scores that slice, and shares the scores, so that every process
//! runs the same selection over the same scores and keeps the same score state; it then trains
//! on the rows it kept (the step sums the gradients over the processes).

use std::ops::Range;

use dissect_data::Batch;
use dissect_dist::Collective;
use dissect_model::burn::tensor::Device;
use dissect_model::{ClipBatch, ClipConfig, RowScores};
use dissect_select::{Selection, Selector};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Which rows a process's selection chooses among.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelectionScope {
    /// Each process keeps the best of its own slice of the batch, scored against its own rows
    /// (as the DISSect authors' multi-GPU code does): no features cross between processes
    /// for scoring, and the loss-based scores see the local batch as their negatives.
    #[default]
    Local,
    /// The best of the whole batch, scored against the whole batch: the scoring features are
    /// gathered, and the selection is the one a single process makes on the same batch.
    Global,
}

/// The contiguous row ranges of the processes' slices: equal for a full batch (the config
/// checks `batch_size % world`); a batch left short by skipped samples gives the first
/// processes one row more, and one with fewer rows than processes leaves the last ones idle.
pub(crate) fn rank_slices(len: usize, world: usize) -> Vec<Range<usize>> {
    let parts = world.min(len).max(1);
    let (base, extra) = (len / parts, len % parts);
    let mut start = 0;
    (0..world)
        .map(|r| {
            let end = if r < parts { start + base + usize::from(r < extra) } else { start };
            let rows = start..end;
            start = end;
            rows
        })
        .collect()
}

/// Rows `rows` of `batch` (with `images`, the training or the scoring crops) as tensors on
/// `device`; `None` for an empty range.
pub(crate) fn slice_batch(
    batch: &Batch,
    images: &[f32],
    rows: &Range<usize>,
    config: &ClipConfig,
    device: &Device,
) -> Result<Option<ClipBatch>> {
    if rows.is_empty() {
        return Ok(None);
    }
    let per_image = images.len() / batch.len().max(1);
    let context = batch.tokens.context_len;
    Ok(Some(ClipBatch::from_host(
        config,
        &images[rows.start * per_image..rows.end * per_image],
        &batch.tokens.ids[rows.start * context..rows.end * context],
        &batch.tokens.eot_positions[rows.clone()],
        device,
    )?))
}

/// Every process's scores of its slice, in rank order, from this process's own.
pub(crate) fn gather_row_scores(own: Option<RowScores>, comm: &dyn Collective) -> Result<Vec<RowScores>> {
    let mine = own.map(|s| [s.clip_scores, s.per_sample_loss].concat()).unwrap_or_default();
    let all = comm.all_gather(&mine).map_err(dissect_model::ModelError::from)?;
    Ok(all
        .into_iter()
        .map(|mut both| {
            let per_sample_loss = both.split_off(both.len() / 2);
            RowScores { clip_scores: both, per_sample_loss }
        })
        .collect())
}

/// Every process's values, in rank order, from this process's own.
pub(crate) fn gather_values(own: Vec<f32>, comm: &dyn Collective) -> Result<Vec<Vec<f32>>> {
    Ok(comm.all_gather(&own).map_err(dissect_model::ModelError::from)?)
}

/// The scores one step selects by, one entry per selection slice (each process's slice with
/// [`SelectionScope::Local`], the whole batch with [`SelectionScope::Global`]).
pub(crate) struct RankScores {
    /// The row ranges the selection chooses among.
    pub slices: Vec<Range<usize>>,
    /// The scoring pass of the model being trained, when the strategy needs it.
    pub current: Option<Vec<RowScores>>,
    /// The frozen reference model's scores (oracle strategies).
    pub reference: Option<Vec<Vec<f32>>>,
}

impl RankScores {
    /// Selects from each slice in order, from the one selector, so every process makes the
    /// same draws and the same state updates.
    pub(crate) fn select(
        &self,
        batch: &Batch,
        selector: &mut Selector,
        (epoch, step): (u32, u64),
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Selection>> {
        self.slices
            .iter()
            .enumerate()
            .map(|(i, rows)| {
                let current = self.current.as_ref().map(|c| &c[i]);
                let input = dissect_select::BatchScores {
                    indices: &batch.indices[rows.clone()],
                    clip_scores: current.map(|s| s.clip_scores.as_slice()),
                    losses: current.map(|s| s.per_sample_loss.as_slice()),
                    reference_scores: self.reference.as_ref().map(|r| r[i].as_slice()),
                };
                Ok(selector.select(&input, epoch, step, rng)?)
            })
            .collect()
    }

    /// The kept rows of `own` (this process's slice), as positions within it.
    pub(crate) fn kept_in(&self, selections: &[Selection], own: &Range<usize>) -> Vec<usize> {
        self.slices
            .iter()
            .zip(selections)
            .flat_map(|(slice, selection)| selection.positions.iter().map(move |&p| slice.start + p))
            .filter(|row| own.contains(row))
            .map(|row| row - own.start)
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
        // Two samples skipped from a batch of 8 on 4 processes.
        assert_eq!(rank_slices(6, 4), vec![0..2, 2..4, 4..5, 5..6]);
        assert_eq!(rank_slices(2, 4), vec![0..1, 1..2, 2..2, 2..2]);
    }
}
