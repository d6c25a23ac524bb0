//! Zero-shot classification from class-prompt text embeddings.

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::features::{Features, dot, normalize};

/// Zero-shot accuracies in percent (0–100).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ZeroShotReport {
    /// Top-1 accuracy.
    pub top1: f64,
    /// Only defined when there are at least 5 classes.
    pub top5: Option<f64>,
    /// Images classified.
    pub images: usize,
    /// Number of classes.
    pub classes: usize,
}

/// Class embeddings from prompt embeddings laid out class-major (`row = class · templates +
/// template`): each template embedding is L2-normalised, averaged per class, and the mean is
/// re-normalised (the CLIP prompt-ensembling recipe). Returns `[classes × dim]`.
pub fn class_embeddings(prompts: Features<'_>, templates: usize) -> Result<Vec<f32>> {
    if templates == 0 || prompts.rows() == 0 || !prompts.rows().is_multiple_of(templates) {
        return Err(EvalError::Invalid(format!(
            "{} prompt rows cannot be split into classes of {templates} templates",
            prompts.rows()
        )));
    }
    let dim = prompts.dim();
    let mut out = vec![0.0f32; prompts.rows() / templates * dim];
    let mut tmp = vec![0.0f32; dim];
    for (c, class) in out.chunks_exact_mut(dim).enumerate() {
        for k in 0..templates {
            tmp.copy_from_slice(prompts.row(c * templates + k));
            normalize(&mut tmp);
            class.iter_mut().zip(&tmp).for_each(|(a, b)| *a += b);
        }
        normalize(class);
    }
    Ok(out)
}

/// Top-1 (and top-5 when classes ≥ 5) accuracy of `labels` given image features and prompt
/// embeddings (see [`class_embeddings`]). The true class is within top-k when fewer than k
/// other classes score at least as high as it: a tie counts against the image, as in retrieval.
pub fn zero_shot_accuracy(
    images: Features<'_>,
    prompts: Features<'_>,
    templates: usize,
    labels: &[usize],
) -> Result<ZeroShotReport> {
    let accepted: Vec<&[usize]> = labels.iter().map(std::slice::from_ref).collect();
    zero_shot_accuracy_any(images, prompts, templates, &accepted)
}

/// [`zero_shot_accuracy`] for images that hold several labelled things (a scene of a circle
/// and a star): `accepted[i]` lists every correct class of image `i`, and the image's rank is
/// that of its best-scoring correct class, so naming any of them is a hit.
pub fn zero_shot_accuracy_any(
    images: Features<'_>,
    prompts: Features<'_>,
    templates: usize,
    accepted: &[&[usize]],
) -> Result<ZeroShotReport> {
    if images.dim() != prompts.dim() {
        return Err(EvalError::DimMismatch { what: "prompt features", expected: images.dim(), got: prompts.dim() });
    }
    if accepted.len() != images.rows() {
        return Err(EvalError::LengthMismatch {
            what: "labels vs image rows",
            expected: images.rows(),
            got: accepted.len(),
        });
    }
    if accepted.is_empty() {
        return Err(EvalError::Empty("no images for zero-shot"));
    }
    let classes_buf = class_embeddings(prompts, templates)?;
    let classes = Features::new("class embeddings", &classes_buf, images.dim())?;
    let n_cls = classes.rows();
    let (mut hit1, mut hit5) = (0usize, 0usize);
    let mut scores = vec![0.0f32; n_cls];
    for (i, labels) in accepted.iter().enumerate() {
        if let Some(&bad) = labels.iter().find(|&&l| l >= n_cls) {
            return Err(EvalError::IndexOutOfRange { what: "labels", index: bad, bound: n_cls });
        }
        let im = images.row(i);
        scores.iter_mut().enumerate().for_each(|(c, s)| *s = dot(im, classes.row(c)));
        let Some(best) = labels.iter().map(|&l| scores[l]).reduce(f32::max) else {
            return Err(EvalError::Invalid(format!("image {i} has no label")));
        };
        let wrong_at_or_above = scores.iter().enumerate().filter(|&(c, &s)| s >= best && !labels.contains(&c)).count();
        hit1 += usize::from(wrong_at_or_above < 1);
        hit5 += usize::from(wrong_at_or_above < 5);
    }
    let n = accepted.len() as f64;
    Ok(ZeroShotReport {
        top1: 100.0 * hit1 as f64 / n,
        top5: (n_cls >= 5).then(|| 100.0 * hit5 as f64 / n),
        images: accepted.len(),
        classes: n_cls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_ensemble_and_accuracy() {
        // 2 classes × 2 templates in 2-D. Class 0 templates (2,0) and (0,1): normalised (1,0),(0,1),
        // mean (.5,.5) → (0.707, 0.707). Class 1: (0,-3),(0,-1) → (0,-1).
        let prompts = [2.0f32, 0.0, 0.0, 1.0, 0.0, -3.0, 0.0, -1.0];
        let p = Features::new("p", &prompts, 2).unwrap();
        let emb = class_embeddings(p, 2).unwrap();
        let s = std::f32::consts::FRAC_1_SQRT_2;
        assert!((emb[0] - s).abs() < 1e-6 && (emb[1] - s).abs() < 1e-6);
        assert_eq!(&emb[2..], &[0.0, -1.0]);
        // img (1,0): scores (.707, 0) → class 0. img (0,-1): (-.707, 1) → class 1.
        let imgs = [1.0f32, 0.0, 0.0, -1.0, 1.0, 0.0];
        let i = Features::new("i", &imgs, 2).unwrap();
        let r = zero_shot_accuracy(i, p, 2, &[0, 1, 1]).unwrap();
        assert!((r.top1 - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!(r.top5, None);
        assert!(zero_shot_accuracy(i, p, 2, &[0, 1, 2]).is_err());
        assert!(zero_shot_accuracy(i, p, 3, &[0, 1, 1]).is_err());
        // Any of several labels: the third image (class 0 wins) is a hit once 0 is accepted.
        let any = zero_shot_accuracy_any(i, p, 2, &[&[0], &[1], &[1, 0]]).unwrap();
        assert_eq!(any.top1, 100.0);
        assert!(zero_shot_accuracy_any(i, p, 2, &[&[0], &[1], &[]]).is_err());
    }

    #[test]
    fn top5_with_many_classes() {
        // 6 classes, 1-D prompts with values 6..1; image +1 ranks class 0 first, class 5 last.
        let prompts = [6.0f32, 5.0, 4.0, 3.0, 2.0, 1.0];
        // Normalisation maps every positive 1-D prompt to 1.0: all six classes tie, and each
        // tie counts against the image, so no label is within the top 5.
        let p = Features::new("p", &prompts, 1).unwrap();
        let i = Features::new("i", &[1.0f32, -1.0], 1).unwrap();
        let r = zero_shot_accuracy(i, p, 1, &[5, 0]).unwrap();
        assert_eq!((r.top1, r.top5), (0.0, Some(0.0)));
        // 2-D: class c at angle c·30°; image at 0° → class order 0,1,2,...; label 5 is 6th.
        let pr: Vec<f32> = (0..6)
            .flat_map(|c| {
                let a = (c as f32 * 30.0).to_radians();
                [a.cos(), a.sin()]
            })
            .collect();
        let p2 = Features::new("p", &pr, 2).unwrap();
        let i2 = Features::new("i", &[1.0f32, 0.0, 1.0, 0.0, 1.0, 0.0], 2).unwrap();
        let r2 = zero_shot_accuracy(i2, p2, 1, &[0, 4, 5]).unwrap();
        assert!((r2.top1 - 100.0 / 3.0).abs() < 1e-9);
        assert!((r2.top5.unwrap() - 200.0 / 3.0).abs() < 1e-9);
    }
}
