//! The training flags shared by `train` and `compare`, and how they override a config file.
//!
//! Each flag carries the name of the config field it sets, and the flags serialise into a
//! TOML table of the config's shape (`--rate` → `[selection] rate`) that is merged over the
//! file's table: a flag is declared once here, and the config's own parser checks the name
//! and the value (a test sets every flag, so a renamed field cannot go unnoticed).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use dissect_select::{WarmupEpochs, WarmupRows};
use dissect_train::{TrainConfig, merge_tables};
use serde::Serialize;

/// Training options shared by `train` and `compare`; each overrides the config file.
#[derive(Args, Clone, Default, Serialize)]
pub struct TrainOptions {
    /// TOML config file (every field optional; flags below override it).
    #[arg(long)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Dataset folder with dataset.json (`dissect data generate ...` or `dissect data pack ...`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Training shards instead of a dataset folder, as open_clip takes them:
    /// 'cc3m/train-{0000..0575}.tar', several patterns joined with '::'.
    #[arg(long)]
    train_data: Option<String>,
    /// Held-out shards for evaluation, with --train-data.
    #[arg(long)]
    val_data: Option<String>,
    /// Image side to train at on --train-data shards [default: 224].
    #[arg(long)]
    image_size: Option<u32>,
    /// Training augmentation: open-clip (open_clip's RandomResizedCrop, scale 0.9-1.0,
    /// bicubic) or none [default: open-clip]. Scoring and evaluation take the centre crop.
    #[arg(long)]
    aug: Option<String>,
    /// Images of more pixels (width x height) than this are skipped and counted as corrupt
    /// [default: PIL's 89478485].
    #[arg(long)]
    max_image_pixels: Option<u64>,
    /// Model preset (micro, tiny, small, vit-b-32, rn-tiny, rn50; each also as NAME-quickgelu) or
    /// an open_clip model-config JSON file.
    #[arg(long)]
    model: Option<String>,
    /// Start from these weights: a dissect run or checkpoint folder, or open_clip's state
    /// dict as .safetensors or PyTorch's .pt/.pth/.bin (a state dict or an open_clip_train
    /// checkpoint; with --model its config JSON).
    #[arg(long)]
    init: Option<PathBuf>,
    /// A tokenizer.json to use instead of training a BPE on the captions.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Lock the image tower (LiT): it takes no gradient and no update; a ResNet keeps its
    /// BatchNorm statistics.
    #[arg(long)]
    #[serde(skip_serializing_if = "is_false")]
    lock_image: bool,
    /// With --lock-image, the tower's last N groups still train (open_clip's groups).
    #[arg(long)]
    lock_image_unlocked_groups: Option<usize>,
    /// Lock the text tower.
    #[arg(long)]
    #[serde(skip_serializing_if = "is_false")]
    lock_text: bool,
    /// With --lock-text, the tower's last N groups still train.
    #[arg(long)]
    lock_text_unlocked_layers: Option<usize>,
    /// Passes over the training split.
    #[arg(long)]
    epochs: Option<u32>,
    /// Rows per batch before selection (all processes of a job together).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Train the selected rows in N micro-batches, the loss still over all of them
    /// (open_clip's --accum-freq: less memory, the same step).
    #[arg(long)]
    accum_freq: Option<usize>,
    /// Arithmetic: fp32; amp_bf16 (open_clip's autocast: matrix products, attention and
    /// convolutions in bf16, the rest in f32); or bf16 (the towers wholly in bf16 on f32
    /// master weights). Both bf16 kinds need a tch device [default: fp32].
    #[arg(long)]
    precision: Option<String>,
    /// Burn's gradient checkpointing: memory-bound activations recomputed in the backward pass.
    #[arg(long)]
    #[serde(skip_serializing_if = "is_false")]
    grad_checkpointing: bool,
    /// Seed of the initialisation, the data order and the selection.
    #[arg(long)]
    seed: Option<u64>,
    /// Checkpoint every N steps (epoch ends always checkpoint).
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// A labelled image folder (one sub-folder per class, as ImageNet's) scored zero-shot at
    /// every evaluation.
    #[arg(long)]
    zeroshot_data: Option<PathBuf>,
    /// Its templates: imagenet (open_clip's 80) or a file [default: the folder's templates.txt,
    /// else "a photo of a {}."].
    #[arg(long)]
    zeroshot_templates: Option<String>,
    /// Reference run or checkpoint folder for the oracle strategies.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Stop after this many steps in total.
    #[arg(long)]
    max_steps: Option<u64>,
    /// Visit-record format: dsv, csv or none.
    #[arg(long)]
    records: Option<String>,
    /// Compute device: cpu; tch, tch:cuda, tch:cuda:N with `--features tch` (LibTorch); cuda, cuda:N
    /// with `--features cuda`.
    #[arg(long)]
    device: Option<String>,
    /// In a job of several processes (torchrun): each selects among its own slice of the
    /// batch (local, the DISSect authors' way) or among the whole batch (global, what one
    /// process selects) [default: local].
    #[arg(long)]
    selection_scope: Option<String>,
    /// In a job of several processes, each computes only its own rows' loss terms against
    /// every row (open_clip's --local-loss): the same loss, less memory.
    #[arg(long)]
    #[serde(skip_serializing_if = "is_false")]
    local_loss: bool,
    /// In a job of several processes, gradients flow back from every process's loss terms to
    /// the owner of each row (open_clip's --gather-with-grad; matters with --local-loss).
    #[arg(long)]
    #[serde(skip_serializing_if = "is_false")]
    gather_with_grad: bool,
    /// Keep the per-sample score state in a memory-mapped file in the run folder (for
    /// datasets too large for RAM at 24 bytes a sample).
    #[arg(long)]
    #[serde(skip_serializing_if = "is_false")]
    mapped_scores: bool,
    #[command(flatten)]
    optim: OptimFlags,
    #[command(flatten)]
    selection: SelectionFlags,
    /// Hide the progress bar (epoch lines still go to stderr).
    #[arg(long)]
    #[serde(skip)]
    pub no_progress: bool,
}

/// The `[optim]` section.
#[derive(Args, Clone, Default, Serialize)]
struct OptimFlags {
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Linear learning-rate warm-up steps.
    #[arg(long)]
    warmup_steps: Option<u64>,
    /// Schedule after the warm-up: cosine, const or const-cooldown (open_clip_train's).
    #[arg(long)]
    lr_scheduler: Option<String>,
    /// Cooldown epochs at the end of const-cooldown.
    #[arg(long)]
    epochs_cooldown: Option<u32>,
    /// Power of the cooldown (1: linear).
    #[arg(long)]
    lr_cooldown_power: Option<f64>,
    /// Learning rate at the end of the cooldown.
    #[arg(long)]
    lr_cooldown_end: Option<f64>,
    /// AdamW beta1.
    #[arg(long)]
    beta1: Option<f64>,
    /// AdamW beta2.
    #[arg(long)]
    beta2: Option<f64>,
    /// AdamW epsilon.
    #[arg(long)]
    eps: Option<f64>,
    /// AdamW weight decay.
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Global gradient-norm clip (0: none).
    #[arg(long)]
    max_grad_norm: Option<f32>,
}

/// The `[selection]` section (the strategy is chosen by `train --strategy` or `compare
/// --strategies`).
#[derive(Args, Clone, Default, Serialize)]
struct SelectionFlags {
    /// Selection rate r (fraction of each batch trained on).
    #[arg(long)]
    rate: Option<f64>,
    /// Warm-up epochs W of dissect-warmup, or 'auto': warm up until the mean CLIPScore of
    /// an epoch rises by at most half its steepest epoch rise (at most half the run).
    #[arg(long)]
    warmup_epochs: Option<WarmupEpochs>,
    /// Momentum β of dissect-momentum.
    #[arg(long)]
    momentum: Option<f64>,
    /// Rows trained on in epochs < W: random (the rule: dissect-warmup draws k rows, others
    /// select from epoch 0) or all (every selecting strategy trains on every row until W).
    #[arg(long)]
    warmup_rows: Option<WarmupRows>,
}

fn is_false(value: &bool) -> bool {
    !value
}

impl TrainOptions {
    /// The config file (or the defaults) with these flags and then `extra` merged over it.
    pub fn resolve(&self, extra: toml::Table) -> Result<TrainConfig> {
        let mut table = match &self.config {
            Some(path) => TrainConfig::from_toml_file(path)?.to_table()?,
            None => TrainConfig::default().to_table()?,
        };
        let flags = toml::Table::try_from(self).context("command-line flags")?;
        merge_tables(&mut table, flags);
        merge_tables(&mut table, extra);
        let config = TrainConfig::from_table(table)?;
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;
    use dissect_select::RecordFormat;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        options: TrainOptions,
    }

    /// Every flag that takes no path made by the test, with a value unlike its default.
    const FLAGS_AFTER_INIT: [&str; 61] = [
        "--tokenizer",
        "t.json",
        "--lock-image",
        "--lock-image-unlocked-groups",
        "2",
        "--lock-text",
        "--lock-text-unlocked-layers",
        "3",
        "--lr-scheduler",
        "const-cooldown",
        "--epochs-cooldown",
        "2",
        "--lr-cooldown-power",
        "2",
        "--lr-cooldown-end",
        "0.001",
        "--beta1",
        "0.8",
        "--beta2",
        "0.95",
        "--eps",
        "1e-8",
        "--model",
        "micro",
        "--epochs",
        "5",
        "--seed",
        "7",
        "--checkpoint-every",
        "9",
        "--reference",
        "ref",
        "--max-steps",
        "11",
        "--records",
        "csv",
        "--device",
        "cpu",
        "--selection-scope",
        "global",
        // The bf16 kinds need a tch device, which this build lacks: the name still travels.
        "--precision",
        "fp32",
        "--local-loss",
        "--gather-with-grad",
        "--mapped-scores",
        "--lr",
        "0.01",
        "--warmup-steps",
        "3",
        "--weight-decay",
        "0.05",
        "--max-grad-norm",
        "2",
        "--rate",
        "0.5",
        "--warmup-epochs",
        "4",
        "--momentum",
        "0.8",
        "--warmup-rows",
        "all",
    ];

    #[test]
    fn every_flag_reaches_its_config_field() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("run.toml");
        std::fs::write(&file, "epochs = 3\nbatch_size = 64\n[selection]\nstrategy = \"clipscore\"\nrate = 0.25\n")
            .unwrap();
        let file = file.to_string_lossy().into_owned();
        let init = dir.path().join("earlier-run");
        std::fs::create_dir(&init).unwrap();
        let init = init.to_string_lossy().into_owned();
        let mut args = vec![
            "x",
            "--config",
            &file,
            "--data",
            "d",
            "--train-data",
            "a/{0..1}.tar::b c/x.tar",
            "--val-data",
            "v.tar",
            "--image-size",
            "64",
            "--max-image-pixels",
            "4096",
            "--aug",
            "none",
            "--grad-checkpointing",
            "--init",
            &init,
            "--zeroshot-data",
            &init,
            "--zeroshot-templates",
            "imagenet",
        ];
        args.extend_from_slice(&FLAGS_AFTER_INIT);
        let config = Cli::parse_from(args).options.resolve(toml::Table::new()).unwrap();
        assert_eq!((config.data.to_str(), config.model.as_str(), config.epochs), (Some("d"), "micro", 5));
        assert_eq!(config.train_data.as_deref(), Some("a/{0..1}.tar::b c/x.tar"));
        assert_eq!((config.val_data.as_deref(), config.image_size), (Some("v.tar"), 64));
        assert_eq!((config.max_image_pixels, config.aug), (4096, dissect_train::Augmentation::None));
        assert!(config.grad_checkpointing);
        assert_eq!(
            (config.zeroshot_data.as_deref().and_then(Path::to_str), config.zeroshot_templates.as_deref()),
            (Some(init.as_str()), Some("imagenet"))
        );
        for precision in ["amp_bf16", "bf16"] {
            let err = Cli::parse_from(["x", "--precision", precision]).options.resolve(toml::Table::new());
            let err = err.unwrap_err().to_string();
            assert!(err.contains("precision") && err.contains("tch"), "{precision} on cpu: {err}");
        }
        let accum = Cli::parse_from(["x", "--accum-freq", "3"]).options.resolve(toml::Table::new()).unwrap();
        assert_eq!(accum.accum_freq, 3);
        assert_eq!(
            (config.init.as_deref().and_then(Path::to_str), config.tokenizer.as_deref()),
            (Some(init.as_str()), Some(Path::new("t.json")))
        );
        assert_eq!((config.batch_size, config.seed, config.checkpoint_every), (64, 7, 9), "file value kept");
        assert_eq!((config.reference.as_deref().and_then(|p| p.to_str()), config.max_steps), (Some("ref"), Some(11)));
        assert_eq!((config.records, config.device.as_str()), (Some(RecordFormat::Csv), "cpu"));
        assert_eq!(config.selection_scope, dissect_train::SelectionScope::Global);
        assert!(config.local_loss && config.gather_with_grad);
        assert!(config.mapped_scores);
        let o = config.optim;
        assert_eq!((o.lr, o.warmup_steps, o.weight_decay, o.max_grad_norm), (0.01, 3, 0.05, 2.0));
        assert_eq!((o.lr_scheduler, o.epochs_cooldown), (dissect_train::LrScheduler::ConstCooldown, 2));
        assert_eq!((o.lr_cooldown_power, o.lr_cooldown_end, o.beta1, o.beta2, o.eps), (2.0, 0.001, 0.8, 0.95, 1e-8));
        assert_eq!((config.lock_image, config.lock_image_unlocked_groups), (true, 2));
        assert_eq!((config.lock_text, config.lock_text_unlocked_layers), (true, 3));
        let s = config.selection;
        assert_eq!((s.rate, s.warmup_epochs, s.momentum, s.warmup_rows), (0.5, 4.into(), 0.8, WarmupRows::All));
        assert_eq!(s.strategy.name(), "clipscore", "the file's strategy stays");

        let bad = Cli::parse_from(["x", "--rate", "2"]).options.resolve(toml::Table::new()).unwrap_err();
        assert!(bad.to_string().contains("selection.rate"), "{bad}");
        let auto = Cli::parse_from(["x", "--warmup-epochs", "auto"]).options.resolve(toml::Table::new()).unwrap();
        assert_eq!(auto.selection.warmup_epochs, WarmupEpochs::Auto);
        let err = Cli::try_parse_from(["x", "--warmup-epochs", "soon"]).err().unwrap().to_string();
        assert!(err.contains("'auto'"), "{err}");
    }
}
