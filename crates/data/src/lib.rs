//! dissect-data: WebDataset shards with stable global indices, image preprocessing, a BPE
//! caption tokenizer, a deterministic multi-threaded loader, noise injection and the built-in
//! `noisy-shapes` / `fashion-mnist` benchmarks.

pub mod benchmarks;
pub mod brace;
pub mod cli;
pub mod error;
pub mod fmnist;
pub mod loader;
pub mod noise;
pub mod pack;
pub mod preprocess;
pub mod shapes;
pub mod shard;
pub mod tokenizer;

pub use benchmarks::{Benchmark, DatasetManifest, GenerateOptions, generate};
pub use brace::expand_braces;
pub use error::{DataError, Result};
pub use loader::{Batch, DecodedSample, Epoch, LoadStats, Loader, LoaderConfig, load_all};
pub use noise::{NoiseReport, inject_noise};
pub use pack::{InspectReport, PackOptions, PackReport, inspect, pack};
pub use preprocess::{CLIP_MEAN, CLIP_STD, PreprocessConfig, RandomResizedCrop, decode_and_preprocess};
pub use shard::{RawSample, SampleMeta, SampleOut, ShardIndex, ShardReader, ShardSet, ShardWriter};
pub use tokenizer::{DEFAULT_VOCAB_SIZE, TextTokenizer, TokenBatch};
