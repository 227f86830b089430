// The cost model: compute ops priced by roofline-style formulas over the profile's rates, and
// collectives planned the way NCCL's tuning (src/graph/tuning.cc, NCCL 2.30.7; constants in
// ../shared/reference/nccl-cost-model.md) predicts them. Sources of every number live in the
// profiles; this file only holds the model's structure.
#include "calibration/cost_model.hpp"
#include "calibration/gemm_model.hpp"
#include "models/wording.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <Eigen/Core>
#include <fmt/format.h>

namespace odyssey {

struct GemmTable {
  std::vector<Eigen::Vector3d> at; ///< each point's (log2 m, log2 n, log2 k)
  std::vector<double> efficiency;  ///< each point's, in the same order (the profile's)
  Eigen::Vector3d lo;              ///< the points' span, per axis
  Eigen::Vector3d hi;
};

namespace {

std::map<Precision, GemmTable> gemm_tables(const Profile& p);

const char* dtype_name(Precision p) {
  switch (p) {
  case Precision::FP32: return "fp32";
  case Precision::FP16: return "fp16";
  case Precision::BF16: return "bf16";
  case Precision::FP8: return "fp8";
  }
  return "fp32";
}

/// Payload fraction of each NCCL protocol. LL moves 4 B of data per 8 B flag+data word; LL128
/// moves 120 B per 128 B line, which NCCL's tuning rounds to its 0.92 factor; Simple moves data only.
/// NCCL also caps LL at llMax (141 GB/s on one Hopper node); at 0.5 x NVLink that cap never binds
/// below 282 GB/s of bus bandwidth, so it is left out.
double protocol_efficiency(Protocol p) {
  switch (p) {
  case Protocol::LL: return 0.5;
  case Protocol::LL128: return 0.92;
  case Protocol::SIMPLE: return 1.0;
  }
  return 1.0;
}

/// Ring steps of one collective, following nccl-tests' bus-bandwidth factors and NCCL's ring
/// latency formula (nInterSteps = 2(nNodes-1) for all-reduce, nNodes-1 otherwise).
struct RingSteps {
  int steps = 0;
  int inter_steps = 0;
  double edge_bytes_factor = 0.0;
};

RingSteps ring_steps(CollectiveKind kind, int n, int nodes) {
  const double nd = n;
  switch (kind) {
  case CollectiveKind::ALL_REDUCE: return {2 * (n - 1), 2 * (nodes - 1), 2.0 * (nd - 1) / nd};
  case CollectiveKind::ALL_GATHER:
  case CollectiveKind::REDUCE_SCATTER:
  case CollectiveKind::ALL_TO_ALL: return {n - 1, nodes - 1, (nd - 1) / nd};
  // Pipelined along the ring: every edge carries the whole buffer once.
  case CollectiveKind::BROADCAST:
  case CollectiveKind::REDUCE: return {n - 1, nodes - 1, 1.0};
  case CollectiveKind::SEND_RECV: return {1, nodes > 1 ? 1 : 0, 1.0};
  }
  return {};
}

/// Per-rank bandwidths of a communicator, in NCCL's bus-bandwidth terms: `intra` is one GPU's
/// NVLink port; `inter` is what the ranks of one server get across servers in all, summed over
/// the channels (NCCL's busBw = channels x per-channel bandwidth), since each channel leaves the
/// server through a different NIC.
struct BusBandwidth {
  double intra = 0.0;
  double inter = 0.0;
  int per_server = 1;
  int channels = 1; ///< channels between servers (nccl_net_channels; k when the NICs are unknown)
};

BusBandwidth bus_bandwidth(GroupShape g, BytesPerSecond intra, BytesPerSecond inter_per_gpu, int nics) {
  const int k = (g.ranks + g.servers - 1) / g.servers;
  return {.intra = intra.value(),
          .inter = inter_per_gpu.value() * k,
          .per_server = k,
          .channels = nics > 0 ? nccl_net_channels(k, nics) : k};
}

/// Time to push the plan's bytes through the ring: each edge carries factor x size, at the
/// slowest link class the ring crosses (NVLink when a server holds several ranks, NET when the
/// ring spans servers).
Seconds transfer_time(const CollectivePlan& plan, Bytes size, GroupShape g, const BusBandwidth& bw) {
  double bottleneck = std::numeric_limits<double>::infinity();
  if (g.ranks > g.servers) bottleneck = std::min(bottleneck, bw.intra * plan.efficiency_nvlink);
  if (g.servers > 1) bottleneck = std::min(bottleneck, bw.inter * plan.efficiency_net);
  return (size * plan.edge_bytes_factor) / BytesPerSecond(bottleneck);
}

/// A plan with the time NCCL's tuning would predict for it.
struct ProtocolChoice {
  CollectivePlan plan;
  Seconds time;
};

CollectivePlan base_plan(const Profile& prof, Algorithm algo, Protocol proto) {
  CollectivePlan plan;
  plan.algo = algo;
  plan.algorithm = to_string(algo);
  plan.protocol = to_string(proto);
  const double pe = protocol_efficiency(proto);
  plan.efficiency_nvlink = pe * prof.nvlink.bus_efficiency;
  plan.efficiency_net = pe * prof.net.bus_efficiency;
  plan.efficiency_nvls = prof.nvlink.nvls_efficiency;
  return plan;
}

/// A ring or point-to-point transfer of `kind`. Inside one server its NVLink hops run at the bus
/// efficiency measured for that collective and group size where the profile has one
/// (LinkClassProfile::ring_efficiency: a group of 2 GPUs reaches less of the port than one of 8).
ProtocolChoice price_protocol(const Profile& prof, Algorithm algo, Protocol proto, CollectiveKind kind,
                              const RingSteps& rs, Bytes size, GroupShape g, const BusBandwidth& bw) {
  CollectivePlan plan = base_plan(prof, algo, proto);
  if (g.servers == 1)
    plan.efficiency_nvlink = protocol_efficiency(proto) * prof.nvlink.ring_efficiency(kind, g.ranks);
  plan.steps = rs.steps;
  plan.edge_bytes_factor = rs.edge_bytes_factor;
  // NCCL: base + (nsteps - nInterSteps) * intraLat + nInterSteps * interLat. NCCL adds the graph's
  // inter-node latency once more for Simple; that term is a property of the topology search, not of
  // the tables, so it is not modelled here.
  plan.latency =
      prof.collective_base_latency_by_protocol.at(proto) +
      prof.nvlink.step_latency_by_protocol.at(proto) * static_cast<double>(rs.steps - rs.inter_steps) +
      prof.net.step_latency_by_protocol.at(proto) * static_cast<double>(rs.inter_steps);
  return {plan, plan.latency + transfer_time(plan, size, g, bw)};
}

/// NCCL's constants that depend on the algorithm and the link type only, not on the GPU, so they
/// live here rather than in the profiles (src/graph/tuning.cc, NCCL 2.30.7;
/// ../shared/reference/nccl-cost-model.md), in microseconds. Tree by protocol LL / LL128 / Simple;
/// CollNet, NVLS, NVLSTree and PAT run the Simple protocol only.
constexpr double TREE_BASE_US[] = {6.8, 14.0, 8.4};
constexpr double TREE_NVLINK_US[] = {0.6, 1.25, 4.0};
constexpr double TREE_NET_US[] = {5.0, 8.5, 14.0};
constexpr double NVLS_NVLINK_US = 25.0;        // hwLat NVLink NVLS (base latency 0)
constexpr double NVLS_NET_US = 18.0;           // hwLat NET NVLS (multi-node NVLS rides IB SHARP)
constexpr double NVLS_TREE_NET_US = 20.9;      // hwLat NET NVLSTree
constexpr double COLLNET_DIRECT_NET_US = 31.0; // hwLat NET CollNetDirect (base latency 0)
constexpr double PAT_BASE_US = 8.0;            // base latency PAT
constexpr double PAT_NET_US = 14.0;            // hwLat NET PAT
constexpr double PAT_BANDWIDTH_FACTOR = 0.75;  // NCCL's busBw x 0.75 for PAT

Seconds us(double microseconds) {
  return Seconds(microseconds * 1e-6);
}

/// How many times a double binary tree moves the whole buffer through each server's NICs, each
/// way. With three or more servers, twice: a server interior in one tree sends half the buffer up
/// to its parent and half down to each of two children, and is a leaf of the other tree. With two
/// servers, once: each is the root of one tree and the leaf of the other, so the network carries
/// half a ring's bytes and the tree beats the ring where the network is the bottleneck ("2 nodes is
/// a special case", NVIDIA/nccl#946; NCCL's tuning gives NVLSTree bwInter on up to 2 nodes and
/// bwInter / 2 beyond, src/graph/tuning.cc).
double tree_network_passes(int servers) {
  return servers == 2 ? 1.0 : 2.0;
}

/// NCCL's double binary tree all-reduce across servers (a chain inside each server): latency
/// base + 2 x ((ranks per server - 1) x intra hop + log2(servers) x inter hop); bandwidth at
/// NCCL's tree cap of 0.92 x the bus bandwidth. Every rank of a chain but its ends moves the
/// buffer up (reduce) and down (broadcast): with the chains' ends spread over the channels, each
/// NVLink port carries 2(k-1)/k x the buffer each way (sim::nccl_tree_chains); the network carries
/// it tree_network_passes times. NCCL caps each tree channel's bus bandwidth (the profile's
/// tree_channel_bandwidth) and a tree's algorithm bandwidth is half its bus bandwidth, so the
/// channels move at most channels x cap / 2 of the buffer per second; the chain's NVLink efficiency
/// carries that cap, so that the chain's flows (sim::nccl_tree_chains) run at it. Without a chain
/// (one rank per server) NCCL runs several channels through each NIC, which Odyssey's one channel
/// per rank does not count, and no cap is applied.
ProtocolChoice price_tree(const Profile& prof, Protocol proto, Bytes size, GroupShape g,
                          const BusBandwidth& bw) {
  const int i = static_cast<int>(proto);
  CollectivePlan plan = base_plan(prof, Algorithm::TREE, proto);
  const double per_server = static_cast<double>(g.ranks) / g.servers;
  const double depth = std::ceil(std::log2(static_cast<double>(g.servers)));
  plan.steps = 2 * static_cast<int>((per_server - 1) + depth);
  plan.edge_bytes_factor = 1.0;
  plan.efficiency_nvlink *= 0.92;
  plan.efficiency_net *= 0.92;
  plan.latency = us(TREE_BASE_US[i] + 2 * ((per_server - 1) * TREE_NVLINK_US[i] + depth * TREE_NET_US[i]));
  if (const double cap = prof.tree_channel_bandwidth.over(g.servers).value(); per_server > 1 && cap > 0)
    plan.efficiency_nvlink =
        std::min(plan.efficiency_nvlink, (per_server - 1) / per_server * bw.channels * cap / bw.intra);
  double transfer = tree_network_passes(g.servers) * size.value() / (bw.inter * plan.efficiency_net);
  if (per_server > 1)
    transfer = std::max(transfer, 2.0 * (per_server - 1) / per_server * size.value() /
                                      (bw.intra * plan.efficiency_nvlink));
  return {plan, plan.latency + Seconds(transfer)};
}

/// Bytes through one GPU's NVLink port, each way, for the part of an all-reduce inside a server:
/// with NVLink SHARP the GPU writes its whole buffer to the switch, which reduces, and reads back
/// the reduced buffer, plus its own shard once (size x (1 + 1/k)); without it, a ring or direct
/// reduce-scatter + all-gather moves 2(k-1)/k x size.
double intra_bytes(Algorithm algo, double size, int k) {
  const bool nvls = algo == Algorithm::NVLS || algo == Algorithm::NVLS_TREE;
  return nvls ? size * (1.0 + 1.0 / k) : 2.0 * size * (k - 1) / k;
}

/// NVLS (NVLink SHARP): the NVSwitch reduces and multicasts. Inside one server, one step of 25 us;
/// across servers NCCL runs it only with in-network reduction (IB SHARP), whose switches reduce
/// the servers' partial sums: each server sends its buffer once through its NICs and receives the
/// result once. NVLSTree replaces SHARP by NCCL's tree between servers. CollNetDirect reduces
/// inside a server over NVLink directly and across servers in the network switches.
ProtocolChoice price_in_switch(const Profile& prof, Algorithm algo, Bytes size, GroupShape g,
                               const BusBandwidth& bw) {
  CollectivePlan plan = base_plan(prof, algo, Protocol::SIMPLE);
  const int k = bw.per_server;
  const double depth = std::ceil(std::log2(static_cast<double>(g.servers)));
  double latency_us = 0;
  double net_time = 0;
  switch (algo) {
  case Algorithm::NVLS:
    latency_us = NVLS_NVLINK_US + (g.servers > 1 ? NVLS_NET_US : 0.0);
    net_time = g.servers > 1 ? size.value() / (bw.inter * plan.efficiency_net) : 0.0;
    plan.steps = g.servers > 1 ? 2 : 1;
    break;
  case Algorithm::NVLS_TREE:
    latency_us = NVLS_NVLINK_US + 2 * depth * NVLS_TREE_NET_US;
    net_time = tree_network_passes(g.servers) * size.value() / (bw.inter * plan.efficiency_net * 0.92);
    plan.steps = 1 + 2 * static_cast<int>(depth);
    break;
  default: // COLLNET
    latency_us = COLLNET_DIRECT_NET_US;
    plan.latency = prof.nvlink.step_latency_by_protocol.simple * (2.0 * (k - 1));
    net_time = size.value() / (bw.inter * plan.efficiency_net);
    plan.steps = 2 * (k - 1) + 1;
    break;
  }
  plan.latency += us(latency_us);
  plan.edge_bytes_factor = 1.0;
  const bool nvls = algo != Algorithm::COLLNET;
  const double intra_time = k > 1 ? intra_bytes(algo, size.value(), k) /
                                        (bw.intra * (nvls ? plan.efficiency_nvls : plan.efficiency_nvlink))
                                  : 0.0;
  return {plan, plan.latency + Seconds(std::max(intra_time, net_time))};
}

/// PAT (NCCL >= 2.23) for all-gather and reduce-scatter with one rank per server: log2(n) steps
/// at distances 1, 2, 4, ... instead of the ring's n-1, at 0.75 of the bus bandwidth.
ProtocolChoice price_pat(const Profile& prof, const RingSteps& rs, Bytes size, GroupShape g,
                         const BusBandwidth& bw) {
  CollectivePlan plan = base_plan(prof, Algorithm::PAT, Protocol::SIMPLE);
  const double depth = std::ceil(std::log2(static_cast<double>(g.ranks)));
  plan.steps = static_cast<int>(depth);
  plan.edge_bytes_factor = rs.edge_bytes_factor;
  plan.efficiency_net *= PAT_BANDWIDTH_FACTOR;
  plan.latency = us(PAT_BASE_US + depth * PAT_NET_US);
  return {plan, plan.latency + transfer_time(plan, size, g, bw)};
}

/// Whether NCCL can run `algo` for this collective on this group and machine.
bool applicable(Algorithm algo, CollectiveKind kind, GroupShape g, const NcclConfig& c, const Profile& prof) {
  const bool p2p = kind == CollectiveKind::ALL_TO_ALL || kind == CollectiveKind::SEND_RECV;
  if (p2p) return algo == Algorithm::P2P;
  const bool all_reduce = kind == CollectiveKind::ALL_REDUCE;
  const int k = (g.ranks + g.servers - 1) / g.servers;
  const bool nvls = c.nvls && prof.nvlink.nvls_efficiency > 0 && k > 1;
  switch (algo) {
  case Algorithm::RING: return true;
  case Algorithm::TREE: return all_reduce && g.servers > 1;
  case Algorithm::COLLNET: return all_reduce && g.servers > 1 && c.collnet;
  case Algorithm::NVLS: return all_reduce && nvls && (g.servers == 1 || c.collnet);
  case Algorithm::NVLS_TREE: return all_reduce && nvls && g.servers > 1;
  case Algorithm::PAT:
    return (kind == CollectiveKind::ALL_GATHER || kind == CollectiveKind::REDUCE_SCATTER) && g.servers > 1 &&
           g.ranks == g.servers;
  case Algorithm::P2P: return false;
  }
  return false;
}

constexpr Algorithm ALGORITHMS[] = {Algorithm::TREE, Algorithm::RING,      Algorithm::COLLNET,
                                    Algorithm::NVLS, Algorithm::NVLS_TREE, Algorithm::PAT,
                                    Algorithm::P2P};
constexpr Protocol PROTOCOLS[] = {Protocol::LL, Protocol::LL128, Protocol::SIMPLE};

Protocol protocol_named(const std::string& name) {
  for (Protocol p : PROTOCOLS)
    if (name == to_string(p)) return p;
  return Protocol::SIMPLE;
}

bool has(unsigned set, int bit) {
  return (set >> bit & 1U) != 0;
}

/// NCCL's names as NCCL_ALGO / NCCL_PROTO take them (compared case-insensitively).
struct Named {
  const char* name;
  int bit;
};
constexpr Named ALGORITHM_NAMES[] = {{"Tree", static_cast<int>(Algorithm::TREE)},
                                     {"Ring", static_cast<int>(Algorithm::RING)},
                                     {"CollNetDirect", static_cast<int>(Algorithm::COLLNET)},
                                     {"CollNet", static_cast<int>(Algorithm::COLLNET)},
                                     {"NVLS", static_cast<int>(Algorithm::NVLS)},
                                     {"NVLSTree", static_cast<int>(Algorithm::NVLS_TREE)},
                                     {"PAT", static_cast<int>(Algorithm::PAT)}};
constexpr Named PROTOCOL_NAMES[] = {{"LL", static_cast<int>(Protocol::LL)},
                                    {"LL128", static_cast<int>(Protocol::LL128)},
                                    {"Simple", static_cast<int>(Protocol::SIMPLE)}};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return {};
  return std::string(s.substr(b, s.find_last_not_of(" \t") - b + 1));
}

/// NCCL's list syntax: names separated by commas; a leading '^' excludes them instead; "all"
/// (what algorithms_text prints for no restriction) allows every one.
template <size_t N> unsigned parse_set(std::string_view list, const Named (&names)[N], const char* what) {
  if (lower(trim(list)) == "all") return ~0U;
  const bool exclude = !list.empty() && list.front() == '^';
  if (exclude) list.remove_prefix(1);
  unsigned set = 0;
  size_t pos = 0;
  while (pos <= list.size()) {
    const size_t comma = std::min(list.find(',', pos), list.size());
    const std::string item = trim(list.substr(pos, comma - pos));
    pos = comma + 1;
    const auto it = std::find_if(std::begin(names), std::end(names),
                                 [&](const Named& n) { return lower(n.name) == lower(item); });
    if (it == std::end(names)) {
      std::string accepted;
      for (const Named& n : names) accepted += (accepted.empty() ? "" : ", ") + std::string(n.name);
      throw std::invalid_argument(fmt::format("unknown {} '{}' (expected a comma-separated list of {}; '^' "
                                              "excludes)",
                                              what, item, accepted));
    }
    set |= 1U << it->bit;
  }
  return exclude ? ~set : set;
}

template <size_t N> std::string set_text(unsigned set, const Named (&names)[N]) {
  std::string out;
  int seen = -1;
  bool all = true;
  for (const Named& n : names) {
    if (n.bit == seen) continue;
    seen = n.bit;
    if (has(set, n.bit))
      out += (out.empty() ? "" : ",") + std::string(n.name);
    else
      all = false;
  }
  return all ? "all" : out;
}

} // namespace

CostModel::CostModel(Profile profile, NcclConfig nccl)
    : profile_(std::move(profile)), nccl_(nccl), links_(profile_),
      gemm_tables_(std::make_shared<const std::map<Precision, GemmTable>>(gemm_tables(profile_))) {
  if (nccl_.intra == LinkClass::PCIE) {
    links_.nvlink = profile_.pcie;
    links_.nvlink.nvls_efficiency = 0.0;
  }
}

AlgorithmSet parse_algorithms(std::string_view list) {
  return parse_set(list, ALGORITHM_NAMES, "algorithm");
}
ProtocolSet parse_protocols(std::string_view list) {
  return parse_set(list, PROTOCOL_NAMES, "protocol");
}
std::string algorithms_text(AlgorithmSet set) {
  return set_text(set, ALGORITHM_NAMES);
}
std::string protocols_text(ProtocolSet set) {
  return set_text(set, PROTOCOL_NAMES);
}

const char* to_string(Algorithm a) {
  switch (a) {
  case Algorithm::TREE: return "tree";
  case Algorithm::RING: return "ring";
  case Algorithm::COLLNET: return "collnet";
  case Algorithm::NVLS: return "nvls";
  case Algorithm::NVLS_TREE: return "nvls-tree";
  case Algorithm::PAT: return "pat";
  case Algorithm::P2P: return "p2p";
  }
  return "?";
}

FlopsPerSecond CostModel::peak(Precision dtype) const {
  auto it = profile_.peak.find(dtype);
  if (it != profile_.peak.end()) return it->second;
  std::string listed;
  for (const auto& [d, rate] : profile_.peak)
    listed += (listed.empty() ? "" : ", ") + std::string(dtype_name(d));
  throw std::invalid_argument("GPU " + profile_.gpu + " has no " + dtype_name(dtype) + " peak in profile " +
                              (profile_.path.empty() ? profile_.name : profile_.path) +
                              " (it lists: " + listed + ")");
}

namespace {

/// Position of a shape in the interpolation space: log2 of m (batch folded into rows, as a
/// strided-batched GEMM fills the GPU like a taller one), n and k. Log space because GEMM
/// efficiency varies with the order of magnitude of a dimension, not with its absolute size.
Eigen::Vector3d log_shape(long m, long n, long k) {
  return {std::log2(static_cast<double>(m)), std::log2(static_cast<double>(n)),
          std::log2(static_cast<double>(k))};
}

/// Trilinear interpolation in log-shape space when the query lies in a cell whose eight corners
/// are all recorded (a calibration sweep over a grid of m, n and k); nothing otherwise. On a grid
/// it follows the recorded trend along each axis, where inverse-distance weighting is pulled
/// towards the mean of far points (at the cell centres of tests/calibration's fixture, a grid
/// with steps of 4x: at worst 18% off the fixture's own formula by weighting, 7% by this).
std::optional<double> grid_interpolation(const std::vector<double>& efficiency,
                                         const std::vector<Eigen::Vector3d>& at, const Eigen::Vector3d& q) {
  Eigen::Vector3d lo = Eigen::Vector3d::Constant(-std::numeric_limits<double>::infinity());
  Eigen::Vector3d hi = -lo;
  for (const Eigen::Vector3d& x : at) {
    for (int a = 0; a < 3; ++a) {
      if (x[a] <= q[a]) lo[a] = std::max(lo[a], x[a]);
      if (x[a] >= q[a]) hi[a] = std::min(hi[a], x[a]);
    }
  }
  if (!lo.allFinite() || !hi.allFinite()) return std::nullopt;
  const Eigen::Vector3d span = hi - lo;
  const Eigen::Vector3d t = (q - lo).cwiseQuotient(span.cwiseMax(1e-12));
  double value = 0.0;
  for (int corner = 0; corner < 8; ++corner) {
    Eigen::Vector3d c;
    double weight = 1.0;
    for (int a = 0; a < 3; ++a) {
      const bool upper = (corner >> a) & 1;
      c[a] = upper ? hi[a] : lo[a];
      weight *= upper ? t[a] : 1.0 - t[a];
    }
    if (weight == 0.0) continue;
    const auto found = std::find_if(
        at.begin(), at.end(), [&](const Eigen::Vector3d& x) { return (x - c).cwiseAbs().maxCoeff() < 1e-9; });
    if (found == at.end()) return std::nullopt;
    value += weight * efficiency[static_cast<std::size_t>(found - at.begin())];
  }
  return value;
}

/// The recorded efficiency at a position inside the points' span: the point itself where one is
/// recorded there; trilinear inside a fully recorded grid cell; otherwise inverse-distance
/// weighting (power 2). All are convex combinations, so never outside the recorded range; chosen
/// over a least-squares fit, which would neither reproduce points nor stay in range.
double recorded_efficiency(const GemmTable& t, const Eigen::Vector3d& x) {
  double weight_sum = 0.0;
  double weighted = 0.0;
  for (size_t i = 0; i < t.at.size(); ++i) {
    const double d2 = (t.at[i] - x).squaredNorm();
    if (d2 == 0.0) return t.efficiency[i]; // the first in file order, deterministically
    weight_sum += 1.0 / d2;
    weighted += t.efficiency[i] / d2;
  }
  return grid_interpolation(t.efficiency, t.at, x).value_or(weighted / weight_sum);
}

/// The profile's points by dtype. Points of single products only: a batched point at
/// (m, n, k, b) would sit where the single product (m x b, n, k) does, with another efficiency.
std::map<Precision, GemmTable> gemm_tables(const Profile& p) {
  std::map<Precision, GemmTable> tables;
  for (const GemmPoint& g : p.gemm_points) {
    if (g.batch != 1) continue;
    GemmTable& t = tables[g.dtype];
    if (t.at.empty()) {
      t.lo = Eigen::Vector3d::Constant(std::numeric_limits<double>::infinity());
      t.hi = -t.lo;
    }
    t.at.push_back(log_shape(g.m, g.n, g.k));
    t.efficiency.push_back(g.efficiency);
    t.lo = t.lo.cwiseMin(t.at.back());
    t.hi = t.hi.cwiseMax(t.at.back());
  }
  return tables;
}

} // namespace

double CostModel::gemm_efficiency(const GemmShape& shape, Precision dtype) const {
  return gemm_estimate(shape, dtype).efficiency;
}

GemmEstimate CostModel::gemm_estimate(const GemmShape& shape, Precision dtype) const {
  static_cast<void>(peak(dtype)); // a dtype the profile has no peak for is an error, points or not
  const auto table = gemm_tables_->find(dtype);
  if (table == gemm_tables_->end() || shape.m <= 0 || shape.n <= 0 || shape.k <= 0) {
    return {.efficiency = analytic_gemm(profile_, shape, dtype).efficiency};
  }
  const GemmTable& t = table->second;
  const Eigen::Vector3d q = log_shape(shape.m * std::max(1L, shape.batch), shape.n, shape.k);
  const bool inside = (q.array() >= t.lo.array()).all() && (q.array() <= t.hi.array()).all();
  if (inside) return {.efficiency = recorded_efficiency(t, q)};

  // Beyond the measured range: the recorded value at the edge of the range (the query with each
  // log dimension clamped into the points' span), times the analytic model's ratio between the
  // query and that edge shape when the model says the query is worse (smaller, skinnier or
  // shorter in K), never better: no point beyond what was measured.
  const Eigen::Vector3d edge = q.cwiseMax(t.lo).cwiseMin(t.hi);
  const auto size_at = [&](int axis) { return std::lround(std::exp2(edge[axis])); };
  const GemmShape edge_shape{.m = size_at(0), .n = size_at(1), .k = size_at(2)};
  const GemmShape query{.m = shape.m * std::max(1L, shape.batch), .n = shape.n, .k = shape.k};
  const double shape_ratio = std::min(1.0, analytic_gemm(profile_, query, dtype).efficiency /
                                               analytic_gemm(profile_, edge_shape, dtype).efficiency);
  return {.efficiency = recorded_efficiency(t, edge) * shape_ratio, .extrapolated = true};
}

Seconds CostModel::compute_time(const ComputeOp& op) const {
  return modelled_time(op) * profile_.kernel_time_scale;
}

Seconds CostModel::modelled_time(const ComputeOp& op) const {
  const Seconds launches = profile_.launch_overhead * static_cast<double>(std::max(0, op.kernels));
  switch (op.kind) {
  // Tensor-core kernels at the rate their measurements give, held down to what the board sustains
  // at its power limit (Profile::sustained); streaming kernels are bound by HBM, not the clock.
  case OpKind::GEMM:
    return op.flops / (peak(op.dtype) * gemm_efficiency(op.gemm, op.dtype) * profile_.sustained(op.dtype)) +
           launches;
  case OpKind::ATTENTION: {
    // Fused attention is priced on its shape, in the kernels' own FLOP convention; the op's
    // `flops` stay the model's (full score matrix, backward 2x), which MFU and HFU count.
    const AttentionPass pass = op.pass == Pass::FORWARD ? AttentionPass::FORWARD : AttentionPass::BACKWARD;
    return flash_attention_flops(op.attention, pass) /
               (peak(op.dtype) * attention_efficiency(op.attention, pass, op.dtype) *
                profile_.sustained(op.dtype)) +
           launches;
  }
  case OpKind::MEMORY_BOUND:
  case OpKind::OPTIMIZER:
    return op.bytes / (profile_.memory_bandwidth * profile_.memory_efficiency) + launches;
  }
  return launches;
}

Flops flash_attention_flops(const AttentionShape& a, AttentionPass pass) {
  // Unfused kernels (2021 Megatron) compute the whole score matrix and mask after.
  const double mask = a.causal && a.fused ? 0.5 : 1.0;
  const double forward = 4.0 * double(a.batch) * double(a.heads) * double(a.seq_q) * double(a.seq_kv) *
                         double(a.head_dim) * mask;
  return Flops(pass == AttentionPass::FORWARD ? forward : 2.5 * forward);
}

namespace {

/// The attention points of one dtype, pass and mask.
std::vector<const AttentionPoint*> attention_points_of(const Profile& p, AttentionPass pass, bool causal,
                                                       Precision dtype) {
  std::vector<const AttentionPoint*> out;
  for (const AttentionPoint& a : p.attention_points) {
    if (a.pass == pass && a.causal == causal && a.dtype == dtype) out.push_back(&a);
  }
  return out;
}

/// Efficiency at `seq` along the points of one head dimension: linear in log2(seq) between the
/// two recorded lengths around it, the nearest recorded one beyond them (FlashAttention's rate
/// flattens out at long sequences and the tables stop at 16k).
double along_sequence(const std::vector<const AttentionPoint*>& points, int head_dim, long seq) {
  const AttentionPoint* below = nullptr;
  const AttentionPoint* above = nullptr;
  for (const AttentionPoint* a : points) {
    if (a->head_dim != head_dim) continue;
    if (a->seq <= seq && (!below || a->seq > below->seq)) below = a;
    if (a->seq >= seq && (!above || a->seq < above->seq)) above = a;
  }
  if (!below) return above->efficiency;
  if (!above || above->seq == below->seq) return below->efficiency;
  const double t = (std::log2(double(seq)) - std::log2(double(below->seq))) /
                   (std::log2(double(above->seq)) - std::log2(double(below->seq)));
  return below->efficiency + t * (above->efficiency - below->efficiency);
}

} // namespace

double CostModel::attention_efficiency(const AttentionShape& shape, AttentionPass pass,
                                       Precision dtype) const {
  // FlashAttention's Triton kernel, priced from FlashAttention-2's rate on the same GPU: "1.3-2.5x"
  // slower over the FlashAttention-2 paper's A100 benchmarks (arXiv 2307.08691 sec. 4.1, forward
  // and backward, head dimensions 64 and 128, with and without a causal mask). ASSUMPTION: the
  // midpoint, 1.9x, for every shape, and on Hopper as on Ampere (neither kernel uses Hopper's
  // TMA or wgmma); no per-shape figures are published as text.
  constexpr double FA2_OVER_TRITON = 1.9;
  if (shape.kernel == AttentionKernel::FLASH_ATTENTION_TRITON) {
    AttentionShape fa2 = shape;
    fa2.kernel = AttentionKernel::FLASH_ATTENTION_2;
    return attention_efficiency(fa2, pass, dtype) / FA2_OVER_TRITON;
  }
  const std::vector<const AttentionPoint*> points = attention_points_of(profile_, pass, shape.causal, dtype);
  if (points.empty()) {
    const bool fa2 =
        shape.kernel == AttentionKernel::FLASH_ATTENTION_2 && profile_.attention_fa2_efficiency > 0;
    const double fwd = fa2 ? profile_.attention_fa2_efficiency : profile_.attention_efficiency;
    const double newest_bwd =
        profile_.attention_backward_efficiency > 0 ? profile_.attention_backward_efficiency : fwd;
    const double bwd = fa2 ? profile_.attention_fa2_backward_efficiency : newest_bwd;
    // The profiles' figures are the papers' maxima, measured without a mask. Skipping the masked
    // tiles of a causal mask halves the FLOPs but speeds the kernel up by only 1.7-1.8x
    // (FlashAttention-2, arXiv 2307.08691 sec. 3.1.1): the diagonal tiles and the shorter rows
    // run at a lower rate. The midpoint, 1.75x, over the 2x the FLOP count assumes.
    constexpr double CAUSAL_SPEEDUP = 1.75;
    const double mask = shape.causal && shape.fused ? CAUSAL_SPEEDUP / 2.0 : 1.0;
    return (pass == AttentionPass::FORWARD ? fwd : bwd) * mask;
  }
  // Head dimensions recorded around the query's; linear between them, the nearest beyond.
  int lower = 0;
  int upper = 0;
  for (const AttentionPoint* a : points) {
    if (a->head_dim <= shape.head_dim && a->head_dim > lower) lower = a->head_dim;
    if (a->head_dim >= shape.head_dim && (upper == 0 || a->head_dim < upper)) upper = a->head_dim;
  }
  const long seq = std::max(1L, shape.seq_kv);
  if (lower == 0) return along_sequence(points, upper, seq);
  if (upper == 0 || upper == lower) return along_sequence(points, lower, seq);
  const double t = double(shape.head_dim - lower) / double(upper - lower);
  return (1 - t) * along_sequence(points, lower, seq) + t * along_sequence(points, upper, seq);
}

ProfileKind price_source_of(const Profile& p, const ComputeOp& op) {
  switch (op.kind) {
  case OpKind::GEMM:
    for (const GemmPoint& g : p.gemm_points) {
      if (g.dtype == op.dtype && g.batch == 1) return p.provenance.kind;
    }
    return ProfileKind::DATASHEET;
  case OpKind::ATTENTION: {
    const AttentionPass pass = op.pass == Pass::FORWARD ? AttentionPass::FORWARD : AttentionPass::BACKWARD;
    return attention_points_of(p, pass, op.attention.causal, op.dtype).empty() ? ProfileKind::DATASHEET
                                                                               : p.provenance.kind;
  }
  case OpKind::MEMORY_BOUND:
  case OpKind::OPTIMIZER:
    // A measured profile's HBM efficiency comes from our own stream benchmark; a published
    // profile keeps the datasheet's.
    return p.provenance.kind == ProfileKind::MEASURED ? ProfileKind::MEASURED : ProfileKind::DATASHEET;
  }
  return ProfileKind::DATASHEET;
}

Seconds CostModel::compute_time(const std::vector<ComputeOp>& ops) const {
  Seconds total;
  for (const ComputeOp& op : ops) total += compute_time(op);
  return total;
}

CollectivePlan CostModel::collective(CollectiveKind kind, Bytes size, GroupShape group) const {
  BytesPerSecond inter = links_.net.bandwidth;
  if (nccl_.nics_per_server > 0 && group.ranks >= group.servers && group.servers >= 1) {
    // The channels of a server each leave through their own NIC: per rank, that share of them.
    const int k = (group.ranks + group.servers - 1) / group.servers;
    inter = nccl_.nic_bandwidth * (static_cast<double>(nccl_net_channels(k, nccl_.nics_per_server)) / k);
  }
  return collective(kind, size, group, links_.nvlink.bandwidth, inter);
}

CollectivePlan CostModel::collective(CollectiveKind kind, Bytes size, GroupShape group, BytesPerSecond intra,
                                     BytesPerSecond inter) const {
  if (group.ranks < 1 || group.servers < 1 || group.servers > group.ranks) {
    throw std::invalid_argument("collective group of " + std::to_string(group.ranks) + " ranks over " +
                                std::to_string(group.servers) + " servers is not a valid communicator");
  }
  if (group.ranks == 1) {
    CollectivePlan none;
    none.algorithm = "ring";
    none.protocol = "Simple";
    return none;
  }
  const RingSteps rs = ring_steps(kind, group.ranks, group.servers);
  const BusBandwidth bw = bus_bandwidth(group, intra, inter, nccl_.nics_per_server);
  // NCCL's tuning: predict every allowed (algorithm, protocol) time and keep the least; ties keep
  // NCCL's order (tree before ring, ..., LL before LL128 before Simple). NCCL_ALGO does not
  // restrict point-to-point transfers.
  bool found = false;
  ProtocolChoice best;
  for (Algorithm algo : ALGORITHMS) {
    if ((algo != Algorithm::P2P && !has(nccl_.algorithms, static_cast<int>(algo))) ||
        !applicable(algo, kind, group, nccl_, links_))
      continue;
    const bool simple_only = algo != Algorithm::TREE && algo != Algorithm::RING && algo != Algorithm::P2P;
    for (Protocol proto : PROTOCOLS) {
      if (!has(nccl_.protocols, static_cast<int>(proto)) || (simple_only && proto != Protocol::SIMPLE))
        continue;
      ProtocolChoice c;
      switch (algo) {
      case Algorithm::TREE: c = price_tree(links_, proto, size, group, bw); break;
      case Algorithm::RING:
      case Algorithm::P2P: c = price_protocol(links_, algo, proto, kind, rs, size, group, bw); break;
      case Algorithm::PAT: c = price_pat(links_, rs, size, group, bw); break;
      default: c = price_in_switch(links_, algo, size, group, bw); break;
      }
      if (!found || c.time < best.time) best = std::move(c);
      found = true;
    }
  }
  if (!found) {
    std::string available;
    for (Algorithm algo : ALGORITHMS)
      if (applicable(algo, kind, group, nccl_, links_))
        available += (available.empty() ? "" : ", ") + std::string(to_string(algo));
    throw std::invalid_argument(fmt::format("no allowed algorithm and protocol can run {} over {} ranks in "
                                            "{} (allowed algorithms {}, protocols "
                                            "{}; this group can use {})",
                                            to_string(kind), group.ranks, counted(group.servers, "server"),
                                            algorithms_text(nccl_.algorithms),
                                            protocols_text(nccl_.protocols), available));
  }
  return best.plan;
}

Seconds CostModel::collective_time(CollectiveKind kind, Bytes size, GroupShape group, BytesPerSecond intra,
                                   BytesPerSecond inter) const {
  const CollectivePlan plan = collective(kind, size, group, intra, inter);
  if (plan.steps == 0) return Seconds(0.0);
  const BusBandwidth bw = bus_bandwidth(group, intra, inter, nccl_.nics_per_server);
  switch (plan.algo) {
  case Algorithm::TREE: return price_tree(links_, protocol_named(plan.protocol), size, group, bw).time;
  case Algorithm::PAT:
    return price_pat(links_, ring_steps(kind, group.ranks, group.servers), size, group, bw).time;
  case Algorithm::COLLNET:
  case Algorithm::NVLS:
  case Algorithm::NVLS_TREE: return price_in_switch(links_, plan.algo, size, group, bw).time;
  default: return plan.latency + transfer_time(plan, size, group, bw);
  }
}

} // namespace odyssey
