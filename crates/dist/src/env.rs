//! Where this process sits in a job, read from the launcher's environment.
//!
//! torchrun (and `torch.distributed.launch`) set `RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//! `MASTER_ADDR` and `MASTER_PORT`; under SLURM's `srun` the rank, world size and local rank
//! may come from `SLURM_PROCID`, `SLURM_NTASKS` and `SLURM_LOCALID` instead (as open_clip's
//! `world_info_from_env` reads them), with `MASTER_ADDR`/`MASTER_PORT` exported by the batch
//! script. torchrun's agent hosts the rendezvous store itself and says so with
//! `TORCHELASTIC_USE_AGENT_STORE=True`; then every process is a client of it.

use std::collections::HashMap;
use std::time::Duration;

use crate::error::DistError;

/// The default time a collective or the rendezvous may wait for its peers (PyTorch's
/// default process-group timeout, 10 minutes).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// One process's place in a job and how to reach the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendezvous {
    /// Global rank, `0..world_size`.
    pub rank: usize,
    /// Processes in the job.
    pub world_size: usize,
    /// Rank on this machine: which GPU this process drives.
    pub local_rank: usize,
    /// Host of the rendezvous store (rank 0's machine, or torchrun's agent).
    pub master_addr: String,
    /// Its TCP port.
    pub master_port: u16,
    /// Whether a launcher already hosts the store at that address (torchrun's agent): then no
    /// process starts one.
    pub launcher_hosts_store: bool,
    /// How long the rendezvous and each collective may wait before failing.
    pub timeout: Duration,
}

impl Rendezvous {
    /// Reads the process's environment. `Ok(None)` when it names no job (neither `RANK` nor
    /// `WORLD_SIZE`, nor SLURM's `SLURM_PROCID`/`SLURM_NTASKS` with `MASTER_ADDR`); an error
    /// naming the missing or malformed variables when it names one only in part.
    pub fn from_env() -> Result<Option<Self>, DistError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// [`Rendezvous::from_env`] over a given set of variables.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Option<Self>, DistError> {
        let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let torchrun = ["RANK", "WORLD_SIZE"].iter().any(|n| get(n).is_some());
        // SLURM sets its variables for every job step, distributed or not; they name a job of
        // ours only together with the master address the batch script exports.
        let slurm = !torchrun && get("SLURM_PROCID").is_some() && get("MASTER_ADDR").is_some();
        if !torchrun && !slurm {
            return Ok(None);
        }
        let (rank_var, world_var, local_var) = if torchrun {
            ("RANK", "WORLD_SIZE", "LOCAL_RANK")
        } else {
            ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")
        };
        let missing: Vec<&str> =
            [rank_var, world_var, "MASTER_ADDR", "MASTER_PORT"].into_iter().filter(|n| get(n).is_none()).collect();
        if !missing.is_empty() {
            return Err(DistError::Environment(format!(
                "{rank_var} or {world_var} is set, so this looks like a distributed job, but {} {} not \
                 (launch with `torchrun --no-python --nproc-per-node N dissect train ...`, or set all of \
                 {rank_var}, {world_var}, MASTER_ADDR and MASTER_PORT)",
                missing.join(", "),
                if missing.len() == 1 { "is" } else { "are" },
            )));
        }
        let number = |name: &str| -> Result<usize, DistError> {
            let text = get(name).unwrap_or("0");
            text.parse().map_err(|_| DistError::Environment(format!("{name}={text:?} is not a non-negative integer")))
        };
        let (rank, world_size) = (number(rank_var)?, number(world_var)?);
        if world_size == 0 || rank >= world_size {
            return Err(DistError::Environment(format!(
                "{rank_var}={rank} is not a rank of a job of {world_var}={world_size}"
            )));
        }
        let port_text = get("MASTER_PORT").unwrap_or_default();
        let master_port = port_text
            .parse()
            .map_err(|_| DistError::Environment(format!("MASTER_PORT={port_text:?} is not a TCP port (1-65535)")))?;
        Ok(Some(Rendezvous {
            rank,
            world_size,
            // A process without LOCAL_RANK (plain environment, one process per machine) drives device 0.
            local_rank: if get(local_var).is_some() { number(local_var)? } else { 0 },
            master_addr: get("MASTER_ADDR").unwrap_or_default().to_string(),
            master_port,
            launcher_hosts_store: get("TORCHELASTIC_USE_AGENT_STORE") == Some("True"),
            timeout: DEFAULT_TIMEOUT,
        }))
    }

    /// `MASTER_ADDR:MASTER_PORT`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.master_addr, self.master_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn no_job_variables_is_a_single_process() {
        assert_eq!(Rendezvous::from_vars(&vars(&[])).unwrap(), None);
        // SLURM alone (an ordinary `srun dissect train`) is not a job of ours.
        assert_eq!(Rendezvous::from_vars(&vars(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1")])).unwrap(), None);
    }

    #[test]
    fn torchrun_variables_give_the_place_in_the_job() {
        let torchrun = vars(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node0"),
            ("MASTER_PORT", "29500"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
        ]);
        let got = Rendezvous::from_vars(&torchrun).unwrap().unwrap();
        assert_eq!((got.rank, got.world_size, got.local_rank), (3, 8, 1));
        assert_eq!(got.address(), "node0:29500");
        assert!(got.launcher_hosts_store);
        assert_eq!(got.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn slurm_variables_with_a_master_address_give_the_place_in_the_job() {
        let slurm = vars(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "16"),
            ("SLURM_LOCALID", "5"),
            ("MASTER_ADDR", "gpu-017"),
            ("MASTER_PORT", "12802"),
        ]);
        let got = Rendezvous::from_vars(&slurm).unwrap().unwrap();
        assert_eq!((got.rank, got.world_size, got.local_rank), (5, 16, 5));
        assert!(!got.launcher_hosts_store);
    }

    #[test]
    fn partial_or_malformed_variables_are_named() {
        let err = Rendezvous::from_vars(&vars(&[("RANK", "0"), ("WORLD_SIZE", "2")])).unwrap_err().to_string();
        assert!(err.contains("MASTER_ADDR, MASTER_PORT are not") && err.contains("torchrun"), "{err}");
        let err = Rendezvous::from_vars(&vars(&[("WORLD_SIZE", "2"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("RANK is not"), "{err}");
        let base = [("RANK", "2"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "1")];
        let err = Rendezvous::from_vars(&vars(&base)).unwrap_err().to_string();
        assert!(err.contains("RANK=2 is not a rank of a job of WORLD_SIZE=2"), "{err}");
        let mut bad_port = vars(&base);
        bad_port.insert("RANK".into(), "0".into());
        bad_port.insert("MASTER_PORT".into(), "port".into());
        let err = Rendezvous::from_vars(&bad_port).unwrap_err().to_string();
        assert!(err.contains("MASTER_PORT=\"port\""), "{err}");
        let mut bad_local = vars(&base);
        bad_local.insert("RANK".into(), "1".into());
        bad_local.insert("LOCAL_RANK".into(), "-1".into());
        let err = Rendezvous::from_vars(&bad_local).unwrap_err().to_string();
        assert!(err.contains("LOCAL_RANK=\"-1\""), "{err}");
    }
}
