//! Joining a job of several processes (torchrun, SLURM or a plain environment): the process
//! group comes from torch.distributed's c10d, in builds with the `tch` feature.

use std::time::Duration;

use anyhow::{Context, Result};
use dissect_dist::Rendezvous;
use dissect_train::{Job, TrainConfig};

/// The job this process belongs to, from the launcher's environment: a run of one process
/// when the environment names none. The config is checked against the world size before any
/// connection is made, so a bad setting fails at once on every process.
pub fn from_env(config: &TrainConfig, timeout: Option<u64>) -> Result<Job> {
    let Some(mut rendezvous) = Rendezvous::from_env()? else {
        return Ok(Job::single());
    };
    config.validate_for(rendezvous.world_size)?;
    if let Some(seconds) = timeout {
        rendezvous.timeout = Duration::from_secs(seconds);
    }
    connect(&rendezvous, config).with_context(|| {
        format!("process {} of {} joining the job at {}", rendezvous.rank, rendezvous.world_size, rendezvous.address())
    })
}

/// Gloo for CPU devices; NCCL for GPUs, each process on GPU `K + LOCAL_RANK`.
#[cfg(feature = "tch")]
fn connect(rendezvous: &Rendezvous, config: &TrainConfig) -> Result<Job> {
    use dissect_dist::{Backend, ProcessGroup};
    let backend = match dissect_model::gpu_index(&config.device, rendezvous.local_rank)? {
        Some(device) => Backend::Nccl { device },
        None => Backend::Gloo,
    };
    let group = ProcessGroup::connect(rendezvous, backend)?;
    Ok(Job { comm: std::sync::Arc::new(group), local_rank: rendezvous.local_rank })
}

#[cfg(not(feature = "tch"))]
fn connect(_rendezvous: &Rendezvous, _config: &TrainConfig) -> Result<Job> {
    Err(dissect_dist::DistError::Unsupported.into())
}
