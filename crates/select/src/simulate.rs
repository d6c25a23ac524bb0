//! A selection simulation on synthetic CLIPScore trajectories: no model, no data.
//!
//! It drives the real [`Selector`] with scores that follow the dynamics DISSect is built
//! on — a clean pair is learned early, then drifts down slowly; a noisy pair starts low
//! and creeps up as it is memorised — and counts how many noisy pairs each strategy lets
//! into the selected rows. The trajectories do not react to the selection (there is no
//! training), so this checks the selection mechanics, not the end-to-end method; the
//! trainer's `dissect demo` measures that.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{BatchScores, SelectError, SelectionConfig, Selector, Strategy};

/// Parameters of a [`simulate`] run.
#[derive(Debug, Clone, Copy)]
pub struct SimulationConfig {
    /// Synthetic pairs in the dataset.
    pub samples: usize,
    /// Probability that a pair is noisy, 0–1.
    pub noise_rate: f64,
    /// Epochs simulated.
    pub epochs: u32,
    /// Rows per batch; a trailing partial batch is dropped.
    pub batch_size: usize,
    /// Selection rate `r`, in `(0, 1]`.
    pub rate: f64,
    /// `W` for `dissect-warmup`.
    pub warmup_epochs: u32,
    /// `β` for `dissect-momentum`, in `[0, 1)`.
    pub momentum: f64,
    /// Seed of the pairs, the batch order and the score jitter.
    pub seed: u64,
}

impl Default for SimulationConfig {
    fn default() -> Self {
        SimulationConfig {
            samples: 20_000,
            noise_rate: 0.4,
            epochs: 8,
            batch_size: 512,
            rate: 0.3,
            warmup_epochs: 2,
            momentum: 0.9,
            seed: 0,
        }
    }
}

/// What one strategy let through, per epoch.
#[derive(Debug, Clone)]
pub struct SimulationOutcome {
    /// The strategy simulated.
    pub strategy: Strategy,
    /// Fraction of noisy pairs among the selected rows of each epoch.
    pub selected_noise: Vec<f64>,
}

impl SimulationOutcome {
    /// Mean selected-noise fraction over epochs `from..`.
    pub fn mean_noise_from(&self, from: u32) -> f64 {
        let tail = &self.selected_noise[(from as usize).min(self.selected_noise.len())..];
        if tail.is_empty() { f64::NAN } else { tail.iter().sum::<f64>() / tail.len() as f64 }
    }
}

/// The score-only strategies (loss strategies need a model's similarity matrix).
pub const SIMULATED: [Strategy; 4] =
    [Strategy::Random, Strategy::Clipscore, Strategy::DissectWarmup, Strategy::DissectMomentum];

struct Pair {
    noisy: bool,
    /// Clean: plateau height; noisy: starting score.
    level: f32,
    /// Clean: epochs to learn; noisy: memorisation speed per epoch.
    speed: f32,
}

impl Pair {
    fn score(&self, t: f32, jitter: f32) -> f32 {
        let s = if self.noisy {
            self.level + self.speed * t
        } else {
            self.level * (1.0 - (-t / self.speed).exp()) - 1.5 * t
        };
        s + jitter
    }
}

/// Run every strategy of [`SIMULATED`] over the same synthetic pairs and batches; one
/// outcome per strategy, in that order.
pub fn simulate(config: &SimulationConfig) -> Result<Vec<SimulationOutcome>, SelectError> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let pairs: Vec<Pair> = (0..config.samples)
        .map(|_| {
            if rng.random_bool(config.noise_rate.clamp(0.0, 1.0)) {
                Pair { noisy: true, level: rng.random_range(0.0..8.0), speed: rng.random_range(1.0..4.0) }
            } else {
                Pair { noisy: false, level: rng.random_range(15.0..40.0), speed: rng.random_range(0.3..1.5) }
            }
        })
        .collect();
    let steps_per_epoch = config.samples / config.batch_size;
    SIMULATED
        .iter()
        .map(|&strategy| {
            let selection = SelectionConfig::new(strategy, config.rate)?
                .with_warmup_epochs(config.warmup_epochs)
                .with_momentum(config.momentum)?;
            let mut selector = Selector::with_dataset_len(selection, config.samples as u64)?;
            // Every strategy sees the same batches and jitter: one seed per strategy run.
            let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x5eed);
            let mut order: Vec<u64> = (0..config.samples as u64).collect();
            let mut selected_noise = Vec::new();
            let mut step = 0u64;
            for epoch in 0..config.epochs {
                order.shuffle(&mut rng);
                let (mut kept, mut kept_noisy) = (0usize, 0usize);
                for batch in order.chunks_exact(config.batch_size).take(steps_per_epoch) {
                    let t = epoch as f32 + (step % steps_per_epoch as u64) as f32 / steps_per_epoch as f32;
                    let clip: Vec<f32> =
                        batch.iter().map(|&i| pairs[i as usize].score(t, rng.random_range(-2.0..2.0))).collect();
                    let scores = BatchScores { indices: batch, clip_scores: Some(&clip), ..Default::default() };
                    let selection = selector.select(&scores, epoch, step, &mut rng)?;
                    kept += selection.positions.len();
                    kept_noisy += selection.positions.iter().filter(|&&p| pairs[batch[p] as usize].noisy).count();
                    step += 1;
                }
                selected_noise.push(kept_noisy as f64 / kept.max(1) as f64);
            }
            Ok(SimulationOutcome { strategy, selected_noise })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dissect_keeps_noise_out_after_warmup() {
        let config = SimulationConfig { samples: 4096, epochs: 6, batch_size: 256, ..Default::default() };
        let outcomes = simulate(&config).unwrap();
        let get = |s| outcomes.iter().find(|o| o.strategy == s).unwrap();
        let random = get(Strategy::Random).mean_noise_from(0);
        assert!((random - config.noise_rate).abs() < 0.05, "random keeps the data's noise rate: {random}");
        let warmup = get(Strategy::DissectWarmup).mean_noise_from(config.warmup_epochs + 1);
        assert!(warmup < 0.5 * config.noise_rate, "dissect-warmup let through {warmup}");
        // While clean pairs are still being learned their scores rise faster than noisy
        // ones creep, so the momentum gap favours noise early; once they plateau and
        // drift, it filters noise. The simulation is there to show exactly this.
        let momentum = &get(Strategy::DissectMomentum).selected_noise;
        assert!(momentum[1] > config.noise_rate, "early momentum epochs: {momentum:?}");
        let last = *momentum.last().unwrap();
        assert!(last < 0.6 * config.noise_rate, "late momentum epochs: {momentum:?}");
        // Deterministic from the seed.
        let again = simulate(&config).unwrap();
        assert_eq!(again[2].selected_noise, outcomes[2].selected_noise);
    }
}
