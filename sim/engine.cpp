#include "sim/engine.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <simgrid/s4u.hpp>

#include "calibration/overlap.hpp"
#include "models/strategy.hpp"
#include "sim/isolation.hpp"
#include "sim/nccl_flows.hpp"
#include "sim/platform.hpp"

XBT_LOG_NEW_CATEGORY(odyssey, "Odyssey");
XBT_LOG_NEW_DEFAULT_SUBCATEGORY(odyssey_engine, odyssey, "Odyssey training-iteration engine");

namespace odyssey {

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(TraceEvent, stage, replica, stream, name, start, end, flow)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(LinkCounter, name, time, utilisation)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(LinkLoad, name, role, bytes, utilisation)

void to_json(nlohmann::json& j, const Seconds& s) {
  j = s.value();
}
void from_json(const nlohmann::json& j, Seconds& s) {
  s = Seconds(j.get<double>());
}
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Breakdown, compute, tp_comm_exposed, cp_comm_exposed, ep_comm_exposed,
                                   pp_bubble, pp_comm_exposed, dp_comm_exposed, optimizer, host_optimizer)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(SimulationResult, iteration_time, breakdown, critical_stage,
                                   critical_replica, simulated_gpus, platform_gpus, platform_cpu_hosts,
                                   actors, activities, flows, wall_seconds, peak_memory_bytes, trace,
                                   link_counters, busiest_links, busiest_nic_utilisation)

namespace {

/// Flows that add up on the same edges (collectives run back to back on one stream): one flow
/// per edge, carrying their bytes together.
class MergedFlows {
public:
  void add(const sim::Flow& e) { bytes_[{e.src, e.dst, e.sim_dst}] += e.bytes; }
  [[nodiscard]] bool empty() const { return bytes_.empty(); }
  [[nodiscard]] std::vector<sim::Flow> flows() const {
    std::vector<sim::Flow> out;
    out.reserve(bytes_.size());
    for (const auto& [key, bytes] : bytes_)
      out.push_back(
          {.src = std::get<0>(key), .dst = std::get<1>(key), .bytes = bytes, .sim_dst = std::get<2>(key)});
    return out;
  }

private:
  std::map<std::tuple<long, long, long>, Bytes> bytes_;
};

namespace sg4 = simgrid::s4u;

/// Time categories of one actor; they partition its time from 0 to its finish.
enum class Category { COMPUTE, TP, CP, EP, PP_WAIT, PP_TRANSFER, DP_WAIT, OPTIMIZER, HOST_OPTIMIZER, COUNT };

const char* stream_of(GroupKind g) {
  switch (g) {
  case GroupKind::TP: return "tp";
  case GroupKind::CP: return "cp";
  case GroupKind::EP: return "ep";
  case GroupKind::PP: return "pp";
  case GroupKind::DP:
  case GroupKind::EXPERT_DP: return "dp";
  }
  return "tp";
}

Category category_of(GroupKind g) {
  switch (g) {
  case GroupKind::TP: return Category::TP;
  case GroupKind::CP: return Category::CP;
  case GroupKind::EP: return Category::EP;
  case GroupKind::PP: return Category::PP_TRANSFER;
  case GroupKind::DP:
  case GroupKind::EXPERT_DP: return Category::DP_WAIT;
  }
  return Category::TP;
}

/// Priced work of one pass over one chunk for one micro-batch.
struct PricedBlock {
  Seconds compute;
  std::vector<CollectiveOp> comm;
  /// What the overlapped collectives that run beside one GEMM each leave exposed (beside_exposed):
  /// the compute stalls for it.
  Seconds beside;
};

struct PricedChunk {
  PricedBlock forward;
  PricedBlock first_forward; ///< forward of micro-batch 0: with the once-per-iteration weight casts
  PricedBlock backward;
  PricedBlock backward_input;
  PricedBlock backward_weight;
  Bytes activation;       ///< per GPU, per micro-batch, to the next virtual stage
  Bytes gradients;        ///< dense gradient bytes of this chunk on one GPU
  Bytes expert_gradients; ///< expert gradient bytes of this chunk on one GPU
  int layers = 0;         ///< transformer layers of this chunk
};

/// Which ranks of a stage a data-parallel collective spans.
enum class DpGroup { DENSE, EXPERT };

bool data_parallel(GroupKind g) {
  return g == GroupKind::DP || g == GroupKind::EXPERT_DP;
}
DpGroup dp_group_of(GroupKind g) {
  return g == GroupKind::EXPERT_DP ? DpGroup::EXPERT : DpGroup::DENSE;
}

/// A collective over the data-parallel dimension, run by the stage's driver actor once every
/// replica has issued it (NCCL runs a communicator's collectives in issue order).
struct DpRequest {
  CollectiveKind kind = CollectiveKind::ALL_REDUCE;
  DpGroup group = DpGroup::DENSE;
  Bytes bytes;
  std::string label;
  bool end = false; ///< no more requests from this replica
  /// Nothing waits for this request before the end of the iteration (gradient buckets), so the
  /// driver may run it together with the ones queued behind it.
  bool deferred_wait = false;
  int count = 1; ///< the same collective this many times back to back (CollectiveOp::count)
};

/// The request that runs the data-parallel collective `op`.
DpRequest dp_request(const CollectiveOp& op) {
  return {.kind = op.kind,
          .group = dp_group_of(op.group),
          .bytes = op.bytes,
          .label = op.name,
          .count = op.count};
}

} // namespace

std::vector<CollectiveOp> part_collectives(const std::vector<CollectiveOp>& comm, int part, int parts) {
  std::vector<CollectiveOp> out;
  const size_t n = comm.size();
  for (size_t i = 0; i < n; ++i) {
    const CollectiveOp& op = comm[i];
    if (data_parallel(op.group)) {
      // ZeRO-3's per-unit gathers go with the units: the pass's first unit before its first part,
      // the prefetched ones one by one ahead of the parts whose gradients follow them on the
      // data-parallel stream (FSDP's backward prefetch issues the next unit's all-gather before
      // the current unit's reduce-scatter).
      if (!op.overlap_with_compute) {
        if (part == 0) out.push_back(op);
        continue;
      }
      // Shared out from the first part on: a unit's gather runs ahead of the part that needs it.
      const long c = op.count;
      const int from = static_cast<int>((c * part + parts - 1) / parts);
      const int to = static_cast<int>((c * (part + 1) + parts - 1) / parts);
      if (to > from) {
        out.push_back(op);
        out.back().count = to - from;
      }
      continue;
    }
    // The others are spread over the parts in order, each whole (a collective split in pieces
    // would pay its latency once per piece).
    if (i >= n * static_cast<size_t>(part) / static_cast<size_t>(parts) &&
        i < n * static_cast<size_t>(part + 1) / static_cast<size_t>(parts))
      out.push_back(op);
  }
  return out;
}

namespace {

/// Per-(stage, expert-group replica) actor state; touched only from SimGrid actors (one thread).
struct BlockState {
  int stage = 0;
  int replica = 0;
  long base = 0;                                       ///< first global GPU index of the block
  std::vector<char> activation_ready;                  ///< [chunk * m + mb]: sender finished its forward
  std::vector<char> gradient_ready;                    ///< [chunk * m + mb]: sender finished its backward
  std::vector<sim::FlowsInFlight> incoming_activation; ///< with pp overlap: flows in flight
  std::vector<sim::FlowsInFlight> incoming_gradient;
  sg4::MutexPtr mutex;
  sg4::ConditionVariablePtr cv;
  double time[static_cast<int>(Category::COUNT)] = {};
  double finish = 0.0;
  int next_request = 0; ///< sequence number of this replica's next DP request
};

struct DpState {
  std::vector<DpRequest> requests; ///< by sequence number, as first issued
  std::vector<int> posted;         ///< replicas that issued each request
  std::vector<char> done;
  /// When the stream ran collectives (its kernels take SMs from the stage's compute), in order.
  std::vector<std::pair<double, double>> busy;
  double busy_since = -1.0; ///< start of the collective in flight; -1 when idle
  sg4::MutexPtr mutex;
  sg4::ConditionVariablePtr cv;
};

class Simulation {
public:
  Simulation(const MachineSpec& machine, const Workload& w, const CostModel& cost,
             const SimulationOptions& options)
      : machine_(machine), w_(w), cost_(cost), options_(options), p_(w.parallelism()), order_(p_) {
    block_size_ = p_.tp * p_.cp * p_.ep;
    blocks_per_stage_ = p_.dp / p_.ep;
    const int dp_ranks = order_.group_size(GroupKind::DP);
    const int dp_servers = std::max(1, order_.servers_spanned(GroupKind::DP, machine_.server.gpus));
    dp_share_ = nccl_overlap_share((dp_ranks + dp_servers - 1) / dp_servers, dp_servers, machine_.server.nics,
                                   cost_.profile());
  }

  SimulationResult run();

private:
  /// Megatron-core rank order (models/strategy): a block (tp x cp x ep ranks of one stage) is a
  /// contiguous range of ranks.
  [[nodiscard]] long block_base(int stage, int replica) const { return order_.block_base(stage, replica); }
  [[nodiscard]] long local_index(int t, int c, int j) const { return order_.local_index(t, c, j); }
  [[nodiscard]] long server_of(long gpu) const { return gpu / machine_.server.gpus; }
  [[nodiscard]] long nic_of(long gpu) const { return machine_.nic_of(gpu); }
  /// The GPU that runs `rank` under the scenario's placement.
  [[nodiscard]] long gpu_of(long rank) const {
    return place_rank(options_.placement, rank, static_cast<long>(p_.gpus()), p_.tp, machine_.server.gpus);
  }
  [[nodiscard]] bool tp_links_private() const {
    // TP filling whole servers is the only traffic on their NVLink ports (every other group
    // leaves through the NICs), so its collectives can be priced in closed form without losing
    // any contention. So is a smaller TP group behind an NVSwitch when its block fills whole
    // servers (no other block's traffic reaches these ports; pipeline and data-parallel flows
    // leave through the NICs) and nothing else of the block runs beside it on NVLink: its
    // context- and expert-parallel collectives either do not exist or never overlap it (without
    // TP overlap, TP collectives run after the overlapped ones have been waited for). Otherwise
    // they run as flows.
    if (options_.placement == Placement::TP_ACROSS_SERVERS) return false;
    if (p_.tp == machine_.server.gpus) return true;
    return options_.placement == Placement::TP_IN_SERVER && machine_.server.gpus % p_.tp == 0 &&
           machine_.server.intra == IntraServer::NVSWITCH && block_size_ % machine_.server.gpus == 0 &&
           (!p_.tp_overlap || p_.cp * p_.ep == 1);
  }

  /// Whether flow `e` is left to its image on the tensor positions of NIC 0 (fold_tensor_positions_).
  [[nodiscard]] bool folded(const sim::Flow& e) const {
    return fold_tensor_positions_ && server_of(e.src) != server_of(e.dst) &&
           e.src % p_.tp >= machine_.server.gpus / machine_.server.nics;
  }

  /// Inside servers behind an NVSwitch, the fold goes further: there the positions' NVLink ports
  /// are alike too, so a flow from a position behind NIC 0 stands for its images and moves on NIC
  /// 0's positions' ports only (its destination's port replaced by that of the position it maps
  /// onto there). Each port carries one flow of each orbit (the shift moves both ends), so the
  /// port keeps its capacity. Only a set of flows that the shift maps onto itself is folded (rings,
  /// NVLS and tree chains inside a TP group, and groups of one position each, are); otherwise its
  /// flows inside servers all move.
  [[nodiscard]] long shifted(long gpu) const {
    const long t = gpu % p_.tp;
    return gpu - t + (t + gpus_per_nic_) % p_.tp;
  }
  [[nodiscard]] long port_representative(long gpu) const {
    const long t = gpu % p_.tp;
    return gpu - t + t % gpus_per_nic_;
  }
  [[nodiscard]] bool fold_inside_servers(const std::vector<sim::Flow>& edges) const;

  void price();
  PricedBlock price_block(const WorkBlock& block) const;
  std::vector<sim::Flow> group_edges(const std::vector<long>& members, const CollectiveOp& op,
                                     CollectivePlan* plan) const;
  std::vector<sim::Flow> collective_edges(const std::vector<long>& members, CollectiveKind kind, Bytes size,
                                          CollectivePlan* plan) const;
  void trees_as_rings(std::vector<sim::Flow>& flows) const;
  std::vector<std::vector<long>> block_groups(const BlockState& b, GroupKind g) const;
  std::vector<sim::Flow> dp_edges(int stage, const DpRequest& request, Seconds* latency) const;
  sim::FlowsInFlight start_flows(const std::vector<sim::Flow>& edges);
  /// Moves the flows and returns how long after that their last bytes land (sim::wait_bytes).
  [[nodiscard]] Seconds run_flows(const std::vector<sim::Flow>& edges);
  /// Sleeps `time` when positive, as one activity.
  void sleep(Seconds time);
  /// ZeRO-Offload: waits for what of the host's optimizer step stays on the critical path, and
  /// draws the host's copies and CPU-Adam on the server's host track.
  void run_host_optimizer(BlockState& b);
  void record(BlockState& b, Category c, double start, const char* stream, const std::string& name,
              long flow = -1);
  [[nodiscard]] long flow_id(int stage, size_t slot, bool activation) const;
  void sample_links();

  void stage_actor(BlockState& b);
  void dp_driver(int stage);
  int issue_dp(BlockState& b, DpRequest request);
  void wait_dp(BlockState& b, int seq);
  void pull(BlockState& b, int from_stage, size_t slot, bool activation, Bytes bytes,
            const std::string& what);
  std::vector<sim::Flow> pp_edges(long from_base, long to_base, Bytes bytes) const;
  void run_block(BlockState& b, const PricedBlock& block, const std::string& name);
  void synchronize(BlockState& b);
  Seconds analytic_tp(const CollectiveOp& op) const;
  /// Seconds in [t0, t1] during which the data-parallel stream of `stage` ran a collective.
  [[nodiscard]] Seconds dp_busy(int stage, double t0, double t1) const;
  /// SM share of a collective's kernel over `members` (global ranks).
  [[nodiscard]] double nccl_share(const std::vector<long>& members) const;

  const MachineSpec& machine_;
  const Workload& w_;
  const CostModel& cost_;
  const SimulationOptions& options_;
  const ParallelismSpec& p_;
  RankOrder order_;
  int block_size_ = 1;
  int blocks_per_stage_ = 1;
  std::unique_ptr<sim::Platform> platform_;
  std::vector<std::vector<PricedChunk>> priced_;                 // [stage][chunk]
  std::vector<std::vector<std::unique_ptr<BlockState>>> blocks_; // [stage][replica]
  std::vector<std::unique_ptr<DpState>> dp_;                     // [stage]
  std::vector<Seconds> optimizer_time_;                          // [stage]
  std::vector<OffloadStep> offload_;                             // [stage] ZeRO-Offload's host side
  SimulationResult result_;
  /// Replicas with actors of their own: all of them at full fidelity; at fast fidelity replica 0
  /// stands for all (they run the same program), while data-parallel rings still put every
  /// replica's flows on the fabric.
  int replicas_ = 1;
  double dp_share_ = 0.0; ///< SM share of the data-parallel stream's kernels
  /// Bytes each link of the platform carried (by its index in Platform::links()), and whether a
  /// flow crossed it at all.
  std::vector<double> link_bytes_;
  std::vector<char> link_used_;
  std::unordered_map<const sg4::Link*, uint32_t> link_index_;
  /// The route between two GPUs: its links (by index) and its latency, computed once per pair:
  /// the same pairs exchange every micro-batch.
  struct Route {
    std::vector<uint32_t> links;
    Seconds latency;
  };
  std::unordered_map<long, Route> routes_;
  const Route& route_of(long src, long dst);
  std::unordered_set<const sg4::Link*> simulated_links_; ///< links that carried a started flow (trace)
  /// Every flow between servers connects GPUs of the same tensor position t (pipeline messages,
  /// data-parallel rings, context- and expert-parallel groups: all per t), and the program is the
  /// same for every t. When the machine treats the NICs alike too — each shared by the same
  /// number of GPUs, and every fabric link between servers of the sharing problem either on one
  /// rail or shared by all NICs of its servers, without hashing (Platform::fold_positions) —
  /// moving t by one NIC's worth of GPUs maps the job's flows and links onto themselves, so the
  /// flows of the positions behind NICs other than the block's first get exactly the rates of
  /// their images behind it and finish with them. Only the images are put on SimGrid; links all
  /// positions share keep the images' part of their capacity; every flow's bytes still count on
  /// its own links.
  bool fold_tensor_positions_ = false;
  /// The fold also inside servers (fold_inside_servers): positions behind an NVSwitch.
  bool fold_ports_ = false;
  int gpus_per_nic_ = 1;
};

void Simulation::price() {
  const int pp = w_.stages();
  const int v = w_.chunks_per_stage();
  priced_.assign(static_cast<size_t>(pp), {});
  optimizer_time_.assign(static_cast<size_t>(pp), Seconds(0));
  for (int s = 0; s < pp; ++s) {
    for (int c = 0; c < v; ++c) {
      const ChunkWork& work = w_.chunk(s, c);
      PricedBlock first_forward = price_block(work.forward);
      first_forward.compute += cost_.compute_time(work.weight_casts.compute);
      priced_[static_cast<size_t>(s)].push_back({.forward = price_block(work.forward),
                                                 .first_forward = std::move(first_forward),
                                                 .backward = price_block(work.backward),
                                                 .backward_input = price_block(work.backward_input),
                                                 .backward_weight = price_block(work.backward_weight),
                                                 .activation = work.activation_out,
                                                 .gradients = work.parameters,
                                                 .expert_gradients = work.expert_parameters,
                                                 .layers = work.layers});
    }
    optimizer_time_[static_cast<size_t>(s)] = cost_.compute_time(w_.optimizer(s));
  }
  // ZeRO-Offload: the Adam step leaves the GPU for the host cores (models/offload.hpp).
  offload_.assign(static_cast<size_t>(pp), OffloadStep{});
  if (p_.offload.optimizer != OffloadDevice::NONE)
    for (int s = 0; s < pp; ++s) {
      optimizer_time_[static_cast<size_t>(s)] = Seconds(0);
      offload_[static_cast<size_t>(s)] = offload_step(
          w_, s, host_resources(machine_, p_.gpus()), cost_.cpu_adam(),
          overlap_windows(w_, s, [&](const WorkBlock& b) { return cost_.compute_time(b.compute); }));
    }
}

PricedBlock Simulation::price_block(const WorkBlock& block) const {
  PricedBlock b{.compute = cost_.compute_time(block.compute), .comm = {}};
  for (CollectiveOp op : block.comm) {
    op.overlap_with_compute = overlaps_compute(op, p_);
    const int ranks = op.group == GroupKind::TP          ? p_.tp
                      : op.group == GroupKind::CP        ? p_.cp
                      : op.group == GroupKind::EP        ? p_.ep
                      : op.group == GroupKind::EXPERT_DP ? w_.expert_zero_shards()
                                                         : w_.zero_shards();
    if (ranks > 1) b.comm.push_back(op);
  }
  std::vector<CollectiveOp> overlapped;
  for (const CollectiveOp& op : b.comm)
    if (op.overlap_with_compute && op.group == GroupKind::TP) overlapped.push_back(op);
  b.beside = beside_exposed(block.compute, overlapped, cost_,
                            [&](const CollectiveOp& op) { return analytic_tp(op); });
  return b;
}

Seconds Simulation::analytic_tp(const CollectiveOp& op) const {
  return op.count * cost_.collective_time(op.kind, op.bytes, GroupShape{.ranks = p_.tp, .servers = 1},
                                          machine_.server.nvlink_bandwidth, machine_.server.nic_bandwidth);
}

/// The flows of the algorithm NCCL's tuning picks for `members`, priced by the cost model.
std::vector<sim::Flow> Simulation::collective_edges(const std::vector<long>& ranks, CollectiveKind kind,
                                                    Bytes size, CollectivePlan* plan_out) const {
  // The ranks' GPUs, in GPU order: NCCL's topology search orders rings and trees so that they
  // visit each server once, whatever the rank numbering.
  std::vector<long> members;
  members.reserve(ranks.size());
  for (long r : ranks) members.push_back(gpu_of(r));
  std::sort(members.begin(), members.end());
  const int n = static_cast<int>(members.size());
  if (n < 2) return {};
  std::set<long> servers;
  for (long g : members) servers.insert(server_of(g));
  const CollectivePlan plan =
      cost_.collective(kind, size, GroupShape{.ranks = n, .servers = static_cast<int>(servers.size())});
  if (plan_out != nullptr) *plan_out = plan;
  std::vector<sim::Flow> flows = sim::nccl_flows(plan, kind, members, machine_, size);
  if (options_.sharing_shortcuts && (plan.algo == Algorithm::TREE || plan.algo == Algorithm::NVLS_TREE))
    trees_as_rings(flows);
  return flows;
}

/// NCCL tree flows between servers moved onto rings with the same NIC loads
/// (sim::tree_edges_as_rings), where neither a tree edge nor its stand-in crosses a fabric link of
/// the sharing problem: then every link either flow shares is its endpoints' own.
void Simulation::trees_as_rings(std::vector<sim::Flow>& flows) const {
  std::vector<sim::Flow> rings = flows;
  if (!sim::tree_edges_as_rings(rings, machine_.server.gpus)) return;
  for (const sim::Flow& f : rings)
    if (f.sim_dst >= 0 && (platform_->crosses_shared_fabric(f.src, f.dst) ||
                           platform_->crosses_shared_fabric(f.src, f.sim_dst)))
      return;
  flows = std::move(rings);
}

/// Flows of one collective over `members` (all-to-all: every pair, each rank sending size/n to
/// each other rank, nccl-tests' convention); an op issued `count` times carries count times the
/// bytes on the same edges and reports count times the plan's latency.
std::vector<sim::Flow> Simulation::group_edges(const std::vector<long>& members, const CollectiveOp& op,
                                               CollectivePlan* plan_out) const {
  std::vector<sim::Flow> edges = collective_edges(members, op.kind, op.bytes, plan_out);
  if (op.count != 1) {
    for (sim::Flow& e : edges) e.bytes *= op.count;
    if (plan_out != nullptr) plan_out->latency *= op.count;
  }
  return edges;
}

/// The instances of group `g` inside block `b`, as global GPU indices in rank order.
std::vector<std::vector<long>> Simulation::block_groups(const BlockState& b, GroupKind g) const {
  std::vector<std::vector<long>> groups;
  for (int j = 0; j < p_.ep; ++j)
    for (int c = 0; c < p_.cp; ++c)
      for (int t = 0; t < p_.tp; ++t) {
        const bool leader = (g == GroupKind::TP && t == 0) || (g == GroupKind::CP && c == 0) ||
                            (g == GroupKind::EP && j == 0);
        if (!leader) continue;
        std::vector<long> members;
        if (g == GroupKind::TP)
          for (int k = 0; k < p_.tp; ++k) members.push_back(b.base + local_index(k, c, j));
        else if (g == GroupKind::CP)
          for (int k = 0; k < p_.cp; ++k) members.push_back(b.base + local_index(t, k, j));
        else
          for (int k = 0; k < p_.ep; ++k) members.push_back(b.base + local_index(t, c, k));
        groups.push_back(std::move(members));
      }
  return groups;
}

const Simulation::Route& Simulation::route_of(long src, long dst) {
  auto [it, fresh] = routes_.try_emplace(src * platform_->gpu_count() + dst);
  if (fresh) {
    std::vector<sg4::Link*> route;
    platform_->route(src, dst, route);
    it->second.links.reserve(route.size());
    for (const auto* link : route) it->second.links.push_back(link_index_.at(link));
    it->second.latency = sim::latency_of(route);
  }
  return it->second;
}

/// Whether the flows of `edges` inside servers can move on NIC 0's positions' NVLink ports alone:
/// the fold is on inside servers and the shift by one NIC's worth of positions maps them onto
/// themselves, sizes included.
bool Simulation::fold_inside_servers(const std::vector<sim::Flow>& edges) const {
  if (!fold_ports_) return false;
  std::vector<std::tuple<long, long, double>> inside, images;
  for (const sim::Flow& e : edges) {
    if (server_of(e.src) != server_of(e.dst)) continue;
    if (e.sim_dst >= 0) return false;
    inside.emplace_back(e.src, e.dst, e.bytes.value());
    images.emplace_back(shifted(e.src), shifted(e.dst), e.bytes.value());
  }
  if (inside.empty()) return false;
  std::sort(inside.begin(), inside.end());
  std::sort(images.begin(), images.end());
  return inside == images;
}

sim::FlowsInFlight Simulation::start_flows(const std::vector<sim::Flow>& edges) {
  sim::FlowsInFlight flows;
  flows.comms.reserve(edges.size());
  flows.route_latency.reserve(edges.size());
  const bool fold_ports = fold_inside_servers(edges);
  for (const sim::Flow& edge : edges) {
    const Route& route = route_of(edge.src, edge.dst);
    for (uint32_t link : route.links) {
      link_bytes_[link] += edge.bytes.value();
      link_used_[link] = 1;
    }
    if (folded(edge)) continue;
    sim::Flow e = edge;
    if (fold_ports && server_of(e.src) == server_of(e.dst)) {
      if (e.src % p_.tp >= gpus_per_nic_) continue; // an image of a flow that moves
      if (const long port = port_representative(e.dst); port != e.dst) e.sim_dst = port;
    }
    flows.add(platform_->start_flow(e), route.latency); // the flow's own route, not its image's
    if (options_.record_trace)
      for (uint32_t link : route_of(e.src, e.sim_dst >= 0 ? e.sim_dst : e.dst).links)
        simulated_links_.insert(platform_->links()[link].link);
  }
  result_.activities += static_cast<long>(flows.comms.size());
  result_.flows += static_cast<long>(flows.comms.size());
  return flows;
}

Seconds Simulation::run_flows(const std::vector<sim::Flow>& edges) {
  if (edges.empty()) return Seconds(0);
  sim::FlowsInFlight started = start_flows(edges);
  return sim::wait_bytes(started);
}

void Simulation::sleep(Seconds time) {
  if (time.value() <= sim::TIMING_ACCURACY) return;
  sg4::this_actor::sleep_for(time.value());
  ++result_.activities;
}

void Simulation::run_host_optimizer(BlockState& b) {
  const OffloadStep& step = offload_[static_cast<size_t>(b.stage)];
  const double t0 = sg4::Engine::get_clock();
  if (step.exposed.value() > 0) sg4::this_actor::sleep_for(step.exposed.value());
  record(b, Category::HOST_OPTIMIZER, t0, "host", "host optimizer on the critical path");
  if (!options_.record_trace || b.replica != 0) return;
  // The host's own work, back to back from the end of the backward: gradients arrive over PCIe
  // during the backward, so only their tail is drawn after it.
  double at = t0;
  for (const auto& [part, label] :
       {std::pair{step.nvme, "NVMe optimizer states"}, std::pair{step.cpu_adam, "CPU-Adam"},
        std::pair{step.parameters_to_device, "parameters host->device (PCIe)"}})
    if (part.value() > 0) {
      result_.trace.push_back(
          {.stage = b.stage,
           .replica = b.replica,
           .stream = "host",
           .name = std::string(label) + (p_.offload.delayed_update ? " (delayed update)" : ""),
           .start = at,
           .end = at + part.value(),
           .flow = -1});
      at += part.value();
    }
  if (step.gradients_to_host.value() > 0)
    result_.trace.push_back({.stage = b.stage,
                             .replica = b.replica,
                             .stream = "host",
                             .name = "gradients device->host (PCIe)",
                             .start = std::max(0.0, t0 - step.gradients_to_host.value()),
                             .end = t0,
                             .flow = -1});
}

void Simulation::record(BlockState& b, Category c, double start, const char* stream, const std::string& name,
                        long flow) {
  const double now = sg4::Engine::get_clock();
  b.time[static_cast<int>(c)] += now - start;
  // A pipeline receive is kept even when it took no time, so that every send has its receive.
  if (options_.record_trace && b.replica == 0 && (now > start || flow >= 0))
    result_.trace.push_back({.stage = b.stage,
                             .replica = b.replica,
                             .stream = stream,
                             .name = name,
                             .start = start,
                             .end = now,
                             .flow = flow});
}

/// The id of the pipeline message received by `stage` into `slot` (chunk * m + micro-batch), the
/// same on the sending and the receiving side.
long Simulation::flow_id(int stage, size_t slot, bool activation) const {
  const auto m = static_cast<size_t>(w_.microbatches());
  const auto virtual_stage = (slot / m) * static_cast<size_t>(p_.pp) + static_cast<size_t>(stage);
  return static_cast<long>(2 * (virtual_stage * m + slot % m) + (activation ? 0 : 1));
}

/// With the trace: the utilisation of the fabric links the job has used, per link role (mean over
/// them and the busiest one), sampled at a period that doubles whenever the series grows past
/// MAX_SAMPLES (every other sample is dropped), so no estimate of the iteration time is needed.
/// A daemon actor: it ends with the iteration.
void Simulation::sample_links() {
  constexpr size_t MAX_SAMPLES = 1024;
  constexpr size_t ROLES = static_cast<size_t>(sim::LinkRole::TORUS) + 1; // every LinkRole
  auto& counters = result_.link_counters;
  for (size_t r = 0; r < ROLES; ++r) {
    const char* role = sim::to_string(static_cast<sim::LinkRole>(r));
    counters.push_back({.name = fmt::format("{} mean", role), .time = {}, .utilisation = {}});
    counters.push_back({.name = fmt::format("{} busiest", role), .time = {}, .utilisation = {}});
  }
  double period = 1e-4;
  std::vector<const sim::FabricLink*> used; // the links the job has used so far
  size_t used_known = 0;
  for (;;) {
    if (simulated_links_.size() != used_known) {
      used.clear();
      // With folded flows, the links their images crossed stand for the others.
      for (const sim::FabricLink& fl : platform_->links())
        if (simulated_links_.contains(fl.link)) used.push_back(&fl);
      used_known = simulated_links_.size();
    }
    std::array<double, ROLES> usage{};
    std::array<double, ROLES> capacity{};
    std::array<double, ROLES> busiest{};
    for (const sim::FabricLink* link : used) {
      const sim::FabricLink& fl = *link;
      const auto r = static_cast<size_t>(fl.role);
      if (r >= ROLES) continue; // a role added to LinkRole after TORUS: extend ROLES
      const double u = fl.link->get_usage() / fl.simulated_share;
      const double c = fl.link->get_bandwidth() / fl.simulated_share;
      usage[r] += u;
      capacity[r] += c;
      busiest[r] = std::max(busiest[r], u / c);
    }
    const double now = sg4::Engine::get_clock();
    for (size_t r = 0; r < ROLES; ++r) {
      counters[2 * r].time.push_back(now);
      counters[2 * r].utilisation.push_back(capacity[r] > 0 ? usage[r] / capacity[r] : 0.0);
      counters[2 * r + 1].time.push_back(now);
      counters[2 * r + 1].utilisation.push_back(busiest[r]);
    }
    if (counters[0].time.size() >= MAX_SAMPLES) {
      for (LinkCounter& c : counters) {
        for (size_t i = 0; 2 * i < c.time.size(); ++i) {
          c.time[i] = c.time[2 * i];
          c.utilisation[i] = c.utilisation[2 * i];
        }
        c.time.resize((c.time.size() + 1) / 2);
        c.utilisation.resize(c.time.size());
      }
      period *= 2;
    }
    sg4::this_actor::sleep_for(period);
  }
}

int Simulation::issue_dp(BlockState& b, DpRequest request) {
  DpState& dp = *dp_[static_cast<size_t>(b.stage)];
  const int seq = b.next_request++;
  std::unique_lock lock(*dp.mutex);
  if (static_cast<int>(dp.requests.size()) <= seq) {
    dp.requests.push_back(std::move(request));
    dp.posted.push_back(0);
    dp.done.push_back(0);
  }
  if (++dp.posted[static_cast<size_t>(seq)] == replicas_) dp.cv->notify_all();
  return seq;
}

void Simulation::wait_dp(BlockState& b, int seq) {
  DpState& dp = *dp_[static_cast<size_t>(b.stage)];
  std::unique_lock lock(*dp.mutex);
  while (dp.done[static_cast<size_t>(seq)] == 0) dp.cv->wait(lock);
}

Seconds Simulation::dp_busy(int stage, double t0, double t1) const {
  const DpState& dp = *dp_[static_cast<size_t>(stage)];
  double busy = 0;
  if (dp.busy_since >= 0) busy += std::max(0.0, t1 - std::max(t0, dp.busy_since));
  for (auto it = dp.busy.rbegin(); it != dp.busy.rend() && it->second > t0; ++it)
    busy += std::max(0.0, std::min(it->second, t1) - std::max(it->first, t0));
  return Seconds(busy);
}

double Simulation::nccl_share(const std::vector<long>& members) const {
  std::set<long> servers;
  for (long r : members) servers.insert(server_of(gpu_of(r)));
  const int per_server = static_cast<int>(members.size() / std::max<size_t>(1, servers.size()));
  return nccl_overlap_share(per_server, static_cast<int>(servers.size()), machine_.server.nics,
                            cost_.profile());
}

/// Runs one pass of a chunk: collectives marked overlappable start with the compute and only
/// their excess is exposed; the others are blocking (Megatron-LM's order does not change the
/// sum of their times, so they run after the compute).
void Simulation::run_block(BlockState& b, const PricedBlock& block, const std::string& name) {
  const double t0 = sg4::Engine::get_clock();
  sim::FlowsInFlight overlapped;
  MergedFlows overlapped_edges;
  std::vector<std::pair<GroupKind, Seconds>> overlapped_latency;
  std::vector<std::pair<GroupKind, int>> overlapped_dp;
  Seconds overlapped_analytic;
  // SMs the overlapped kernels take from the compute (calibration/overlap.hpp): userbuffers for
  // TP overlap, NCCL's channels otherwise; concurrent kernels add up.
  double analytic_share = 0.0, flow_share = 0.0;
  const int sms = cost_.profile().sms;
  for (const CollectiveOp& op : block.comm) {
    if (!op.overlap_with_compute) continue;
    const double userbuffers =
        op.group == GroupKind::TP && p_.tp_overlap ? overlap_sm_share(USERBUFFERS_SMS, sms) : -1;
    if (data_parallel(op.group)) {
      overlapped_dp.emplace_back(op.group, issue_dp(b, dp_request(op)));
    } else if (op.group == GroupKind::TP && tp_links_private()) {
      overlapped_analytic += analytic_tp(op);
      analytic_share =
          std::max(analytic_share, userbuffers >= 0
                                       ? userbuffers
                                       : nccl_overlap_share(p_.tp, 1, machine_.server.nics, cost_.profile()));
    } else {
      for (const auto& members : block_groups(b, op.group)) {
        CollectivePlan plan;
        for (const sim::Flow& e : group_edges(members, op, &plan)) overlapped_edges.add(e);
        overlapped_latency.emplace_back(op.group, plan.latency);
        flow_share = std::max(flow_share, userbuffers >= 0 ? userbuffers : nccl_share(members));
      }
    }
  }
  if (!overlapped_edges.empty()) {
    overlapped = start_flows(overlapped_edges.flows());
  }
  if (block.compute.value() > 0) {
    sg4::this_actor::execute(block.compute.value() * sim::GPU_HOST_SPEED);
    ++result_.activities;
  }
  record(b, Category::COMPUTE, t0, "compute", name);
  // A GEMM whose userbuffers collective outlasts it waits for that collective's last chunk.
  if (block.beside.value() > 0) {
    const double t = sg4::Engine::get_clock();
    sleep(block.beside);
    record(b, Category::TP, t, "tp", name + " tp collectives beside their GEMMs (exposed)");
  }
  // The data-parallel stream's collectives (gradient buckets, ZeRO-3 gathers) that ran while this
  // compute did.
  const Seconds dp_overlap = dp_busy(b.stage, t0, sg4::Engine::get_clock());
  const double flows_started = t0;
  const Seconds analytic_overlap = overlapped_analytic;

  // What the compute did not hide of the overlapped collectives.
  double flows_end = t0;
  for (const CollectiveOp& op : block.comm) {
    if (!op.overlap_with_compute) continue;
    const double t1 = sg4::Engine::get_clock();
    if (data_parallel(op.group)) {
      for (auto [g, seq] : overlapped_dp) wait_dp(b, seq);
      overlapped_dp.clear();
    } else if (op.group == GroupKind::TP && tp_links_private()) {
      const double left = overlapped_analytic.value() - (t1 - t0);
      if (left > 0) {
        sg4::this_actor::sleep_for(left);
        ++result_.activities;
      }
      overlapped_analytic = Seconds(0);
    } else if (!overlapped.empty()) {
      Seconds wait = sim::wait_bytes(overlapped, &flows_end);
      if (sg4::Engine::get_clock() > t1) { // exposed: the algorithms' latency is too
        Seconds latency;
        for (const auto& [g, l] : overlapped_latency) latency = std::max(latency, l);
        wait += latency;
      }
      sleep(wait);
    }
    record(b, category_of(op.group), t1, stream_of(op.group), name + " " + op.name + " (exposed)");
  }
  // The compute ran beside those kernels on fewer SMs: it ends later by what they took
  // (compute_under_overlap), each source of interference counted apart.
  if (block.compute.value() > 0) {
    Seconds stretched = block.compute;
    for (const auto& [overlap, share] :
         {std::pair{analytic_overlap, analytic_share},
          std::pair{Seconds(flows_end - flows_started), flow_share}, std::pair{dp_overlap, dp_share_}})
      stretched += compute_under_overlap(block.compute, overlap, share) - block.compute;
    const double end = t0 + stretched.value() + block.beside.value();
    const double t1 = sg4::Engine::get_clock();
    if (end - t1 > sim::TIMING_ACCURACY) { // below it the compute did not slow
      sg4::this_actor::sleep_for(end - t1);
      ++result_.activities;
      record(b, Category::COMPUTE, t1, "compute", name + " (beside communication)");
    }
  }

  // Blocking TP collectives priced in closed form: one timed activity for all of them.
  Seconds tp_blocking;
  for (const CollectiveOp& op : block.comm)
    if (!op.overlap_with_compute && op.group == GroupKind::TP && tp_links_private())
      tp_blocking += analytic_tp(op);
  if (tp_blocking.value() > 0) {
    const double t1 = sg4::Engine::get_clock();
    sg4::this_actor::sleep_for(tp_blocking.value());
    ++result_.activities;
    record(b, Category::TP, t1, "tp", name + " tp");
  }
  // The other blocking collectives: DP ones through the stage's driver, in order; those inside
  // the block merged per group into one flow per ring edge (their sizes add up on the same edges,
  // and their latencies add up on the critical path), which keeps flows O(block) per pass.
  for (GroupKind g : {GroupKind::TP, GroupKind::CP, GroupKind::EP}) {
    if (g == GroupKind::TP && tp_links_private()) continue;
    MergedFlows merged;
    Seconds latency;
    std::string names;
    for (const CollectiveOp& op : block.comm) {
      if (op.overlap_with_compute || op.group != g) continue;
      Seconds op_latency;
      for (const auto& members : block_groups(b, g)) {
        CollectivePlan plan;
        for (const sim::Flow& e : group_edges(members, op, &plan)) merged.add(e);
        op_latency = std::max(op_latency, plan.latency);
      }
      latency += op_latency;
      names += (names.empty() ? "" : ", ") + op.name;
    }
    if (merged.empty()) continue;
    const double t1 = sg4::Engine::get_clock();
    sleep(run_flows(merged.flows()) + latency);
    record(b, category_of(g), t1, stream_of(g), name + " " + names);
  }
  for (const CollectiveOp& op : block.comm) {
    if (op.overlap_with_compute || !data_parallel(op.group)) continue;
    const double t1 = sg4::Engine::get_clock();
    wait_dp(b, issue_dp(b, dp_request(op)));
    record(b, Category::DP_WAIT, t1, "dp", name + " " + op.name);
  }
}

/// Flows of one pipeline message between the same positions of two blocks: one per pair of NICs
/// (GPUs that share both NICs are merged into one flow).
std::vector<sim::Flow> Simulation::pp_edges(long from_base, long to_base, Bytes bytes) const {
  std::vector<sim::Flow> edges;
  std::map<std::pair<long, long>, size_t> by_nic_pair;
  const CollectivePlan intra =
      cost_.collective(CollectiveKind::SEND_RECV, bytes, GroupShape{.ranks = 2, .servers = 1});
  const CollectivePlan inter =
      cost_.collective(CollectiveKind::SEND_RECV, bytes, GroupShape{.ranks = 2, .servers = 2});
  for (int i = 0; i < block_size_; ++i) {
    const long src = gpu_of(from_base + i);
    const long dst = gpu_of(to_base + i);
    if (server_of(src) == server_of(dst)) {
      edges.push_back({.src = src, .dst = dst, .bytes = bytes / intra.efficiency_nvlink});
      continue;
    }
    auto [it, fresh] = by_nic_pair.try_emplace({nic_of(src), nic_of(dst)}, edges.size());
    if (fresh)
      edges.push_back({.src = src, .dst = dst, .bytes = bytes / inter.efficiency_net});
    else
      edges[it->second].bytes += bytes / inter.efficiency_net;
  }
  return edges;
}

/// Receives a pipeline message. Without overlap the receiver waits until the sender has produced
/// it (bubble), then moves it (the transfer starts when both sides are ready, as NCCL's send/recv
/// rendezvous does). With overlap the sender started the transfer when it produced the message
/// and the receiver only waits for what is still in flight.
void Simulation::pull(BlockState& b, int from_stage, size_t slot, bool activation, Bytes bytes,
                      const std::string& what) {
  std::vector<char>& flags = activation ? b.activation_ready : b.gradient_ready;
  double t0 = sg4::Engine::get_clock();
  {
    std::unique_lock lock(*b.mutex);
    while (flags[slot] == 0) b.cv->wait(lock);
  }
  record(b, Category::PP_WAIT, t0, "pp", "wait");
  t0 = sg4::Engine::get_clock();
  if (p_.pipeline_sync) {
    // The blocking send moved the data before it marked the message ready.
  } else if (p_.pp_overlap) {
    sleep(sim::wait_bytes((activation ? b.incoming_activation : b.incoming_gradient)[slot]));
  } else {
    const Seconds landing = run_flows(pp_edges(block_base(from_stage, b.replica), b.base, bytes));
    const CollectivePlan inter =
        cost_.collective(CollectiveKind::SEND_RECV, bytes, GroupShape{.ranks = 2, .servers = 2});
    sleep(landing + inter.latency);
  }
  record(b, Category::PP_TRANSFER, t0, "pp", what, flow_id(b.stage, slot, activation));
  if (p_.pipeline_sync) synchronize(b);
}

/// Megatron-LM 2021's p2p_communication ends every send/recv call with torch.cuda.synchronize(),
/// which drains the GPU queue: the next kernel starts only when the host has launched it again,
/// one kernel launch overhead per call.
void Simulation::synchronize(BlockState& b) {
  const double t0 = sg4::Engine::get_clock();
  sg4::this_actor::sleep_for(cost_.profile().launch_overhead.value());
  ++result_.activities;
  record(b, Category::PP_TRANSFER, t0, "pp", "device synchronize");
}

void Simulation::stage_actor(BlockState& b) {
  const int m = w_.microbatches();
  const int pp = p_.pp;
  const int v = w_.chunks_per_stage();
  const int last_virtual = pp * v - 1;
  const auto& steps = w_.schedule(b.stage);
  const bool has_dp = w_.zero_shards() > 1;
  const bool has_expert_dp = w_.expert_zero_shards() > 1;
  const CollectiveKind grad_kind = p_.zero >= 1 ? CollectiveKind::REDUCE_SCATTER : CollectiveKind::ALL_REDUCE;
  // Which gradient-producing steps release a chunk's gradients to the data-parallel group. Up to
  // ZeRO-1 gradients accumulate whole over the micro-batches and the last step of each chunk
  // releases them (Megatron-LM reduces after the last micro-batch of gradient accumulation;
  // zero-bubble after the last W). ZeRO-2 and 3 keep only a shard of the gradients, so every
  // micro-batch's backward reduce-scatters its gradients into the shards (DeepSpeed ZeRO-2/3 and
  // PyTorch FSDP outside no_sync).
  std::vector<char> releases_at(steps.size(), 0);
  {
    std::vector<int> last_grad_step(static_cast<size_t>(v), -1);
    for (int i = 0; i < static_cast<int>(steps.size()); ++i) {
      const PipelineStep& st = steps[static_cast<size_t>(i)];
      if (st.kind != StepKind::BACKWARD && st.kind != StepKind::BACKWARD_WEIGHT) continue;
      last_grad_step[static_cast<size_t>(st.chunk)] = i;
      if (p_.zero >= 2) releases_at[static_cast<size_t>(i)] = 1;
    }
    for (int i : last_grad_step)
      if (i >= 0) releases_at[static_cast<size_t>(i)] = 1;
  }
  auto buckets_of = [&](Bytes bytes, int layers) {
    return gradient_buckets(p_, w_.training(), bytes, layers);
  };
  std::vector<int> pending;                 // DP requests to wait for at the end
  std::vector<const PricedChunk*> deferred; // chunks whose gradients wait for the flush
  auto release = [&](const PricedChunk& pc, int part, int parts) {
    // Gradients of the chunk become ready layer by layer; each part carries its share of the buckets.
    const int dense = has_dp ? buckets_of(pc.gradients, pc.layers) : 0;
    const int expert = has_expert_dp ? buckets_of(pc.expert_gradients, pc.layers) : 0;
    for (int k = dense * part / parts; k < dense * (part + 1) / parts; ++k)
      pending.push_back(issue_dp(b, {.kind = grad_kind,
                                     .group = DpGroup::DENSE,
                                     .bytes = pc.gradients / dense,
                                     .label = fmt::format("gradients bucket {}", k),
                                     .deferred_wait = true}));
    for (int k = expert * part / parts; k < expert * (part + 1) / parts; ++k)
      pending.push_back(issue_dp(b, {.kind = grad_kind,
                                     .group = DpGroup::EXPERT,
                                     .bytes = pc.expert_gradients / expert,
                                     .label = fmt::format("expert gradients bucket {}", k),
                                     .deferred_wait = true}));
  };
  auto notify = [&](int stage, int chunk, int mb, bool activation, Bytes bytes) {
    BlockState& peer = *blocks_[static_cast<size_t>(stage)][static_cast<size_t>(b.replica)];
    const size_t slot = static_cast<size_t>(chunk * m + mb);
    if (p_.pipeline_sync) {
      // Blocking send (Megatron-LM 2021): this stage moves the message before it goes on.
      const double t0 = sg4::Engine::get_clock();
      const Seconds landing = run_flows(pp_edges(b.base, peer.base, bytes));
      const CollectivePlan inter =
          cost_.collective(CollectiveKind::SEND_RECV, bytes, GroupShape{.ranks = 2, .servers = 2});
      sleep(landing + inter.latency);
      record(b, Category::PP_TRANSFER, t0, "pp",
             fmt::format("send {} mb{}", activation ? "act" : "grad", mb));
      synchronize(b);
    }
    if (p_.pp_overlap) {
      // The send is asynchronous: its flows start now and this stage goes on computing.
      (activation ? peer.incoming_activation : peer.incoming_gradient)[slot] =
          start_flows(pp_edges(b.base, peer.base, bytes));
    }
    if (options_.record_trace && b.replica == 0) {
      const double now = sg4::Engine::get_clock();
      result_.trace.push_back({.stage = b.stage,
                               .replica = 0,
                               .stream = "pp",
                               .name = fmt::format("send {} mb{}", activation ? "act" : "grad", mb),
                               .start = now,
                               .end = now,
                               .flow = flow_id(stage, slot, activation)});
    }
    std::unique_lock lock(*peer.mutex);
    (activation ? peer.activation_ready : peer.gradient_ready)[slot] = 1;
    peer.cv->notify_all();
  };

  for (int i = 0; i < static_cast<int>(steps.size()); ++i) {
    const PipelineStep& step = steps[static_cast<size_t>(i)];
    const int j = step.chunk * pp + b.stage; // virtual stage
    const PricedChunk& pc = priced_[static_cast<size_t>(b.stage)][static_cast<size_t>(step.chunk)];
    const size_t slot = static_cast<size_t>(step.chunk * m + step.microbatch);
    const std::string label = fmt::format("{}{}.{}",
                                          step.kind == StepKind::FORWARD           ? "F"
                                          : step.kind == StepKind::BACKWARD_WEIGHT ? "W"
                                                                                   : "B",
                                          step.microbatch, step.chunk);
    if (step.kind == StepKind::FORWARD) {
      if (j > 0) {
        const int from = (j - 1) % pp;
        pull(b, from, slot, true,
             priced_[static_cast<size_t>(from)][static_cast<size_t>((j - 1) / pp)].activation,
             fmt::format("recv act mb{}", step.microbatch));
      }
      run_block(b, step.microbatch == 0 ? pc.first_forward : pc.forward, label);
      if (j < last_virtual) notify((j + 1) % pp, (j + 1) / pp, step.microbatch, true, pc.activation);
      continue;
    }
    if (step.kind == StepKind::BACKWARD || step.kind == StepKind::BACKWARD_INPUT) {
      if (j < last_virtual) {
        pull(b, (j + 1) % pp, slot, false, pc.activation, fmt::format("recv grad mb{}", step.microbatch));
      }
    }
    const PricedBlock& work = step.kind == StepKind::BACKWARD         ? pc.backward
                              : step.kind == StepKind::BACKWARD_INPUT ? pc.backward_input
                                                                      : pc.backward_weight;
    const bool releases = releases_at[static_cast<size_t>(i)] != 0 && (has_dp || has_expert_dp);
    if (releases && p_.dp_overlap) {
      // Each full bucket is handed to the data-parallel stream while the rest of the pass runs.
      const int parts = std::max(
          1, std::max(buckets_of(pc.gradients, pc.layers), buckets_of(pc.expert_gradients, pc.layers)));
      PricedBlock slice{.compute = work.compute / parts, .comm = {}};
      for (int k = 0; k < parts; ++k) {
        slice.comm = part_collectives(work.comm, k, parts);
        run_block(b, slice, fmt::format("{} part {}", label, k));
        release(pc, k, parts);
      }
    } else {
      run_block(b, work, label);
      // Without overlap the reduction waits for the pipeline flush (Megatron-LM 2021).
      if (releases) deferred.push_back(&pc);
    }
    if (step.kind != StepKind::BACKWARD_WEIGHT && j > 0) {
      // The gradient sent back has the size of the activation the previous chunk sent forward.
      const int to = (j - 1) % pp;
      notify(to, (j - 1) / pp, step.microbatch, false,
             priced_[static_cast<size_t>(to)][static_cast<size_t>((j - 1) / pp)].activation);
    }
  }

  for (const PricedChunk* pc : deferred) release(*pc, 0, 1);
  double t0 = sg4::Engine::get_clock();
  for (int seq : pending) wait_dp(b, seq);
  record(b, Category::DP_WAIT, t0, "dp", "wait for gradient reduction");
  t0 = sg4::Engine::get_clock();
  const Seconds opt = optimizer_time_[static_cast<size_t>(b.stage)];
  if (opt.value() > 0) {
    sg4::this_actor::execute(opt.value() * sim::GPU_HOST_SPEED);
    ++result_.activities;
  }
  record(b, Category::OPTIMIZER, t0, "optimizer", "optimizer step");
  if (p_.offload.any()) run_host_optimizer(b);
  if ((p_.zero == 1 || p_.zero == 2) && (has_dp || has_expert_dp)) {
    // The distributed optimizer updates its shard; every rank then gathers the updated weights
    // (ZeRO-3 gathers them chunk by chunk before the next forward instead).
    t0 = sg4::Engine::get_clock();
    const double params = w_.parameter_bytes(b.stage).value();
    const double expert_grads = w_.expert_gradient_bytes(b.stage).value();
    const double grads = w_.gradient_bytes(b.stage).value() + expert_grads;
    const double expert_share = grads > 0 ? expert_grads / grads : 0.0;
    std::vector<int> gathers;
    if (has_dp && params * (1 - expert_share) > 0)
      gathers.push_back(issue_dp(b, {.kind = CollectiveKind::ALL_GATHER,
                                     .group = DpGroup::DENSE,
                                     .bytes = Bytes(params * (1 - expert_share)),
                                     .label = "parameter all-gather"}));
    if (has_expert_dp && params * expert_share > 0)
      gathers.push_back(issue_dp(b, {.kind = CollectiveKind::ALL_GATHER,
                                     .group = DpGroup::EXPERT,
                                     .bytes = Bytes(params * expert_share),
                                     .label = "expert parameter all-gather"}));
    for (int seq : gathers) wait_dp(b, seq);
    record(b, Category::DP_WAIT, t0, "dp", "parameter all-gather");
  }
  issue_dp(b, {.end = true});
  b.finish = sg4::Engine::get_clock();
}

/// The flows of one data-parallel request of `stage`: one ring per (tp, cp[, ep]) position, dense
/// gradients reduced over dp x cp ranks, expert gradients over the expert-data-parallel ranks
/// (same tp and ep position, every cp position). Adds the algorithm's latency to `latency`.
std::vector<sim::Flow> Simulation::dp_edges(int stage, const DpRequest& request, Seconds* latency) const {
  std::vector<sim::Flow> edges;
  CollectivePlan plan;
  const bool dense = request.group == DpGroup::DENSE;
  for (int t = 0; t < p_.tp; ++t) {
    for (int j = 0; j < (dense ? 1 : p_.ep); ++j) {
      std::vector<long> members;
      for (int e = 0; e < blocks_per_stage_; ++e)
        for (int k = dense ? 0 : j; k < (dense ? p_.ep : j + 1); ++k)
          for (int c = 0; c < p_.cp; ++c) members.push_back(block_base(stage, e) + local_index(t, c, k));
      std::sort(members.begin(), members.end());
      auto ring = collective_edges(members, request.kind, request.bytes, &plan);
      // A request issued `count` times back to back: each pays the plan NCCL picks for its size.
      for (sim::Flow& e : ring) e.bytes *= request.count;
      edges.insert(edges.end(), ring.begin(), ring.end());
    }
  }
  if (options_.fidelity == Fidelity::FAST) {
    // Every block sends alike on a ring; on NCCL's trees the root and the leaves send less than
    // the interior servers, which finish last. Fast fidelity keeps the edges leaving the block
    // that sends the most bytes (replica 0's where all send alike, or where blocks share servers)
    // as the representatives, moved onto replica 0's block, the one it simulates (the two blocks
    // swap places).
    std::unordered_map<long, std::pair<int, long>> where; // GPU -> (replica, index in its block)
    for (int e = 0; e < blocks_per_stage_; ++e)
      for (long i = 0; i < block_size_; ++i) where[gpu_of(block_base(stage, e) + i)] = {e, i};
    std::vector<double> sent(static_cast<size_t>(blocks_per_stage_), 0.0);
    for (const sim::Flow& e : edges) sent[static_cast<size_t>(where.at(e.src).first)] += e.bytes.value();
    // Blocks that share servers cannot swap places without moving flows on or off NVLink.
    int busiest = 0;
    for (int e = 1; block_size_ % machine_.server.gpus == 0 && e < blocks_per_stage_; ++e)
      if (sent[static_cast<size_t>(e)] > sent[static_cast<size_t>(busiest)] * (1 + 1e-9)) busiest = e;
    std::erase_if(edges, [&](const sim::Flow& e) { return where.at(e.src).first != busiest; });
    if (busiest != 0) {
      auto swapped = [&](long gpu) {
        const auto it = where.find(gpu);
        if (it == where.end() || (it->second.first != 0 && it->second.first != busiest)) return gpu;
        return gpu_of(block_base(stage, it->second.first == 0 ? busiest : 0) + it->second.second);
      };
      for (sim::Flow& e : edges) {
        e.src = swapped(e.src);
        e.dst = swapped(e.dst);
        if (e.sim_dst >= 0) e.sim_dst = swapped(e.sim_dst);
      }
    }
  }
  *latency += plan.latency * request.count;
  return edges;
}

void Simulation::dp_driver(int stage) {
  DpState& dp = *dp_[static_cast<size_t>(stage)];
  for (int seq = 0;; ++seq) {
    {
      std::unique_lock lock(*dp.mutex);
      while (static_cast<int>(dp.posted.size()) <= seq || dp.posted[static_cast<size_t>(seq)] < replicas_)
        dp.cv->wait(lock);
    }
    const DpRequest request = dp.requests[static_cast<size_t>(seq)];
    if (request.end) return;
    // Gradient buckets that every replica has already issued behind this one run back to back on
    // the same rings, as one NCCL stream runs them: their bytes go into one set of flows (they add
    // up on the same edges) and their latencies add up. When the reduction falls behind the
    // backward (ZeRO-2/3 reduce every micro-batch) this keeps the flows O(edges) per backlog
    // rather than per bucket. Nothing waits on a bucket before the end of the iteration.
    int last = seq;
    if (request.deferred_wait) {
      std::unique_lock lock(*dp.mutex);
      while (static_cast<int>(dp.posted.size()) > last + 1 &&
             dp.posted[static_cast<size_t>(last + 1)] == replicas_) {
        const DpRequest& next = dp.requests[static_cast<size_t>(last + 1)];
        if (!next.deferred_wait || next.kind != request.kind || next.group != request.group) break;
        ++last;
      }
    }
    const double t0 = sg4::Engine::get_clock();
    dp.busy_since = t0;
    Seconds latency;
    std::vector<sim::Flow> edges = dp_edges(stage, request, &latency);
    std::string label = request.label;
    if (last > seq) {
      MergedFlows merged;
      for (const sim::Flow& e : edges) merged.add(e);
      for (int r = seq + 1; r <= last; ++r)
        for (const sim::Flow& e : dp_edges(stage, dp.requests[static_cast<size_t>(r)], &latency))
          merged.add(e);
      edges = merged.flows();
      label += fmt::format(" (+{} queued)", last - seq);
    }
    sleep(run_flows(edges) + latency);
    if (options_.record_trace)
      result_.trace.push_back({.stage = stage,
                               .replica = 0,
                               .stream = "dp",
                               .name = label,
                               .start = t0,
                               .end = sg4::Engine::get_clock()});
    dp.busy.emplace_back(t0, sg4::Engine::get_clock());
    dp.busy_since = -1.0;
    std::unique_lock lock(*dp.mutex);
    for (int r = seq; r <= last; ++r) dp.done[static_cast<size_t>(r)] = 1;
    dp.cv->notify_all();
    seq = last;
  }
}

SimulationResult Simulation::run() {
  const auto wall0 = std::chrono::steady_clock::now();
  const auto engine = sim::make_engine(options_.simgrid_args);

  price();
  platform_ = std::make_unique<sim::Platform>(machine_);
  for (const sim::FabricLink& fl : platform_->links())
    link_index_.emplace(fl.link, static_cast<uint32_t>(link_index_.size()));
  link_bytes_.assign(link_index_.size(), 0.0);
  link_used_.assign(link_index_.size(), 0);
  if (options_.sharing_shortcuts) {
    std::vector<long> job_gpus;
    job_gpus.reserve(static_cast<size_t>(p_.gpus()));
    for (long r = 0; r < static_cast<long>(p_.gpus()); ++r) job_gpus.push_back(gpu_of(r));
    const long left_out = platform_->leave_out_unsaturable(job_gpus);
    XBT_DEBUG("%ld links cannot saturate and stay out of the sharing problem", left_out);
  }
  // Positions move by one NIC's worth of GPUs (gpus_per_nic) and must stay inside the block.
  const int gpus_per_nic = machine_.server.gpus / std::max(1, machine_.server.nics);
  fold_tensor_positions_ = options_.sharing_shortcuts && p_.tp > gpus_per_nic &&
                           options_.placement == Placement::TP_IN_SERVER &&
                           machine_.server.gpus % p_.tp == 0 && p_.tp % gpus_per_nic == 0 &&
                           platform_->fold_positions(p_.tp / gpus_per_nic);
  fold_ports_ = fold_tensor_positions_ && machine_.server.intra == IntraServer::NVSWITCH;
  gpus_per_nic_ = gpus_per_nic;
  XBT_DEBUG("tensor positions folded: %s; TP in closed form: %s", fold_tensor_positions_ ? "yes" : "no",
            tp_links_private() ? "yes" : "no");
  const int m = w_.microbatches();
  const int v = w_.chunks_per_stage();
  replicas_ = options_.fidelity == Fidelity::FAST ? 1 : blocks_per_stage_;
  blocks_.resize(static_cast<size_t>(p_.pp));
  for (int s = 0; s < p_.pp; ++s) {
    for (int e = 0; e < blocks_per_stage_; ++e) {
      auto b = std::make_unique<BlockState>();
      b->stage = s;
      b->replica = e;
      b->base = block_base(s, e);
      b->activation_ready.assign(static_cast<size_t>(v * m), 0);
      b->gradient_ready.assign(static_cast<size_t>(v * m), 0);
      b->incoming_activation.resize(static_cast<size_t>(v * m));
      b->incoming_gradient.resize(static_cast<size_t>(v * m));
      b->mutex = sg4::Mutex::create();
      b->cv = sg4::ConditionVariable::create();
      blocks_[static_cast<size_t>(s)].push_back(std::move(b));
    }
    auto dp = std::make_unique<DpState>();
    dp->mutex = sg4::Mutex::create();
    dp->cv = sg4::ConditionVariable::create();
    dp_.push_back(std::move(dp));
  }
  for (int s = 0; s < p_.pp; ++s) {
    for (int e = 0; e < replicas_; ++e) {
      BlockState* b = blocks_[static_cast<size_t>(s)][static_cast<size_t>(e)].get();
      sg4::Actor::create(fmt::format("stage{}-block{}", s, e), platform_->gpu(b->base),
                         [this, b] { stage_actor(*b); });
      ++result_.actors;
    }
    sg4::Actor::create(fmt::format("stage{}-dp", s), platform_->gpu(block_base(s, 0)),
                       [this, s] { dp_driver(s); });
    ++result_.actors;
  }
  if (options_.record_trace)
    sg4::Actor::create("link-sampler", platform_->gpu(0), [this] { sample_links(); })->daemonize();
  engine->run();

  // The iteration ends when the last GPU finishes its optimizer step; its breakdown is reported.
  const BlockState* critical = nullptr;
  for (const auto& stage : blocks_)
    for (const auto& b : stage)
      if (critical == nullptr || b->finish > critical->finish) critical = b.get();
  result_.iteration_time = Seconds(critical->finish);
  result_.critical_stage = critical->stage;
  result_.critical_replica = critical->replica;
  auto t = [&](Category c) { return Seconds(critical->time[static_cast<int>(c)]); };
  result_.breakdown.compute = t(Category::COMPUTE);
  result_.breakdown.tp_comm_exposed = t(Category::TP);
  result_.breakdown.cp_comm_exposed = t(Category::CP);
  result_.breakdown.ep_comm_exposed = t(Category::EP);
  result_.breakdown.pp_bubble = t(Category::PP_WAIT);
  result_.breakdown.pp_comm_exposed = t(Category::PP_TRANSFER);
  result_.breakdown.dp_comm_exposed = t(Category::DP_WAIT);
  result_.breakdown.optimizer = t(Category::OPTIMIZER);
  result_.breakdown.host_optimizer = t(Category::HOST_OPTIMIZER);
  result_.simulated_gpus = static_cast<long>(block_size_) * p_.pp * replicas_;
  result_.platform_gpus = platform_->gpu_count();
  result_.platform_cpu_hosts = platform_->cpu_host_count();

  const double iteration = result_.iteration_time.value();
  for (size_t i = 0; i < platform_->links().size(); ++i) {
    if (link_used_[i] == 0) continue;
    const sim::FabricLink& fl = platform_->links()[i];
    const double bytes = link_bytes_[i];
    result_.busiest_links.push_back(
        {.name = fl.link->get_name(),
         .role = sim::to_string(fl.role),
         .bytes = bytes,
         .utilisation =
             iteration > 0 ? bytes * fl.simulated_share / (fl.link->get_bandwidth() * iteration) : 0.0});
  }
  for (const LinkLoad& l : result_.busiest_links)
    if (l.role == sim::to_string(sim::LinkRole::NIC))
      result_.busiest_nic_utilisation = std::max(result_.busiest_nic_utilisation, l.utilisation);
  std::sort(result_.busiest_links.begin(), result_.busiest_links.end(),
            [](const LinkLoad& a, const LinkLoad& b) {
              return a.utilisation != b.utilisation ? a.utilisation > b.utilisation : a.name < b.name;
            });
  if (result_.busiest_links.size() > 5) result_.busiest_links.resize(5);
  std::stable_sort(result_.trace.begin(), result_.trace.end(), [](const TraceEvent& a, const TraceEvent& b) {
    return a.start != b.start   ? a.start < b.start
           : a.stage != b.stage ? a.stage < b.stage
                                : a.stream < b.stream;
  });
  result_.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  return result_;
}

} // namespace

SimulationResult simulate(const MachineSpec& machine, const Workload& workload, const CostModel& cost,
                          const SimulationOptions& options) {
  const std::string text = sim::run_isolated([&] {
    Simulation simulation(machine, workload, cost, options);
    SimulationResult result = simulation.run();
    result.peak_memory_bytes = sim::peak_memory_bytes();
    return nlohmann::json(result).dump();
  });
  return nlohmann::json::parse(text).get<SimulationResult>();
}

} // namespace odyssey
