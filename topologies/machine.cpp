// Names of the machine enums as the YAML spells them, and the machine's own consistency checks.
#include "topologies/machine.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "models/input/diagnostics.hpp"
#include "models/wording.hpp"

namespace odyssey {
namespace {

[[noreturn]] void reject(const std::string& key, const std::string& message) {
  throw InputError(SourceLocation{}, key, message);
}

void require_positive(double value, const std::string& key) {
  if (!(value > 0)) reject(key, fmt::format("must be greater than zero, got {}", value));
}

void require_at_least_one(double value, const std::string& key) {
  if (!(value >= 1.0)) reject(key, fmt::format("must be at least 1 (down/up bandwidth), got {}", value));
}

} // namespace

void check_machine(const MachineSpec& m) {
  if (m.gpu.type.empty()) reject("gpu.type", "must name the GPU type, e.g. 'H100-SXM5-80GB'");
  require_positive(m.gpu.memory.value(), "gpu.memory");
  require_positive(m.servers, "servers");
  require_positive(m.server.gpus, "server.gpus");
  require_positive(m.server.nvlink_bandwidth.value(), "server.nvlink_bandwidth");
  require_positive(m.server.nvlink_latency.value(), "server.nvlink_latency");
  require_positive(m.server.nics, "server.nics");
  require_positive(m.server.nic_bandwidth.value(), "server.nic_bandwidth");
  require_positive(m.server.nic_latency.value(), "server.nic_latency");
  require_positive(m.fabric.switch_latency.value(), "fabric.switch_latency");
  require_at_least_one(m.fabric.leaf_oversubscription, "fabric.leaf_oversubscription");
  require_at_least_one(m.fabric.pod_oversubscription, "fabric.pod_oversubscription");
  require_at_least_one(m.fabric.core_oversubscription, "fabric.core_oversubscription");
  if (m.fabric.levels < 1 || m.fabric.levels > 3)
    reject("fabric.levels", fmt::format("must be 1, 2 or 3, got {}", m.fabric.levels));
  if (m.fabric.rails < 0) reject("fabric.rails", fmt::format("must not be negative, got {}", m.fabric.rails));
  if (m.fabric.kind == FabricKind::RAIL_OPTIMIZED && m.fabric.rails != 0 && m.fabric.rails != m.server.nics)
    reject("fabric.rails",
           fmt::format("a rail-optimized fabric puts NIC i of every server on rail i, so it has one rail "
                       "per NIC: {} rails but server.nics is {}",
                       m.fabric.rails, m.server.nics));
  if (m.server.pcie_switches < 0)
    reject("server.pcie_switches", fmt::format("must not be negative, got {}", m.server.pcie_switches));
  if (m.server.pcie_switches > 0) {
    require_positive(m.server.pcie_bandwidth.value(), "server.pcie_bandwidth");
    if (m.server.gpus % m.server.pcie_switches != 0 || m.server.nics % m.server.pcie_switches != 0)
      reject(
          "server.pcie_switches",
          fmt::format(
              "{} PCIe switches cannot share {} GPUs and {} NICs evenly (each switch holds the same number "
              "of both)",
              m.server.pcie_switches, m.server.gpus, m.server.nics));
  }
  if (m.fabric.kind == FabricKind::DRAGONFLY) {
    const DragonflySpec& d = m.fabric.dragonfly;
    require_positive(d.groups, "fabric.dragonfly.groups");
    require_positive(d.routers_per_group, "fabric.dragonfly.routers_per_group");
    require_positive(d.servers_per_router, "fabric.dragonfly.servers_per_router");
    require_positive(d.global_links_per_router, "fabric.dragonfly.global_links_per_router");
    require_positive(d.link_bandwidth.value(), "fabric.dragonfly.link_bandwidth");
    const long slots = static_cast<long>(d.groups) * d.routers_per_group * d.servers_per_router;
    if (slots < m.servers)
      reject(
          "fabric.dragonfly.groups",
          fmt::format(
              "groups x routers_per_group x servers_per_router ({} x {} x {} = {}) must cover servers ({})",
              d.groups, d.routers_per_group, d.servers_per_router, slots, m.servers));
    if (d.groups - 1 > static_cast<long>(d.routers_per_group) * d.global_links_per_router)
      reject("fabric.dragonfly.groups",
             fmt::format("{} need {} global links per group to reach each other, but a group has only "
                         "routers_per_group x global_links_per_router = {} x {} = {}",
                         counted(d.groups, "group"), d.groups - 1, d.routers_per_group,
                         d.global_links_per_router, d.routers_per_group * d.global_links_per_router));
  }
  if (m.fabric.kind == FabricKind::TORUS) {
    const TorusSpec& t = m.fabric.torus;
    for (int i = 0; i < 3; ++i)
      if (t.dims[static_cast<size_t>(i)] < 1)
        reject("fabric.torus.dims",
               fmt::format("every dimension must be at least 1, got {}", t.dims[static_cast<size_t>(i)]));
    require_positive(t.link_bandwidth.value(), "fabric.torus.link_bandwidth");
    const long nodes = static_cast<long>(t.dims[0]) * t.dims[1] * t.dims[2];
    if (nodes != m.servers)
      reject("fabric.torus.dims",
             fmt::format("a {} x {} x {} torus has {}, but the machine has {}", t.dims[0], t.dims[1],
                         t.dims[2], counted(nodes, "server"), m.servers));
  }
  // A 1-level fabric is one leaf and a 2-level one is one pod: they must hold every server.
  const long per_leaf = m.fabric.servers_per_leaf;
  const long per_pod = per_leaf * m.fabric.leaves_per_pod;
  const bool clos = m.fabric.kind == FabricKind::FAT_TREE || m.fabric.kind == FabricKind::RAIL_OPTIMIZED;
  if (clos && m.fabric.levels == 1 && per_leaf < m.servers)
    reject("fabric.servers_per_leaf",
           fmt::format("a 1-level fabric has one leaf: servers_per_leaf ({}) must cover servers ({})",
                       per_leaf, m.servers));
  if (clos && m.fabric.levels == 2 && per_pod < m.servers)
    reject("fabric.leaves_per_pod",
           fmt::format(
               "a 2-level fabric has one pod: servers_per_leaf x leaves_per_pod ({} x {} = {}) must cover "
               "servers ({})",
               per_leaf, m.fabric.leaves_per_pod, per_pod, m.servers));
  if (m.cpu_hosts.count < 0)
    reject("cpu_hosts.count", fmt::format("must not be negative, got {}", m.cpu_hosts.count));
  if (m.cpu_hosts.count > 0 && m.cpu_hosts.cores_per_host < 1)
    reject("cpu_hosts.cores_per_host",
           fmt::format("must be a positive integer, got {}", m.cpu_hosts.cores_per_host));
}

JobComponents job_components(const MachineSpec& machine, long gpus) {
  const long servers = (gpus + machine.server.gpus - 1) / machine.server.gpus;
  return {.gpus = gpus, .servers = servers, .nics = servers * machine.server.nics};
}

HostResources host_resources(const MachineSpec& machine, long gpus) {
  const ServerSpec& srv = machine.server;
  const int on_server = static_cast<int>(std::min<long>(std::max<long>(gpus, 1), srv.gpus));
  // With PCIe switches, the GPUs under one switch share its uplink to the CPU. ASSUMPTION: the
  // uplink is as wide as one GPU's link (DGX-1 V100 white paper: one x16 link per switch to the CPU).
  const int per_switch = srv.pcie_switches > 0 ? (on_server + srv.pcie_switches - 1) / srv.pcie_switches : 1;
  return HostResources{.host = srv.host,
                       .cores = srv.cpu_cores,
                       .gpus = on_server,
                       .pcie = srv.pcie_bandwidth / double(per_switch)};
}

JobCapacity job_capacity(const MachineSpec& machine) {
  return JobCapacity{
      .machine = machine.name, .gpus_per_server = machine.server.gpus, .servers = machine.servers};
}

long place_rank(Placement placement, long rank, long ranks, int tp, int gpus_per_server) {
  switch (placement) {
  case Placement::TP_IN_SERVER: return rank;
  case Placement::DP_ACROSS_RAILS: {
    const long server = rank / gpus_per_server;
    // Only whole servers rotate, so a partly used last server keeps its GPUs.
    if ((server + 1) * gpus_per_server > ranks) return rank;
    return server * gpus_per_server + (rank % gpus_per_server + server) % gpus_per_server;
  }
  case Placement::TP_ACROSS_SERVERS: {
    if (tp < 2 || ranks % tp != 0) return rank;
    // Transpose the tp x (ranks / tp) grid: TP peers ranks / tp GPUs apart.
    return (rank % tp) * (ranks / tp) + rank / tp;
  }
  }
  return rank;
}

const char* to_string(Placement p) {
  switch (p) {
  case Placement::TP_IN_SERVER: return "tp-in-server";
  case Placement::DP_ACROSS_RAILS: return "dp-across-rails";
  case Placement::TP_ACROSS_SERVERS: return "tp-across-servers";
  }
  return "?";
}

const char* to_string(IntraServer k) {
  switch (k) {
  case IntraServer::NVSWITCH: return "nvswitch";
  case IntraServer::NVLINK_MESH: return "nvlink-mesh";
  case IntraServer::PCIE: return "pcie";
  }
  return "?";
}

const char* to_string(Ecmp e) {
  return e == Ecmp::HASH ? "hash" : "spread";
}

const char* to_string(FabricKind k) {
  switch (k) {
  case FabricKind::FAT_TREE: return "fat-tree";
  case FabricKind::RAIL_OPTIMIZED: return "rail-optimized";
  case FabricKind::DRAGONFLY: return "dragonfly";
  case FabricKind::TORUS: return "torus";
  }
  return "?";
}

} // namespace odyssey
