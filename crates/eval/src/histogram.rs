//! One histogram type for every score histogram dissect reports: the selected rows'
//! CLIPScores per epoch (trainer logs, report plots) and histograms built from visit records.

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

/// Counts over uniform bins. `counts[i]` counts values in `[edges[i], edges[i+1])`; values
/// below the first edge fall into the first bin and values at or above the last edge into the
/// last, so nothing is lost. `noisy`, while every value added carried a ground-truth flag, is
/// the noisy part of each bin; one value without a flag drops the split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// `bins + 1` increasing bin edges.
    pub edges: Vec<f64>,
    /// Values per bin.
    pub counts: Vec<u64>,
    /// Noisy values per bin, while known.
    pub noisy: Option<Vec<u64>>,
}

/// CLIPScore range of [`Histogram::clip_scores`]: `100 · cos` lies in `[-100, 100]` and
/// trained pairs sit well above -20.
const CLIP_SCORE_RANGE: (f64, f64) = (-20.0, 100.0);
const CLIP_SCORE_BINS: usize = 24;

impl Histogram {
    /// `bins` empty bins of equal width over `[lo, hi)`.
    pub fn uniform(lo: f64, hi: f64, bins: usize) -> Result<Self> {
        if bins == 0 {
            return Err(EvalError::Invalid("histogram needs at least one bin".into()));
        }
        if !(lo.is_finite() && hi.is_finite() && hi > lo) {
            return Err(EvalError::Invalid(format!("histogram range [{lo}, {hi}) is empty or not finite")));
        }
        Ok(Self::empty(lo, hi, bins))
    }

    /// The fixed CLIPScore bins shared by every epoch and run, so that panels and runs compare.
    pub fn clip_scores() -> Self {
        let (lo, hi) = CLIP_SCORE_RANGE;
        Self::empty(lo, hi, CLIP_SCORE_BINS)
    }

    /// Empty bins over a range the caller has checked.
    fn empty(lo: f64, hi: f64, bins: usize) -> Self {
        let width = (hi - lo) / bins as f64;
        Histogram {
            edges: (0..=bins).map(|i| lo + width * i as f64).collect(),
            counts: vec![0; bins],
            noisy: Some(vec![0; bins]),
        }
    }

    /// Number of bins.
    pub fn bins(&self) -> usize {
        self.counts.len()
    }

    /// Values counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Counts `value` (non-finite values are ignored) with its ground-truth flag, if known.
    pub fn add(&mut self, value: f64, noisy: Option<bool>) {
        if !value.is_finite() || self.counts.is_empty() {
            return;
        }
        let (lo, hi) = (self.edges[0], self.edges[self.bins()]);
        let width = (hi - lo) / self.bins() as f64;
        let bin = (((value - lo) / width).floor().max(0.0) as usize).min(self.bins() - 1);
        self.counts[bin] += 1;
        match noisy {
            Some(flag) => {
                if let Some(split) = self.noisy.as_mut() {
                    split[bin] += u64::from(flag);
                }
            }
            None => self.noisy = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_their_bins_and_out_of_range_values_at_the_ends() {
        let mut h = Histogram::uniform(0.0, 10.0, 5).unwrap();
        assert_eq!(h.edges, [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        for (v, noisy) in [(0.0, false), (1.99, true), (2.0, false), (9.99, true), (10.0, false), (-3.0, true)] {
            h.add(v, Some(noisy));
        }
        h.add(f64::NAN, Some(true));
        assert_eq!(h.counts, [3, 1, 0, 0, 2]);
        assert_eq!(h.noisy.as_deref(), Some(&[2, 0, 0, 0, 1][..]));
        assert_eq!(h.total(), 6);
        h.add(5.0, None);
        assert_eq!((h.counts[2], h.noisy.is_none()), (1, true), "one unflagged value drops the split");
    }

    #[test]
    fn clip_score_bins_are_five_points_wide_from_minus_twenty() {
        let h = Histogram::clip_scores();
        assert_eq!((h.bins(), h.edges[0], h.edges[1], h.edges[24]), (24, -20.0, -15.0, 100.0));
        assert!(Histogram::uniform(1.0, 1.0, 3).is_err() && Histogram::uniform(0.0, 1.0, 0).is_err());
    }
}
