//! Reference selections from the Rust core, for the Python package's equality test.
//!
//! `cargo run --example select_file -- SPEC.json` reads a selector configuration and a list of
//! batches, runs [`dissect_select::Selector`] over them with the RNG the Python `Selector`
//! uses (`ChaCha8Rng::seed_from_u64(seed)`), and prints one JSON object: the kept positions,
//! whether each batch was drawn at random and the ranked keys (null where NaN). With
//! `state_out` it also saves the final score state, to compare with Python's `save`
//! byte for byte. A `dissect` CLI subcommand could take this over.
//!
//! ```json
//! {"strategy": "dissect-momentum", "rate": 0.5, "dataset_len": 8, "warmup_epochs": 2,
//!  "momentum": 0.9, "warmup_rows": "random", "seed": 3, "state_out": "final.dss",
//!  "batches": [{"indices": [0, 1], "clip_scores": [1.5, 2.0], "epoch": 0, "step": 0}]}
//! ```

use std::error::Error;
use std::path::PathBuf;

use dissect_select::{BatchScores, SelectionConfig, Selector, Strategy, WarmupRows};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    strategy: String,
    rate: f64,
    dataset_len: u64,
    warmup_epochs: u32,
    momentum: f64,
    warmup_rows: String,
    seed: u64,
    state_out: Option<PathBuf>,
    batches: Vec<Batch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    indices: Vec<u64>,
    clip_scores: Option<Vec<f32>>,
    losses: Option<Vec<f32>>,
    reference_scores: Option<Vec<f32>>,
    epoch: u32,
    step: u64,
}

#[derive(Serialize)]
struct Output {
    positions: Vec<Vec<usize>>,
    drew_at_random: Vec<bool>,
    rank_keys: Vec<Vec<Option<f32>>>,
}

fn main() -> Result<(), Box<dyn Error>> {
    let path = std::env::args().nth(1).ok_or("usage: select_file SPEC.json")?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let spec: Spec = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let output = run(&spec)?;
    println!("{}", serde_json::to_string(&output)?);
    Ok(())
}

fn run(spec: &Spec) -> Result<Output, Box<dyn Error>> {
    let config = SelectionConfig::new(spec.strategy.parse::<Strategy>()?, spec.rate)?
        .with_warmup_epochs(spec.warmup_epochs)
        .with_warmup_rows(spec.warmup_rows.parse::<WarmupRows>()?)
        .with_momentum(spec.momentum)?;
    let mut selector = Selector::with_dataset_len(config, spec.dataset_len)?;
    // The Python `Selector` owns exactly this RNG.
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut output = Output { positions: Vec::new(), drew_at_random: Vec::new(), rank_keys: Vec::new() };
    for batch in &spec.batches {
        let scores = BatchScores {
            indices: &batch.indices,
            clip_scores: batch.clip_scores.as_deref(),
            losses: batch.losses.as_deref(),
            reference_scores: batch.reference_scores.as_deref(),
        };
        let selection = selector.select(&scores, batch.epoch, batch.step, &mut rng)?;
        output.rank_keys.push(selection.records.iter().map(|r| (!r.rank_key.is_nan()).then_some(r.rank_key)).collect());
        output.drew_at_random.push(selection.drew_at_random);
        output.positions.push(selection.positions);
    }
    if let Some(state_out) = &spec.state_out {
        selector.state().save(state_out)?;
    }
    Ok(output)
}
