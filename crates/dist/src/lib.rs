#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod env;
mod error;
mod threads;

#[cfg(feature = "c10d")]
mod c10d;

pub use env::Rendezvous;
pub use error::DistError;
pub use threads::ThreadGroup;

#[cfg(feature = "c10d")]
pub use c10d::{Backend, ProcessGroup};

/// The collective operations of a data-parallel job, blocking until every process has joined
/// (or the group's timeout passes, or a peer is gone: then an error, never a hang).
///
/// Every process must call the same operations in the same order with buffers of the same
/// lengths, except where a method says lengths may differ.
pub trait Collective: Send + Sync {
    /// This process's rank, `0..world_size`.
    fn rank(&self) -> usize;
    /// The number of processes in the job.
    fn world_size(&self) -> usize;
    /// Replaces `data` by its element-wise sum over all processes (same length everywhere).
    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<(), DistError>;
    /// Every process's `local`, in rank order; the lengths may differ between processes.
    fn all_gather(&self, local: &[f32]) -> Result<Vec<Vec<f32>>, DistError>;
    /// Every process's `local` bytes, in rank order; the lengths may differ.
    fn all_gather_bytes(&self, local: &[u8]) -> Result<Vec<Vec<u8>>, DistError>;
    /// Replaces `data` on every process by rank `root`'s (same length everywhere).
    fn broadcast(&self, data: &mut [f32], root: usize) -> Result<(), DistError>;
    /// Returns once every process has called it.
    fn barrier(&self) -> Result<(), DistError>;

    /// Replaces `data` on every process by rank `root`'s bytes, of any length (the others'
    /// may start empty). Sent through [`Collective::broadcast`] in pieces of at most 64 MiB,
    /// four bytes to a float: a broadcast copies bits and never computes with them.
    fn broadcast_bytes(&self, data: &mut Vec<u8>, root: usize) -> Result<(), DistError> {
        const PIECE: usize = 64 << 20;
        // The length in three 22-bit parts, each exact as an f32.
        let len = data.len() as u64;
        let mut header = [(len >> 44) as f32, ((len >> 22) & 0x3f_ffff) as f32, (len & 0x3f_ffff) as f32];
        self.broadcast(&mut header, root)?;
        let len = ((header[0] as u64) << 44 | (header[1] as u64) << 22 | header[2] as u64) as usize;
        data.resize(len, 0);
        for piece in data.chunks_mut(PIECE) {
            let mut floats: Vec<f32> = piece
                .chunks(4)
                .map(|c| {
                    let mut word = [0u8; 4];
                    word[..c.len()].copy_from_slice(c);
                    f32::from_bits(u32::from_le_bytes(word))
                })
                .collect();
            self.broadcast(&mut floats, root)?;
            for (c, f) in piece.chunks_mut(4).zip(&floats) {
                let n = c.len();
                c.copy_from_slice(&f.to_bits().to_le_bytes()[..n]);
            }
        }
        Ok(())
    }
}

/// The world of one process: every operation is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _data: &mut [f32]) -> Result<(), DistError> {
        Ok(())
    }
    fn all_gather(&self, local: &[f32]) -> Result<Vec<Vec<f32>>, DistError> {
        Ok(vec![local.to_vec()])
    }
    fn all_gather_bytes(&self, local: &[u8]) -> Result<Vec<Vec<u8>>, DistError> {
        Ok(vec![local.to_vec()])
    }
    fn broadcast(&self, _data: &mut [f32], root: usize) -> Result<(), DistError> {
        if root != 0 {
            return Err(DistError::Rank { rank: root, world_size: 1 });
        }
        Ok(())
    }
    fn barrier(&self) -> Result<(), DistError> {
        Ok(())
    }
}
