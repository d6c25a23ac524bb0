//! Learning-rate schedule: linear warm-up, then cosine decay to zero (open_clip's default).

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
    use super::cosine_lr;

    #[test]
    fn warmup_then_cosine() {
        assert!((cosine_lr(1.0, 4, 14, 0) - 0.25).abs() < 1e-12);
        assert!((cosine_lr(1.0, 4, 14, 3) - 1.0).abs() < 1e-12);
        assert!((cosine_lr(1.0, 4, 14, 4) - 1.0).abs() < 1e-12);
        assert!((cosine_lr(1.0, 4, 14, 9) - 0.5).abs() < 1e-12, "half-way through the decay");
        assert!(cosine_lr(1.0, 4, 14, 14).abs() < 1e-12);
        assert!(cosine_lr(1.0, 0, 10, 100).abs() < 1e-12, "past the end stays at zero");
    }
}
