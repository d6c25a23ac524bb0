//! How the processes of a job start from one state: rank 0 opens the run as a single process
//! would (checks the folder, trains the tokenizer or resumes, writes the step-0 checkpoint)
//! and broadcasts the run's files that define its state; every other process writes them into
//! a scratch folder of its own and resumes from there. So the processes hold the same model,
//! optimiser, score state and RNG, whatever the world size of the checkpoint's run, and only
//! rank 0 writes into the run folder (no shared filesystem is needed).

use std::path::{Path, PathBuf};

use dissect_dist::Collective;

use crate::checkpoint::latest_checkpoint;
use crate::error::{Result, TrainError};
use crate::files::RunFiles;

/// The files rank 0 sends: the tokenizer, the model config and every file of the newest
/// checkpoint, as paths relative to the run folder.
fn state_files(files: &RunFiles, checkpoint: &Path) -> Result<Vec<PathBuf>> {
    let root = files.root();
    let mut paths = vec![files.tokenizer(), files.model_config()];
    let entries = std::fs::read_dir(checkpoint).map_err(|e| TrainError::io(checkpoint, e))?;
    for entry in entries {
        let path = entry.map_err(|e| TrainError::io(checkpoint, e))?.path();
        if path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            p.strip_prefix(root)
                .map(Path::to_path_buf)
                .map_err(|_| TrainError::Checkpoint { path: p.clone(), message: "is not inside the run folder".into() })
        })
        .collect()
}

/// Rank 0: broadcasts the run's state files and the checkpoint's place among them.
pub(crate) fn send_state(comm: &dyn Collective, files: &RunFiles) -> Result<()> {
    let checkpoint = latest_checkpoint(files.root())?.ok_or_else(|| TrainError::Checkpoint {
        path: files.root().to_path_buf(),
        message: "has no checkpoint to start the other processes from".into(),
    })?;
    let mut packed = Vec::new();
    for relative in state_files(files, &checkpoint)? {
        let path = files.root().join(&relative);
        let bytes = std::fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
        push_entry(&mut packed, &relative.to_string_lossy(), &bytes);
    }
    comm.broadcast_bytes(&mut packed, 0)?;
    Ok(())
}

/// Every other rank: receives the state files into `scratch` (as a run folder) and writes
/// `latest` there, so that the run resumes from them.
pub(crate) fn receive_state(comm: &dyn Collective, scratch: &Path) -> Result<()> {
    let mut packed = Vec::new();
    comm.broadcast_bytes(&mut packed, 0)?;
    let mut rest = packed.as_slice();
    let mut checkpoint_name = None;
    while !rest.is_empty() {
        let (relative, bytes, after) = pop_entry(rest)?;
        rest = after;
        let path = scratch.join(&relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| TrainError::io(parent, e))?;
            if parent != scratch {
                checkpoint_name = parent.file_name().map(|n| n.to_string_lossy().into_owned());
            }
        }
        std::fs::write(&path, bytes).map_err(|e| TrainError::io(&path, e))?;
    }
    let name = checkpoint_name.ok_or_else(|| broken("no checkpoint among the files rank 0 sent"))?;
    crate::checkpoint::mark_latest(scratch, &name)
}

/// Appends `name` and `bytes`, each after its length (u64, little-endian).
fn push_entry(packed: &mut Vec<u8>, name: &str, bytes: &[u8]) {
    for part in [name.as_bytes(), bytes] {
        packed.extend((part.len() as u64).to_le_bytes());
        packed.extend_from_slice(part);
    }
}

/// The first entry of `packed` and what follows it.
fn pop_entry(packed: &[u8]) -> Result<(String, &[u8], &[u8])> {
    let (name, rest) = pop_part(packed)?;
    let (bytes, rest) = pop_part(rest)?;
    let name = String::from_utf8(name.to_vec()).map_err(|_| broken("a file name is not UTF-8"))?;
    if Path::new(&name).components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(broken("a file name leaves the run folder"));
    }
    Ok((name, bytes, rest))
}

fn pop_part(packed: &[u8]) -> Result<(&[u8], &[u8])> {
    let (len, rest) = packed.split_at_checked(8).ok_or_else(|| broken("truncated"))?;
    let len = u64::from_le_bytes(len.try_into().map_err(|_| broken("truncated"))?) as usize;
    rest.split_at_checked(len).ok_or_else(|| broken("truncated"))
}

fn broken(message: &str) -> TrainError {
    TrainError::Checkpoint { path: PathBuf::from("(from rank 0)"), message: message.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_names_stay_inside() {
        let mut packed = Vec::new();
        push_entry(&mut packed, "checkpoints/step-00000003/model.bpk", b"weights");
        push_entry(&mut packed, "tokenizer.json", b"");
        let (name, bytes, rest) = pop_entry(&packed).unwrap();
        assert_eq!((name.as_str(), bytes), ("checkpoints/step-00000003/model.bpk", &b"weights"[..]));
        let (name, bytes, rest) = pop_entry(rest).unwrap();
        assert_eq!((name.as_str(), bytes, rest.len()), ("tokenizer.json", &b""[..], 0));
        let mut evil = Vec::new();
        push_entry(&mut evil, "../outside", b"x");
        assert!(pop_entry(&evil).unwrap_err().to_string().contains("leaves the run folder"));
        assert!(pop_entry(&packed[..12]).unwrap_err().to_string().contains("truncated"));
    }
}
