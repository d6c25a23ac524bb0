//! Process-wide allocator settings for tensor work on the CPU.

/// Keeps freed tensor buffers inside the process, so that the next op reuses them.
///
/// glibc serves an allocation above its mmap threshold with a fresh `mmap`, and gives the top of
/// its heap back to the kernel once more than the trim threshold is free there. Burn's `flex`
/// backend allocates and frees activations of several megabytes in every op, so without this many
/// of them arrive as new pages that the kernel zeroes on first touch: page faults were 13% of a
/// `tiny` full step under `perf`, and these two settings took that step from 1.74–1.80 s to
/// 1.35–1.36 s on 2 cores (bench/README.md). The threshold is glibc's maximum (32 MiB on
/// 64-bit); larger tensors are still mapped and unmapped. The cost: memory freed while the
/// process runs is kept for reuse instead of returned to the OS, so resident memory stays near
/// its peak, which a trainer reaches every step anyway.
///
/// Call it first thing in `main`, before threads start. Returns whether the allocator took both
/// settings; it is a speed setting only, so a `false` needs no handling. Does nothing (and returns
/// `false`) where the allocator is not glibc's.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD_MAX: libc::c_int = 32 << 20;
        // SAFETY: mallopt only changes the allocator's tuning parameters; it takes the arena lock.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_both_settings() {
        // Both values are within glibc's bounds: a threshold above 32 MiB would be refused.
        assert!(keep_freed_memory());
    }
}
