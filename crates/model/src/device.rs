//! Device names accepted on the command line and in configs: `cpu`, `cuda`, `cuda:N`, and
//! the devices of a data-parallel run.

use burn::tensor::Device;

use crate::error::ModelError;

/// Resolves a device name. `cpu` is Burn's `flex` backend; `cuda[:N]` needs the crate's
/// `cuda` feature and is refused with a clear message in a build without it.
pub fn device_from_name(name: &str) -> Result<Device, ModelError> {
    let name = name.trim().to_ascii_lowercase();
    if name == "cpu" || name == "flex" {
        return Ok(Device::flex());
    }
    let index = match name.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest.strip_prefix(':').and_then(|n| n.parse::<usize>().ok()).ok_or_else(|| {
            ModelError::InvalidConfig { field: "device", reason: format!("{name:?}: expected cuda or cuda:N") }
        })?,
        None => {
            return Err(ModelError::InvalidConfig {
                field: "device",
                reason: format!("unknown device {name:?} (expected cpu, cuda or cuda:N)"),
            });
        }
    };
    cuda_device(index)
}

/// The devices of a data-parallel run with `ranks` ranks: `cuda` or `cuda:K` gives
/// `cuda:K … cuda:K+ranks-1` (one GPU per rank); `cpu` gives the one CPU device `ranks` times,
/// which runs the same algorithm (local batches, local selection, averaged gradients) and is
/// how the data-parallel path is tested without GPUs.
pub fn rank_devices(name: &str, ranks: usize) -> Result<Vec<Device>, ModelError> {
    if ranks == 0 {
        return Err(ModelError::InvalidConfig { field: "ranks", reason: "must be at least 1".into() });
    }
    let first = device_from_name(name)?;
    let lower = name.trim().to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix("cuda") else {
        return Ok(vec![first; ranks]);
    };
    let start = rest.strip_prefix(':').and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
    let mut devices = vec![first];
    for index in start + 1..start + ranks {
        devices.push(cuda_device(index)?);
    }
    Ok(devices)
}

#[cfg(feature = "cuda")]
fn cuda_device(index: usize) -> Result<Device, ModelError> {
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(index: usize) -> Result<Device, ModelError> {
    Err(ModelError::InvalidConfig {
        field: "device",
        reason: format!(
            "cuda:{index} asked for, but this binary was built without CUDA \
             (rebuild with `cargo build --release --features cuda`)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_or_explain() {
        assert!(device_from_name("cpu").is_ok());
        assert!(device_from_name(" CPU ").is_ok());
        let err = device_from_name("tpu").unwrap_err().to_string();
        assert!(err.contains("device") && err.contains("tpu"), "{err}");
        let err = device_from_name("cuda:x").unwrap_err().to_string();
        assert!(err.contains("cuda:N"), "{err}");
        #[cfg(not(feature = "cuda"))]
        {
            let err = device_from_name("cuda:1").unwrap_err().to_string();
            assert!(err.contains("without CUDA") && err.contains("cuda:1"), "{err}");
        }
    }

    #[test]
    fn cpu_ranks_share_the_device_and_zero_ranks_is_refused() {
        let devices = rank_devices("cpu", 3).unwrap();
        assert_eq!(devices.len(), 3);
        assert!(devices.iter().all(|d| *d == Device::flex()));
        let err = rank_devices("cpu", 0).unwrap_err().to_string();
        assert!(err.contains("ranks"), "{err}");
        #[cfg(not(feature = "cuda"))]
        assert!(rank_devices("cuda:2", 2).unwrap_err().to_string().contains("cuda:2"));
    }
}
