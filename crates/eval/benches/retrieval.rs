//! Retrieval metrics at 5,000 × 5,000, D = 512 (the yardstick).
//! Run: `cargo bench -p dissect-eval --bench retrieval`

use criterion::{Criterion, criterion_group, criterion_main};
use dissect_eval::{Features, RetrievalTargets, normalize, retrieval_metrics};
use rand::{Rng, SeedableRng};

fn random_unit_rows(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut v: Vec<f32> = (0..n * dim).map(|_| rng.random_range(-1.0..1.0)).collect();
    v.chunks_exact_mut(dim).for_each(normalize);
    v
}

fn bench(c: &mut Criterion) {
    let (n, dim) = (5000, 512);
    let img = random_unit_rows(n, dim, 1);
    // Texts near their image so ranks are realistic.
    let noise = random_unit_rows(n, dim, 2);
    let mut txt: Vec<f32> = img.iter().zip(&noise).map(|(a, b)| a + 0.8 * b).collect();
    txt.chunks_exact_mut(dim).for_each(normalize);
    let owner: Vec<usize> = (0..n).collect();
    let targets = RetrievalTargets::from_text_image(n, &owner).expect("targets");
    let fi = Features::new("img", &img, dim).expect("img");
    let ft = Features::new("txt", &txt, dim).expect("txt");
    let mut g = c.benchmark_group("retrieval_5000x5000_d512");
    g.sample_size(10);
    for threads in [1, 2] {
        g.bench_function(format!("threads={threads}"), |b| {
            b.iter(|| retrieval_metrics(fi, ft, &targets, threads).expect("metrics"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
