//! The real trainer on tiny generated data: resume equivalence, k rows per step,
//! divergence handling, oracle strategies.

use std::path::Path;

use dissect_data::{Benchmark, GenerateOptions, generate};
use dissect_select::{Strategy, read_records};
use dissect_train::{TrainConfig, TrainError, train};

fn dataset(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("data");
    let mut options = GenerateOptions::new(Benchmark::NoisyShapes, &data);
    options.noise_rate = 0.4;
    options.train_size = Some(192);
    options.test_size = Some(48);
    generate(&options).unwrap();
    data
}

fn config(data: &Path, out: &Path, strategy: Strategy) -> TrainConfig {
    TrainConfig {
        data: data.to_path_buf(),
        out: out.to_path_buf(),
        model: "micro".into(),
        epochs: 2,
        batch_size: 32,
        lr: 1e-3,
        warmup_steps: 2,
        strategy,
        rate: 0.3,
        warmup_epochs: 1,
        loader_threads: 2,
        progress: false,
        vocab_size: 512,
        ..TrainConfig::default()
    }
}

fn log_lines(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("log.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Everything but wall-clock times.
fn without_times(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(map) = v.as_object_mut() {
        map.retain(|k, _| !k.starts_with("time") && k != "train_time_s");
        for value in map.values_mut() {
            *value = without_times(value.take());
        }
    } else if let Some(items) = v.as_array_mut() {
        for item in items.iter_mut() {
            *item = without_times(item.take());
        }
    }
    v
}

#[test]
fn stopped_and_resumed_run_equals_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    // The uninterrupted run keeps its score state in a memory-mapped file, the stopped one in
    // RAM, the resumed one maps it again: the storage must not change a single value.
    let straight_dir = dir.path().join("straight");
    let mapped = |mut c: TrainConfig| {
        c.mapped_scores = true;
        c
    };
    let straight = train(&mapped(config(&data, &straight_dir, Strategy::DissectMomentum)), false).unwrap();
    assert!(!straight_dir.join(dissect_train::MAPPED_SCORES_FILE).exists(), "working file removed at the end");

    let resumed_dir = dir.path().join("resumed");
    let mut first = config(&data, &resumed_dir, Strategy::DissectMomentum);
    first.max_steps = Some(4); // mid-epoch: 6 steps per epoch
    let partial = train(&first, false).unwrap();
    assert!(partial.stopped_early);
    let err = train(&config(&data, &resumed_dir, Strategy::DissectMomentum), false).unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");
    let mut changed = config(&data, &resumed_dir, Strategy::DissectMomentum);
    changed.rate = 0.5;
    let err = train(&changed, true).unwrap_err().to_string();
    assert!(err.contains("rate"), "{err}");
    let resumed = train(&mapped(config(&data, &resumed_dir, Strategy::DissectMomentum)), true).unwrap();

    assert_eq!(resumed.steps, straight.steps);
    let a = without_times(serde_json::to_value(&straight.epochs).unwrap());
    let b = without_times(serde_json::to_value(&resumed.epochs).unwrap());
    assert_eq!(a, b, "epoch summaries (losses, noise metrics, test metrics) must match");
    let records = |d: &Path| read_records(d.join("visits.dsv")).unwrap();
    let (ra, rb) = (records(&straight_dir), records(&resumed_dir));
    assert_eq!(ra.len(), rb.len());
    assert!(ra.iter().zip(&rb).all(|(x, y)| x.index == y.index
        && x.selected == y.selected
        && x.step == y.step
        && x.curr.to_bits() == y.curr.to_bits()));
    let logs = |d: &Path| log_lines(d).into_iter().map(without_times).collect::<Vec<_>>();
    assert_eq!(logs(&straight_dir), logs(&resumed_dir), "the log holds each step exactly once");
}

#[test]
fn only_k_rows_are_trained_and_every_step_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let run = dir.path().join("run");
    let outcome = train(&config(&data, &run, Strategy::Clipscore), false).unwrap();
    let steps: Vec<_> = log_lines(&run).into_iter().filter(|l| l["type"] == "step").collect();
    assert_eq!(steps.len() as u64, outcome.steps);
    assert_eq!(outcome.steps, 12, "192 samples / batch 32 × 2 epochs");
    for step in &steps {
        assert_eq!(step["batch"], 32);
        assert_eq!(step["trained_rows"], 9, "floor(32 · 0.3) rows enter the training pass");
    }
    let records = read_records(run.join("visits.dsv")).unwrap();
    assert_eq!(records.len(), 12 * 32);
    assert_eq!(records.iter().filter(|r| r.selected).count(), 12 * 9);
    let last = outcome.epochs.last().unwrap();
    let noise = last.noise.unwrap();
    assert_eq!(noise.visits, 192);
    assert!(last.eval.is_some() && last.clean_scores.is_some() && last.noisy_scores.is_some());
    assert!(run.join("checkpoints/latest").is_file() && run.join("summary.json").is_file());

    // The oracle strategies rank with that finished run as the frozen reference.
    for oracle in [Strategy::OracleClipscore, Strategy::OracleCliploss] {
        let mut c = config(&data, &dir.path().join(oracle.name()), oracle);
        c.reference = Some(run.clone());
        c.epochs = 1;
        let o = train(&c, false).unwrap();
        assert_eq!(o.steps, 6);
        let recs = read_records(c.out.join("visits.dsv")).unwrap();
        assert!(recs.iter().all(|r| r.rank_key.is_finite()), "{oracle} ranks on reference scores");
    }
}

/// Two data-parallel ranks on the CPU: each selects k of its own half of every batch, and a
/// run stopped and resumed equals one that never stopped.
#[test]
fn data_parallel_ranks_select_within_their_local_batch_and_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let two_ranks = |out: &Path| TrainConfig { ranks: 2, ..config(&data, out, Strategy::DissectMomentum) };
    let straight_dir = dir.path().join("straight");
    let straight = train(&two_ranks(&straight_dir), false).unwrap();
    assert_eq!(straight.steps, 12);
    for step in log_lines(&straight_dir).into_iter().filter(|l| l["type"] == "step") {
        assert_eq!(step["batch"], 32);
        assert_eq!(step["trained_rows"], 8, "floor(16 · 0.3) = 4 rows from each rank's 16");
        assert!(step["loss"].as_f64().unwrap().is_finite());
    }
    let records = read_records(straight_dir.join("visits.dsv")).unwrap();
    assert_eq!(records.len(), 12 * 32);
    for (step, visits) in records.chunks(32).enumerate() {
        for (rank, local) in visits.chunks(16).enumerate() {
            let kept = local.iter().filter(|r| r.selected).count();
            assert_eq!(kept, 4, "step {step}, rank {rank}: each rank keeps k of its own rows");
        }
    }

    let resumed_dir = dir.path().join("resumed");
    let err = train(&TrainConfig { max_steps: Some(5), ranks: 1, ..two_ranks(&resumed_dir) }, false)
        .and_then(|_| train(&two_ranks(&resumed_dir), true))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ranks"), "a run may not change its ranks on resume: {err}");
    let resumed_dir = dir.path().join("resumed-2");
    train(&TrainConfig { max_steps: Some(5), ..two_ranks(&resumed_dir) }, false).unwrap();
    let resumed = train(&two_ranks(&resumed_dir), true).unwrap();
    let a = without_times(serde_json::to_value(&straight.epochs).unwrap());
    let b = without_times(serde_json::to_value(&resumed.epochs).unwrap());
    assert_eq!(a, b);
    let again = read_records(resumed_dir.join("visits.dsv")).unwrap();
    assert!(
        records
            .iter()
            .zip(&again)
            .all(|(x, y)| x.index == y.index && x.selected == y.selected && x.curr.to_bits() == y.curr.to_bits())
    );
    assert_eq!(records.len(), again.len());
}

#[test]
fn divergence_stops_with_the_last_good_checkpoint_intact() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let run = dir.path().join("run");
    let mut c = config(&data, &run, Strategy::Full);
    c.lr = 1e12;
    c.warmup_steps = 0;
    c.max_grad_norm = 0.0;
    let err = train(&c, false).unwrap_err();
    assert!(matches!(err, TrainError::Diverged { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("last good checkpoint") && message.contains("step-"), "{message}");
    // The named checkpoint is complete and loads.
    let latest = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    let ckpt = run.join("checkpoints").join(latest.trim());
    let (model, _, _) = dissect_train::load_trained(&ckpt, &dissect_model::burn::tensor::Device::flex()).unwrap();
    assert!(model.logit_scale_value().is_finite());
}
