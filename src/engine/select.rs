//! `--device` and `--precision`: which engine a rank runs. `auto` takes a GPU when a CUDA driver
//! and a GPU are present and otherwise the CPU engine, saying which in one log line. Ranks bind
//! to the GPU numbered by their node-local rank modulo the node's GPU count, so several ranks
//! may share a GPU.

use super::cpu::CpuEngine;
use super::cuda::CudaEngine;
use super::{Engine, EngineError};
use crate::model::TransformerNet;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Auto,
    Cpu,
    /// A GPU: the rank's by node-local rank, or the given one.
    Cuda(Option<usize>),
}

impl FromStr for Device {
    type Err = String;

    fn from_str(text: &str) -> Result<Device, String> {
        match text {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(None)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(|n| Device::Cuda(Some(n)))
                .ok_or_else(|| format!("unknown device `{other}`: use auto, cpu, cuda or cuda:N")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Precision {
    /// fp32 everywhere: matches the golden vectors.
    #[default]
    Fp32,
    /// BF16 tensor cores with fp32 accumulation for the inner layers.
    Fast,
}

/// Why no GPU can be used here, or the number of GPUs.
pub fn gpu_count() -> Result<usize, String> {
    // SAFETY: probing for libcuda only runs its initialisers. cudarc panics when the library is
    // missing, so this check must come first.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("no CUDA driver (libcuda.so.1) was found; install the NVIDIA driver, or use --device cpu".into());
    }
    match cudarc::driver::CudaContext::device_count() {
        Ok(count) if count > 0 => Ok(count as usize),
        Ok(_) => Err("the CUDA driver reports no GPU; use --device cpu".into()),
        Err(error) => Err(format!(
            "the CUDA driver failed to start ({error}); use --device cpu"
        )),
    }
}

/// The error for `device` when no GPU can be used, with the reason.
fn unavailable(device: Device, reason: String) -> EngineError {
    EngineError::CudaUnavailable {
        requested: match device {
            Device::Cuda(Some(n)) => format!("cuda:{n}"),
            _ => "cuda".into(),
        },
        reason,
    }
}

/// Fails early, before any work, when `device` asks for a GPU this node does not have.
pub fn check_device(device: Device) -> Result<(), EngineError> {
    match (device, gpu_count()) {
        (Device::Cuda(_), Err(reason)) => Err(unavailable(device, reason)),
        (Device::Cuda(Some(n)), Ok(count)) if n >= count => Err(unavailable(
            device,
            format!("this node has {count} GPU(s), numbered from 0"),
        )),
        _ => Ok(()),
    }
}

/// Builds this rank's engine. `local_rank` is the rank's index among the ranks of its node.
pub fn create_engine(
    device: Device,
    precision: Precision,
    batch: usize,
    net: &TransformerNet,
    threads: Option<usize>,
    local_rank: usize,
) -> Result<Box<dyn Engine>, EngineError> {
    let ordinal = match device {
        Device::Cpu => None,
        Device::Auto => match gpu_count() {
            Ok(count) => Some(local_rank % count),
            Err(reason) => {
                log::info!("no GPU ({reason}): using the CPU engine");
                None
            }
        },
        Device::Cuda(pinned) => {
            check_device(device)?;
            let count = gpu_count().map_err(|reason| unavailable(device, reason))?;
            Some(pinned.unwrap_or(local_rank % count))
        }
    };
    let engine: Box<dyn Engine> = match ordinal {
        Some(ordinal) => Box::new(CudaEngine::new(net, ordinal, precision, batch)?),
        None => Box::new(CpuEngine::new(net, threads)),
    };
    Ok(engine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_like_the_command_line_documents() {
        assert_eq!("auto".parse(), Ok(Device::Auto));
        assert_eq!("cpu".parse(), Ok(Device::Cpu));
        assert_eq!("cuda".parse(), Ok(Device::Cuda(None)));
        assert_eq!("cuda:3".parse(), Ok(Device::Cuda(Some(3))));
        assert!("gpu"
            .parse::<Device>()
            .unwrap_err()
            .contains("use auto, cpu, cuda or cuda:N"));
        assert!("cuda:x".parse::<Device>().is_err());
    }
}
