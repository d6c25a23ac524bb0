//! WebDataset tar shards: reading, writing and the stable global index.
//!
//! A sample is the run of consecutive tar members sharing one key (the member path up to the
//! first `.` of its file name): `{key}.jpg|jpeg|png|webp`, `{key}.txt`, optional `{key}.json`.
//! Global dataset indices come from `{name}.index.json` beside the shards, which lists every
//! shard's file name, sample count and first index. The selection state is keyed by these
//! indices, so they must never depend on shuffling, threads or ranks.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::brace::expand_braces;
use crate::error::{DataError, Result};

/// Image extensions recognised as the sample's image member.
pub const IMAGE_EXTS: [&str; 5] = ["jpg", "jpeg", "png", "webp", "gif"];

/// Per-sample metadata stored as `{key}.json`. Unknown fields are kept in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SampleMeta {
    /// Ground truth: the caption was swapped by noise injection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noisy: Option<bool>,
    /// The caption before noise injection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_caption: Option<String>,
    /// Class label for zero-shot evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<u32>,
    /// Any other fields, kept as they were.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl SampleMeta {
    /// Whether no field is set (nothing worth writing as `{key}.json`).
    pub fn is_empty(&self) -> bool {
        self.noisy.is_none() && self.original_caption.is_none() && self.class.is_none() && self.extra.is_empty()
    }
}

/// One sample as stored in a shard, before decoding.
#[derive(Debug, Clone, Default)]
pub struct RawSample {
    /// The members' shared key (path up to the first `.` of the file name).
    pub key: String,
    /// Lower-case extension and bytes of the image member.
    pub image: Option<(String, Vec<u8>)>,
    /// Caption text (lossy UTF-8, trimmed).
    pub caption: Option<String>,
    /// Parsed `{key}.json`; `None` when absent or unparsable.
    pub meta: Option<SampleMeta>,
    /// A member of this sample ended before its declared size (truncated shard).
    pub truncated: bool,
}

/// Splits a member path into (key, extension): the key runs up to the first `.` of the file name.
fn split_key(path: &str) -> Option<(&str, &str)> {
    let name_start = path.rfind('/').map_or(0, |i| i + 1);
    let dot = path[name_start..].find('.')? + name_start;
    Some((&path[..dot], &path[dot + 1..]))
}

/// Streams the samples of one tar shard in stored order. A truncated member ends the stream
/// with one last sample flagged `truncated`.
pub struct ShardReader<R: Read> {
    archive: tar::Archive<R>,
}

impl ShardReader<BufReader<File>> {
    /// Opens the shard file at `path`, buffered.
    pub fn open(path: &Path) -> Result<Self> {
        let f = File::open(path).map_err(|e| DataError::io(path, e))?;
        Ok(Self::new(BufReader::with_capacity(1 << 20, f)))
    }
}

impl<R: Read> ShardReader<R> {
    /// Reads a tar stream from `reader`.
    pub fn new(reader: R) -> Self {
        Self { archive: tar::Archive::new(reader) }
    }

    /// Calls `f` for every sample in order; a sample without `{key}.txt` takes its caption from
    /// the `caption` field of `{key}.json`. Reading stops after a truncated or unreadable
    /// member; that sample is passed with `truncated = true`, since nothing after it can be
    /// trusted.
    pub fn for_each(&mut self, mut f: impl FnMut(RawSample)) {
        let mut f = |mut sample: RawSample| {
            caption_from_metadata(&mut sample);
            f(sample)
        };
        let mut cur: Option<RawSample> = None;
        let entries = match self.archive.entries() {
            Ok(e) => e,
            Err(_) => return,
        };
        for entry in entries {
            let mut entry = match entry {
                Ok(e) => e,
                Err(_) => {
                    // A broken header means the shard is cut: flag what we had.
                    let mut s = cur.take().unwrap_or_default();
                    s.truncated = true;
                    f(s);
                    return;
                }
            };
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = match entry.path() {
                Ok(p) => p.to_string_lossy().into_owned(),
                Err(_) => continue,
            };
            let Some((key, ext)) = split_key(&path) else {
                continue;
            };
            let (key, ext) = (key.to_string(), ext.to_ascii_lowercase());
            if cur.as_ref().is_some_and(|c| c.key != key)
                && let Some(done) = cur.take()
            {
                f(done);
            }
            let sample = cur.get_or_insert_with(|| RawSample { key: key.clone(), ..Default::default() });
            let size = entry.header().size().unwrap_or(0);
            let mut data = Vec::with_capacity(size.min(64 << 20) as usize);
            let ok = entry.read_to_end(&mut data).is_ok() && data.len() as u64 == size;
            if !ok {
                sample.truncated = true;
                if let Some(done) = cur.take() {
                    f(done);
                }
                return;
            }
            match ext.as_str() {
                e if IMAGE_EXTS.contains(&e) => sample.image = Some((ext, data)),
                "txt" => {
                    sample.caption = Some(String::from_utf8_lossy(&data).trim().to_string());
                }
                // Unparsable metadata is dropped rather than fatal: the pair is still usable.
                "json" => sample.meta = serde_json::from_slice(&data).ok(),
                _ => {}
            }
        }
        if let Some(done) = cur.take() {
            f(done);
        }
    }

    /// Number of samples (keys) in the shard, counting a final truncated one.
    pub fn count(&mut self) -> u64 {
        let mut n = 0;
        self.for_each(|_| n += 1);
        n
    }
}

/// img2dataset writes no `{key}.txt` when asked for a JSON caption: the caption is then the
/// `caption` field of `{key}.json`.
fn caption_from_metadata(sample: &mut RawSample) {
    if sample.caption.is_none()
        && let Some(caption) = sample.meta.as_ref().and_then(|m| m.extra.get("caption")).and_then(|c| c.as_str())
    {
        sample.caption = Some(caption.trim().to_string());
    }
}

/// One line of the index file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// File name of the shard (no directory), so the dataset can be moved.
    pub shard: String,
    /// Samples (keys) in the shard.
    pub samples: u64,
    /// Global index of the shard's first sample; its samples take consecutive indices.
    pub first_index: u64,
}

/// Contents of `{name}.index.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardIndex {
    /// Format version (currently 1).
    pub version: u32,
    /// Every indexed shard, in the order they were added.
    pub shards: Vec<ShardEntry>,
}

impl ShardIndex {
    /// Reads an index file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let idx: ShardIndex =
            serde_json::from_str(&text).map_err(|e| DataError::json(path.display().to_string(), e))?;
        Ok(idx)
    }

    /// Writes atomically (temp file + rename) so a crash never leaves a half index.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| DataError::json("index", e))?;
        write_atomic(path, text.as_bytes())
    }

    /// One past the largest index in use.
    pub fn end(&self) -> u64 {
        self.shards.iter().map(|s| s.first_index + s.samples).max().unwrap_or(0)
    }
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    dissect_io::write_atomic(path, bytes).map_err(|e| DataError::io(path, e))
}

/// Index-file name for a set of shard file names: their common prefix without trailing
/// digits and separators (`train-0000.tar`, `train-0001.tar` → `train`).
pub fn index_name(shard_names: &[String]) -> String {
    let stems: Vec<&str> = shard_names.iter().map(|n| n.strip_suffix(".tar").unwrap_or(n)).collect();
    let mut prefix: &str = stems.first().copied().unwrap_or("");
    for s in &stems[1.min(stems.len())..] {
        let common = prefix
            .char_indices()
            .zip(s.chars())
            .take_while(|((_, a), b)| a == b)
            .last()
            .map_or(0, |((i, c), _)| i + c.len_utf8());
        prefix = &prefix[..common];
    }
    let trimmed = prefix.trim_end_matches(|c: char| c.is_ascii_digit() || "-_.".contains(c));
    if trimmed.is_empty() { "shards".to_string() } else { trimmed.to_string() }
}

/// A shard file with its place in the global index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// Path of the shard file.
    pub path: PathBuf,
    /// Samples in the shard, from the index.
    pub samples: u64,
    /// Global index of the shard's first sample.
    pub first_index: u64,
}

/// An ordered set of shards with stable global indices.
#[derive(Debug, Clone)]
pub struct ShardSet {
    /// The shards, in the order they were listed.
    pub shards: Vec<Shard>,
    /// The index file the global indices come from (in the first shard's directory).
    pub index_path: PathBuf,
}

impl ShardSet {
    /// Opens shards from a brace pattern (`data/train-{0000..0575}.tar`); several patterns are
    /// joined with `::`, as open_clip writes them. Nothing splits on whitespace, so paths with
    /// spaces work.
    pub fn from_pattern(pattern: &str) -> Result<Self> {
        let mut paths = Vec::new();
        for p in pattern.split("::").map(str::trim).filter(|p| !p.is_empty()) {
            paths.extend(expand_braces(p)?.into_iter().map(PathBuf::from));
        }
        if paths.is_empty() {
            return Err(DataError::NoShards(pattern.to_string()));
        }
        Self::from_paths(&paths)
    }

    /// Opens an explicit list of shards. Indices come from the index file in the first shard's
    /// directory; shards it does not list are counted and appended to it (written back when
    /// the directory is writable), so indices already handed out never move.
    pub fn from_paths(paths: &[PathBuf]) -> Result<Self> {
        let first = paths.first().ok_or_else(|| DataError::NoShards("(empty list)".into()))?;
        let names: Vec<String> = paths
            .iter()
            .map(|p| {
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .ok_or_else(|| DataError::Invalid(format!("{} is not a file", p.display())))
            })
            .collect::<Result<_>>()?;
        let mut seen = std::collections::HashSet::new();
        for n in &names {
            if !seen.insert(n) {
                return Err(DataError::Invalid(format!("shard name {n} appears twice")));
            }
        }
        let dir = first.parent().map(Path::to_path_buf).unwrap_or_default();
        let index_path = dir.join(format!("{}.index.json", index_name(&names)));
        let mut index = if index_path.exists() {
            ShardIndex::load(&index_path)?
        } else {
            ShardIndex { version: 1, shards: Vec::new() }
        };
        let known: HashMap<String, ShardEntry> = index.shards.iter().map(|e| (e.shard.clone(), e.clone())).collect();
        let mut changed = false;
        let mut shards = Vec::with_capacity(paths.len());
        for (path, name) in paths.iter().zip(&names) {
            let entry = match known.get(name) {
                Some(e) => e.clone(),
                None => {
                    if !path.exists() {
                        return Err(DataError::io(
                            path,
                            std::io::Error::new(std::io::ErrorKind::NotFound, "shard not found"),
                        ));
                    }
                    let samples = ShardReader::open(path)?.count();
                    let e = ShardEntry { shard: name.clone(), samples, first_index: index.end() };
                    index.shards.push(e.clone());
                    changed = true;
                    e
                }
            };
            shards.push(Shard { path: path.clone(), samples: entry.samples, first_index: entry.first_index });
        }
        if changed {
            // Read-only dataset directories still work; indices are then recomputed each time,
            // which is stable because they follow the listed order.
            let _ = index.save(&index_path);
        }
        Ok(Self { shards, index_path })
    }

    /// Total number of samples (including ones that may later fail to decode).
    pub fn num_samples(&self) -> u64 {
        self.shards.iter().map(|s| s.samples).sum()
    }
}

/// Writes samples into numbered shards `{name}-{000000}.tar` and the index file.
pub struct ShardWriter {
    dir: PathBuf,
    name: String,
    max_per_shard: u64,
    current: Option<(tar::Builder<dissect_io::AtomicFile>, PathBuf)>,
    index: ShardIndex,
    next_index: u64,
}

/// A sample to write. The key is derived from the global index.
#[derive(Debug, Clone)]
pub struct SampleOut<'a> {
    /// Image file extension (`jpg`, `png`, …) and encoded bytes.
    pub image_ext: &'a str,
    /// Encoded image bytes, written unchanged.
    pub image: &'a [u8],
    /// Caption text.
    pub caption: &'a str,
    /// Metadata, written as `{key}.json` unless `None` or empty.
    pub meta: Option<&'a SampleMeta>,
}

/// Number of digits of shard numbers in written file names.
const SHARD_DIGITS: usize = 6;

impl ShardWriter {
    /// A writer of shards `{name}-NNNNNN.tar` in `dir` (created if missing), at most
    /// `max_per_shard` (> 0) samples each. Global indices start at 0.
    pub fn new(dir: impl Into<PathBuf>, name: &str, max_per_shard: u64) -> Result<Self> {
        if max_per_shard == 0 {
            return Err(DataError::Invalid("max samples per shard must be > 0".into()));
        }
        if name.is_empty() || name.contains(['/', '{', '}']) {
            return Err(DataError::Invalid(format!("bad shard name `{name}`")));
        }
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
        Ok(Self {
            dir,
            name: name.to_string(),
            max_per_shard,
            current: None,
            index: ShardIndex { version: 1, shards: Vec::new() },
            next_index: 0,
        })
    }

    fn shard_file(&self, n: usize) -> String {
        format!("{}-{n:0SHARD_DIGITS$}.tar", self.name)
    }

    /// Appends one sample and returns its global index.
    pub fn write(&mut self, s: &SampleOut<'_>) -> Result<u64> {
        let need_new = match self.index.shards.last() {
            None => true,
            Some(last) => last.samples >= self.max_per_shard,
        };
        if need_new {
            self.close_current()?;
            let file = self.shard_file(self.index.shards.len());
            let path = self.dir.join(&file);
            // A shard appears under its name only once complete (see `close_current`).
            let f = dissect_io::AtomicFile::create(&path).map_err(|e| DataError::io(&path, e))?;
            self.current = Some((tar::Builder::new(f), path));
            self.index.shards.push(ShardEntry { shard: file, samples: 0, first_index: self.next_index });
        }
        let idx = self.next_index;
        let key = format!("{idx:09}");
        let meta_bytes = match s.meta {
            Some(m) if !m.is_empty() => Some(serde_json::to_vec(m).map_err(|e| DataError::json("metadata", e))?),
            _ => None,
        };
        let (builder, path) =
            self.current.as_mut().ok_or_else(|| DataError::Invalid("writer already finished".into()))?;
        let ext = s.image_ext.to_ascii_lowercase();
        let mut members: Vec<(String, &[u8])> =
            vec![(format!("{key}.{ext}"), s.image), (format!("{key}.txt"), s.caption.as_bytes())];
        if let Some(m) = &meta_bytes {
            members.push((format!("{key}.json"), m));
        }
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0); // Fixed mtime keeps shards byte-identical across runs.
            h.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut h, &name, data).map_err(|e| DataError::io(&*path, e))?;
        }
        if let Some(last) = self.index.shards.last_mut() {
            last.samples += 1;
        }
        self.next_index += 1;
        Ok(idx)
    }

    fn close_current(&mut self) -> Result<()> {
        if let Some((builder, path)) = self.current.take() {
            let file = builder.into_inner().map_err(|e| DataError::io(&path, e))?;
            file.commit().map_err(|e| DataError::io(&path, e))?;
        }
        Ok(())
    }

    /// Closes the last shard, writes `{name}.index.json` and returns the brace pattern of the
    /// written shards (relative file names, e.g. `train-{000000..000003}.tar`).
    pub fn finish(mut self) -> Result<(String, ShardIndex)> {
        self.close_current()?;
        let index_path = self.dir.join(format!("{}.index.json", self.name));
        self.index.save(&index_path)?;
        let n = self.index.shards.len();
        let pattern = match n {
            0 => String::new(),
            1 => self.shard_file(0),
            _ => format!("{}-{{{:0w$}..{:0w$}}}.tar", self.name, 0, n - 1, w = SHARD_DIGITS),
        };
        Ok((pattern, self.index))
    }

    /// The directory the shards are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shard as img2dataset writes it with JSON captions, in a folder whose name has spaces,
    /// opened with open_clip's `::` between patterns.
    #[test]
    fn json_captions_spaces_and_double_colon_patterns() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("my shards");
        std::fs::create_dir(&dir).unwrap();
        let tar_with = |name: &str, members: &[(&str, &[u8])]| {
            let mut b = tar::Builder::new(Vec::new());
            for (member, data) in members {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                b.append_data(&mut h, member, *data).unwrap();
            }
            std::fs::write(dir.join(name), b.into_inner().unwrap()).unwrap();
        };
        tar_with("a-0.tar", &[("000.jpg", b"x"), ("000.json", br#"{"caption": " from json ", "url": "u"}"#)]);
        tar_with("b-0.tar", &[("001.jpg", b"y"), ("001.txt", b"from txt"), ("001.json", br#"{"caption": "ignored"}"#)]);
        let pattern = format!("{}::{}", dir.join("a-0.tar").display(), dir.join("b-0.tar").display());
        let set = ShardSet::from_pattern(&pattern).unwrap();
        assert_eq!((set.shards.len(), set.num_samples()), (2, 2));
        let mut captions = Vec::new();
        for shard in &set.shards {
            ShardReader::open(&shard.path).unwrap().for_each(|s| captions.push(s.caption.unwrap_or_default()));
        }
        assert_eq!(captions, ["from json", "from txt"]);
    }

    fn meta(i: u32) -> SampleMeta {
        let mut m = SampleMeta {
            noisy: Some(i.is_multiple_of(2)),
            original_caption: Some(format!("orig {i}")),
            class: Some(i),
            ..Default::default()
        };
        m.extra.insert("source".into(), serde_json::json!({"url": "x"}));
        m
    }

    #[test]
    fn write_read_round_trip_with_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ShardWriter::new(dir.path(), "train", 3).unwrap();
        for i in 0..7u32 {
            let m = meta(i);
            let cap = format!("caption {i}");
            let img = vec![i as u8; 10];
            let idx = w.write(&SampleOut { image_ext: "png", image: &img, caption: &cap, meta: Some(&m) }).unwrap();
            assert_eq!(idx, i as u64);
        }
        let (pattern, index) = w.finish().unwrap();
        assert_eq!(pattern, "train-{000000..000002}.tar");
        assert_eq!(index.shards.iter().map(|s| s.samples).collect::<Vec<_>>(), [3, 3, 1]);

        let full = format!("{}/{pattern}", dir.path().display());
        let set = ShardSet::from_pattern(&full).unwrap();
        assert_eq!(set.num_samples(), 7);
        assert_eq!(set.index_path, dir.path().join("train.index.json"));
        assert_eq!(set.shards[2].first_index, 6);
        let mut got = Vec::new();
        for s in &set.shards {
            ShardReader::open(&s.path).unwrap().for_each(|r| got.push(r));
        }
        assert_eq!(got.len(), 7);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.key, format!("{i:09}"));
            assert_eq!(r.caption.as_deref(), Some(format!("caption {i}").as_str()));
            assert_eq!(r.image.as_ref().unwrap().1, vec![i as u8; 10]);
            assert_eq!(r.meta.as_ref().unwrap(), &meta(i as u32));
            assert!(!r.truncated);
        }
        // A subset keeps the indices the full set gave it.
        let sub = ShardSet::from_paths(&[dir.path().join("train-000002.tar")]).unwrap();
        assert_eq!(sub.shards[0].first_index, 6);
    }

    #[test]
    fn index_written_on_first_use_for_foreign_shards() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b", "a"] {
            let mut w = ShardWriter::new(dir.path().join(name), "x", 10).unwrap();
            for _ in 0..4 {
                w.write(&SampleOut { image_ext: "jpg", image: b"x", caption: "c", meta: None }).unwrap();
            }
            w.finish().unwrap();
            std::fs::rename(dir.path().join(name).join("x-000000.tar"), dir.path().join(format!("{name}.tar")))
                .unwrap();
        }
        let pat = format!("{}/{{b,a}}.tar", dir.path().display());
        let set = ShardSet::from_pattern(&pat).unwrap();
        assert_eq!(set.shards[1].first_index, 4);
        assert!(dir.path().join("shards.index.json").exists());
        // Reopened in a different order, indices stay with their shards.
        let set2 = ShardSet::from_pattern(&format!("{}/{{a,b}}.tar", dir.path().display())).unwrap();
        assert_eq!(set2.shards[0].first_index, 4);
        assert_eq!(set2.shards[1].first_index, 0);
    }

    #[test]
    fn index_names() {
        let n = |v: &[&str]| index_name(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(n(&["train-0000.tar", "train-0001.tar"]), "train");
        assert_eq!(n(&["a.tar", "b.tar"]), "shards");
        assert_eq!(n(&["cc3m_12.tar"]), "cc3m");
    }
}
