//! Loader throughput on a dataset folder (e.g. `dissect data generate noisy-shapes --out ns`):
//! `cargo run --release -p dissect-data --example loader_throughput -- <dataset-dir> [threads]`.

use std::sync::Arc;
use std::time::Instant;

use dissect_data::{DatasetManifest, Loader, LoaderConfig, TextTokenizer};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1).map(std::path::PathBuf::from) else {
        anyhow::bail!("usage: loader_throughput <dataset-dir> [threads]");
    };
    let threads: usize = args.get(2).map_or(Ok(2), |s| s.parse())?;
    let m = DatasetManifest::load(&dir)?;
    let set = m.train_set(&dir)?;
    let t = Instant::now();
    let tok = Arc::new(TextTokenizer::train_from_shards(&set, 1024)?);
    println!("tokenizer: {} tokens in {:.2}s", tok.vocab_size(), t.elapsed().as_secs_f64());
    let mut cfg = LoaderConfig::new(256, m.image_size);
    cfg.threads = threads;
    let loader = Loader::new(set, tok, cfg)?;
    let t = Instant::now();
    let mut epoch = loader.epoch(0, 0);
    let n: usize = epoch.by_ref().map(|b| b.len()).sum();
    let dt = t.elapsed().as_secs_f64();
    println!("{n} samples in {dt:.2}s = {:.0}/s with {threads} threads; {:?}", n as f64 / dt, epoch.stats());
    Ok(())
}
