// Plain description of a machine: its servers, what is inside them and the fabric between them.
// Presets live in topologies/presets/*.yaml; sim/ turns a MachineSpec into a SimGrid platform.
#pragma once

#include <string>

#include "models/units.hpp"

namespace odyssey {

enum class IntraServer { NVSWITCH, NVLINK_MESH, PCIE };
enum class FabricKind { FAT_TREE, RAIL_OPTIMIZED };

struct GpuSpec {
  std::string type;      ///< matches a calibration profile's `gpu`, e.g. "H100-SXM5-80GB"
  Bytes memory;
};

struct ServerSpec {
  int gpus = 8;
  IntraServer intra = IntraServer::NVSWITCH;
  BytesPerSecond nvlink_bandwidth;   ///< per GPU, per direction
  Seconds nvlink_latency;
  int nics = 8;
  BytesPerSecond nic_bandwidth;      ///< per NIC, per direction
  Seconds nic_latency;
  int cpu_cores = 0;                 ///< host CPU cores in each GPU server
};

/// A folded-Clos (fat-tree) fabric. Level 1: leaf switches with `servers_per_leaf` servers below
/// them; level 2: spines joining `leaves_per_pod` leaves into a pod; level 3 (when levels == 3):
/// core joining pods. Oversubscription is down-bandwidth / up-bandwidth at each switch level.
struct FabricSpec {
  FabricKind kind = FabricKind::FAT_TREE;
  int levels = 3;
  int servers_per_leaf = 16;
  int leaves_per_pod = 16;
  double leaf_oversubscription = 1.0;  ///< leaf down/up: traffic leaving a leaf
  double pod_oversubscription = 1.0;   ///< spine down/up: traffic leaving a pod
  /// Further oversubscription at the core between pods (e.g. 7 for Llama 3's 1:7 between pods);
  /// traffic between pods sees pod_oversubscription x core_oversubscription.
  double core_oversubscription = 1.0;
  Seconds switch_latency;            ///< per switch hop
};

/// CPU-only servers of the machine (data loading, evaluation); simulated as hosts, not used by jobs.
struct CpuHostsSpec {
  int count = 0;
  int cores_per_host = 0;
};

struct MachineSpec {
  std::string name;
  GpuSpec gpu;
  int servers = 0;
  ServerSpec server;
  FabricSpec fabric;
  CpuHostsSpec cpu_hosts;
  [[nodiscard]] long total_gpus() const { return static_cast<long>(servers) * server.gpus; }
  [[nodiscard]] long total_cpu_cores() const {
    return static_cast<long>(servers) * server.cpu_cores + static_cast<long>(cpu_hosts.count) * cpu_hosts.cores_per_host;
  }
};

/// Checks a machine's values on their own and against each other (counts positive, rates and
/// latencies set, the fabric's leaves and pods holding every server). Throws InputError with no
/// position and the offending key's path inside the machine ("fabric.servers_per_leaf"); the
/// scenario loader adds where that key was written.
void check_machine(const MachineSpec& machine);

const char* to_string(IntraServer k);
const char* to_string(FabricKind k);

} // namespace odyssey
