// One training iteration simulated on SimGrid. The public header is SimGrid-free: tools/ and the
// tests see plain values in and plain records out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "calibration/cost_model.hpp"
#include "models/workload.hpp"
#include "topologies/machine.hpp"

namespace odyssey {

struct SimulationOptions {
  Fidelity fidelity = Fidelity::FULL;
  std::uint64_t seed = 1;
  bool record_trace = false;                     ///< keep timeline events for `--trace`
  std::vector<std::string> simgrid_args;         ///< extra SimGrid flags (`--log=...`, `--cfg=...`)
  Placement placement = Placement::TP_IN_SERVER; ///< ranks on GPUs
  /// Exact shortcuts of the sharing problem: links no flow can saturate stay out of it, and
  /// flows that are images of others under the machine's symmetry ride with them. They change no
  /// answer (tests turn them off to check that); they only make large jobs fast.
  bool sharing_shortcuts = true;
};

/// Where one GPU's iteration time goes, in seconds; sums to the iteration time of the critical rank.
struct Breakdown {
  Seconds compute;
  Seconds tp_comm_exposed;
  Seconds cp_comm_exposed;
  Seconds ep_comm_exposed;
  Seconds pp_bubble;
  Seconds pp_comm_exposed;
  Seconds dp_comm_exposed;
  Seconds optimizer;
  Seconds host_optimizer; ///< ZeRO-Offload: the host's copies and CPU-Adam on the critical path
  Seconds data_stall;     ///< waiting for the input pipeline (sim/storage.hpp, plan_data_loading)
  [[nodiscard]] Seconds total() const {
    return compute + tp_comm_exposed + cp_comm_exposed + ep_comm_exposed + pp_bubble + pp_comm_exposed +
           dp_comm_exposed + optimizer + host_optimizer + data_stall;
  }
};

/// A timeline event for the trace (one track per pipeline stage and stream).
struct TraceEvent {
  int stage = 0;
  int replica = 0;
  std::string stream; ///< "compute", "tp", "pp", "dp", "optimizer"
  std::string name;
  double start = 0.0; ///< simulated seconds
  double end = 0.0;
  long flow = -1; ///< pipeline message: its send and its receive share this id (-1: none)
};

/// Utilisation of one class of fabric links over the iteration, sampled for the trace.
struct LinkCounter {
  std::string name;                ///< "nic mean", "nic busiest", ...
  std::vector<double> time;        ///< simulated seconds
  std::vector<double> utilisation; ///< carried bytes/s over capacity at that time
};

/// Load of one fabric link over the iteration.
struct LinkLoad {
  std::string name;
  std::string role;         ///< "nvlink", "nic", "leaf-trunk", "pod-trunk"
  double bytes = 0.0;       ///< carried during the iteration
  double utilisation = 0.0; ///< bytes / (bandwidth x iteration time)
};

struct SimulationResult {
  Seconds iteration_time;
  Breakdown breakdown; ///< of the critical (last-finishing) actor
  int critical_stage = 0;
  int critical_replica = 0;
  long simulated_gpus = 0; ///< GPUs whose work and traffic the simulation carried
  long platform_gpus = 0;  ///< GPU hosts of the platform (the whole machine)
  long platform_cpu_hosts = 0;
  long actors = 0;
  long activities = 0; ///< compute, sleep and communication activities started
  long flows = 0;      ///< network flows among them
  double wall_seconds = 0.0;
  double peak_memory_bytes = 0.0; ///< peak resident memory of the simulation process
  std::vector<TraceEvent> trace;
  std::vector<LinkCounter> link_counters; ///< with the trace only
  std::vector<LinkLoad> busiest_links;    ///< the most loaded links, busiest first
  double busiest_nic_utilisation = 0.0;   ///< of the fabric NIC links: bytes / (bandwidth x iteration)
};

/// The collectives of part `part` of `parts` of a backward pass that releases its gradients bucket
/// by bucket: ZeRO-3's gathers with their units (the blocking first one in part 0, the prefetched
/// ones `count` shared out in order), every other collective whole, spread over the parts in order.
[[nodiscard]] std::vector<CollectiveOp> part_collectives(const std::vector<CollectiveOp>& comm, int part,
                                                         int parts);

/// Simulates one iteration of `workload` on the first servers of `machine`. Throws
/// std::runtime_error for internal failures; input is expected to have been validated.
SimulationResult simulate(const MachineSpec& machine, const Workload& workload, const CostModel& cost,
                          const SimulationOptions& options);

} // namespace odyssey
