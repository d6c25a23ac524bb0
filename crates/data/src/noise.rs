//! Noisy-correspondence injection: swap captions among a random fraction of pairs.

use rand::SeedableRng;
use rand::seq::{IndexedRandom, SliceRandom, index::sample};
use rand_chacha::ChaCha8Rng;

use crate::error::{DataError, Result};

/// Result of [`inject_noise`]: which pairs were made noisy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoiseReport {
    /// Sorted positions of the pairs whose caption was replaced.
    pub noisy: Vec<usize>,
}

/// Replaces the captions of `round(rate·N)` randomly chosen pairs by captions of other chosen
/// pairs (a derangement among them, so each one really gets a foreign caption), and returns
/// the chosen positions. Deterministic in `seed`.
///
/// Identical caption texts are avoided too: a chosen pair never keeps a caption equal to its
/// own text when any other arrangement allows it. With a single chosen pair there is nobody to
/// swap with, so it receives a copy of another pair's caption.
pub fn inject_noise(captions: &mut [String], rate: f64, seed: u64) -> Result<NoiseReport> {
    if !(0.0..=1.0).contains(&rate) {
        return Err(DataError::Invalid(format!("noise rate {rate} is not in [0, 1]")));
    }
    let n = captions.len();
    let k = (rate * n as f64).round() as usize;
    if k == 0 {
        return Ok(NoiseReport { noisy: Vec::new() });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6e6f_6973_655f_7377);
    let mut chosen: Vec<usize> = sample(&mut rng, n, k).into_vec();
    chosen.shuffle(&mut rng);
    let original: Vec<String> = chosen.iter().map(|&i| captions[i].clone()).collect();

    if k == 1 {
        let i = chosen[0];
        let others: Vec<usize> = (0..n).filter(|&j| captions[j] != captions[i]).collect();
        let j = *others
            .choose(&mut rng)
            .ok_or_else(|| DataError::Invalid("all captions are identical; cannot inject noise".into()))?;
        captions[i] = captions[j].clone();
        return Ok(NoiseReport { noisy: vec![i] });
    }

    // Cyclic shift over a random order is a derangement of positions.
    let mut assign: Vec<usize> = (0..k).map(|p| (p + 1) % k).collect();
    // Repair positions whose new text equals the old one by swapping assignments with another
    // position where both sides then differ. Bounded: with many distinct captions this is rare.
    for p in 0..k {
        if original[assign[p]] != original[p] {
            continue;
        }
        let mut fixed = false;
        for _ in 0..64 {
            let q = rand::Rng::random_range(&mut rng, 0..k);
            if q != p && original[assign[q]] != original[p] && original[assign[p]] != original[q] {
                assign.swap(p, q);
                fixed = true;
                break;
            }
        }
        if !fixed {
            for q in 0..k {
                if q != p && original[assign[q]] != original[p] && original[assign[p]] != original[q] {
                    assign.swap(p, q);
                    break;
                }
            }
        }
    }
    for (p, &i) in chosen.iter().enumerate() {
        captions[i] = original[assign[p]].clone();
    }
    chosen.sort_unstable();
    Ok(NoiseReport { noisy: chosen })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(n: usize) -> Vec<String> {
        // Some duplicates on purpose (i % 40).
        (0..n).map(|i| format!("caption {}", i % 40)).collect()
    }

    #[test]
    fn exact_rate_all_foreign_and_deterministic() {
        for (n, p) in [(1000, 0.2), (1000, 0.5), (997, 0.33), (50, 1.0), (10, 0.1), (10, 0.2)] {
            let orig = caps(n);
            let mut a = orig.clone();
            let r = inject_noise(&mut a, p, 42).unwrap();
            assert_eq!(r.noisy.len(), (p * n as f64).round() as usize, "n={n} p={p}");
            for &i in &r.noisy {
                assert_ne!(a[i], orig[i]);
            }
            let flagged: std::collections::HashSet<_> = r.noisy.iter().copied().collect();
            for i in 0..n {
                if !flagged.contains(&i) {
                    assert_eq!(a[i], orig[i]);
                }
            }
            let mut b = orig.clone();
            assert_eq!(inject_noise(&mut b, p, 42).unwrap(), r);
            assert_eq!(a, b);
            let mut c = orig.clone();
            if n >= 100 {
                assert_ne!(inject_noise(&mut c, p, 43).unwrap(), r);
            }
        }
    }

    #[test]
    fn bad_rate_and_zero() {
        let mut c = caps(10);
        assert!(inject_noise(&mut c, 1.5, 0).is_err());
        assert!(inject_noise(&mut c, 0.0, 0).unwrap().noisy.is_empty());
    }
}
