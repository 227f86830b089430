// odyssey_bench_nccl: NCCL all-reduce, all-gather, reduce-scatter, all-to-all, broadcast, reduce
// and send/recv over every local GPU (one process, ncclCommInitAll), or over every rank of an
// MPI job (one GPU per rank, across nodes) when built with MPI and launched under mpirun.
// Sizes, algbw and busbw follow nccl-tests' definitions (doc/PERFORMANCE.md of nccl-tests).
// Writes a raw result file (kernels/README.md).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include <nccl.h>
#include <unistd.h>
#ifdef ODYSSEY_BENCH_MPI
#include <mpi.h>
#endif

#include "kernels/bench_common.hpp"

namespace odyssey::bench {
namespace {

constexpr const char* TOOL = "odyssey_bench_nccl";

void check_nccl(ncclResult_t r, const char* call, const char* file, int line) {
  if (r != ncclSuccess) fail_call("NCCL", call, file, line, ncclGetErrorString(r));
}
#define ODY_NCCL(call) check_nccl((call), #call, __FILE__, __LINE__)

#ifdef ODYSSEY_BENCH_MPI
void check_mpi(int r, const char* call, const char* file, int line) {
  if (r != MPI_SUCCESS) fail_call("MPI", call, file, line, "error " + std::to_string(r));
}
#define ODY_MPI(call) check_mpi((call), #call, __FILE__, __LINE__)
#endif

enum class Op { ALL_REDUCE, ALL_GATHER, REDUCE_SCATTER, ALL_TO_ALL, BROADCAST, REDUCE, SEND_RECV };

struct OpInfo {
  Op op;
  const char* name; ///< as odyssey collective --op names it
};

constexpr OpInfo OPS[] = {
    {Op::ALL_REDUCE, "all-reduce"}, {Op::ALL_GATHER, "all-gather"}, {Op::REDUCE_SCATTER, "reduce-scatter"},
    {Op::ALL_TO_ALL, "all-to-all"}, {Op::BROADCAST, "broadcast"},   {Op::REDUCE, "reduce"},
    {Op::SEND_RECV, "send-recv"}};

/// nccl-tests' bus bandwidth factor (busbw = algbw x factor).
double bus_factor(Op op, int n) {
  switch (op) {
  case Op::ALL_REDUCE: return 2.0 * (n - 1) / n;
  case Op::ALL_GATHER:
  case Op::REDUCE_SCATTER:
  case Op::ALL_TO_ALL: return double(n - 1) / n;
  case Op::BROADCAST:
  case Op::REDUCE:
  case Op::SEND_RECV: return 1.0;
  }
  return 1.0;
}

/// Elements per rank-level call for a message of `bytes` (nccl-tests' "size"): the whole buffer
/// for all-reduce, broadcast, reduce and send/recv; one rank's share for all-gather,
/// reduce-scatter and all-to-all (per peer). 0 when the size is too small to split.
std::size_t count_for(Op op, std::size_t bytes, int n) {
  const std::size_t elems = bytes / sizeof(float);
  switch (op) {
  case Op::ALL_GATHER:
  case Op::REDUCE_SCATTER:
  case Op::ALL_TO_ALL: return elems / n;
  default: return elems;
  }
}

/// The size nccl-tests prints for `count` elements.
std::size_t size_for(Op op, std::size_t count, int n) {
  const std::size_t b = count * sizeof(float);
  switch (op) {
  case Op::ALL_GATHER:
  case Op::REDUCE_SCATTER:
  case Op::ALL_TO_ALL: return b * n;
  default: return b;
  }
}

/// One GPU of this process.
struct LocalRank {
  int device = 0;
  int rank = 0; ///< rank in the communicator
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  void* send = nullptr;
  void* recv = nullptr;
  cudaEvent_t start = nullptr;
  cudaEvent_t stop = nullptr;
};

void issue(Op op, const LocalRank& r, std::size_t count, int n) {
  float* s = static_cast<float*>(r.send);
  float* d = static_cast<float*>(r.recv);
  switch (op) {
  case Op::ALL_REDUCE: ODY_NCCL(ncclAllReduce(s, d, count, ncclFloat, ncclSum, r.comm, r.stream)); break;
  case Op::ALL_GATHER: ODY_NCCL(ncclAllGather(s, d, count, ncclFloat, r.comm, r.stream)); break;
  case Op::REDUCE_SCATTER:
    ODY_NCCL(ncclReduceScatter(s, d, count, ncclFloat, ncclSum, r.comm, r.stream));
    break;
  case Op::BROADCAST: ODY_NCCL(ncclBroadcast(s, d, count, ncclFloat, 0, r.comm, r.stream)); break;
  case Op::REDUCE: ODY_NCCL(ncclReduce(s, d, count, ncclFloat, ncclSum, 0, r.comm, r.stream)); break;
  case Op::ALL_TO_ALL:
    ODY_NCCL(ncclGroupStart());
    for (int peer = 0; peer < n; ++peer) {
      ODY_NCCL(ncclSend(s + peer * count, count, ncclFloat, peer, r.comm, r.stream));
      ODY_NCCL(ncclRecv(d + peer * count, count, ncclFloat, peer, r.comm, r.stream));
    }
    ODY_NCCL(ncclGroupEnd());
    break;
  case Op::SEND_RECV: // a ring: send to the next rank, receive from the previous (nccl-tests sendrecv)
    ODY_NCCL(ncclGroupStart());
    ODY_NCCL(ncclSend(s, count, ncclFloat, (r.rank + 1) % n, r.comm, r.stream));
    ODY_NCCL(ncclRecv(d, count, ncclFloat, (r.rank - 1 + n) % n, r.comm, r.stream));
    ODY_NCCL(ncclGroupEnd());
    break;
  }
}

class Communicator {
public:
  int ranks = 0;
  int nodes = 1;
  bool root = true; ///< this process writes the result file
  std::vector<LocalRank> local;

  /// The slowest rank's time, over every process.
  double max_over_ranks(double t) const {
#ifdef ODYSSEY_BENCH_MPI
    if (mpi_) {
      double m = 0.0;
      ODY_MPI(MPI_Allreduce(&t, &m, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
      return m;
    }
#endif
    return t;
  }
  void barrier() const {
#ifdef ODYSSEY_BENCH_MPI
    if (mpi_) ODY_MPI(MPI_Barrier(MPI_COMM_WORLD));
#endif
  }
  bool mpi_ = false;
};

/// `launches` back-to-back collectives on every local rank, timed with CUDA events on each
/// rank's stream; the time per launch of the slowest rank.
double timed(const Communicator& c, Op op, std::size_t count, int launches) {
  c.barrier();
  for (const LocalRank& r : c.local) {
    ODY_CUDA(cudaSetDevice(r.device));
    ODY_CUDA(cudaEventRecord(r.start, r.stream));
  }
  for (int i = 0; i < launches; ++i) {
    ODY_NCCL(ncclGroupStart());
    for (const LocalRank& r : c.local) {
      ODY_CUDA(cudaSetDevice(r.device));
      issue(op, r, count, c.ranks);
    }
    ODY_NCCL(ncclGroupEnd());
  }
  double slowest = 0.0;
  for (const LocalRank& r : c.local) {
    ODY_CUDA(cudaSetDevice(r.device));
    ODY_CUDA(cudaEventRecord(r.stop, r.stream));
  }
  for (const LocalRank& r : c.local) {
    ODY_CUDA(cudaEventSynchronize(r.stop));
    float ms = 0.0f;
    ODY_CUDA(cudaEventElapsedTime(&ms, r.start, r.stop));
    slowest = std::max(slowest, 1e-3 * ms / launches);
  }
  return c.max_over_ranks(slowest);
}

nlohmann::ordered_json run_size(const Communicator& c, Op op, const char* name, std::size_t count,
                                const TimingPolicy& policy) {
  // Every process sees the same (reduced) times, so all take the same decisions in the loop.
  const Timing t =
      sample_until_stable([&](int launches) { return timed(c, op, count, launches); }, policy, 100);
  const std::size_t bytes = size_for(op, count, c.ranks);
  const double algbw = double(bytes) / t.median_s / 1e9;
  nlohmann::ordered_json r;
  r["op"] = name;
  r["bytes"] = bytes;
  r["count"] = count;
  r["type"] = "float";
  r["ranks"] = c.ranks;
  r["nodes"] = c.nodes;
  r["status"] = "ok";
  r["time"] = t.to_json();
  r["algbw_gbps"] = algbw;
  r["busbw_gbps"] = algbw * bus_factor(op, c.ranks);
  return r;
}

int bench(int argc, char** argv) {
  const Args args(argc, argv, {"--min-bytes", "--max-bytes", "--ops", "--gpus"}, {});
  if (!start(args, TOOL,
             "--out FILE [--quick] [--ops all-reduce,...] [--min-bytes 8] [--max-bytes 4294967296]\n"
             "       [--gpus N]   (one process, N local GPUs; under mpirun: one GPU per rank)"))
    return 0;
  const std::size_t min_bytes = static_cast<std::size_t>(std::max(4L, args.get_long("--min-bytes", 8)));
  const std::size_t max_bytes =
      static_cast<std::size_t>(args.get_long("--max-bytes", args.quick() ? (64L << 20) : (4L << 30)));
  if (max_bytes < min_bytes) throw UsageError("--max-bytes must not be below --min-bytes");
  std::vector<const OpInfo*> ops;
  const char* all_ops = "all-reduce,all-gather,reduce-scatter,all-to-all,broadcast,reduce,send-recv";
  for (const std::string& name : args.get_list("--ops", all_ops)) {
    const OpInfo* found = nullptr;
    for (const OpInfo& o : OPS)
      if (name == o.name) found = &o;
    if (!found) throw UsageError("unknown collective '" + name + "'");
    ops.push_back(found);
  }

  int devices = 0;
  ODY_CUDA(cudaGetDeviceCount(&devices));
  Communicator c;
#ifdef ODYSSEY_BENCH_MPI
  int world = 1;
  int rank = 0;
  int mpi_started = 0;
  ODY_MPI(MPI_Initialized(&mpi_started));
  if (mpi_started) {
    ODY_MPI(MPI_Comm_size(MPI_COMM_WORLD, &world));
    ODY_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  }
  if (world > 1) {
    // One GPU per rank, chosen by the rank's index among the processes of its node.
    MPI_Comm node_comm;
    ODY_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node_comm));
    int local_rank = 0;
    int node_ranks = 1;
    ODY_MPI(MPI_Comm_rank(node_comm, &local_rank));
    ODY_MPI(MPI_Comm_size(node_comm, &node_ranks));
    int leaders = local_rank == 0 ? 1 : 0;
    ODY_MPI(MPI_Allreduce(MPI_IN_PLACE, &leaders, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
    ODY_MPI(MPI_Comm_free(&node_comm));
    if (node_ranks > devices)
      throw UsageError("this node runs " + std::to_string(node_ranks) + " ranks but has " +
                       std::to_string(devices) + " GPUs (one rank per GPU)");
    ncclUniqueId id;
    if (rank == 0) ODY_NCCL(ncclGetUniqueId(&id));
    ODY_MPI(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD));
    LocalRank r;
    r.device = local_rank;
    r.rank = rank;
    ODY_CUDA(cudaSetDevice(r.device));
    ODY_NCCL(ncclCommInitRank(&r.comm, world, id, rank));
    c.local.push_back(r);
    c.ranks = world;
    c.nodes = leaders;
    c.root = rank == 0;
    c.mpi_ = true;
  }
#endif
  if (c.local.empty()) {
    const int n = static_cast<int>(args.get_long("--gpus", devices));
    if (n < 1 || n > devices)
      throw UsageError("--gpus must be 1 to " + std::to_string(devices) + " (the GPUs of this node)");
    std::vector<int> list(n);
    std::vector<ncclComm_t> comms(n);
    for (int i = 0; i < n; ++i) list[i] = i;
    ODY_NCCL(ncclCommInitAll(comms.data(), n, list.data()));
    for (int i = 0; i < n; ++i) c.local.push_back(LocalRank{.device = i, .rank = i, .comm = comms[i]});
    c.ranks = n;
  }

  for (LocalRank& r : c.local) {
    ODY_CUDA(cudaSetDevice(r.device));
    ODY_CUDA(cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking));
    ODY_CUDA(cudaEventCreate(&r.start));
    ODY_CUDA(cudaEventCreate(&r.stop));
    const cudaError_t e1 = cudaMalloc(&r.send, max_bytes);
    const cudaError_t e2 = e1 == cudaSuccess ? cudaMalloc(&r.recv, max_bytes) : e1;
    if (e2 == cudaErrorMemoryAllocation)
      throw UsageError("two buffers of --max-bytes " + std::to_string(max_bytes) + " do not fit on GPU " +
                       std::to_string(r.device) + "; lower --max-bytes");
    ODY_CUDA(e2);
    fill_random(r.send, max_bytes / sizeof(float), ElementType::FP32, 12, r.stream);
    ODY_CUDA(cudaStreamSynchronize(r.stream));
  }

  const TimingPolicy policy = TimingPolicy::for_mode(args.quick());
  std::vector<nlohmann::ordered_json> results;
  if (c.ranks >= 2) {
    for (const OpInfo* o : ops) {
      for (std::size_t bytes = min_bytes; bytes <= max_bytes; bytes *= 2) {
        const std::size_t count = count_for(o->op, bytes, c.ranks);
        if (count == 0) continue;
        results.push_back(run_size(c, o->op, o->name, count, policy));
        if (c.root) std::fprintf(stderr, "\r%s: %s %zu B   ", TOOL, o->name, bytes);
      }
    }
    if (c.root) std::fprintf(stderr, "\n");
  }

  int nccl_version = 0;
  ODY_NCCL(ncclGetVersion(&nccl_version));
  const std::string nccl = std::to_string(nccl_version / 10000) + "." +
                           std::to_string((nccl_version / 100) % 100) + "." +
                           std::to_string(nccl_version % 100);
  std::string notes = std::to_string(c.ranks) + " ranks on " + std::to_string(c.nodes) + " node(s), " +
                      (c.mpi_ ? "one GPU per MPI rank" : "one process") +
                      "; float data, sum; busbw per nccl-tests";
  if (c.ranks < 2) notes += "; one GPU only: no collective measured";
  if (c.root)
    write_raw(args.out(), "nccl", provenance(c.local.front().device, TOOL, {{"nccl", nccl}}, notes), policy,
              results);

  for (LocalRank& r : c.local) {
    ODY_CUDA(cudaSetDevice(r.device));
    ODY_NCCL(ncclCommDestroy(r.comm));
    ODY_CUDA(cudaFree(r.send));
    ODY_CUDA(cudaFree(r.recv));
    ODY_CUDA(cudaEventDestroy(r.start));
    ODY_CUDA(cudaEventDestroy(r.stop));
    ODY_CUDA(cudaStreamDestroy(r.stream));
  }
  return 0;
}

} // namespace
} // namespace odyssey::bench

#ifdef ODYSSEY_BENCH_MPI
namespace {
/// True when a process manager started this process as one rank of a job (mpirun, srun, hydra).
/// A process started by hand runs on its node's GPUs without MPI: Open MPI's singleton start
/// forks a helper daemon, and where that is refused (containers, CI sandboxes) MPI_Init aborts
/// the process with a page of messages instead of our one-line error.
bool launched_as_rank() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (std::getenv(var) != nullptr) return true;
  return false;
}
} // namespace
#endif

int main(int argc, char** argv) {
  const auto body = [&] { return odyssey::bench::bench(argc, argv); };
#ifdef ODYSSEY_BENCH_MPI
  if (!launched_as_rank()) return odyssey::bench::run_main("odyssey_bench_nccl", body);
  MPI_Init(&argc, &argv);
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  const int rc = odyssey::bench::run_main("odyssey_bench_nccl", body);
  // A rank that failed alone would leave the others waiting in a collective.
  if (rc != 0 && world > 1) MPI_Abort(MPI_COMM_WORLD, rc);
  MPI_Finalize();
  return rc;
#else
  return odyssey::bench::run_main("odyssey_bench_nccl", body);
#endif
}
