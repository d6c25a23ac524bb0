//! Per-visit selection records, streamed to CSV or a compact binary file for analysis.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::SelectError;

/// One sample's visit in one step: what the selector saw and what it decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VisitRecord {
    /// Epoch of the visit, 0-based.
    pub epoch: u32,
    /// Global training step of the visit, counted across epochs.
    pub step: u64,
    /// Stable dataset index.
    pub index: u64,
    /// CLIPScore of the current model (DISSect variants clamp it at 0); NaN when the
    /// strategy computed none.
    pub curr: f32,
    /// The history value the decision used: the warm-up score or the momentum history
    /// before this step's update; NaN when there was none.
    pub hist: f32,
    /// The value ranked on, higher = kept: the gap for DISSect, the loss for big-loss,
    /// minus the loss for small-loss, the (reference) score for the score strategies;
    /// NaN when the rows were drawn at random.
    pub rank_key: f32,
    /// Whether the row was kept for training.
    pub selected: bool,
}

impl VisitRecord {
    /// Header row of the CSV format; also the column order of each record line.
    pub const CSV_HEADER: &'static str = "epoch,step,index,curr,hist,rank_key,selected";
    /// Bytes per record in the binary format.
    pub const BINARY_LEN: usize = 36;

    fn to_bytes(self) -> [u8; Self::BINARY_LEN] {
        let mut b = [0u8; Self::BINARY_LEN];
        b[0..8].copy_from_slice(&self.step.to_le_bytes());
        b[8..16].copy_from_slice(&self.index.to_le_bytes());
        b[16..20].copy_from_slice(&self.epoch.to_le_bytes());
        b[20..24].copy_from_slice(&self.curr.to_le_bytes());
        b[24..28].copy_from_slice(&self.hist.to_le_bytes());
        b[28..32].copy_from_slice(&self.rank_key.to_le_bytes());
        b[32..36].copy_from_slice(&u32::from(self.selected).to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8; Self::BINARY_LEN]) -> Self {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or([0; 4]));
        VisitRecord {
            step: u64_at(0),
            index: u64_at(8),
            epoch: u32_at(16),
            curr: f32::from_bits(u32_at(20)),
            hist: f32::from_bits(u32_at(24)),
            rank_key: f32::from_bits(u32_at(28)),
            selected: u32_at(32) != 0,
        }
    }
}

const BINARY_MAGIC: [u8; 8] = *b"DSSVISIT";
const BINARY_VERSION: u32 = 1;
const BINARY_HEADER_LEN: usize = 16;

/// On-disk format of a record stream, chosen from the file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RecordFormat {
    /// Text, one record a line behind a header row (`.csv`).
    #[serde(rename = "csv")]
    Csv,
    /// Little-endian fixed-size records behind a 16-byte header (`.dsv`/`.bin`).
    #[serde(rename = "dsv")]
    Binary,
}

impl RecordFormat {
    /// The file extension a run's record file takes in this format.
    pub fn extension(self) -> &'static str {
        match self {
            RecordFormat::Csv => "csv",
            RecordFormat::Binary => "dsv",
        }
    }

    /// The format named by `path`'s extension: `.csv`, or `.dsv`/`.bin` for binary; any other
    /// extension is an error.
    pub fn from_path(path: &Path) -> Result<Self, SelectError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => Ok(RecordFormat::Csv),
            Some("dsv") | Some("bin") => Ok(RecordFormat::Binary),
            _ => Err(SelectError::bad_file(path, "record files must end in .csv, .dsv or .bin")),
        }
    }
}

/// Streams records to a file. Appending to an existing file of the same format
/// continues it (a resumed run), so one run keeps one record file.
pub struct RecordWriter {
    out: BufWriter<File>,
    format: RecordFormat,
    path: PathBuf,
    written: u64,
}

impl RecordWriter {
    /// Create (or truncate) `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, SelectError> {
        Self::open(path.as_ref(), false)
    }

    /// Open `path` for appending, creating it if missing.
    pub fn append(path: impl AsRef<Path>) -> Result<Self, SelectError> {
        Self::open(path.as_ref(), true)
    }

    fn open(path: &Path, append: bool) -> Result<Self, SelectError> {
        let format = RecordFormat::from_path(path)?;
        let existing = append && path.metadata().map(|m| m.len() > 0).unwrap_or(false);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)
            .map_err(|e| SelectError::io(path, e))?;
        let mut writer =
            RecordWriter { out: BufWriter::with_capacity(1 << 16, file), format, path: path.into(), written: 0 };
        if !existing {
            let head: Vec<u8> = match format {
                RecordFormat::Csv => format!("{}\n", VisitRecord::CSV_HEADER).into_bytes(),
                RecordFormat::Binary => {
                    let mut h = Vec::with_capacity(BINARY_HEADER_LEN);
                    h.extend_from_slice(&BINARY_MAGIC);
                    h.extend_from_slice(&BINARY_VERSION.to_le_bytes());
                    h.extend_from_slice(&(VisitRecord::BINARY_LEN as u32).to_le_bytes());
                    h
                }
            };
            writer.out.write_all(&head).map_err(|e| SelectError::io(path, e))?;
        }
        Ok(writer)
    }

    /// Append `records` to the file (buffered; see [`RecordWriter::flush`]).
    pub fn write(&mut self, records: &[VisitRecord]) -> Result<(), SelectError> {
        let result = match self.format {
            RecordFormat::Csv => records.iter().try_for_each(|r| {
                writeln!(
                    self.out,
                    "{},{},{},{},{},{},{}",
                    r.epoch,
                    r.step,
                    r.index,
                    r.curr,
                    r.hist,
                    r.rank_key,
                    u8::from(r.selected)
                )
            }),
            RecordFormat::Binary => records.iter().try_for_each(|r| self.out.write_all(&r.to_bytes())),
        };
        result.map_err(|e| SelectError::io(&self.path, e))?;
        self.written += records.len() as u64;
        Ok(())
    }

    /// Records written through this writer (not counting those already in an appended file).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Push buffered records to the OS (call at checkpoints so a crash loses little).
    pub fn flush(&mut self) -> Result<(), SelectError> {
        self.out.flush().map_err(|e| SelectError::io(&self.path, e))
    }
}

impl Drop for RecordWriter {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

/// Read every record of a CSV or binary record file. A partial last record (a crash
/// mid-write) is dropped; anything else malformed is an error naming the line or offset.
pub fn read_records(path: impl AsRef<Path>) -> Result<Vec<VisitRecord>, SelectError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| SelectError::io(path, e))?;
    let mut reader = BufReader::new(file);
    match RecordFormat::from_path(path)? {
        RecordFormat::Binary => {
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes).map_err(|e| SelectError::io(path, e))?;
            if bytes.len() < BINARY_HEADER_LEN || bytes[0..8] != BINARY_MAGIC {
                return Err(SelectError::bad_file(path, "not a dissect visit-record file"));
            }
            let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or([0; 4]));
            let len = u32::from_le_bytes(bytes[12..16].try_into().unwrap_or([0; 4])) as usize;
            if version != BINARY_VERSION || len != VisitRecord::BINARY_LEN {
                return Err(SelectError::bad_file(
                    path,
                    format!("unsupported record format v{version} ({len}-byte records)"),
                ));
            }
            Ok(bytes[BINARY_HEADER_LEN..]
                .chunks_exact(VisitRecord::BINARY_LEN)
                .map(|c| VisitRecord::from_bytes(c.try_into().unwrap_or(&[0; VisitRecord::BINARY_LEN])))
                .collect())
        }
        RecordFormat::Csv => {
            let mut records = Vec::new();
            let mut lines = reader.lines().enumerate().peekable();
            while let Some((number, line)) = lines.next() {
                let line = line.map_err(|e| SelectError::io(path, e))?;
                if number == 0 {
                    if line.trim() != VisitRecord::CSV_HEADER {
                        return Err(SelectError::bad_file(path, "not a dissect visit-record CSV (unexpected header)"));
                    }
                    continue;
                }
                let is_last = lines.peek().is_none();
                match parse_csv_record(&line) {
                    Some(record) => records.push(record),
                    None if is_last => break,
                    None => return Err(SelectError::bad_file(path, format!("line {}: malformed record", number + 1))),
                }
            }
            Ok(records)
        }
    }
}

fn parse_csv_record(line: &str) -> Option<VisitRecord> {
    let fields: Vec<&str> = line.split(',').collect();
    if fields.len() != 7 {
        return None;
    }
    Some(VisitRecord {
        epoch: fields[0].parse().ok()?,
        step: fields[1].parse().ok()?,
        index: fields[2].parse().ok()?,
        curr: fields[3].parse().ok()?,
        hist: fields[4].parse().ok()?,
        rank_key: fields[5].parse().ok()?,
        selected: match fields[6] {
            "1" => true,
            "0" => false,
            _ => return None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<VisitRecord> {
        (0..5)
            .map(|i| VisitRecord {
                epoch: 1,
                step: 10 + i,
                index: 1000 * i,
                curr: 0.5 + i as f32,
                hist: if i == 0 { f32::NAN } else { 1.25 },
                rank_key: -3.75,
                selected: i % 2 == 0,
            })
            .collect()
    }

    fn same(a: &[VisitRecord], b: &[VisitRecord]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.epoch == y.epoch
                    && x.step == y.step
                    && x.index == y.index
                    && x.curr.to_bits() == y.curr.to_bits()
                    && (x.hist.to_bits() == y.hist.to_bits() || (x.hist.is_nan() && y.hist.is_nan()))
                    && x.rank_key == y.rank_key
                    && x.selected == y.selected
            })
    }

    #[test]
    fn round_trip_both_formats_with_append() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["visits.csv", "visits.dsv"] {
            let path = dir.path().join(name);
            let records = sample();
            {
                let mut w = RecordWriter::create(&path).unwrap();
                w.write(&records[..3]).unwrap();
            }
            {
                let mut w = RecordWriter::append(&path).unwrap();
                w.write(&records[3..]).unwrap();
                assert_eq!(w.written(), 2);
            }
            assert!(same(&read_records(&path).unwrap(), &records), "{name}");
        }
    }

    #[test]
    fn partial_tail_is_dropped_and_garbage_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.dsv");
        RecordWriter::create(&path).unwrap().write(&sample()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
        assert_eq!(read_records(&path).unwrap().len(), 4);

        let csv = dir.path().join("v.csv");
        std::fs::write(
            &csv,
            format!("{}\n1,2,3,0.5,NaN,1,1\n1,2,x,0.5,NaN,1,1\n1,2,3,0.5,NaN,1,1\n", VisitRecord::CSV_HEADER),
        )
        .unwrap();
        let err = read_records(&csv).unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");

        let err = RecordWriter::create(dir.path().join("v.parquet")).err().unwrap().to_string();
        assert!(err.contains(".csv"), "{err}");
    }
}
