//! Device names accepted on the command line and in configs: `cpu`, `cuda`, `cuda:N`,
//! `tch`, `tch:cuda`, `tch:cuda:N`, and the devices of a data-parallel run.

use burn::tensor::Device;

use crate::error::ModelError;

/// A parsed device name: which backend, and for GPUs which one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceName {
    /// Burn's `flex` CPU backend (`cpu`).
    Flex,
    /// Burn's CUDA backend (`cuda[:N]`, the `cuda` feature).
    Cuda(usize),
    /// LibTorch on the CPU (`tch`, the `tch` feature).
    TchCpu,
    /// LibTorch on a GPU (`tch:cuda[:N]`, the `tch` feature).
    TchCuda(usize),
}

const EXPECTED: &str = "cpu, cuda, cuda:N, tch, tch:cuda or tch:cuda:N";

impl DeviceName {
    fn parse(name: &str) -> Result<Self, ModelError> {
        let name = name.trim().to_ascii_lowercase();
        let invalid = || ModelError::InvalidConfig {
            field: "device",
            reason: format!("unknown device {name:?} (expected {EXPECTED})"),
        };
        // "" → GPU 0; ":N" → GPU N.
        let gpu_index = |rest: &str| match rest {
            "" => Some(0),
            _ => rest.strip_prefix(':')?.parse::<usize>().ok(),
        };
        match name.as_str() {
            "cpu" | "flex" => Ok(DeviceName::Flex),
            "tch" | "tch:cpu" => Ok(DeviceName::TchCpu),
            _ => {
                if let Some(rest) = name.strip_prefix("tch:cuda") {
                    gpu_index(rest).map(DeviceName::TchCuda).ok_or_else(invalid)
                } else if let Some(rest) = name.strip_prefix("cuda") {
                    gpu_index(rest).map(DeviceName::Cuda).ok_or_else(invalid)
                } else {
                    Err(invalid())
                }
            }
        }
    }

    /// The same kind of device, `offset` GPUs further on (the CPU devices stay themselves).
    fn offset(self, offset: usize) -> Self {
        match self {
            DeviceName::Cuda(index) => DeviceName::Cuda(index + offset),
            DeviceName::TchCuda(index) => DeviceName::TchCuda(index + offset),
            cpu => cpu,
        }
    }

    fn device(self) -> Result<Device, ModelError> {
        match self {
            DeviceName::Flex => Ok(Device::flex()),
            DeviceName::Cuda(index) => cuda_device(index),
            DeviceName::TchCpu => tch_device(None),
            DeviceName::TchCuda(index) => tch_device(Some(index)),
        }
    }
}

/// Resolves a device name. `cpu` is Burn's `flex` backend; `cuda[:N]` needs the crate's
/// `cuda` feature and `tch`, `tch:cuda[:N]` its `tch` feature (LibTorch); a build without the
/// feature refuses them with a message saying how to rebuild.
pub fn device_from_name(name: &str) -> Result<Device, ModelError> {
    DeviceName::parse(name)?.device()
}

/// The devices of a data-parallel run with `ranks` ranks: `cuda` or `cuda:K` gives
/// `cuda:K … cuda:K+ranks-1` (one GPU per rank), and `tch:cuda:K` likewise; `cpu` and `tch`
/// give the one CPU device `ranks` times, which runs the same algorithm (local batches, local
/// selection, averaged gradients) and is how the data-parallel path is tested without GPUs.
pub fn rank_devices(name: &str, ranks: usize) -> Result<Vec<Device>, ModelError> {
    if ranks == 0 {
        return Err(ModelError::InvalidConfig { field: "ranks", reason: "must be at least 1".into() });
    }
    let first = DeviceName::parse(name)?;
    (0..ranks).map(|rank| first.offset(rank).device()).collect()
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

/// A LibTorch device; a GPU only when LibTorch sees one, so a missing GPU or driver is an
/// error naming the device rather than LibTorch's abort on first use.
#[cfg(feature = "tch")]
#[allow(deprecated)] // Burn marks burn-tch deprecated; it stays behind this feature until Burn's CUDA build works offline.
fn tch_device(cuda: Option<usize>) -> Result<Device, ModelError> {
    let Some(index) = cuda else { return Ok(Device::libtorch()) };
    let visible = usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
    if index >= visible {
        return Err(ModelError::InvalidConfig {
            field: "device",
            reason: format!(
                "tch:cuda:{index} asked for, but LibTorch sees {visible} CUDA device(s): no GPU, no driver, or a \
                 CPU-only torch (check `python -c 'import torch; print(torch.cuda.device_count())'`)"
            ),
        });
    }
    Ok(Device::libtorch_cuda(index))
}

#[cfg(not(feature = "tch"))]
fn tch_device(cuda: Option<usize>) -> Result<Device, ModelError> {
    let name = cuda.map_or("tch".to_string(), |index| format!("tch:cuda:{index}"));
    Err(ModelError::InvalidConfig {
        field: "device",
        reason: format!(
            "{name} asked for, but this binary was built without LibTorch (rebuild with `--features tch` \
             as the README's \"GPU with LibTorch\" section shows)"
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
        for name in ["tch:cuda:x", "tch:gpu", "cudax"] {
            let err = device_from_name(name).unwrap_err().to_string();
            assert!(err.contains("unknown device") && err.contains("tch:cuda:N"), "{name}: {err}");
        }
        assert_eq!(DeviceName::parse("TCH:CUDA:2").unwrap(), DeviceName::TchCuda(2));
        assert_eq!(DeviceName::parse("tch:cuda").unwrap(), DeviceName::TchCuda(0));
        assert_eq!(DeviceName::parse("tch").unwrap(), DeviceName::TchCpu);
        #[cfg(not(feature = "tch"))]
        {
            let err = device_from_name("tch:cuda:1").unwrap_err().to_string();
            assert!(err.contains("without LibTorch") && err.contains("tch:cuda:1"), "{err}");
        }
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
        assert_eq!(DeviceName::parse("tch:cuda:1").unwrap().offset(2), DeviceName::TchCuda(3));
        assert_eq!(DeviceName::parse("tch").unwrap().offset(2), DeviceName::TchCpu);
    }
}
