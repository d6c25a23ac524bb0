#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` so that a crash or a failed write never leaves a partial file:
/// see [`AtomicFile`].
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes)?;
    file.commit()
}

/// A file written under a temporary name beside its target and moved into place by
/// [`AtomicFile::commit`]. Dropped without a commit (an error on the way), it removes the
/// temporary file and the target keeps its old content.
pub struct AtomicFile {
    out: Option<BufWriter<File>>,
    tmp: PathBuf,
    path: PathBuf,
}

impl AtomicFile {
    /// Starts writing `path`; nothing at `path` changes until [`AtomicFile::commit`].
    pub fn create(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let tmp = temp_path(&path);
        let file = File::create(&tmp)?;
        Ok(AtomicFile { out: Some(BufWriter::with_capacity(1 << 16, file)), tmp, path })
    }

    /// The file this will become.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes, syncs the data to disk, renames over the target and syncs the folder.
    pub fn commit(mut self) -> io::Result<()> {
        let out = self.out.take().ok_or_else(|| io::Error::other("atomic file already committed"))?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&self.tmp, &self.path)?;
        sync_parent(&self.path)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer()?.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer()?.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer()?.flush()
    }
}

impl AtomicFile {
    fn writer(&mut self) -> io::Result<&mut BufWriter<File>> {
        self.out.as_mut().ok_or_else(|| io::Error::other("atomic file already committed"))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Moves a file that another library wrote completely under a temporary name (see
/// [`temp_path_keeping_extension`]) to `target`, syncing it first and the folder after.
pub fn commit_file(tmp: &Path, target: &Path) -> io::Result<()> {
    File::open(tmp)?.sync_all()?;
    fs::rename(tmp, target)?;
    sync_parent(target)
}

/// A temporary name for `path` like [`temp_path`] that keeps the extension, for writers that
/// pick the file format from it (image encoders).
pub fn temp_path_keeping_extension(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_stem().unwrap_or_default());
    name.push(format!(".tmp-{}", std::process::id()));
    if let Some(ext) = path.extension() {
        name.push(".");
        name.push(ext);
    }
    path.with_file_name(name)
}

/// Moves a completely written folder `tmp` to `target` (replacing an older folder of that
/// name) and syncs the parent folder, so the rename survives a crash.
pub fn commit_dir(tmp: &Path, target: &Path) -> io::Result<()> {
    sync_tree_files(tmp)?;
    if target.exists() {
        fs::remove_dir_all(target)?;
    }
    fs::rename(tmp, target)?;
    sync_parent(target)
}

/// Syncs the files directly inside `dir` and `dir` itself.
fn sync_tree_files(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            File::open(&path)?.sync_all()?;
        }
    }
    sync_dir(dir)
}

/// The temporary name used for `path` while it is written: hidden, beside it (the same
/// filesystem, so the rename is atomic), and unique to this process.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Syncs the folder holding `path`, which makes a rename inside it durable.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => sync_dir(parent),
        None => sync_dir(Path::new(".")),
    }
}

/// Syncs a folder's entries. Filesystems that cannot sync a folder (some network and
/// virtual filesystems answer `EINVAL`) are accepted: there the rename is as durable as the
/// filesystem makes it.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir)?.sync_all() {
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_the_target_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(entries(dir.path()), ["a.json"]);
    }

    #[test]
    fn an_abandoned_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"old").unwrap();
        let mut file = AtomicFile::create(&path).unwrap();
        file.write_all(b"half of the new").unwrap();
        assert!(temp_path(&path).exists());
        drop(file);
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(entries(dir.path()), ["a.json"]);
    }

    #[test]
    fn a_file_written_elsewhere_is_committed_under_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("plot.png");
        let tmp = temp_path_keeping_extension(&target);
        assert_eq!(tmp.extension().and_then(|e| e.to_str()), Some("png"));
        fs::write(&tmp, b"pixels").unwrap();
        commit_file(&tmp, &target).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"pixels");
        assert_eq!(entries(dir.path()), ["plot.png"]);
    }

    #[test]
    fn a_folder_is_committed_whole_over_an_older_one() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, target) = (dir.path().join(".ckpt.tmp"), dir.path().join("ckpt"));
        fs::create_dir(&target).unwrap();
        fs::write(target.join("stale"), b"x").unwrap();
        fs::create_dir(&tmp).unwrap();
        fs::write(tmp.join("model"), b"weights").unwrap();
        commit_dir(&tmp, &target).unwrap();
        assert_eq!(entries(&target), ["model"]);
        assert!(!tmp.exists());
    }

    #[test]
    fn an_unwritable_target_is_an_error_not_a_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-folder").join("a.json");
        assert!(write_atomic(&missing, b"x").is_err());
        assert_eq!(entries(dir.path()), Vec::<String>::new());
    }
}
