#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod benchmarks;
mod brace;
mod clip_bpe;
mod decode;
mod duplicates;
mod error;
mod fmnist;
mod inspect;
mod labelled;
mod lines;
mod loader;
mod manifest;
mod noise;
mod pack;
mod preprocess;
mod shapes;
mod shard;
mod tokenizer;

pub use benchmarks::{Benchmark, GenerateOptions, ImageFormat, generate};
pub use brace::expand_braces;
pub use decode::{DECODE_BYTES_PER_PIXEL, DEFAULT_MAX_IMAGE_PIXELS, decode};
pub use duplicates::{ContentBits, DuplicateGroups, caption_key, content_key};
pub use error::{DataError, Result};
pub use inspect::{CAPTION_BUCKETS, InspectReport, inspect};
pub use labelled::{CLASSNAMES_FILE, LabelledImages, OPENAI_IMAGENET_TEMPLATES, TEMPLATES_FILE, load_labelled_folder};
pub use lines::read_lines;
pub use loader::{
    Batch, BatchPart, DecodedSample, Epoch, LoadStats, Loader, LoaderConfig, SkipReason, batch_parts, load_all,
    skip_reason,
};
pub use manifest::{DatasetManifest, HeadlineMetric, MANIFEST_FILE};
pub use noise::{NoiseReport, inject_noise};
pub use pack::{PackOptions, PackReport, TestSplit, pack};
pub use preprocess::{
    CLIP_MEAN, CLIP_STD, ImageViews, PreprocessConfig, RandomResizedCrop, decode_and_preprocess,
    decode_and_preprocess_views,
};
pub use shard::{RawSample, SampleMeta, SampleOut, ShardIndex, ShardReader, ShardSet, ShardWriter};
pub use tokenizer::{DEFAULT_VOCAB_SIZE, TextTokenizer, TokenBatch};
