#include "sim/nccl_flows.hpp"

#include <algorithm>
#include <map>

namespace odyssey::sim {

namespace {

/// Consecutive members of one server, in order.
std::vector<std::vector<long>> group_by_server(const std::vector<long>& members, int gpus_per_server) {
  std::vector<std::vector<long>> by_server;
  for (long g : members) {
    if (by_server.empty() || by_server.back().front() / gpus_per_server != g / gpus_per_server)
      by_server.emplace_back();
    by_server.back().push_back(g);
  }
  return by_server;
}

} // namespace

namespace {

/// Orders in which a ring visits the GPUs of a server (local indices), with the share of the
/// data each carries. On an NVSwitch any order sees the same links; on a DGX-1 hybrid cube-mesh
/// NCCL's rings follow NVLink cycles: the single-link cycle both ways (1/6 of the data each,
/// one 25 GB/s link) and the double-link cycle both ways (1/3 each), which loads all six NVLinks
/// of every GPU evenly (the cycles are those of sim/platform.cpp's CUBE_MESH).
struct IntraOrder {
  std::vector<int> order;
  double share = 1.0;
};

std::vector<IntraOrder> intra_orders(IntraServer intra, const std::vector<std::vector<long>>& by_server,
                                     int gpus_per_server) {
  const bool full_mesh =
      intra == IntraServer::NVLINK_MESH && gpus_per_server == 8 &&
      std::all_of(by_server.begin(), by_server.end(), [](const auto& g) { return g.size() == 8; });
  const int k = static_cast<int>(by_server.front().size());
  if (!full_mesh) {
    std::vector<int> natural(static_cast<size_t>(k));
    for (int i = 0; i < k; ++i) natural[static_cast<size_t>(i)] = i;
    return {{natural, 1.0}};
  }
  const std::vector<int> single{0, 2, 6, 4, 5, 7, 3, 1};
  const std::vector<int> dual{0, 3, 2, 1, 5, 6, 7, 4};
  return {{single, 1.0 / 6},
          {{single.rbegin(), single.rend()}, 1.0 / 6},
          {dual, 1.0 / 3},
          {{dual.rbegin(), dual.rend()}, 1.0 / 3}};
}

} // namespace

std::vector<Flow> nccl_rings(const std::vector<long>& members, const ServerSpec& server,
                             const RingSpec& ring) {
  std::vector<Flow> edges;
  const int n = static_cast<int>(members.size());
  if (n < 2) return edges;
  const int gpus_per_server = server.gpus;
  const std::vector<std::vector<long>> by_server = group_by_server(members, gpus_per_server);
  const int servers = static_cast<int>(by_server.size());
  const int per_server = static_cast<int>(by_server.front().size());
  const int channels = servers > 1 ? nccl_net_channels(per_server, server.nics) : 1;
  const std::vector<IntraOrder> orders = intra_orders(server.intra, by_server, gpus_per_server);
  std::vector<long> order;
  order.reserve(members.size());
  for (int c = 0; c < channels; ++c) {
    for (const IntraOrder& io : orders) {
      const Bytes per_edge = ring.size * ring.edge_factor / channels * io.share;
      order.clear();
      for (const auto& group : by_server) {
        // Channel c leaves each server through GPU c x k / channels, so the channels' exits are
        // spread over the NICs even where two GPUs share one (GPU i uses NIC i x nics / k); the
        // ring enters at the GPU after the exit in the server's order and ends at the exit.
        const int k = static_cast<int>(group.size());
        const int exit = c * k / channels;
        const int at = static_cast<int>(std::find(io.order.begin(), io.order.end(), exit) - io.order.begin());
        for (int i = 0; i < k; ++i)
          order.push_back(group[static_cast<size_t>(io.order[static_cast<size_t>((at + 1 + i) % k)])]);
      }
      for (int i = 0; i < n; ++i) {
        const long a = order[static_cast<size_t>(i)];
        const long b = order[static_cast<size_t>((i + 1) % n)];
        const bool same_server = a / gpus_per_server == b / gpus_per_server;
        const double efficiency = same_server ? ring.efficiency_nvlink : ring.efficiency_net;
        edges.push_back({.src = a, .dst = b, .bytes = per_edge / efficiency});
      }
    }
  }
  return edges;
}

std::vector<Flow> nccl_trees(const std::vector<long>& members, const ServerSpec& server,
                             const TreeSpec& tree) {
  std::vector<Flow> edges;
  if (members.size() < 2) return edges;
  const std::vector<std::vector<long>> by_server = group_by_server(members, server.gpus);
  const int servers = static_cast<int>(by_server.size());
  const int per_server = static_cast<int>(by_server.front().size());
  const int channels = nccl_net_channels(per_server, server.nics);
  const Bytes tree_bytes = tree.size / 2 / channels / tree.efficiency_net;
  for (int c = 0; c < channels; ++c) {
    std::vector<long> head(static_cast<size_t>(servers));
    for (int s = 0; s < servers; ++s) {
      const auto& group = by_server[static_cast<size_t>(s)];
      const int k = static_cast<int>(group.size());
      head[static_cast<size_t>(s)] = group[static_cast<size_t>(c * k / channels)];
    }
    for (int t = 0; t < 2; ++t) {
      for (int i = 1; i < servers; ++i) {
        const int parent = (i - 1) / 2;
        const int child_server = t == 0 ? i : servers - 1 - i;
        const int parent_server = t == 0 ? parent : servers - 1 - parent;
        const long a = head[static_cast<size_t>(child_server)];
        const long b = head[static_cast<size_t>(parent_server)];
        edges.push_back({.src = a, .dst = b, .bytes = tree_bytes});
        edges.push_back({.src = b, .dst = a, .bytes = tree_bytes});
      }
    }
  }
  return edges;
}

bool tree_edges_as_rings(std::vector<Flow>& flows, int gpus_per_server) {
  const auto server = [&](long g) { return g / gpus_per_server; };
  // Per size and position in the server (a channel's heads): the tree edges between them.
  std::map<std::pair<double, long>, std::vector<size_t>> groups;
  for (size_t i = 0; i < flows.size(); ++i)
    if (server(flows[i].src) != server(flows[i].dst))
      groups[{flows[i].bytes.value(), flows[i].src % gpus_per_server}].push_back(i);
  std::vector<std::pair<size_t, long>> moves;
  for (const auto& [key, group] : groups) {
    std::map<long, int> out; // GPUs of one position: in server order
    std::map<long, int> in;
    for (size_t i : group) {
      ++out[flows[i].src];
      ++in[flows[i].dst];
    }
    if (in != out) return false;
    int rings = 0;
    for (const auto& [gpu, degree] : out) rings = std::max(rings, degree);
    std::map<long, std::vector<long>> successors;
    for (int k = 1; k <= rings; ++k) {
      std::vector<long> ring;
      for (const auto& [gpu, degree] : out)
        if (degree >= k) ring.push_back(gpu);
      if (ring.size() < 2) return false;
      for (size_t j = 0; j < ring.size(); ++j) successors[ring[j]].push_back(ring[(j + 1) % ring.size()]);
    }
    std::map<long, size_t> used;
    for (size_t i : group) moves.emplace_back(i, successors[flows[i].src][used[flows[i].src]++]);
  }
  for (const auto& [i, dst] : moves) flows[i].sim_dst = dst;
  return true;
}

std::vector<Flow> nccl_tree_chains(const std::vector<long>& members, const ServerSpec& server, Bytes size,
                                   double efficiency_nvlink) {
  std::vector<Flow> edges;
  for (const auto& group : group_by_server(members, server.gpus)) {
    const int k = static_cast<int>(group.size());
    if (k < 2) continue;
    const Bytes bytes = size * (2.0 * (k - 1) / k) / efficiency_nvlink;
    for (int i = 0; i < k; ++i)
      edges.push_back({.src = group[static_cast<size_t>(i)],
                       .dst = group[static_cast<size_t>((i + 1) % k)],
                       .bytes = bytes});
  }
  return edges;
}

namespace {

/// NVLink SHARP inside each server: every GPU sends size x (1 + 1/k) to the switch and reads as
/// much back. A flow from each GPU to the next of its server loads each port with exactly that,
/// each way, which is all the switch-side accounting needs.
void nvls_flows(const std::vector<std::vector<long>>& by_server, Bytes size, double eff,
                std::vector<Flow>& out) {
  for (const auto& group : by_server) {
    const int k = static_cast<int>(group.size());
    if (k < 2) continue;
    const Bytes bytes = size * (1.0 + 1.0 / k) / eff;
    for (int i = 0; i < k; ++i)
      out.push_back({.src = group[static_cast<size_t>(i)],
                     .dst = group[static_cast<size_t>((i + 1) % k)],
                     .bytes = bytes});
  }
}

/// In-network reduction (SHARP) between servers: channel c's head GPU of every server sends its
/// 1/channels share of the buffer up once and receives the reduced share once. A ring over the
/// servers in order carries that load on every NIC and, where it crosses switches, one stream
/// per direction per trunk, as the switches' aggregation tree does.
void sharp_flows(const std::vector<std::vector<long>>& by_server, int nics, Bytes size, double eff,
                 std::vector<Flow>& out) {
  const int servers = static_cast<int>(by_server.size());
  const int k = static_cast<int>(by_server.front().size());
  const int channels = nccl_net_channels(k, nics);
  for (int c = 0; c < channels; ++c)
    for (int s = 0; s < servers; ++s) {
      const auto& a = by_server[static_cast<size_t>(s)];
      const auto& b = by_server[static_cast<size_t>((s + 1) % servers)];
      out.push_back({.src = a[static_cast<size_t>(c * k / channels)],
                     .dst = b[static_cast<size_t>(c * k / channels)],
                     .bytes = size / channels / eff});
    }
}

} // namespace

std::vector<Flow> nccl_flows(const CollectivePlan& plan, CollectiveKind kind,
                             const std::vector<long>& members, const MachineSpec& machine, Bytes size) {
  const ServerSpec& server = machine.server;
  const int gpus_per_server = server.gpus;
  const int nics = server.nics;
  const TreeSpec tree{.size = size, .efficiency_net = plan.efficiency_net};
  std::vector<Flow> flows;
  const int n = static_cast<int>(members.size());
  if (n < 2) return flows;
  const auto same_server = [&](long a, long b) { return a / gpus_per_server == b / gpus_per_server; };
  const std::vector<std::vector<long>> by_server = group_by_server(members, gpus_per_server);
  switch (plan.algo) {
  case Algorithm::TREE:
    flows = nccl_trees(members, server, tree);
    for (const Flow& f : nccl_tree_chains(members, server, size, plan.efficiency_nvlink)) flows.push_back(f);
    return flows;
  case Algorithm::NVLS:
    nvls_flows(by_server, size, plan.efficiency_nvls, flows);
    if (by_server.size() > 1) sharp_flows(by_server, nics, size, plan.efficiency_net, flows);
    return flows;
  case Algorithm::NVLS_TREE:
    nvls_flows(by_server, size, plan.efficiency_nvls, flows);
    for (const Flow& f : nccl_trees(members, server, tree)) flows.push_back(f);
    return flows;
  case Algorithm::COLLNET: {
    // Direct reduce-scatter and all-gather over NVLink inside each server (a ring's bytes), then
    // the network switches reduce across servers.
    for (const auto& group : by_server) {
      const double k = static_cast<double>(group.size());
      const RingSpec ring{.size = size,
                          .edge_factor = 2.0 * (k - 1) / k,
                          .efficiency_nvlink = plan.efficiency_nvlink,
                          .efficiency_net = plan.efficiency_net};
      for (const Flow& f : nccl_rings(group, server, ring)) flows.push_back(f);
    }
    sharp_flows(by_server, nics, size, plan.efficiency_net, flows);
    return flows;
  }
  case Algorithm::PAT: {
    // Distance-doubling exchanges: at step j each rank sends the min(2^j, n - 2^j) shards it has
    // gathered (or still has to reduce) to the rank 2^j away; (n-1)/n of the buffer in all.
    for (long d = 1; d < n; d *= 2) {
      const Bytes bytes = size * static_cast<double>(std::min(d, n - d)) / n / plan.efficiency_net;
      for (int i = 0; i < n; ++i) {
        const long a = members[static_cast<size_t>(i)];
        const long b = members[static_cast<size_t>((i + d) % n)];
        const Bytes carried =
            same_server(a, b) ? bytes * plan.efficiency_net / plan.efficiency_nvlink : bytes;
        flows.push_back({.src = a, .dst = b, .bytes = carried});
      }
    }
    return flows;
  }
  case Algorithm::P2P:
    if (kind == CollectiveKind::ALL_TO_ALL) {
      const Bytes share = size / n;
      for (long a : members)
        for (long b : members)
          if (a != b) {
            const double efficiency = same_server(a, b) ? plan.efficiency_nvlink : plan.efficiency_net;
            flows.push_back({.src = a, .dst = b, .bytes = share / efficiency});
          }
      return flows;
    }
    [[fallthrough]];
  case Algorithm::RING: {
    flows = nccl_rings(members, server,
                       RingSpec{.size = size,
                                .edge_factor = plan.edge_bytes_factor,
                                .efficiency_nvlink = plan.efficiency_nvlink,
                                .efficiency_net = plan.efficiency_net});
    // Broadcast and reduce run the ring as a chain from (to) the root, rank 0: nothing flows
    // back into the root of a broadcast nor out of the root of a reduce.
    const long root = members.front();
    if (kind == CollectiveKind::BROADCAST) std::erase_if(flows, [&](const Flow& f) { return f.dst == root; });
    if (kind == CollectiveKind::REDUCE) std::erase_if(flows, [&](const Flow& f) { return f.src == root; });
    return flows;
  }
  }
  return flows;
}

} // namespace odyssey::sim
