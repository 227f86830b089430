#include "sim/platform.hpp"

#include <simgrid/kernel/routing/NetPoint.hpp>
#include <simgrid/kernel/routing/NetZoneImpl.hpp>

#include <fmt/format.h>

XBT_LOG_NEW_DEFAULT_SUBCATEGORY(odyssey_platform, odyssey, "Odyssey platform construction");

namespace odyssey::sim {

namespace sg4 = simgrid::s4u;
using simgrid::kernel::routing::NetPoint;
using simgrid::kernel::routing::NetZoneImpl;
using simgrid::kernel::routing::Route;

/// Routing zone of all GPUs of the machine. Every GPU has an NVLink port (up and down links to
/// the server's NVSwitch, or its share of the NVLink mesh); every NIC has up and down links to its
/// leaf switch; every leaf (one per rail on rail-optimized fabrics) has a trunk up to the spine
/// layer whose capacity is the leaf's injection bandwidth over its oversubscription, and every
/// pod a trunk up to the core. A trunk aggregates the parallel uplinks that ECMP spreads flows
/// over, so flows share the level's whole capacity instead of hashing onto one cable.
class FabricZone : public NetZoneImpl {
public:
  FabricZone(const std::string& name, const MachineSpec& m) : NetZoneImpl(name), m_(m) {
    rails_ = m.fabric.kind == FabricKind::RAIL_OPTIMIZED ? m.server.nics : 1;
    leaves_ = (m.servers + m.fabric.servers_per_leaf - 1) / m.fabric.servers_per_leaf;
    pods_ = m.fabric.levels >= 3 ? (leaves_ + m.fabric.leaves_per_pod - 1) / m.fabric.leaves_per_pod : 1;
  }

  void build(std::vector<sg4::Host*>& gpus, std::vector<FabricLink>& links) {
    const auto& srv = m_.server;
    const long n_gpus = m_.total_gpus();
    gpus.reserve(static_cast<size_t>(n_gpus));
    first_host_id_ = -1;
    for (long g = 0; g < n_gpus; ++g) {
      auto* host = create_host(fmt::format("gpu-{}", g), {GPU_HOST_SPEED});
      if (first_host_id_ < 0) first_host_id_ = static_cast<long>(host->get_netpoint()->id());
      gpus.push_back(host);
    }
    auto make = [&](const std::string& name, BytesPerSecond bw, Seconds lat, LinkRole role) {
      auto* link = create_link(name, {bw.value()})->set_latency(lat.value())->seal();
      links.push_back({link, role});
      return link;
    };
    for (long g = 0; g < n_gpus; ++g) {
      gpu_up_.push_back(make(fmt::format("nvl-{}-up", g), srv.nvlink_bandwidth, srv.nvlink_latency, LinkRole::NVLINK));
      gpu_down_.push_back(make(fmt::format("nvl-{}-dn", g), srv.nvlink_bandwidth, srv.nvlink_latency, LinkRole::NVLINK));
    }
    const long n_nics = static_cast<long>(m_.servers) * srv.nics;
    for (long n = 0; n < n_nics; ++n) {
      nic_up_.push_back(make(fmt::format("nic-{}-up", n), srv.nic_bandwidth, srv.nic_latency, LinkRole::NIC));
      nic_down_.push_back(
          make(fmt::format("nic-{}-dn", n), srv.nic_bandwidth, srv.nic_latency + m_.fabric.switch_latency, LinkRole::NIC));
    }
    // Injection bandwidth of one leaf (per rail on rail-optimized fabrics).
    const double nics_per_rail_leaf = static_cast<double>(m_.fabric.servers_per_leaf) * srv.nics / rails_;
    const BytesPerSecond leaf_trunk = srv.nic_bandwidth * (nics_per_rail_leaf / m_.fabric.leaf_oversubscription);
    for (long l = 0; l < static_cast<long>(leaves_) * rails_; ++l) {
      leaf_up_.push_back(make(fmt::format("leaf-{}-up", l), leaf_trunk, m_.fabric.switch_latency, LinkRole::LEAF_TRUNK));
      leaf_down_.push_back(make(fmt::format("leaf-{}-dn", l), leaf_trunk, m_.fabric.switch_latency, LinkRole::LEAF_TRUNK));
    }
    if (m_.fabric.levels >= 3) {
      const double between_pods = m_.fabric.pod_oversubscription * m_.fabric.core_oversubscription;
      const BytesPerSecond pod_trunk = leaf_trunk * (static_cast<double>(m_.fabric.leaves_per_pod) * rails_ / between_pods);
      for (int p = 0; p < pods_; ++p) {
        pod_up_.push_back(make(fmt::format("pod-{}-up", p), pod_trunk, m_.fabric.switch_latency, LinkRole::POD_TRUNK));
        pod_down_.push_back(make(fmt::format("pod-{}-dn", p), pod_trunk, m_.fabric.switch_latency, LinkRole::POD_TRUNK));
      }
    }
  }

  void get_local_route(const NetPoint* src, const NetPoint* dst, Route* into, double* latency) override {
    const long a = static_cast<long>(src->id()) - first_host_id_;
    const long b = static_cast<long>(dst->id()) - first_host_id_;
    auto add = [&](sg4::Link* link) {
      into->link_list_.push_back(link->get_impl());
      if (latency != nullptr) *latency += link->get_latency();
    };
    const int per_server = m_.server.gpus;
    const long sa = a / per_server;
    const long sb = b / per_server;
    if (sa == sb) {  // inside one server: through the NVSwitch (or NVLink mesh)
      add(gpu_up_[static_cast<size_t>(a)]);
      add(gpu_down_[static_cast<size_t>(b)]);
      return;
    }
    const long nic_a = nic_of(a);
    const long nic_b = nic_of(b);
    const int rail_a = static_cast<int>(nic_a % m_.server.nics) % rails_;
    const int rail_b = static_cast<int>(nic_b % m_.server.nics) % rails_;
    const long leaf_a = sa / m_.fabric.servers_per_leaf;
    const long leaf_b = sb / m_.fabric.servers_per_leaf;
    add(nic_up_[static_cast<size_t>(nic_a)]);
    if (leaf_a != leaf_b || rail_a != rail_b) {
      add(leaf_up_[static_cast<size_t>(leaf_a * rails_ + rail_a)]);
      if (m_.fabric.levels >= 3) {
        const long pod_a = leaf_a / m_.fabric.leaves_per_pod;
        const long pod_b = leaf_b / m_.fabric.leaves_per_pod;
        if (pod_a != pod_b) {
          add(pod_up_[static_cast<size_t>(pod_a)]);
          add(pod_down_[static_cast<size_t>(pod_b)]);
        }
      }
      add(leaf_down_[static_cast<size_t>(leaf_b * rails_ + rail_b)]);
    }
    add(nic_down_[static_cast<size_t>(nic_b)]);
  }

private:
  /// GPU-to-NIC affinity: GPUs are spread evenly over the server's NICs (GPU i uses NIC
  /// i * nics / gpus), as on DGX servers where each GPU shares a PCIe switch with its NIC.
  [[nodiscard]] long nic_of(long gpu) const {
    const long server = gpu / m_.server.gpus;
    const long local = gpu % m_.server.gpus;
    return server * m_.server.nics + local * m_.server.nics / m_.server.gpus;
  }

  const MachineSpec& m_;
  int rails_ = 1;
  int leaves_ = 1;
  int pods_ = 1;
  long first_host_id_ = 0;
  std::vector<sg4::Link*> gpu_up_, gpu_down_, nic_up_, nic_down_, leaf_up_, leaf_down_, pod_up_, pod_down_;
};

std::unique_ptr<sg4::Engine> make_engine(const std::vector<std::string>& args) {
  std::vector<std::string> all{"odyssey", "--log=xbt_cfg.thres:warning"};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  int argc = static_cast<int>(argv.size());
  auto engine = std::make_unique<sg4::Engine>(&argc, argv.data());
  engine->set_config("network/model:CM02");
  engine->set_config("network/crosstraffic:0");
  engine->set_config("contexts/guard-size:0");
  return engine;
}

Platform::Platform(const MachineSpec& machine) : gpus_per_server_(machine.server.gpus) {
  auto* root = sg4::create_full_zone("machine");
  auto* fabric = new FabricZone("fabric", machine);  // owned by SimGrid once parented
  fabric->set_parent(root->get_impl());
  fabric->build(gpus_, links_);
  fabric->seal();
  if (machine.cpu_hosts.count > 0) {
    // CPU-only servers: hosts with their core counts, in a star zone of their own. Jobs do not
    // run on them; they make the machine's inventory (and its 285k cores) real in the platform.
    auto* cpus = sg4::create_star_zone("cpu-servers");
    cpus->set_parent(root);
    for (int c = 0; c < machine.cpu_hosts.count; ++c)
      cpus->create_host(fmt::format("cpu-{}", c), 1e9)->set_core_count(machine.cpu_hosts.cores_per_host)->seal();
    cpus->seal();
    cpu_hosts_ = machine.cpu_hosts.count;
  }
  root->seal();
  XBT_DEBUG("platform: %ld GPUs, %zu links, %ld CPU hosts", gpu_count(), links_.size(), cpu_hosts_);
}

} // namespace odyssey::sim
