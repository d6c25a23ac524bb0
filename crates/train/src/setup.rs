//! The pieces [`crate::Run::open`] assembles, each from the config and, when resuming, the
//! latest checkpoint.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dissect_data::{BatchPart, DatasetManifest, Loader, LoaderConfig, PreprocessConfig, ShardSet, TextTokenizer};
use dissect_model::burn::tensor::Device;
use dissect_model::{AdamWSettings, Clip, ClipConfig, ClipOptimizer, TensorFile, load_open_clip, model_from_bytes};
use dissect_select::{RecordWriter, ScoreState, Selector};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::checkpoint::{
    MODEL_FILE, OPTIMIZER_FILE, SELECTION_FILE, TRAINER_FILE, TrainerState, latest_checkpoint, load_model_config,
    read_file, read_trainer_state, trainer_format_version, write_atomic,
};
use crate::config::{TrainConfig, open_clip_config};
use crate::error::{Result, TrainError};
use crate::files::RunFiles;
use crate::log::open_truncated;

/// Checks the run folder and writes the config into it. Returns the checkpoint to continue
/// from: the latest one with `resume` (after checking the saved config allows it), none for
/// a fresh run (refused if the folder already holds a run and `resume` is off).
pub(crate) fn prepare_folder(config: &TrainConfig, files: &RunFiles, resume: bool) -> Result<Option<PathBuf>> {
    let root = files.root();
    std::fs::create_dir_all(root).map_err(|e| TrainError::io(root, e))?;
    let latest = latest_checkpoint(root)?;
    match (&latest, resume) {
        (Some(_), true) => config.check_resumable_from(&TrainConfig::from_run_folder(&files.config())?)?,
        (Some(_), false) if files.config().exists() => {
            return Err(TrainError::Config(format!(
                "out: {} already holds a run; pass --resume to continue it, or choose another folder",
                root.display()
            )));
        }
        _ => {}
    }
    write_atomic(&files.config(), config.to_toml()?.as_bytes())?;
    Ok(latest.filter(|_| resume))
}

/// The run's data: a dataset folder's manifest and the folder its patterns are relative to,
/// or, with `train_data`, a manifest made up for the shards (patterns as given, relative to
/// the working folder; no classes, no recorded noise rate).
pub(crate) fn load_data(config: &TrainConfig) -> Result<(DatasetManifest, PathBuf)> {
    let Some(train) = &config.train_data else {
        let manifest = DatasetManifest::load(&config.data).map_err(|e| {
            TrainError::Config(format!(
                "data: {e}\n  (make the built-in benchmark with `dissect data generate noisy-shapes --out {}`, \
                 pack your own with `dissect data pack`, or pass shards with --train-data)",
                config.data.display()
            ))
        })?;
        return Ok((manifest, config.data.clone()));
    };
    let manifest = DatasetManifest::for_shards(train, config.val_data.as_deref().unwrap_or(""), config.image_size);
    Ok((manifest, PathBuf::new()))
}

/// The run's tokenizer: the saved one when resuming, else trained on the training captions.
pub(crate) fn tokenizer(
    config: &TrainConfig,
    files: &RunFiles,
    train_set: &ShardSet,
    resuming: bool,
) -> Result<Arc<TextTokenizer>> {
    let path = files.tokenizer();
    let given = match (&config.tokenizer, init_run(config)) {
        (Some(file), _) => Some(file.clone()),
        // Weights from another run come with the token ids they were trained on.
        (None, Some(run)) => Some(RunFiles::new(run).tokenizer()),
        (None, None) => None,
    };
    let tokenizer = match given {
        _ if resuming && path.is_file() => return Ok(Arc::new(TextTokenizer::load(&path)?)),
        Some(file) => TextTokenizer::load(&file)?,
        None => TextTokenizer::train_from_shards(train_set, config.vocab_size)?,
    };
    tokenizer.save(&path)?;
    Ok(Arc::new(tokenizer))
}

/// The run folder `init` names (a dissect run or one of its checkpoints), if it names one.
fn init_run(config: &TrainConfig) -> Option<PathBuf> {
    let init = config.init.as_deref().filter(|p| !is_weights_file(p))?;
    load_model_config(init).ok().map(|(_, run)| run)
}

/// Whether `init` names a file of open_clip weights (safetensors, or PyTorch's `.pt`, `.pth`,
/// `.bin`) rather than a dissect run or checkpoint folder.
fn is_weights_file(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e, "safetensors" | "pt" | "pth" | "bin"))
}

/// open_clip's state dict from a safetensors file or a PyTorch checkpoint.
fn read_weights_file(path: &Path) -> Result<TensorFile> {
    if path.extension().is_some_and(|e| e == "safetensors") {
        Ok(TensorFile::read(path)?)
    } else {
        Ok(TensorFile::read_pytorch(path)?)
    }
}

/// The model's config, saved as `model.toml`: a preset sized to the tokenizer's vocabulary
/// and the dataset's images, or an open_clip model-config JSON file (`model = "x.json"`) as
/// it is, whose vocabulary must hold the tokenizer's; with `init` from a dissect run, that
/// run's config.
pub(crate) fn model_config(
    config: &TrainConfig,
    files: &RunFiles,
    manifest: &DatasetManifest,
    tokenizer: &TextTokenizer,
) -> Result<ClipConfig> {
    let model_config = if let Some(run) = init_run(config) {
        load_model_config(&run)?.0
    } else if config.model.ends_with(".json") {
        let config = open_clip_config(Path::new(&config.model))?;
        if config.text.vocab_size < tokenizer.vocab_size() {
            return Err(TrainError::Config(format!(
                "model: its vocab_size {} is smaller than the tokenizer's vocabulary of {}",
                config.text.vocab_size,
                tokenizer.vocab_size()
            )));
        }
        config
    } else {
        let mut preset = ClipConfig::preset(&config.model)?;
        preset.text.vocab_size = tokenizer.vocab_size();
        preset.set_image_size(manifest.image_size as usize);
        preset
    };
    model_config.validate().map_err(|e| TrainError::Config(format!("model for this dataset: {e}")))?;
    write_atomic(&files.model_config(), model_config.to_toml_string()?.as_bytes())?;
    Ok(model_config)
}

/// The model on `device`'s autodiff twin and its optimiser, both restored from `checkpoint`.
pub(crate) fn model_and_optimizer(
    config: &TrainConfig,
    model_config: &ClipConfig,
    device: &Device,
    checkpoint: Option<&Path>,
) -> Result<(Clip, ClipOptimizer)> {
    let train_device = match config.grad_checkpointing {
        true => device.clone().autodiff().gradient_checkpointing(),
        false => device.clone().autodiff(),
    };
    let mut model = Clip::new(model_config, config.seed, &train_device)?;
    let o = &config.optim;
    let settings = AdamWSettings {
        beta_1: o.beta1 as f32,
        beta_2: o.beta2 as f32,
        epsilon: o.eps as f32,
        weight_decay: o.weight_decay as f32,
    };
    // The optimiser is built from the model's parameter ids, so the checkpoint's model is
    // loaded before it. A fresh run may start from other weights (`init`).
    match (checkpoint, &config.init) {
        (Some(dir), _) => model = model_from_bytes(model, &read_file(dir, MODEL_FILE)?)?,
        (None, Some(init)) => model = initial_weights(model, init)?,
        (None, None) => {}
    }
    // Locks are settings, not weights: applied after loading, so a resumed run has them too.
    let model = model.lock(config.image_lock(), config.text_lock())?;
    let mut optim = ClipOptimizer::new(&model, settings);
    if let Some(dir) = checkpoint {
        optim.load_bytes(&read_file(dir, OPTIMIZER_FILE)?)?;
    }
    Ok((model, optim))
}

/// `model` with the weights of `init`: open_clip's state dict in a safetensors or PyTorch file,
/// or a dissect run (its latest checkpoint) or checkpoint folder.
fn initial_weights(model: Clip, init: &Path) -> Result<Clip> {
    if is_weights_file(init) {
        let weights = read_weights_file(init)?;
        return load_open_clip(model, &weights).map_err(|e| TrainError::Config(format!("init: {e}")));
    }
    let checkpoint = if init.join(MODEL_FILE).is_file() {
        init.to_path_buf()
    } else {
        latest_checkpoint(init)?.ok_or_else(|| {
            TrainError::Config(format!(
                "init: {} is neither a run with a checkpoint nor a .safetensors, .pt, .pth or .bin file",
                init.display()
            ))
        })?
    };
    Ok(model_from_bytes(model, &read_file(&checkpoint, MODEL_FILE)?)?)
}

/// The selector over the score state (in RAM, or mapped when `mapped_scores`) and the
/// trainer's position: both from the checkpoint, or fresh.
pub(crate) fn selection(
    config: &TrainConfig,
    files: &RunFiles,
    checkpoint: Option<&Path>,
    dataset_len: u64,
) -> Result<(Selector, TrainerState)> {
    let mapped = files.mapped_scores();
    let (scores, state) = match checkpoint {
        Some(dir) => {
            let snapshot = dir.join(SELECTION_FILE);
            let scores = if config.mapped_scores {
                ScoreState::load_mapped(&snapshot, &mapped)?
            } else {
                ScoreState::load(&snapshot)?
            };
            if scores.len() != dataset_len {
                return Err(TrainError::Checkpoint {
                    path: dir.to_path_buf(),
                    message: format!("score state holds {} samples, the dataset {dataset_len}", scores.len()),
                });
            }
            (scores, read_trainer_state(dir)?)
        }
        None => {
            let scores = if config.mapped_scores {
                ScoreState::create_mapped(&mapped, dataset_len)?
            } else {
                ScoreState::new(dataset_len)?
            };
            (scores, fresh_state(config.seed))
        }
    };
    let mut selector = Selector::new(config.selection, scores)?;
    // An `auto` warm-up that ended before the checkpoint stays ended where it did.
    if let Some(end) = state.history.iter().find_map(|e| e.warmup_ended) {
        selector.end_warmup(end.first_selecting_epoch)?;
    }
    Ok((selector, state))
}

fn fresh_state(seed: u64) -> TrainerState {
    let mut state = TrainerState {
        format_version: trainer_format_version(),
        epoch: 0,
        next_batch: 0,
        step: 0,
        rng_seed: [0; 32],
        rng_stream: 0,
        rng_word_pos: String::new(),
        train_time_s: 0.0,
        records_len: 0,
        log_len: 0,
        epoch_accumulator: Default::default(),
        history: Vec::new(),
    };
    save_rng(&ChaCha8Rng::seed_from_u64(seed ^ 0x0d15_5ec7), &mut state);
    state
}

/// Stores the selection RNG's exact position in the trainer state.
pub(crate) fn save_rng(rng: &ChaCha8Rng, state: &mut TrainerState) {
    (state.rng_seed, state.rng_stream, state.rng_word_pos) =
        (rng.get_seed(), rng.get_stream(), rng.get_word_pos().to_string());
}

/// The selection RNG at the position the trainer state recorded.
pub(crate) fn restore_rng(state: &TrainerState) -> Result<ChaCha8Rng> {
    let mut rng = ChaCha8Rng::from_seed(state.rng_seed);
    rng.set_stream(state.rng_stream);
    let pos: u128 = state.rng_word_pos.parse().map_err(|_| TrainError::Checkpoint {
        path: PathBuf::from(TRAINER_FILE),
        message: format!("bad RNG position '{}'", state.rng_word_pos),
    })?;
    rng.set_word_pos(pos);
    Ok(rng)
}

/// The visit-record writer, continuing the file from `keep_len` bytes.
pub(crate) fn records(config: &TrainConfig, files: &RunFiles, keep_len: u64) -> Result<Option<RecordWriter>> {
    let Some(format) = config.records else { return Ok(None) };
    let path = files.records(format);
    open_truncated(&path, keep_len)?;
    Ok(Some(RecordWriter::append(&path)?))
}

/// The training loader (random crops with `aug = open-clip`, each image also centre-cropped
/// for the scoring pass; with `part`, only that part of every batch is decoded) and the
/// preprocessing the held-out split shares (the centre crop).
pub(crate) fn loader(
    config: &TrainConfig,
    train_set: ShardSet,
    tokenizer: &Arc<TextTokenizer>,
    model_config: &ClipConfig,
    part: Option<BatchPart>,
) -> Result<(Loader, PreprocessConfig)> {
    // Images are resized to the model's input (a preset takes the dataset's size; an open_clip
    // config or a warm start brings its own).
    let image_size = model_config.image_size() as u32;
    let preprocess =
        PreprocessConfig { max_image_pixels: config.max_image_pixels, ..PreprocessConfig::new(image_size) };
    let mut loader_config = LoaderConfig::new(config.batch_size, image_size);
    loader_config.context_len = model_config.text.context_length;
    loader_config.preprocess =
        PreprocessConfig { random_resized_crop: config.aug.random_resized_crop(), ..preprocess.clone() };
    loader_config.threads = config.loader_threads.max(1);
    loader_config.seed = config.seed;
    // In a job of several processes each decodes only its part of every batch.
    loader_config.part = part;
    let loader = Loader::new(train_set, tokenizer.clone(), loader_config)?;
    if loader.batches_per_epoch() == 0 {
        return Err(TrainError::Config(format!(
            "batch_size: {} is larger than the {} training samples",
            config.batch_size,
            loader.num_samples()
        )));
    }
    Ok((loader, preprocess))
}
