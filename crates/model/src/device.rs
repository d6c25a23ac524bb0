//! Device names accepted on the command line and in configs: `cpu`, `cuda`, `cuda:N`,
//! `tch`, `tch:cuda`, `tch:cuda:N`, and the device of each process of a multi-process job.

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

/// The GPU the process with local rank `local_rank` drives (`K + local_rank` for `cuda[:K]`
/// and `tch:cuda[:K]`), or `None` for the CPU devices.
pub fn gpu_index(name: &str, local_rank: usize) -> Result<Option<usize>, ModelError> {
    Ok(match DeviceName::parse(name)?.offset(local_rank) {
        DeviceName::Cuda(index) | DeviceName::TchCuda(index) => Some(index),
        DeviceName::Flex | DeviceName::TchCpu => None,
    })
}

/// The device of the process with local rank `local_rank` (its rank on its machine) in a
/// multi-process job: `cuda[:K]` and `tch:cuda[:K]` name the first GPU, so process `i` takes
/// GPU `K + i`; the CPU devices are every process's own.
pub fn device_for_local_rank(name: &str, local_rank: usize) -> Result<Device, ModelError> {
    DeviceName::parse(name)?.offset(local_rank).device()
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
    fn processes_take_one_gpu_each_and_share_the_cpu() {
        assert_eq!(device_for_local_rank("cpu", 3).unwrap(), Device::flex());
        #[cfg(not(feature = "cuda"))]
        assert!(device_for_local_rank("cuda:2", 2).unwrap_err().to_string().contains("cuda:4"));
        assert_eq!(DeviceName::parse("tch:cuda:1").unwrap().offset(2), DeviceName::TchCuda(3));
        assert_eq!(DeviceName::parse("tch").unwrap().offset(2), DeviceName::TchCpu);
        assert_eq!((gpu_index("tch:cuda:1", 2).unwrap(), gpu_index("tch", 2).unwrap()), (Some(3), None));
    }
}
