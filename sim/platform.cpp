#include "sim/platform.hpp"

#include <simgrid/kernel/routing/NetPoint.hpp>
#include <simgrid/kernel/routing/NetZoneImpl.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <unordered_set>
#include <utility>

#include <fmt/format.h>

#include "sim/nccl_flows.hpp"

XBT_LOG_NEW_DEFAULT_SUBCATEGORY(odyssey_platform, odyssey, "Odyssey platform construction");

namespace odyssey::sim {

namespace sg4 = simgrid::s4u;
using simgrid::kernel::routing::NetPoint;
using simgrid::kernel::routing::NetZoneImpl;
using simgrid::kernel::routing::Route;

/// NVLink pairs of a DGX-1 (V100) hybrid cube-mesh, (GPU, GPU, links): each GPU has six NVLink2
/// links to four peers; the single links form the cycle 0-2-6-4-5-7-3-1 and the double links the
/// cycle 0-3-2-1-5-6-7-4 (NVIDIA DGX-1 with Tesla V100 System Architecture white paper, Figure 4,
/// as `nvidia-smi topo -m` prints it: NV1 / NV2).
constexpr int CUBE_MESH[][3] = {{0, 2, 1}, {2, 6, 1}, {6, 4, 1}, {4, 5, 1}, {5, 7, 1}, {7, 3, 1},
                                {3, 1, 1}, {1, 0, 1}, {0, 3, 2}, {3, 2, 2}, {2, 1, 2}, {1, 5, 2},
                                {5, 6, 2}, {6, 7, 2}, {7, 4, 2}, {4, 0, 2}};
constexpr int CUBE_MESH_GPUS = 8;
constexpr int CUBE_MESH_LINKS_PER_GPU = 6;

/// Routing zone of all GPUs of the machine. Every GPU has an NVLink port (up and down links to
/// the server's NVSwitch) or, in a hybrid cube-mesh, its NVLink pairs; traffic leaving a server
/// crosses the GPU's PCIe link where PCIe switches are modelled, then a NIC with GPU affinity.
/// Fat trees: every NIC has up and down links to its leaf switch; every leaf (one per rail on
/// rail-optimized fabrics) has a trunk up to the spine layer whose capacity is the leaf's
/// injection bandwidth over its oversubscription, and every pod a trunk up to the core. A trunk
/// aggregates the parallel uplinks that ECMP spreads flows over, so flows share the level's
/// whole capacity instead of hashing onto one cable. Dragonflies: local links between the
/// routers of a group, global links (the parallel cables between two groups aggregated) between
/// groups, minimal routing. Tori: a link to each neighbour, dimension-order routing.
class FabricZone : public NetZoneImpl {
public:
  FabricZone(const std::string& name, const MachineSpec& m) : NetZoneImpl(name), m_(m) {
    rails_ = m.fabric.kind == FabricKind::RAIL_OPTIMIZED ? m.server.nics : 1;
    leaves_ = (m.servers + m.fabric.servers_per_leaf - 1) / m.fabric.servers_per_leaf;
    pods_ = m.fabric.levels >= 3 ? (leaves_ + m.fabric.leaves_per_pod - 1) / m.fabric.leaves_per_pod : 1;
    mesh_ = m.server.intra == IntraServer::NVLINK_MESH && m.server.gpus == CUBE_MESH_GPUS;
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
      if (role != LinkRole::NVLINK && role != LinkRole::NIC && role != LinkRole::PCIE)
        fabric_links_.insert(link);
      return link;
    };
    if (mesh_) {
      // One link per direction per NVLink pair, as wide as its NVLink count.
      const BytesPerSecond per_link = srv.nvlink_bandwidth * (1.0 / CUBE_MESH_LINKS_PER_GPU);
      mesh_links_.assign(static_cast<size_t>(m_.servers) * CUBE_MESH_GPUS * CUBE_MESH_GPUS, nullptr);
      for (long s = 0; s < m_.servers; ++s)
        for (const auto& [a, b, count] : CUBE_MESH)
          for (const auto& [x, y] : {std::pair{a, b}, std::pair{b, a}})
            mesh_links_[mesh_index(s, x, y)] =
                make(fmt::format("nvl-{}-{}-{}", s, x, y), per_link * static_cast<double>(count),
                     srv.nvlink_latency, LinkRole::NVLINK);
    } else {
      for (long g = 0; g < n_gpus; ++g) {
        gpu_up_.push_back(
            make(fmt::format("nvl-{}-up", g), srv.nvlink_bandwidth, srv.nvlink_latency, LinkRole::NVLINK));
        gpu_down_.push_back(
            make(fmt::format("nvl-{}-dn", g), srv.nvlink_bandwidth, srv.nvlink_latency, LinkRole::NVLINK));
      }
    }
    if (srv.pcie_switches > 0)
      for (long g = 0; g < n_gpus; ++g) {
        pcie_up_.push_back(
            make(fmt::format("pcie-{}-up", g), srv.pcie_bandwidth, Seconds(0), LinkRole::PCIE));
        pcie_down_.push_back(
            make(fmt::format("pcie-{}-dn", g), srv.pcie_bandwidth, Seconds(0), LinkRole::PCIE));
      }
    const long n_nics = static_cast<long>(m_.servers) * srv.nics;
    for (long n = 0; n < n_nics; ++n) {
      nic_up_.push_back(make(fmt::format("nic-{}-up", n), srv.nic_bandwidth, srv.nic_latency, LinkRole::NIC));
      nic_down_.push_back(make(fmt::format("nic-{}-dn", n), srv.nic_bandwidth,
                               srv.nic_latency + m_.fabric.switch_latency, LinkRole::NIC));
    }
    switch (m_.fabric.kind) {
    case FabricKind::DRAGONFLY: build_dragonfly(make); break;
    case FabricKind::TORUS: build_torus(make); break;
    default: build_clos(make); break;
    }
  }

  void get_local_route(const NetPoint* src, const NetPoint* dst, Route* into, double* latency) override {
    const long a = static_cast<long>(src->id()) - first_host_id_;
    const long b = static_cast<long>(dst->id()) - first_host_id_;
    auto add = [&](sg4::Link* link) {
      if (latency != nullptr) *latency += link->get_latency();
      if (!every_link_ && left_out_.contains(link)) return;
      into->link_list_.push_back(link->get_impl());
    };
    const int per_server = m_.server.gpus;
    const long sa = a / per_server;
    const long sb = b / per_server;
    if (sa == sb) { // inside one server: through the NVSwitch, or the NVLink mesh
      if (!mesh_) {
        add(gpu_up_[static_cast<size_t>(a)]);
        add(gpu_down_[static_cast<size_t>(b)]);
        return;
      }
      const int la = static_cast<int>(a % per_server);
      const int lb = static_cast<int>(b % per_server);
      if (auto* direct = mesh_links_[mesh_index(sa, la, lb)]) {
        add(direct);
        return;
      }
      // Not neighbours: through the first GPU that is a neighbour of both (NVLink forwarding).
      for (int via = 0; via < CUBE_MESH_GPUS; ++via)
        if (mesh_links_[mesh_index(sa, la, via)] != nullptr &&
            mesh_links_[mesh_index(sa, via, lb)] != nullptr) {
          add(mesh_links_[mesh_index(sa, la, via)]);
          add(mesh_links_[mesh_index(sa, via, lb)]);
          return;
        }
      return;
    }
    const long nic_a = nic_of(a);
    const long nic_b = nic_of(b);
    if (!pcie_up_.empty()) add(pcie_up_[static_cast<size_t>(a)]);
    add(nic_up_[static_cast<size_t>(nic_a)]);
    switch (m_.fabric.kind) {
    case FabricKind::DRAGONFLY: route_dragonfly(sa, sb, add); break;
    case FabricKind::TORUS: route_torus(sa, sb, add); break;
    default: route_clos(a, b, nic_a, nic_b, add); break;
    }
    add(nic_down_[static_cast<size_t>(nic_b)]);
    if (!pcie_down_.empty()) add(pcie_down_[static_cast<size_t>(b)]);
  }

  /// Leaves out of the sharing problem the links that no traffic of the job can saturate: a trunk
  /// or PCIe link whose capacity is at least the NIC bandwidth of the job's servers behind it (every
  /// flow on it also crosses one of those NICs, so together they cannot exceed it). Max-min
  /// sharing gives every flow the same rate with or without such a link, so the answer does not
  /// change; but each flow's sharing problem shrinks to its own NICs instead of the whole fabric,
  /// and a flow that finishes re-solves only the flows it shares a link with. The routes keep the
  /// link's latency. Returns how many links were left out.
  long leave_out_unsaturable(const std::vector<char>& server_in_job) {
    const auto& srv = m_.server;
    if (srv.pcie_switches > 0 && srv.pcie_bandwidth.value() >= srv.nic_bandwidth.value()) {
      for (auto* l : pcie_up_) left_out_.insert(l);
      for (auto* l : pcie_down_) left_out_.insert(l);
    }
    if (m_.fabric.kind == FabricKind::DRAGONFLY || m_.fabric.kind == FabricKind::TORUS)
      return static_cast<long>(left_out_.size());
    // NIC bandwidth of the job's servers under each leaf (per rail) and each pod.
    const double per_rail = static_cast<double>(srv.nics) / rails_ * srv.nic_bandwidth.value();
    std::vector<double> leaf_load(static_cast<size_t>(leaves_), 0.0);
    std::vector<double> pod_load(static_cast<size_t>(pods_), 0.0);
    for (long s = 0; s < m_.servers; ++s) {
      if (server_in_job[static_cast<size_t>(s)] == 0) continue;
      const long leaf = s / m_.fabric.servers_per_leaf;
      leaf_load[static_cast<size_t>(leaf)] += per_rail;
      if (m_.fabric.levels >= 3)
        pod_load[static_cast<size_t>(leaf / m_.fabric.leaves_per_pod)] += per_rail * rails_;
    }
    for (long l = 0; l < leaves_; ++l)
      for (int r = 0; r < rails_; ++r)
        for (int u = 0; u < leaf_paths_; ++u) {
          const size_t i = static_cast<size_t>((l * rails_ + r) * leaf_paths_ + u);
          if (leaf_load[static_cast<size_t>(l)] <= leaf_up_[i]->get_bandwidth()) {
            left_out_.insert(leaf_up_[i]);
            left_out_.insert(leaf_down_[i]);
          }
        }
    for (int p = 0; p < static_cast<int>(pod_up_.size()) / std::max(1, pod_paths_); ++p)
      for (int u = 0; u < pod_paths_; ++u) {
        const size_t i = static_cast<size_t>(p * pod_paths_ + u);
        if (pod_load[static_cast<size_t>(p)] <= pod_up_[i]->get_bandwidth()) {
          left_out_.insert(pod_up_[i]);
          left_out_.insert(pod_down_[i]);
        }
      }
    return static_cast<long>(left_out_.size());
  }

  /// Whether moving every GPU of a block by one NIC's worth of GPUs (GPU k -> k + gpus/nics,
  /// cyclic over the block's NIC positions, the same in each server) maps every link of the
  /// sharing problem that flows between servers cross onto one of the same kind: NICs shared
  /// alike by the GPUs, PCIe links per GPU, and every fabric link in the problem either on one
  /// rail (mapped onto the next rail's) or shared by all NICs of its servers (mapped onto
  /// itself), with no hashing among parallel uplinks where a level is in the problem (a hash
  /// would send a flow and its image up different cables). (Flows between servers never cross
  /// NVLink, so an NVLink mesh does not matter.) Links left out of the problem do not matter.
  [[nodiscard]] bool rails_independent() const {
    if (m_.server.gpus % m_.server.nics != 0) return false;
    if (m_.fabric.kind == FabricKind::DRAGONFLY || m_.fabric.kind == FabricKind::TORUS) return false;
    const bool leaves_in = in_problem(leaf_up_) || in_problem(leaf_down_);
    const bool pods_in = in_problem(pod_up_) || in_problem(pod_down_);
    return !(leaves_in && leaf_paths_ > 1) && !(pods_in && pod_paths_ > 1);
  }

  /// The fabric links of the sharing problem that every NIC position of a server shares (the
  /// links rails_independent maps onto themselves): leaf trunks of a fabric without rails, and
  /// pod trunks.
  [[nodiscard]] std::vector<sg4::Link*> links_shared_by_positions() const {
    std::vector<sg4::Link*> shared;
    auto add = [&](const std::vector<sg4::Link*>& links) {
      for (auto* l : links)
        if (!left_out_.contains(l)) shared.push_back(l);
    };
    if (rails_ == 1) {
      add(leaf_up_);
      add(leaf_down_);
    }
    add(pod_up_);
    add(pod_down_);
    return shared;
  }

  /// Whether the route from `src` to `dst` crosses a fabric link that is in the sharing problem.
  [[nodiscard]] bool crosses_shared_fabric(sg4::Host* src, sg4::Host* dst) const {
    std::vector<sg4::Link*> links;
    double latency = 0;
    src->route_to(dst, links, &latency);
    return std::any_of(links.begin(), links.end(), [&](sg4::Link* l) { return fabric_links_.contains(l); });
  }

  /// Every link of the route from GPU `src` to GPU `dst`, those left out of the sharing problem
  /// included (for the bytes each link carried).
  void full_route(sg4::Host* src, sg4::Host* dst, std::vector<sg4::Link*>& links) {
    every_link_ = true;
    double latency = 0;
    src->route_to(dst, links, &latency);
    every_link_ = false;
  }

private:
  [[nodiscard]] bool in_problem(const std::vector<sg4::Link*>& links) const {
    return std::any_of(links.begin(), links.end(), [&](sg4::Link* l) { return !left_out_.contains(l); });
  }

  template <class Make> void build_clos(Make& make) {
    const auto& srv = m_.server;
    // Injection bandwidth of one leaf (per rail on rail-optimized fabrics).
    const double nics_per_rail_leaf = static_cast<double>(m_.fabric.servers_per_leaf) * srv.nics / rails_;
    const BytesPerSecond leaf_trunk =
        srv.nic_bandwidth * (nics_per_rail_leaf / m_.fabric.leaf_oversubscription);
    const double between_pods = m_.fabric.pod_oversubscription * m_.fabric.core_oversubscription;
    const BytesPerSecond pod_trunk =
        leaf_trunk * (static_cast<double>(m_.fabric.leaves_per_pod) * rails_ / between_pods);
    // With hashed ECMP a trunk is its uplinks, each as fast as a NIC port.
    const bool hash = m_.fabric.ecmp == Ecmp::HASH;
    auto uplinks = [&](BytesPerSecond trunk) {
      return hash ? std::max(1, static_cast<int>(std::lround(trunk.value() / srv.nic_bandwidth.value()))) : 1;
    };
    leaf_paths_ = uplinks(leaf_trunk);
    for (long l = 0; l < static_cast<long>(leaves_) * rails_; ++l)
      for (int u = 0; u < leaf_paths_; ++u) {
        const std::string name = hash ? fmt::format("leaf-{}-{}", l, u) : fmt::format("leaf-{}", l);
        leaf_up_.push_back(make(name + "-up", leaf_trunk * (1.0 / leaf_paths_), m_.fabric.switch_latency,
                                LinkRole::LEAF_TRUNK));
        leaf_down_.push_back(make(name + "-dn", leaf_trunk * (1.0 / leaf_paths_), m_.fabric.switch_latency,
                                  LinkRole::LEAF_TRUNK));
      }
    if (m_.fabric.levels >= 3) {
      pod_paths_ = uplinks(pod_trunk);
      for (int p = 0; p < pods_; ++p)
        for (int u = 0; u < pod_paths_; ++u) {
          const std::string name = hash ? fmt::format("pod-{}-{}", p, u) : fmt::format("pod-{}", p);
          pod_up_.push_back(make(name + "-up", pod_trunk * (1.0 / pod_paths_), m_.fabric.switch_latency,
                                 LinkRole::POD_TRUNK));
          pod_down_.push_back(make(name + "-dn", pod_trunk * (1.0 / pod_paths_), m_.fabric.switch_latency,
                                   LinkRole::POD_TRUNK));
        }
    }
  }

  /// ECMP's choice among `paths` parallel links for the flow a -> b at one level (a splitmix64
  /// hash of the endpoints and the level: deterministic, and different per level).
  [[nodiscard]] static size_t ecmp(long a, long b, int level, int paths) {
    if (paths <= 1) return 0;
    auto x = static_cast<std::uint64_t>(a) * 0x9E3779B97F4A7C15ULL ^
             static_cast<std::uint64_t>(b) * 0xC2B2AE3D27D4EB4FULL ^
             static_cast<std::uint64_t>(level) * 0x165667B19E3779F9ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return static_cast<size_t>((x ^ (x >> 31)) % static_cast<std::uint64_t>(paths));
  }

  template <class Add> void route_clos(long a, long b, long nic_a, long nic_b, Add& add) const {
    const long sa = a / m_.server.gpus;
    const long sb = b / m_.server.gpus;
    const int rail_a = static_cast<int>(nic_a % m_.server.nics) % rails_;
    const int rail_b = static_cast<int>(nic_b % m_.server.nics) % rails_;
    const long leaf_a = sa / m_.fabric.servers_per_leaf;
    const long leaf_b = sb / m_.fabric.servers_per_leaf;
    if (leaf_a == leaf_b && rail_a == rail_b) return;
    const auto leaf = [&](long l, int rail, int level) {
      return static_cast<size_t>((l * rails_ + rail) * leaf_paths_) + ecmp(a, b, level, leaf_paths_);
    };
    add(leaf_up_[leaf(leaf_a, rail_a, 0)]);
    if (m_.fabric.levels >= 3) {
      const long pod_a = leaf_a / m_.fabric.leaves_per_pod;
      const long pod_b = leaf_b / m_.fabric.leaves_per_pod;
      if (pod_a != pod_b) {
        add(pod_up_[static_cast<size_t>(pod_a * pod_paths_) + ecmp(a, b, 1, pod_paths_)]);
        add(pod_down_[static_cast<size_t>(pod_b * pod_paths_) + ecmp(a, b, 2, pod_paths_)]);
      }
    }
    add(leaf_down_[leaf(leaf_b, rail_b, 3)]);
  }

  template <class Make> void build_dragonfly(Make& make) {
    const DragonflySpec& d = m_.fabric.dragonfly;
    const long routers = static_cast<long>(d.groups) * d.routers_per_group;
    local_.assign(static_cast<size_t>(routers * d.routers_per_group), nullptr);
    for (long r = 0; r < routers; ++r)
      for (int j = 0; j < d.routers_per_group; ++j)
        if (j != r % d.routers_per_group)
          local_[static_cast<size_t>(r * d.routers_per_group + j)] =
              make(fmt::format("df-local-{}-{}", r, j), d.link_bandwidth, m_.fabric.switch_latency,
                   LinkRole::LOCAL);
    // The a x h global cables of a group spread evenly over the other groups; those between two
    // groups form one link as wide as all of them (ECMP over parallel cables).
    const int cables =
        std::max(1, d.routers_per_group * d.global_links_per_router / std::max(1, d.groups - 1));
    global_.assign(static_cast<size_t>(d.groups) * d.groups, nullptr);
    for (int g = 0; g < d.groups; ++g)
      for (int h = 0; h < d.groups; ++h)
        if (g != h)
          global_[static_cast<size_t>(g * d.groups + h)] =
              make(fmt::format("df-global-{}-{}", g, h), d.link_bandwidth * static_cast<double>(cables),
                   m_.fabric.switch_latency, LinkRole::GLOBAL);
  }

  /// The router of group `g` holding the global cables to group `h`: the groups are dealt out
  /// over the routers in turn.
  [[nodiscard]] int gateway(int g, int h) const {
    const DragonflySpec& d = m_.fabric.dragonfly;
    return ((h - g - 1 + d.groups) % d.groups) % d.routers_per_group;
  }

  template <class Add> void route_dragonfly(long sa, long sb, Add& add) const {
    const DragonflySpec& d = m_.fabric.dragonfly;
    const long ra = sa / d.servers_per_router;
    const long rb = sb / d.servers_per_router;
    if (ra == rb) return;
    const int a = d.routers_per_group;
    const int ga = static_cast<int>(ra / a);
    const int gb = static_cast<int>(rb / a);
    auto hop = [&](long from, int to_local) {
      if (from % a != to_local) add(local_[static_cast<size_t>(from * a + to_local)]);
    };
    if (ga == gb) {
      hop(ra, static_cast<int>(rb % a));
      return;
    }
    hop(ra, gateway(ga, gb));
    add(global_[static_cast<size_t>(ga * d.groups + gb)]);
    hop(static_cast<long>(gb) * a + gateway(gb, ga), static_cast<int>(rb % a));
  }

  template <class Make> void build_torus(Make& make) {
    const TorusSpec& t = m_.fabric.torus;
    torus_.assign(static_cast<size_t>(m_.servers) * 6, nullptr);
    for (long s = 0; s < m_.servers; ++s)
      for (int dim = 0; dim < 3; ++dim) {
        if (t.dims[static_cast<size_t>(dim)] < 2) continue;
        for (int dir = 0; dir < 2; ++dir)
          torus_[static_cast<size_t>(s * 6 + dim * 2 + dir)] =
              make(fmt::format("torus-{}-{}{}", s, "xyz"[dim], dir == 0 ? '+' : '-'), t.link_bandwidth,
                   m_.fabric.switch_latency, LinkRole::TORUS);
      }
  }

  /// Dimension-order routing (x, then y, then z), each the shorter way around its ring.
  template <class Add> void route_torus(long sa, long sb, Add& add) const {
    const auto& dims = m_.fabric.torus.dims;
    std::array<long, 3> at{sa % dims[0], sa / dims[0] % dims[1], sa / (static_cast<long>(dims[0]) * dims[1])};
    const std::array<long, 3> to{sb % dims[0], sb / dims[0] % dims[1],
                                 sb / (static_cast<long>(dims[0]) * dims[1])};
    for (int dim = 0; dim < 3; ++dim) {
      const long n = dims[static_cast<size_t>(dim)];
      const long forward = (to[static_cast<size_t>(dim)] - at[static_cast<size_t>(dim)] + n) % n;
      const int dir = forward <= n / 2 ? 0 : 1;
      for (long steps = dir == 0 ? forward : n - forward; steps > 0; --steps) {
        const long node = at[0] + dims[0] * (at[1] + static_cast<long>(dims[1]) * at[2]);
        add(torus_[static_cast<size_t>(node * 6 + dim * 2 + dir)]);
        at[static_cast<size_t>(dim)] = (at[static_cast<size_t>(dim)] + (dir == 0 ? 1 : n - 1)) % n;
      }
    }
  }

  [[nodiscard]] long nic_of(long gpu) const { return m_.nic_of(gpu); }

  [[nodiscard]] size_t mesh_index(long server, int a, int b) const {
    return static_cast<size_t>((server * CUBE_MESH_GPUS + a) * CUBE_MESH_GPUS + b);
  }

  const MachineSpec& m_;
  int rails_ = 1;
  int leaves_ = 1;
  int pods_ = 1;
  bool mesh_ = false;
  int leaf_paths_ = 1;                            ///< parallel uplinks per leaf trunk (1: one aggregate link)
  std::unordered_set<const sg4::Link*> left_out_; ///< links no flow of the job can saturate
  bool every_link_ = false;                       ///< routes include the links left out
  std::unordered_set<const sg4::Link*> fabric_links_; ///< links between switches (not a GPU's or a NIC's own)
  int pod_paths_ = 1;
  long first_host_id_ = 0;
  std::vector<sg4::Link*> gpu_up_, gpu_down_, pcie_up_, pcie_down_, nic_up_, nic_down_, leaf_up_, leaf_down_,
      pod_up_, pod_down_, mesh_links_, local_, global_, torus_;
};

const char* to_string(LinkRole role) {
  switch (role) {
  case LinkRole::NVLINK: return "nvlink";
  case LinkRole::NIC: return "nic";
  case LinkRole::LEAF_TRUNK: return "leaf-trunk";
  case LinkRole::POD_TRUNK: return "pod-trunk";
  case LinkRole::PCIE: return "pcie";
  case LinkRole::LOCAL: return "df-local";
  case LinkRole::GLOBAL: return "df-global";
  case LinkRole::TORUS: return "torus";
  }
  return "?";
}

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
  // How flows share a link. CM02 models TCP: a flow's weight on a bottleneck is the inverse of its
  // route's latency (a window per round trip), so a flow across the core gets less than one
  // inside a pod, and TCP's window caps a flow at TCP-gamma / 2 RTT. GPU fabrics are lossless
  // and share a congested port between the flows queued at it, whatever their round trip:
  // InfiniBand by credit-based link-level flow control and arbitration between input ports,
  // RoCE by PFC and a rate-based congestion control (DCQCN, Zhu et al., SIGCOMM 2015) rather than
  // a window per round trip. So SimGrid sees no latency at all: every flow has weight 1 (plain
  // max-min fairness) and no window cap; each flow's route latency is added after its bytes have
  // moved (wait_bytes). Equal weights also let alike flows on routes of different lengths finish
  // together, in one solve of the sharing problem rather than one each (README "Speed").
  engine->set_config("network/latency-factor:0");
  engine->set_config("network/TCP-gamma:0");
  // The max-min solver drops a link from the sharing problem once the sum of its flows' weights
  // falls below maxmin/precision, and counts a link as full within that fraction of its
  // capacity. SimGrid's default 1e-5 let rounding residues over the thousands of flows a
  // 10k-GPU fabric puts on one link abort a 12,288-GPU run ("Cannot saturate more a constraint
  // that has no active element"); 1e-3 is three orders of magnitude below one flow's weight and
  // a link counts as full within 0.1% of its capacity.
  engine->set_config("maxmin/precision:1e-3");
  return engine;
}

Platform::Platform(const MachineSpec& machine) : gpus_per_server_(machine.server.gpus) {
  auto* root = sg4::create_full_zone("machine");
  fabric_ = new FabricZone("fabric", machine); // owned by SimGrid once parented
  auto* fabric = fabric_;
  fabric->set_parent(root->get_impl());
  fabric->build(gpus_, links_);
  fabric->seal();
  if (machine.cpu_hosts.count > 0) {
    // CPU-only servers: hosts with their core counts, in a star zone of their own. Jobs do not
    // run on them; they make the machine's inventory (and its 285k cores) real in the platform.
    auto* cpus = sg4::create_star_zone("cpu-servers");
    cpus->set_parent(root);
    for (int c = 0; c < machine.cpu_hosts.count; ++c)
      cpus->create_host(fmt::format("cpu-{}", c), 1e9)
          ->set_core_count(machine.cpu_hosts.cores_per_host)
          ->seal();
    cpus->seal();
    cpu_hosts_ = machine.cpu_hosts.count;
  }
  root->seal();
  XBT_DEBUG("platform: %ld GPUs, %zu links, %ld CPU hosts", gpu_count(), links_.size(), cpu_hosts_);
}

long Platform::leave_out_unsaturable(const std::vector<long>& job_gpus) {
  std::vector<char> in_job(static_cast<size_t>(gpu_count() / gpus_per_server_), 0);
  for (long g : job_gpus) in_job[static_cast<size_t>(server_of(g))] = 1;
  return fabric_->leave_out_unsaturable(in_job);
}

bool Platform::fold_positions(int positions) {
  if (!fabric_->rails_independent()) return false;
  // Only one of the `positions` flows of each orbit moves on a link every position shares: it
  // gets the orbit's share of the link when the link has 1/positions of its capacity.
  std::unordered_set<const sg4::Link*> shared;
  for (auto* link : fabric_->links_shared_by_positions()) {
    link->set_bandwidth(link->get_bandwidth() / positions);
    shared.insert(link);
  }
  for (FabricLink& fl : links_)
    if (shared.contains(fl.link)) fl.simulated_share = 1.0 / positions;
  return true;
}

bool Platform::crosses_shared_fabric(long src, long dst) const {
  return fabric_->crosses_shared_fabric(gpu(src), gpu(dst));
}

void Platform::route(long src, long dst, std::vector<sg4::Link*>& links) const {
  fabric_->full_route(gpu(src), gpu(dst), links);
}

Seconds latency_of(const std::vector<sg4::Link*>& route) {
  double latency = 0.0;
  for (const auto* link : route) latency += link->get_latency();
  return Seconds(latency);
}

Seconds Platform::route_latency(long src, long dst) const {
  std::vector<sg4::Link*> links;
  route(src, dst, links);
  return latency_of(links);
}

void FlowsInFlight::add(sg4::CommPtr comm, Seconds latency) {
  comms.push_back(std::move(comm));
  route_latency.push_back(latency.value());
}

Seconds wait_bytes(FlowsInFlight& flows, double* moved) {
  if (flows.empty()) return Seconds(0);
  // Waits only for the flows still moving. SimGrid 3.32 keeps every host-to-host comm in maestro's
  // list of activities and removes a comm from it by scanning the whole list, once when the comm
  // finishes and once more for each wait on it (CommImpl::finish); a finished flow (nothing left to
  // move) is not waited for, which spares that second scan for most flows of a large group.
  for (const sg4::CommPtr& comm : flows.comms)
    if (comm->get_remaining() > 0) comm->wait();
  double landed = 0.0;
  for (size_t i = 0; i < flows.comms.size(); ++i) {
    const double finish = flows.comms[i]->get_finish_time();
    landed = std::max(landed, finish + flows.route_latency[i]);
    if (moved != nullptr) *moved = std::max(*moved, finish);
  }
  flows = {};
  return Seconds(std::max(0.0, landed - sg4::Engine::get_clock()));
}

sg4::CommPtr Platform::start_flow(const Flow& flow) const {
  const auto size = static_cast<std::uint64_t>(std::max(1.0, flow.bytes.value()));
  return sg4::Comm::sendto_async(gpu(flow.src), gpu(flow.sim_dst >= 0 ? flow.sim_dst : flow.dst), size);
}

} // namespace odyssey::sim
