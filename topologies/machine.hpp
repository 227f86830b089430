// Plain description of a machine: its servers, what is inside them and the fabric between them.
// Presets live in topologies/presets/*.yaml; sim/ turns a MachineSpec into a SimGrid platform.
#pragma once

#include <array>
#include <string>

#include "models/offload.hpp"
#include "models/reliability.hpp"
#include "models/strategy.hpp"
#include "models/units.hpp"

namespace odyssey {

enum class IntraServer { NVSWITCH, NVLINK_MESH, PCIE };
enum class FabricKind { FAT_TREE, RAIL_OPTIMIZED, DRAGONFLY, TORUS };
/// How fat-tree flows use a switch level's parallel uplinks: SPREAD, as one aggregate link
/// (ideal spreading); HASH, each flow on one uplink picked by a hash of its endpoints, as ECMP
/// does, so that flows can collide on one uplink while another idles.
enum class Ecmp { SPREAD, HASH };

struct GpuSpec {
  std::string type; ///< matches a calibration profile's `gpu`, e.g. "H100-SXM5-80GB"
  Bytes memory;
};

struct ServerSpec {
  int gpus = 8;
  IntraServer intra = IntraServer::NVSWITCH;
  BytesPerSecond nvlink_bandwidth; ///< per GPU, per direction
  Seconds nvlink_latency;
  int nics = 8;
  BytesPerSecond nic_bandwidth; ///< per NIC, per direction
  Seconds nic_latency;
  int cpu_cores = 0; ///< host CPU cores in each GPU server
  /// NVSwitch with NVLink SHARP (NVSwitch gen3, H100/H200 servers): NCCL's NVLS algorithms.
  bool nvls = false;
  /// PCIe switches between GPUs and NICs (0: none modelled). GPUs and NICs are spread evenly
  /// over them and a GPU uses a NIC under its own switch (GPU-to-NIC affinity); traffic leaving
  /// the server crosses the GPU's PCIe link.
  int pcie_switches = 0;
  /// Per GPU PCIe link, per direction: the GPU-NIC path with pcie_switches, and the GPU-host path
  /// that ZeRO-Offload's copies take.
  BytesPerSecond pcie_bandwidth;
  HostSpec host; ///< sockets, DRAM and local NVMe of the server (ZeRO-Offload)
};

/// Dragonfly (Kim et al. 2008): routers in groups, every router joined to every other of its
/// group by a local link, groups joined to each other by global links; minimal routing (local,
/// global, local). Servers attach to routers.
struct DragonflySpec {
  int groups = 0;
  int routers_per_group = 0;
  int servers_per_router = 0;
  int global_links_per_router = 0; ///< h: global links of each router
  BytesPerSecond link_bandwidth;   ///< one local or global link, per direction
};

/// A 2D or 3D torus of servers (each server's router has a link to each of its 2 x D
/// neighbours, wrapping around); dimension-order routing along the shorter way.
struct TorusSpec {
  std::array<int, 3> dims{0, 0, 1}; ///< x, y, z (z = 1: a 2D torus)
  BytesPerSecond link_bandwidth;    ///< one torus link, per direction
};

/// A folded-Clos (fat-tree) fabric. Level 1: leaf switches with `servers_per_leaf` servers below
/// them; level 2: spines joining `leaves_per_pod` leaves into a pod; level 3 (when levels == 3):
/// core joining pods. Oversubscription is down-bandwidth / up-bandwidth at each switch level.
struct FabricSpec {
  FabricKind kind = FabricKind::FAT_TREE;
  int levels = 3;
  int servers_per_leaf = 16;
  int leaves_per_pod = 16;
  double leaf_oversubscription = 1.0; ///< leaf down/up: traffic leaving a leaf
  double pod_oversubscription = 1.0;  ///< spine down/up: traffic leaving a pod
  /// Further oversubscription at the core between pods (e.g. 7 for Llama 3's 1:7 between pods);
  /// traffic between pods sees pod_oversubscription x core_oversubscription.
  double core_oversubscription = 1.0;
  Seconds switch_latency; ///< per switch hop
  /// Rail-optimized fabrics: rails (NIC i of every server on rail i); 0 means one per NIC.
  int rails = 0;
  /// The switches reduce in the network (InfiniBand SHARP): NCCL's CollNet algorithms.
  bool in_network_reduction = false;
  Ecmp ecmp = Ecmp::SPREAD;
  DragonflySpec dragonfly;
  TorusSpec torus;
};

/// CPU-only servers of the machine (data loading, evaluation); simulated as hosts, not used by jobs.
struct CpuHostsSpec {
  int count = 0;
  int cores_per_host = 0;
};

/// The storage system checkpoints are written to and read from (sim/storage.*): storage servers
/// behind a storage network, reached by every GPU server through its storage NIC(s). Simulated as
/// SimGrid hosts and links of their own, apart from the compute fabric.
struct StorageSpec {
  /// Aggregate sustained bandwidth of the storage system, written or read by every client at
  /// once; zero ("none"): no storage modelled, checkpoints cost nothing.
  BytesPerSecond bandwidth;
  Bytes capacity; ///< what it holds; zero ("none"): not checked
  /// Per GPU server: its storage NIC(s); zero ("none"): the server's fabric NICs
  /// (server.nics x server.nic_bandwidth) carry the storage traffic too.
  BytesPerSecond client_bandwidth;
  /// Metadata operations (create, open, commit) a client waits for before its data moves, once per
  /// checkpoint write or read; zero ("none"): not modelled.
  Seconds metadata_latency;
  [[nodiscard]] bool modelled() const { return bandwidth.value() > 0; }
};

struct MachineSpec {
  std::string name;
  GpuSpec gpu;
  int servers = 0;
  ServerSpec server;
  FabricSpec fabric;
  CpuHostsSpec cpu_hosts;
  ReliabilitySpec reliability; ///< failure rates per component; zero: that kind never fails
  StorageSpec storage;
  [[nodiscard]] long total_gpus() const { return static_cast<long>(servers) * server.gpus; }
  /// GPU-to-NIC affinity: GPUs are spread evenly over the server's NICs (GPU i uses NIC
  /// i * nics / gpus), as on DGX servers where each GPU shares a PCIe switch with its NIC; with
  /// PCIe switches modelled, that NIC is one under the GPU's own switch (the checks make the
  /// switches hold GPUs and NICs evenly, so the same formula holds). NICs are numbered
  /// server-major, like GPUs.
  [[nodiscard]] long nic_of(long gpu) const {
    return gpu / server.gpus * server.nics + gpu % server.gpus * server.nics / server.gpus;
  }
  [[nodiscard]] long total_cpu_cores() const {
    return static_cast<long>(servers) * server.cpu_cores +
           static_cast<long>(cpu_hosts.count) * cpu_hosts.cores_per_host;
  }
};

/// Checks a machine's values on their own and against each other (counts positive, rates and
/// latencies set, the fabric's leaves and pods holding every server). Throws InputError with no
/// position and the offending key's path inside the machine ("fabric.servers_per_leaf"); the
/// scenario loader adds where that key was written.
void check_machine(const MachineSpec& machine);

/// The GPUs, servers and NICs a job of `gpus` GPUs runs on (whole servers): what its failure rates
/// scale with.
JobComponents job_components(const MachineSpec& machine, long gpus);

/// The host resources of one server shared by the job's GPUs on it (a job of `gpus` GPUs fills
/// whole servers, or part of one).
HostResources host_resources(const MachineSpec& machine, long gpus);

/// The machine as the strategy rules see it (the job-size rule).
JobCapacity job_capacity(const MachineSpec& machine);

/// How a job's ranks (Megatron order tp-cp-ep-dp-pp) are laid on the machine's GPUs.
enum class Placement {
  TP_IN_SERVER,      ///< rank r on GPU r: TP inside a server, data-parallel peers on one rail
  DP_ACROSS_RAILS,   ///< TP inside a server, each server's GPUs rotated by its index, so
                     ///< data-parallel peers sit on different rails (a rail-unaware scheduler)
  TP_ACROSS_SERVERS, ///< the TP ranks of a group on different servers (to see what that costs)
};

/// GPU of `rank` in a job of `ranks` GPUs with `tp`-way tensor parallelism on servers of
/// `gpus_per_server`; a permutation of 0..ranks-1.
long place_rank(Placement placement, long rank, long ranks, int tp, int gpus_per_server);

const char* to_string(Placement p);
const char* to_string(IntraServer k);
const char* to_string(FabricKind k);
const char* to_string(Ecmp e);

} // namespace odyssey
