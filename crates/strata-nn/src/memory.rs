//! Peak tensor memory of a training run, so depth-vs-memory can be compared across trainers.
//!
//! - CUDA: libtorch's caching-allocator statistics (bytes allocated to tensors, peak since
//!   [`MemoryMeter::start`]), exact.
//! - CPU: libtorch's CPU allocator is glibc `malloc`, so the meter samples the heap's bytes in
//!   use ([`sample`], called by the trainers right after each forward pass, when the autograd
//!   graph is largest) and keeps the high-water mark. The heap is process-wide: measure one run
//!   at a time (the CLI and the benchmark do).
//!
//! Both report bytes above what was live when the meter started (dataset, graph, features).

use std::sync::atomic::{AtomicU64, Ordering};
use tch::Device;

extern "C" {
    fn strata_release_free_heap();
    fn strata_heap_in_use() -> u64;
    fn strata_cuda_allocated(device: i32, current: *mut u64, peak: *mut u64) -> i32;
    fn strata_cuda_reset_peak(device: i32) -> i32;
}

static HEAP_PEAK: AtomicU64 = AtomicU64::new(0);

/// Bytes the C heap has handed out right now.
pub fn heap_in_use() -> u64 {
    // SAFETY: reads glibc's allocator counters; no arguments.
    unsafe { strata_heap_in_use() }
}

/// Returns the C heap's free pages to the system (`malloc_trim`), so that what a process let
/// go of after a large transient (a launcher's planning) no longer counts as resident.
pub fn release_free_heap() {
    // SAFETY: glibc's malloc_trim has no preconditions.
    unsafe { strata_release_free_heap() }
}

/// Records the current heap use into the CPU high-water mark. Cheap (one `mallinfo2`).
pub fn sample() {
    HEAP_PEAK.fetch_max(heap_in_use(), Ordering::Relaxed);
}

fn cuda_allocated(index: usize) -> Option<(u64, u64)> {
    let (mut current, mut peak) = (0u64, 0u64);
    // SAFETY: both pointers are valid for writes; the shim catches every C++ exception.
    (unsafe { strata_cuda_allocated(index as i32, &mut current, &mut peak) } == 0).then_some((current, peak))
}

/// This process's peak resident set size (`VmHWM`): everything it ever held at once, libtorch
/// and the data included. `None` where `/proc` is not available.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_bytes("VmHWM:")
}

/// This process's resident set size now (`VmRSS`).
pub fn rss_bytes() -> Option<u64> {
    proc_status_bytes("VmRSS:")
}

/// "resident R MiB, peak P MiB", for logs that follow where memory goes phase by phase.
pub fn rss_summary() -> String {
    format!("resident {} MiB, peak {} MiB", rss_bytes().unwrap_or(0) >> 20, peak_rss_bytes().unwrap_or(0) >> 20)
}

/// Memory this process may still take: the least of what the host can hand out without
/// swapping (`MemAvailable`), what its memory cgroup leaves (v2 `memory.max`, v1
/// `memory.limit_in_bytes`, less what the group uses) and what its own limits leave
/// ([`process_headroom_bytes`]). `None` where `/proc/meminfo` is not available.
pub fn available_bytes() -> Option<u64> {
    let host = host_available_bytes()?;
    Some(process_headroom_bytes().map_or(host, |p| p.min(host)))
}

/// What the host and this process's memory cgroup can still hand out, shared by every process
/// on it: `MemAvailable`, capped by the cgroup's limit less its use.
pub fn host_available_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let host = line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024;
    Some(cgroup_headroom_bytes().map_or(host, |c| c.min(host)))
}

/// What this process's own limits leave it: `ulimit -d` (RLIMIT_DATA, against `VmData`) and
/// `ulimit -v` (RLIMIT_AS, against `VmSize`), the smaller; `None` where both are unlimited.
/// A process a launcher starts inherits the limits but not the use, so this is per process.
pub fn process_headroom_bytes() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    [("Max data size", "VmData:"), ("Max address space", "VmSize:")]
        .into_iter()
        .filter_map(|(limit, used)| Some(soft_limit(&limits, limit)?.saturating_sub(proc_status_bytes(used)?)))
        .min()
}

/// The soft limit of `name` in a `/proc/PID/limits` text; `None` when unlimited or absent.
fn soft_limit(limits: &str, name: &str) -> Option<u64> {
    let rest = limits.lines().find_map(|l| l.strip_prefix(name))?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The memory cgroup's limit less its use, for cgroup v2 and v1, at this process's group (as
/// `/proc/self/cgroup` names it) or, in a container's own cgroup namespace, the mount's root.
/// `None` where no limit is set.
fn cgroup_headroom_bytes() -> Option<u64> {
    let groups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let path = |controller: &str| {
        groups.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, c, p) = (f.next()?, f.next()?, f.next()?);
            (c == controller).then(|| p.to_string())
        })
    };
    let read = |p: String| std::fs::read_to_string(p).ok()?.trim().parse::<u64>().ok();
    let mut found = Vec::new();
    for (dir, limit, usage) in [
        (path("").map(|p| format!("/sys/fs/cgroup{p}")), "memory.max", "memory.current"),
        (path("memory").map(|p| format!("/sys/fs/cgroup/memory{p}")), "memory.limit_in_bytes", "memory.usage_in_bytes"),
        (Some("/sys/fs/cgroup".into()), "memory.max", "memory.current"),
        (Some("/sys/fs/cgroup/memory".into()), "memory.limit_in_bytes", "memory.usage_in_bytes"),
    ] {
        let Some(dir) = dir else { continue };
        // v1 writes "no limit" as a page-rounded i64::MAX; v2 as "max", which does not parse.
        if let (Some(l), Some(u)) = (read(format!("{dir}/{limit}")), read(format!("{dir}/{usage}"))) {
            if l < 1 << 60 {
                found.push(l.saturating_sub(u));
            }
        }
    }
    found.into_iter().min()
}

fn proc_status_bytes(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// The CUDA caching allocator's peak bytes on `device` since the process started (or the
/// last [`MemoryMeter::start`]); 0 on CPU.
pub fn cuda_peak_bytes(device: Device) -> u64 {
    match device {
        Device::Cuda(i) => cuda_allocated(i).map_or(0, |(_, peak)| peak),
        _ => 0,
    }
}

/// Measures one training run's peak memory on `device`.
pub struct MemoryMeter {
    device: Device,
    base: u64,
}

impl MemoryMeter {
    pub fn start(device: Device) -> MemoryMeter {
        let base = match device {
            Device::Cuda(i) => {
                // SAFETY: plain call; errors come back as a status.
                unsafe { strata_cuda_reset_peak(i as i32) };
                cuda_allocated(i).map_or(0, |(current, _)| current)
            }
            _ => {
                let now = heap_in_use();
                HEAP_PEAK.store(now, Ordering::Relaxed);
                now
            }
        };
        MemoryMeter { device, base }
    }

    /// Peak bytes above the starting point.
    pub fn peak_bytes(&self) -> u64 {
        let peak = match self.device {
            Device::Cuda(i) => cuda_allocated(i).map_or(0, |(_, peak)| peak),
            _ => {
                sample();
                HEAP_PEAK.load(Ordering::Relaxed)
            }
        };
        peak.saturating_sub(self.base)
    }

    /// How the peak was measured, for reports.
    pub fn method(&self) -> &'static str {
        match self.device {
            Device::Cuda(_) => "cuda caching allocator peak",
            _ => "heap high-water mark sampled after each forward pass",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    /// A 64 MiB tensor alive at a sample point shows up in the peak; after it is dropped the
    /// peak stays. The meter reads the process's heap, and this binary's other tests allocate
    /// and free beside it (models of a few MiB): the bounds leave them 8 MiB either way.
    #[test]
    fn cpu_meter_sees_a_large_live_tensor() {
        let meter = MemoryMeter::start(Device::Cpu);
        let t = Tensor::ones([16 << 20], (Kind::Float, Device::Cpu));
        sample();
        drop(t);
        let peak = meter.peak_bytes();
        assert!(peak >= 56 << 20, "{peak}");
        assert!(peak < 96 << 20, "{peak}");
        let rss = peak_rss_bytes().unwrap();
        assert!(rss >= 64 << 20, "the process held the tensor: {rss}");
    }

    /// `/proc/self/limits` as Linux writes it: a set soft limit is read, "unlimited" is none.
    #[test]
    fn soft_limits_are_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max data size             1073741824           unlimited            bytes     \n\
                    Max address space         unlimited            unlimited            bytes     \n";
        assert_eq!(soft_limit(text, "Max data size"), Some(1 << 30));
        assert_eq!(soft_limit(text, "Max address space"), None);
        assert_eq!(soft_limit(text, "Max resident set"), None);
    }
}
