#include "sim/engine.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <stdexcept>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <simgrid/s4u.hpp>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

#include "sim/platform.hpp"

XBT_LOG_NEW_CATEGORY(odyssey, "Odyssey");
XBT_LOG_NEW_DEFAULT_SUBCATEGORY(odyssey_engine, odyssey, "Odyssey training-iteration engine");

namespace odyssey {

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(TraceEvent, stage, replica, stream, name, start, end)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(LinkLoad, name, role, bytes, utilisation)

void to_json(nlohmann::json& j, const Seconds& s) { j = s.value(); }
void from_json(const nlohmann::json& j, Seconds& s) { s = Seconds(j.get<double>()); }
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Breakdown, compute, tp_comm_exposed, cp_comm_exposed, ep_comm_exposed, pp_bubble,
                                   pp_comm_exposed, dp_comm_exposed, optimizer)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(SimulationResult, iteration_time, breakdown, critical_stage, critical_replica,
                                   simulated_gpus, platform_gpus, platform_cpu_hosts, actors, activities, flows,
                                   wall_seconds, peak_memory_bytes, trace, busiest_links)

namespace {

namespace sg4 = simgrid::s4u;

/// Time categories of one actor; they partition its time from 0 to its finish.
enum class Category { COMPUTE, TP, PP_WAIT, PP_TRANSFER, DP_WAIT, OPTIMIZER };

/// Priced work of one chunk of one stage for one micro-batch.
struct PricedBlock {
  Seconds compute;
  Seconds tp_analytic;          ///< TP collectives priced in closed form (links private to the group)
  double tp_edge_bytes = 0.0;   ///< TP ring bytes per edge when simulated as flows
  Seconds tp_latency;           ///< fixed latency of those flows' collectives
};

struct PricedChunk {
  PricedBlock forward;
  PricedBlock backward;
  Bytes activation;             ///< per GPU, per micro-batch, to the next virtual stage
  Bytes gradients;              ///< gradient bytes of this chunk on one GPU
};

/// One edge of an NCCL-style ring: src GPU -> dst GPU carrying `bytes`.
struct RingEdge {
  long src = 0;
  long dst = 0;
  double bytes = 0.0;
};

/// Per-(stage, replica) actor state, touched only from SimGrid actors (one thread).
struct GroupState {
  int stage = 0;
  int replica = 0;
  std::vector<long> gpus;                 ///< global GPU indices of the TP group
  std::vector<char> activation_ready;     ///< [chunk * m + mb]: sender finished its forward
  std::vector<char> gradient_ready;       ///< [chunk * m + mb]: sender finished its backward
  sg4::MutexPtr mutex;
  sg4::ConditionVariablePtr cv;
  double time[6] = {0, 0, 0, 0, 0, 0};
  double finish = 0.0;
};

/// Per-stage data-parallel gradient reduction, run by one driver actor per stage (NCCL runs a
/// communicator's collectives one after another on its stream).
struct DpState {
  std::vector<int> posted;                ///< [bucket]: replicas whose gradients for it are ready
  int done = 0;                           ///< buckets fully reduced
  std::vector<double> bucket_bytes;
  sg4::MutexPtr mutex;
  sg4::ConditionVariablePtr cv;
};

class Simulation {
public:
  Simulation(const MachineSpec& machine, const Workload& w, const CostModel& cost, const SimulationOptions& options)
      : machine_(machine), w_(w), cost_(cost), options_(options) {}

  SimulationResult run();

private:
  [[nodiscard]] long gpu_index(int stage, int replica, int tp_rank) const {
    const auto& p = w_.parallelism();
    // Megatron-LM rank order: tensor-parallel fastest, then data-parallel, then pipeline.
    return tp_rank + static_cast<long>(p.tp) * (replica + static_cast<long>(p.dp) * stage);
  }
  [[nodiscard]] long server_of(long gpu) const { return gpu / machine_.server.gpus; }
  [[nodiscard]] bool tp_links_private() const {
    // TP filling whole servers is the only traffic on their NVLink ports (PP and DP leave
    // through the NICs), so its collectives can be priced in closed form without losing
    // any contention. Otherwise they run as flows.
    return w_.parallelism().tp == machine_.server.gpus;
  }

  void price();
  PricedBlock price_block(const WorkBlock& block) const;
  std::vector<RingEdge> ring_edges(const std::vector<long>& members, CollectiveKind kind, double size,
                                   CollectivePlan* plan) const;
  void run_flows(const std::vector<RingEdge>& edges);
  void record(GroupState& g, Category c, double start, const char* stream, const std::string& name);

  void stage_actor(GroupState& g);
  void dp_driver(int stage);
  void pull(GroupState& g, int from_stage, Bytes bytes, const std::string& what);
  void run_block(GroupState& g, const PricedBlock& b, const std::string& name);
  void post_bucket(int stage, int bucket);

  const MachineSpec& machine_;
  const Workload& w_;
  const CostModel& cost_;
  const SimulationOptions& options_;
  std::unique_ptr<sim::Platform> platform_;
  std::vector<std::vector<PricedChunk>> priced_;       // [stage][chunk]
  std::vector<std::vector<int>> chunk_buckets_;        // [stage][chunk] -> number of buckets
  std::vector<std::vector<std::unique_ptr<GroupState>>> groups_;  // [stage][replica]
  std::vector<std::unique_ptr<DpState>> dp_;          // [stage]
  std::vector<Seconds> optimizer_time_;               // [stage]
  SimulationResult result_;
  /// Data-parallel replicas with actors of their own: all of them at full fidelity; at fast
  /// fidelity replica 0 stands for all (they run the same program), while the gradient rings
  /// still put every replica's flows on the fabric.
  int replicas_ = 1;
  std::unordered_map<const sg4::Link*, double> link_bytes_;
};

void Simulation::price() {
  const int pp = w_.stages();
  const int v = w_.chunks_per_stage();
  priced_.assign(static_cast<size_t>(pp), {});
  chunk_buckets_.assign(static_cast<size_t>(pp), {});
  optimizer_time_.assign(static_cast<size_t>(pp), Seconds(0));
  const double bucket = w_.parallelism().dp_bucket.value();
  for (int s = 0; s < pp; ++s) {
    for (int c = 0; c < v; ++c) {
      const ChunkWork& work = w_.chunk(s, c);
      PricedChunk pc{.forward = price_block(work.forward),
                     .backward = price_block(work.backward),
                     .activation = work.activation_out,
                     .gradients = work.parameters};
      priced_[s].push_back(pc);
      const int buckets = w_.parallelism().dp > 1
                              ? std::max(1, static_cast<int>((work.parameters.value() + bucket - 1) / bucket))
                              : 0;
      chunk_buckets_[s].push_back(buckets);
    }
    optimizer_time_[s] = cost_.compute_time(w_.optimizer(s));
  }
}

PricedBlock Simulation::price_block(const WorkBlock& block) const {
  PricedBlock b;
  b.compute = cost_.compute_time(block.compute);
  const int tp = w_.parallelism().tp;
  const int tp_servers = std::max(1, tp / machine_.server.gpus);
  for (const CollectiveOp& op : block.comm) {
    if (op.group != GroupKind::TP || tp == 1) continue;
    const GroupShape shape{.ranks = tp, .servers = tp_servers};
    if (tp_links_private()) {
      b.tp_analytic += cost_.collective_time(op.kind, op.bytes, shape, machine_.server.nvlink_bandwidth,
                                             machine_.server.nic_bandwidth);
    } else {
      const CollectivePlan plan = cost_.collective(op.kind, op.bytes, shape);
      b.tp_edge_bytes += plan.edge_bytes_factor * op.bytes.value() / plan.efficiency_nvlink;
      b.tp_latency += plan.latency;
    }
  }
  return b;
}

/// NCCL-style rings over `members` (global GPU indices in rank order). Members in one server are
/// chained over NVLink; servers are joined through NICs. NCCL runs one ring per channel and gives
/// each channel a different exit GPU (hence NIC) per server, so with k members per server and
/// enough NICs, min(k, nics) rings carry 1/channels of the data each: the rings are rotations.
std::vector<RingEdge> Simulation::ring_edges(const std::vector<long>& members, CollectiveKind kind, double size,
                                             CollectivePlan* plan_out) const {
  std::vector<RingEdge> edges;
  const int n = static_cast<int>(members.size());
  if (n < 2) return edges;
  // Members grouped by server, in order.
  std::vector<std::vector<long>> by_server;
  for (long g : members) {
    if (by_server.empty() || server_of(by_server.back().front()) != server_of(g)) by_server.emplace_back();
    by_server.back().push_back(g);
  }
  const int servers = static_cast<int>(by_server.size());
  const CollectivePlan plan = cost_.collective(kind, Bytes(size), GroupShape{.ranks = n, .servers = servers});
  if (plan_out != nullptr) *plan_out = plan;
  const int per_server = static_cast<int>(by_server.front().size());
  const int channels = servers > 1 ? std::max(1, std::min(per_server, machine_.server.nics)) : 1;
  const double per_edge = plan.edge_bytes_factor * size / channels;
  for (int c = 0; c < channels; ++c) {
    std::vector<long> order;
    order.reserve(members.size());
    for (const auto& group : by_server) {
      const int k = static_cast<int>(group.size());
      for (int i = 0; i < k; ++i) order.push_back(group[static_cast<size_t>((i + c) % k)]);
    }
    for (int i = 0; i < n; ++i) {
      const long a = order[static_cast<size_t>(i)];
      const long b = order[static_cast<size_t>((i + 1) % n)];
      const double eff = server_of(a) == server_of(b) ? plan.efficiency_nvlink : plan.efficiency_net;
      edges.push_back({a, b, per_edge / eff});
    }
  }
  return edges;
}

void Simulation::run_flows(const std::vector<RingEdge>& edges) {
  if (edges.empty()) return;
  std::vector<sg4::CommPtr> comms;
  comms.reserve(edges.size());
  std::vector<sg4::Link*> route;
  for (const RingEdge& e : edges) {
    auto* src = platform_->gpu(e.src);
    auto* dst = platform_->gpu(e.dst);
    comms.push_back(sg4::Comm::sendto_async(src, dst, static_cast<uint64_t>(std::max(1.0, e.bytes))));
    route.clear();
    double latency = 0;
    src->route_to(dst, route, &latency);
    for (const auto* link : route) link_bytes_[link] += e.bytes;
  }
  result_.activities += static_cast<long>(comms.size());
  result_.flows += static_cast<long>(comms.size());
  sg4::Comm::wait_all(comms);
}

void Simulation::record(GroupState& g, Category c, double start, const char* stream, const std::string& name) {
  const double now = sg4::Engine::get_clock();
  g.time[static_cast<int>(c)] += now - start;
  if (options_.record_trace && g.replica == 0 && now > start)
    result_.trace.push_back({.stage = g.stage, .replica = g.replica, .stream = stream, .name = name, .start = start, .end = now});
}

void Simulation::run_block(GroupState& g, const PricedBlock& b, const std::string& name) {
  double t0 = sg4::Engine::get_clock();
  if (b.compute.value() > 0) {
    sg4::this_actor::execute(b.compute.value() * sim::GPU_HOST_SPEED);
    ++result_.activities;
  }
  record(g, Category::COMPUTE, t0, "compute", name);
  t0 = sg4::Engine::get_clock();
  if (b.tp_analytic.value() > 0) {
    sg4::this_actor::sleep_for(b.tp_analytic.value());
    ++result_.activities;
  }
  if (b.tp_edge_bytes > 0) {
    std::vector<RingEdge> edges;
    const int tp = static_cast<int>(g.gpus.size());
    for (int r = 0; r < tp; ++r)
      edges.push_back({g.gpus[static_cast<size_t>(r)], g.gpus[static_cast<size_t>((r + 1) % tp)], b.tp_edge_bytes});
    run_flows(edges);
    sg4::this_actor::sleep_for(b.tp_latency.value());
    ++result_.activities;
  }
  record(g, Category::TP, t0, "tp", name + " tp");
}

/// Receives a pipeline message: wait until the sender has produced it (bubble), then move it
/// (the transfer starts when both sides are ready, as NCCL's send/recv rendezvous does).
void Simulation::pull(GroupState& g, int from_stage, Bytes bytes, const std::string& what) {
  const auto& p = w_.parallelism();
  std::vector<RingEdge> edges;
  // One flow per pair of NICs: TP ranks that share both NICs are merged into one flow.
  std::map<std::pair<long, long>, size_t> by_nic_pair;
  for (int r = 0; r < p.tp; ++r) {
    const long src = gpu_index(from_stage, g.replica, r);
    const long dst = g.gpus[static_cast<size_t>(r)];
    const bool same_server = server_of(src) == server_of(dst);
    const CollectivePlan plan = cost_.collective(CollectiveKind::SEND_RECV, bytes,
                                                 GroupShape{.ranks = 2, .servers = same_server ? 1 : 2});
    const double eff = same_server ? plan.efficiency_nvlink : plan.efficiency_net;
    const double b = bytes.value() / eff;
    if (same_server) {
      edges.push_back({src, dst, b});
      continue;
    }
    const long nic_src = server_of(src) * machine_.server.nics + (src % machine_.server.gpus) * machine_.server.nics / machine_.server.gpus;
    const long nic_dst = server_of(dst) * machine_.server.nics + (dst % machine_.server.gpus) * machine_.server.nics / machine_.server.gpus;
    auto [it, fresh] = by_nic_pair.try_emplace({nic_src, nic_dst}, edges.size());
    if (fresh)
      edges.push_back({src, dst, b});
    else
      edges[it->second].bytes += b;
  }
  const double t0 = sg4::Engine::get_clock();
  run_flows(edges);
  const CollectivePlan plan = cost_.collective(CollectiveKind::SEND_RECV, bytes, GroupShape{.ranks = 2, .servers = 2});
  if (plan.latency.value() > 0) {
    sg4::this_actor::sleep_for(plan.latency.value());
    ++result_.activities;
  }
  record(g, Category::PP_TRANSFER, t0, "pp", what);
}

void Simulation::post_bucket(int stage, int bucket) {
  DpState& dp = *dp_[static_cast<size_t>(stage)];
  std::unique_lock lock(*dp.mutex);
  if (++dp.posted[static_cast<size_t>(bucket)] == replicas_) dp.cv->notify_all();
}

void Simulation::stage_actor(GroupState& g) {
  const auto& p = w_.parallelism();
  const int m = w_.microbatches();
  const int pp = p.pp;
  const int v = w_.chunks_per_stage();
  const int last_virtual = pp * v - 1;
  const auto& steps = w_.schedule(g.stage);
  // The final backward of each chunk releases that chunk's gradients (Megatron-LM reduces after
  // the last micro-batch of gradient accumulation).
  std::vector<int> last_backward(static_cast<size_t>(v), -1);
  for (int i = 0; i < static_cast<int>(steps.size()); ++i)
    if (steps[static_cast<size_t>(i)].kind == StepKind::BACKWARD) last_backward[static_cast<size_t>(steps[static_cast<size_t>(i)].chunk)] = i;
  std::vector<int> first_bucket(static_cast<size_t>(v), 0);
  {
    // Buckets are numbered in the order the schedule releases them.
    std::vector<std::pair<int, int>> order;
    for (int c = 0; c < v; ++c) order.emplace_back(last_backward[static_cast<size_t>(c)], c);
    std::sort(order.begin(), order.end());
    int next = 0;
    for (auto [idx, c] : order) {
      first_bucket[static_cast<size_t>(c)] = next;
      next += chunk_buckets_[static_cast<size_t>(g.stage)][static_cast<size_t>(c)];
    }
  }
  auto wait_flag = [&](std::vector<char>& flags, size_t idx) {
    const double t0 = sg4::Engine::get_clock();
    std::unique_lock lock(*g.mutex);
    while (flags[idx] == 0) g.cv->wait(lock);
    lock.unlock();
    record(g, Category::PP_WAIT, t0, "pp", "wait");
  };
  auto notify = [&](int stage, int chunk, int mb, bool activation) {
    GroupState& peer = *groups_[static_cast<size_t>(stage)][static_cast<size_t>(g.replica)];
    std::unique_lock lock(*peer.mutex);
    (activation ? peer.activation_ready : peer.gradient_ready)[static_cast<size_t>(chunk * m + mb)] = 1;
    peer.cv->notify_all();
  };

  for (int i = 0; i < static_cast<int>(steps.size()); ++i) {
    const PipelineStep& step = steps[static_cast<size_t>(i)];
    const int j = step.chunk * pp + g.stage;  // virtual stage
    const PricedChunk& pc = priced_[static_cast<size_t>(g.stage)][static_cast<size_t>(step.chunk)];
    const size_t slot = static_cast<size_t>(step.chunk * m + step.microbatch);
    if (step.kind == StepKind::FORWARD) {
      if (j > 0) {
        wait_flag(g.activation_ready, slot);
        const int from = (j - 1) % pp;
        pull(g, from, priced_[static_cast<size_t>(from)][static_cast<size_t>((j - 1) / pp)].activation,
             fmt::format("recv act mb{}", step.microbatch));
      }
      run_block(g, pc.forward, fmt::format("F{}.{}", step.microbatch, step.chunk));
      if (j < last_virtual) notify((j + 1) % pp, (j + 1) / pp, step.microbatch, true);
    } else {
      if (j < last_virtual) {
        wait_flag(g.gradient_ready, slot);
        pull(g, (j + 1) % pp, pc.activation, fmt::format("recv grad mb{}", step.microbatch));
      }
      const int buckets = chunk_buckets_[static_cast<size_t>(g.stage)][static_cast<size_t>(step.chunk)];
      if (i == last_backward[static_cast<size_t>(step.chunk)] && p.dp_overlap && buckets > 0) {
        // Gradients become ready layer by layer during the last backward; each full bucket is
        // handed to the data-parallel stream while the rest of the backward pass runs.
        PricedBlock slice = pc.backward;
        slice.compute = pc.backward.compute / buckets;
        slice.tp_analytic = pc.backward.tp_analytic / buckets;
        slice.tp_edge_bytes = pc.backward.tp_edge_bytes / buckets;
        slice.tp_latency = pc.backward.tp_latency / buckets;
        for (int k = 0; k < buckets; ++k) {
          run_block(g, slice, fmt::format("B{}.{} part {}", step.microbatch, step.chunk, k));
          post_bucket(g.stage, first_bucket[static_cast<size_t>(step.chunk)] + k);
        }
      } else {
        run_block(g, pc.backward, fmt::format("B{}.{}", step.microbatch, step.chunk));
      }
      if (j > 0) notify((j - 1) % pp, (j - 1) / pp, step.microbatch, false);
    }
  }
  if (p.dp > 1) {
    DpState& dp = *dp_[static_cast<size_t>(g.stage)];
    if (!p.dp_overlap)
      for (int k = 0; k < static_cast<int>(dp.posted.size()); ++k) post_bucket(g.stage, k);
    const double t0 = sg4::Engine::get_clock();
    std::unique_lock lock(*dp.mutex);
    while (dp.done < static_cast<int>(dp.posted.size())) dp.cv->wait(lock);
    lock.unlock();
    record(g, Category::DP_WAIT, t0, "dp", "wait for gradient reduction");
  }
  const double t0 = sg4::Engine::get_clock();
  const Seconds opt = optimizer_time_[static_cast<size_t>(g.stage)];
  if (opt.value() > 0) {
    sg4::this_actor::execute(opt.value() * sim::GPU_HOST_SPEED);
    ++result_.activities;
  }
  record(g, Category::OPTIMIZER, t0, "optimizer", "optimizer step");
  g.finish = sg4::Engine::get_clock();
}

void Simulation::dp_driver(int stage) {
  const auto& p = w_.parallelism();
  DpState& dp = *dp_[static_cast<size_t>(stage)];
  const int buckets = static_cast<int>(dp.posted.size());
  for (int k = 0; k < buckets; ++k) {
    {
      std::unique_lock lock(*dp.mutex);
      while (dp.posted[static_cast<size_t>(k)] < replicas_) dp.cv->wait(lock);
    }
    const double t0 = sg4::Engine::get_clock();
    std::vector<RingEdge> edges;
    CollectivePlan plan;
    for (int r = 0; r < p.tp; ++r) {
      std::vector<long> members;
      for (int d = 0; d < p.dp; ++d) members.push_back(gpu_index(stage, d, r));
      auto ring = ring_edges(members, CollectiveKind::ALL_REDUCE, dp.bucket_bytes[static_cast<size_t>(k)], &plan);
      edges.insert(edges.end(), ring.begin(), ring.end());
    }
    run_flows(edges);
    sg4::this_actor::sleep_for(plan.latency.value());
    ++result_.activities;
    if (options_.record_trace)
      result_.trace.push_back({.stage = stage, .replica = 0, .stream = "dp", .name = fmt::format("all-reduce bucket {}", k),
                               .start = t0, .end = sg4::Engine::get_clock()});
    std::unique_lock lock(*dp.mutex);
    ++dp.done;
    dp.cv->notify_all();
  }
}

SimulationResult Simulation::run() {
  const auto wall0 = std::chrono::steady_clock::now();
  // SimGrid's configuration chatter is not a diagnostic of ours; a later --log can restore it.
  std::vector<std::string> args{"odyssey", "--log=xbt_cfg.thres:warning"};
  args.insert(args.end(), options_.simgrid_args.begin(), options_.simgrid_args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  int argc = static_cast<int>(argv.size());
  sg4::Engine engine(&argc, argv.data());
  // LV08 (the default) is tuned for TCP and distorts GPU traffic; CM02 without cross-traffic gives
  // the ideal max-min shares (../shared/reference/simgrid-3.32-notes.md, "Network model").
  engine.set_config("network/model:CM02");
  engine.set_config("network/crosstraffic:0");
  engine.set_config("contexts/guard-size:0");

  price();
  platform_ = std::make_unique<sim::Platform>(machine_);
  const auto& p = w_.parallelism();
  replicas_ = options_.fidelity == Fidelity::FAST ? 1 : p.dp;
  const int m = w_.microbatches();
  const int v = w_.chunks_per_stage();
  groups_.resize(static_cast<size_t>(p.pp));
  for (int s = 0; s < p.pp; ++s) {
    for (int d = 0; d < p.dp; ++d) {
      auto g = std::make_unique<GroupState>();
      g->stage = s;
      g->replica = d;
      for (int r = 0; r < p.tp; ++r) g->gpus.push_back(gpu_index(s, d, r));
      g->activation_ready.assign(static_cast<size_t>(v * m), 0);
      g->gradient_ready.assign(static_cast<size_t>(v * m), 0);
      g->mutex = sg4::Mutex::create();
      g->cv = sg4::ConditionVariable::create();
      groups_[static_cast<size_t>(s)].push_back(std::move(g));
    }
    auto dp = std::make_unique<DpState>();
    dp->mutex = sg4::Mutex::create();
    dp->cv = sg4::ConditionVariable::create();
    if (p.dp > 1) {
      for (int c = 0; c < v; ++c) {
        const int n = chunk_buckets_[static_cast<size_t>(s)][static_cast<size_t>(c)];
        for (int k = 0; k < n; ++k) dp->bucket_bytes.push_back(priced_[static_cast<size_t>(s)][static_cast<size_t>(c)].gradients.value() / n);
      }
      dp->posted.assign(dp->bucket_bytes.size(), 0);
    }
    dp_.push_back(std::move(dp));
  }
  for (int s = 0; s < p.pp; ++s) {
    for (int d = 0; d < replicas_; ++d) {
      GroupState* g = groups_[static_cast<size_t>(s)][static_cast<size_t>(d)].get();
      sg4::Actor::create(fmt::format("stage{}-dp{}", s, d), platform_->gpu(g->gpus.front()), [this, g] { stage_actor(*g); });
      ++result_.actors;
    }
    if (p.dp > 1) {
      sg4::Actor::create(fmt::format("stage{}-dp-reduce", s), platform_->gpu(gpu_index(s, 0, 0)), [this, s] { dp_driver(s); });
      ++result_.actors;
    }
  }
  engine.run();

  // The iteration ends when the last GPU finishes its optimizer step; its breakdown is reported.
  const GroupState* critical = nullptr;
  for (const auto& stage : groups_)
    for (const auto& g : stage)
      if (critical == nullptr || g->finish > critical->finish) critical = g.get();
  result_.iteration_time = Seconds(critical->finish);
  result_.critical_stage = critical->stage;
  result_.critical_replica = critical->replica;
  auto t = [&](Category c) { return Seconds(critical->time[static_cast<int>(c)]); };
  result_.breakdown.compute = t(Category::COMPUTE);
  result_.breakdown.tp_comm_exposed = t(Category::TP);
  result_.breakdown.pp_bubble = t(Category::PP_WAIT);
  result_.breakdown.pp_comm_exposed = t(Category::PP_TRANSFER);
  result_.breakdown.dp_comm_exposed = t(Category::DP_WAIT);
  result_.breakdown.optimizer = t(Category::OPTIMIZER);
  result_.simulated_gpus = static_cast<long>(p.tp) * p.pp * replicas_ * p.cp;
  result_.platform_gpus = platform_->gpu_count();
  result_.platform_cpu_hosts = platform_->cpu_host_count();

  const double iteration = result_.iteration_time.value();
  for (const sim::FabricLink& fl : platform_->links()) {
    auto it = link_bytes_.find(fl.link);
    if (it == link_bytes_.end()) continue;
    static constexpr const char* ROLE[] = {"nvlink", "nic", "leaf-trunk", "pod-trunk"};
    result_.busiest_links.push_back({.name = fl.link->get_name(), .role = ROLE[static_cast<int>(fl.role)], .bytes = it->second,
                                     .utilisation = iteration > 0 ? it->second / (fl.link->get_bandwidth() * iteration) : 0.0});
  }
  std::sort(result_.busiest_links.begin(), result_.busiest_links.end(), [](const LinkLoad& a, const LinkLoad& b) {
    return a.utilisation != b.utilisation ? a.utilisation > b.utilisation : a.name < b.name;
  });
  if (result_.busiest_links.size() > 5) result_.busiest_links.resize(5);
  std::sort(result_.trace.begin(), result_.trace.end(), [](const TraceEvent& a, const TraceEvent& b) {
    return a.start != b.start ? a.start < b.start : a.stage != b.stage ? a.stage < b.stage : a.stream < b.stream;
  });
  result_.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  return result_;
}

} // namespace

SimulationResult simulate(const MachineSpec& machine, const Workload& workload, const CostModel& cost,
                          const SimulationOptions& options) {
  // SimGrid allows one Engine per process, ever, and aborts the process on internal errors. Each
  // simulation therefore runs in a child process that sends its result back through a pipe: many
  // simulations per process (tests, planner), and a SimGrid failure becomes an exception.
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("cannot create a pipe for the simulation process");
  std::fflush(nullptr);
  const pid_t child = fork();
  if (child < 0) throw std::runtime_error("cannot fork the simulation process");
  if (child == 0) {
    close(fds[0]);
    int status = 0;
    try {
      Simulation simulation(machine, workload, cost, options);
      SimulationResult result = simulation.run();
      rusage usage{};
      getrusage(RUSAGE_SELF, &usage);
      result.peak_memory_bytes = static_cast<double>(usage.ru_maxrss) * 1024.0;  // Linux reports KiB
      const std::string text = nlohmann::json(result).dump();
      size_t off = 0;
      while (off < text.size()) {
        const ssize_t n = write(fds[1], text.data() + off, text.size() - off);
        if (n <= 0) break;
        off += static_cast<size_t>(n);
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "odyssey: internal error in the simulation: %s\n", e.what());
      status = 1;
    }
    close(fds[1]);
    std::fflush(nullptr);
    _exit(status);
  }
  close(fds[1]);
  std::string text;
  char buffer[1 << 16];
  for (;;) {
    const ssize_t n = read(fds[0], buffer, sizeof buffer);
    if (n <= 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  close(fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || text.empty()) {
    if (WIFSIGNALED(status))
      throw std::runtime_error(fmt::format("the simulation process died with signal {}", WTERMSIG(status)));
    throw std::runtime_error("the simulation process failed");
  }
  return nlohmann::json::parse(text).get<SimulationResult>();
}

} // namespace odyssey
