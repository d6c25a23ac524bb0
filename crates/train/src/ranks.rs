//! Data parallelism over the processes of a job: every process reads the same batch and
//! decodes its contiguous part of it, the processes share the rows' indices and scores, so
//! that every process runs the same selection over the same scores and keeps the same score
//! state; each then trains on the rows it kept (the step sums the gradients over the processes).

use std::borrow::Cow;
use std::ops::Range;

use dissect_data::Batch;
use dissect_dist::{Collective, DistError};
use dissect_model::burn::tensor::Device;
use dissect_model::{ClipBatch, ClipConfig, RowScores};
use dissect_select::{Selection, Selector};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

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

/// One step's batch as every process sees it: the rows of all processes, in rank order.
pub(crate) struct JobRows<'a> {
    /// Every process's rows without their images (in a run of one process, its batch itself):
    /// indices, ground-truth flags, classes and the decode failures, for selection and accounting.
    pub batch: Cow<'a, Batch>,
    /// Each process's rows within `batch`.
    pub slices: Vec<Range<usize>>,
    /// This process's rows within `batch`.
    pub own: Range<usize>,
}

impl<'a> JobRows<'a> {
    /// The job's rows from this process's part `local` of the batch (one all-gather of a few
    /// bytes a row); `carried` decode failures of earlier batches that had no row are added.
    pub(crate) fn gather(local: &'a Batch, comm: &dyn Collective, carried: u64) -> Result<Self> {
        if comm.world_size() == 1 && carried == 0 {
            let own = 0..local.len();
            return Ok(JobRows { batch: Cow::Borrowed(local), slices: vec![own.clone()], own });
        }
        let parts = comm.all_gather_bytes(&encode_rows(local))?;
        let mut all = Batch { batch_number: local.batch_number, image_size: local.image_size, ..Batch::default() };
        all.corrupt_images = carried;
        let mut slices = Vec::with_capacity(parts.len());
        for part in &parts {
            let start = all.len();
            decode_rows(part, &mut all)?;
            slices.push(start..all.len());
        }
        let own = slices[comm.rank()].clone();
        Ok(JobRows { batch: Cow::Owned(all), slices, own })
    }
}

/// A part's decode failures, then per row its index, ground-truth flag and class.
fn encode_rows(part: &Batch) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8 + part.len() * 17);
    bytes.extend(part.corrupt_images.to_le_bytes());
    for ((index, noisy), class) in part.indices.iter().zip(&part.noisy).zip(&part.classes) {
        bytes.extend(index.to_le_bytes());
        bytes.push(match noisy {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        });
        bytes.extend(class.map_or(u64::MAX, u64::from).to_le_bytes());
    }
    bytes
}

/// Appends the rows [`encode_rows`] wrote to `all`.
fn decode_rows(bytes: &[u8], all: &mut Batch) -> Result<()> {
    let broken = || TrainError::Distributed(DistError::Malformed("its list of rows".into()));
    let (corrupt, rows) = bytes.split_at_checked(8).ok_or_else(broken)?;
    all.corrupt_images += u64::from_le_bytes(corrupt.try_into().map_err(|_| broken())?);
    if !rows.len().is_multiple_of(17) {
        return Err(broken());
    }
    for row in rows.chunks_exact(17) {
        let word = |at: usize| u64::from_le_bytes(row[at..at + 8].try_into().unwrap_or_default());
        all.indices.push(word(0));
        all.noisy.push(match row[8] {
            0 => None,
            1 => Some(false),
            _ => Some(true),
        });
        all.classes.push(u32::try_from(word(9)).ok());
    }
    Ok(())
}

/// This process's part `batch` (with `images`, the training or the scoring crops) as tensors
/// on `device`; `None` when the part has no row.
pub(crate) fn part_tensors(
    batch: &Batch,
    images: &[f32],
    config: &ClipConfig,
    device: &Device,
) -> Result<Option<ClipBatch>> {
    if batch.is_empty() {
        return Ok(None);
    }
    let tokens = &batch.tokens;
    Ok(Some(ClipBatch::from_host(config, images, &tokens.ids, &tokens.eot_positions, device)?))
}

/// Every process's scores of its slice, in rank order, from this process's own.
pub(crate) fn gather_row_scores(own: Option<RowScores>, comm: &dyn Collective) -> Result<Vec<RowScores>> {
    let mine = own.map(|s| [s.clip_scores, s.per_sample_loss].concat()).unwrap_or_default();
    let all = comm.all_gather(&mine)?;
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
    Ok(comm.all_gather(&own)?)
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
    use super::*;

    #[test]
    fn rows_travel_between_processes_intact() {
        let part = |indices: Vec<u64>, corrupt: u64| Batch {
            noisy: indices.iter().map(|&i| [None, Some(false), Some(true)][i as usize % 3]).collect(),
            classes: indices.iter().map(|&i| (i % 2 == 0).then_some(i as u32)).collect(),
            indices,
            corrupt_images: corrupt,
            ..Batch::default()
        };
        let (a, b) = (part(vec![4, 9, 12], 1), part(vec![], 2));
        let mut all = Batch::default();
        decode_rows(&encode_rows(&a), &mut all).unwrap();
        decode_rows(&encode_rows(&b), &mut all).unwrap();
        assert_eq!((all.indices, all.noisy, all.classes), (a.indices, a.noisy, a.classes));
        assert_eq!(all.corrupt_images, 3);
        assert!(decode_rows(&[0; 9], &mut Batch::default()).is_err());
    }
}
