//! The real trainer on tiny generated data: resume equivalence, k rows per step,
//! divergence handling, oracle strategies.

use std::path::Path;

use dissect_data::{Benchmark, GenerateOptions, generate};
use dissect_select::{SelectionConfig, Strategy, WarmupEpochs, WarmupRows, auto_warmup_end, read_records};
use std::sync::Arc;

use dissect_dist::ThreadGroup;
use dissect_train::{
    Augmentation, Job, OptimConfig, RunOutcome, SelectionScope, StopSignal, TrainConfig, TrainError, train, train_in,
};

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
        optim: OptimConfig { lr: 1e-3, warmup_steps: 2, ..OptimConfig::default() },
        selection: SelectionConfig { strategy, rate: 0.3, warmup_epochs: 1.into(), ..SelectionConfig::default() },
        loader_threads: 2,
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
    changed.selection.rate = 0.5;
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

/// `warmup_epochs = auto` on `random` with all rows in the warm-up: every row trains (and is
/// scored) until the trainer ends the warm-up from the epochs' mean CLIPScores, k rows after;
/// a run stopped after that decision and resumed keeps it.
#[test]
fn auto_warmup_ends_from_the_scores_and_survives_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let auto = |out: &Path| {
        let mut c = config(&data, out, Strategy::Random);
        c.epochs = 4;
        c.selection.warmup_epochs = WarmupEpochs::Auto;
        c.selection.warmup_rows = WarmupRows::All;
        c
    };
    let straight_dir = dir.path().join("straight");
    let straight = train(&auto(&straight_dir), false).unwrap();
    let ends: Vec<_> = straight.epochs.iter().filter_map(|e| e.warmup_ended.map(|w| (e.epoch, w))).collect();
    assert_eq!(ends.len(), 1, "decided once: {ends:?}");
    let (decided_after, end) = ends[0];
    assert_eq!(end.first_selecting_epoch, decided_after + 1);
    // Its inputs are the logged means: recomputing the rule on them gives the same end. After
    // it, `random` has no scoring pass and logs no mean.
    let means: Vec<f64> = straight.epochs.iter().map_while(|e| e.mean_score).collect();
    assert_eq!(means.len(), decided_after as usize + 1);
    assert_eq!(auto_warmup_end(&means, 4), Some(end));
    for epoch in &straight.epochs {
        let all_rows = epoch.epoch < end.first_selecting_epoch;
        assert_eq!(epoch.samples_trained, if all_rows { 192 } else { 6 * 9 }, "epoch {}", epoch.epoch);
    }

    let resumed_dir = dir.path().join("resumed");
    let mut first = auto(&resumed_dir);
    first.max_steps = Some(6 * u64::from(end.first_selecting_epoch) + 2);
    assert!(train(&first, false).unwrap().stopped_early);
    let resumed = train(&auto(&resumed_dir), true).unwrap();
    let a = without_times(serde_json::to_value(&straight.epochs).unwrap());
    let b = without_times(serde_json::to_value(&resumed.epochs).unwrap());
    assert_eq!(a, b, "the resumed run selects from the same epoch, with the same rows");
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

/// Trains `config` as a job of `world` processes (threads of a [`ThreadGroup`] here; the code is
/// the one processes under torchrun run); rank 0's outcome, after every rank's.
fn train_job(config: &TrainConfig, resume: bool, world: usize) -> Result<RunOutcome, TrainError> {
    let outcomes: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = ThreadGroup::new(world)
            .into_iter()
            .map(|member| {
                let job = Job { comm: Arc::new(member), local_rank: 0 };
                scope.spawn(move || train_in(config, resume, job, &mut (), &StopSignal::new()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Rank 0's error is the cause; the others' say that it left.
    let mut outcomes = outcomes.into_iter();
    let rank0 = outcomes.next().unwrap()?;
    for other in outcomes {
        other?;
    }
    Ok(rank0)
}

fn step_losses(run: &Path) -> Vec<f64> {
    log_lines(run).into_iter().filter(|l| l["type"] == "step").map(|l| l["loss"].as_f64().unwrap()).collect()
}

/// Two processes: each selects k of its own half of every batch; only rank 0 writes, and a
/// run stopped and resumed, on another world size, equals one that never stopped.
#[test]
fn processes_select_within_their_slice_and_resume_on_any_world_size() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let local = |out: &Path| config(&data, out, Strategy::DissectMomentum);
    let straight_dir = dir.path().join("straight");
    let straight = train_job(&local(&straight_dir), false, 2).unwrap();
    assert_eq!(straight.steps, 12);
    for step in log_lines(&straight_dir).into_iter().filter(|l| l["type"] == "step") {
        assert_eq!(step["batch"], 32);
        assert_eq!(step["trained_rows"], 8, "floor(16 · 0.3) = 4 rows from each process's 16");
        assert!(step["loss"].as_f64().unwrap().is_finite());
    }
    let records = read_records(straight_dir.join("visits.dsv")).unwrap();
    assert_eq!(records.len(), 12 * 32, "rank 0 records every process's rows");
    for (step, visits) in records.chunks(32).enumerate() {
        for (rank, slice) in visits.chunks(16).enumerate() {
            let kept = slice.iter().filter(|r| r.selected).count();
            assert_eq!(kept, 4, "step {step}, rank {rank}: each process keeps k of its own rows");
        }
    }
    assert!(straight.final_eval().is_some(), "rank 0 evaluates");

    // Stopped after 5 steps of two processes, resumed by four: the same epochs.
    let resumed_dir = dir.path().join("resumed");
    train_job(&TrainConfig { max_steps: Some(5), ..local(&resumed_dir) }, false, 2).unwrap();
    let four = TrainConfig { selection_scope: SelectionScope::Global, ..local(&resumed_dir) };
    let err = train_job(&four, true, 4).unwrap_err().to_string();
    assert!(err.contains("selection_scope"), "the scope is part of the run: {err}");
    train_job(&local(&resumed_dir), true, 4).unwrap();
    let losses = step_losses(&resumed_dir);
    assert_eq!(losses[..5], step_losses(&straight_dir)[..5]);
    assert_eq!(losses.len(), 12);
}

/// With the global scope, a job of two or three processes selects what one process selects
/// on the same batches and trains on them with the same loss, up to float rounding.
#[test]
fn global_selection_equals_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let global = |out: &Path| TrainConfig {
        selection_scope: SelectionScope::Global,
        max_steps: Some(8),
        batch_size: 48,
        ..config(&data, out, Strategy::DissectMomentum)
    };
    let single_dir = dir.path().join("single");
    train(&global(&single_dir), false).unwrap();
    let single = read_records(single_dir.join("visits.dsv")).unwrap();
    for (world, loss_variant) in [(2, (false, false)), (3, (true, true))] {
        let out = dir.path().join(format!("world-{world}"));
        let (local_loss, gather_with_grad) = loss_variant;
        train_job(&TrainConfig { local_loss, gather_with_grad, ..global(&out) }, false, world).unwrap();
        let job = read_records(out.join("visits.dsv")).unwrap();
        assert_eq!(job.len(), single.len());
        for (a, b) in single.iter().zip(&job) {
            assert_eq!((a.index, a.selected), (b.index, b.selected), "world {world}");
            assert!((a.curr - b.curr).abs() < 1e-3, "world {world}: score {} vs {}", a.curr, b.curr);
        }
        for (a, b) in step_losses(&single_dir).iter().zip(step_losses(&out)) {
            assert!((a - b).abs() < 1e-4, "world {world}: loss {a} vs {b}");
        }
    }
}

#[test]
fn divergence_stops_with_the_last_good_checkpoint_intact() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let run = dir.path().join("run");
    let mut c = config(&data, &run, Strategy::Full);
    c.optim = OptimConfig { lr: 1e12, warmup_steps: 0, max_grad_norm: 0.0, ..c.optim };
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

/// Bytes a set of files takes on tmpfs (whole 4 KiB pages each).
fn pages(files: impl IntoIterator<Item = std::path::PathBuf>) -> u64 {
    files.into_iter().map(|f| std::fs::metadata(f).map_or(0, |m| m.len().div_ceil(4096) * 4096)).sum()
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { out.extend(files_under(&path)) } else { out.push(path) }
    }
    out
}

/// A disk that fills up while a checkpoint is written: the run fails with an error naming
/// the file, the temporary checkpoint folder is gone, and `latest` still names the previous,
/// complete checkpoint. Needs root (it mounts a small tmpfs); skipped with a message otherwise.
#[test]
fn a_full_disk_fails_the_run_cleanly_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let checkpoint_each_step = |out: &Path| TrainConfig {
        checkpoint_every: 1,
        keep_checkpoints: 5,
        max_steps: Some(2),
        ..config(&data, out, Strategy::Clipscore)
    };
    // Measure a run on the normal disk: what exists after the step-0 checkpoint, and the
    // size of a checkpoint's model and optimiser files once AdamW has moments.
    let probe = dir.path().join("probe");
    train(&checkpoint_each_step(&probe), false).unwrap();
    let step0: Vec<_> =
        files_under(&probe).into_iter().filter(|f| !f.to_string_lossy().contains("step-0000000")).collect();
    let step0 = pages(step0) + pages(files_under(&probe.join("checkpoints/step-00000000")));
    let step1 = probe.join("checkpoints/step-00000001");
    let (model, optimizer) = (pages([step1.join("model.bpk")]), pages([step1.join("optimizer.bpk")]));
    assert!(optimizer > 8192, "optimizer state with moments is larger than a page or two");
    // Room for step 0, the logs' growth and step 1's model, but only half its optimiser.
    let size = step0 + 64 * 1024 + model + optimizer / 2;

    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(&disk)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: mounting a tmpfs needs root (run the suite as root, as CI does, to test a full disk)");
        return;
    }
    let run = disk.join("run");
    let result = train(&checkpoint_each_step(&run), false);
    let latest = std::fs::read_to_string(run.join("checkpoints/latest"));
    let leftovers: Vec<_> = std::fs::read_dir(run.join("checkpoints"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let loads = dissect_train::load_trained(&run, &dissect_model::burn::tensor::Device::flex()).is_ok();
    let _ = std::process::Command::new("umount").arg(&disk).status();

    let err = result.expect_err("the second checkpoint cannot fit").to_string();
    assert!(err.contains("No space left on device") && err.contains("step-00000000"), "{err}");
    assert_eq!(latest.unwrap().trim(), "step-00000000");
    assert!(leftovers.iter().all(|name| !name.contains(".tmp")), "no partial checkpoint left: {leftovers:?}");
    assert!(loads, "the last good checkpoint loads");
}

/// A damaged shard (an image that does not decode, a missing image, an empty caption): a
/// training epoch, stopped and resumed in the middle, counts the same skipped samples as
/// `dissect data inspect`.
#[test]
fn skipped_samples_agree_with_inspect_across_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let shard = data.join("train-000000.tar");
    damage(
        &shard,
        &[(3, Damage::CorruptImage), (17, Damage::NoImage), (40, Damage::EmptyCaption), (101, Damage::CorruptImage)],
    );
    let manifest = dissect_data::DatasetManifest::load(&data).unwrap();
    let inspected = dissect_data::inspect(
        &manifest.train_set(&data).unwrap(),
        &dissect_data::PreprocessConfig::new(manifest.image_size),
    )
    .unwrap();
    assert_eq!((inspected.corrupt_images, inspected.missing_images, inspected.empty_captions), (2, 1, 1));

    let run = dir.path().join("run");
    let one_epoch = |max_steps| TrainConfig { epochs: 1, max_steps, ..config(&data, &run, Strategy::Random) };
    train(&one_epoch(Some(2)), false).unwrap();
    let outcome = train(&one_epoch(None), true).unwrap();
    let load = outcome.epochs[0].load;
    assert_eq!(
        (load.skipped_corrupt_image, load.skipped_missing_image, load.skipped_empty_caption, load.skipped_truncated),
        (inspected.corrupt_images, inspected.missing_images, inspected.empty_captions, inspected.truncated)
    );
    assert_eq!(load.samples + load.dropped_last + load.skipped(), 192);

    // A job of 3 processes decodes a part of each batch each, and resumed by 2 it counts the
    // same skips, once each.
    let job = dir.path().join("job");
    let one_epoch = |max_steps| TrainConfig { epochs: 1, max_steps, ..config(&data, &job, Strategy::Random) };
    let stopped = train_job(&TrainConfig { batch_size: 30, ..one_epoch(Some(2)) }, false, 3).unwrap();
    assert_eq!(stopped.steps, 2);
    let outcome = train_job(&TrainConfig { batch_size: 30, ..one_epoch(None) }, true, 2).unwrap();
    let load = outcome.epochs[0].load;
    assert_eq!(
        (load.skipped_corrupt_image, load.skipped_missing_image, load.skipped_empty_caption),
        (inspected.corrupt_images, inspected.missing_images, inspected.empty_captions)
    );
    assert_eq!(load.samples + load.dropped_last + load.skipped(), 192);
}

enum Damage {
    CorruptImage,
    NoImage,
    EmptyCaption,
}

/// Rewrites a shard with the given samples (by position) damaged; keys and order stay.
fn damage(shard: &Path, damaged: &[(usize, Damage)]) {
    let bytes = std::fs::read(shard).unwrap();
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut out = tar::Builder::new(Vec::new());
    let (mut sample, mut last_key) = (0usize, None::<String>);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let key = name.split('.').next().unwrap().to_string();
        if last_key.as_ref().is_some_and(|k| *k != key) {
            sample += 1;
        }
        last_key = Some(key);
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut body).unwrap();
        let is_image = name.ends_with(".png") || name.ends_with(".jpg");
        match damaged.iter().find(|(at, _)| *at == sample).map(|d| &d.1) {
            Some(Damage::CorruptImage) if is_image => body = b"not an image".to_vec(),
            Some(Damage::NoImage) if is_image => continue,
            Some(Damage::EmptyCaption) if name.ends_with(".txt") => body.clear(),
            _ => {}
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        out.append_data(&mut header, &name, body.as_slice()).unwrap();
    }
    std::fs::write(shard, out.into_inner().unwrap()).unwrap();
}

/// open_clip's augmentation (the default): the same seed gives the same crops, hence the same
/// selections; training sees the crops (step 0's loss differs from an unaugmented run's)
/// while the scoring pass takes the centre crops (step 0's scores equal the unaugmented
/// run's, the model being the same then).
#[test]
fn augmentation_is_seeded_and_scoring_takes_the_centre_crop() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let run = |name: &str, aug| {
        let out = dir.path().join(name);
        let strategy = Strategy::DissectMomentum;
        train(&TrainConfig { aug, max_steps: Some(3), ..config(&data, &out, strategy) }, false).unwrap();
        // Bit patterns: a record's missing history is NaN, which equals nothing as a float.
        let records: Vec<_> = read_records(out.join("visits.dsv"))
            .unwrap()
            .iter()
            .map(|r| (r.step, r.index, r.curr.to_bits(), r.hist.to_bits(), r.rank_key.to_bits(), r.selected))
            .collect();
        let loss0 = log_lines(&out)[0]["loss"].as_f64().unwrap();
        (records, loss0)
    };
    let (a, loss_a) = run("a", Augmentation::OpenClip);
    let (b, loss_b) = run("b", Augmentation::OpenClip);
    let (plain, loss_plain) = run("plain", Augmentation::None);
    assert_eq!((&a, loss_a), (&b, loss_b), "same seed, same crops and selections");
    assert_ne!(loss_a, loss_plain, "training takes the random crops");
    let step0 = |records: &[(u64, u64, u32, u32, u32, bool)]| -> Vec<(u64, u32)> {
        records.iter().filter(|r| r.0 == 0).map(|r| (r.1, r.2)).collect()
    };
    assert_eq!(step0(&a), step0(&plain), "the scoring pass takes the centre crops");
}

/// `accum_freq` reaches the step: the first step's loss (before any update) is the same with
/// the selected rows in two micro-batches as in one.
#[test]
fn accumulation_keeps_the_steps_loss() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let first_loss = |name: &str, accum_freq| {
        let out = dir.path().join(name);
        let base = config(&data, &out, Strategy::Full);
        train(&TrainConfig { accum_freq, max_steps: Some(1), aug: Augmentation::None, ..base }, false).unwrap();
        log_lines(&out)[0]["loss"].as_f64().unwrap()
    };
    let (one, two) = (first_loss("one", 1), first_loss("two", 2));
    assert!((one - two).abs() < 1e-6, "{one} vs {two}");
}
