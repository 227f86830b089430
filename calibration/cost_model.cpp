// The cost model: compute ops priced by roofline-style formulas over the profile's rates, and
// collectives planned the way NCCL's tuning (src/graph/tuning.cc, NCCL 2.30.7; constants in
// ../shared/reference/nccl-cost-model.md) predicts them. Sources of every number live in the
// profiles; this file only holds the model's structure.
#include "calibration/cost_model.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <Eigen/Core>

namespace odyssey {

namespace {

const char* dtype_name(Precision p) {
  switch (p) {
  case Precision::FP32: return "fp32";
  case Precision::FP16: return "fp16";
  case Precision::BF16: return "bf16";
  case Precision::FP8: return "fp8";
  }
  return "fp32";
}

long ceil_div(long a, long b) { return (a + b - 1) / b; }

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

/// Time to push the plan's bytes through the ring: each edge carries factor x size, at the
/// slowest link class the ring crosses (NVLink when a server holds several ranks, NET when the
/// ring spans servers).
Seconds transfer_time(const CollectivePlan& plan, Bytes size, GroupShape g, BytesPerSecond intra, BytesPerSecond inter) {
  double bottleneck = std::numeric_limits<double>::infinity();
  if (g.ranks > g.servers) bottleneck = std::min(bottleneck, intra.value() * plan.efficiency_nvlink);
  if (g.servers > 1) bottleneck = std::min(bottleneck, inter.value() * plan.efficiency_net);
  return (size * plan.edge_bytes_factor) / BytesPerSecond(bottleneck);
}

/// A plan with the time NCCL's tuning would predict for it.
struct ProtocolChoice {
  CollectivePlan plan;
  Seconds time;
};

ProtocolChoice price_protocol(const Profile& prof, Protocol proto, const RingSteps& rs, Bytes size, GroupShape g,
                              BytesPerSecond intra, BytesPerSecond inter) {
  CollectivePlan plan;
  plan.algorithm = "ring";
  plan.protocol = to_string(proto);
  plan.steps = rs.steps;
  plan.edge_bytes_factor = rs.edge_bytes_factor;
  const double pe = protocol_efficiency(proto);
  plan.efficiency_nvlink = pe * prof.nvlink.bus_efficiency;
  plan.efficiency_net = pe * prof.net.bus_efficiency;
  // NCCL: base + (nsteps - nInterSteps) * intraLat + nInterSteps * interLat. NCCL adds the graph's
  // inter-node latency once more for Simple; that term is a property of the topology search, not of
  // the tables, so it is not modelled here.
  plan.latency = prof.collective_base_latency_by_protocol.at(proto) +
                 prof.nvlink.step_latency_by_protocol.at(proto) * static_cast<double>(rs.steps - rs.inter_steps) +
                 prof.net.step_latency_by_protocol.at(proto) * static_cast<double>(rs.inter_steps);
  return {plan, plan.latency + transfer_time(plan, size, g, intra, inter)};
}

/// NCCL's tree constants (src/graph/tuning.cc, NCCL 2.30.7; ../shared/reference/nccl-cost-model.md),
/// by protocol LL / LL128 / Simple: base latency, and per-hop hardware latency on NVLink and NET.
/// They depend on the algorithm and the link type only, not on the GPU, so they live here.
constexpr double TREE_BASE_US[] = {6.8, 14.0, 8.4};
constexpr double TREE_NVLINK_US[] = {0.6, 1.25, 4.0};
constexpr double TREE_NET_US[] = {5.0, 8.5, 14.0};

/// NCCL's double binary tree all-reduce across servers (a chain inside each server): latency
/// base + 2 x ((ranks per server - 1) x intra hop + log2(servers) x inter hop); bandwidth at
/// NCCL's tree cap of 0.92 x the bus bandwidth, and algorithm bandwidth half the bus bandwidth
/// (every rank moves the data up and down the tree).
ProtocolChoice price_tree(const Profile& prof, Protocol proto, Bytes size, GroupShape g, BytesPerSecond intra,
                          BytesPerSecond inter) {
  const int i = static_cast<int>(proto);
  CollectivePlan plan;
  plan.algorithm = "tree";
  plan.protocol = to_string(proto);
  const double per_server = static_cast<double>(g.ranks) / g.servers;
  const double depth = std::ceil(std::log2(static_cast<double>(g.servers)));
  plan.steps = 2 * static_cast<int>((per_server - 1) + depth);
  plan.edge_bytes_factor = 1.0;
  const double pe = protocol_efficiency(proto) * 0.92;
  plan.efficiency_nvlink = pe * prof.nvlink.bus_efficiency;
  plan.efficiency_net = pe * prof.net.bus_efficiency;
  plan.latency = Seconds((TREE_BASE_US[i] + 2 * ((per_server - 1) * TREE_NVLINK_US[i] + depth * TREE_NET_US[i])) * 1e-6);
  double bottleneck = inter.value() * plan.efficiency_net;
  if (per_server > 1) bottleneck = std::min(bottleneck, intra.value() * plan.efficiency_nvlink);
  return {plan, plan.latency + Seconds(2.0 * size.value() / bottleneck)};
}

} // namespace

CostModel::CostModel(Profile profile) : profile_(std::move(profile)) {}

FlopsPerSecond CostModel::peak(Precision dtype) const {
  auto it = profile_.peak.find(dtype);
  if (it != profile_.peak.end()) return it->second;
  std::string listed;
  for (const auto& [d, rate] : profile_.peak) listed += (listed.empty() ? "" : ", ") + std::string(dtype_name(d));
  throw std::invalid_argument("GPU " + profile_.gpu + " has no " + dtype_name(dtype) + " peak in profile " +
                              (profile_.path.empty() ? profile_.name : profile_.path) + " (it lists: " + listed + ")");
}

namespace {

/// Best fraction of peak for large GEMMs of a dtype: the dtype's own figure where published,
/// else the profile's overall best.
double best_fraction(const Profile& p, Precision dtype) {
  auto it = p.gemm_max_efficiency_by_dtype.find(dtype);
  return it != p.gemm_max_efficiency_by_dtype.end() ? it->second : p.gemm_max_efficiency;
}

/// Analytic GEMM shape model, used where the profile records no points for the dtype:
///  - best fraction: the published best achievable fraction (MAMF) for large square-ish GEMMs;
///  - tile padding: cuBLAS computes whole output tiles, so m=1 wastes 127/128 of a 128-row tile;
///  - wave quantization: tiles run in waves of one per SM, and the last partial wave idles SMs;
///  - roofline: the GEMM cannot run faster than its operands stream from HBM (A, B read once,
///    C written once), which is what makes small-k and skinny GEMMs memory bound.
/// The result is FLOPs over peak x time, so it never exceeds the best fraction.
double analytic_gemm_efficiency(const Profile& p, const GemmShape& s, Precision dtype, FlopsPerSecond peak) {
  const double best = best_fraction(p, dtype);
  if (s.m <= 0 || s.n <= 0 || s.k <= 0 || p.sms <= 0) return best;
  const long batch = std::max(1L, s.batch);
  const long tiles_m = ceil_div(s.m, p.gemm_tile_m);
  const long tiles_n = ceil_div(s.n, p.gemm_tile_n);
  const double tile_util =
      (static_cast<double>(s.m) * s.n) / (static_cast<double>(tiles_m * p.gemm_tile_m) * (tiles_n * p.gemm_tile_n));
  const long tiles = tiles_m * tiles_n * batch;
  const long waves = ceil_div(tiles, p.sms);
  const double wave_util = static_cast<double>(tiles) / (static_cast<double>(waves) * p.sms);

  const double m = s.m, n = s.n, k = s.k;
  const Flops flops(2.0 * m * n * k * batch);
  const Bytes bytes(bytes_per_element(dtype) * (m * k + k * n + m * n) * batch);
  const Seconds compute = flops / (peak * (best * tile_util * wave_util));
  const Seconds memory = bytes / (p.memory_bandwidth * p.memory_efficiency);
  return flops / (peak * std::max(compute, memory));
}

/// Position of a shape in the interpolation space: log2 of m (batch folded into rows, as a
/// strided-batched GEMM fills the GPU like a taller one), n and k. Log space because GEMM
/// efficiency varies with the order of magnitude of a dimension, not with its absolute size.
Eigen::Vector3d log_shape(long m, long n, long k) {
  return {std::log2(static_cast<double>(m)), std::log2(static_cast<double>(n)), std::log2(static_cast<double>(k))};
}

/// Trilinear interpolation in log-shape space when the query lies in a cell whose eight corners
/// are all recorded (a calibration sweep over a grid of m, n and k); nothing otherwise. On a grid
/// it follows the recorded trend along each axis, where inverse-distance weighting is pulled
/// towards the mean of far points (at the cell centres of tests/calibration's fixture, a grid
/// with steps of 4x: at worst 18% off the fixture's own formula by weighting, 7% by this).
std::optional<double> grid_interpolation(const std::vector<const GemmPoint*>& points,
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
    const auto found =
        std::find_if(at.begin(), at.end(), [&](const Eigen::Vector3d& x) { return (x - c).cwiseAbs().maxCoeff() < 1e-9; });
    if (found == at.end()) return std::nullopt;
    value += weight * points[static_cast<std::size_t>(found - at.begin())]->efficiency;
  }
  return value;
}

} // namespace

double CostModel::gemm_efficiency(const GemmShape& shape, Precision dtype) const {
  return gemm_estimate(shape, dtype).efficiency;
}

GemmEstimate CostModel::gemm_estimate(const GemmShape& shape, Precision dtype) const {
  const FlopsPerSecond pk = peak(dtype);
  std::vector<const GemmPoint*> points;
  for (const GemmPoint& g : profile_.gemm_points) {
    if (g.dtype == dtype) points.push_back(&g);
  }
  if (points.empty() || shape.m <= 0 || shape.n <= 0 || shape.k <= 0) {
    return {.efficiency = analytic_gemm_efficiency(profile_, shape, dtype, pk)};
  }

  // Inverse-distance weighting (power 2) in log-shape space: exact at a recorded point, and a
  // convex combination elsewhere, so it never leaves the range of the recorded efficiencies.
  // Chosen over a least-squares fit, which would neither reproduce points nor stay in range.
  // Inside a fully recorded grid cell, trilinear interpolation (also convex) replaces it.
  const Eigen::Vector3d q = log_shape(shape.m * std::max(1L, shape.batch), shape.n, shape.k);
  Eigen::Vector3d lo = Eigen::Vector3d::Constant(std::numeric_limits<double>::infinity());
  Eigen::Vector3d hi = -lo;
  double weight_sum = 0.0;
  double weighted = 0.0;
  const GemmPoint* nearest = nullptr;
  double nearest_d2 = std::numeric_limits<double>::infinity();
  std::vector<Eigen::Vector3d> at;  // the points' positions, for the grid test below
  at.reserve(points.size());
  for (const GemmPoint* g : points) {
    const Eigen::Vector3d x = log_shape(g->m, g->n, g->k);
    at.push_back(x);
    lo = lo.cwiseMin(x);
    hi = hi.cwiseMax(x);
    const double d2 = (x - q).squaredNorm();
    if (d2 == 0.0) return {.efficiency = g->efficiency};
    if (d2 < nearest_d2) {  // strict: the first point in file order wins ties, deterministically
      nearest_d2 = d2;
      nearest = g;
    }
    weight_sum += 1.0 / d2;
    weighted += g->efficiency / d2;
  }
  const double idw = weighted / weight_sum;
  const bool inside = (q.array() >= lo.array()).all() && (q.array() <= hi.array()).all();
  if (inside) return {.efficiency = grid_interpolation(points, at, q).value_or(idw)};

  // Beyond the measured range: never above the nearest measured point, and lower still where the
  // analytic shape model says the query is worse than that point (smaller or skinnier shapes).
  const double at_query = analytic_gemm_efficiency(profile_, shape, dtype, pk);
  const double at_nearest = analytic_gemm_efficiency(profile_, GemmShape{.m = nearest->m, .n = nearest->n, .k = nearest->k},
                                                     dtype, pk);
  const double shape_ratio = std::min(1.0, at_query / at_nearest);
  return {.efficiency = std::min(idw, nearest->efficiency) * shape_ratio, .extrapolated = true};
}

Seconds CostModel::compute_time(const ComputeOp& op) const {
  const Seconds launches = profile_.launch_overhead * static_cast<double>(std::max(0, op.kernels));
  switch (op.kind) {
  case OpKind::GEMM: return op.flops / (peak(op.dtype) * gemm_efficiency(op.gemm, op.dtype)) + launches;
  case OpKind::ATTENTION: {
    // The workload emits the full s x s score FLOPs. Fused (flash) kernels skip fully masked
    // tiles of a causal mask, doing about half; unfused kernels compute everything and mask after.
    const double work = op.attention.causal && op.attention.fused ? 0.5 : 1.0;
    return op.flops * work / (peak(op.dtype) * profile_.attention_efficiency) + launches;
  }
  case OpKind::MEMORY_BOUND:
  case OpKind::OPTIMIZER: return op.bytes / (profile_.memory_bandwidth * profile_.memory_efficiency) + launches;
  }
  return launches;
}

Seconds CostModel::compute_time(const std::vector<ComputeOp>& ops) const {
  Seconds total;
  for (const ComputeOp& op : ops) total += compute_time(op);
  return total;
}

CollectivePlan CostModel::collective(CollectiveKind kind, Bytes size, GroupShape group) const {
  return collective(kind, size, group, profile_.nvlink.bandwidth, profile_.net.bandwidth);
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
  // NCCL's tuning: predict every (algorithm, protocol) time and keep the least; ties keep NCCL's
  // order (tree before ring, LL before LL128 before Simple).
  ProtocolChoice best = price_protocol(profile_, Protocol::LL, rs, size, group, intra, inter);
  for (Protocol p : {Protocol::LL128, Protocol::SIMPLE}) {
    ProtocolChoice c = price_protocol(profile_, p, rs, size, group, intra, inter);
    if (c.time < best.time) best = std::move(c);
  }
  if (kind == CollectiveKind::ALL_REDUCE && group.servers > 1) {
    for (Protocol p : {Protocol::LL, Protocol::LL128, Protocol::SIMPLE}) {
      ProtocolChoice c = price_tree(profile_, p, size, group, intra, inter);
      if (c.time < best.time || (c.time == best.time && best.plan.algorithm == "ring")) best = std::move(c);
    }
  }
  return best.plan;
}

Seconds CostModel::collective_time(CollectiveKind kind, Bytes size, GroupShape group, BytesPerSecond intra,
                                   BytesPerSecond inter) const {
  const CollectivePlan plan = collective(kind, size, group, intra, inter);
  if (plan.steps == 0) return Seconds(0.0);
  if (plan.algorithm == "tree") {
    double bottleneck = inter.value() * plan.efficiency_net;
    if (group.ranks > group.servers) bottleneck = std::min(bottleneck, intra.value() * plan.efficiency_nvlink);
    return plan.latency + Seconds(2.0 * size.value() / bottleneck);
  }
  return plan.latency + transfer_time(plan, size, group, intra, inter);
}

} // namespace odyssey
