//! Device selection (`--device auto|cpu|cuda[:N]`) and thread settings.

use crate::error::{NnError, Result};
use tch::Device;

/// Parses a device name. `auto` picks CUDA when libtorch sees a GPU, else the CPU.
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" | "gpu" => {
            if tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else {
                Err(NnError::Device(
                    "CUDA was requested but libtorch sees no GPU (is libtorch_cuda linked and a driver present?)"
                        .into(),
                ))
            }
        }
        s if s.starts_with("cuda:") => {
            let i: usize = s[5..].parse().map_err(|_| NnError::Device(format!("bad device `{s}`")))?;
            if (i as i64) < tch::Cuda::device_count() {
                Ok(Device::Cuda(i))
            } else {
                Err(NnError::Device(format!("`{s}`: only {} CUDA device(s) visible", tch::Cuda::device_count())))
            }
        }
        s => Err(NnError::Device(format!("unknown device `{s}`: expected auto, cpu, cuda or cuda:N"))),
    }
}

/// Human-readable device name for reports.
pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => format!("cpu ({} threads)", tch::get_num_threads()),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}"),
    }
}

/// Sets libtorch's intra-op thread count: `0` means one per available core. Set once, early:
/// libtorch's default can oversubscribe when several processes share a machine.
pub fn set_threads(n: usize) {
    let n = if n == 0 { std::thread::available_parallelism().map_or(1, |c| c.get()) } else { n };
    tch::set_num_threads(n as i32);
}
