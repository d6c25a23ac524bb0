use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{SelectError, WarmupEpochs};

/// Which rows of a batch a step trains on (docs/algorithm.md has each rule).
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
    /// Ours, not the authors': dissect-momentum's gap, ranked only among the rows whose
    /// current CLIPScore lies in the batch's upper half (docs/algorithm.md).
    DissectGated,
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
    /// Every strategy, in declaration order.
    pub const ALL: [Strategy; 10] = [
        Strategy::Full,
        Strategy::Random,
        Strategy::SmallLoss,
        Strategy::BigLoss,
        Strategy::Clipscore,
        Strategy::DissectWarmup,
        Strategy::DissectMomentum,
        Strategy::DissectGated,
        Strategy::OracleClipscore,
        Strategy::OracleCliploss,
    ];

    /// The strategy's name in configs, on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Full => "full",
            Strategy::Random => "random",
            Strategy::SmallLoss => "small-loss",
            Strategy::BigLoss => "big-loss",
            Strategy::Clipscore => "clipscore",
            Strategy::DissectWarmup => "dissect-warmup",
            Strategy::DissectMomentum => "dissect-momentum",
            Strategy::DissectGated => "dissect-gated",
            Strategy::OracleClipscore => "oracle-clipscore",
            Strategy::OracleCliploss => "oracle-cliploss",
        }
    }

    /// Every strategy that selects without a reference model: what `compare` and the demo run
    /// by default.
    pub fn without_reference() -> impl Iterator<Item = Strategy> {
        Strategy::ALL.into_iter().filter(|s| !s.is_oracle())
    }

    /// The key a finished run's state ranks a sample by (higher = more worth keeping), for
    /// an offline coreset: the DISSect gap at the end of training (`hist − last` for the
    /// momentum variant, `warm − last` for the warm-up one: the batch centring is a constant
    /// over the whole dataset) and the last CLIPScore for every other strategy (the state keeps
    /// no losses or reference scores). `None` for a sample never scored.
    pub fn final_rank_key(self, slot: &crate::Slot) -> Option<f32> {
        let last = Some(slot.last).filter(|v| slot.seen() && v.is_finite())?;
        match self {
            Strategy::DissectMomentum | Strategy::DissectGated => slot.hist().map(|h| h - last),
            Strategy::DissectWarmup => slot.warm().map(|w| w - last),
            _ => Some(last),
        }
    }

    /// What the trainer must compute for this strategy before selecting.
    pub fn needs(self) -> ScoreNeeds {
        match self {
            Strategy::Full | Strategy::Random => ScoreNeeds::default(),
            Strategy::SmallLoss | Strategy::BigLoss => ScoreNeeds { losses: true, ..ScoreNeeds::default() },
            Strategy::Clipscore | Strategy::DissectWarmup | Strategy::DissectMomentum | Strategy::DissectGated => {
                ScoreNeeds { clip_scores: true, ..ScoreNeeds::default() }
            }
            Strategy::OracleClipscore | Strategy::OracleCliploss => {
                ScoreNeeds { reference_scores: true, ..ScoreNeeds::default() }
            }
        }
    }

    /// Whether the strategy ranks by a DISSect gap (and so selects on CLIPScore clamped at 0).
    pub fn is_dissect(self) -> bool {
        matches!(self, Strategy::DissectWarmup | Strategy::DissectMomentum | Strategy::DissectGated)
    }

    /// Whether the strategy ranks by a frozen reference model's scores.
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
        Strategy::ALL
            .into_iter()
            .find(|strategy| strategy.name() == wanted)
            .ok_or_else(|| SelectError::UnknownStrategy(s.to_string()))
    }
}

/// A strategy with its parameters, validated on construction.
///
/// Every field has a default ([`SelectionConfig::default`]: `dissect-warmup`, r = 0.3, W = 2,
/// β = 0.9, random warm-up rows), so a config file names only what it changes; unknown
/// fields are refused.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelectionConfig {
    /// Which rows a step keeps.
    pub strategy: Strategy,
    /// Fraction `r` of each batch kept; `k = max(1, floor(B·r))`.
    pub rate: f64,
    /// `W` for `dissect-warmup`: epochs `0..W` select at random and record scores; `auto`
    /// ends the warm-up when the scores stop rising fast ([`crate::auto_warmup_end`]).
    pub warmup_epochs: WarmupEpochs,
    /// `β` for `dissect-momentum`.
    pub momentum: f64,
    /// What every selecting strategy trains on during epochs `0..W` (see [`WarmupRows`]).
    pub warmup_rows: WarmupRows,
}

impl Default for SelectionConfig {
    fn default() -> Self {
        SelectionConfig {
            strategy: Strategy::DissectWarmup,
            rate: 0.3,
            warmup_epochs: WarmupEpochs::Fixed(2),
            momentum: 0.9,
            warmup_rows: WarmupRows::Random,
        }
    }
}

/// Rows trained on during the first `W` epochs.
///
/// The DISSect gap only separates clean from noisy pairs once the model has learned the clean
/// pairs (their scores plateau while memorised noisy pairs keep rising). `Random` (docs/algorithm.md's
/// rule, the default) spends dissect-warmup's warm-up at the selection rate, and every other
/// strategy selects from epoch 0. `All` makes every selecting strategy train on every row
/// before epoch `W` (scores and DISSect state still update) and select from `W` on, so
/// strategies can be compared from the same warmed-up model, at full-step cost during warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WarmupRows {
    /// The default: dissect-warmup draws `k` rows at random during warm-up, and every other
    /// strategy selects from epoch 0.
    #[default]
    Random,
    /// Every selecting strategy trains on every row before epoch `W`, then selects.
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

impl SelectionConfig {
    /// `strategy` at selection rate `rate`, every other field at its default; fails unless
    /// `rate` is in `(0, 1]`.
    pub fn new(strategy: Strategy, rate: f64) -> Result<Self, SelectError> {
        let config = SelectionConfig { strategy, rate, ..SelectionConfig::default() };
        config.validate()?;
        Ok(config)
    }

    /// Set the warm-up length `W`: a number of epochs or [`WarmupEpochs::Auto`].
    pub fn with_warmup_epochs(mut self, epochs: impl Into<WarmupEpochs>) -> Self {
        self.warmup_epochs = epochs.into();
        self
    }

    /// Set what is trained on during warm-up.
    pub fn with_warmup_rows(mut self, rows: WarmupRows) -> Self {
        self.warmup_rows = rows;
        self
    }

    /// Set the momentum `β`; fails unless it is in `[0, 1)`.
    pub fn with_momentum(mut self, beta: f64) -> Result<Self, SelectError> {
        self.momentum = beta;
        self.validate()?;
        Ok(self)
    }

    /// Check that `rate` is in `(0, 1]` and `momentum` in `[0, 1)`.
    pub fn validate(&self) -> Result<(), SelectError> {
        if !(self.rate > 0.0 && self.rate <= 1.0) {
            return Err(SelectError::InvalidRate(self.rate));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(SelectError::InvalidMomentum(self.momentum));
        }
        Ok(())
    }

    /// Whether the strategy has a warm-up: dissect-warmup always, and every selecting strategy
    /// with `warmup_rows = all`.
    pub fn has_warmup(&self) -> bool {
        self.strategy == Strategy::DissectWarmup
            || (self.warmup_rows == WarmupRows::All && self.strategy != Strategy::Full)
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
            let serde_name = serde_json::to_value(strategy).unwrap();
            assert_eq!(serde_name, strategy.name(), "configs and the CLI spell strategies alike");
        }
        assert_eq!(Strategy::without_reference().count(), 8);
        assert_eq!("Dissect_Momentum".parse::<Strategy>().unwrap(), Strategy::DissectMomentum);
        let err = "dissect".parse::<Strategy>().unwrap_err().to_string();
        assert!(err.contains("unknown strategy 'dissect'") && err.contains("dissect-warmup"), "{err}");
    }

    #[test]
    fn final_rank_keys_are_the_gap_or_the_last_score() {
        use crate::{Slot, flags};
        let slot = Slot {
            warm: 30.0,
            hist: 25.0,
            last: 20.0,
            times_selected: 1,
            last_epoch: 3,
            flags: flags::SEEN | flags::HAS_WARM | flags::HAS_HIST,
        };
        assert_eq!(Strategy::DissectMomentum.final_rank_key(&slot), Some(5.0));
        assert_eq!(Strategy::DissectGated.final_rank_key(&slot), Some(5.0));
        assert_eq!(Strategy::DissectWarmup.final_rank_key(&slot), Some(10.0));
        assert_eq!(Strategy::Clipscore.final_rank_key(&slot), Some(20.0));
        let unscored = Slot { last: f32::NAN, ..slot };
        assert_eq!(Strategy::Random.final_rank_key(&unscored), None);
        let unseen = Slot { flags: 0, ..slot };
        assert_eq!(Strategy::DissectMomentum.final_rank_key(&unseen), None);
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
        assert_eq!(config.warmup_epochs, WarmupEpochs::Fixed(3));
        assert_eq!(config.momentum, 0.9);
    }
}
