// ZeRO-Offload / ZeRO-Infinity: what leaves GPU memory, what the host and its NVMe must hold, and
// the host side of each step (PCIe copies, CPU-Adam, NVMe traffic) with DeepSpeed's overlap. One
// home for these rules, read by the memory model, the engine, the planner's screen and the report.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "models/strategy.hpp"
#include "models/units.hpp"

namespace odyssey {

class Workload;

/// The host side of one GPU server (topologies/presets: `server.sockets`, `server.host_memory`, ...).
struct HostSpec {
  int sockets = 0;
  Bytes memory;                    ///< DRAM of the server; zero: not described
  BytesPerSecond memory_bandwidth; ///< DRAM bandwidth of the server (all sockets); zero: not described
  Bytes nvme;                      ///< local NVMe capacity of the server; zero: none
  BytesPerSecond nvme_bandwidth;   ///< local NVMe bandwidth of the server (all drives)
};

/// What one server offers the GPUs of a job that run on it.
struct HostResources {
  HostSpec host;
  int cores = 0;       ///< host CPU cores of the server
  int gpus = 1;        ///< the job's GPUs on one server: they share cores, DRAM and NVMe
  BytesPerSecond pcie; ///< one GPU's PCIe link to the host, per direction
};

/// CPU-Adam throughput: a fused Adam step is memory-bandwidth bound, so a server's rate is
/// min(cores x per-core rate, DRAM bandwidth / bytes moved per parameter).
struct CpuAdamRate {
  double parameters_per_s_per_core = 0; ///< one core's rate when memory bandwidth is not the limit
  double bytes_per_parameter = 0;       ///< DRAM bytes the step moves per parameter
  std::string source;                   ///< where the rate comes from (profile path, CPU, date)
};

/// Parameters per second of CPU-Adam on the cores and DRAM of one server.
double cpu_adam_rate(const HostResources& host, const CpuAdamRate& rate);

/// The first rule the offload keys break on this machine (no host memory or cores described,
/// nvme without NVMe, params offload without ZeRO-3, ...), at its scenario key; or nothing.
std::optional<StrategyProblem> check_offload(const ParallelismSpec& parallelism, const HostResources& host);

/// Bytes one GPU of `stage` keeps in host memory and on NVMe. CPU-Adam updates fp32 master
/// weights, momentum and variance with fp32 gradients (DeepSpeed's stage_1_and_2.py keeps the
/// offloaded partition's fp32 gradients beside its fp32 weights): optimizer_state_bytes + 4 per
/// parameter of the rank's ZeRO shard; offloaded parameters add their 16-bit copy.
struct OffloadMemory {
  Bytes host;
  Bytes nvme;
};
OffloadMemory offload_memory(const Workload& workload, int stage);

/// The part of the job's checkpoint (weights and optimizer states) that ZeRO-Offload already keeps
/// in host memory: the optimizer states with `offload.optimizer: cpu`, the 16-bit weights too with
/// `offload.params: cpu`. A checkpoint saves those from host memory (DeepSpeed's optimizer state
/// dict holds the CPU tensors themselves), so only the rest crosses PCIe from the GPUs. States
/// offloaded to NVMe are not counted here: they are priced as the GPU -> host copy they replace.
Bytes checkpoint_bytes_in_host_memory(const Workload& workload);

/// Host memory and NVMe of one server against their capacities: the job's GPUs on a server share
/// them, and the largest stage's GPU is counted for each.
struct HostFit {
  Bytes host_per_gpu;
  Bytes nvme_per_gpu;
  Bytes host_per_server;
  Bytes nvme_per_server;
  Bytes host_capacity;
  Bytes nvme_capacity;
  bool host_fits = true;
  bool nvme_fits = true;
  [[nodiscard]] bool fits() const { return host_fits && nvme_fits; }
};
HostFit host_fit(const Workload& workload, const HostResources& host);
/// "offloaded states need ... GiB of host memory per server ..." when it does not fit, else "".
std::string host_fit_problem(const HostFit& fit, int gpus);

/// GPU compute the host's work can hide behind, per iteration of one stage's GPU.
struct OverlapWindows {
  Seconds backward;         ///< the backward passes: gradients are copied out as they are reduced
  Seconds forward_backward; ///< forwards and backwards: the delayed update hides behind them
};

struct WorkBlock;
/// The windows of one GPU of `stage` along its schedule, each block priced by `compute_time` (the
/// cost model's): the engine and the planner's screen both call this.
OverlapWindows overlap_windows(const Workload& workload, int stage,
                               const std::function<Seconds(const WorkBlock&)>& compute_time);

/// The host side of one optimizer step of one GPU of `stage`, each part on its own, and what of
/// it stays on the critical path (`exposed`):
///   gradients device->host over the GPU's PCIe link, overlapped with the backward;
///   NVMe: optimizer states read and written back (optimizer: nvme), at the server's NVMe
///   bandwidth shared by its GPUs;
///   CPU-Adam over the rank's shard on the server's cores, shared by its GPUs;
///   updated 16-bit parameters host->device;
///   parameters offloaded: each micro-batch's forward and backward fetch them host->device,
///   prefetched behind the compute.
/// Without the delayed update the NVMe, CPU-Adam and copy-back run after the backward; with it
/// they overlap the next step's forward and backward and only what exceeds them shows.
struct OffloadStep {
  Seconds gradients_to_host;
  Seconds nvme;
  Seconds cpu_adam;
  Seconds parameters_to_device;
  Seconds parameter_fetch;
  Seconds exposed;
};
OffloadStep offload_step(const Workload& workload, int stage, const HostResources& host,
                         const CpuAdamRate& rate, const OverlapWindows& windows);

} // namespace odyssey
