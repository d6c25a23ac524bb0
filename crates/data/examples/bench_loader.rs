//! Times the batch loader alone: shards read, shuffled, decoded, resized, normalised and
//! tokenized into batches by `--threads` decode threads, as `dissect train` loads them, with
//! nothing consuming the batches but this loop. Prints the time to the first batch and the
//! images per second over the rest, which is the rate a training step must stay under for the
//! data never to be what it waits for.
//!
//! `cargo run --release -p dissect-data --example bench_loader -- --shards 'data/train-{000000..000009}.tar' --tokenizer tokenizer.json --image-size 224 --batch 256`

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use dissect_data::{Loader, LoaderConfig, ShardSet, TextTokenizer};

struct Args {
    shards: String,
    tokenizer: String,
    image_size: u32,
    batch: usize,
    threads: usize,
    batches: Option<u64>,
    context_len: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        shards: String::new(),
        tokenizer: String::new(),
        image_size: 224,
        batch: 256,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        batches: None,
        context_len: 77,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--shards" => args.shards = value,
            "--tokenizer" => args.tokenizer = value,
            "--image-size" => args.image_size = value.parse().context("--image-size")?,
            "--batch" => args.batch = value.parse().context("--batch")?,
            "--threads" => args.threads = value.parse().context("--threads")?,
            "--batches" => args.batches = Some(value.parse().context("--batches")?),
            "--context-len" => args.context_len = value.parse().context("--context-len")?,
            _ => bail!(
                "unknown flag {flag} (use --shards --tokenizer --image-size --batch --threads --batches --context-len)"
            ),
        }
    }
    if args.shards.is_empty() || args.tokenizer.is_empty() {
        bail!("--shards PATTERN and --tokenizer tokenizer.json are required");
    }
    Ok(args)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let shards = ShardSet::from_pattern(&args.shards)?;
    let tokenizer = Arc::new(TextTokenizer::load(args.tokenizer.as_ref())?);
    let mut cfg = LoaderConfig::new(args.batch, args.image_size);
    cfg.threads = args.threads;
    cfg.context_len = args.context_len;
    let loader = Loader::new(shards, tokenizer, cfg)?;
    let wanted = args.batches.unwrap_or(loader.batches_per_epoch()).max(2);
    let start = Instant::now();
    let mut epoch = loader.epoch(0, 0);
    let first = epoch.next().context("the shards hold no full batch")?;
    let to_first = start.elapsed().as_secs_f64();
    let (mut images, mut batches) = (0usize, 0u64);
    let steady = Instant::now();
    for batch in epoch.by_ref().take((wanted - 1) as usize) {
        images += batch.len();
        batches += 1;
    }
    let seconds = steady.elapsed().as_secs_f64();
    println!(
        "loader: {} threads, batch {}, {} px: first batch {to_first:.2} s, then {batches} more ({images} images) at {:.0} images/s",
        args.threads,
        args.batch,
        args.image_size,
        images as f64 / seconds.max(1e-9)
    );
    println!("first batch had {} images; skipped {}", first.len(), epoch.stats().skipped());
    Ok(())
}
