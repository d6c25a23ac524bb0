//! Selection cost for one batch of 10,240 drawn from N = 15 million samples (YFCC15M),
//! next to a plain sort of the same batch's scores (the floor to beat).
//!
//! cargo bench -p dissect-select --bench select

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use dissect_select::{BatchScores, SelectionConfig, Selector, Strategy};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

const N: u64 = 15_000_000;
const B: usize = 10_240;

fn batch(rng: &mut ChaCha8Rng) -> (Vec<u64>, Vec<f32>) {
    let indices: Vec<u64> = (0..B).map(|_| rng.random_range(0..N)).collect();
    let scores: Vec<f32> = (0..B).map(|_| rng.random_range(-10.0..40.0)).collect();
    (indices, scores)
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut group = c.benchmark_group("select_10240_of_15M");
    group.throughput(Throughput::Elements(B as u64));
    group.sample_size(30);

    group.bench_function("plain_sort_of_batch_scores", |b| {
        b.iter_batched(
            || batch(&mut rng).1,
            |mut scores| {
                scores.sort_unstable_by(|a, b| b.total_cmp(a));
                black_box(scores)
            },
            BatchSize::LargeInput,
        )
    });

    for strategy in [Strategy::Random, Strategy::Clipscore, Strategy::DissectWarmup, Strategy::DissectMomentum] {
        // Warm-up over by epoch 1; momentum history filled by a first pass over the batches.
        let config = SelectionConfig::new(strategy, 0.3).unwrap().with_warmup_epochs(1);
        let mut selector = Selector::with_dataset_len(config, N).unwrap();
        let batches: Vec<_> = (0..16).map(|_| batch(&mut rng)).collect();
        for (step, (indices, scores)) in batches.iter().enumerate() {
            let input = BatchScores { indices, clip_scores: Some(scores), ..Default::default() };
            selector.select(&input, 0, step as u64, &mut rng).unwrap();
        }
        let mut step = 0usize;
        group.bench_function(strategy.name(), |b| {
            b.iter(|| {
                let (indices, scores) = &batches[step % batches.len()];
                step += 1;
                let input = BatchScores { indices, clip_scores: Some(scores), ..Default::default() };
                black_box(selector.select(&input, 1, step as u64, &mut rng).unwrap())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
