//! The per-step selection: scores in, kept batch positions and visit records out.

use std::cmp::Ordering;

use rand::Rng;

use crate::state::flags;
use crate::{ScoreState, SelectError, SelectionConfig, Strategy, VisitRecord, WarmupEpochs, WarmupRows};

/// What the trainer knows about one batch. Slices are indexed by batch position.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchScores<'a> {
    /// Stable dataset indices of the rows.
    pub indices: &'a [u64],
    /// `100·cos(f_j, g_j)` under the current model (clamping at 0 is done here).
    pub clip_scores: Option<&'a [f32]>,
    /// Per-sample symmetric InfoNCE losses under the current model.
    pub losses: Option<&'a [f32]>,
    /// Scores from a frozen reference model (oracle strategies), higher = keep.
    pub reference_scores: Option<&'a [f32]>,
}

/// The outcome of one step's selection.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// Kept batch positions, ascending.
    pub positions: Vec<usize>,
    /// One record per row of the batch, in batch order.
    pub records: Vec<VisitRecord>,
    /// True when the rows were drawn at random (random, warm-up epochs, or a momentum
    /// batch in which no sample had history yet).
    pub drew_at_random: bool,
}

/// A strategy bound to its score state. Any trainer can drive it: it needs no tensors.
#[derive(Debug)]
pub struct Selector {
    config: SelectionConfig,
    state: ScoreState,
    /// The first selecting epoch: `W`, or for `auto` `None` until [`Selector::end_warmup`].
    first_selecting_epoch: Option<u32>,
}

impl Selector {
    /// Bind `config` to an existing `state` (e.g. one loaded from a checkpoint), after
    /// validating the config.
    pub fn new(config: SelectionConfig, state: ScoreState) -> Result<Self, SelectError> {
        config.validate()?;
        Ok(Selector { config, state, first_selecting_epoch: config.warmup_epochs.fixed() })
    }

    /// A selector with a fresh in-memory state for a dataset of `len` samples.
    pub fn with_dataset_len(config: SelectionConfig, len: u64) -> Result<Self, SelectError> {
        Selector::new(config, ScoreState::new(len)?)
    }

    /// The strategy and its parameters.
    pub fn config(&self) -> &SelectionConfig {
        &self.config
    }

    /// The per-sample score state.
    pub fn state(&self) -> &ScoreState {
        &self.state
    }

    /// The first selecting epoch: `W`, or for `auto` where [`Selector::end_warmup`] put it
    /// (`None` while an `auto` warm-up goes on).
    pub fn first_selecting_epoch(&self) -> Option<u32> {
        self.first_selecting_epoch
    }

    /// Whether the selector has a warm-up whose end is still to be decided (an `auto` one that
    /// [`Selector::end_warmup`] has not ended yet); a fixed `W` is decided from the start.
    pub fn awaits_warmup_end(&self) -> bool {
        self.config.has_warmup() && self.first_selecting_epoch.is_none()
    }

    /// Whether `epoch` is a warm-up epoch: below `W`, or with `auto` any epoch before
    /// [`Selector::end_warmup`] was called.
    pub fn warming_up(&self, epoch: u32) -> bool {
        self.first_selecting_epoch.is_none_or(|first| epoch < first)
    }

    /// Ends an `auto` warm-up: `epoch` is the first that selects (the trainer decides it with
    /// [`crate::auto_warmup_end`]). A fixed `W` cannot be moved.
    pub fn end_warmup(&mut self, epoch: u32) -> Result<(), SelectError> {
        if self.config.warmup_epochs != WarmupEpochs::Auto {
            return Err(SelectError::FixedWarmup(self.config.warmup_epochs.to_string()));
        }
        self.first_selecting_epoch = Some(epoch);
        Ok(())
    }

    /// Consume the selector, returning its score state.
    pub fn into_state(self) -> ScoreState {
        self.state
    }

    /// Choose the rows to train on: check the input, rank the rows by the strategy's key,
    /// choose the kept rows, record every visit. The state is updated only when the whole
    /// input is valid, so a rejected batch leaves no trace.
    pub fn select<R: Rng + ?Sized>(
        &mut self,
        batch: &BatchScores<'_>,
        epoch: u32,
        step: u64,
        rng: &mut R,
    ) -> Result<Selection, SelectError> {
        let inputs = self.checked_inputs(batch)?;
        let b = batch.indices.len();
        let k = self.config.keep_count(b);
        let curr = self.current_scores(inputs.clip_scores, b);
        let warming_up = self.warming_up(epoch);
        let ranked = self.rank_keys(batch.indices, &inputs, &curr, warming_up, k);
        // `warmup_rows = all`: every selecting strategy trains on every row until epoch W (the
        // DISSect scores and history still update above), so all start from the same model.
        let train_all = self.config.warmup_rows == WarmupRows::All && warming_up;
        let keys = if train_all { None } else { ranked.keys };
        let strategy = self.config.strategy;
        let positions = choose_rows(keys.as_deref(), train_all || strategy == Strategy::Full, b, k, rng);
        let visits = Visits { epoch, step, curr: &curr, hist: &ranked.hist_used, keys: keys.as_deref() };
        let records = self.record_visits(batch.indices, &positions, &visits);
        let drew_at_random = keys.is_none() && strategy != Strategy::Full && !train_all;
        Ok(Selection { positions, records, drew_at_random })
    }

    /// Checks the batch against the state and the strategy's needs, changing nothing.
    fn checked_inputs<'a>(&self, batch: &BatchScores<'a>) -> Result<Inputs<'a>, SelectError> {
        let strategy = self.config.strategy;
        let b = batch.indices.len();
        if b == 0 {
            return Err(SelectError::EmptyBatch);
        }
        let len = self.state.len();
        for (position, &index) in batch.indices.iter().enumerate() {
            if index >= len {
                return Err(SelectError::IndexOutOfRange { index, position, len });
            }
        }
        let inputs = Inputs {
            clip_scores: checked(batch.clip_scores, "CLIP scores", b)?,
            losses: checked(batch.losses, "per-sample losses", b)?,
            reference: checked(batch.reference_scores, "reference scores", b)?,
        };
        let needs = strategy.needs();
        let missing = |what| SelectError::MissingInput { strategy: strategy.name(), what };
        if needs.clip_scores && inputs.clip_scores.is_none() {
            return Err(missing("CLIP scores"));
        }
        if needs.losses && inputs.losses.is_none() {
            return Err(missing("per-sample losses"));
        }
        if needs.reference_scores && inputs.reference.is_none() {
            return Err(missing("reference scores"));
        }
        Ok(inputs)
    }

    /// The rows' current CLIPScores as the strategy uses them (NaN when none were given).
    fn current_scores(&self, clip_scores: Option<&[f32]>, b: usize) -> Vec<f32> {
        match clip_scores {
            // DISSect uses CLIPScore clamped at 0 (docs/algorithm.md, step 2).
            Some(s) if self.config.strategy.is_dissect() => s.iter().map(|v| v.max(0.0)).collect(),
            Some(s) => s.to_vec(),
            None => vec![f32::NAN; b],
        }
    }

    /// The strategy's ranking key of every row (`None`: draw the rows at random), updating the
    /// DISSect history of the rows it ranks.
    fn rank_keys(&mut self, indices: &[u64], inputs: &Inputs<'_>, curr: &[f32], warming_up: bool, k: usize) -> Ranked {
        let mut hist_used = vec![f32::NAN; indices.len()];
        let keys = match self.config.strategy {
            Strategy::Full | Strategy::Random => None,
            Strategy::SmallLoss => inputs.losses.map(|l| l.iter().map(|v| -v).collect()),
            Strategy::BigLoss => inputs.losses.map(<[f32]>::to_vec),
            Strategy::Clipscore => Some(curr.to_vec()),
            Strategy::OracleClipscore | Strategy::OracleCliploss => inputs.reference.map(<[f32]>::to_vec),
            Strategy::DissectWarmup => {
                warmup_gap_keys(self.state.slots_mut(), indices, curr, warming_up, &mut hist_used)
            }
            strategy @ (Strategy::DissectMomentum | Strategy::DissectGated) => {
                let beta = self.config.momentum as f32;
                let gaps = momentum_gap_keys(self.state.slots_mut(), indices, curr, beta, &mut hist_used);
                gaps.map(|mut gaps| {
                    if strategy == Strategy::DissectGated {
                        gate_by_score(&mut gaps, curr, k);
                    }
                    gaps
                })
            }
        };
        Ranked { keys, hist_used }
    }

    /// One record per row, and the per-sample bookkeeping of the visit.
    fn record_visits(&mut self, indices: &[u64], positions: &[usize], visits: &Visits<'_>) -> Vec<VisitRecord> {
        let mut selected = vec![false; indices.len()];
        for &p in positions {
            selected[p] = true;
        }
        let slots = self.state.slots_mut();
        let mut records = Vec::with_capacity(indices.len());
        for (j, &index) in indices.iter().enumerate() {
            let slot = &mut slots[index as usize];
            slot.flags |= flags::SEEN;
            slot.last = visits.curr[j];
            slot.last_epoch = visits.epoch;
            slot.times_selected += u32::from(selected[j]);
            records.push(VisitRecord {
                epoch: visits.epoch,
                step: visits.step,
                index,
                curr: visits.curr[j],
                hist: visits.hist[j],
                rank_key: visits.keys.map_or(f32::NAN, |k| k[j]),
                selected: selected[j],
            });
        }
        records
    }
}

/// A batch's optional inputs, checked for length and finiteness.
struct Inputs<'a> {
    clip_scores: Option<&'a [f32]>,
    losses: Option<&'a [f32]>,
    reference: Option<&'a [f32]>,
}

/// The ranking keys of a batch and the history each row's key used (NaN where none).
struct Ranked {
    keys: Option<Vec<f32>>,
    hist_used: Vec<f32>,
}

/// What every visit record of a step shares, and the per-row values it records.
struct Visits<'a> {
    epoch: u32,
    step: u64,
    curr: &'a [f32],
    hist: &'a [f32],
    keys: Option<&'a [f32]>,
}

/// dissect-warmup's key: the centred drop from the score stored at the end of the warm-up,
/// `(warm − mean warm) − (curr − mean curr)`; `None` during the warm-up.
fn warmup_gap_keys(
    slots: &mut [crate::state::Slot],
    indices: &[u64],
    curr: &[f32],
    warming_up: bool,
    hist_used: &mut [f32],
) -> Option<Vec<f32>> {
    let mut warm = Vec::with_capacity(indices.len());
    for (j, &index) in indices.iter().enumerate() {
        let slot = &mut slots[index as usize];
        if let Some(w) = slot.warm() {
            hist_used[j] = w;
        }
        // During warm-up every visit overwrites the stored score, so it ends as the last
        // warm-up visit's. A sample first met after warm-up stores its first score,
        // contributing no gap of its own now.
        if warming_up || slot.warm().is_none() {
            slot.warm = curr[j];
            slot.flags |= flags::HAS_WARM;
        }
        warm.push(if warming_up { f32::NAN } else { slot.warm });
    }
    (!warming_up).then(|| {
        let mean_warm = mean(&warm);
        let mean_curr = mean(curr);
        warm.iter().zip(curr).map(|(w, c)| (w - mean_warm) - (c - mean_curr)).collect()
    })
}

/// dissect-momentum's key: the drop `hist − curr` against the momentum history, which is
/// then updated to `β·hist + (1 − β)·curr`; `None` when no row of the batch had history.
fn momentum_gap_keys(
    slots: &mut [crate::state::Slot],
    indices: &[u64],
    curr: &[f32],
    beta: f32,
    hist_used: &mut [f32],
) -> Option<Vec<f32>> {
    let mut any_history = false;
    let mut gaps = Vec::with_capacity(indices.len());
    for (j, &index) in indices.iter().enumerate() {
        let slot = &mut slots[index as usize];
        // First sight takes hist = curr: no gap, rather than the authors' hist = 0 that
        // would favour the lowest-scoring pairs.
        let h = match slot.hist() {
            Some(h) => {
                any_history = true;
                hist_used[j] = h;
                h
            }
            None => curr[j],
        };
        gaps.push(h - curr[j]);
        // The gap above used the old history; the update comes after it.
        slot.hist = beta * h + (1.0 - beta) * curr[j];
        slot.flags |= flags::HAS_HIST;
    }
    any_history.then_some(gaps)
}

/// The kept positions, ascending: every row, the top `k` by key, or `k` drawn at random.
fn choose_rows<R: Rng + ?Sized>(keys: Option<&[f32]>, keep_all: bool, b: usize, k: usize, rng: &mut R) -> Vec<usize> {
    match keys {
        _ if keep_all => (0..b).collect(),
        Some(keys) => top_k(keys, k),
        None => {
            let mut drawn = rand::seq::index::sample(rng, b, k).into_vec();
            drawn.sort_unstable();
            drawn
        }
    }
}

/// dissect-gated's gate: the gap of every row outside the batch's upper half by current
/// CLIPScore (at least `k` rows, ties to the lower position) becomes −∞, so the top-k ranks
/// only pairs the model aligns now. A pair whose score is low at both visits has a gap near
/// 0 and is otherwise kept over a clean pair that rose (docs/when-dissect-works.md, section 2).
fn gate_by_score(gaps: &mut [f32], curr: &[f32], k: usize) {
    let gate = k.max(curr.len().div_ceil(2));
    let mut inside = vec![false; curr.len()];
    for position in top_k(curr, gate) {
        inside[position] = true;
    }
    for (gap, inside) in gaps.iter_mut().zip(inside) {
        if !inside {
            *gap = f32::NEG_INFINITY;
        }
    }
}

fn checked<'a>(values: Option<&'a [f32]>, what: &'static str, batch: usize) -> Result<Option<&'a [f32]>, SelectError> {
    let Some(values) = values else { return Ok(None) };
    if values.len() != batch {
        return Err(SelectError::LengthMismatch { what, batch, len: values.len() });
    }
    if let Some((position, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(SelectError::NonFinite { what, position, value });
    }
    Ok(Some(values))
}

fn mean(values: &[f32]) -> f32 {
    // f64 accumulation keeps the centring exact enough for batches of 10^4 rows.
    (values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len() as f64) as f32
}

/// Positions of the `k` largest keys, ties broken by lower position, returned ascending.
/// Linear-time selection, then a sort of the `k` winners only.
pub fn top_k(keys: &[f32], k: usize) -> Vec<usize> {
    let k = k.min(keys.len());
    let mut positions: Vec<usize> = (0..keys.len()).collect();
    let order = |a: &usize, b: &usize| -> Ordering { keys[*b].total_cmp(&keys[*a]).then(a.cmp(b)) };
    if k > 0 && k < positions.len() {
        positions.select_nth_unstable_by(k - 1, order);
    }
    positions.truncate(k);
    positions.sort_unstable();
    positions
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn selector(strategy: Strategy, rate: f64, n: u64) -> Selector {
        Selector::with_dataset_len(SelectionConfig::new(strategy, rate).unwrap(), n).unwrap()
    }

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(7)
    }

    fn scores<'a>(indices: &'a [u64], clip: &'a [f32]) -> BatchScores<'a> {
        BatchScores { indices, clip_scores: Some(clip), ..Default::default() }
    }

    #[test]
    fn top_k_breaks_ties_by_lower_position() {
        assert_eq!(top_k(&[1.0, 3.0, 3.0, 2.0, 3.0], 2), vec![1, 2]);
        assert_eq!(top_k(&[1.0, 3.0, 3.0, 2.0, 3.0], 3), vec![1, 2, 4]);
        assert_eq!(top_k(&[5.0; 6], 4), vec![0, 1, 2, 3]);
        assert_eq!(top_k(&[0.0, -1.0, 2.0], 3), vec![0, 1, 2]);
        assert_eq!(top_k(&[0.0, -1.0, 2.0], 1), vec![2]);
    }

    #[test]
    fn full_keeps_everything_and_random_keeps_k() {
        let idx = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        let mut full = selector(Strategy::Full, 0.3, 10);
        let s = full.select(&BatchScores { indices: &idx, ..Default::default() }, 0, 0, &mut rng()).unwrap();
        assert_eq!(s.positions, (0..10).collect::<Vec<_>>());
        assert!(!s.drew_at_random);

        let mut random = selector(Strategy::Random, 0.3, 10);
        let s = random.select(&BatchScores { indices: &idx, ..Default::default() }, 0, 0, &mut rng()).unwrap();
        assert_eq!(s.positions.len(), 3);
        assert!(s.positions.windows(2).all(|w| w[0] < w[1]));
        assert!(s.drew_at_random);
        let again = selector(Strategy::Random, 0.3, 10)
            .select(&BatchScores { indices: &idx, ..Default::default() }, 0, 0, &mut rng())
            .unwrap();
        assert_eq!(s.positions, again.positions, "same seed, same rows");
        assert_eq!(random.state().get(idx[s.positions[0]]).unwrap().times_selected, 1);
    }

    #[test]
    fn clipscore_keeps_highest_current_scores() {
        let idx = [10, 11, 12, 13];
        let clip = [20.0, -5.0, 31.0, 20.0];
        let s = selector(Strategy::Clipscore, 0.5, 20).select(&scores(&idx, &clip), 0, 0, &mut rng()).unwrap();
        assert_eq!(s.positions, vec![0, 2], "tie at 20 goes to the lower position");
        assert_eq!(s.records[1].rank_key, -5.0, "clipscore ranks the raw score");
    }

    /// Per-sample losses from a known 3×3 similarity matrix, computed by hand:
    /// S = [[2,0,0],[0,1,0],[1,0,0]] (logit scale already applied).
    /// Row CE_j = logsumexp(S_j·) − S_jj; column CE_j = logsumexp(S_·j) − S_jj.
    #[test]
    fn small_and_big_loss_rank_per_sample_losses() {
        let e = std::f32::consts::E;
        let lse = |v: [f32; 3]| v.iter().map(|x| x.exp()).sum::<f32>().ln();
        let row = [lse([2.0, 0.0, 0.0]) - 2.0, lse([0.0, 1.0, 0.0]) - 1.0, lse([1.0, 0.0, 0.0]) - 0.0];
        let col = [lse([2.0, 0.0, 1.0]) - 2.0, lse([0.0, 1.0, 0.0]) - 1.0, lse([0.0, 0.0, 0.0]) - 0.0];
        let losses: Vec<f32> = (0..3).map(|j| 0.5 * (row[j] + col[j])).collect();
        // By hand: ℓ0 = ½(ln(e²+2)−2 + ln(e²+1+e)−2) ≈ 0.319, ℓ1 = ln(e+2)−1 ≈ 0.551,
        // ℓ2 = ½(ln(e+2) + ln 3) ≈ 1.325.
        assert!((losses[0] - 0.5 * ((e * e + 2.0).ln() - 2.0 + (e * e + 1.0 + e).ln() - 2.0)).abs() < 1e-6);
        assert!((losses[1] - ((e + 2.0).ln() - 1.0)).abs() < 1e-6);
        assert!((losses[2] - 0.5 * ((e + 2.0).ln() + 3f32.ln())).abs() < 1e-6);
        let idx = [0, 1, 2];
        let batch = BatchScores { indices: &idx, losses: Some(&losses), ..Default::default() };
        let small = selector(Strategy::SmallLoss, 0.34, 3).select(&batch, 0, 0, &mut rng()).unwrap();
        assert_eq!(small.positions, vec![0]);
        let big = selector(Strategy::BigLoss, 0.67, 3).select(&batch, 0, 0, &mut rng()).unwrap();
        assert_eq!(big.positions, vec![1, 2]);
    }

    #[test]
    fn warmup_stores_last_warmup_score_then_ranks_centred_gap() {
        let mut sel = Selector::with_dataset_len(
            SelectionConfig::new(Strategy::DissectWarmup, 0.5).unwrap().with_warmup_epochs(2),
            4,
        )
        .unwrap();
        let idx = [0, 1, 2, 3];
        // Epoch 0 and 1 are warm-up: random rows, every visit overwrites `warm`.
        let s = sel.select(&scores(&idx, &[1.0, 1.0, 1.0, 1.0]), 0, 0, &mut rng()).unwrap();
        assert!(s.drew_at_random && s.positions.len() == 2);
        let s = sel.select(&scores(&idx, &[50.0, 40.0, 30.0, -20.0]), 1, 1, &mut rng()).unwrap();
        assert!(s.drew_at_random);
        assert_eq!(s.records[0].hist, 1.0, "the previous warm-up score is reported as history");
        let warm: Vec<f32> = (0..4).map(|i| sel.state().get(i).unwrap().warm().unwrap()).collect();
        assert_eq!(warm, vec![50.0, 40.0, 30.0, 0.0], "last warm-up visit, clamped at 0");

        // Epoch 2: gap = (warm − mean warm) − (curr − mean curr).
        // warm = [50,40,30,0], mean 30 → [20,10,0,−30]
        // curr = [60,20,30,10], mean 30 → [30,−10,0,−20]
        // gap  = [−10, 20, 0, −10] → keep positions 1 and 2.
        let s = sel.select(&scores(&idx, &[60.0, 20.0, 30.0, 10.0]), 2, 2, &mut rng()).unwrap();
        assert!(!s.drew_at_random);
        assert_eq!(s.positions, vec![1, 2]);
        let gaps: Vec<f32> = s.records.iter().map(|r| r.rank_key).collect();
        assert_eq!(gaps, vec![-10.0, 20.0, 0.0, -10.0]);
        // After warm-up the stored score is frozen.
        assert_eq!(sel.state().get(0).unwrap().warm, 50.0);
    }

    #[test]
    fn warmup_rows_all_trains_every_row_until_w() {
        let idx = [0, 1, 2, 3];
        // Any selecting strategy trains on all rows before W, then selects k.
        let config = SelectionConfig::new(Strategy::Random, 0.5).unwrap().with_warmup_rows(WarmupRows::All);
        let mut sel = Selector::with_dataset_len(config.with_warmup_epochs(1), 4).unwrap();
        let s = sel.select(&scores(&idx, &[1.0; 4]), 0, 0, &mut rng()).unwrap();
        assert_eq!((s.positions.len(), s.drew_at_random), (4, false));
        let s = sel.select(&scores(&idx, &[1.0; 4]), 1, 1, &mut rng()).unwrap();
        assert_eq!((s.positions.len(), s.drew_at_random), (2, true));
        for strategy in [Strategy::DissectWarmup, Strategy::DissectMomentum] {
            let config = SelectionConfig::new(strategy, 0.5)
                .unwrap()
                .with_warmup_epochs(1)
                .with_warmup_rows(WarmupRows::All)
                .with_momentum(0.5)
                .unwrap();
            let mut sel = Selector::with_dataset_len(config, 4).unwrap();
            // Epoch 0 < W: every row, no ranking, and the scores still recorded.
            let s = sel.select(&scores(&idx, &[10.0, 20.0, 30.0, 40.0]), 0, 0, &mut rng()).unwrap();
            assert_eq!(s.positions, vec![0, 1, 2, 3], "{strategy:?}");
            assert!(!s.drew_at_random && s.records.iter().all(|r| r.selected && r.rank_key.is_nan()));
            // A second warm-up visit: momentum's history keeps updating (10 → ½·10 + ½·30 = 20).
            let s = sel.select(&scores(&idx, &[30.0, 20.0, 30.0, 40.0]), 0, 1, &mut rng()).unwrap();
            assert_eq!(s.positions.len(), 4);
            if strategy == Strategy::DissectMomentum {
                assert_eq!(sel.state().get(0).unwrap().hist(), Some(20.0));
            }
            // Epoch 1 = W: k rows by the gap, as with random warm-up.
            let s = sel.select(&scores(&idx, &[10.0, 20.0, 30.0, 40.0]), 1, 2, &mut rng()).unwrap();
            assert_eq!(s.positions.len(), 2);
            assert!(!s.drew_at_random);
            // warm-up: warm = [30,20,30,40] centred [0,−10,0,10]; curr centred [−15,−5,5,15];
            //   gap = (15, −5, −5, −5) → position 0, then the tie goes to position 1.
            // momentum: hist = [20,20,30,40], gap = hist − curr = (10, 0, 0, 0) → positions 0, 1.
            assert_eq!(s.positions, vec![0, 1], "{strategy:?}");
        }
        assert_eq!("ALL".parse::<WarmupRows>().unwrap(), WarmupRows::All);
        let err = "some".parse::<WarmupRows>().unwrap_err().to_string();
        assert!(err.contains("'some'") && err.contains("random or all"), "{err}");
    }

    #[test]
    fn auto_warmup_lasts_until_ended_and_fixed_cannot_be_moved() {
        let config = SelectionConfig::new(Strategy::DissectWarmup, 0.5).unwrap().with_warmup_epochs(WarmupEpochs::Auto);
        let mut sel = Selector::with_dataset_len(config, 4).unwrap();
        let idx = [0, 1, 2, 3];
        // Without an end, every epoch warms up: random rows, the warm-up score overwritten.
        for epoch in [0, 5, 40] {
            assert!(sel.warming_up(epoch));
            let s = sel.select(&scores(&idx, &[10.0, 20.0, 30.0, 40.0]), epoch, 0, &mut rng()).unwrap();
            assert!(s.drew_at_random, "epoch {epoch}");
        }
        assert!(sel.awaits_warmup_end());
        sel.end_warmup(41).unwrap();
        assert!(!sel.awaits_warmup_end());
        assert!(sel.warming_up(40) && !sel.warming_up(41));
        assert_eq!(sel.first_selecting_epoch(), Some(41));
        // Sample 2 dropped against its warm-up score: the gap keeps it.
        let s = sel.select(&scores(&idx, &[10.0, 20.0, 0.0, 40.0]), 41, 1, &mut rng()).unwrap();
        assert!(!s.drew_at_random && s.positions.contains(&2), "{:?}", s.positions);

        let mut fixed = selector(Strategy::DissectWarmup, 0.5, 4);
        assert!(!fixed.awaits_warmup_end(), "a fixed W is decided from the start");
        let err = fixed.end_warmup(1).unwrap_err().to_string();
        assert!(err.contains("fixed at W = 2"), "{err}");
        assert!(fixed.warming_up(1) && !fixed.warming_up(2));
    }

    /// dissect-gated by hand: B = 6, r = 0.34 → k = 2, gate = ⌈6/2⌉ = 3 rows by current score.
    #[test]
    fn gated_ranks_the_gap_only_inside_the_upper_half_by_score() {
        let config = SelectionConfig::new(Strategy::DissectGated, 0.34).unwrap().with_momentum(0.5).unwrap();
        let mut sel = Selector::with_dataset_len(config, 6).unwrap();
        let idx = [0, 1, 2, 3, 4, 5];
        // First sight: no history, random rows (as dissect-momentum), hist = curr.
        let s = sel.select(&scores(&idx, &[50.0, 40.0, 30.0, 20.0, 10.0, 5.0]), 0, 0, &mut rng()).unwrap();
        assert!(s.drew_at_random && s.positions.len() == 2);
        // Now: curr = [45, 25, 31, 0, 0, 9] → gaps hist − curr = [5, 15, −1, 20, 10, −4].
        // Upper half by curr: positions 0, 2, 1 (45, 31, 25); positions 3, 4, 5 are gated out
        // although 3 and 4 dropped most. Inside: gaps 5, 15, −1 → positions 1 and 0.
        let s = sel.select(&scores(&idx, &[45.0, 25.0, 31.0, -3.0, 0.0, 9.0]), 1, 1, &mut rng()).unwrap();
        assert_eq!(s.positions, vec![0, 1]);
        let keys: Vec<f32> = s.records.iter().map(|r| r.rank_key).collect();
        assert_eq!(&keys[..3], &[5.0, 15.0, -1.0]);
        assert!(keys[3..].iter().all(|k| *k == f32::NEG_INFINITY), "{keys:?}");
        // dissect-momentum on the same history keeps the two largest gaps: positions 3 and 1.
        let mut momentum = Selector::with_dataset_len(
            SelectionConfig::new(Strategy::DissectMomentum, 0.34).unwrap().with_momentum(0.5).unwrap(),
            6,
        )
        .unwrap();
        momentum.select(&scores(&idx, &[50.0, 40.0, 30.0, 20.0, 10.0, 5.0]), 0, 0, &mut rng()).unwrap();
        let s = momentum.select(&scores(&idx, &[45.0, 25.0, 31.0, -3.0, 0.0, 9.0]), 1, 1, &mut rng()).unwrap();
        assert_eq!(s.positions, vec![1, 3]);
    }

    #[test]
    fn warmup_centring_ignores_a_global_shift() {
        let mut sel = Selector::with_dataset_len(
            SelectionConfig::new(Strategy::DissectWarmup, 0.5).unwrap().with_warmup_epochs(1),
            4,
        )
        .unwrap();
        let idx = [0, 1, 2, 3];
        sel.select(&scores(&idx, &[10.0, 20.0, 30.0, 40.0]), 0, 0, &mut rng()).unwrap();
        // Every score rose by 25 except sample 2, which rose by only 5: a relative drop.
        let s = sel.select(&scores(&idx, &[35.0, 45.0, 35.0, 65.0]), 1, 1, &mut rng()).unwrap();
        // shifts relative to the mean shift (20): [+5,+5,−15,+5] → gap = [−5,−5,15,−5].
        assert_eq!(s.records.iter().map(|r| r.rank_key).collect::<Vec<_>>(), vec![-5.0, -5.0, 15.0, -5.0]);
        assert_eq!(s.positions, vec![0, 2], "sample 2 first, then the tie goes to position 0");
    }

    #[test]
    fn momentum_first_sight_random_then_gap_and_ema_order() {
        let mut sel = Selector::with_dataset_len(
            SelectionConfig::new(Strategy::DissectMomentum, 0.5).unwrap().with_momentum(0.5).unwrap(),
            6,
        )
        .unwrap();
        // No sample has history: random rows, history initialised to the current score.
        let s = sel.select(&scores(&[0, 1, 2, 3], &[10.0, 20.0, -4.0, 40.0]), 0, 0, &mut rng()).unwrap();
        assert!(s.drew_at_random);
        assert!(s.records.iter().all(|r| r.hist.is_nan()));
        let hist: Vec<f32> = (0..4).map(|i| sel.state().get(i).unwrap().hist().unwrap()).collect();
        assert_eq!(hist, vec![10.0, 20.0, 0.0, 40.0], "first sight takes hist = max(0, curr)");

        // Samples 0..3 have history; 4 is new (gap 0). gap = hist − curr uses the OLD history:
        // 0: 10−30 = −20, 1: 20−10 = 10, 4: new → 0, 3: 40−20 = 20.
        let s = sel.select(&scores(&[0, 1, 4, 3], &[30.0, 10.0, 7.0, 20.0]), 1, 1, &mut rng()).unwrap();
        assert!(!s.drew_at_random);
        assert_eq!(s.records.iter().map(|r| r.rank_key).collect::<Vec<_>>(), vec![-20.0, 10.0, 0.0, 20.0]);
        assert_eq!(s.positions, vec![1, 3]);
        assert_eq!(s.records[0].hist, 10.0);
        // Then the EMA update with β = 0.5: hist ← 0.5·hist + 0.5·curr.
        let hist: Vec<f32> = [0, 1, 4, 3].iter().map(|&i| sel.state().get(i).unwrap().hist().unwrap()).collect();
        assert_eq!(hist, vec![20.0, 15.0, 7.0, 30.0]);
        let slot = sel.state().get(1).unwrap();
        assert_eq!((slot.last_epoch, slot.last), (1, 10.0));
        assert!(slot.times_selected >= 1, "selected in step 1, perhaps also in the random step 0");
    }

    #[test]
    fn bookkeeping_counts_visits() {
        let mut sel = selector(Strategy::Clipscore, 0.5, 3);
        sel.select(&scores(&[0, 1], &[5.0, 1.0]), 0, 0, &mut rng()).unwrap();
        sel.select(&scores(&[0, 2], &[5.0, 9.0]), 3, 1, &mut rng()).unwrap();
        let s0 = *sel.state().get(0).unwrap();
        assert_eq!((s0.times_selected, s0.last_epoch, s0.seen()), (1, 3, true));
        let s1 = *sel.state().get(1).unwrap();
        assert_eq!((s1.times_selected, s1.last_epoch, s1.last), (0, 0, 1.0));
        assert_eq!(sel.state().get(2).unwrap().times_selected, 1);
        assert_eq!(sel.state().seen_count(), 3);
    }

    #[test]
    fn oracle_uses_reference_scores() {
        let idx = [0, 1, 2];
        let reference = [0.1, 0.9, 0.5];
        let batch = BatchScores { indices: &idx, reference_scores: Some(&reference), ..Default::default() };
        let s = selector(Strategy::OracleCliploss, 0.67, 3).select(&batch, 0, 0, &mut rng()).unwrap();
        assert_eq!(s.positions, vec![1, 2]);
    }

    #[test]
    fn bad_input_is_a_clear_error_and_leaves_state_untouched() {
        let mut sel = selector(Strategy::DissectMomentum, 0.5, 4);
        let msg = |r: Result<Selection, SelectError>| r.unwrap_err().to_string();
        let e = msg(sel.select(&scores(&[0, 9], &[1.0, 2.0]), 0, 0, &mut rng()));
        assert!(e.contains("dataset index 9") && e.contains("holds 4"), "{e}");
        let e = msg(sel.select(&scores(&[0, 1], &[1.0]), 0, 0, &mut rng()));
        assert!(e.contains("length mismatch") && e.contains("CLIP scores"), "{e}");
        let e = msg(sel.select(&BatchScores { indices: &[0], ..Default::default() }, 0, 0, &mut rng()));
        assert!(e.contains("needs CLIP scores"), "{e}");
        let e = msg(sel.select(&scores(&[0, 1], &[1.0, f32::NAN]), 0, 0, &mut rng()));
        assert!(e.contains("not finite") && e.contains("position 1"), "{e}");
        let e = msg(sel.select(&scores(&[], &[]), 0, 0, &mut rng()));
        assert!(e.contains("empty"), "{e}");
        assert_eq!(sel.state().seen_count(), 0);
    }

    #[test]
    fn k_edges() {
        let idx: Vec<u64> = (0..10).collect();
        let clip: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let all = selector(Strategy::Clipscore, 1.0, 10).select(&scores(&idx, &clip), 0, 0, &mut rng()).unwrap();
        assert_eq!(all.positions.len(), 10);
        let one = selector(Strategy::Clipscore, 1e-9, 10).select(&scores(&idx, &clip), 0, 0, &mut rng()).unwrap();
        assert_eq!(one.positions, vec![9]);
    }

    #[test]
    fn save_load_gives_identical_selections() {
        let config = SelectionConfig::new(Strategy::DissectMomentum, 0.3).unwrap();
        let n = 64u64;
        let batches: Vec<(Vec<u64>, Vec<f32>)> = (0..12)
            .map(|step| {
                let idx: Vec<u64> = (0..16).map(|j| (step * 16 + j * 5) % n).collect();
                let clip: Vec<f32> = idx.iter().map(|&i| ((i * 37 + step * 11) % 50) as f32).collect();
                (idx, clip)
            })
            .collect();
        let run = |sel: &mut Selector, from: usize, to: usize, rng: &mut ChaCha8Rng| -> Vec<Vec<usize>> {
            (from..to)
                .map(|s| {
                    sel.select(&scores(&batches[s].0, &batches[s].1), s as u32 / 4, s as u64, rng).unwrap().positions
                })
                .collect()
        };
        let mut straight = Selector::with_dataset_len(config, n).unwrap();
        let mut r = rng();
        let expected = run(&mut straight, 0, 12, &mut r);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.dss");
        let mut first = Selector::with_dataset_len(config, n).unwrap();
        let mut r = rng();
        let mut got = run(&mut first, 0, 6, &mut r);
        first.state().save(&path).unwrap();
        drop(first);
        let mut resumed = Selector::new(config, ScoreState::load(&path).unwrap()).unwrap();
        got.extend(run(&mut resumed, 6, 12, &mut r));
        assert_eq!(got, expected);
        assert_eq!(resumed.state().slots(), straight.state().slots());
    }
}
