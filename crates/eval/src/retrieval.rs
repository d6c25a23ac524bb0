//! Image→text (TR) and text→image (IR) retrieval: Recall@1/5/10, mean and median rank.
//!
//! Rules (also in the crate README):
//! - **Shared captions**: texts are grouped by exact caption string. For text→image, every
//!   image owning a text with the query's exact caption is a correct answer. For image→text,
//!   every text whose caption equals one of the image's own captions is a correct answer.
//! - **Rank** of a query = 1 + the number of *wrong* candidates scoring *at least as high* as
//!   the best-scoring correct candidate. A tie never counts as a win: a wrong candidate tied
//!   with the best correct one pushes it down, so a split of identical images (or identical
//!   captions) scores at or below chance, not 100%. This is stricter than open_clip's
//!   `get_clip_metrics`, which sorts and lets the sort order break ties.
//! - Recall@K is the percentage (0–100) of queries with rank ≤ K.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::features::{Features, dot};

/// Ground truth for retrieval: which texts are correct for which images.
#[derive(Debug, Clone)]
pub struct RetrievalTargets {
    n_images: usize,
    /// Caption group of every text.
    text_group: Vec<u32>,
    /// Distinct images owning at least one text of the group.
    group_images: Vec<Vec<u32>>,
    /// All texts of the group.
    group_texts: Vec<Vec<u32>>,
    /// Distinct caption groups of every image.
    image_groups: Vec<Vec<u32>>,
}

impl RetrievalTargets {
    /// Ground truth where identical caption strings are shared hits (see module docs).
    /// `text_image[t]` is the image text `t` was written for; `captions[t]` its string.
    pub fn from_captions<S: AsRef<str>>(n_images: usize, text_image: &[usize], captions: &[S]) -> Result<Self> {
        if captions.len() != text_image.len() {
            return Err(EvalError::LengthMismatch {
                what: "captions vs text_image",
                expected: text_image.len(),
                got: captions.len(),
            });
        }
        let mut ids: HashMap<&str, u32> = HashMap::new();
        let groups: Vec<u32> = captions
            .iter()
            .map(|c| {
                let next = ids.len() as u32;
                *ids.entry(c.as_ref()).or_insert(next)
            })
            .collect();
        Self::build(n_images, text_image, groups, ids.len())
    }

    /// Ground truth without caption sharing: a text is correct only for its own image.
    pub fn from_text_image(n_images: usize, text_image: &[usize]) -> Result<Self> {
        let groups = (0..text_image.len() as u32).collect();
        Self::build(n_images, text_image, groups, text_image.len())
    }

    fn build(n_images: usize, text_image: &[usize], text_group: Vec<u32>, n_groups: usize) -> Result<Self> {
        let mut group_images = vec![Vec::new(); n_groups];
        let mut group_texts = vec![Vec::new(); n_groups];
        let mut image_groups = vec![Vec::new(); n_images];
        for (t, (&img, &g)) in text_image.iter().zip(&text_group).enumerate() {
            if img >= n_images {
                return Err(EvalError::IndexOutOfRange { what: "text_image", index: img, bound: n_images });
            }
            group_texts[g as usize].push(t as u32);
            group_images[g as usize].push(img as u32);
            image_groups[img].push(g);
        }
        for v in group_images.iter_mut().chain(image_groups.iter_mut()) {
            v.sort_unstable();
            v.dedup();
        }
        if let Some(i) = image_groups.iter().position(Vec::is_empty) {
            return Err(EvalError::ImageWithoutText(i));
        }
        Ok(Self { n_images, text_group, group_images, group_texts, image_groups })
    }

    /// Number of images.
    pub fn n_images(&self) -> usize {
        self.n_images
    }

    /// Number of texts.
    pub fn n_texts(&self) -> usize {
        self.text_group.len()
    }
}

/// Metrics for one retrieval direction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetrievalMetrics {
    /// Recall@K in percent (0–100).
    pub r1: f64,
    /// Recall@5 in percent (0–100).
    pub r5: f64,
    /// Recall@10 in percent (0–100).
    pub r10: f64,
    /// Mean of the 1-based ranks.
    pub mean_rank: f64,
    /// Median of the ranks (mean of the two middle ones for an even count).
    pub median_rank: f64,
    /// Number of queries (ranks) summarised.
    pub queries: usize,
}

impl RetrievalMetrics {
    /// Summarises 1-based ranks; `ranks` must be non-empty.
    pub fn from_ranks(ranks: &[u32]) -> Result<Self> {
        if ranks.is_empty() {
            return Err(EvalError::Empty("no retrieval queries"));
        }
        let n = ranks.len() as f64;
        let pct = |k: u32| 100.0 * ranks.iter().filter(|&&r| r <= k).count() as f64 / n;
        let mut sorted = ranks.to_vec();
        sorted.sort_unstable();
        let m = sorted.len();
        let median = if m % 2 == 1 {
            f64::from(sorted[m / 2])
        } else {
            (f64::from(sorted[m / 2 - 1]) + f64::from(sorted[m / 2])) / 2.0
        };
        Ok(Self {
            r1: pct(1),
            r5: pct(5),
            r10: pct(10),
            mean_rank: ranks.iter().map(|&r| f64::from(r)).sum::<f64>() / n,
            median_rank: median,
            queries: ranks.len(),
        })
    }
}

/// Both directions: `image_to_text` is TR (text retrieval), `text_to_image` is IR.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetrievalReport {
    /// Image→text (TR): one query per image.
    pub image_to_text: RetrievalMetrics,
    /// Text→image (IR): one query per text.
    pub text_to_image: RetrievalMetrics,
}

impl RetrievalReport {
    /// `(TR R@1 + IR R@1) / 2`, the scalar the comparison table tracks over time.
    pub fn mean_r1(&self) -> f64 {
        (self.image_to_text.r1 + self.text_to_image.r1) / 2.0
    }
}

/// Per-query 1-based ranks for both directions.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrievalRanks {
    /// Rank of every image query, indexed by image.
    pub image_to_text: Vec<u32>,
    /// Rank of every text query, indexed by text.
    pub text_to_image: Vec<u32>,
}

// Block sizes: 32 image rows × 128 text rows of 512 floats (64 KiB + 256 KiB) stay in L2 while
// each image row is reused across the text block from L1.
const IMG_BLOCK: usize = 32;
const TXT_BLOCK: usize = 128;

/// Ranks of every query in both directions (see module docs for the rule).
///
/// The similarity matrix is never stored: the best correct score of every query, and how many
/// correct candidates reach it, are computed first from the ground-truth pairs only; then one
/// blocked pass over all image×text pairs counts, per row and per column, the candidates
/// scoring at least as high. The wrong ones among them are that count less the correct ones.
/// `threads` (≥ 1) splits the image rows with `std::thread::scope`.
pub fn retrieval_ranks(
    images: Features<'_>,
    texts: Features<'_>,
    targets: &RetrievalTargets,
    threads: usize,
) -> Result<RetrievalRanks> {
    if images.dim() != texts.dim() {
        return Err(EvalError::DimMismatch { what: "text features", expected: images.dim(), got: texts.dim() });
    }
    if images.rows() != targets.n_images {
        return Err(EvalError::LengthMismatch {
            what: "image rows vs targets",
            expected: targets.n_images,
            got: images.rows(),
        });
    }
    if texts.rows() != targets.n_texts() {
        return Err(EvalError::LengthMismatch {
            what: "text rows vs targets",
            expected: targets.n_texts(),
            got: texts.rows(),
        });
    }
    if images.rows() == 0 || texts.rows() == 0 {
        return Err(EvalError::Empty("no images or no texts"));
    }

    // Best correct score per image row (over texts of its caption groups) and per text column
    // (over images sharing its caption group), with the number of correct candidates at it.
    let (row_best, row_correct_at_best): (Vec<f32>, Vec<u32>) = (0..images.rows())
        .map(|i| {
            let im = images.row(i);
            best_of(
                targets.image_groups[i]
                    .iter()
                    .flat_map(|&g| &targets.group_texts[g as usize])
                    .map(|&t| dot(im, texts.row(t as usize))),
            )
        })
        .unzip();
    let (col_best, col_correct_at_best): (Vec<f32>, Vec<u32>) = (0..texts.rows())
        .map(|t| {
            let tx = texts.row(t);
            best_of(
                targets.group_images[targets.text_group[t] as usize].iter().map(|&i| dot(images.row(i as usize), tx)),
            )
        })
        .unzip();

    let n_img = images.rows();
    let threads = threads.clamp(1, n_img.div_ceil(IMG_BLOCK));
    // Split on block boundaries so every thread gets whole blocks.
    let blocks_per_thread = n_img.div_ceil(IMG_BLOCK).div_ceil(threads);
    let chunk = blocks_per_thread * IMG_BLOCK;

    let mut row_above = vec![0u32; n_img];
    let mut col_above = vec![0u32; texts.rows()];
    let partial_cols: Vec<Vec<u32>> = std::thread::scope(|s| {
        let handles: Vec<_> = row_above
            .chunks_mut(chunk)
            .zip(row_best.chunks(chunk))
            .enumerate()
            .map(|(c, (rows_out, rows_best))| {
                let col_best = &col_best;
                s.spawn(move || count_above(images, texts, c * chunk, rows_best, col_best, rows_out))
            })
            .collect();
        handles
            .into_iter()
            // A panic in a worker is a bug in this crate, not a user error: propagate it.
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    for part in partial_cols {
        for (acc, v) in col_above.iter_mut().zip(part) {
            *acc += v;
        }
    }
    // Every correct candidate at the best score was counted too (a score equals itself: all
    // go through one dot product); the rest are the wrong candidates at or above it.
    let rank = |at_or_above: Vec<u32>, correct: Vec<u32>| -> Vec<u32> {
        at_or_above.into_iter().zip(correct).map(|(n, c)| 1 + n - c).collect()
    };
    Ok(RetrievalRanks {
        image_to_text: rank(row_above, row_correct_at_best),
        text_to_image: rank(col_above, col_correct_at_best),
    })
}

/// The best of a query's correct scores and how many correct candidates reach it.
fn best_of(scores: impl Iterator<Item = f32> + Clone) -> (f32, u32) {
    let best = scores.clone().fold(f32::NEG_INFINITY, f32::max);
    (best, scores.filter(|&s| s >= best).count() as u32)
}

/// Blocked pass over image rows `row0..row0 + rows_best.len()` × all texts, counting the
/// candidates scoring at least each query's best correct score; returns this worker's per-text
/// counts and fills `rows_out` with per-image counts.
fn count_above(
    images: Features<'_>,
    texts: Features<'_>,
    row0: usize,
    rows_best: &[f32],
    col_best: &[f32],
    rows_out: &mut [u32],
) -> Vec<u32> {
    let mut cols = vec![0u32; texts.rows()];
    let n = rows_best.len();
    for ib in (0..n).step_by(IMG_BLOCK) {
        let ie = (ib + IMG_BLOCK).min(n);
        for tb in (0..texts.rows()).step_by(TXT_BLOCK) {
            let te = (tb + TXT_BLOCK).min(texts.rows());
            for i in ib..ie {
                let im = images.row(row0 + i);
                let rb = rows_best[i];
                let mut above = 0u32;
                for t in tb..te {
                    let s = dot(im, texts.row(t));
                    above += u32::from(s >= rb);
                    cols[t] += u32::from(s >= col_best[t]);
                }
                rows_out[i] += above;
            }
        }
    }
    cols
}

/// TR and IR Recall@1/5/10 and mean/median rank. See [`retrieval_ranks`].
pub fn retrieval_metrics(
    images: Features<'_>,
    texts: Features<'_>,
    targets: &RetrievalTargets,
    threads: usize,
) -> Result<RetrievalReport> {
    let ranks = retrieval_ranks(images, texts, targets, threads)?;
    Ok(RetrievalReport {
        image_to_text: RetrievalMetrics::from_ranks(&ranks.image_to_text)?,
        text_to_image: RetrievalMetrics::from_ranks(&ranks.text_to_image)?,
    })
}

/// Number of worker threads to use by default: at most 2, as the project's CPU budget is 2 cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get().min(2)).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(data: &[f32], dim: usize) -> Features<'_> {
        Features::new("test", data, dim).unwrap()
    }

    /// Brute force over a dense matrix, written independently of the blocked path.
    fn brute(img: &[f32], txt: &[f32], dim: usize, caps: &[&str], owner: &[usize]) -> RetrievalRanks {
        let ni = img.len() / dim;
        let nt = txt.len() / dim;
        let s = |i: usize, t: usize| dot(&img[i * dim..][..dim], &txt[t * dim..][..dim]);
        let correct = |i: usize, t: usize| (0..nt).any(|u| owner[u] == i && caps[u] == caps[t]);
        let rank = |scores: Vec<(f32, bool)>| {
            let best = scores.iter().filter(|x| x.1).map(|x| x.0).fold(f32::NEG_INFINITY, f32::max);
            1 + scores.iter().filter(|x| !x.1 && x.0 >= best).count() as u32
        };
        RetrievalRanks {
            image_to_text: (0..ni).map(|i| rank((0..nt).map(|t| (s(i, t), correct(i, t))).collect())).collect(),
            text_to_image: (0..nt).map(|t| rank((0..ni).map(|i| (s(i, t), correct(i, t))).collect())).collect(),
        }
    }

    #[test]
    fn hand_computed_ranks_with_ties_and_shared_captions() {
        // 1-D features make every score a product we can read off.
        // images: 1.0, 0.5, -1.0 ; texts: 1.0 ("a", img0), 0.5 ("b", img1),
        // -1.0 ("c", img2), 0.5 ("a", img2)
        let img = [1.0f32, 0.5, -1.0];
        let txt = [1.0f32, 0.5, -1.0, 0.5];
        let caps = ["a", "b", "c", "a"];
        let owner = [0usize, 1, 2, 2];
        let tg = RetrievalTargets::from_captions(3, &owner, &caps).unwrap();
        let r = retrieval_ranks(f(&img, 1), f(&txt, 1), &tg, 1).unwrap();
        // img0 scores texts [1, .5, -1, .5]; correct = texts with caption "a" (t0, t3): best 1 → rank 1.
        // img1 scores [.5, .25, -.5, .25]; correct = "b" (t1) 0.25; wrong at or above it: t0 (.5)
        //   and t3, which ties at .25 and counts against the query → rank 3.
        // img2 scores [-1, -.5, 1, -.5]; correct = "c","a" → t0,t2,t3; best 1 → rank 1.
        assert_eq!(r.image_to_text, vec![1, 3, 1]);
        // t0 ("a") scores images [1, .5, -1]; correct = images owning "a": img0, img2; best 1 → 1.
        // t1 ("b") scores [.5, .25, -.5]; correct img1 .25; img0 higher → 2.
        // t2 ("c") scores [-1, -.5, 1]; correct img2 → 1.
        // t3 ("a", written for img2) scores [.5, .25, -.5]; img0 also has "a" → best .5 → 1.
        assert_eq!(r.text_to_image, vec![1, 2, 1, 1]);
        // Without caption sharing t3 only matches img2 (-.5): img0 and img1 are above → 3.
        let strict = RetrievalTargets::from_text_image(3, &owner).unwrap();
        let r2 = retrieval_ranks(f(&img, 1), f(&txt, 1), &strict, 1).unwrap();
        assert_eq!(r2.text_to_image, vec![1, 2, 1, 3]);
        // img2's own texts: t2 (1.0) → still rank 1; img1 keeps its tie with t3 → 3.
        assert_eq!(r2.image_to_text, vec![1, 3, 1]);

        let m = RetrievalMetrics::from_ranks(&r2.text_to_image).unwrap();
        assert_eq!(m.r1, 50.0);
        assert_eq!(m.r5, 100.0);
        assert_eq!(m.mean_rank, 7.0 / 4.0);
        assert_eq!(m.median_rank, 1.5);
    }

    #[test]
    fn all_tied_scores_rank_last() {
        // Every score equal: each tie counts against the query, so every query ranks last.
        let img = [0.0f32; 6];
        let txt = [0.0f32; 6];
        let tg = RetrievalTargets::from_text_image(3, &[0, 1, 2]).unwrap();
        let rep = retrieval_metrics(f(&img, 2), f(&txt, 2), &tg, 2).unwrap();
        assert_eq!(rep.image_to_text.r1, 0.0);
        assert_eq!(rep.text_to_image.mean_rank, 3.0);
    }

    #[test]
    fn duplicated_images_and_captions_score_at_or_below_chance() {
        // Eight pairs; images 0-3 are one picture and 4-7 another, and the captions of 0-3 say
        // the same thing in the same features (written differently, so not shared hits).
        let n = 8;
        let img: Vec<f32> = (0..n).flat_map(|i| if i < 4 { [1.0, 0.0] } else { [0.0, 1.0] }).collect();
        let txt: Vec<f32> = (0..n).flat_map(|t| if t < 4 { [1.0, 0.0] } else { [0.6, 0.8] }).collect();
        let tg = RetrievalTargets::from_text_image(n, &(0..n).collect::<Vec<_>>()).unwrap();
        let rep = retrieval_metrics(f(&img, 2), f(&txt, 2), &tg, 1).unwrap();
        let chance = 100.0 / n as f64;
        assert!(rep.text_to_image.r1 <= chance, "IR R@1 {}", rep.text_to_image.r1);
        assert!(rep.image_to_text.r1 <= chance, "TR R@1 {}", rep.image_to_text.r1);
        // Text 0 finds images 0-3 at 1.0: three wrong ties → rank 4. Image 4 scores texts 0-3
        // at 0 and 4-7 at 0.8: three wrong ties above nothing else → rank 4.
        let ranks = retrieval_ranks(f(&img, 2), f(&txt, 2), &tg, 1).unwrap();
        assert_eq!((ranks.text_to_image[0], ranks.image_to_text[4]), (4, 4));
    }

    #[test]
    fn blocked_threaded_matches_brute_force() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let (ni, dim) = (70usize, 13usize);
        let nt = 2 * ni + 5;
        // Few distinct values so ties occur, and a small caption vocabulary so captions are shared.
        let img: Vec<f32> = (0..ni * dim).map(|_| rng.random_range(-2..=2) as f32).collect();
        let txt: Vec<f32> = (0..nt * dim).map(|_| rng.random_range(-2..=2) as f32).collect();
        let owner: Vec<usize> = (0..nt).map(|t| t % ni).collect();
        let vocab = ["x", "y", "z", "w", "v", "u", "s", "r", "q", "p", "o"];
        let caps: Vec<&str> = (0..nt).map(|_| vocab[rng.random_range(0..vocab.len())]).collect();
        let tg = RetrievalTargets::from_captions(ni, &owner, &caps).unwrap();
        let want = brute(&img, &txt, dim, &caps, &owner);
        for threads in [1, 2, 3] {
            assert_eq!(retrieval_ranks(f(&img, dim), f(&txt, dim), &tg, threads).unwrap(), want);
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(RetrievalTargets::from_text_image(2, &[0, 0]), Err(EvalError::ImageWithoutText(1))));
        assert!(RetrievalTargets::from_text_image(1, &[3]).is_err());
        assert!(RetrievalTargets::from_captions(1, &[0], &["a", "b"]).is_err());
        assert!(Features::new("x", &[1.0, f32::NAN], 1).is_err());
        assert!(Features::new("x", &[1.0, 2.0, 3.0], 2).is_err());
        let tg = RetrievalTargets::from_text_image(1, &[0]).unwrap();
        assert!(retrieval_ranks(f(&[1.0, 0.0], 2), f(&[1.0], 1), &tg, 1).is_err());
    }
}
