//! The trainer as a run object: [`Run::open`] sets a run up (or picks it up from its latest
//! checkpoint), [`Run::step`] trains one batch with selection in the loop,
//! [`Run::end_epoch`] summarises, evaluates and checkpoints, [`Run::finish`] writes the
//! summary. [`train_with`] drives those over the data; [`train`] does so silently.
//!
//! One step (docs/algorithm.md): a scoring pass over the whole batch without the autodiff
//! tape → the selection core keeps k rows → forward + backward on the kept rows only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use dissect_data::{Batch, BatchPart, DatasetManifest, LoadStats, Loader, PreprocessConfig, TextTokenizer};
use dissect_dist::{Collective, SingleProcess};
use dissect_eval::EvalReport;
use dissect_model::burn::module::Module;
use dissect_model::burn::tensor::Device;
use dissect_model::{
    Clip, ClipBatch, ClipConfig, ClipOptimizer, GlobalNegatives, ModelError, StepStats, model_to_bytes, score_batch,
    score_gathered, train_step, train_step_accumulated, train_step_distributed, with_precision,
};
use dissect_select::{AutoWarmupEnd, RecordWriter, Selector, Strategy, auto_warmup_end};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointParts, TrainerState, write_atomic, write_checkpoint};
use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::evaluate::EvalSet;
use crate::files::RunFiles;
use crate::job;
use crate::log::{LogRecord, LogWriter, StepLog};
use crate::metrics::{EpochSummary, StepRecord, StepTimes};
use crate::observer::{Observer, RunStart};
use crate::ranks::{JobRows, RankScores, SelectionScope, gather_row_scores, gather_values, part_tensors};
use crate::reference::{self, Reference};
use crate::schedule::Schedule;
use crate::setup;
use crate::stop::StopSignal;
use crate::zeroshot::{ZeroShotFolder, ZeroShotTemplates};

/// What a finished, stopped or interrupted run reports (also written as `summary.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunOutcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// The strategy trained.
    pub strategy: Strategy,
    /// Optimiser steps taken.
    pub steps: u64,
    /// Training wall time (evaluation excluded), seconds.
    pub train_time_s: f64,
    /// Every finished epoch's summary.
    pub epochs: Vec<EpochSummary>,
    /// True when `max_steps` stopped the run before its last epoch.
    pub stopped_early: bool,
    /// True when a [`StopSignal`] (Ctrl-C, SIGTERM) stopped the run.
    pub interrupted: bool,
    /// The newest checkpoint, from which `--resume` continues.
    pub last_checkpoint: PathBuf,
    /// The noise rate the dataset was built with.
    pub data_noise_rate: f64,
}

impl RunOutcome {
    /// The newest held-out evaluation.
    pub fn final_eval(&self) -> Option<&EvalReport> {
        self.epochs.iter().rev().find_map(|e| e.eval.as_ref())
    }
}

/// Why the epoch loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every epoch was trained.
    Finished,
    /// `max_steps` was reached.
    MaxSteps,
    /// A stop was requested.
    Interrupted,
}

/// Trains according to `config` without reporting progress. With `resume`, continues from
/// the run folder's latest checkpoint (a run without one starts from scratch).
pub fn train(config: &TrainConfig, resume: bool) -> Result<RunOutcome> {
    train_with(config, resume, &mut (), &StopSignal::new())
}

/// Where a process sits in a data-parallel job: the collectives that join it to the others
/// and its rank on its machine (which GPU it drives).
#[derive(Clone)]
pub struct Job {
    /// The job's collectives ([`SingleProcess`] for a run of one process).
    pub comm: Arc<dyn Collective>,
    /// The process's rank on its machine: `tch:cuda:K` becomes `tch:cuda:K+local_rank`.
    pub local_rank: usize,
}

impl Job {
    /// A run of one process.
    pub fn single() -> Self {
        Job { comm: Arc::new(SingleProcess), local_rank: 0 }
    }
}

/// Trains according to `config`, reporting to `observer` and stopping cleanly (checkpoint
/// first) at the step boundary after `stop` is raised.
pub fn train_with(
    config: &TrainConfig,
    resume: bool,
    observer: &mut dyn Observer,
    stop: &StopSignal,
) -> Result<RunOutcome> {
    train_in(config, resume, Job::single(), observer, stop)
}

/// [`train_with`] as one process of a data-parallel job (launched by torchrun, say): rank 0
/// writes the run folder, reports to its `observer` and evaluates; every process trains its
/// slice of each batch, and all stop together.
pub fn train_in(
    config: &TrainConfig,
    resume: bool,
    job: Job,
    observer: &mut dyn Observer,
    stop: &StopSignal,
) -> Result<RunOutcome> {
    for warning in config.warnings() {
        observer.warning(&warning);
    }
    let mut run = Run::open_in(config, resume, job)?;
    observer.run_started(&run.start());
    let ending = run.train_epochs(observer, stop);
    observer.run_ended();
    run.finish(ending?)
}

/// A training run in progress: every piece of its state in one place.
pub struct Run {
    config: TrainConfig,
    files: RunFiles,
    manifest: DatasetManifest,
    /// The folder the manifest's shard patterns are relative to.
    data_dir: PathBuf,
    loader: Loader,
    preprocess: PreprocessConfig,
    /// Loaded on first use: a finished run re-opened only to report never pays for it.
    eval_set: Option<EvalSet>,
    /// The labelled folder of `zeroshot_data`, loaded at the first evaluation.
    zeroshot: Option<ZeroShotFolder>,
    tokenizer: Arc<TextTokenizer>,
    model_config: ClipConfig,
    /// This process's device: the model, the optimiser and evaluation live there.
    device: Device,
    /// The job's collectives; a run of one process has [`SingleProcess`].
    comm: Arc<dyn Collective>,
    /// On processes other than rank 0, the scratch folder their copy of the run lives in
    /// (removed when the run is dropped); they write nothing into the run folder.
    scratch: Option<tempfile::TempDir>,
    /// Decode failures of batches of which no process had a row, counted with the next step.
    carried_corrupt: u64,
    /// `None` only after a failed step consumed it.
    model: Option<Clip>,
    optim: ClipOptimizer,
    selector: Selector,
    rng: ChaCha8Rng,
    reference: Option<Reference>,
    records: Option<RecordWriter>,
    log: LogWriter,
    state: TrainerState,
    resumed: bool,
    last_checkpoint: PathBuf,
    /// The learning rate of every step of the run.
    schedule: Schedule,
}

impl Run {
    /// Sets a run up in `config.out`: checks the folder (a run there is continued only with
    /// `resume`, and only with the settings it was started with), loads the data, tokenizer,
    /// model, optimiser and selection state, opens the logs and writes the step-0 checkpoint
    /// of a fresh run, so there is always a good checkpoint to fall back on.
    pub fn open(config: &TrainConfig, resume: bool) -> Result<Run> {
        Self::open_in(config, resume, Job::single())
    }

    /// [`Run::open`] as one process of `job`: rank 0 opens the run folder and sends the
    /// state it starts from to the others, which resume from it in a scratch folder.
    pub fn open_in(config: &TrainConfig, resume: bool, job: Job) -> Result<Run> {
        config.validate_for(job.comm.world_size())?;
        let device = dissect_model::device_for_local_rank(&config.device, job.local_rank)
            .map_err(|e| TrainError::Config(e.to_string()))?;
        if job.comm.rank() == 0 {
            let run = Self::open_here(config, resume, device, job.comm)?;
            if run.comm.world_size() > 1 {
                job::send_state(&*run.comm, &run.files)?;
            }
            return Ok(run);
        }
        let scratch = tempfile::tempdir().map_err(|e| TrainError::io(std::env::temp_dir(), e))?;
        job::receive_state(&*job.comm, scratch.path())?;
        let copy = TrainConfig { out: scratch.path().to_path_buf(), records: None, ..config.clone() };
        write_atomic(&RunFiles::new(scratch.path()).config(), copy.to_toml()?.as_bytes())?;
        let mut run = Self::open_here(&copy, true, device, job.comm)?;
        run.scratch = Some(scratch);
        Ok(run)
    }

    /// [`Run::open`] in `config.out` on `device`.
    fn open_here(config: &TrainConfig, resume: bool, device: Device, comm: Arc<dyn Collective>) -> Result<Run> {
        let files = RunFiles::new(&config.out);
        let checkpoint = setup::prepare_folder(config, &files, resume)?;
        let (manifest, data_dir) = setup::load_data(config)?;
        let train_set = manifest.train_set(&data_dir)?;
        let tokenizer = setup::tokenizer(config, &files, &train_set, checkpoint.is_some())?;
        let model_config = setup::model_config(config, &files, &manifest, &tokenizer)?;
        let (model, optim) = setup::model_and_optimizer(config, &model_config, &device, checkpoint.as_deref())?;
        let dataset_len = train_set.shards.iter().map(|s| s.first_index + s.samples).max().unwrap_or(0);
        let (selector, state) = setup::selection(config, &files, checkpoint.as_deref(), dataset_len)?;
        let rng = setup::restore_rng(&state)?;
        let fresh = checkpoint.is_none();
        let log = LogWriter::open(&files.log(), if fresh { 0 } else { state.log_len })?;
        let records = setup::records(config, &files, if fresh { 0 } else { state.records_len })?;
        let part = (comm.world_size() > 1).then(|| BatchPart { index: comm.rank(), parts: comm.world_size() });
        let (loader, preprocess) = setup::loader(config, train_set, &tokenizer, &model_config, part)?;
        let reference = reference::reference(config, &device)?;
        let schedule = config.optim.schedule(config.epochs, loader.batches_per_epoch());
        let mut run = Run {
            config: config.clone(),
            files,
            manifest,
            data_dir,
            loader,
            preprocess,
            eval_set: None,
            zeroshot: None,
            tokenizer,
            model_config,
            device,
            comm,
            scratch: None,
            carried_corrupt: 0,
            model: Some(model),
            optim,
            selector,
            rng,
            reference,
            records,
            log,
            state,
            resumed: !fresh,
            last_checkpoint: checkpoint.clone().unwrap_or_default(),
            schedule,
        };
        if fresh {
            run.checkpoint()?;
        }
        Ok(run)
    }

    /// Where the run starts, for an observer.
    pub fn start(&self) -> RunStart<'_> {
        RunStart {
            run_dir: self.files.root(),
            strategy: self.config.selection.strategy,
            step: self.state.step,
            total_steps: self.schedule.total_steps,
            resumed: self.resumed,
        }
    }

    /// The newest complete checkpoint.
    pub fn last_checkpoint(&self) -> &Path {
        &self.last_checkpoint
    }

    /// Trains the remaining epochs, or until `max_steps` or a stop request.
    pub fn train_epochs(&mut self, observer: &mut dyn Observer, stop: &StopSignal) -> Result<Ending> {
        while self.state.epoch < self.config.epochs {
            if let Some(ending) = self.train_epoch(observer, stop)? {
                return Ok(ending);
            }
            if let Some(ending) = self.ending_after_step(stop)?.filter(|e| *e == Ending::Interrupted) {
                return Ok(ending);
            }
        }
        Ok(Ending::Finished)
    }

    /// One epoch (or its rest, after a resume), checkpointing when due; `Some` when the run
    /// has to end before the epoch does.
    fn train_epoch(&mut self, observer: &mut dyn Observer, stop: &StopSignal) -> Result<Option<Ending>> {
        let mut batches = self.loader.epoch(u64::from(self.state.epoch), self.state.next_batch);
        loop {
            let waiting = Instant::now();
            let Some(batch) = batches.next() else { break };
            let Some(step) = self.step(&batch, waiting.elapsed().as_secs_f64())? else { continue };
            observer.step_done(&step);
            let ending = self.ending_after_step(stop)?;
            if ending.is_some() || self.checkpoint_due() {
                let dir = self.checkpoint()?;
                observer.checkpoint_written(&dir, self.state.step);
            }
            if ending.is_some() {
                return Ok(ending);
            }
        }
        let summary = self.end_epoch(batches.stats(), observer)?;
        observer.checkpoint_written(&self.last_checkpoint, self.state.step);
        observer.epoch_done(&summary);
        Ok(None)
    }

    /// Whether the run ends after this step. A stop request counts when any process of the
    /// job has one (torchrun passes a signal to every process, but not at the same instant),
    /// so all processes stop after the same step.
    fn ending_after_step(&self, stop: &StopSignal) -> Result<Option<Ending>> {
        if self.config.max_steps.is_some_and(|m| self.state.step >= m) {
            return Ok(Some(Ending::MaxSteps));
        }
        let mut stopping = [if stop.is_requested() { 1.0 } else { 0.0 }];
        if self.comm.world_size() > 1 {
            self.comm.all_reduce_sum(&mut stopping)?;
        }
        Ok((stopping[0] > 0.0).then_some(Ending::Interrupted))
    }

    fn checkpoint_due(&self) -> bool {
        self.config.checkpoint_every > 0 && self.state.step.is_multiple_of(self.config.checkpoint_every)
    }

    /// Trains one batch: this process scores its part `batch` of it (all of it in a run of
    /// one process), every process selects from the scores of all (the same selections
    /// everywhere), and each trains on the rows it kept; the step is accounted, logged and
    /// returned. `None` when no process has a row of the batch (every image failed to decode):
    /// nothing is trained and its failures are counted with the next batch. `time_data` is how
    /// long the batch took to load.
    pub fn step(&mut self, batch: &Batch, time_data: f64) -> Result<Option<StepLog>> {
        with_precision(self.config.precision, || self.train_batch(batch, time_data))
    }

    /// [`Run::step`] in the run's precision.
    fn train_batch(&mut self, batch: &Batch, time_data: f64) -> Result<Option<StepLog>> {
        let started = Instant::now();
        let rows = JobRows::gather(batch, &*self.comm, std::mem::take(&mut self.carried_corrupt))?;
        if rows.batch.is_empty() {
            self.carried_corrupt = rows.batch.corrupt_images;
            self.state.next_batch = batch.batch_number + 1;
            return Ok(None);
        }
        let host = part_tensors(batch, &batch.images, &self.model_config, &self.device)?;

        let clock = Instant::now();
        let scores = self.score(batch, &rows, host.as_ref())?;
        let scoring = clock.elapsed().as_secs_f64();

        let clock = Instant::now();
        let selections =
            scores.select(&rows.batch, &mut self.selector, (self.state.epoch, self.state.step), &mut self.rng)?;
        let selection = clock.elapsed().as_secs_f64();

        let clock = Instant::now();
        let lr = self.schedule.lr(self.state.step);
        let stats = self.train_rows(host, scores.kept_in(&selections, &rows.own), lr)?;
        let training = clock.elapsed().as_secs_f64();

        let time = StepTimes { data: time_data, scoring, selection, training };
        let raw_scores =
            scores.current.as_ref().map(|parts| parts.iter().flat_map(|r| r.clip_scores.iter().copied()).collect());
        let step = StepRecord { batch: &rows.batch, selections: &selections, raw_scores, loss: stats.loss, time };
        self.state.epoch_accumulator.add_step(&step);
        if let Some(writer) = self.records.as_mut() {
            for selection in &selections {
                writer.write(&selection.records)?;
            }
        }
        let log = self.step_log(&step, stats.grad_norm, lr)?;
        self.state.train_time_s += started.elapsed().as_secs_f64() + time_data;
        Ok(Some(log))
    }

    /// The scoring pass of the model being trained (when the strategy or `track_scores` needs
    /// it) and the reference model's scores (oracle strategies), for every selection slice,
    /// from this process's part `batch` (`own`: its rows as tensors). With augmentation both
    /// take the centre crops, not the training images, so a pair's score history does not
    /// follow its crops.
    fn score(&self, batch: &Batch, rows: &JobRows<'_>, own: Option<&ClipBatch>) -> Result<RankScores> {
        let global = self.config.selection_scope == SelectionScope::Global && rows.slices.len() > 1;
        let needs = self.config.selection.strategy.needs();
        // An `auto` warm-up is judged on every step's scores, so it needs the pass too.
        let current =
            if needs.clip_scores || needs.losses || self.config.track_scores || self.selector.awaits_warmup_end() {
                let centre = match &batch.deterministic_images {
                    Some(images) => part_tensors(batch, images, &self.model_config, &self.device)?,
                    None => None,
                };
                let (part, model) = (centre.as_ref().or(own), self.model()?);
                Some(match global {
                    true => vec![score_gathered(model, part, &*self.comm)?],
                    false => gather_row_scores(part.map(|b| score_batch(model, b)).transpose()?, &*self.comm)?,
                })
            } else {
                None
            };
        let reference = match &self.reference {
            Some(reference) => {
                let strategy = self.config.selection.strategy;
                let own_scores = match batch.is_empty() {
                    true => Vec::new(),
                    false => reference.scores(strategy, batch, &self.device)?,
                };
                let all = gather_values(own_scores, &*self.comm)?;
                Some(if global { vec![all.concat()] } else { all })
            }
            None => None,
        };
        // One slice, the whole batch (a one-element Vec of a range, not the range's items).
        let slices = if global { std::iter::once(0..rows.batch.len()).collect() } else { rows.slices.clone() };
        Ok(RankScores { slices, current, reference })
    }

    /// Forward + backward on this process's kept rows (`kept`, positions in its slice `host`)
    /// and one optimiser step, the same on every process. A non-finite loss or gradient ends
    /// the run with the last good checkpoint named.
    fn train_rows(&mut self, host: Option<ClipBatch>, kept: Vec<usize>, lr: f64) -> Result<StepStats> {
        let rows = match host {
            Some(host) if kept.len() == host.len() => Some(host),
            Some(host) if !kept.is_empty() => Some(host.select_rows(&kept)?),
            _ => None,
        };
        let clip = (self.config.optim.max_grad_norm > 0.0).then_some(self.config.optim.max_grad_norm);
        let model = self.model.take().ok_or_else(stopped_after_failure)?;
        let negatives =
            GlobalNegatives { local_loss: self.config.local_loss, gather_with_grad: self.config.gather_with_grad };
        let stepped = match rows.as_ref() {
            _ if self.comm.world_size() > 1 => {
                train_step_distributed(model, &mut self.optim, rows.as_ref(), &*self.comm, negatives, lr, clip)
            }
            Some(one) if self.config.accum_freq > 1 => {
                train_step_accumulated(model, &mut self.optim, one, self.config.accum_freq, lr, clip)
            }
            Some(one) => train_step(model, &mut self.optim, one, lr, clip),
            None => Err(ModelError::Batch("the selection kept no rows".into())),
        };
        match stepped {
            Ok((model, stats)) => {
                self.model = Some(model);
                Ok(stats)
            }
            Err(ModelError::NonFinite { what, value }) => Err(self.diverged(format!("the {what} became {value}"))),
            Err(e) => Err(e.into()),
        }
    }

    fn diverged(&self, message: String) -> TrainError {
        TrainError::Diverged {
            epoch: self.state.epoch,
            step: self.state.step,
            message,
            checkpoint: format!("{}, perhaps with a lower lr", self.last_good_checkpoint()),
        }
    }

    /// Where a failed run can continue from, in words.
    fn last_good_checkpoint(&self) -> String {
        if self.last_checkpoint.as_os_str().is_empty() {
            "The run has no checkpoint yet".into()
        } else {
            format!("The last good checkpoint is {}; continue from it with --resume", self.last_checkpoint.display())
        }
    }

    /// Writes the step's log line and advances the position past its batch.
    fn step_log(&mut self, step: &StepRecord<'_>, grad_norm: f32, lr: f64) -> Result<StepLog> {
        let selected = step.selections.iter().map(|s| s.positions.len()).sum();
        let log = StepLog {
            epoch: self.state.epoch,
            step: self.state.step,
            loss: step.loss,
            lr,
            logit_scale: self.model()?.logit_scale_value(),
            grad_norm,
            batch: step.batch.len(),
            selected,
            trained_rows: selected,
            drew_at_random: step.selections.iter().any(|s| s.drew_at_random),
            time: step.time,
        };
        self.log.write(&LogRecord::Step(log.clone()))?;
        self.state.step += 1;
        self.state.next_batch = step.batch.batch_number + 1;
        Ok(log)
    }

    /// Closes the epoch: summary (with `load`, the loader's counts, plus the decode failures
    /// the epoch's batches carried), held-out evaluation when due, log line, checkpoint.
    pub fn end_epoch(&mut self, load: LoadStats, observer: &mut dyn Observer) -> Result<EpochSummary> {
        let epoch = self.state.epoch;
        let acc = std::mem::take(&mut self.state.epoch_accumulator);
        // Rows delivered and decode failures inside them are counted per batch, so a resumed
        // epoch includes the batches before its checkpoint.
        let load = LoadStats {
            samples: acc.samples_seen,
            skipped_corrupt_image: load.skipped_corrupt_image + acc.corrupt_images,
            ..load
        };
        let mut summary = EpochSummary::from_accumulator(epoch, &acc, self.state.train_time_s, load);
        summary.warmup_ended = self.decide_auto_warmup(&summary)?;
        if self.evaluation_due(epoch) {
            summary.eval = Some(self.evaluate(observer)?);
        }
        self.log.write(&LogRecord::Epoch { summary: Box::new(summary.clone()) })?;
        self.state.history.push(summary.clone());
        self.state.epoch += 1;
        self.state.next_batch = 0;
        self.checkpoint()?;
        Ok(summary)
    }

    /// With an `auto` warm-up still going on, whether the epoch just summarised ends it
    /// (judged on every finished epoch's mean CLIPScore); the selector is told where
    /// selection starts.
    fn decide_auto_warmup(&mut self, summary: &EpochSummary) -> Result<Option<AutoWarmupEnd>> {
        if !self.selector.awaits_warmup_end() {
            return Ok(None);
        }
        let means = self.state.history.iter().chain([summary]).map(|e| e.mean_score).collect::<Option<Vec<f64>>>();
        let Some(means) = means else {
            return Err(TrainError::NoScoresToJudgeWarmup(summary.epoch));
        };
        let end = auto_warmup_end(&means, self.config.epochs);
        if let Some(end) = end {
            self.selector.end_warmup(end.first_selecting_epoch)?;
        }
        Ok(end)
    }

    fn evaluation_due(&self, epoch: u32) -> bool {
        if self.manifest.test.is_empty() || self.comm.rank() != 0 {
            return false; // shards without --val-data, or not rank 0
        }
        let every = self.config.eval_every;
        epoch + 1 == self.config.epochs || (every > 0 && (epoch + 1).is_multiple_of(every))
    }

    /// The held-out report of the current model.
    pub fn evaluate(&mut self, observer: &mut dyn Observer) -> Result<EvalReport> {
        if self.eval_set.is_none() {
            let set = EvalSet::load(
                &self.data_dir,
                &self.manifest,
                &self.tokenizer,
                &self.model_config,
                &self.preprocess,
                self.config.loader_threads,
            )?;
            if let Some(warning) = set.ambiguity_warning() {
                observer.warning(&warning);
            }
            self.eval_set = Some(set);
        }
        let (set, model) = (self.eval_set.as_ref().ok_or_else(stopped_after_failure)?, self.model()?.valid());
        observer.evaluating(self.state.epoch, set.len());
        let precision = self.config.precision;
        let evaluate = || set.evaluate(&model, &self.model_config, &self.device, self.config.seed);
        let mut report = with_precision(precision, evaluate)?;
        if let Some(dir) = &self.config.zeroshot_data {
            if self.zeroshot.is_none() {
                let templates = ZeroShotTemplates::from_setting(self.config.zeroshot_templates.as_deref());
                let threads = self.config.loader_threads;
                let folder = ZeroShotFolder::load(
                    dir,
                    &templates,
                    &self.tokenizer,
                    &self.model_config,
                    &self.preprocess,
                    threads,
                )?;
                self.zeroshot = Some(folder);
            }
            let folder = self.zeroshot.as_ref().ok_or_else(stopped_after_failure)?;
            let evaluate = || folder.evaluate(&model, &self.model_config, &self.device);
            report.zero_shot_folder = Some(with_precision(precision, evaluate)?);
        }
        Ok(report)
    }

    /// Writes a checkpoint of the whole state (flushing logs and records first, so their
    /// recorded lengths are on disk) and returns its folder.
    pub fn checkpoint(&mut self) -> Result<PathBuf> {
        if self.comm.rank() != 0 {
            return Ok(self.last_checkpoint.clone()); // rank 0 writes the job's checkpoints
        }
        if let Some(records) = self.records.as_mut() {
            records.flush()?;
        }
        self.state.records_len = match self.config.records {
            Some(format) => std::fs::metadata(self.files.records(format)).map(|m| m.len()).unwrap_or(0),
            None => 0,
        };
        self.state.log_len = self.log.flushed_len()?;
        setup::save_rng(&self.rng, &mut self.state);
        let parts = CheckpointParts {
            model: &model_to_bytes(self.model()?)?,
            optimizer: &self.optim.to_bytes()?,
            selection: self.selector.state(),
            trainer: &self.state,
        };
        match write_checkpoint(self.files.root(), &parts, self.config.keep_checkpoints) {
            Ok(dir) => {
                self.last_checkpoint = dir.clone();
                Ok(dir)
            }
            Err(e) => Err(TrainError::CheckpointFailed { source: Box::new(e), last_good: self.last_good_checkpoint() }),
        }
    }

    /// Ends the run: removes the mapped working file (the newest checkpoint holds the state)
    /// and writes `summary.json`.
    pub fn finish(self, ending: Ending) -> Result<RunOutcome> {
        let outcome = RunOutcome {
            run_dir: self.files.root().to_path_buf(),
            strategy: self.config.selection.strategy,
            steps: self.state.step,
            train_time_s: self.state.train_time_s,
            epochs: self.state.history.clone(),
            stopped_early: ending == Ending::MaxSteps,
            interrupted: ending == Ending::Interrupted,
            last_checkpoint: self.last_checkpoint.clone(),
            data_noise_rate: self.manifest.noise_rate,
        };
        let (mapped, path) = (self.config.mapped_scores, self.files.mapped_scores());
        drop(self.selector);
        if mapped {
            std::fs::remove_file(&path).map_err(|e| TrainError::io(&path, e))?;
        }
        let summary = self.files.summary();
        let bytes =
            serde_json::to_vec_pretty(&outcome).map_err(|source| TrainError::Json { path: summary.clone(), source })?;
        write_atomic(&summary, &bytes)?;
        Ok(outcome)
    }

    fn model(&self) -> Result<&Clip> {
        self.model.as_ref().ok_or_else(stopped_after_failure)
    }
}

fn stopped_after_failure() -> TrainError {
    TrainError::StoppedAfterFailure
}
