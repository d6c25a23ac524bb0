//! `pack`: a folder of captioned images, or a CSV/TSV of image paths and captions, into a
//! complete dataset folder — train and held-out shards, their indices and `dataset.json` —
//! that the trainer, `compare`, `eval` and `demo` take as it is.
//!
//! Bad input never stops the pack and never goes in silently: a sample without a readable,
//! decodable image or without a UTF-8, non-empty caption is skipped, counted and named (file
//! and line). The folder is written under a temporary name and renamed when complete, so an
//! interrupted pack leaves no half-written dataset.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::decode::{DEFAULT_MAX_IMAGE_PIXELS, decode};
use crate::error::{DataError, Result};
use crate::lines::read_lines;
use crate::manifest::{DatasetManifest, HeadlineMetric};
use crate::noise::inject_noise;
use crate::shard::{IMAGE_EXTS, SampleMeta, SampleOut, ShardWriter};

/// How many pairs go to the held-out split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TestSplit {
    /// This many pairs, drawn at random by the seed.
    Count(usize),
    /// This fraction of the pairs (rounded, at least one), drawn at random by the seed.
    Fraction(f64),
    /// The held-out pairs come from [`PackOptions::test_input`].
    Input,
}

/// What [`pack`] reads and how it writes the dataset folder.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// A folder of images with sidecar `.txt` captions (sub-folders included), or a
    /// `.csv`/`.tsv` of image paths and captions (paths relative to the file's folder).
    pub input: PathBuf,
    /// A second input for the held-out split, with `test_split = TestSplit::Input`.
    pub test_input: Option<PathBuf>,
    /// The dataset folder to create; it must not exist yet (or be empty).
    pub out: PathBuf,
    /// How the held-out split is made.
    pub test_split: TestSplit,
    /// The image side the models train at (recorded in `dataset.json`; images are stored as
    /// they are and resized by the loader).
    pub image_size: u32,
    /// A file of class names, one per line, for zero-shot evaluation. A sample's class is its
    /// label column (CSV) or its sub-folder's name (folder input).
    pub classes: Option<PathBuf>,
    /// A file of zero-shot prompt templates, one per line, `{}` standing for the class name.
    /// Default with classes: `a photo of a {}.`
    pub templates: Option<PathBuf>,
    /// CSV/TSV column of the image paths (default: the first of `image`, `filepath`, `path`,
    /// `file`, `filename` in the header row, else the first column of a file without one).
    pub image_column: Option<String>,
    /// CSV/TSV column of the captions (default: the first of `caption`, `text`, `title`,
    /// else the second column).
    pub caption_column: Option<String>,
    /// CSV/TSV column of class labels (names from `classes`, or 0-based indices).
    pub label_column: Option<String>,
    /// Maximum samples per shard (> 0).
    pub shard_size: u64,
    /// Fraction of training pairs whose caption is swapped by noise injection, 0–1 (the
    /// held-out split stays clean); above 0, every training sample carries a `noisy` flag.
    pub noise_rate: f64,
    /// Seed of the split and of the noise injection.
    pub seed: u64,
    /// Images of more pixels (width × height) than this are skipped, named with their size.
    pub max_image_pixels: u64,
}

impl PackOptions {
    /// Defaults: a random 10% held out, 224-pixel images, shards of 10,000, no noise, seed 0.
    pub fn new(input: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        PackOptions {
            input: input.into(),
            test_input: None,
            out: out.into(),
            test_split: TestSplit::Fraction(0.1),
            image_size: 224,
            classes: None,
            templates: None,
            image_column: None,
            caption_column: None,
            label_column: None,
            shard_size: 10_000,
            noise_rate: 0.0,
            seed: 0,
            max_image_pixels: DEFAULT_MAX_IMAGE_PIXELS,
        }
    }
}

/// What [`pack`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct PackReport {
    /// The `dataset.json` written.
    pub manifest: DatasetManifest,
    /// Inputs skipped (unreadable or undecodable image, missing, empty or non-UTF-8 caption).
    pub skipped: u64,
    /// The first skipped inputs, each as `file[:line]: reason`.
    pub problems: Vec<String>,
    /// Samples whose label is not one of the classes (they have no zero-shot label).
    pub unlabelled: u64,
}

/// Problems listed in a report; the rest are only counted.
const MAX_PROBLEMS: usize = 20;

/// One usable input pair.
struct Pair {
    image: PathBuf,
    caption: String,
    label: Option<String>,
    /// Where the pair came from, for messages: `list.csv:12` or the caption file.
    origin: String,
}

/// Pairs read from an input, and what was skipped.
#[derive(Default)]
struct Collected {
    pairs: Vec<Pair>,
    skipped: u64,
    problems: Vec<String>,
}

impl Collected {
    fn skip(&mut self, problem: String) {
        self.skipped += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(problem);
        }
    }

    fn absorb(&mut self, other: Collected) {
        self.skipped += other.skipped;
        for p in other.problems {
            if self.problems.len() < MAX_PROBLEMS {
                self.problems.push(p);
            }
        }
    }
}

/// Packs the input into a complete dataset folder (see the module docs).
pub fn pack(opts: &PackOptions) -> Result<PackReport> {
    check_options(opts)?;
    let classes = opts.classes.as_deref().map(read_lines).transpose()?.unwrap_or_default();
    let templates = match opts.templates.as_deref().map(read_lines).transpose()?.unwrap_or_default() {
        t if t.is_empty() && !classes.is_empty() => vec!["a photo of a {}.".to_string()],
        t => t,
    };
    let (train, test, mut collected) = split_inputs(opts)?;
    let class_of = ClassIndex::new(&classes);
    let tmp = dissect_io::temp_path(&opts.out);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    }
    let written = (|| -> Result<DatasetManifest> {
        let (train_pattern, train_size, noisy) =
            write_split(&tmp, "train", &train, &class_of, (opts.noise_rate, opts.seed), opts, &mut collected)?;
        let (test_pattern, test_size, _) =
            write_split(&tmp, "test", &test, &class_of, (0.0, opts.seed), opts, &mut collected)?;
        let manifest = DatasetManifest {
            name: opts.out.file_name().map_or("dataset".into(), |n| n.to_string_lossy().into_owned()),
            train: train_pattern,
            test: test_pattern,
            train_size,
            test_size,
            image_size: opts.image_size,
            class_names: classes.clone(),
            templates: templates.clone(),
            noise_rate: opts.noise_rate,
            noisy_count: noisy,
            seed: opts.seed,
            // Packed captions are the user's own; set `headline` in dataset.json to
            // `zero_shot_top1` for data whose captions are class names in templates.
            headline: HeadlineMetric::MeanR1,
        };
        manifest.save(&tmp)?;
        Ok(manifest)
    })();
    let manifest = written.inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&tmp);
    })?;
    dissect_io::commit_dir(&tmp, &opts.out).map_err(|e| DataError::io(&opts.out, e))?;
    let unlabelled = if classes.is_empty() {
        0
    } else {
        train.iter().chain(&test).filter(|p| class_of.get(p.label.as_deref()).is_none()).count() as u64
    };
    Ok(PackReport { manifest, skipped: collected.skipped, problems: collected.problems, unlabelled })
}

fn check_options(opts: &PackOptions) -> Result<()> {
    let invalid = |why: String| Err(DataError::Invalid(why));
    if opts.shard_size == 0 {
        return invalid("shard size must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&opts.noise_rate) {
        return invalid(format!("noise rate {} is not in [0, 1]", opts.noise_rate));
    }
    if opts.max_image_pixels == 0 {
        return invalid("max image pixels must be at least 1".into());
    }
    if !(8..=4096).contains(&opts.image_size) {
        return invalid(format!("image size {} is not in 8..=4096", opts.image_size));
    }
    match (opts.test_split, &opts.test_input) {
        (TestSplit::Fraction(f), _) if !(f > 0.0 && f < 1.0) => {
            return invalid(format!("test fraction {f} is not in (0, 1)"));
        }
        (TestSplit::Input, None) => return invalid("a held-out split from a second input needs that input".into()),
        _ => {}
    }
    let non_empty = std::fs::read_dir(&opts.out).is_ok_and(|mut d| d.next().is_some());
    if non_empty {
        return Err(DataError::Input {
            path: opts.out.clone(),
            reason: "already exists and is not empty; choose another folder or remove it".into(),
        });
    }
    Ok(())
}

/// The training and held-out pairs: from two inputs, or one input split at random by the seed.
fn split_inputs(opts: &PackOptions) -> Result<(Vec<Pair>, Vec<Pair>, Collected)> {
    let mut collected = collect(&opts.input, opts)?;
    keep_decodable(&mut collected, opts.max_image_pixels);
    if let (TestSplit::Input, Some(test_input)) = (opts.test_split, &opts.test_input) {
        let mut test = collect(test_input, opts)?;
        keep_decodable(&mut test, opts.max_image_pixels);
        let test_pairs = std::mem::take(&mut test.pairs);
        collected.absorb(test);
        let train = std::mem::take(&mut collected.pairs);
        return Ok((train, test_pairs, collected));
    }
    let n = collected.pairs.len();
    let n_test = match opts.test_split {
        TestSplit::Count(c) => c,
        TestSplit::Fraction(f) => ((n as f64 * f).round() as usize).max(1),
        TestSplit::Input => 0,
    };
    if n_test >= n {
        return Err(DataError::Input {
            path: opts.input.clone(),
            reason: format!("{n} usable pairs cannot give {n_test} held-out pairs and still leave some to train on"),
        });
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(opts.seed ^ 0x7e57_5e1e));
    let mut is_test = vec![false; n];
    for &i in &order[..n_test] {
        is_test[i] = true;
    }
    let (mut train, mut test) = (Vec::with_capacity(n - n_test), Vec::with_capacity(n_test));
    for (pair, held_out) in std::mem::take(&mut collected.pairs).into_iter().zip(is_test) {
        if held_out { test.push(pair) } else { train.push(pair) }
    }
    Ok((train, test, collected))
}

/// Writes one split's shards (noise injected first at `noise.0` with seed `noise.1`); returns
/// the shard pattern and the numbers of pairs and of noisy pairs written. Images are read
/// one at a time.
fn write_split(
    dir: &Path,
    name: &str,
    pairs: &[Pair],
    class_of: &ClassIndex,
    noise: (f64, u64),
    opts: &PackOptions,
    collected: &mut Collected,
) -> Result<(String, u64, u64)> {
    let originals: Vec<String> = pairs.iter().map(|p| p.caption.clone()).collect();
    let mut captions = originals.clone();
    let report = inject_noise(&mut captions, noise.0, noise.1)?;
    let noisy: std::collections::HashSet<usize> = report.noisy.iter().copied().collect();
    let mut writer = ShardWriter::new(dir, name, opts.shard_size)?;
    let mut noisy_written = 0;
    for (i, (pair, caption)) in pairs.iter().zip(&captions).enumerate() {
        // Checked before the split; a file that vanished since is skipped like any other.
        let bytes = match std::fs::read(&pair.image) {
            Ok(bytes) => bytes,
            Err(e) => {
                collected.skip(format!("{}: image {} not readable ({e})", pair.origin, pair.image.display()));
                continue;
            }
        };
        let meta = SampleMeta {
            noisy: (noise.0 > 0.0).then_some(noisy.contains(&i)),
            original_caption: noisy.contains(&i).then(|| originals[i].clone()),
            class: class_of.get(pair.label.as_deref()),
            ..Default::default()
        };
        let ext = extension(&pair.image).unwrap_or_else(|| "jpg".into());
        writer.write(&SampleOut { image_ext: &ext, image: &bytes, caption, meta: Some(&meta) })?;
        noisy_written += u64::from(noisy.contains(&i));
    }
    let (pattern, index) = writer.finish()?;
    Ok((pattern, index.end(), noisy_written))
}

/// Drops (and names) the pairs whose image cannot be read or decoded, so that the split and
/// the noise injection see only usable pairs. Decoding is the loader's own ([`decode`]), so
/// what packs is what trains.
fn keep_decodable(collected: &mut Collected, max_image_pixels: u64) {
    let mut problems = Vec::new();
    collected.pairs.retain(|pair| match std::fs::read(&pair.image) {
        Err(e) => {
            problems.push(format!("{}: image {} not readable ({e})", pair.origin, pair.image.display()));
            false
        }
        Ok(bytes) => match decode(&bytes, max_image_pixels) {
            Ok(_) => true,
            Err(e @ DataError::ImageTooLarge { .. }) => {
                problems.push(format!("{}: image {} skipped: {e}", pair.origin, pair.image.display()));
                false
            }
            Err(e) => {
                problems.push(format!("{}: image {} does not decode ({e})", pair.origin, pair.image.display()));
                false
            }
        },
    });
    for problem in problems {
        collected.skip(problem);
    }
}

fn extension(path: &Path) -> Option<String> {
    path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase())
}

/// Class labels (names, or 0-based indices) to class indices.
struct ClassIndex(HashMap<String, u32>);

impl ClassIndex {
    fn new(classes: &[String]) -> Self {
        ClassIndex(classes.iter().enumerate().map(|(i, c)| (c.clone(), i as u32)).collect())
    }

    fn get(&self, label: Option<&str>) -> Option<u32> {
        let label = label?.trim();
        self.0.get(label).copied().or_else(|| label.parse::<u32>().ok().filter(|&i| (i as usize) < self.0.len()))
    }
}

/// The pairs of one input, folder or CSV/TSV, in a stable order.
fn collect(input: &Path, opts: &PackOptions) -> Result<Collected> {
    if input.is_dir() {
        return Ok(collect_folder(input));
    }
    let delimiter = match extension(input).as_deref() {
        Some("tsv") | Some("tab") => b'\t',
        Some("csv") => b',',
        _ => {
            return Err(DataError::Input {
                path: input.to_path_buf(),
                reason: "expected a folder, a .csv or a .tsv file".into(),
            });
        }
    };
    collect_table(input, delimiter, opts)
}

/// Every image under `root` (symbolic links followed; loops are skipped, not followed
/// forever) with its sidecar `.txt` caption; the label is the image's sub-folder name.
fn collect_folder(root: &Path) -> Collected {
    let mut collected = Collected::default();
    let mut images = Vec::new();
    for entry in walkdir::WalkDir::new(root).follow_links(true).sort_by_file_name() {
        match entry {
            Ok(e) if e.file_type().is_file() => {
                if extension(e.path()).is_some_and(|x| IMAGE_EXTS.contains(&x.as_str())) {
                    images.push(e.into_path());
                }
            }
            Ok(_) => {}
            Err(e) => collected.skip(format!("{}: {e}", e.path().unwrap_or(root).display())),
        }
    }
    for image in images {
        let sidecar = image.with_extension("txt");
        let caption = match std::fs::read(&sidecar) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) if !text.trim().is_empty() => text.trim().to_string(),
                Ok(_) => {
                    collected.skip(format!("{}: empty caption", sidecar.display()));
                    continue;
                }
                Err(_) => {
                    collected.skip(format!("{}: caption is not UTF-8", sidecar.display()));
                    continue;
                }
            },
            Err(_) => {
                collected.skip(format!("{}: no caption file {}", image.display(), sidecar.display()));
                continue;
            }
        };
        let label = image
            .parent()
            .filter(|dir| *dir != root)
            .and_then(|dir| dir.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        let origin = sidecar.display().to_string();
        collected.pairs.push(Pair { image, caption, label, origin });
    }
    collected
}

const IMAGE_COLUMNS: [&str; 5] = ["image", "filepath", "path", "file", "filename"];
const CAPTION_COLUMNS: [&str; 3] = ["caption", "text", "title"];

/// Rows of a CSV/TSV (quoted fields may hold delimiters, quotes and newlines).
fn collect_table(path: &Path, delimiter: u8, opts: &PackOptions) -> Result<Collected> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_path(path)
        .map_err(|e| csv_error(path, e))?;
    let mut rows = reader.byte_records();
    let first = match rows.next() {
        Some(row) => row.map_err(|e| csv_error(path, e))?,
        None => return Ok(Collected::default()),
    };
    let columns = Columns::find(&first, opts).map_err(|reason| DataError::Input { path: path.into(), reason })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut collected = Collected::default();
    let header_row = columns.header;
    let first = (!header_row).then_some(Ok(first));
    for row in first.into_iter().chain(rows) {
        let row = row.map_err(|e| csv_error(path, e))?;
        let line = row.position().map_or(0, |p| p.line());
        match columns.pair(&row, base, format!("{}:{line}", path.display())) {
            Ok(pair) => collected.pairs.push(pair),
            Err(reason) => collected.skip(format!("{}:{line}: {reason}", path.display())),
        }
    }
    Ok(collected)
}

fn csv_error(path: &Path, e: csv::Error) -> DataError {
    let line = e.position().map_or(String::new(), |p| format!(":{}", p.line()));
    DataError::Input { path: PathBuf::from(format!("{}{line}", path.display())), reason: e.to_string() }
}

/// Which columns hold what, and whether the first row is a header.
struct Columns {
    header: bool,
    image: usize,
    caption: usize,
    label: Option<usize>,
}

impl Columns {
    fn find(first: &csv::ByteRecord, opts: &PackOptions) -> std::result::Result<Self, String> {
        let names: Vec<String> = first.iter().map(|f| String::from_utf8_lossy(f).trim().to_ascii_lowercase()).collect();
        let position = |wanted: &str| names.iter().position(|n| n == &wanted.to_ascii_lowercase());
        let named = |given: &Option<String>, defaults: &[&str]| match given {
            Some(name) => position(name).map(Some).ok_or_else(|| format!("no column named '{name}' in the header row")),
            None => Ok(defaults.iter().find_map(|d| position(d))),
        };
        let image = named(&opts.image_column, &IMAGE_COLUMNS)?;
        let caption = named(&opts.caption_column, &CAPTION_COLUMNS)?;
        let label = match &opts.label_column {
            Some(_) => named(&opts.label_column, &[])?,
            None => named(&None, &["label", "class"])?,
        };
        match (image, caption) {
            (Some(image), Some(caption)) => Ok(Columns { header: true, image, caption, label }),
            (None, None) if opts.image_column.is_none() && opts.caption_column.is_none() => {
                Ok(Columns { header: false, image: 0, caption: 1, label: None })
            }
            _ => Err(format!(
                "the header row names an image column ({}) and a caption column ({}), or the file has no header \
                 and the first two columns are image and caption; set --image-column / --caption-column",
                IMAGE_COLUMNS.join(", "),
                CAPTION_COLUMNS.join(", ")
            )),
        }
    }

    fn pair(&self, row: &csv::ByteRecord, base: &Path, origin: String) -> std::result::Result<Pair, String> {
        let text = |column: usize, what: &str| -> std::result::Result<String, String> {
            let bytes = row.get(column).ok_or_else(|| format!("no {what} column ({} fields)", row.len()))?;
            String::from_utf8(bytes.to_vec()).map(|s| s.trim().to_string()).map_err(|_| format!("{what} is not UTF-8"))
        };
        let image = text(self.image, "image path")?;
        let caption = text(self.caption, "caption")?;
        if image.is_empty() {
            return Err("empty image path".into());
        }
        if caption.is_empty() {
            return Err("empty caption".into());
        }
        let label = self.label.map(|c| text(c, "label")).transpose()?;
        let image = Path::new(&image);
        let image = if image.is_absolute() { image.to_path_buf() } else { base.join(image) };
        Ok(Pair { image, caption, label, origin })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::ShardSet;

    fn png(seed: u8) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(5, 4, image::Rgb([seed, 2, 3]));
        let mut c = std::io::Cursor::new(Vec::new());
        img.write_to(&mut c, image::ImageFormat::Png).unwrap();
        c.into_inner()
    }

    fn captions(dir: &Path, pattern: &str) -> Vec<(String, SampleMeta)> {
        let set = ShardSet::from_pattern(&dir.join(pattern).to_string_lossy()).unwrap();
        let mut out = Vec::new();
        for shard in &set.shards {
            crate::shard::ShardReader::open(&shard.path)
                .unwrap()
                .for_each(|s| out.push((s.caption.unwrap_or_default(), s.meta.unwrap_or_default())));
        }
        out
    }

    #[test]
    fn a_folder_becomes_a_dataset_with_a_clean_held_out_split_and_named_problems() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        for class in ["cat", "dog"] {
            std::fs::create_dir_all(src.join(class)).unwrap();
        }
        for i in 0..10u8 {
            let dir = src.join(if i % 2 == 0 { "cat" } else { "dog" });
            std::fs::write(dir.join(format!("im{i}.png")), png(i)).unwrap();
            std::fs::write(dir.join(format!("im{i}.txt")), format!("caption number {i}")).unwrap();
        }
        std::fs::write(src.join("cat/bad.jpg"), b"garbage").unwrap();
        std::fs::write(src.join("cat/bad.txt"), "a corrupt one").unwrap();
        std::fs::write(src.join("dog/latin1.png"), png(99)).unwrap();
        std::fs::write(src.join("dog/latin1.txt"), b"caf\xe9").unwrap();
        std::fs::write(d.path().join("classes.txt"), "cat\ndog\n").unwrap();
        let mut opts = PackOptions::new(&src, d.path().join("mine"));
        opts.test_split = TestSplit::Count(3);
        opts.noise_rate = 0.5;
        opts.classes = Some(d.path().join("classes.txt"));
        opts.shard_size = 4;
        let report = pack(&opts).unwrap();
        let m = &report.manifest;
        assert_eq!((m.train_size, m.test_size, m.noisy_count, report.skipped), (7, 3, 4, 2));
        assert_eq!((m.class_names.len(), m.templates[0].as_str(), m.name.as_str()), (2, "a photo of a {}.", "mine"));
        assert!(report.problems.iter().any(|p| p.contains("bad.jpg does not decode")), "{:?}", report.problems);
        assert!(report.problems.iter().any(|p| p.contains("latin1.txt: caption is not UTF-8")));
        let out = d.path().join("mine");
        assert_eq!(DatasetManifest::load(&out).unwrap(), *m);
        let test = captions(&out, &m.test);
        assert!(test.iter().all(|(_, meta)| meta.noisy.is_none()), "the held-out split stays clean");
        let train = captions(&out, &m.train);
        assert_eq!(train.iter().filter(|(_, meta)| meta.noisy == Some(true)).count(), 4);
        for (caption, meta) in train.iter().chain(&test).filter(|(_, meta)| meta.noisy != Some(true)) {
            let i: u8 = caption.trim_start_matches("caption number ").parse().unwrap();
            assert_eq!(meta.class, Some(u32::from(i % 2)), "the sub-folder is the class");
        }
        let again = pack(&opts).unwrap_err().to_string();
        assert!(again.contains("already exists"), "{again}");
        let hidden = std::fs::read_dir(d.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'));
        assert_eq!(hidden.count(), 0, "no temporary folder left");
    }

    #[test]
    fn a_csv_with_awkward_fields_and_its_own_held_out_file() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..4u8 {
            std::fs::write(d.path().join(format!("im{i}.png")), png(i)).unwrap();
        }
        let rows = "id,caption,filepath\n\
                    1,\"zero, with a comma and \"\"quotes\"\"\",im0.png\n\
                    2,\"one\nover two lines\",im1.png\n\
                    3,,im2.png\n\
                    4,missing,nope.png\n\
                    5,trois fenêtres,im3.png\n";
        std::fs::write(d.path().join("train.csv"), rows).unwrap();
        std::fs::write(d.path().join("test.tsv"), "im2.png\ta held-out caption\n").unwrap();
        let mut opts = PackOptions::new(d.path().join("train.csv"), d.path().join("out"));
        opts.test_input = Some(d.path().join("test.tsv"));
        opts.test_split = TestSplit::Input;
        let report = pack(&opts).unwrap();
        assert_eq!((report.manifest.train_size, report.manifest.test_size, report.skipped), (3, 1, 2));
        // Line numbers count the header (line 1) and the caption that spans lines 3–4.
        assert!(report.problems.iter().any(|p| p.ends_with("train.csv:5: empty caption")), "{:?}", report.problems);
        assert!(
            report.problems.iter().any(|p| p.contains("train.csv:6: image") && p.contains("nope.png not readable"))
        );
        let train: Vec<String> =
            captions(&d.path().join("out"), &report.manifest.train).into_iter().map(|c| c.0).collect();
        assert_eq!(train, ["zero, with a comma and \"quotes\"", "one\nover two lines", "trois fenêtres"]);

        let mut named = PackOptions::new(d.path().join("train.csv"), d.path().join("out2"));
        named.caption_column = Some("description".into());
        let err = pack(&named).unwrap_err().to_string();
        assert!(err.contains("no column named 'description'"), "{err}");
    }
}
