//! Device names accepted on the command line and in configs: `cpu`, `cuda`, `cuda:N`.

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
}
