#include "topologies/machine_schema.hpp"

#include <string>

#include <fmt/format.h>

namespace odyssey {
namespace {

double oversubscription(const YamlValue& v) {
  const double x = v.as_number();
  if (!(x >= 1.0)) v.fail(fmt::format("must be at least 1 (down/up bandwidth ratio), got {}", v.as_string()));
  return x;
}

/// An optional byte rate: "none" (0) or a rate.
BytesPerSecond optional_rate(const YamlValue& v) {
  return v.is_scalar() && v.as_string() == "none" ? BytesPerSecond(0) : v.as_byte_rate();
}
std::string optional_rate_text(BytesPerSecond r) {
  return r.value() > 0 ? quoted_quantity(r.value(), Dimension::BYTE_RATE) : std::string("none");
}

/// An optional byte count: "none" (0) or a size (greater than zero, as every quantity).
Bytes optional_bytes(const YamlValue& v) {
  return v.is_scalar() && v.as_string() == "none" ? Bytes(0) : v.as_bytes();
}
std::string optional_bytes_text(Bytes b) {
  return b.value() > 0 ? quoted_quantity(b.value(), Dimension::BYTES) : std::string("none");
}

/// An optional duration: "none" (0) or a time (greater than zero, as every quantity).
Seconds optional_time(const YamlValue& v) {
  return v.is_scalar() && v.as_string() == "none" ? Seconds(0) : v.as_seconds();
}
std::string optional_time_text(Seconds t) {
  return t.value() > 0 ? quoted_quantity(t.value(), Dimension::TIME) : std::string("none");
}

/// A `reliability.*` duration of the machine, "none" when that kind never fails.
template <Seconds ReliabilitySpec::*MEMBER>
Field<MachineSpec> reliability_time(std::string_view key, std::string_view help) {
  return {key,
          "time | none",
          "none",
          help,
          [](MachineSpec& m, const YamlValue& v) { m.reliability.*MEMBER = optional_time(v); },
          [](const MachineSpec& m) { return optional_time_text(m.reliability.*MEMBER); }};
}

} // namespace

const std::vector<Field<MachineSpec>>& machine_fields() {
  static const std::vector<Field<MachineSpec>> fields{
      {"name", "string", "preset name", "machine name used in reports",
       [](MachineSpec& m, const YamlValue& v) { m.name = v.as_string(); },
       [](const MachineSpec& m) { return yaml_string(m.name); }},
      {"gpu.type", "string", REQUIRED, "GPU type; picks the calibration profile (e.g. H100-SXM5-80GB)",
       [](MachineSpec& m, const YamlValue& v) { m.gpu.type = v.as_string(); },
       [](const MachineSpec& m) { return yaml_string(m.gpu.type); }},
      {"gpu.memory", "bytes", REQUIRED, "GPU memory",
       [](MachineSpec& m, const YamlValue& v) { m.gpu.memory = v.as_bytes(); },
       [](const MachineSpec& m) { return quoted_quantity(m.gpu.memory.value(), Dimension::BYTES); }},
      {"servers", "positive integer", REQUIRED, "GPU servers in the machine",
       [](MachineSpec& m, const YamlValue& v) { m.servers = positive_int(v); },
       [](const MachineSpec& m) { return std::to_string(m.servers); }},
      {"server.gpus", "positive integer", "8", "GPUs per server",
       [](MachineSpec& m, const YamlValue& v) { m.server.gpus = positive_int(v); },
       [](const MachineSpec& m) { return std::to_string(m.server.gpus); }},
      {"server.intra", "nvswitch | nvlink-mesh | pcie", "nvswitch", "how the GPUs of a server are connected",
       [](MachineSpec& m, const YamlValue& v) {
         m.server.intra = v.as_enum<IntraServer>({{"nvswitch", IntraServer::NVSWITCH},
                                                  {"nvlink-mesh", IntraServer::NVLINK_MESH},
                                                  {"pcie", IntraServer::PCIE}});
       },
       [](const MachineSpec& m) { return std::string(to_string(m.server.intra)); }},
      {"server.nvlink_bandwidth", "byte rate", REQUIRED,
       "GPU-to-GPU bandwidth inside a server, per GPU per direction",
       [](MachineSpec& m, const YamlValue& v) { m.server.nvlink_bandwidth = v.as_byte_rate(); },
       [](const MachineSpec& m) {
         return quoted_quantity(m.server.nvlink_bandwidth.value(), Dimension::BYTE_RATE);
       }},
      {"server.nvlink_latency", "time", REQUIRED, "GPU-to-GPU latency inside a server",
       [](MachineSpec& m, const YamlValue& v) { m.server.nvlink_latency = v.as_seconds(); },
       [](const MachineSpec& m) {
         return quoted_quantity(m.server.nvlink_latency.value(), Dimension::TIME);
       }},
      {"server.nics", "positive integer", "8", "network interfaces per server",
       [](MachineSpec& m, const YamlValue& v) { m.server.nics = positive_int(v); },
       [](const MachineSpec& m) { return std::to_string(m.server.nics); }},
      {"server.nic_bandwidth", "byte rate", REQUIRED, "bandwidth of one NIC, per direction",
       [](MachineSpec& m, const YamlValue& v) { m.server.nic_bandwidth = v.as_byte_rate(); },
       [](const MachineSpec& m) {
         return fmt::format("\"{}\"", format_quantity(m.server.nic_bandwidth.value(), "Gb/s"));
       }},
      {"server.nic_latency", "time", REQUIRED, "NIC latency (host to wire)",
       [](MachineSpec& m, const YamlValue& v) { m.server.nic_latency = v.as_seconds(); },
       [](const MachineSpec& m) { return quoted_quantity(m.server.nic_latency.value(), Dimension::TIME); }},
      {"server.cpu_cores", "integer >= 0", "0", "host CPU cores in each GPU server",
       [](MachineSpec& m, const YamlValue& v) { m.server.cpu_cores = count_int(v); },
       [](const MachineSpec& m) { return std::to_string(m.server.cpu_cores); }},
      {"server.nvls", "bool", "false", "NVSwitch with NVLink SHARP (gen3, H100/H200): NCCL's NVLS algorithms",
       [](MachineSpec& m, const YamlValue& v) { m.server.nvls = v.as_bool(); },
       [](const MachineSpec& m) { return yaml_bool(m.server.nvls); }},
      {"server.pcie_switches", "integer >= 0", "0",
       "PCIe switches between GPUs and NICs (0: none); a GPU uses a NIC under its own switch",
       [](MachineSpec& m, const YamlValue& v) { m.server.pcie_switches = count_int(v); },
       [](const MachineSpec& m) { return std::to_string(m.server.pcie_switches); }},
      {"server.pcie_bandwidth", "byte rate", "none",
       "PCIe link of one GPU, per direction: its copies to and from host memory (checkpoints, "
       "ZeRO-Offload) and, with pcie_switches, its path to its NIC",
       [](MachineSpec& m, const YamlValue& v) { m.server.pcie_bandwidth = optional_rate(v); },
       [](const MachineSpec& m) { return optional_rate_text(m.server.pcie_bandwidth); }},
      {"server.sockets", "integer >= 0", "0", "CPU sockets in each GPU server",
       [](MachineSpec& m, const YamlValue& v) { m.server.host.sockets = count_int(v); },
       [](const MachineSpec& m) { return std::to_string(m.server.host.sockets); }},
      {"server.host_memory", "bytes | none", "none",
       "host DRAM of each GPU server (ZeRO-Offload's states live there)",
       [](MachineSpec& m, const YamlValue& v) { m.server.host.memory = optional_bytes(v); },
       [](const MachineSpec& m) { return optional_bytes_text(m.server.host.memory); }},
      {"server.host_memory_bandwidth", "byte rate | none", "none",
       "host DRAM bandwidth of each GPU server, all sockets (bounds CPU-Adam)",
       [](MachineSpec& m, const YamlValue& v) { m.server.host.memory_bandwidth = optional_rate(v); },
       [](const MachineSpec& m) { return optional_rate_text(m.server.host.memory_bandwidth); }},
      {"server.nvme", "bytes | none", "none", "local NVMe capacity of each GPU server (ZeRO-Infinity)",
       [](MachineSpec& m, const YamlValue& v) { m.server.host.nvme = optional_bytes(v); },
       [](const MachineSpec& m) { return optional_bytes_text(m.server.host.nvme); }},
      {"server.nvme_bandwidth", "byte rate | none", "none",
       "local NVMe bandwidth of each GPU server, all drives",
       [](MachineSpec& m, const YamlValue& v) { m.server.host.nvme_bandwidth = optional_rate(v); },
       [](const MachineSpec& m) { return optional_rate_text(m.server.host.nvme_bandwidth); }},
      {"fabric.kind", "fat-tree | rail-optimized | dragonfly | torus", "fat-tree",
       "topology of the network between servers",
       [](MachineSpec& m, const YamlValue& v) {
         m.fabric.kind = v.as_enum<FabricKind>({{"fat-tree", FabricKind::FAT_TREE},
                                                {"rail-optimized", FabricKind::RAIL_OPTIMIZED},
                                                {"dragonfly", FabricKind::DRAGONFLY},
                                                {"torus", FabricKind::TORUS}});
       },
       [](const MachineSpec& m) { return std::string(to_string(m.fabric.kind)); }},
      {"fabric.levels", "1 | 2 | 3", "3", "switch levels: leaf, spine (pod), core",
       [](MachineSpec& m, const YamlValue& v) { m.fabric.levels = positive_int(v); },
       [](const MachineSpec& m) { return std::to_string(m.fabric.levels); }},
      {"fabric.servers_per_leaf", "positive integer", "16", "servers below one leaf (switch or rail group)",
       [](MachineSpec& m, const YamlValue& v) { m.fabric.servers_per_leaf = positive_int(v); },
       [](const MachineSpec& m) { return std::to_string(m.fabric.servers_per_leaf); }},
      {"fabric.leaves_per_pod", "positive integer", "16", "leaves joined by one pod's spines",
       [](MachineSpec& m, const YamlValue& v) { m.fabric.leaves_per_pod = positive_int(v); },
       [](const MachineSpec& m) { return std::to_string(m.fabric.leaves_per_pod); }},
      {"fabric.leaf_oversubscription", "number >= 1", "1", "leaf down/up bandwidth",
       [](MachineSpec& m, const YamlValue& v) { m.fabric.leaf_oversubscription = oversubscription(v); },
       [](const MachineSpec& m) { return yaml_number(m.fabric.leaf_oversubscription); }},
      {"fabric.pod_oversubscription", "number >= 1", "1", "spine down/up bandwidth: traffic leaving a pod",
       [](MachineSpec& m, const YamlValue& v) { m.fabric.pod_oversubscription = oversubscription(v); },
       [](const MachineSpec& m) { return yaml_number(m.fabric.pod_oversubscription); }},
      {"fabric.core_oversubscription", "number >= 1", "1",
       "further core oversubscription between pods (multiplies pod_oversubscription)",
       [](MachineSpec& m, const YamlValue& v) { m.fabric.core_oversubscription = oversubscription(v); },
       [](const MachineSpec& m) { return yaml_number(m.fabric.core_oversubscription); }},
      {"fabric.switch_latency", "time", REQUIRED, "latency of one switch hop",
       [](MachineSpec& m, const YamlValue& v) { m.fabric.switch_latency = v.as_seconds(); },
       [](const MachineSpec& m) {
         return quoted_quantity(m.fabric.switch_latency.value(), Dimension::TIME);
       }},
      {"fabric.rails", "integer >= 0", "0", "rail-optimized: rails, one per NIC (0: server.nics)",
       [](MachineSpec& m, const YamlValue& v) { m.fabric.rails = count_int(v); },
       [](const MachineSpec& m) { return std::to_string(m.fabric.rails); }},
      {"fabric.in_network_reduction", "bool", "false",
       "switches reduce in the network (InfiniBand SHARP): NCCL's CollNet and multi-server NVLS",
       [](MachineSpec& m, const YamlValue& v) { m.fabric.in_network_reduction = v.as_bool(); },
       [](const MachineSpec& m) { return yaml_bool(m.fabric.in_network_reduction); }},
      {"fabric.ecmp", "spread | hash", "spread",
       "fat trees: a level's parallel uplinks as one aggregate (spread) or one per flow by hash, as ECMP "
       "picks them",
       [](MachineSpec& m, const YamlValue& v) {
         m.fabric.ecmp = v.as_enum<Ecmp>({{"spread", Ecmp::SPREAD}, {"hash", Ecmp::HASH}});
       },
       [](const MachineSpec& m) { return std::string(to_string(m.fabric.ecmp)); }},
      {"fabric.dragonfly.groups", "integer >= 0", "0", "dragonfly: groups of routers",
       [](MachineSpec& m, const YamlValue& v) { m.fabric.dragonfly.groups = count_int(v); },
       [](const MachineSpec& m) { return std::to_string(m.fabric.dragonfly.groups); }},
      {"fabric.dragonfly.routers_per_group", "integer >= 0", "0",
       "dragonfly: routers in a group (all joined locally)",
       [](MachineSpec& m, const YamlValue& v) { m.fabric.dragonfly.routers_per_group = count_int(v); },
       [](const MachineSpec& m) { return std::to_string(m.fabric.dragonfly.routers_per_group); }},
      {"fabric.dragonfly.servers_per_router", "integer >= 0", "0", "dragonfly: servers attached to a router",
       [](MachineSpec& m, const YamlValue& v) { m.fabric.dragonfly.servers_per_router = count_int(v); },
       [](const MachineSpec& m) { return std::to_string(m.fabric.dragonfly.servers_per_router); }},
      {"fabric.dragonfly.global_links_per_router", "integer >= 0", "0",
       "dragonfly: global links of a router (h)",
       [](MachineSpec& m, const YamlValue& v) { m.fabric.dragonfly.global_links_per_router = count_int(v); },
       [](const MachineSpec& m) { return std::to_string(m.fabric.dragonfly.global_links_per_router); }},
      {"fabric.dragonfly.link_bandwidth", "byte rate", "none",
       "dragonfly: one local or global link, per direction",
       [](MachineSpec& m, const YamlValue& v) { m.fabric.dragonfly.link_bandwidth = optional_rate(v); },
       [](const MachineSpec& m) { return optional_rate_text(m.fabric.dragonfly.link_bandwidth); }},
      {"fabric.torus.dims", "[x, y] | [x, y, z]", "none",
       "torus: servers along each dimension (their product: servers)",
       [](MachineSpec& m, const YamlValue& v) {
         if (v.is_scalar() && v.as_string() == "none") {
           m.fabric.torus.dims = {0, 0, 1};
           return;
         }
         const std::vector<YamlValue> items = v.items();
         if (items.size() < 2 || items.size() > 3)
           v.fail(fmt::format("a torus has 2 or 3 dimensions, got {}", items.size()));
         m.fabric.torus.dims = {1, 1, 1};
         for (std::size_t i = 0; i < items.size(); ++i) m.fabric.torus.dims[i] = positive_int(items[i]);
       },
       [](const MachineSpec& m) {
         const auto& d = m.fabric.torus.dims;
         if (d[0] == 0) return std::string("none");
         return d[2] > 1 ? fmt::format("[{}, {}, {}]", d[0], d[1], d[2])
                         : fmt::format("[{}, {}]", d[0], d[1]);
       }},
      {"fabric.torus.link_bandwidth", "byte rate", "none", "torus: one link, per direction",
       [](MachineSpec& m, const YamlValue& v) { m.fabric.torus.link_bandwidth = optional_rate(v); },
       [](const MachineSpec& m) { return optional_rate_text(m.fabric.torus.link_bandwidth); }},
      {"cpu_hosts.count", "integer >= 0", "0", "CPU-only servers (simulated as hosts, not used by jobs)",
       [](MachineSpec& m, const YamlValue& v) { m.cpu_hosts.count = count_int(v); },
       [](const MachineSpec& m) { return std::to_string(m.cpu_hosts.count); }},
      {"cpu_hosts.cores_per_host", "integer >= 0", "0", "CPU cores in each CPU-only server",
       [](MachineSpec& m, const YamlValue& v) { m.cpu_hosts.cores_per_host = count_int(v); },
       [](const MachineSpec& m) { return std::to_string(m.cpu_hosts.cores_per_host); }},
      reliability_time<&ReliabilitySpec::gpu_mtbf>(
          "reliability.gpu_mtbf",
          "mean time between failures of one GPU (faulty GPU, SRAM, system processor, silent data "
          "corruption, thermal) that interrupt a job"),
      reliability_time<&ReliabilitySpec::hbm_mtbf>("reliability.hbm_mtbf",
                                                   "mean time between HBM failures of one GPU"),
      reliability_time<&ReliabilitySpec::host_mtbf>(
          "reliability.host_mtbf",
          "mean time between failures of one server's host (CPU, memory, SSD, power, chassis, unplanned "
          "host maintenance)"),
      reliability_time<&ReliabilitySpec::nic_mtbf>("reliability.nic_mtbf",
                                                   "mean time between failures of one NIC"),
      reliability_time<&ReliabilitySpec::network_mtbf>(
          "reliability.network_mtbf",
          "mean time between switch or cable failures that interrupt a job, per NIC link"),
      reliability_time<&ReliabilitySpec::software_mtbf>(
          "reliability.software_mtbf",
          "mean time between software failures (bugs, NCCL watchdog timeouts, dependencies), per GPU "
          "(one rank process each)"),
      reliability_time<&ReliabilitySpec::planned_interval>(
          "reliability.planned_interval", "mean time between planned interruptions (maintenance) of a job"),
      reliability_time<&ReliabilitySpec::repair>(
          "reliability.repair", "time before a failed server serves again (repair or replacement)"),
      {"storage.bandwidth", "byte rate | none", "none",
       "aggregate sustained bandwidth of the storage checkpoints are written to and read from (none: "
       "no storage modelled, checkpoints cost nothing)",
       [](MachineSpec& m, const YamlValue& v) { m.storage.bandwidth = optional_rate(v); },
       [](const MachineSpec& m) { return optional_rate_text(m.storage.bandwidth); }},
      {"storage.capacity", "bytes | none", "none", "what the storage holds (none: not checked)",
       [](MachineSpec& m, const YamlValue& v) {
         m.storage.capacity = v.is_scalar() && v.as_string() == "none" ? Bytes(0) : v.as_bytes();
       },
       [](const MachineSpec& m) {
         return m.storage.capacity.value() > 0 ? quoted_quantity(m.storage.capacity.value(), Dimension::BYTES)
                                               : std::string("none");
       }},
      {"storage.client_bandwidth", "byte rate | none", "none",
       "per GPU server: its storage NIC(s) (none: its fabric NICs carry the storage traffic)",
       [](MachineSpec& m, const YamlValue& v) { m.storage.client_bandwidth = optional_rate(v); },
       [](const MachineSpec& m) { return optional_rate_text(m.storage.client_bandwidth); }},
      {"storage.metadata_latency", "time | none", "none",
       "metadata operations (create, open, commit) a client waits for before a checkpoint's data moves",
       [](MachineSpec& m, const YamlValue& v) { m.storage.metadata_latency = optional_time(v); },
       [](const MachineSpec& m) { return optional_time_text(m.storage.metadata_latency); }},
  };
  return fields;
}

} // namespace odyssey
