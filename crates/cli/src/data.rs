//! `dissect data …`: generate, pack, inspect and tokenize, printing a summary of each.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use dissect_data::{
    Benchmark, DEFAULT_VOCAB_SIZE, GenerateOptions, MANIFEST_FILE, PackOptions, ShardSet, TextTokenizer, generate,
    inspect, pack,
};

#[derive(Debug, Clone, Subcommand)]
pub enum DataCommand {
    /// Pack a folder of images with sidecar .txt captions, or a CSV/TSV of path,caption, into
    /// WebDataset shards plus an index.
    Pack {
        /// Folder, .csv or .tsv file.
        input: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Shard name prefix ({name}-000000.tar, {name}.index.json).
        #[arg(long, default_value = "train")]
        name: String,
        #[arg(long, default_value_t = 10_000)]
        shard_size: u64,
        /// Fraction of pairs whose captions are swapped (noisy correspondence).
        #[arg(long, default_value_t = 0.0)]
        noise_rate: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Count samples, histogram caption lengths and find corrupt members.
    Inspect {
        /// Shard pattern(s), e.g. 'data/train-{000000..000575}.tar'.
        #[arg(required = true)]
        shards: Vec<String>,
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
    /// Generate a built-in benchmark (train shards with noise, clean test shards, dataset.json).
    Generate {
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
    },
}

/// Runs a data subcommand, printing a human summary.
pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Pack { input, out, name, shard_size, noise_rate, seed } => {
            let r = pack(&PackOptions { input, out: out.clone(), name, shard_size, noise_rate, seed })?;
            println!(
                "packed {} samples into {} shard(s): {}/{} ({} skipped, {} noisy)",
                r.samples,
                r.shards,
                out.display(),
                r.pattern,
                r.skipped,
                r.noisy
            );
        }
        DataCommand::Inspect { shards } => {
            let set = ShardSet::from_pattern(&shards.join(" "))?;
            print!("{}", inspect(&set)?);
            println!("index: {}", set.index_path.display());
        }
        DataCommand::Tokenizer { shards, out, vocab_size } => {
            let set = ShardSet::from_pattern(&shards.join(" "))?;
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
        DataCommand::Generate { benchmark, out, noise_rate, seed, train_size, test_size, image_size, shard_size } => {
            let start = std::time::Instant::now();
            let opts = GenerateOptions {
                benchmark,
                out: out.clone(),
                noise_rate,
                seed,
                train_size,
                test_size,
                image_size,
                shard_size,
            };
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
}
