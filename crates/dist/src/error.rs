//! What can go wrong between processes.

use thiserror::Error;

/// A failure of the job's setup or of a collective operation.
#[derive(Debug, Error)]
pub enum DistError {
    /// The launcher's environment names some of a job's variables but not all, or one that
    /// does not parse.
    #[error("distributed environment: {0}")]
    Environment(String),
    /// A rank outside the job.
    #[error("rank {rank} is not in a job of {world_size} process(es)")]
    Rank {
        /// The rank asked for.
        rank: usize,
        /// The job's size.
        world_size: usize,
    },
    /// The rendezvous (the TCP store at MASTER_ADDR:MASTER_PORT) or the process group could
    /// not be set up.
    #[error("could not join the job at {address}: {reason}")]
    Connect {
        /// `MASTER_ADDR:MASTER_PORT`.
        address: String,
        /// c10d's message.
        reason: String,
    },
    /// A collective failed: a peer died or closed its connection, or the timeout passed.
    #[error("{operation} failed (a peer stopped, or the timeout of {timeout_s} s passed): {reason}")]
    Collective {
        /// The operation, e.g. `all_reduce_sum`.
        operation: &'static str,
        /// The group's timeout, seconds.
        timeout_s: u64,
        /// c10d's message, e.g. "Connection closed by peer".
        reason: String,
    },
    /// Another process sent data this one cannot read (a different version, or a bug).
    #[error("a process of the job sent malformed data: {0}")]
    Malformed(String),
    /// This build has no c10d binding.
    #[error("this binary was built without torch.distributed (rebuild with `--features tch`, bench/build_tch.sh)")]
    Unsupported,
}
