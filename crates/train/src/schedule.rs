//! Learning-rate schedules, open_clip_train's three (`--lr-scheduler`): linear warm-up, then
//! cosine decay to zero (the default), a constant rate, or a constant rate with a cooldown
//! over the last epochs (fine-tuning's usual choice).

use serde::{Deserialize, Serialize};

/// The shape of the learning rate after the warm-up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LrScheduler {
    /// Cosine decay from the peak to zero at the last step.
    #[default]
    Cosine,
    /// The peak rate until the end.
    Const,
    /// The peak rate, then over the last `cooldown_steps` a decay to `cooldown_end` of shape
    /// `(1 − progress)^cooldown_power` (linear at power 1).
    ConstCooldown,
}

/// A schedule over a run of `total_steps` steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// The shape after the warm-up.
    pub kind: LrScheduler,
    /// The peak learning rate.
    pub base_lr: f64,
    /// Linear warm-up steps.
    pub warmup_steps: u64,
    /// Steps of the whole run.
    pub total_steps: u64,
    /// Steps of the cooldown at the end (`ConstCooldown`).
    pub cooldown_steps: u64,
    /// The cooldown's power (`ConstCooldown`).
    pub cooldown_power: f64,
    /// The rate the cooldown ends at (`ConstCooldown`).
    pub cooldown_end: f64,
}

impl Schedule {
    /// The learning rate of step `step` (0-based), as open_clip_train's schedulers give it.
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.kind {
            LrScheduler::Cosine => cosine_lr(self.base_lr, self.warmup_steps, self.total_steps, step),
            LrScheduler::Const => self.base_lr,
            LrScheduler::ConstCooldown => {
                let start = self.total_steps.saturating_sub(self.cooldown_steps);
                if step < start {
                    return self.base_lr;
                }
                let progress = ((step - start) as f64 / self.total_steps.saturating_sub(start).max(1) as f64).min(1.0);
                (1.0 - progress).powf(self.cooldown_power) * (self.base_lr - self.cooldown_end) + self.cooldown_end
            }
        }
    }
}

/// The learning rate of step `step` (0-based) of `total_steps`: linear warm-up to `base_lr`
/// over `warmup_steps`, then cosine decay to 0 at `total_steps`.
pub fn cosine_lr(base_lr: f64, warmup_steps: u64, total_steps: u64, step: u64) -> f64 {
    if step < warmup_steps {
        return base_lr * (step + 1) as f64 / warmup_steps as f64;
    }
    let decay_steps = total_steps.saturating_sub(warmup_steps).max(1);
    let progress = ((step - warmup_steps) as f64 / decay_steps as f64).min(1.0);
    0.5 * (1.0 + (std::f64::consts::PI * progress).cos()) * base_lr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        assert!((cosine_lr(1.0, 4, 14, 0) - 0.25).abs() < 1e-12);
        assert!((cosine_lr(1.0, 4, 14, 3) - 1.0).abs() < 1e-12);
        assert!((cosine_lr(1.0, 4, 14, 4) - 1.0).abs() < 1e-12);
        assert!((cosine_lr(1.0, 4, 14, 9) - 0.5).abs() < 1e-12, "half-way through the decay");
        assert!(cosine_lr(1.0, 4, 14, 14).abs() < 1e-12);
        assert!(cosine_lr(1.0, 0, 10, 100).abs() < 1e-12, "past the end stays at zero");
    }

    #[test]
    fn const_and_const_cooldown_by_hand() {
        let s = Schedule {
            kind: LrScheduler::Const,
            base_lr: 2.0,
            warmup_steps: 2,
            total_steps: 10,
            cooldown_steps: 4,
            cooldown_power: 1.0,
            cooldown_end: 0.4,
        };
        assert_eq!((s.lr(0), s.lr(1), s.lr(2), s.lr(9)), (1.0, 2.0, 2.0, 2.0));
        // Cooldown over steps 6..10 from 2.0 to 0.4: step 6 is 2.0, step 8 half-way (1.2),
        // step 9 a quarter left (0.4 + 1.6 · 0.25 = 0.8).
        let c = Schedule { kind: LrScheduler::ConstCooldown, ..s };
        assert_eq!((c.lr(5), c.lr(6)), (2.0, 2.0));
        assert!((c.lr(8) - 1.2).abs() < 1e-12 && (c.lr(9) - 0.8).abs() < 1e-12);
        // Power 2: a quarter left squared, 0.4 + 1.6 · 0.0625 = 0.5.
        let p = Schedule { cooldown_power: 2.0, ..c };
        assert!((p.lr(9) - 0.5).abs() < 1e-12);
        let cos = Schedule { kind: LrScheduler::Cosine, ..s };
        assert_eq!(cos.lr(7), cosine_lr(2.0, 2, 10, 7));
        // Named in configs and flags as open_clip names them.
        let named = |name: &str| crate::TrainConfig::from_toml_str(&format!("[optim]\nlr_scheduler = \"{name}\""));
        assert!(named("const-cooldown").is_ok() && named("step").is_err());
    }
}
