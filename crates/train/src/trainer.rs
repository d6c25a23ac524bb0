//! The training loop with selection in the loop (DESIGN.md section 2):
//! scoring pass without the tape → selection core → forward + backward on the kept rows.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use dissect_data::{DatasetManifest, Loader, LoaderConfig, PreprocessConfig, TextTokenizer};
use dissect_model::burn::module::Module;
use dissect_model::burn::tensor::Device;
use dissect_model::{
    AdamWSettings, Clip, ClipBatch, ClipConfig, ClipOptimizer, ModelError, model_from_bytes, model_to_bytes,
    rank_devices, score_batches, train_step_ranks,
};
use dissect_select::{BatchScores, RecordWriter, ScoreState, Selector, Strategy};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::checkpoint::{
    CheckpointParts, MODEL_FILE, OPTIMIZER_FILE, SELECTION_FILE, TrainerState, latest_checkpoint, read_file,
    read_trainer_state, trainer_format_version, write_atomic, write_checkpoint,
};
use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::evaluate::EvalSet;
use crate::metrics::{EpochAccumulator, EpochSummary};
use crate::schedule::cosine_lr;

pub const CONFIG_FILE: &str = "config.toml";
pub const MODEL_CONFIG_FILE: &str = "model.toml";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const LOG_FILE: &str = "log.jsonl";
pub const SUMMARY_FILE: &str = "summary.json";
pub const MAPPED_SCORES_FILE: &str = "scores.mapped";

/// Settings a resumed run may change. The loader gives the same batches for any thread count,
/// and the score state's storage does not change its values; a different device continues
/// the run but gives up bit-equality with an unbroken one.
const RESUMABLE_CHANGES: [&str; 8] = [
    "epochs",
    "max_steps",
    "progress",
    "checkpoint_every",
    "keep_checkpoints",
    "loader_threads",
    "device",
    "mapped_scores",
];

/// What a finished (or deliberately stopped) run reports.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunOutcome {
    pub run_dir: PathBuf,
    pub strategy: Strategy,
    pub steps: u64,
    pub train_time_s: f64,
    pub epochs: Vec<EpochSummary>,
    /// True when `max_steps` stopped the run before its last epoch.
    pub stopped_early: bool,
    pub data_noise_rate: f64,
}

impl RunOutcome {
    pub fn final_eval(&self) -> Option<&crate::metrics::EvalReport> {
        self.epochs.iter().rev().find_map(|e| e.eval.as_ref())
    }
}

pub fn load_model_config(run_or_checkpoint: &Path) -> Result<(ClipConfig, PathBuf)> {
    // A checkpoint folder lives in <run>/checkpoints/<step>; accept either.
    let run = if run_or_checkpoint.join(MODEL_CONFIG_FILE).is_file() {
        run_or_checkpoint.to_path_buf()
    } else {
        run_or_checkpoint.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default()
    };
    let path = run.join(MODEL_CONFIG_FILE);
    let text = fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    Ok((ClipConfig::from_toml_str(&text)?, run))
}

/// Load a trained model (for evaluation or as an oracle reference) from a run folder (its
/// latest checkpoint) or a checkpoint folder, on `device`, with its tokenizer.
pub fn load_trained(path: &Path, device: &Device) -> Result<(Clip, ClipConfig, Arc<TextTokenizer>)> {
    let (config, run) = load_model_config(path)?;
    let checkpoint = if path.join(MODEL_FILE).is_file() {
        path.to_path_buf()
    } else {
        latest_checkpoint(&run)?.ok_or_else(|| TrainError::Checkpoint {
            path: run.clone(),
            message: "the run has no checkpoint yet".into(),
        })?
    };
    let model = Clip::new(&config, 0, device)?;
    let model = model_from_bytes(model, &read_file(&checkpoint, MODEL_FILE)?)?;
    let tokenizer = Arc::new(TextTokenizer::load(&run.join(TOKENIZER_FILE))?);
    Ok((model, config, tokenizer))
}

fn rng_state(rng: &ChaCha8Rng) -> ([u8; 32], u64, String) {
    (rng.get_seed(), rng.get_stream(), rng.get_word_pos().to_string())
}

fn restore_rng(state: &TrainerState) -> Result<ChaCha8Rng> {
    let mut rng = ChaCha8Rng::from_seed(state.rng_seed);
    rng.set_stream(state.rng_stream);
    let pos: u128 = state.rng_word_pos.parse().map_err(|_| TrainError::Checkpoint {
        path: PathBuf::from(crate::checkpoint::TRAINER_FILE),
        message: format!("bad RNG position '{}'", state.rng_word_pos),
    })?;
    rng.set_word_pos(pos);
    Ok(rng)
}

/// Refuse to resume a run with a config that would change what has been computed.
fn check_resume_config(saved: &TrainConfig, new: &TrainConfig) -> Result<()> {
    let as_table = |c: &TrainConfig| -> Result<toml::Table> {
        toml::Table::try_from(c).map_err(|e| TrainError::Config(e.to_string()))
    };
    let (saved_t, new_t) = (as_table(saved)?, as_table(new)?);
    let keys: std::collections::BTreeSet<&String> = saved_t.keys().chain(new_t.keys()).collect();
    for key in keys {
        if RESUMABLE_CHANGES.contains(&key.as_str()) || key == "out" {
            continue;
        }
        if saved_t.get(key) != new_t.get(key) {
            return Err(TrainError::Config(format!(
                "{key}: the run in {} was started with {}, not {}; resume it with the same value or start a new run folder",
                new.out.display(),
                saved_t.get(key).map_or("nothing".into(), |v| v.to_string()),
                new_t.get(key).map_or("nothing".into(), |v| v.to_string()),
            )));
        }
    }
    Ok(())
}

fn open_append(path: &Path, keep_len: Option<u64>) -> Result<File> {
    let file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| TrainError::io(path, e))?;
    if let Some(len) = keep_len {
        file.set_len(len).map_err(|e| TrainError::io(path, e))?;
    }
    Ok(file)
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Train according to `config`. With `resume`, continue from the run folder's latest
/// checkpoint (a run without one starts from scratch).
pub fn train(config: &TrainConfig, resume: bool) -> Result<RunOutcome> {
    config.validate()?;
    let run = config.out.clone();
    fs::create_dir_all(&run).map_err(|e| TrainError::io(&run, e))?;
    let checkpoint = if resume { latest_checkpoint(&run)? } else { None };
    if checkpoint.is_some() {
        let saved = TrainConfig::from_toml_file(&run.join(CONFIG_FILE))?;
        check_resume_config(&saved, config)?;
    } else if !resume && run.join(CONFIG_FILE).exists() && latest_checkpoint(&run)?.is_some() {
        return Err(TrainError::Config(format!(
            "out: {} already holds a run; pass --resume to continue it, or choose another folder",
            run.display()
        )));
    }
    write_atomic(&run.join(CONFIG_FILE), config.to_toml()?.as_bytes())?;

    let manifest = DatasetManifest::load(&config.data).map_err(|e| {
        TrainError::Config(format!(
            "data: {e}\n  (make the built-in benchmark with `dissect data generate noisy-shapes --out {}`)",
            config.data.display()
        ))
    })?;
    let train_set = manifest.train_set(&config.data)?;
    let dataset_len = train_set.shards.iter().map(|s| s.first_index + s.samples).max().unwrap_or(0);

    let tokenizer_path = run.join(TOKENIZER_FILE);
    let tokenizer = if tokenizer_path.is_file() && checkpoint.is_some() {
        TextTokenizer::load(&tokenizer_path)?
    } else {
        let t = TextTokenizer::train_from_shards(&train_set, config.vocab_size)?;
        t.save(&tokenizer_path)?;
        t
    };
    let tokenizer = Arc::new(tokenizer);
    let mut model_config = ClipConfig::preset(&config.model)?;
    model_config.vocab_size = tokenizer.vocab_size();
    model_config.image_size = manifest.image_size as usize;
    model_config.validate().map_err(|e| TrainError::Config(format!("model for this dataset: {e}")))?;
    write_atomic(&run.join(MODEL_CONFIG_FILE), model_config.to_toml_string()?.as_bytes())?;

    // Rank 0's device holds the model, the optimiser and evaluation.
    let devices = rank_devices(&config.device, config.ranks).map_err(|e| TrainError::Config(e.to_string()))?;
    let device = devices[0].clone();
    let train_device = device.clone().autodiff();
    let mut model = Clip::new(&model_config, config.seed, &train_device)?;
    let settings = AdamWSettings { weight_decay: config.weight_decay as f32, ..AdamWSettings::default() };
    // The optimiser is built from the model's parameter ids, so the checkpoint's model is
    // loaded before it.
    if let Some(dir) = &checkpoint {
        model = model_from_bytes(model, &read_file(dir, MODEL_FILE)?)?;
    }
    let mut optim = ClipOptimizer::new(&model, settings);
    let selection_config = config.selection()?;

    let reference = match (&config.reference, config.strategy.is_oracle()) {
        (Some(path), true) => Some(load_trained(path, &device)?),
        _ => None,
    };

    // The live state when `mapped_scores`; checkpoints still hold their own snapshot of it.
    let mapped_path = run.join(MAPPED_SCORES_FILE);
    let (mut selector, mut state) = match &checkpoint {
        Some(dir) => {
            let state = read_trainer_state(dir)?;
            optim.load_bytes(&read_file(dir, OPTIMIZER_FILE)?)?;
            let scores = if config.mapped_scores {
                ScoreState::load_mapped(dir.join(SELECTION_FILE), &mapped_path)?
            } else {
                ScoreState::load(dir.join(SELECTION_FILE))?
            };
            if scores.len() != dataset_len {
                return Err(TrainError::Checkpoint {
                    path: dir.clone(),
                    message: format!("score state holds {} samples, the dataset {dataset_len}", scores.len()),
                });
            }
            (Selector::new(selection_config, scores)?, state)
        }
        None => {
            let rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x0d15_5ec7);
            let (rng_seed, rng_stream, rng_word_pos) = rng_state(&rng);
            let state = TrainerState {
                format_version: trainer_format_version(),
                epoch: 0,
                next_batch: 0,
                step: 0,
                rng_seed,
                rng_stream,
                rng_word_pos,
                train_time_s: 0.0,
                records_len: 0,
                log_len: 0,
                epoch_accumulator: EpochAccumulator::default(),
                history: Vec::new(),
            };
            let scores = if config.mapped_scores {
                ScoreState::create_mapped(&mapped_path, dataset_len)?
            } else {
                ScoreState::new(dataset_len)?
            };
            (Selector::new(selection_config, scores)?, state)
        }
    };
    let mut rng = restore_rng(&state)?;

    // Logs and records continue exactly where the checkpoint left them.
    let fresh = checkpoint.is_none();
    let log_path = run.join(LOG_FILE);
    let mut log = open_append(&log_path, Some(if fresh { 0 } else { state.log_len }))?;
    let records_path = match config.records.as_str() {
        "none" => None,
        ext => Some(run.join(format!("visits.{ext}"))),
    };
    let mut records = match &records_path {
        Some(path) => {
            open_append(path, Some(if fresh { 0 } else { state.records_len }))?;
            Some(RecordWriter::append(path)?)
        }
        None => None,
    };

    let mut preprocess = PreprocessConfig::new(manifest.image_size);
    preprocess.random_resized_crop = None;
    let mut loader_config = LoaderConfig::new(config.batch_size, manifest.image_size);
    loader_config.context_len = model_config.context_length;
    loader_config.preprocess = preprocess.clone();
    loader_config.threads = config.loader_threads.max(1);
    loader_config.seed = config.seed;
    let loader = Loader::new(train_set, tokenizer.clone(), loader_config)?;
    let steps_per_epoch = loader.batches_per_epoch();
    if steps_per_epoch == 0 {
        return Err(TrainError::Config(format!(
            "batch_size: {} is larger than the {} training samples",
            config.batch_size,
            loader.num_samples()
        )));
    }
    let total_steps = steps_per_epoch * u64::from(config.epochs);
    // Loaded on first use: a finished run re-opened only to report (`compare`) never pays for it.
    let mut eval_set: Option<EvalSet> = None;

    let checkpoint_now = |model: &Clip,
                          optim: &ClipOptimizer,
                          selector: &Selector,
                          state: &mut TrainerState,
                          rng: &ChaCha8Rng,
                          log: &mut File,
                          records: &mut Option<RecordWriter>|
     -> Result<PathBuf> {
        if let Some(r) = records.as_mut() {
            r.flush()?;
        }
        log.flush().map_err(|e| TrainError::io(&log_path, e))?;
        state.records_len = records_path.as_deref().map_or(0, file_len);
        state.log_len = file_len(&log_path);
        (state.rng_seed, state.rng_stream, state.rng_word_pos) = rng_state(rng);
        let parts = CheckpointParts {
            model: &model_to_bytes(model)?,
            optimizer: &optim.to_bytes()?,
            selection: selector.state(),
            trainer: state,
        };
        write_checkpoint(&run, &parts, config.keep_checkpoints)
    };
    let mut last_checkpoint = match &checkpoint {
        Some(dir) => dir.clone(),
        // A run always has a good checkpoint to fall back on, even if step 1 diverges.
        None => checkpoint_now(&model, &optim, &selector, &mut state, &rng, &mut log, &mut records)?,
    };

    let progress = if config.progress {
        let bar = ProgressBar::new(total_steps);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} steps, ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(config.strategy.name().to_string());
        bar.set_position(state.step);
        bar
    } else {
        ProgressBar::hidden()
    };

    // Epoch lines go through the bar (so they do not tear it) or, without one, to stderr.
    let say = |line: String| if progress.is_hidden() { eprintln!("{line}") } else { progress.println(line) };
    let needs = config.strategy.needs();
    let score_current = needs.clip_scores || needs.losses || config.track_scores;
    let mut stopped_early = false;
    'epochs: while state.epoch < config.epochs {
        let epoch = state.epoch;
        let mut batches = loader.epoch(u64::from(epoch), state.next_batch);
        loop {
            let t_data = Instant::now();
            let Some(batch) = batches.next() else { break };
            let time_data = t_data.elapsed().as_secs_f64();
            let t_step = Instant::now();
            // Each rank scores, selects from and trains on its own contiguous slice of the batch.
            let ranks = rank_slices(batch.len(), devices.len());
            let rank_devices = &devices[..ranks.len()];
            let hosts = ranks
                .iter()
                .zip(rank_devices)
                .map(|(rows, rank_device)| {
                    let per_image = batch.images.len() / batch.len();
                    let context = batch.tokens.context_len;
                    ClipBatch::from_host(
                        &model_config,
                        &batch.images[rows.start * per_image..rows.end * per_image],
                        &batch.tokens.ids[rows.start * context..rows.end * context],
                        &batch.tokens.eot_positions[rows.clone()],
                        rank_device,
                    )
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;

            let t_scoring = Instant::now();
            let current = if score_current { Some(score_batches(&model, &hosts, rank_devices)?) } else { None };
            let reference_scores = match &reference {
                Some((ref_model, ref_config, ref_tokenizer)) => Some(
                    ranks
                        .iter()
                        .map(|rows| {
                            reference_scores(
                                config.strategy,
                                ref_model,
                                ref_config,
                                ref_tokenizer,
                                &batch,
                                rows,
                                &device,
                            )
                        })
                        .collect::<Result<Vec<_>>>()?,
                ),
                None => None,
            };
            let time_scoring = t_scoring.elapsed().as_secs_f64();

            let t_selection = Instant::now();
            // Ranks select in rank order from one selector, so the state updates and the RNG
            // draws are the same however the ranks' threads were timed.
            let mut selections = Vec::with_capacity(ranks.len());
            for (rank, rows) in ranks.iter().enumerate() {
                let scores = current.as_ref().map(|c| &c[rank]);
                let input = BatchScores {
                    indices: &batch.indices[rows.clone()],
                    clip_scores: scores.map(|s| s.clip_scores.as_slice()),
                    losses: scores.map(|s| s.per_sample_loss.as_slice()),
                    reference_scores: reference_scores.as_ref().map(|r| r[rank].as_slice()),
                };
                selections.push(selector.select(&input, epoch, state.step, &mut rng)?);
            }
            let selected: usize = selections.iter().map(|s| s.positions.len()).sum();
            let drew_at_random = selections.iter().any(|s| s.drew_at_random);
            let time_selection = t_selection.elapsed().as_secs_f64();

            let t_training = Instant::now();
            let rows = hosts
                .into_iter()
                .zip(&selections)
                .map(|(host, selection)| {
                    if selection.positions.len() == host.len() {
                        Ok(host)
                    } else {
                        host.select_rows(&selection.positions)
                    }
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let trained_rows: usize = rows.iter().map(ClipBatch::len).sum();
            let lr = cosine_lr(config.lr, config.warmup_steps, total_steps, state.step);
            let clip = (config.max_grad_norm > 0.0).then_some(config.max_grad_norm);
            let (next_model, stats) = match train_step_ranks(model, &mut optim, &rows, rank_devices, lr, clip) {
                Ok(ok) => ok,
                Err(ModelError::NonFinite { what, value }) => {
                    progress.abandon();
                    return Err(TrainError::Diverged {
                        epoch,
                        step: state.step,
                        message: format!("the {what} became {value}"),
                        checkpoint: format!(
                            "The last good checkpoint is {} (continue from it with --resume, perhaps with a lower lr)",
                            last_checkpoint.display()
                        ),
                    });
                }
                Err(e) => return Err(e.into()),
            };
            model = next_model;
            let time_training = t_training.elapsed().as_secs_f64();
            let step_time = t_step.elapsed().as_secs_f64() + time_data;

            let acc = &mut state.epoch_accumulator;
            acc.steps += 1;
            acc.samples_seen += batch.len() as u64;
            acc.samples_trained += selected as u64;
            acc.loss_sum += f64::from(stats.loss);
            acc.time_data_s += time_data;
            acc.time_scoring_s += time_scoring;
            acc.time_selection_s += time_selection;
            acc.time_training_s += time_training;
            let visits = selections.iter().flat_map(|s| &s.records);
            for (record, noisy) in visits.zip(&batch.noisy) {
                acc.add_visit(*noisy, record.selected, record.rank_key, record.curr);
            }
            if let Some(writer) = records.as_mut() {
                for selection in &selections {
                    writer.write(&selection.records)?;
                }
            }
            state.train_time_s += step_time;
            let logit_scale = model.logit_scale_value();
            let line = json!({
                "type": "step", "epoch": epoch, "step": state.step, "loss": stats.loss, "lr": lr,
                "logit_scale": logit_scale, "grad_norm": stats.grad_norm, "batch": batch.len(),
                "selected": selected, "trained_rows": trained_rows, "drew_at_random": drew_at_random,
                "time": {"data": time_data, "scoring": time_scoring, "selection": time_selection, "training": time_training},
            });
            writeln!(log, "{line}").map_err(|e| TrainError::io(&log_path, e))?;
            state.step += 1;
            state.next_batch = batch.batch_number + 1;
            progress.set_position(state.step);
            progress.set_message(format!(
                "epoch {epoch} loss {:.3} kept {}/{} {:.0} samples/s",
                stats.loss,
                selected,
                batch.len(),
                batch.len() as f64 / step_time.max(1e-9)
            ));

            let stop = config.max_steps.is_some_and(|m| state.step >= m);
            if stop || (config.checkpoint_every > 0 && state.step.is_multiple_of(config.checkpoint_every)) {
                last_checkpoint = checkpoint_now(&model, &optim, &selector, &mut state, &rng, &mut log, &mut records)?;
            }
            if stop {
                stopped_early = true;
                break 'epochs;
            }
        }

        let load_stats = batches.stats();
        let skipped =
            load_stats.skipped_corrupt_image + load_stats.skipped_empty_caption + load_stats.skipped_truncated;
        let mut summary = EpochSummary::from_accumulator(epoch, &state.epoch_accumulator, state.train_time_s, skipped);
        let last_epoch = epoch + 1 == config.epochs;
        if last_epoch || (config.eval_every > 0 && (epoch + 1).is_multiple_of(config.eval_every)) {
            let set = match &mut eval_set {
                Some(set) => set,
                slot @ None => slot.insert(EvalSet::load(
                    &config.data,
                    &manifest,
                    &tokenizer,
                    &model_config,
                    &preprocess,
                    config.loader_threads,
                )?),
            };
            progress.set_message(format!("epoch {epoch}: evaluating on {} held-out pairs", set.len()));
            summary.eval = Some(set.evaluate(&model.valid(), &model_config, &device, config.seed)?);
        }
        let line = json!({"type": "epoch", "summary": &summary, "skipped": {
            "corrupt_image": load_stats.skipped_corrupt_image,
            "empty_caption": load_stats.skipped_empty_caption,
            "truncated": load_stats.skipped_truncated,
        }});
        writeln!(log, "{line}").map_err(|e| TrainError::io(&log_path, e))?;
        if skipped > 0 {
            say(format!(
                "epoch {epoch}: skipped {skipped} samples ({} corrupt images, {} empty captions, {} truncated members)",
                load_stats.skipped_corrupt_image, load_stats.skipped_empty_caption, load_stats.skipped_truncated
            ));
        }
        if let Some(eval) = &summary.eval {
            say(format!(
                "{} epoch {epoch}: loss {:.3}, test R@1 TR {:.1} IR {:.1}{}{}",
                config.strategy,
                summary.mean_loss,
                eval.tr_r1,
                eval.ir_r1,
                eval.zero_shot_top1.map_or(String::new(), |z| format!(", zero-shot {z:.1}")),
                summary
                    .noise
                    .and_then(|n| n.selected_noise_fraction)
                    .map_or(String::new(), |f| format!(", noisy among selected {:.1}%", 100.0 * f)),
            ));
        }
        state.history.push(summary);
        state.epoch += 1;
        state.next_batch = 0;
        state.epoch_accumulator = EpochAccumulator::default();
        last_checkpoint = checkpoint_now(&model, &optim, &selector, &mut state, &rng, &mut log, &mut records)?;
    }
    progress.finish_and_clear();
    // The newest checkpoint holds the state; the working file would only take disk space.
    drop(selector);
    if config.mapped_scores {
        std::fs::remove_file(&mapped_path).map_err(|e| TrainError::io(&mapped_path, e))?;
    }

    let outcome = RunOutcome {
        run_dir: run.clone(),
        strategy: config.strategy,
        steps: state.step,
        train_time_s: state.train_time_s,
        epochs: state.history.clone(),
        stopped_early,
        data_noise_rate: manifest.noise_rate,
    };
    let summary = serde_json::to_vec_pretty(&outcome)
        .map_err(|e| TrainError::Checkpoint { path: run.join(SUMMARY_FILE), message: e.to_string() })?;
    write_atomic(&run.join(SUMMARY_FILE), &summary)?;
    Ok(outcome)
}

/// Scores of the frozen reference model for the oracle strategies on the batch rows `rows`
/// (one rank's local batch: negCLIPLoss contrasts against that rank's rows), tokenized with
/// the reference run's own tokenizer.
fn reference_scores(
    strategy: Strategy,
    model: &Clip,
    config: &ClipConfig,
    tokenizer: &TextTokenizer,
    batch: &dissect_data::Batch,
    rows: &Range<usize>,
    device: &Device,
) -> Result<Vec<f32>> {
    let captions: Vec<&str> = batch.captions[rows.clone()].iter().map(String::as_str).collect();
    let tokens = tokenizer.encode_batch(&captions, config.context_length)?;
    let per_image = batch.images.len() / batch.len();
    let images = &batch.images[rows.start * per_image..rows.end * per_image];
    let host = ClipBatch::from_host(config, images, &tokens.ids, &tokens.eot_positions, device)?;
    let out = model.forward(host.images, host.tokens, host.eot);
    let scores = match strategy {
        Strategy::OracleCliploss => dissect_model::neg_clip_loss(&out),
        _ => dissect_model::clip_scores(&out.image_features, &out.text_features),
    };
    Ok(dissect_model::to_vec_f32(scores)?)
}

/// The contiguous row ranges of the ranks' local batches: equal for a full batch (the config
/// checks `batch_size % ranks`); a batch left short by skipped samples gives the first ranks
/// one row more, and one with fewer rows than ranks leaves the last ranks idle this step.
fn rank_slices(len: usize, ranks: usize) -> Vec<Range<usize>> {
    let parts = ranks.min(len).max(1);
    let (base, extra) = (len / parts, len % parts);
    let mut start = 0;
    (0..parts)
        .map(|r| {
            let end = start + base + usize::from(r < extra);
            let rows = start..end;
            start = end;
            rows
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::rank_slices;

    #[test]
    fn rank_slices_cover_the_batch_in_order() {
        assert_eq!(rank_slices(8, 1), vec![0..8]);
        assert_eq!(rank_slices(8, 2), vec![0..4, 4..8]);
        // Two samples skipped from a batch of 8 on 4 ranks.
        assert_eq!(rank_slices(6, 4), vec![0..2, 2..4, 4..5, 5..6]);
        assert_eq!(rank_slices(2, 4), vec![0..1, 1..2]);
    }
}
