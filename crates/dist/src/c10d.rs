//! torch.distributed's C++ engine (c10d) through the C shim in `csrc/c10d.cpp`: a TCPStore
//! rendezvous and one process group, Gloo on host memory or NCCL on one CUDA device.
//!
//! The NCCL group stages through host memory: every call copies the host buffer to the
//! group's device, runs the collective there and copies the result back.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr::{NonNull, null_mut};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::Collective;
use crate::env::Rendezvous;
use crate::error::DistError;

unsafe extern "C" {
    fn dissect_string_free(s: *mut c_char);
    fn dissect_has_nccl() -> c_int;
    #[allow(clippy::too_many_arguments)]
    fn dissect_pg_new(
        host: *const c_char,
        port: u16,
        rank: c_int,
        world: c_int,
        is_store_server: c_int,
        timeout_ms: i64,
        backend: c_int,
        cuda_device: c_int,
        err: *mut *mut c_char,
    ) -> *mut c_void;
    fn dissect_pg_free(pg: *mut c_void);
    fn dissect_pg_all_reduce_sum_f32(pg: *mut c_void, data: *mut f32, n: i64, err: *mut *mut c_char) -> c_int;
    fn dissect_pg_all_gather(
        pg: *mut c_void,
        local: *const c_void,
        n: i64,
        dtype: c_int,
        out: *mut c_void,
        err: *mut *mut c_char,
    ) -> c_int;
    fn dissect_pg_broadcast_f32(pg: *mut c_void, data: *mut f32, n: i64, root: c_int, err: *mut *mut c_char) -> c_int;
    fn dissect_pg_barrier(pg: *mut c_void, err: *mut *mut c_char) -> c_int;
}

/// The longest timeout handed to c10d (a year, in ms): longer ones mean "never" anyway.
const MAX_TIMEOUT_MS: i64 = 365 * 24 * 3600 * 1000;

/// Which c10d backend carries the collectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Gloo over TCP, on host memory: any machine.
    Gloo,
    /// NCCL on CUDA device `device` (usually the process's local rank); buffers are staged
    /// through it. Only in builds whose libtorch had libtorch_cuda and NCCL's headers
    /// ([`ProcessGroup::has_nccl`]).
    Nccl {
        /// The CUDA device index.
        device: usize,
    },
}

/// The shim's owning pointer to a c10d group (its store and backend).
struct Handle(NonNull<c_void>);

// SAFETY: the C++ group is not bound to the thread that made it: the store and the backend
// are ordinary heap objects (Gloo runs the collectives on its own worker threads, NCCL names
// its device explicitly on every call), so it may move to and be used from another thread.
// `ProcessGroup` keeps it in a Mutex, so it is used by one thread at a time, as c10d requires
// of a process group whose collectives must be issued in the same order on every process.
unsafe impl Send for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the pointer came from dissect_pg_new and is freed once, here.
        unsafe { dissect_pg_free(self.0.as_ptr()) }
    }
}

/// One process's membership of a c10d process group: the job's collectives, between
/// processes that may be on other machines.
///
/// Every process of the job makes one with the same [`Rendezvous`] address and world size;
/// rank 0 serves the rendezvous store (unless the launcher does) and [`ProcessGroup::connect`]
/// returns once every process has joined, or fails after the rendezvous timeout. Each
/// collective waits at most that timeout too, and fails (rather than hangs) when a peer dies.
pub struct ProcessGroup {
    handle: Mutex<Handle>,
    rank: usize,
    world_size: usize,
    timeout: Duration,
    backend: Backend,
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .field("timeout", &self.timeout)
            .field("backend", &self.backend)
            .finish()
    }
}

/// Element types the shim gathers, numbered as it numbers them.
trait Element: Copy + Default {
    const CODE: c_int;
}
impl Element for f32 {
    const CODE: c_int = 0;
}
impl Element for u8 {
    const CODE: c_int = 1;
}
impl Element for i64 {
    const CODE: c_int = 2;
}

/// Takes the shim's error message (and frees it).
fn take_error(err: *mut c_char) -> String {
    if err.is_null() {
        return "the c10d shim failed without a message".to_string();
    }
    // SAFETY: a non-null err is the NUL-terminated copy the shim malloc'd for us; it is read
    // once and then freed by the shim's own free.
    unsafe {
        let message = CStr::from_ptr(err).to_string_lossy().into_owned();
        dissect_string_free(err);
        message
    }
}

/// A length for the shim (slices never exceed isize::MAX elements, so this cannot fail).
fn count(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}

impl ProcessGroup {
    /// Whether this build compiled torch's ProcessGroupNCCL in (else only [`Backend::Gloo`]).
    pub fn has_nccl() -> bool {
        // SAFETY: a constant of the shim, no arguments.
        unsafe { dissect_has_nccl() != 0 }
    }

    /// Joins the job described by `rendezvous` with `backend`: connects to (or, on rank 0,
    /// serves) the TCP store at `MASTER_ADDR:MASTER_PORT`, then sets up the process group.
    /// Blocks until every process has joined; [`DistError::Connect`] when they have not
    /// within `rendezvous.timeout`, or the store cannot be reached or served.
    pub fn connect(rendezvous: &Rendezvous, backend: Backend) -> Result<Self, DistError> {
        let address = rendezvous.address();
        let fail = |reason: String| DistError::Connect { address: address.clone(), reason };
        if rendezvous.world_size == 0 || rendezvous.rank >= rendezvous.world_size {
            return Err(DistError::Rank { rank: rendezvous.rank, world_size: rendezvous.world_size });
        }
        let (backend_code, device) = match backend {
            Backend::Gloo => (0, 0),
            Backend::Nccl { .. } if !Self::has_nccl() => {
                return Err(fail(
                    "this build of dissect-dist has no NCCL (its build found no libtorch_cuda or no NCCL/CUDA \
                     headers; see the build warnings); use the Gloo backend"
                        .to_string(),
                ));
            }
            Backend::Nccl { device } => (1, device),
        };
        let host = CString::new(rendezvous.master_addr.as_str())
            .map_err(|_| fail("MASTER_ADDR contains a NUL byte".to_string()))?;
        let int = |what: &str, n: usize| c_int::try_from(n).map_err(|_| fail(format!("{what} {n} is too large")));
        let (rank, world, device) =
            (int("rank", rendezvous.rank)?, int("world size", rendezvous.world_size)?, int("device", device)?);
        // c10d reads a zero timeout as "wait forever", and adds the timeout to clock readings in
        // nanoseconds: the wait we pass is at least 1 ms and at most a year.
        let timeout_ms = i64::try_from(rendezvous.timeout.as_millis()).unwrap_or(i64::MAX).clamp(1, MAX_TIMEOUT_MS);
        // As torch's env:// rendezvous: rank 0 serves the store unless the launcher does.
        let is_server = c_int::from(!rendezvous.launcher_hosts_store && rendezvous.rank == 0);
        let mut err = null_mut();
        // SAFETY: host is a live NUL-terminated string; err is a valid out-pointer.
        let pg = unsafe {
            dissect_pg_new(
                host.as_ptr(),
                rendezvous.master_port,
                rank,
                world,
                is_server,
                timeout_ms,
                backend_code,
                device,
                &mut err,
            )
        };
        let handle = NonNull::new(pg).ok_or_else(|| fail(take_error(err)))?;
        Ok(ProcessGroup {
            handle: Mutex::new(Handle(handle)),
            rank: rendezvous.rank,
            world_size: rendezvous.world_size,
            timeout: rendezvous.timeout,
            backend,
        })
    }

    /// The backend this group runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// How long a collective may wait for its peers.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn error(&self, operation: &'static str, reason: String) -> DistError {
        DistError::Collective { operation, timeout_s: self.timeout.as_secs(), reason }
    }

    /// The group, for one call at a time. A poisoned lock only means another thread panicked
    /// while holding it, between whole shim calls: the group itself is still consistent.
    fn lock(&self) -> MutexGuard<'_, Handle> {
        self.handle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs one shim call on the group, turning its failure into [`DistError::Collective`].
    fn call(
        &self,
        operation: &'static str,
        shim: impl FnOnce(*mut c_void, *mut *mut c_char) -> c_int,
    ) -> Result<(), DistError> {
        let handle = self.lock();
        let mut err = null_mut();
        match shim(handle.0.as_ptr(), &mut err) {
            0 => Ok(()),
            _ => Err(self.error(operation, take_error(err))),
        }
    }

    /// Gathers `local.len()` elements from every rank into `out` (`world_size` times as
    /// long), in rank order; every rank must pass the same length.
    fn gather_equal<T: Element>(&self, operation: &'static str, local: &[T], out: &mut [T]) -> Result<(), DistError> {
        debug_assert_eq!(out.len(), local.len() * self.world_size);
        self.call(operation, |pg, err| {
            // SAFETY: local is readable for its length and out writable for world_size times
            // that, as the shim writes; both outlive the blocking call.
            unsafe {
                dissect_pg_all_gather(
                    pg,
                    local.as_ptr().cast(),
                    count(local.len()),
                    T::CODE,
                    out.as_mut_ptr().cast(),
                    err,
                )
            }
        })
    }

    /// Every rank's `local`, whose lengths may differ: the lengths are gathered first, then
    /// every rank's data padded to the longest, gathered at once and trimmed.
    fn gather_varying<T: Element>(&self, operation: &'static str, local: &[T]) -> Result<Vec<Vec<T>>, DistError> {
        let mut lengths = vec![0i64; self.world_size];
        self.gather_equal(operation, &[count(local.len())], &mut lengths)?;
        let lengths = lengths
            .into_iter()
            .map(|n| usize::try_from(n).map_err(|_| self.error(operation, format!("a peer sent the length {n}"))))
            .collect::<Result<Vec<usize>, _>>()?;
        let longest = lengths.iter().copied().max().unwrap_or(0);
        // Every rank sees the same lengths, so all skip (or none does) together.
        if longest == 0 {
            return Ok(vec![Vec::new(); self.world_size]);
        }
        let total = longest.checked_mul(self.world_size).ok_or_else(|| {
            self.error(operation, format!("{longest} elements from each of {} ranks", self.world_size))
        })?;
        let mut padded = local.to_vec();
        padded.resize(longest, T::default());
        let mut out = vec![T::default(); total];
        self.gather_equal(operation, &padded, &mut out)?;
        Ok(out.chunks_exact(longest).zip(lengths).map(|(slot, n)| slot[..n].to_vec()).collect())
    }
}

impl Collective for ProcessGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world_size
    }

    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<(), DistError> {
        // Every rank passes the same length, so all skip an empty buffer together.
        if data.is_empty() {
            return Ok(());
        }
        self.call("all_reduce_sum", |pg, err| {
            // SAFETY: data is writable for its length for the whole blocking call.
            unsafe { dissect_pg_all_reduce_sum_f32(pg, data.as_mut_ptr(), count(data.len()), err) }
        })
    }

    fn all_gather(&self, local: &[f32]) -> Result<Vec<Vec<f32>>, DistError> {
        self.gather_varying("all_gather", local)
    }

    /// Bytes travel as c10d's uint8 elements: losslessly, one byte each.
    fn all_gather_bytes(&self, local: &[u8]) -> Result<Vec<Vec<u8>>, DistError> {
        self.gather_varying("all_gather_bytes", local)
    }

    fn broadcast(&self, data: &mut [f32], root: usize) -> Result<(), DistError> {
        if root >= self.world_size {
            return Err(DistError::Rank { rank: root, world_size: self.world_size });
        }
        if data.is_empty() {
            return Ok(());
        }
        // root < world_size, which connect checked fits a c_int.
        let root = c_int::try_from(root).unwrap_or(c_int::MAX);
        self.call("broadcast", |pg, err| {
            // SAFETY: data is writable for its length for the whole blocking call.
            unsafe { dissect_pg_broadcast_f32(pg, data.as_mut_ptr(), count(data.len()), root, err) }
        })
    }

    fn barrier(&self) -> Result<(), DistError> {
        // SAFETY: the shim needs only the group.
        self.call("barrier", |pg, err| unsafe { dissect_pg_barrier(pg, err) })
    }
}
