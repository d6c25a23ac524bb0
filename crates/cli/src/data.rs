//! `dissect data …`: generate, pack, inspect and tokenize, printing a summary of each.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Subcommand};
use dissect_data::{
    Benchmark, DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_VOCAB_SIZE, GenerateOptions, ImageFormat, MANIFEST_FILE, PackOptions,
    PackReport, PreprocessConfig, ShardSet, TestSplit, TextTokenizer, generate, inspect, pack,
};

#[derive(Debug, Clone, Subcommand)]
pub enum DataCommand {
    /// Pack a folder of images with sidecar .txt captions (sub-folders are classes), or a CSV/TSV
    /// of image paths and captions, into a dataset folder that train, compare, eval and demo take
    /// as it is: train and held-out shards, their indices and dataset.json.
    Pack(PackArgs),
    /// Count samples, histogram caption lengths, find the members training would skip, and
    /// count identical images and captions (which make a held-out split ambiguous).
    Inspect {
        /// Shard pattern(s), e.g. 'data/train-{000000..000575}.tar'.
        #[arg(required = true)]
        shards: Vec<String>,
        /// Side the images are preprocessed at to find identical ones (the model's image size).
        #[arg(long, default_value_t = 224)]
        image_size: u32,
        /// Images of more pixels (width x height) than this count as skipped, as in training.
        #[arg(long, default_value_t = DEFAULT_MAX_IMAGE_PIXELS)]
        max_image_pixels: u64,
    },
    /// Train a byte-level BPE tokenizer on the captions of shards and save tokenizer.json.
    Tokenizer {
        /// Shard pattern(s).
        #[arg(required = true)]
        shards: Vec<String>,
        /// Output file.
        #[arg(long, default_value = "tokenizer.json")]
        out: PathBuf,
        #[arg(long, default_value_t = DEFAULT_VOCAB_SIZE)]
        vocab_size: usize,
    },
    /// Build CLIP's tokenizer.json (the ids of open_clip's SimpleTokenizer) from OpenAI's BPE
    /// merges file, e.g. the bpe_simple_vocab_16e6.txt.gz installed with open_clip.
    ClipTokenizer {
        /// bpe_simple_vocab_16e6.txt.gz (or the uncompressed .txt).
        #[arg(long)]
        bpe: PathBuf,
        /// Output file.
        #[arg(long, default_value = "tokenizer.json")]
        out: PathBuf,
    },
    /// Generate a built-in benchmark (train shards with noise, clean test shards, dataset.json).
    Generate(GenerateArgs),
}

/// `dissect data pack`'s flags.
#[derive(Debug, Clone, Args)]
pub struct PackArgs {
    /// Folder, .csv or .tsv file.
    input: PathBuf,
    /// Dataset folder to create (must not exist yet).
    #[arg(long)]
    out: PathBuf,
    /// Held-out pairs, drawn at random by --seed [default: --test-fraction 0.1].
    #[arg(long, conflicts_with_all = ["test_fraction", "test_input"])]
    test_size: Option<usize>,
    /// Held-out fraction of the pairs, drawn at random by --seed.
    #[arg(long, conflicts_with = "test_input")]
    test_fraction: Option<f64>,
    /// A second folder or CSV/TSV for the held-out split instead of a random one.
    #[arg(long)]
    test_input: Option<PathBuf>,
    /// Image side the models train at (images are stored as they are).
    #[arg(long, default_value_t = 224)]
    image_size: u32,
    /// Class names, one per line, for zero-shot evaluation.
    #[arg(long)]
    classes: Option<PathBuf>,
    /// Zero-shot prompt templates, one per line, {} for the class [default: "a photo of a {}."].
    #[arg(long)]
    templates: Option<PathBuf>,
    /// CSV/TSV column of the image paths [default: image, filepath, path, file or filename].
    #[arg(long)]
    image_column: Option<String>,
    /// CSV/TSV column of the captions [default: caption, text or title].
    #[arg(long)]
    caption_column: Option<String>,
    /// CSV/TSV column of class labels (names from --classes, or 0-based indices).
    #[arg(long)]
    label_column: Option<String>,
    /// Samples per shard.
    #[arg(long, default_value_t = 10_000)]
    shard_size: u64,
    /// Fraction of training pairs whose captions are swapped (noisy correspondence, with
    /// ground-truth flags); the held-out split stays clean.
    #[arg(long, default_value_t = 0.0)]
    noise_rate: f64,
    /// Seed of the split and the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images of more pixels (width x height) than this are skipped and named [default:
    /// PIL's 89478485].
    #[arg(long, default_value_t = DEFAULT_MAX_IMAGE_PIXELS)]
    max_image_pixels: u64,
}

impl From<&PackArgs> for PackOptions {
    fn from(args: &PackArgs) -> Self {
        let test_split = match (args.test_size, args.test_fraction, &args.test_input) {
            (_, _, Some(_)) => TestSplit::Input,
            (Some(n), _, _) => TestSplit::Count(n),
            (None, Some(f), _) => TestSplit::Fraction(f),
            (None, None, None) => TestSplit::Fraction(0.1),
        };
        PackOptions {
            input: args.input.clone(),
            test_input: args.test_input.clone(),
            out: args.out.clone(),
            test_split,
            image_size: args.image_size,
            classes: args.classes.clone(),
            templates: args.templates.clone(),
            image_column: args.image_column.clone(),
            caption_column: args.caption_column.clone(),
            label_column: args.label_column.clone(),
            shard_size: args.shard_size,
            noise_rate: args.noise_rate,
            seed: args.seed,
            max_image_pixels: args.max_image_pixels,
        }
    }
}

/// `dissect data generate`'s flags.
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// noisy-shapes (generated, no download) or fashion-mnist (Debian's dataset-fashion-mnist).
    benchmark: Benchmark,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0.2)]
    noise_rate: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Default: 20000 (noisy-shapes) or 60000 (fashion-mnist).
    #[arg(long)]
    train_size: Option<usize>,
    /// Default: 1000 (noisy-shapes) or 10000 (fashion-mnist).
    #[arg(long)]
    test_size: Option<usize>,
    /// Default: 32 (noisy-shapes) or 28 (fashion-mnist).
    #[arg(long)]
    image_size: Option<u32>,
    #[arg(long, default_value_t = 5000)]
    shard_size: u64,
    /// png (lossless) or jpeg (quality 90, as web datasets store images); noisy-shapes only.
    #[arg(long, default_value = "png")]
    image_format: ImageFormat,
}

impl From<&GenerateArgs> for GenerateOptions {
    fn from(args: &GenerateArgs) -> Self {
        GenerateOptions {
            benchmark: args.benchmark,
            out: args.out.clone(),
            noise_rate: args.noise_rate,
            seed: args.seed,
            train_size: args.train_size,
            test_size: args.test_size,
            image_size: args.image_size,
            shard_size: args.shard_size,
            image_format: args.image_format,
        }
    }
}

fn print_pack(report: &PackReport, out: &Path) {
    let m = &report.manifest;
    println!(
        "packed {} training pairs ({} noisy) and {} held-out pairs into {} ({} skipped)",
        m.train_size,
        m.noisy_count,
        m.test_size,
        out.display(),
        report.skipped
    );
    for problem in &report.problems {
        println!("  skipped {problem}");
    }
    if report.skipped > report.problems.len() as u64 {
        println!("  ... and {} more", report.skipped - report.problems.len() as u64);
    }
    if report.unlabelled > 0 {
        println!(
            "  {} pairs have no class among --classes (zero-shot runs only when every held-out pair has one)",
            report.unlabelled
        );
    }
    println!("train on it with: dissect train --data {}", out.display());
}

/// Runs a data subcommand, printing a human summary.
pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Pack(args) => print_pack(&pack(&PackOptions::from(&args))?, &args.out),
        DataCommand::Inspect { shards, image_size, max_image_pixels } => {
            let set = ShardSet::from_pattern(&shards.join("::"))?;
            let preprocess = PreprocessConfig { max_image_pixels, ..PreprocessConfig::new(image_size) };
            print!("{}", inspect(&set, &preprocess)?);
            println!("index: {}", set.index_path.display());
        }
        DataCommand::Tokenizer { shards, out, vocab_size } => {
            let set = ShardSet::from_pattern(&shards.join("::"))?;
            let start = std::time::Instant::now();
            let tok = TextTokenizer::train_from_shards(&set, vocab_size)?;
            tok.save(&out)?;
            println!(
                "trained a {}-token BPE in {:.1}s: {}",
                tok.vocab_size(),
                start.elapsed().as_secs_f64(),
                out.display()
            );
        }
        DataCommand::ClipTokenizer { bpe, out } => {
            let tok = TextTokenizer::from_clip_bpe(&bpe)?;
            tok.save(&out)?;
            println!("built CLIP's {}-token BPE from {}: {}", tok.vocab_size(), bpe.display(), out.display());
        }
        DataCommand::Generate(args) => {
            let start = std::time::Instant::now();
            let out = args.out.clone();
            let opts = GenerateOptions::from(&args);
            let m = generate(&opts)?;
            println!(
                "generated {} in {:.1}s: {} train ({} noisy, rate {}) + {} test, {}x{} images, {} classes",
                m.name,
                start.elapsed().as_secs_f64(),
                m.train_size,
                m.noisy_count,
                m.noise_rate,
                m.test_size,
                m.image_size,
                m.image_size,
                m.class_names.len()
            );
            println!("manifest: {}", out.join(MANIFEST_FILE).display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: DataCommand,
    }

    #[test]
    fn parses_and_runs_generate() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().to_string_lossy().into_owned();
        let cli = Cli::try_parse_from([
            "x",
            "generate",
            "noisy-shapes",
            "--out",
            &out,
            "--train-size",
            "100",
            "--test-size",
            "10",
            "--noise-rate",
            "0.1",
        ])
        .unwrap();
        run(cli.cmd).unwrap();
        let pat = format!("{out}/train-000000.tar");
        let cli = Cli::try_parse_from(["x", "inspect", &pat]).unwrap();
        run(cli.cmd).unwrap();
        let tok = format!("{out}/tok.json");
        let cli = Cli::try_parse_from(["x", "tokenizer", &pat, "--out", &tok, "--vocab-size", "300"]).unwrap();
        run(cli.cmd).unwrap();
        assert!(TextTokenizer::load(std::path::Path::new(&tok)).is_ok());
        assert!(Cli::try_parse_from(["x", "generate", "mnist", "--out", "y"]).is_err());
    }

    #[test]
    fn parses_and_runs_clip_tokenizer() {
        let bpe = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/tests/fixtures/bpe_simple_vocab_16e6.txt.gz");
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("tokenizer.json");
        let cli = Cli::try_parse_from([
            "x".as_ref(),
            "clip-tokenizer".as_ref(),
            "--bpe".as_ref(),
            bpe.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
        ])
        .unwrap();
        run(cli.cmd).unwrap();
        let tok = TextTokenizer::load(&out).unwrap();
        assert_eq!((tok.vocab_size(), tok.start_id(), tok.end_id()), (49408, 49406, 49407));
        let missing = Cli::try_parse_from(["x", "clip-tokenizer", "--bpe", "missing.txt.gz"]).unwrap();
        assert!(run(missing.cmd).unwrap_err().to_string().contains("missing.txt.gz"));
    }
}
