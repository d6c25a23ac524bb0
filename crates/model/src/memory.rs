//! Process-wide allocator settings for tensor work on the CPU.

/// Keeps freed tensor buffers inside the process, so that the next op reuses them.
///
/// glibc serves an allocation above its mmap threshold (at most 32 MiB on 64-bit) with a fresh
/// `mmap` and unmaps it when freed, and gives the top of its heap back to the kernel once more
/// than the trim threshold is free there. Burn's `flex` backend allocates and frees activations
/// of several megabytes in every op, so many of them arrived as new pages that the kernel zeroes
/// on first touch: page faults were 13% of a `tiny` full step under `perf`. Here glibc never
/// maps a block of its own (every allocation comes from its heaps, where freed blocks are
/// reused) and never trims. On 2 cores the `tiny` step went from 1.74–1.80 s to 1.35–1.36 s
/// with the trim threshold and the largest mmap threshold, and from 1.56–1.58 s to 1.24–1.26 s
/// when mapping was turned off as well: the `tiny` MLP's activations at batch 256 (34 MB) are
/// above the largest threshold (bench/README.md). The cost: memory freed while the process runs
/// is kept for reuse instead of returned to the OS, so resident memory stays near its peak,
/// which a trainer reaches every step anyway (the `tiny` step's peak was 1.05 GB against 1.03).
///
/// Call it first thing in `main`, before threads start. Returns whether the allocator took both
/// settings; it is a speed setting only, so a `false` needs no handling. Does nothing (and returns
/// `false`) where the allocator is not glibc's.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes the allocator's tuning parameters; it takes the arena lock.
        // With no mmap allowed, a request a thread's arena cannot hold is retried on the main
        // heap, which grows with brk (and falls back to mapping only if brk fails).
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1
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
        // Both values are within glibc's bounds.
        assert!(keep_freed_memory());
    }
}
