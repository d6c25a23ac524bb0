use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::SelectError;

/// Which rows of a batch a step trains on (DESIGN.md section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Every row; the trainer skips the scoring pass.
    Full,
    /// `k` rows uniformly at random.
    Random,
    /// The `k` rows with the smallest per-sample contrastive loss.
    SmallLoss,
    /// The `k` rows with the largest per-sample contrastive loss.
    BigLoss,
    /// The `k` rows with the highest CLIPScore under the current model.
    Clipscore,
    /// DISSect with a score frozen at the end of `warmup_epochs` of random selection.
    DissectWarmup,
    /// DISSect with an exponential moving average of each sample's score.
    DissectMomentum,
    /// The `k` highest CLIPScores of a frozen reference model.
    OracleClipscore,
    /// The `k` highest negCLIPLoss scores of a frozen reference model.
    OracleCliploss,
}

/// What the trainer must compute before calling [`crate::Selector::select`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScoreNeeds {
    /// CLIPScores of the model being trained (a no-grad scoring pass).
    pub clip_scores: bool,
    /// Per-sample symmetric InfoNCE losses of the model being trained.
    pub losses: bool,
    /// Scores from a frozen reference model.
    pub reference_scores: bool,
}

impl Strategy {
    pub const ALL: [Strategy; 9] = [
        Strategy::Full,
        Strategy::Random,
        Strategy::SmallLoss,
        Strategy::BigLoss,
        Strategy::Clipscore,
        Strategy::DissectWarmup,
        Strategy::DissectMomentum,
        Strategy::OracleClipscore,
        Strategy::OracleCliploss,
    ];

    pub const NAMES: [&'static str; 9] = [
        "full",
        "random",
        "small-loss",
        "big-loss",
        "clipscore",
        "dissect-warmup",
        "dissect-momentum",
        "oracle-clipscore",
        "oracle-cliploss",
    ];

    pub fn name(self) -> &'static str {
        let position = Strategy::ALL.iter().position(|s| *s == self).unwrap_or(0);
        Strategy::NAMES[position]
    }

    pub fn needs(self) -> ScoreNeeds {
        match self {
            Strategy::Full | Strategy::Random => ScoreNeeds::default(),
            Strategy::SmallLoss | Strategy::BigLoss => ScoreNeeds { losses: true, ..ScoreNeeds::default() },
            Strategy::Clipscore | Strategy::DissectWarmup | Strategy::DissectMomentum => {
                ScoreNeeds { clip_scores: true, ..ScoreNeeds::default() }
            }
            Strategy::OracleClipscore | Strategy::OracleCliploss => {
                ScoreNeeds { reference_scores: true, ..ScoreNeeds::default() }
            }
        }
    }

    pub fn is_oracle(self) -> bool {
        matches!(self, Strategy::OracleClipscore | Strategy::OracleCliploss)
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Strategy {
    type Err = SelectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        Strategy::NAMES
            .iter()
            .position(|name| *name == wanted)
            .map(|position| Strategy::ALL[position])
            .ok_or_else(|| SelectError::UnknownStrategy(s.to_string()))
    }
}

/// A strategy with its parameters, validated on construction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectionConfig {
    pub strategy: Strategy,
    /// Fraction `r` of each batch kept; `k = max(1, floor(B·r))`.
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// `W` for `dissect-warmup`: epochs `0..W` select at random and record scores.
    #[serde(default = "default_warmup_epochs")]
    pub warmup_epochs: u32,
    /// `β` for `dissect-momentum`.
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    /// What every selecting strategy trains on during epochs `0..W` (see [`WarmupRows`]).
    #[serde(default)]
    pub warmup_rows: WarmupRows,
}

/// Rows trained on during the first `W` epochs.
///
/// The DISSect gap only separates clean from noisy pairs once the model has learned the clean
/// pairs (their scores plateau while memorised noisy pairs keep rising). `Random` (DESIGN.md's
/// rule, the default) spends dissect-warmup's warm-up at the selection rate, and every other
/// strategy selects from epoch 0. `All` makes every selecting strategy train on every row
/// before epoch `W` (scores and DISSect state still update) and select from `W` on, so
/// strategies can be compared from the same warmed-up model, at full-step cost during warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WarmupRows {
    #[default]
    Random,
    All,
}

impl std::str::FromStr for WarmupRows {
    type Err = SelectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "random" => Ok(WarmupRows::Random),
            "all" => Ok(WarmupRows::All),
            _ => Err(SelectError::UnknownWarmupRows(s.to_string())),
        }
    }
}

fn default_rate() -> f64 {
    0.3
}
fn default_warmup_epochs() -> u32 {
    2
}
fn default_momentum() -> f64 {
    0.9
}

impl SelectionConfig {
    pub fn new(strategy: Strategy, rate: f64) -> Result<Self, SelectError> {
        let config = SelectionConfig {
            strategy,
            rate,
            warmup_epochs: default_warmup_epochs(),
            momentum: default_momentum(),
            warmup_rows: WarmupRows::Random,
        };
        config.validate()?;
        Ok(config)
    }

    pub fn with_warmup_epochs(mut self, epochs: u32) -> Self {
        self.warmup_epochs = epochs;
        self
    }

    pub fn with_warmup_rows(mut self, rows: WarmupRows) -> Self {
        self.warmup_rows = rows;
        self
    }

    pub fn with_momentum(mut self, beta: f64) -> Result<Self, SelectError> {
        self.momentum = beta;
        self.validate()?;
        Ok(self)
    }

    pub fn validate(&self) -> Result<(), SelectError> {
        if !(self.rate > 0.0 && self.rate <= 1.0) {
            return Err(SelectError::InvalidRate(self.rate));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(SelectError::InvalidMomentum(self.momentum));
        }
        Ok(())
    }

    /// Rows kept from a batch of `batch_size`: `max(1, floor(B·r))`, or all of them for `full`.
    ///
    /// A tiny epsilon absorbs binary rounding of `r` (0.29 · 100 is 28.999… in f64, and
    /// a user who asks for 29% of 100 rows means 29).
    pub fn keep_count(&self, batch_size: usize) -> usize {
        if self.strategy == Strategy::Full || batch_size == 0 {
            return batch_size;
        }
        let k = (batch_size as f64 * self.rate + 1e-9).floor() as usize;
        k.clamp(1, batch_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for strategy in Strategy::ALL {
            assert_eq!(strategy.name().parse::<Strategy>().unwrap(), strategy);
        }
        assert_eq!("Dissect_Momentum".parse::<Strategy>().unwrap(), Strategy::DissectMomentum);
        let err = "dissect".parse::<Strategy>().unwrap_err().to_string();
        assert!(err.contains("unknown strategy 'dissect'") && err.contains("dissect-warmup"), "{err}");
    }

    #[test]
    fn keep_count_edges() {
        let c = |r| SelectionConfig::new(Strategy::Random, r).unwrap();
        assert_eq!(c(1.0).keep_count(7), 7);
        assert_eq!(c(0.3).keep_count(256), 76);
        assert_eq!(c(0.3).keep_count(10), 3);
        assert_eq!(c(0.29).keep_count(100), 29);
        assert_eq!(c(1e-6).keep_count(100), 1, "at least one row");
        assert_eq!(c(0.5).keep_count(1), 1);
        let full = SelectionConfig::new(Strategy::Full, 0.3).unwrap();
        assert_eq!(full.keep_count(256), 256, "full ignores the rate");
    }

    #[test]
    fn invalid_parameters_are_named() {
        for r in [0.0, -0.1, 1.5, f64::NAN] {
            let err = SelectionConfig::new(Strategy::Random, r).unwrap_err();
            assert!(err.to_string().contains("selection rate"), "{err}");
        }
        let err = SelectionConfig::new(Strategy::DissectMomentum, 0.3).unwrap().with_momentum(1.0).unwrap_err();
        assert!(err.to_string().contains("momentum beta"), "{err}");
    }

    #[test]
    fn config_from_toml_style_serde() {
        let config: SelectionConfig =
            serde_json::from_str(r#"{"strategy":"dissect-warmup","rate":0.5,"warmup_epochs":3}"#).unwrap();
        assert_eq!(config.strategy, Strategy::DissectWarmup);
        assert_eq!(config.warmup_epochs, 3);
        assert_eq!(config.momentum, 0.9);
    }
}
