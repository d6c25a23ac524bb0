//! The held-out evaluation of one model: what `dissect eval` prints, what the trainer logs
//! after an epoch, and what a comparison row is built from.

use serde::{Deserialize, Serialize};

use crate::clipscore::ClipScoreReport;
use crate::retrieval::RetrievalReport;
use crate::zeroshot::ZeroShotReport;

/// Retrieval in both directions, zero-shot classification (when the dataset has classes and
/// prompts) and the CLIPScore of matched vs mismatched pairs, on one held-out split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Image→text (TR) and text→image (IR) Recall@K and ranks; identical caption strings
    /// count as the same answer.
    pub retrieval: RetrievalReport,
    /// The same, with every text of an identical scene counting as a hit (same objects,
    /// colours, sizes and positions, however the caption words them); for data whose samples
    /// describe their scene (noisy-shapes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval_scene: Option<RetrievalReport>,
    /// Zero-shot accuracy; `None` for data without class names and prompt templates.
    pub zero_shot: Option<ZeroShotReport>,
    /// Zero-shot accuracy on a separate labelled image folder (`zeroshot_data`), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_shot_folder: Option<ZeroShotReport>,
    /// Mean CLIPScore of matched and of mismatched pairs.
    pub clipscore: ClipScoreReport,
    /// Held-out images encoded.
    pub images: usize,
    /// Held-out captions encoded.
    pub texts: usize,
}

impl EvalReport {
    /// `(TR R@1 + IR R@1) / 2`: the scalar tracked over time and compared against `full`.
    pub fn mean_r1(&self) -> f64 {
        self.retrieval.mean_r1()
    }

    /// Zero-shot top-1 accuracy in percent, when the dataset defines classes.
    pub fn zero_shot_top1(&self) -> Option<f64> {
        self.zero_shot.map(|z| z.top1)
    }
}
