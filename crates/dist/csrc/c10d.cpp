// A C interface to torch.distributed's C++ engine (c10d) for dissect-dist: a TCPStore
// rendezvous and one process group (Gloo on host memory, or NCCL on one CUDA device).
//
// Nothing C++ crosses the boundary: the group is an opaque pointer, buffers are raw host
// pointers with element counts, and every function catches every exception, returning nonzero
// with a malloc'd message in *err that the caller frees with dissect_string_free.
//
// Host buffers are wrapped with at::from_blob (no copy). The NCCL group stages through host
// memory: each call copies the buffer to a tensor on the group's device, runs the collective
// there and copies the result back, because the trainer's buffers live on the host.

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#ifdef DISSECT_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

// Element types of dissect_pg_all_gather, as the Rust side numbers them.
constexpr int kFloat32 = 0;
constexpr int kUInt8 = 1;
constexpr int kInt64 = 2;

// Backends of dissect_pg_new, as the Rust side numbers them.
constexpr int kGloo = 0;
constexpr int kNccl = 1;

struct Group {
  // Kept so that rank 0's store server outlives the group (the backend holds only a client's
  // view through the PrefixStore, which also keeps it alive; holding it here says so).
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout{0};
  int world = 1;
  // -1 for host memory (Gloo); otherwise the CUDA device the NCCL group drives.
  int cuda_device = -1;
  // Whether a collective has failed: then freeing the group does not wait for its work.
  bool failed = false;
};

void set_error(char** err, const char* message) {
  if (err == nullptr) {
    return;
  }
  // strdup allocates with malloc; dissect_string_free releases it with free.
  *err = strdup(message != nullptr ? message : "(no message)");
}

// Runs f, turning any exception into a nonzero return and a message. c10::Error's what()
// carries a C++ backtrace of torch's internals, useless to the Rust caller: the message alone.
template <typename F>
int guarded(char** err, F&& f) {
  try {
    f();
    return 0;
  } catch (const c10::Error& e) {
    set_error(err, e.what_without_backtrace());
  } catch (const std::exception& e) {
    set_error(err, e.what());
  } catch (...) {
    set_error(err, "unknown C++ exception");
  }
  return 1;
}

at::ScalarType scalar_type(int dtype) {
  switch (dtype) {
    case kFloat32:
      return at::kFloat;
    case kUInt8:
      return at::kByte;
    case kInt64:
      return at::kLong;
    default:
      TORCH_CHECK(false, "unknown element type code ", dtype);
  }
}

// A view of n host elements at data, without a copy.
at::Tensor host_tensor(void* data, int64_t n, at::ScalarType type) {
  return at::from_blob(data, {n}, at::TensorOptions().dtype(type).device(at::kCPU));
}

// The tensor the backend works on: the host view itself, or its copy on the group's device.
at::Tensor on_device(const Group& g, const at::Tensor& host) {
  if (g.cuda_device < 0) {
    return host;
  }
  return host.to(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(g.cuda_device)));
}

// Copies a device result back into the caller's host buffer (nothing to do for Gloo).
void to_host(const Group& g, const at::Tensor& device, at::Tensor& host) {
  if (g.cuda_device >= 0) {
    host.copy_(device);
  }
}

// Waits for the work with the group's timeout, blocking this thread: an error or the
// timeout throws. (Given a timeout, NCCL's wait blocks the CPU too, rather than only making
// the current stream wait.)
void wait(Group& g, const c10::intrusive_ptr<c10d::Work>& work) {
  try {
    work->wait(g.timeout);
  } catch (...) {
    g.failed = true;
    if (g.cuda_device >= 0) {
      // A failed or timed-out NCCL collective leaves its kernel waiting for the missing
      // peer: abort the communicators so that neither the device nor later calls hang on it
      // (they fail at once instead).
      try {
        g.backend->abort();
      } catch (...) {
      }
    }
    throw;
  }
}

c10::intrusive_ptr<c10d::Store> make_store(
    const char* host,
    uint16_t port,
    int world,
    bool is_server,
    std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions opts;
  opts.port = port;
  opts.isServer = is_server;
  opts.numWorkers = static_cast<std::size_t>(world);
  // As Python's TCPStore: the server's constructor waits for every process to connect, so a
  // job whose peers never start fails here, naming the store, after the timeout.
  opts.waitWorkers = true;
  opts.timeout = timeout;
  // As torch's env:// rendezvous: another group of this process may already serve the port.
  opts.multiTenant = is_server;
  return c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
}

c10::intrusive_ptr<c10d::Backend> make_gloo(
    const c10::intrusive_ptr<c10d::Store>& store,
    int rank,
    int world,
    std::chrono::milliseconds timeout) {
  // create_default is what Python's ProcessGroupGloo(store, rank, size, timeout) uses: one
  // TCP device per interface in GLOO_SOCKET_IFNAME, else one bound to the address this
  // machine's hostname resolves to (the loopback address when it resolves to nothing).
  auto opts = c10d::ProcessGroupGloo::Options::create_default(timeout);
  opts->group_name = "dissect";
  // The constructor connects the full mesh through the store, failing after the timeout.
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);
}

#ifdef DISSECT_NCCL
c10::intrusive_ptr<c10d::Backend> make_nccl(
    const c10::intrusive_ptr<c10d::Store>& store,
    int rank,
    int world,
    std::chrono::milliseconds timeout,
    int device) {
  TORCH_CHECK(
      device >= 0 && device < static_cast<int>(c10::cuda::device_count()),
      "CUDA device ",
      device,
      " does not exist (this process sees ",
      static_cast<int>(c10::cuda::device_count()),
      ")");
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  // Our own wait (see `wait`) fails a collective after `timeout`; NCCL's watchdog, which by
  // default ends the whole process on a timeout (TORCH_NCCL_ASYNC_ERROR_HANDLING), is left
  // as the backstop for a hang elsewhere, so it gets twice as long.
  opts->timeout = timeout * 2;
  opts->group_name = "dissect";
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, opts);
}
#endif

Group* new_group(
    const char* host,
    uint16_t port,
    int rank,
    int world,
    bool is_server,
    int64_t timeout_ms,
    int backend,
    int cuda_device) {
  TORCH_CHECK(host != nullptr, "no host");
  TORCH_CHECK(world > 0 && rank >= 0 && rank < world, "rank ", rank, " of ", world);
  TORCH_CHECK(backend == kGloo || backend == kNccl, "unknown backend code ", backend);
#ifndef DISSECT_NCCL
  TORCH_CHECK(backend != kNccl, "this build of dissect-dist has no NCCL");
#endif
  std::chrono::milliseconds timeout(timeout_ms);
  auto group = std::make_unique<Group>();
  group->store = make_store(host, port, world, is_server, timeout);
  // A prefix of ours keeps our keys apart from other users of a shared store (torchrun's
  // agent store, or a Python process group of the same job).
  auto prefixed = c10::make_intrusive<c10d::PrefixStore>("dissect/", group->store);
  group->timeout = timeout;
  group->world = world;
  if (backend == kGloo) {
    group->backend = make_gloo(prefixed, rank, world, timeout);
  } else {
#ifdef DISSECT_NCCL
    group->backend = make_nccl(prefixed, rank, world, timeout, cuda_device);
    group->cuda_device = cuda_device;
#endif
  }
  return group.release();
}

} // namespace

extern "C" {

void dissect_string_free(char* s) {
  free(s);
}

// 1 when this shim was compiled with ProcessGroupNCCL.
int dissect_has_nccl(void) {
#ifdef DISSECT_NCCL
  return 1;
#else
  return 0;
#endif
}

// Joins the job: the TCP store at host:port (served by this process when is_store_server),
// then the process group. Null with *err set on failure.
void* dissect_pg_new(
    const char* host,
    uint16_t port,
    int rank,
    int world,
    int is_store_server,
    int64_t timeout_ms,
    int backend,
    int cuda_device,
    char** err) {
  Group* group = nullptr;
  guarded(err, [&] {
    group = new_group(
        host, port, rank, world, is_store_server != 0, timeout_ms, backend, cuda_device);
  });
  return group;
}

void dissect_pg_free(void* pg) {
  auto* group = static_cast<Group*>(pg);
  // As Python's destroy_process_group: shut the backend down (NCCL destroys its
  // communicators) unless a collective failed, when only an abort cannot hang. The
  // destructor then joins the backend's threads. Nothing here could be reported.
  try {
    if (group != nullptr && group->backend) {
      if (group->failed) {
        group->backend->abort();
      } else {
        group->backend->shutdown();
      }
    }
  } catch (...) {
  }
  try {
    delete group;
  } catch (...) {
  }
}

// data[0..n] <- its sum over all ranks.
int dissect_pg_all_reduce_sum_f32(void* pg, float* data, int64_t n, char** err) {
  return guarded(err, [&] {
    Group& g = *static_cast<Group*>(pg);
    at::Tensor host = host_tensor(data, n, at::kFloat);
    std::vector<at::Tensor> tensors{on_device(g, host)};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    opts.timeout = g.timeout;
    wait(g, g.backend->allreduce(tensors, opts));
    to_host(g, tensors[0], host);
  });
}

// out[r*n .. (r+1)*n] <- rank r's local[0..n], for every rank r; n is the same everywhere.
int dissect_pg_all_gather(
    void* pg,
    const void* local,
    int64_t n,
    int dtype,
    void* out,
    char** err) {
  return guarded(err, [&] {
    Group& g = *static_cast<Group*>(pg);
    at::ScalarType type = scalar_type(dtype);
    // from_blob wants a mutable pointer; the input is only read.
    at::Tensor input = on_device(g, host_tensor(const_cast<void*>(local), n, type));
    at::Tensor host_out = host_tensor(out, n * g.world, type);
    at::Tensor output = on_device(g, host_out);
    c10d::AllgatherOptions opts;
    opts.timeout = g.timeout;
    // The one-tensor form (all_gather_into_tensor): rank r's data lands at output[r*n..].
    wait(g, g.backend->_allgather_base(output, input, opts));
    to_host(g, output, host_out);
  });
}

// data[0..n] <- rank root's data[0..n].
int dissect_pg_broadcast_f32(void* pg, float* data, int64_t n, int root, char** err) {
  return guarded(err, [&] {
    Group& g = *static_cast<Group*>(pg);
    at::Tensor host = host_tensor(data, n, at::kFloat);
    std::vector<at::Tensor> tensors{on_device(g, host)};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.rootTensor = 0;
    opts.timeout = g.timeout;
    wait(g, g.backend->broadcast(tensors, opts));
    to_host(g, tensors[0], host);
  });
}

// Returns once every rank has called it.
int dissect_pg_barrier(void* pg, char** err) {
  return guarded(err, [&] {
    Group& g = *static_cast<Group*>(pg);
    c10d::BarrierOptions opts;
    opts.timeout = g.timeout;
    if (g.cuda_device >= 0) {
      // NCCL's barrier is an all-reduce on a device: name ours rather than let it guess.
      opts.device_ids = {g.cuda_device};
    }
    wait(g, g.backend->barrier(opts));
  });
}

} // extern "C"
