//! Locked towers, as open_clip's `--lock-image` and `--lock-text` (LiT): a locked tower's
//! parameters take no gradient, so the backward pass never enters it and the optimiser never
//! moves it, except its last `unlocked_groups` groups in open_clip's grouping: the stem (patch
//! or token embedding, positions, the first norm), each block but the last, the last block
//! with the final norm, and the projection. A locked ResNet tower is locked whole, as in
//! open_clip, and its BatchNorm keeps its running statistics (it normalises with them in
//! training too). The scoring pass does not change: it never takes gradients.

use burn::module::Module;
use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::model::{Clip, VisionTower};
use crate::text::TextTransformer;
use crate::vit::VisionTransformer;

/// A locked tower: frozen but for its last `unlocked_groups` groups (0: wholly frozen).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TowerLock {
    /// Groups at the end of the tower that still train.
    pub unlocked_groups: usize,
}

impl Clip {
    /// Locks the image tower and/or the text tower (`None`: it trains). The logit scale
    /// always trains. Apply after loading weights: a checkpoint does not store the locks.
    pub fn lock(mut self, image: Option<TowerLock>, text: Option<TowerLock>) -> Result<Self, ModelError> {
        if let Some(lock) = image {
            self.visual = match self.visual {
                VisionTower::Vit(vit) => VisionTower::Vit(lock_vit(vit, lock.unlocked_groups)),
                VisionTower::ResNet(resnet) if lock.unlocked_groups == 0 => {
                    self.image_stats_frozen = true;
                    VisionTower::ResNet(resnet.no_grad())
                }
                VisionTower::ResNet(_) => {
                    return Err(ModelError::InvalidConfig {
                        field: "lock_image_unlocked_groups",
                        reason: "a ResNet image tower locks whole (as in open_clip)".into(),
                    });
                }
            };
        }
        if let Some(lock) = text {
            self.text = lock_text(self.text, lock.unlocked_groups);
        }
        Ok(self)
    }
}

/// Whether group `group` of `groups` stays frozen with the last `unlocked` trained.
fn frozen(group: usize, groups: usize, unlocked: usize) -> bool {
    group < groups.saturating_sub(unlocked)
}

/// Freezes `module` when `freeze`.
fn frozen_if<M: Module>(module: M, freeze: bool) -> M {
    if freeze { module.no_grad() } else { module }
}

/// Groups: 0 the stem, 1..=n the blocks (the last with `ln_post`), n + 1 the projection.
fn lock_vit(mut vit: VisionTransformer, unlocked: usize) -> VisionTransformer {
    let (n, groups) = (vit.blocks.len(), vit.blocks.len() + 2);
    let stem = frozen(0, groups, unlocked);
    vit.patch_embed = frozen_if(vit.patch_embed, stem);
    vit.class_embedding = frozen_if(vit.class_embedding, stem);
    vit.positional_embedding = frozen_if(vit.positional_embedding, stem);
    vit.ln_pre = frozen_if(vit.ln_pre, stem);
    vit.blocks =
        vit.blocks.into_iter().enumerate().map(|(i, b)| frozen_if(b, frozen(i + 1, groups, unlocked))).collect();
    vit.ln_post = frozen_if(vit.ln_post, frozen(n, groups, unlocked));
    vit.proj = frozen_if(vit.proj, frozen(n + 1, groups, unlocked));
    vit
}

/// Groups: 0 the embeddings, 1..=n the blocks (the last with `ln_final`), n + 1 the projection.
fn lock_text(mut text: TextTransformer, unlocked: usize) -> TextTransformer {
    let (n, groups) = (text.blocks.len(), text.blocks.len() + 2);
    let stem = frozen(0, groups, unlocked);
    text.token_embedding = frozen_if(text.token_embedding, stem);
    text.positional_embedding = frozen_if(text.positional_embedding, stem);
    text.blocks =
        text.blocks.into_iter().enumerate().map(|(i, b)| frozen_if(b, frozen(i + 1, groups, unlocked))).collect();
    text.ln_final = frozen_if(text.ln_final, frozen(n, groups, unlocked));
    text.text_projection = frozen_if(text.text_projection, frozen(n + 1, groups, unlocked));
    text
}
