//! CLIPScore of matched pairs against random (shifted) pairs.

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::features::{Features, dot};

/// `100 · max(0, cos(a, b))` for L2-normalised `a` and `b`.
pub fn clip_score(a: &[f32], b: &[f32]) -> f32 {
    100.0 * dot(a, b).max(0.0)
}

/// Mean CLIPScore of matched pairs (row i with row i) and of mismatched pairs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClipScoreReport {
    /// Mean CLIPScore of matched pairs (image i with text i), 0–100.
    pub matched: f64,
    /// Mean CLIPScore of the shifted pairs, 0–100.
    pub random: f64,
    /// The cyclic shift used for the mismatched pairs (image i with text (i + shift) mod n).
    pub shift: usize,
}

/// Matched vs random-pair CLIPScore. Random pairs are image `i` with text `(i + shift) mod n`,
/// `shift` drawn uniformly from `1..n` by `seed`: a cyclic shift never pairs a row with itself
/// and uses every text exactly once, unlike independent random draws.
pub fn clip_score_matched_vs_random(images: Features<'_>, texts: Features<'_>, seed: u64) -> Result<ClipScoreReport> {
    if images.dim() != texts.dim() {
        return Err(EvalError::DimMismatch { what: "text features", expected: images.dim(), got: texts.dim() });
    }
    if images.rows() != texts.rows() {
        return Err(EvalError::LengthMismatch { what: "paired text rows", expected: images.rows(), got: texts.rows() });
    }
    let n = images.rows();
    if n < 2 {
        return Err(EvalError::Empty("need at least 2 pairs for random pairing"));
    }
    let shift = rand_chacha::ChaCha8Rng::seed_from_u64(seed).random_range(1..n);
    let mean = |off: usize| {
        (0..n).map(|i| f64::from(clip_score(images.row(i), texts.row((i + off) % n)))).sum::<f64>() / n as f64
    };
    Ok(ClipScoreReport { matched: mean(0), random: mean(shift), shift })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matched_vs_shifted() {
        // Orthonormal rows: matched cos = 1, any shift gives cos = 0; a negative cos clamps to 0.
        let img = [1.0f32, 0.0, 0.0, 1.0, -1.0, 0.0];
        let txt = [1.0f32, 0.0, 0.0, 1.0, 0.0, -1.0];
        let i = Features::new("i", &img, 2).unwrap();
        let t = Features::new("t", &txt, 2).unwrap();
        let r = clip_score_matched_vs_random(i, t, 3).unwrap();
        // matched: 100, 100, 0 (cos(-x, -y) = 0) → 66.67
        assert!((r.matched - 200.0 / 3.0).abs() < 1e-9);
        assert!((1..3).contains(&r.shift));
        assert_eq!(clip_score(&[1.0, 0.0], &[-1.0, 0.0]), 0.0);
        let one = Features::new("i", &img[..2], 2).unwrap();
        assert!(clip_score_matched_vs_random(one, one, 0).is_err());
    }
}
