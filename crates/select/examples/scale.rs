//! The trainer's per-step bookkeeping at dataset scale: does it stay flat from 1 M to 15 M
//! samples, and does a checkpoint of the score state grow no faster than the state?
//!
//! For each dataset size N this creates the score state memory-mapped in a file (as
//! `mapped_scores = true` runs keep it), then times steps of batch B with synthetic indices
//! and CLIPScores: the shard lookup of every index (a binary search over a table of shards of
//! 10,000 samples, as `scores export` resolves them), DISSect-momentum selection at r = 0.3
//! (state reads and writes at random places in the file) and the visit records appended to a
//! file. It times them in a fresh run (an empty working file: each page is faulted in at its
//! first touch, once per run) and again after writing the checkpoint's copy of the state
//! (`ScoreState::save`: a checksummed snapshot, synced and renamed, also timed) and reading it
//! back into a new working file as a resumed run does (every page resident).
//!
//!     cargo run --release -p dissect-select --example scale -- [--sizes 1000000,5000000,15000000]
//!         [--batch 256] [--steps 2000] [--dir PATH]

use std::path::PathBuf;
use std::time::Instant;

use dissect_select::{BatchScores, RecordWriter, ScoreState, SelectionConfig, Selector, Strategy};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SHARD_SAMPLES: u64 = 10_000;
const WARMUP_STEPS: usize = 200;

struct Args {
    sizes: Vec<u64>,
    batch: usize,
    steps: usize,
    dir: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { sizes: vec![1_000_000, 5_000_000, 15_000_000], batch: 256, steps: 2000, dir: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--sizes" => args.sizes = value.split(',').map(number).collect::<Result<_, _>>()?,
            "--batch" => args.batch = number(&value)? as usize,
            "--steps" => args.steps = number(&value)? as usize,
            "--dir" => args.dir = Some(PathBuf::from(value)),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let scratch = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    println!(
        "batch {}, {} timed steps after {WARMUP_STEPS} untimed ones, dissect-momentum r = 0.3",
        args.batch, args.steps
    );
    println!(
        "| samples | state | step, fresh run | step, resumed | p99, resumed | per row, resumed | checkpoint of the state \
         (median of 3) | per GB | resume (read back) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &args.sizes {
        let row = measure(n, &args, scratch.path())?;
        println!("{row}");
    }
    Ok(())
}

fn measure(n: u64, args: &Args, dir: &std::path::Path) -> Result<String, Box<dyn std::error::Error>> {
    let config = SelectionConfig::new(Strategy::DissectMomentum, 0.3)?;
    let shard_starts: Vec<u64> = (0..n.div_ceil(SHARD_SAMPLES)).map(|s| s * SHARD_SAMPLES).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(n);

    // A fresh run: the working file starts empty, each page is faulted in at its first touch.
    let working = dir.join(format!("scores-{n}.dss"));
    let mut selector = Selector::new(config, ScoreState::create_mapped(&working, n)?)?;
    let fresh = time_steps(&mut selector, n, &shard_starts, args, dir, &mut rng)?;

    // The checkpoint's copy of the state; writes are synced, so their time varies: take the
    // median of three.
    let snapshot = dir.join(format!("checkpoint-{n}.dss"));
    let mut saves = Vec::with_capacity(3);
    for _ in 0..3 {
        let start = Instant::now();
        selector.state().save(&snapshot)?;
        saves.push(start.elapsed().as_secs_f64());
    }
    saves.sort_by(f64::total_cmp);
    let checkpoint = saves[1];
    let bytes = selector.state().state_bytes() as f64;
    drop(selector);
    std::fs::remove_file(&working)?;

    // A resumed run: the state read back from the checkpoint into a new working file.
    let start = Instant::now();
    let state = ScoreState::load_mapped(&snapshot, &working)?;
    let resume = start.elapsed().as_secs_f64();
    let mut selector = Selector::new(config, state)?;
    let resumed = time_steps(&mut selector, n, &shard_starts, args, dir, &mut rng)?;
    drop(selector);
    std::fs::remove_file(&working)?;
    std::fs::remove_file(&snapshot)?;
    Ok(format!(
        "| {:.1} M | {:.0} MB | {:.1} µs | {:.1} µs | {:.1} µs | {:.0} ns | {:.2} s | {:.2} s/GB | {:.2} s |",
        n as f64 / 1e6,
        bytes / 1e6,
        fresh.0 * 1e6,
        resumed.0 * 1e6,
        resumed.1 * 1e6,
        resumed.0 * 1e9 / args.batch as f64,
        checkpoint,
        checkpoint / (bytes / 1e9),
        resume,
    ))
}

/// Median and 99th percentile of `args.steps` steps after 200 untimed ones: shard lookup of
/// every row, selection, visit records appended to a file.
fn time_steps(
    selector: &mut Selector,
    n: u64,
    shard_starts: &[u64],
    args: &Args,
    dir: &std::path::Path,
    rng: &mut ChaCha8Rng,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let mut records = RecordWriter::create(dir.join(format!("visits-{n}.dsv")))?;
    let mut times = Vec::with_capacity(args.steps);
    let mut shard_sum = 0usize;
    for step in 0..WARMUP_STEPS + args.steps {
        let indices: Vec<u64> = (0..args.batch).map(|_| rng.random_range(0..n)).collect();
        let scores: Vec<f32> = (0..args.batch).map(|_| rng.random_range(0.0..40.0)).collect();
        let start = Instant::now();
        // Which shard holds each row (the lookup `scores export` does).
        shard_sum += indices.iter().map(|&i| shard_starts.partition_point(|&s| s <= i) - 1).sum::<usize>();
        let input = BatchScores { indices: &indices, clip_scores: Some(&scores), ..Default::default() };
        let selection = selector.select(&input, 1, step as u64, rng)?;
        records.write(&selection.records)?;
        if step >= WARMUP_STEPS {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    records.flush()?;
    std::hint::black_box(shard_sum);
    times.sort_by(f64::total_cmp);
    Ok((percentile(&times, 0.5), percentile(&times, 0.99)))
}
