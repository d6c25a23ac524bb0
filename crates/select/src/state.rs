//! Per-sample score state, keyed by stable dataset index, in dense arrays.
//!
//! One 24-byte [`Slot`] per sample keeps every lookup to a single cache line and puts
//! 15 million samples (YFCC15M) at 360 MB. The same byte layout is used on disk and in
//! the memory-mapped form, so hundreds of millions of samples can live in a file.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use bytemuck::{Pod, Zeroable};
use memmap2::MmapMut;

use crate::SelectError;

/// Little-endian on disk; the layout is native, so big-endian hosts are refused at build time.
#[cfg(target_endian = "big")]
compile_error!("the score-state file format assumes a little-endian host");

const MAGIC: [u8; 8] = *b"DSSCORES";
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 64;
const SLOT_LEN: usize = std::mem::size_of::<Slot>();

/// Flag bits of [`Slot::flags`].
pub mod flags {
    /// The sample has been visited at least once.
    pub const SEEN: u32 = 1;
    /// `warm` holds a score (dissect-warmup).
    pub const HAS_WARM: u32 = 2;
    /// `hist` holds a score (dissect-momentum).
    pub const HAS_HIST: u32 = 4;
}

/// Everything the selector remembers about one sample.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct Slot {
    /// CLIPScore at the last warm-up visit (dissect-warmup).
    pub warm: f32,
    /// Momentum history of the CLIPScore (dissect-momentum).
    pub hist: f32,
    /// CLIPScore at the last visit (NaN if the strategy had none).
    pub last: f32,
    /// Visits in which the sample was kept for training.
    pub times_selected: u32,
    /// Epoch of the last visit, 0-based.
    pub last_epoch: u32,
    /// Bit set of [`flags`].
    pub flags: u32,
}

impl Slot {
    /// Whether the sample has been visited at least once.
    pub fn seen(&self) -> bool {
        self.flags & flags::SEEN != 0
    }
    /// The warm-up score, if one was stored.
    pub fn warm(&self) -> Option<f32> {
        (self.flags & flags::HAS_WARM != 0).then_some(self.warm)
    }
    /// The momentum history, if one was stored.
    pub fn hist(&self) -> Option<f32> {
        (self.flags & flags::HAS_HIST != 0).then_some(self.hist)
    }
}

enum Storage {
    Heap(Vec<Slot>),
    Mapped { map: MmapMut, path: PathBuf },
}

/// Dense score state for dataset indices `0..len`.
pub struct ScoreState {
    storage: Storage,
}

impl std::fmt::Debug for ScoreState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backing = match &self.storage {
            Storage::Heap(_) => "heap".to_string(),
            Storage::Mapped { path, .. } => format!("mapped {}", path.display()),
        };
        f.debug_struct("ScoreState").field("len", &self.len()).field("backing", &backing).finish()
    }
}

impl ScoreState {
    /// An empty state for `len` samples in memory.
    pub fn new(len: u64) -> Result<Self, SelectError> {
        let n = usize::try_from(len).map_err(|_| SelectError::TooLarge(len))?;
        let mut slots = Vec::new();
        slots.try_reserve_exact(n).map_err(|_| SelectError::TooLarge(len))?;
        slots.resize(n, Slot::zeroed());
        Ok(ScoreState { storage: Storage::Heap(slots) })
    }

    /// An empty state for `len` samples backed by a memory-mapped working file at `path`
    /// (created or truncated). Pages are written back by the OS; call [`ScoreState::save`]
    /// for a checksummed snapshot that a resumed run can trust.
    pub fn create_mapped(path: impl AsRef<Path>, len: u64) -> Result<Self, SelectError> {
        let path = path.as_ref();
        let bytes = (len as u128) * SLOT_LEN as u128 + HEADER_LEN as u128;
        let bytes = u64::try_from(bytes).map_err(|_| SelectError::TooLarge(len))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| SelectError::io(path, e))?;
        file.set_len(bytes).map_err(|e| SelectError::io(path, e))?;
        // SAFETY: the file was just created by us and is not shared with another process;
        // a mapping of a file truncated underneath us would fault, which we document.
        let mut map = unsafe { MmapMut::map_mut(&file) }.map_err(|e| SelectError::io(path, e))?;
        map[..HEADER_LEN].copy_from_slice(&header(len, 0));
        Ok(ScoreState { storage: Storage::Mapped { map, path: path.to_path_buf() } })
    }

    /// Copy a saved snapshot into a memory-mapped working file and map it.
    pub fn load_mapped(snapshot: impl AsRef<Path>, working: impl AsRef<Path>) -> Result<Self, SelectError> {
        let (snapshot, working) = (snapshot.as_ref(), working.as_ref());
        let len = read_and_check_header(snapshot)?.0;
        let mut state = ScoreState::create_mapped(working, len)?;
        read_slots_into(snapshot, state.slots_mut())?;
        Ok(state)
    }

    /// Number of samples (dataset indices `0..len`).
    pub fn len(&self) -> u64 {
        self.slots().len() as u64
    }

    /// Whether the state holds no samples.
    pub fn is_empty(&self) -> bool {
        self.slots().is_empty()
    }

    /// Whether the state lives in a memory-mapped working file rather than on the heap.
    pub fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped { .. })
    }

    /// Every sample's slot, indexed by dataset index.
    pub fn slots(&self) -> &[Slot] {
        match &self.storage {
            Storage::Heap(slots) => slots,
            Storage::Mapped { map, .. } => bytemuck::cast_slice(&map[HEADER_LEN..]),
        }
    }

    /// Every sample's slot, mutably, indexed by dataset index.
    pub fn slots_mut(&mut self) -> &mut [Slot] {
        match &mut self.storage {
            Storage::Heap(slots) => slots,
            Storage::Mapped { map, .. } => bytemuck::cast_slice_mut(&mut map[HEADER_LEN..]),
        }
    }

    /// The slot of dataset index `index`, or `None` if it is out of range.
    pub fn get(&self, index: u64) -> Option<&Slot> {
        usize::try_from(index).ok().and_then(|i| self.slots().get(i))
    }

    /// Bytes of sample state (excluding the file header).
    pub fn state_bytes(&self) -> u64 {
        self.len() * SLOT_LEN as u64
    }

    /// Number of samples visited at least once.
    pub fn seen_count(&self) -> u64 {
        self.slots().iter().filter(|s| s.seen()).count() as u64
    }

    /// Flush a mapped working file to disk (no-op in memory).
    pub fn flush(&self) -> Result<(), SelectError> {
        if let Storage::Mapped { map, path } = &self.storage {
            map.flush().map_err(|e| SelectError::io(path, e))?;
        }
        Ok(())
    }

    /// Write a versioned, checksummed snapshot atomically: a temporary file in the same
    /// folder, synced, then renamed over `path`, so a crash never leaves a half-written file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), SelectError> {
        let path = path.as_ref();
        let bytes: &[u8] = bytemuck::cast_slice(self.slots());
        let checksum = crc32fast::hash(bytes);
        let write = || -> std::io::Result<()> {
            let mut file = dissect_io::AtomicFile::create(path)?;
            file.write_all(&header(self.len(), checksum))?;
            file.write_all(bytes)?;
            file.commit()
        };
        write().map_err(|e| SelectError::io(path, e))
    }

    /// Read a snapshot written by [`ScoreState::save`] into memory, rejecting foreign,
    /// truncated or corrupted files with a message that says which.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, SelectError> {
        let path = path.as_ref();
        let len = read_and_check_header(path)?.0;
        let mut state = ScoreState::new(len)?;
        read_slots_into(path, state.slots_mut())?;
        Ok(state)
    }
}

fn header(len: u64, checksum: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(SLOT_LEN as u32).to_le_bytes());
    h[16..24].copy_from_slice(&len.to_le_bytes());
    h[24..28].copy_from_slice(&checksum.to_le_bytes());
    let header_crc = crc32fast::hash(&h[0..28]);
    h[28..32].copy_from_slice(&header_crc.to_le_bytes());
    h
}

/// Returns (sample count, data checksum) after checking magic, version, layout and length.
fn read_and_check_header(path: &Path) -> Result<(u64, u32), SelectError> {
    let mut file = File::open(path).map_err(|e| SelectError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| SelectError::io(path, e))?.len();
    let mut h = [0u8; HEADER_LEN];
    if file_len < HEADER_LEN as u64 {
        return Err(SelectError::bad_file(path, format!("not a dissect score-state file: only {file_len} bytes")));
    }
    file.read_exact(&mut h).map_err(|e| SelectError::io(path, e))?;
    if h[0..8] != MAGIC {
        return Err(SelectError::bad_file(path, "not a dissect score-state file (wrong magic bytes)"));
    }
    let field = |range: std::ops::Range<usize>| -> u32 { u32::from_le_bytes(h[range].try_into().unwrap_or([0; 4])) };
    if field(28..32) != crc32fast::hash(&h[0..28]) {
        return Err(SelectError::bad_file(path, "score-state header is corrupt (checksum mismatch)"));
    }
    let version = field(8..12);
    if version != FORMAT_VERSION {
        return Err(SelectError::bad_file(
            path,
            format!("score-state format version {version} is not supported (this build reads {FORMAT_VERSION})"),
        ));
    }
    let slot_len = field(12..16) as usize;
    if slot_len != SLOT_LEN {
        return Err(SelectError::bad_file(path, format!("slot size {slot_len} does not match {SLOT_LEN}")));
    }
    let len = u64::from_le_bytes(h[16..24].try_into().unwrap_or([0; 8]));
    let expected = HEADER_LEN as u128 + len as u128 * SLOT_LEN as u128;
    if (file_len as u128) != expected {
        return Err(SelectError::bad_file(
            path,
            format!("truncated or padded: {len} samples need {expected} bytes, the file has {file_len}"),
        ));
    }
    Ok((len, field(24..28)))
}

fn read_slots_into(path: &Path, slots: &mut [Slot]) -> Result<(), SelectError> {
    let (_, checksum) = read_and_check_header(path)?;
    let file = File::open(path).map_err(|e| SelectError::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut skip = [0u8; HEADER_LEN];
    reader.read_exact(&mut skip).map_err(|e| SelectError::io(path, e))?;
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(slots);
    reader.read_exact(bytes).map_err(|e| SelectError::io(path, e))?;
    if crc32fast::hash(bytes) != checksum {
        return Err(SelectError::bad_file(path, "score-state data is corrupt (checksum mismatch)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn filled(len: u64) -> ScoreState {
        let mut state = ScoreState::new(len).unwrap();
        for (i, slot) in state.slots_mut().iter_mut().enumerate() {
            *slot = Slot {
                warm: i as f32,
                hist: 2.0 * i as f32,
                last: -(i as f32),
                times_selected: i as u32,
                last_epoch: 7,
                flags: flags::SEEN | flags::HAS_HIST,
            };
        }
        state
    }

    #[test]
    fn slot_is_compact() {
        assert_eq!(SLOT_LEN, 24);
        // YFCC15M must fit in well under 1 GiB.
        let yfcc = ScoreState::new(15_000_000).unwrap();
        assert_eq!(yfcc.state_bytes(), 360_000_000);
        assert_eq!(yfcc.seen_count(), 0);
    }

    #[test]
    fn save_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scores.dss");
        let state = filled(1000);
        state.save(&path).unwrap();
        let loaded = ScoreState::load(&path).unwrap();
        assert_eq!(loaded.slots(), state.slots());
        assert_eq!(loaded.seen_count(), 1000);
        assert!(!dissect_io::temp_path(&path).exists());
    }

    #[test]
    fn mapped_state_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = dir.path().join("snap.dss");
        filled(500).save(&snapshot).unwrap();
        let mut mapped = ScoreState::load_mapped(&snapshot, dir.path().join("work.dss")).unwrap();
        assert!(mapped.is_mapped());
        assert_eq!(mapped.slots(), filled(500).slots());
        mapped.slots_mut()[3].times_selected = 99;
        mapped.flush().unwrap();
        let again = dir.path().join("again.dss");
        mapped.save(&again).unwrap();
        assert_eq!(ScoreState::load(&again).unwrap().get(3).unwrap().times_selected, 99);
    }

    #[test]
    fn rejects_foreign_truncated_and_corrupt_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scores.dss");
        filled(100).save(&path).unwrap();
        let good = fs::read(&path).unwrap();

        let check = |bytes: &[u8], expect: &str| {
            let p = dir.path().join("bad.dss");
            fs::write(&p, bytes).unwrap();
            let err = ScoreState::load(&p).unwrap_err().to_string();
            assert!(err.contains(expect), "expected '{expect}' in: {err}");
        };
        check(&good[..good.len() - 5], "truncated");
        check(b"hello", "not a dissect score-state file");
        check(&[b"PK\x03\x04".as_slice(), &good[4..]].concat(), "wrong magic");
        let mut flipped = good.clone();
        flipped[HEADER_LEN + 10] ^= 0xff;
        check(&flipped, "data is corrupt");
        let mut header_flipped = good.clone();
        header_flipped[17] ^= 1;
        check(&header_flipped, "header is corrupt");
        let missing = ScoreState::load(dir.path().join("missing.dss")).unwrap_err().to_string();
        assert!(missing.contains("missing.dss"), "{missing}");
    }
}
