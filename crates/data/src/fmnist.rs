//! Fashion-MNIST from Debian's `dataset-fashion-mnist` package (IDX files, possibly gzipped).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// Where the Debian package installs the files.
pub const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// Overrides [`DEFAULT_DIR`], e.g. for a copy outside the package.
pub const DIR_ENV: &str = "DISSECT_FASHION_MNIST_DIR";

/// Zero-shot class names, in label order.
pub const CLASS_NAMES: [&str; 10] =
    ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"];
/// Caption synonyms per class (noun phrases without article).
pub const CLASS_WORDS: [&[&str]; 10] = [
    &["t-shirt", "top", "tee"],
    &["pair of trousers", "pair of pants"],
    &["pullover", "sweater", "jumper"],
    &["dress"],
    &["coat", "jacket"],
    &["sandal"],
    &["shirt", "button-up shirt"],
    &["sneaker", "running shoe"],
    &["bag", "handbag"],
    &["ankle boot", "boot"],
];
/// Caption templates; `{}` is a class word with its article.
pub const CAPTION_TEMPLATES: [&str; 8] = [
    "a photo of {}",
    "a black and white photo of {}",
    "a grayscale image of {}",
    "a low resolution photo of {}",
    "{} on a black background",
    "a picture of {}",
    "a product photo of {}",
    "a small image of {}",
];
/// Zero-shot prompt templates (`{}` is the class name).
pub const ZERO_SHOT_TEMPLATES: [&str; 4] =
    ["a photo of a {}.", "a black and white photo of a {}.", "a picture of a {}.", "a {}."];

/// One split: `n` images of `rows × cols` u8 pixels and their labels.
#[derive(Debug, Clone)]
pub struct IdxSplit {
    /// Image height in pixels.
    pub rows: usize,
    /// Image width in pixels.
    pub cols: usize,
    /// `n · rows · cols` grayscale pixels, image-major, row-major within an image.
    pub images: Vec<u8>,
    /// Class label of each image, an index into [`CLASS_NAMES`].
    pub labels: Vec<u8>,
}

impl IdxSplit {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// Pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.rows * self.cols;
        &self.images[i * n..(i + 1) * n]
    }
}

/// Directory the files are read from: [`DIR_ENV`] if set, else [`DEFAULT_DIR`].
pub fn data_dir() -> PathBuf {
    std::env::var_os(DIR_ENV).map_or_else(|| PathBuf::from(DEFAULT_DIR), PathBuf::from)
}

/// Reads `{stem}` or `{stem}.gz` from `dir`.
fn read_maybe_gz(dir: &Path, stem: &str) -> Result<Vec<u8>> {
    let plain = dir.join(stem);
    if plain.exists() {
        return std::fs::read(&plain).map_err(|e| DataError::io(&plain, e));
    }
    let gz = dir.join(format!("{stem}.gz"));
    if !gz.exists() {
        return Err(DataError::FashionMnistMissing(format!("{} not found", gz.display())));
    }
    let f = std::fs::File::open(&gz).map_err(|e| DataError::io(&gz, e))?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(f).read_to_end(&mut out).map_err(|e| DataError::io(&gz, e))?;
    Ok(out)
}

fn be_u32(b: &[u8], at: usize) -> Option<usize> {
    b.get(at..at + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

fn bad(what: &str) -> DataError {
    DataError::Input { path: data_dir(), reason: format!("malformed IDX file: {what}") }
}

/// Parses an IDX image file (magic 0x803) and label file (magic 0x801).
pub fn parse_idx(images: &[u8], labels: &[u8]) -> Result<IdxSplit> {
    if be_u32(images, 0) != Some(0x803) || be_u32(labels, 0) != Some(0x801) {
        return Err(bad("wrong magic number"));
    }
    let n = be_u32(images, 4).ok_or_else(|| bad("short header"))?;
    let rows = be_u32(images, 8).ok_or_else(|| bad("short header"))?;
    let cols = be_u32(images, 12).ok_or_else(|| bad("short header"))?;
    let nl = be_u32(labels, 4).ok_or_else(|| bad("short header"))?;
    let need = n.checked_mul(rows * cols).ok_or_else(|| bad("size overflow"))?;
    if nl != n || images.len() < 16 + need || labels.len() < 8 + n {
        return Err(bad("sizes do not match"));
    }
    let labels = labels[8..8 + n].to_vec();
    if labels.iter().any(|&l| l as usize >= CLASS_NAMES.len()) {
        return Err(bad("label out of range"));
    }
    Ok(IdxSplit { rows, cols, images: images[16..16 + need].to_vec(), labels })
}

/// Loads the train (`train`) or test (`t10k`) split.
pub fn load_split(train: bool) -> Result<IdxSplit> {
    let dir = data_dir();
    let p = if train { "train" } else { "t10k" };
    let images = read_maybe_gz(&dir, &format!("{p}-images-idx3-ubyte"))?;
    let labels = read_maybe_gz(&dir, &format!("{p}-labels-idx1-ubyte"))?;
    parse_idx(&images, &labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_synthetic_idx() {
        let mut img = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3];
        img.extend(0..12u8);
        let lab = vec![0, 0, 8, 1, 0, 0, 0, 2, 9, 1];
        let s = parse_idx(&img, &lab).unwrap();
        assert_eq!((s.len(), s.rows, s.cols), (2, 2, 3));
        assert_eq!(s.image(1), &[6, 7, 8, 9, 10, 11]);
        assert!(parse_idx(&img[..20], &lab).is_err());
    }

    #[test]
    fn real_package_if_installed() {
        match load_split(false) {
            Ok(s) => {
                assert_eq!((s.len(), s.rows, s.cols), (10_000, 28, 28));
                assert!(s.labels.iter().all(|&l| l < 10));
            }
            Err(DataError::FashionMnistMissing(m)) => {
                eprintln!("SKIPPED: Fashion-MNIST not installed ({m}); apt-get install dataset-fashion-mnist");
            }
            Err(e) => panic!("{e}"),
        }
    }
}
