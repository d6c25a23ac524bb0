//! The warm-up length `W`: a fixed number of epochs, or `auto`, ended by the model itself.
//!
//! The DISSect gap only separates clean from noisy pairs once the model has learned the clean
//! pairs. While it is still learning them every pair's score climbs quickly, so the
//! epoch-over-epoch rise of the mean CLIPScore of the visited pairs is large; when the clean
//! pairs are learned it slows down. `auto` ends the warm-up at the first epoch whose rise is at
//! most [`AUTO_WARMUP_SLOWDOWN`] of the steepest rise so far (a mean that does not rise at all
//! ends it too: the model is past learning these pairs), and at the latest after half the run,
//! so that selection always gets the other half. The rule needs no clean/noisy labels: only
//! the scores the trainer already computes.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::SelectError;

/// The rise of an epoch's mean CLIPScore, relative to the steepest rise so far, at or below
/// which `auto` ends the warm-up: "the learning has slowed to half its fastest pace".
pub const AUTO_WARMUP_SLOWDOWN: f64 = 0.5;

/// How many epochs the warm-up lasts (configs and the CLI take a number or `"auto"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmupEpochs {
    /// Exactly `W` epochs: epochs `0..W` warm up.
    Fixed(u32),
    /// Until the mean CLIPScore stops rising fast (see [`auto_warmup_end`]).
    Auto,
}

impl WarmupEpochs {
    /// The fixed `W`, or `None` for `auto`.
    pub fn fixed(self) -> Option<u32> {
        match self {
            WarmupEpochs::Fixed(w) => Some(w),
            WarmupEpochs::Auto => None,
        }
    }
}

impl Default for WarmupEpochs {
    fn default() -> Self {
        WarmupEpochs::Fixed(2)
    }
}

impl From<u32> for WarmupEpochs {
    fn from(epochs: u32) -> Self {
        WarmupEpochs::Fixed(epochs)
    }
}

impl fmt::Display for WarmupEpochs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WarmupEpochs::Fixed(w) => write!(f, "{w}"),
            WarmupEpochs::Auto => f.write_str("auto"),
        }
    }
}

impl FromStr for WarmupEpochs {
    type Err = SelectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("auto") {
            return Ok(WarmupEpochs::Auto);
        }
        s.parse().map(WarmupEpochs::Fixed).map_err(|_| SelectError::InvalidWarmupEpochs(s.to_string()))
    }
}

impl Serialize for WarmupEpochs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            WarmupEpochs::Fixed(w) => serializer.serialize_u32(*w),
            WarmupEpochs::Auto => serializer.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for WarmupEpochs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EpochsOrAuto;
        impl Visitor<'_> for EpochsOrAuto {
            type Value = WarmupEpochs;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of epochs or \"auto\"")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<WarmupEpochs, E> {
                u32::try_from(v)
                    .map(WarmupEpochs::Fixed)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<WarmupEpochs, E> {
                u32::try_from(v)
                    .map(WarmupEpochs::Fixed)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<WarmupEpochs, E> {
                v.parse().map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        deserializer.deserialize_any(EpochsOrAuto)
    }
}

/// Why `auto` ended the warm-up where it did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AutoWarmupEnd {
    /// The first epoch that selects (the warm-up is epochs `0..first_selecting_epoch`).
    pub first_selecting_epoch: u32,
    /// The last warm-up epoch's rise of the mean CLIPScore over the epoch before it.
    pub rise: f64,
    /// The steepest rise of the warm-up.
    pub steepest_rise: f64,
    /// True when the rise never slowed enough and the warm-up ended at half the run.
    pub capped: bool,
}

/// Where `auto` ends the warm-up, given the mean CLIPScore of the visited pairs of every
/// finished epoch (in order) of a run of `epochs` epochs; `None` while it goes on.
///
/// After epoch `e ≥ 1`, with `rise_e = mean_e − mean_{e−1}`, the warm-up ends when
/// `rise_e ≤ AUTO_WARMUP_SLOWDOWN · max(0, steepest rise so far)` (so also when the mean does
/// not rise at all); it always ends once `⌈epochs / 2⌉` epochs are done. Selection starts at
/// epoch `e + 1`: the rule needs two epochs to judge, so the earliest `W` it gives is 2 (1 only
/// through the cap of a one- or two-epoch run).
///
/// ```
/// use dissect_select::auto_warmup_end;
/// // Rises of 10 and 4: the second is under half the first, so epoch 3 selects.
/// let end = auto_warmup_end(&[5.0, 15.0, 19.0], 10).unwrap();
/// assert_eq!((end.first_selecting_epoch, end.capped), (3, false));
/// assert!(auto_warmup_end(&[5.0, 15.0], 10).is_none(), "one rise cannot have slowed");
/// ```
pub fn auto_warmup_end(epoch_means: &[f64], epochs: u32) -> Option<AutoWarmupEnd> {
    let cap = epochs.div_ceil(2).max(1) as usize;
    let (mut rise, mut steepest) = (f64::NAN, f64::NEG_INFINITY);
    // Epoch `e`'s rise can end the warm-up only before the cap does.
    for e in 1..epoch_means.len().min(cap) {
        rise = epoch_means[e] - epoch_means[e - 1];
        steepest = steepest.max(rise);
        // A mean that does not rise at all (a model that has already learned what it can of
        // these pairs, e.g. a warm start) ends the warm-up too.
        if rise <= AUTO_WARMUP_SLOWDOWN * steepest.max(0.0) {
            return Some(AutoWarmupEnd {
                first_selecting_epoch: e as u32 + 1,
                rise,
                steepest_rise: steepest,
                capped: false,
            });
        }
    }
    (epoch_means.len() >= cap).then_some(AutoWarmupEnd {
        first_selecting_epoch: cap as u32,
        rise,
        steepest_rise: if steepest.is_finite() { steepest } else { f64::NAN },
        capped: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_when_the_rise_halves() {
        // Rises 10, 6, 3: 6 > 5 goes on, 3 ≤ 5 ends after epoch 3.
        let means = [0.0, 10.0, 16.0, 19.0, 20.0];
        let end = auto_warmup_end(&means, 20).unwrap();
        assert_eq!(end, AutoWarmupEnd { first_selecting_epoch: 4, rise: 3.0, steepest_rise: 10.0, capped: false });
        assert_eq!(auto_warmup_end(&means[..3], 20), None, "nothing decided before the slowdown");
        // Exactly half counts as slowed.
        assert_eq!(auto_warmup_end(&[0.0, 8.0, 12.0], 20).unwrap().first_selecting_epoch, 3);
    }

    #[test]
    fn a_late_steeper_rise_resets_the_bar() {
        // Rises 2, 6, 4, 2.5: the bar is 1 then 3; 4 > 3 goes on, 2.5 ≤ 3 ends after epoch 4.
        let end = auto_warmup_end(&[0.0, 2.0, 8.0, 12.0, 14.5], 20).unwrap();
        assert_eq!((end.first_selecting_epoch, end.steepest_rise), (5, 6.0));
    }

    #[test]
    fn a_mean_that_does_not_rise_ends_it_and_the_cap_ends_the_rest() {
        // A warm-started model: the mean falls, so there is no learning phase to wait for.
        let end = auto_warmup_end(&[56.9, 56.6], 12).unwrap();
        assert_eq!((end.first_selecting_epoch, end.capped), (2, false));
        assert_eq!(auto_warmup_end(&[10.0, 10.0], 12).unwrap().first_selecting_epoch, 2, "flat counts as not rising");
        // Steady rises never halve: the warm-up runs to half of 6 epochs.
        let means = [0.0, 10.0, 18.0, 25.0];
        assert_eq!(auto_warmup_end(&means[..2], 6), None);
        let end = auto_warmup_end(&means[..3], 6).unwrap();
        assert_eq!((end.first_selecting_epoch, end.capped, end.rise, end.steepest_rise), (3, true, 8.0, 10.0));
        // Odd epoch counts round the half up; a one- or two-epoch run selects from epoch 1.
        assert_eq!(auto_warmup_end(&[0.0, 10.0, 20.0], 5).unwrap().first_selecting_epoch, 3);
        assert_eq!(auto_warmup_end(&[0.0], 2).unwrap().first_selecting_epoch, 1);
        assert_eq!(auto_warmup_end(&[0.0], 1).unwrap().first_selecting_epoch, 1);
        assert_eq!(auto_warmup_end(&[], 4), None);
    }

    #[test]
    fn parses_numbers_and_auto_from_text_and_serde() {
        assert_eq!("auto".parse::<WarmupEpochs>().unwrap(), WarmupEpochs::Auto);
        assert_eq!(" 3 ".parse::<WarmupEpochs>().unwrap(), WarmupEpochs::Fixed(3));
        let err = "soon".parse::<WarmupEpochs>().unwrap_err().to_string();
        assert!(err.contains("'soon'") && err.contains("auto"), "{err}");
        assert_eq!(serde_json::from_str::<WarmupEpochs>("4").unwrap(), WarmupEpochs::Fixed(4));
        assert_eq!(serde_json::from_str::<WarmupEpochs>("\"AUTO\"").unwrap(), WarmupEpochs::Auto);
        assert!(serde_json::from_str::<WarmupEpochs>("-1").is_err());
        assert_eq!(serde_json::to_string(&WarmupEpochs::Auto).unwrap(), "\"auto\"");
        assert_eq!(serde_json::to_string(&WarmupEpochs::Fixed(2)).unwrap(), "2");
        assert_eq!((WarmupEpochs::Auto.to_string(), WarmupEpochs::Fixed(7).fixed()), ("auto".into(), Some(7)));
    }
}
