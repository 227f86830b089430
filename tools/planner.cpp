#include "tools/planner.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "models/workload.hpp"
#include "sim/report.hpp"
#include "tools/sweep.hpp"

namespace odyssey {

namespace {

constexpr int GROUPS = AnalyticalScreen::Pass::GROUPS;
/// Candidates simulated at fast fidelity by default: for one GPU count, and for each count of a range.
constexpr int FAST_ONE_GPU_COUNT = 200;
constexpr int FAST_PER_GPU_COUNT = 3;
constexpr double MIB = 1024.0 * 1024.0;
/// The memory model's fixed workspace (models/memory.cpp): CUDA context 512 MiB and a 32 MiB
/// cuBLAS workspace, 128 MiB of NCCL buffers per communicator, 10% of the activations for
/// fragmentation. Restated here because the screen cannot build a Workload per candidate; the
/// stage that simulates checks the memory model itself.
constexpr double WORKSPACE_FIXED = 544 * MIB;
constexpr double WORKSPACE_PER_COMMUNICATOR = 128 * MIB;
constexpr double FRAGMENTATION = 0.10;

double clamp_servers(long span, int gpus_per_server, long ranks) {
  const long servers = (span + gpus_per_server - 1) / gpus_per_server;
  return static_cast<double>(std::clamp<long>(servers, 1, ranks));
}

int ranks_of(GroupKind g, const ParallelismSpec& p) {
  switch (g) {
  case GroupKind::TP: return p.tp;
  case GroupKind::CP: return p.cp;
  case GroupKind::EP: return p.ep;
  case GroupKind::PP: return 2;
  case GroupKind::DP: return p.dp * p.cp;
  case GroupKind::EXPERT_DP: return p.dp * p.cp / p.ep;
  }
  return 1;
}

double pass_seconds(const AnalyticalScreen::Pass& x) {
  double blocking = 0, overlapped = 0;
  for (int g = 0; g < GROUPS; ++g) {
    blocking += x.blocking[g];
    overlapped += x.overlapped[g];
  }
  return x.compute + blocking + std::max(0.0, overlapped - x.compute);
}

} // namespace

// ---- Pass and Part arithmetic ---------------------------------------------------------------------

AnalyticalScreen::Pass& AnalyticalScreen::Pass::operator+=(const Pass& o) {
  compute += o.compute;
  for (int g = 0; g < GROUPS; ++g) {
    blocking[g] += o.blocking[g];
    overlapped[g] += o.overlapped[g];
  }
  return *this;
}
AnalyticalScreen::Pass AnalyticalScreen::Pass::operator*(double k) const {
  Pass r = *this;
  r.compute *= k;
  for (int g = 0; g < GROUPS; ++g) {
    r.blocking[g] *= k;
    r.overlapped[g] *= k;
  }
  return r;
}
AnalyticalScreen::Pass AnalyticalScreen::Pass::operator-(const Pass& o) const {
  Pass r = *this;
  r += o * -1.0;
  return r;
}
AnalyticalScreen::Part& AnalyticalScreen::Part::operator+=(const Part& o) {
  forward += o.forward;
  backward += o.backward;
  backward_input += o.backward_input;
  backward_weight += o.backward_weight;
  parameters += o.parameters;
  activations += o.activations;
  return *this;
}
AnalyticalScreen::Part AnalyticalScreen::Part::operator*(double k) const {
  return Part{.forward = forward * k,
              .backward = backward * k,
              .backward_input = backward_input * k,
              .backward_weight = backward_weight * k,
              .parameters = parameters * k,
              .activations = activations * k};
}
AnalyticalScreen::Part AnalyticalScreen::Part::operator-(const Part& o) const {
  Part r = *this;
  r += o * -1.0;
  return r;
}

// ---- the screen -----------------------------------------------------------------------------------

AnalyticalScreen::AnalyticalScreen(const MachineSpec& machine, const ModelSpec& model, const TrainingSpec& training,
                                   const CostModel& cost)
    : machine_(machine), model_(model), training_(training), cost_(cost) {}

GroupShape AnalyticalScreen::group_shape(GroupKind g, const ParallelismSpec& p) const {
  const int gps = machine_.server.gpus;
  const long tp = p.tp, cp = p.cp;
  switch (g) {
  case GroupKind::TP: return {.ranks = p.tp, .servers = int(clamp_servers(tp, gps, tp))};
  case GroupKind::CP: return {.ranks = p.cp, .servers = int(clamp_servers(tp * cp, gps, cp))};
  case GroupKind::EP: return {.ranks = p.ep, .servers = int(clamp_servers(tp * cp * p.ep, gps, p.ep))};
  case GroupKind::DP: return {.ranks = p.dp * p.cp, .servers = int(clamp_servers(tp * cp * p.dp, gps, long(p.dp) * cp))};
  case GroupKind::EXPERT_DP: {
    const int ranks = p.dp * p.cp / p.ep;
    return {.ranks = ranks, .servers = int(clamp_servers(tp * cp * p.dp, gps, ranks))};
  }
  case GroupKind::PP: {
    // Neighbouring stages are tp*cp*dp GPUs apart (Megatron-core's rank order, pp outermost).
    const bool same_server = tp * cp * p.dp < gps;
    return {.ranks = 2, .servers = same_server ? 1 : 2};
  }
  }
  return {};
}

double AnalyticalScreen::collective_seconds(const CollectiveOp& op, const ParallelismSpec& p) const {
  const GroupShape shape = group_shape(op.group, p);
  if (shape.ranks < 2) return 0.0;
  // TP inside a server: the engine's closed form, per-NIC rate. A data-parallel group across
  // servers with k members in each server runs min(k, nics) rings (channels), each leaving the
  // server through its own NIC (sim::nccl_rings), while the server's other gpus/k data-parallel
  // communicators (one per tp rank) run at once on the remaining NICs.
  const bool data_parallel = op.group == GroupKind::DP || op.group == GroupKind::EXPERT_DP;
  BytesPerSecond inter = machine_.server.nic_bandwidth;
  if (shape.servers > 1 && !data_parallel) {
    // CP and EP groups across servers: every GPU's share of its server's NICs (the engine's
    // all-to-all sends each pair's bytes from the GPU's own NIC).
    inter = machine_.server.nic_bandwidth * (double(machine_.server.nics) / machine_.server.gpus);
  } else if (shape.servers > 1) {
    const int gps = machine_.server.gpus;
    const int nics = machine_.server.nics;
    // Dense rings take one rank per tp position; expert rings one per (tp, cp, ep) block.
    const long stride = op.group == GroupKind::EXPERT_DP ? long(p.tp) * p.cp * p.ep : p.tp;
    const double k = std::max(1.0, std::min(double(gps) / double(stride), double(shape.ranks) / shape.servers));
    const double channels = std::min(k, double(nics));
    const double concurrent = std::max(1.0, double(gps) / k);
    inter = machine_.server.nic_bandwidth * std::min(channels, double(nics) / concurrent);
  }
  return cost_.collective_time(op.kind, op.bytes, shape, machine_.server.nvlink_bandwidth, inter).value();
}

AnalyticalScreen::Pass AnalyticalScreen::price(const std::vector<ComputeOp>& compute,
                                               const std::vector<CollectiveOp>& comm,
                                               const ParallelismSpec& p) const {
  Pass x;
  x.compute = cost_.compute_time(compute).value();
  for (const CollectiveOp& op : comm) {
    if (ranks_of(op.group, p) <= 1) continue;  // the engine skips them too
    // ZeRO-3's prefetched parameter gathers wait in the data-parallel stream behind the gradient
    // buckets of the previous backward (one NCCL communicator runs its collectives in order), so
    // the compute usually waits for them: the screen counts them as blocking.
    const bool gather_behind_buckets = op.group == GroupKind::DP || op.group == GroupKind::EXPERT_DP;
    const bool overlapped =
        !gather_behind_buckets && (op.overlap_with_compute || (op.group == GroupKind::TP && p.tp_overlap));
    (overlapped ? x.overlapped : x.blocking)[int(op.group)] += collective_seconds(op, p);
  }
  return x;
}

const AnalyticalScreen::Shape& AnalyticalScreen::shape(const Strategy& s) {
  const ParallelismSpec& p = s.parallelism;
  const bool zero3 = p.zero >= 3;
  const Key key{p.tp, p.cp, p.ep, s.micro_batch, p.sequence_parallel && p.tp > 1, int(p.recompute),
                zero3 ? p.dp : 0, zero3 ? 3 : (p.zero >= 1 ? 1 : 0)};
  if (auto it = cache_.find(key); it != cache_.end()) return it->second;

  const int period = model_.moe ? model_.moe->every : 1;
  // The proxy's dp: the smallest the rules allow, or the real one where ZeRO-3 gathers span it.
  const int dp = zero3 ? p.dp : p.ep;
  auto proxy = [&](int periods) {
    ModelSpec m = model_;
    m.layers = 3 * periods * period;
    TrainingSpec t = training_;
    t.micro_batch = s.micro_batch;
    t.global_batch = s.micro_batch * dp * 3;
    t.tokens.reset();
    ParallelismSpec q = p;
    q.pp = 3;
    q.dp = dp;
    q.schedule = PipelineScheduleKind::ONE_F_ONE_B;
    q.virtual_stages = 1;
    q.first_stage_layers = 0;
    q.last_stage_layers = 0;
    return Workload(m, t, q);
  };
  const Workload a = proxy(1);
  const Workload b = proxy(2);
  auto part = [&](const Workload& w, int stage) {
    const ChunkWork& c = w.chunk(stage, 0);
    const ParallelismSpec& q = w.parallelism();
    return Part{.forward = price(c.forward.compute, c.forward.comm, q),
                .backward = price(c.backward.compute, c.backward.comm, q),
                .backward_input = price(c.backward_input.compute, c.backward_input.comm, q),
                .backward_weight = price(c.backward_weight.compute, c.backward_weight.comm, q),
                .parameters = w.local_parameters(stage),
                .activations = w.chunk_activations(stage, 0).value()};
  };
  const Part a0 = part(a, 0), a1 = part(a, 1), a2 = part(a, 2);
  Shape sh;
  sh.period = part(b, 1) - a1;
  sh.boundary = a1 - sh.period;
  sh.first = a0 - sh.period;
  sh.last = a2 - sh.period;
  sh.activation_out = a.chunk(0, 0).activation_out.value();
  const double dense_gradients = a.gradient_bytes(1).value(), expert_gradients = a.expert_gradient_bytes(1).value();
  sh.expert_fraction = dense_gradients + expert_gradients > 0 ? expert_gradients / (dense_gradients + expert_gradients) : 0.0;
  if (p.recompute == Recompute::FULL) sh.transient = a.layer_activations_no_recompute().value();
  if (p.recompute == Recompute::SELECTIVE)
    sh.transient = (a.layer_activations_no_recompute() - a.layer_activations()).value();
  // The optimizer step: launches plus a rate per local parameter of the rank's shard.
  const double shards = p.zero >= 1 ? a.zero_shards() : 1;
  const double t0 = cost_.compute_time(a.optimizer(0)).value();
  const double t1 = cost_.compute_time(a.optimizer(1)).value();
  const double dparams = (a0.parameters - a1.parameters) / shards;
  sh.optimizer_per_parameter = dparams != 0 ? (t0 - t1) / dparams : 0.0;
  sh.optimizer_fixed = t1 - sh.optimizer_per_parameter * a1.parameters / shards;
  const double fa = a.model_flops().value() / a.training().global_batch;
  const double fb = b.model_flops().value() / b.training().global_batch;
  sh.model_flops_per_period = (fb - fa) / 3;
  sh.model_flops_fixed = fa - 3 * sh.model_flops_per_period;
  return cache_.emplace(key, sh).first->second;
}

Estimate AnalyticalScreen::evaluate(const Strategy& s) {
  const Shape& sh = shape(s);
  const ParallelismSpec& p = s.parallelism;
  const int pp = p.pp;
  const int v = p.virtual_stages;
  const int vstages = pp * v;
  const double m = double(training_.global_batch) / (double(s.micro_batch) * p.dp);
  const int period = model_.moe ? model_.moe->every : 1;
  const double periods = double(model_.layers) / vstages / period;
  const double tp_recv =
      collective_seconds(CollectiveOp{.name = "pp", .kind = CollectiveKind::SEND_RECV, .group = GroupKind::PP,
                                      .bytes = Bytes(sh.activation_out)},
                         p);

  // Stage 0, a middle stage and the last stage: the others equal the middle one.
  struct StageTime {
    double f = 0, b = 0, bi = 0, bw = 0, recv = 0, compute = 0;
    double group[GROUPS] = {};
    Part sum;
    std::vector<double> chunk_backward, chunk_gradients;  // by chunk, for the gradient reduction
  };
  auto stage_time = [&](int stage) {
    StageTime st;
    for (int c = 0; c < v; ++c) {
      const int j = c * pp + stage;
      Part part = sh.period * periods;
      if (j == 0 && j == vstages - 1) {
        part += sh.first;
        part += sh.last - sh.boundary;
      } else {
        part += j == 0 ? sh.first : j == vstages - 1 ? sh.last : sh.boundary;
      }
      st.sum += part;
      const bool zb = p.schedule == PipelineScheduleKind::ZERO_BUBBLE;
      for (const Pass* x : {&part.forward, zb ? &part.backward_input : &part.backward}) {
        st.compute += x->compute;
        double over = 0;
        for (int g = 0; g < GROUPS; ++g) over += x->overlapped[g];
        const double hidden = std::min(over, x->compute);
        for (int g = 0; g < GROUPS; ++g)
          st.group[g] += x->blocking[g] + (over > 0 ? x->overlapped[g] * (1 - hidden / over) : 0.0);
      }
      if (zb) {
        st.compute += part.backward_weight.compute;
        for (int g = 0; g < GROUPS; ++g) st.group[g] += part.backward_weight.blocking[g] + part.backward_weight.overlapped[g];
      }
      st.f += pass_seconds(part.forward);
      st.b += pass_seconds(part.backward);
      st.bi += pass_seconds(part.backward_input);
      st.bw += pass_seconds(part.backward_weight);
      st.recv += (j > 0 ? tp_recv : 0.0) + (j < vstages - 1 ? tp_recv : 0.0);
      st.chunk_backward.push_back(pass_seconds(part.backward));
      st.chunk_gradients.push_back(part.parameters);
    }
    return st;
  };
  const StageTime first = stage_time(0);
  const StageTime last = pp > 1 ? stage_time(pp - 1) : first;
  const StageTime middle = pp > 2 ? stage_time(1) : first;
  auto work = [](const StageTime& st) { return st.f + st.b + st.recv; };
  // Gradient reduction, optimizer step and (ZeRO >= 1) parameter all-gather of each stage.
  const double grad_element = training_.precision == Precision::FP16 ? 2.0 : 4.0;
  const double weight_element = training_.precision == Precision::FP32 ? 4.0 : 2.0;
  const bool has_dp = long(p.dp) * p.cp > 1;
  const bool has_expert_dp = long(p.dp) * p.cp / p.ep > 1;
  // Workload::dp_bucket_bytes: DeepSpeed's 5e8 elements under ZeRO-2/3, Megatron-core's
  // max(40M, 1M x dp*cp) elements otherwise.
  const double bucket = p.dp_bucket.value() > 0 ? p.dp_bucket.value()
                        : p.zero >= 2         ? 5e8 * grad_element
                                              : std::max(40e6, 1e6 * p.dp * p.cp) * grad_element;
  const CollectiveKind grad_kind = p.zero >= 1 ? CollectiveKind::REDUCE_SCATTER : CollectiveKind::ALL_REDUCE;
  const double shards = p.zero >= 1 ? double(p.dp) * p.cp : 1.0;
  // Under ZeRO-3 each micro-batch's parameter gathers wait in the data-parallel stream behind the
  // previous micro-batch's gradient reduce-scatters, and its compute waits for them: a stage
  // runs no faster than that stream.
  auto dp_stream = [&](const StageTime& st) {
    if (p.zero < 3 || !has_dp) return 0.0;
    double load = 0;
    for (int c = 0; c < v; ++c) {
      const double bytes = st.chunk_gradients[size_t(c)] * grad_element;
      const int buckets = std::max(1, int(std::ceil(bytes / bucket)));
      load += buckets * collective_seconds(CollectiveOp{.name = "grad", .kind = grad_kind, .group = GroupKind::DP,
                                                        .bytes = Bytes(bytes / buckets)},
                                           p);
    }
    const int dp = int(GroupKind::DP);
    for (const Pass* x : {&st.sum.forward, &st.sum.backward}) load += x->blocking[dp] + x->overlapped[dp];
    return load;
  };
  const double w_max = std::max({work(first), work(middle), work(last), dp_stream(first), dp_stream(last)});
  const double w_mean = pp > 1 ? (work(first) + work(last) + (pp - 2) * work(middle)) / pp : work(first);

  double bubble_per_stage = w_mean / v;
  if (p.schedule == PipelineScheduleKind::ZERO_BUBBLE) {
    // ZB-H1 (Qi et al. 2023): the weight-gradient passes fill the bubble, (p-1)(F + B - W).
    auto zb = [](const StageTime& st) { return std::max(0.0, st.f + st.bi - st.bw + st.recv); };
    bubble_per_stage = pp > 1 ? (zb(first) + zb(last) + (pp - 2) * zb(middle)) / pp : 0.0;
  }
  const double pipeline = m * w_max + (pp - 1) * bubble_per_stage;

  auto finish = [&](const StageTime& st, double end, double* dp_exposed, double* optimizer) {
    double queue = 0;  // when the data-parallel stream is free
    if (has_dp || has_expert_dp) {
      // Chunk c's gradients are released during its last backward pass, c passes before the end
      // (interleaved drain), bucket by bucket; without overlap all at the end (Megatron-LM 2021).
      // ZeRO-2/3 reduce-scatter every micro-batch's gradients: the earlier ones keep the stream
      // busy from the stage's first backward on.
      double every_microbatch = 0;
      for (int c = v - 1; c >= 0; --c) {
        // Dense gradients go to the dp*cp ranks, expert ones to the expert-data-parallel group,
        // bucket by bucket into one queue (the engine's stage driver).
        const double bytes = st.chunk_gradients[size_t(c)] * grad_element;
        const double dense = has_dp ? bytes * (1 - sh.expert_fraction) : 0.0;
        const double expert = has_expert_dp ? bytes * sh.expert_fraction : 0.0;
        const int dense_buckets = dense > 0 ? std::max(1, int(std::ceil(dense / bucket))) : 0;
        const int expert_buckets = expert > 0 ? std::max(1, int(std::ceil(expert / bucket))) : 0;
        const int buckets = std::max({1, dense_buckets, expert_buckets});
        auto bucket_seconds = [&](double b, int n, GroupKind g) {
          return n > 0 ? collective_seconds(CollectiveOp{.name = "grad", .kind = grad_kind, .group = g, .bytes = Bytes(b / n)}, p)
                       : 0.0;
        };
        const double each_dense = bucket_seconds(dense, dense_buckets, GroupKind::DP);
        const double each_expert = bucket_seconds(expert, expert_buckets, GroupKind::EXPERT_DP);
        every_microbatch += each_dense * dense_buckets + each_expert * expert_buckets;
        const double pass = st.chunk_backward[size_t(c)];
        for (int k = 0; k < buckets; ++k) {
          const double release = p.dp_overlap ? end - c * pass - pass * (buckets - 1 - k) / buckets : end;
          const double work = (k < dense_buckets ? each_dense : 0.0) + (k < expert_buckets ? each_expert : 0.0);
          queue = std::max(queue, release) + work;
        }
      }
      if (p.zero >= 2 && m > 1) {
        // ZeRO-3's parameter gathers share the stream from the first forward on.
        double start = end - m * (st.f + st.b + st.recv);
        if (p.zero >= 3) {
          const int dp = int(GroupKind::DP);
          for (const Pass* x : {&st.sum.forward, &st.sum.backward}) every_microbatch += x->blocking[dp] + x->overlapped[dp];
          start = 0;
        }
        queue = std::max(queue, start + m * every_microbatch);
      }
    }
    *dp_exposed = std::max(0.0, queue - end);
    *optimizer = sh.optimizer_per_parameter * st.sum.parameters / shards + sh.optimizer_fixed;
    if (p.zero == 1 || p.zero == 2) {
      const double params = st.sum.parameters * weight_element;
      if (has_dp)
        *dp_exposed += collective_seconds(CollectiveOp{.name = "gather", .kind = CollectiveKind::ALL_GATHER,
                                                       .group = GroupKind::DP, .bytes = Bytes(params * (1 - sh.expert_fraction))},
                                          p);
      if (has_expert_dp && sh.expert_fraction > 0)
        *dp_exposed += collective_seconds(CollectiveOp{.name = "gather", .kind = CollectiveKind::ALL_GATHER,
                                                       .group = GroupKind::EXPERT_DP, .bytes = Bytes(params * sh.expert_fraction)},
                                          p);
    }
    return end + *dp_exposed + *optimizer;
  };
  double dp0 = 0, opt0 = 0, dpl = 0, optl = 0;
  const double end0 = finish(first, pipeline, &dp0, &opt0);
  const double last_end = pipeline - (pp - 1) * (last.b + tp_recv) / v;
  const double endl = pp > 1 ? finish(last, last_end, &dpl, &optl) : end0;
  const bool last_critical = endl > end0;
  const StageTime& crit = last_critical ? last : first;

  Estimate e;
  e.iteration = Seconds(std::max(end0, endl));
  Breakdown& bd = e.breakdown;
  bd.compute = Seconds(m * crit.compute);
  bd.tp_comm_exposed = Seconds(m * crit.group[int(GroupKind::TP)]);
  bd.cp_comm_exposed = Seconds(m * crit.group[int(GroupKind::CP)]);
  bd.ep_comm_exposed = Seconds(m * crit.group[int(GroupKind::EP)]);
  bd.pp_comm_exposed = Seconds(m * crit.recv);
  bd.dp_comm_exposed = Seconds((last_critical ? dpl : dp0) +
                               m * (crit.group[int(GroupKind::DP)] + crit.group[int(GroupKind::EXPERT_DP)]));
  bd.optimizer = Seconds(last_critical ? optl : opt0);
  bd.pp_bubble = std::max(Seconds(0), e.iteration - (bd.compute + bd.tp_comm_exposed + bd.cp_comm_exposed +
                                                     bd.ep_comm_exposed + bd.pp_comm_exposed + bd.dp_comm_exposed +
                                                     bd.optimizer));

  // Memory of stage 0 and of the last stage (the middle ones hold no more).
  const double weights_shards = p.zero >= 3 ? double(p.dp) * p.cp : 1.0;
  const double grads_shards = p.zero >= 2 ? double(p.dp) * p.cp : 1.0;
  const double optimizer_bytes = training_.precision == Precision::FP32 ? 8.0 : 12.0;
  int communicators = 0;
  for (int degree : {p.tp, p.pp, p.dp, p.cp, p.ep})
    if (degree > 1) ++communicators;
  auto memory = [&](const StageTime& st, int stage) {
    double inflight = 0;
    switch (p.schedule) {
    case PipelineScheduleKind::GPIPE: inflight = m; break;
    case PipelineScheduleKind::ONE_F_ONE_B: inflight = std::min<double>(pp - stage, m); break;
    case PipelineScheduleKind::ZERO_BUBBLE: inflight = std::min<double>(pp, m); break;
    case PipelineScheduleKind::INTERLEAVED_1F1B:
      inflight = std::min<double>(m * v, 2.0 * (pp - stage - 1) + (v - 1.0) * pp + 1) / v;
      break;
    }
    const double params = st.sum.parameters;
    double weights = params * weight_element / weights_shards;
    if (p.zero >= 3 && weights_shards > 1) weights += params / v * weight_element * (p.zero_overlap ? 2 : 1);
    const double activations = inflight * st.sum.activations + sh.transient;
    // ZeRO-2/3 hold a chunk's whole gradients until reduced: two buckets of them with overlap.
    const double chunk_gradients = params / v * grad_element;
    const double gradient_buffer = p.zero >= 2 && has_dp
                                       ? (p.dp_overlap ? std::min(chunk_gradients, 2 * bucket) : chunk_gradients)
                                       : 0.0;
    return weights + params * grad_element / grads_shards + params * optimizer_bytes / shards + activations +
           WORKSPACE_FIXED + communicators * WORKSPACE_PER_COMMUNICATOR + FRAGMENTATION * activations +
           gradient_buffer;
  };
  const double mem0 = memory(first, 0);
  const double meml = pp > 1 ? memory(last, pp - 1) : mem0;
  e.memory = Bytes(std::max(mem0, meml));
  e.memory_stage = meml > mem0 ? pp - 1 : 0;
  e.model_flops = (sh.model_flops_per_period * model_.layers / period + sh.model_flops_fixed) * training_.global_batch;
  return e;
}

// ---- enumeration ----------------------------------------------------------------------------------

std::string describe(const Strategy& s) {
  const ParallelismSpec& p = s.parallelism;
  const bool uneven = p.first_stage_layers > 0 || p.last_stage_layers > 0;
  return fmt::format("tp {} pp {} dp {} cp {} ep {} mb {} {}{} zero {} recompute {}{}{}", p.tp, p.pp, p.dp, p.cp, p.ep,
                     s.micro_batch, to_string(p.schedule),
                     p.virtual_stages > 1 ? fmt::format(" v{}", p.virtual_stages) : "", p.zero, to_string(p.recompute),
                     p.sequence_parallel ? " sp" : "",
                     uneven ? fmt::format(" layers first {} last {}", p.first_stage_layers, p.last_stage_layers) : "");
}

namespace {

std::vector<int> divisors(long n) {
  std::vector<int> out;
  for (long d = 1; d <= n; ++d)
    if (n % d == 0) out.push_back(int(d));
  return out;
}

std::vector<int> powers_of_two(int limit) {
  std::vector<int> out;
  for (int x = 1; x <= limit; x *= 2) out.push_back(x);
  return out;
}

/// Sorted union of two lists.
std::vector<int> merged(std::vector<int> a, const std::vector<int>& b) {
  a.insert(a.end(), b.begin(), b.end());
  std::sort(a.begin(), a.end());
  a.erase(std::unique(a.begin(), a.end()), a.end());
  return a;
}

} // namespace

std::vector<Strategy> enumerate_strategies(const Scenario& scenario, long gpus_min, long gpus_max) {
  const ModelSpec& model = scenario.model;
  const MachineSpec& machine = scenario.machine;
  const int gps = machine.server.gpus;
  // tp up to two servers (so that the search sees what TP across servers costs), pp over the
  // layers' divisors and powers of two, cp and ep over powers of two, dp over the batch's divisors.
  const std::vector<int> tps = powers_of_two(std::min(model.heads, 2 * gps));
  const std::vector<int> pps = merged(divisors(model.layers), powers_of_two(model.layers));
  const std::vector<int> cps = powers_of_two(std::min(8, std::max(1, model.seq_len / 1024)));
  const std::vector<int> eps = model.moe ? powers_of_two(model.moe->experts) : std::vector<int>{1};
  const std::vector<int> dps = divisors(scenario.training.global_batch);
  const std::vector<int> mbs = {1, 2, 4, 8};
  const long most = std::min(gpus_max, machine.total_gpus());

  std::vector<Strategy> out;
  Strategy s;
  s.parallelism = scenario.parallelism;
  s.parallelism.first_stage_layers = 0;
  s.parallelism.last_stage_layers = 0;
  for (int tp : tps)
    for (int pp : pps)
      for (int cp : cps)
        for (int ep : eps)
          for (int dp : dps) {
            const long gpus = long(tp) * pp * cp * dp;
            if (gpus < gpus_min || gpus > most) continue;
            ParallelismSpec& p = s.parallelism;
            p.tp = tp;
            p.pp = pp;
            p.cp = cp;
            p.ep = ep;
            p.dp = dp;
            for (int mb : mbs) {
              s.micro_batch = mb;
              std::vector<std::pair<PipelineScheduleKind, int>> schedules = {{PipelineScheduleKind::ONE_F_ONE_B, 1}};
              if (pp > 1) {
                schedules.emplace_back(PipelineScheduleKind::GPIPE, 1);
                schedules.emplace_back(PipelineScheduleKind::ZERO_BUBBLE, 1);
                for (int v : divisors(model.layers / pp))
                  if (v > 1 && v <= 8) schedules.emplace_back(PipelineScheduleKind::INTERLEAVED_1F1B, v);
              }
              for (const auto& [schedule, v] : schedules) {
                p.schedule = schedule;
                p.virtual_stages = v;
                for (int zero = 0; zero <= 3; ++zero) {
                  p.zero = zero;
                  for (Recompute r : {Recompute::NONE, Recompute::SELECTIVE, Recompute::FULL}) {
                    p.recompute = r;
                    for (bool sp : {false, true}) {
                      if (sp && tp == 1) continue;
                      p.sequence_parallel = sp;
                      out.push_back(s);
                    }
                  }
                }
              }
            }
          }
  return out;
}

// ---- the three stages -----------------------------------------------------------------------------

namespace {

struct Scored {
  Strategy strategy;
  Estimate estimate;
};

bool faster(const Scored& a, const Scored& b) {
  // Per GPU count the iteration time ranks; of equal times the one that needs less memory first.
  if (a.estimate.iteration != b.estimate.iteration) return a.estimate.iteration < b.estimate.iteration;
  return a.estimate.memory < b.estimate.memory;
}

/// The same strategy but for the ZeRO stage, at the same estimated time: the one needing less
/// memory (first in `faster` order) stands for it, as nothing else tells them apart.
bool same_but_zero(const Scored& a, const Scored& b) {
  ParallelismSpec p = b.strategy.parallelism;
  p.zero = a.strategy.parallelism.zero;
  return a.estimate.iteration == b.estimate.iteration && a.strategy.micro_batch == b.strategy.micro_batch &&
         describe(Strategy{.parallelism = p, .micro_batch = b.strategy.micro_batch}) == describe(a.strategy);
}

/// Keeps the `k` best of a growing list without sorting it all.
void keep_best(std::vector<Scored>& list, std::size_t k) {
  if (list.size() < 2 * k + 64) return;
  std::nth_element(list.begin(), list.begin() + long(k), list.end(), faster);
  list.resize(k);
}

void sort_best(std::vector<Scored>& list, std::size_t k) {
  std::stable_sort(list.begin(), list.end(), faster);
  if (list.size() > k) list.resize(k);
}

TrainingSpec training_of(const Scenario& sc, const Strategy& s) {
  TrainingSpec t = sc.training;
  t.micro_batch = s.micro_batch;
  return t;
}

PlanRow analytical_row(const Scenario& sc, const CostModel& cost, const Scored& x) {
  PlanRow r;
  r.strategy = x.strategy;
  r.fidelity = "analytical";
  r.iteration = x.estimate.iteration;
  r.analytical = x.estimate.iteration;
  const double tokens = double(sc.training.global_batch) * sc.model.seq_len;
  r.tokens_per_s = tokens / r.iteration.value();
  r.mfu = x.estimate.model_flops / (double(x.strategy.gpus()) * r.iteration.value() *
                                    cost.peak(sc.training.precision).value());
  r.memory = x.estimate.memory;
  r.fits = x.estimate.memory <= sc.machine.gpu.memory;
  r.breakdown = x.estimate.breakdown;
  if (sc.training.tokens) r.time_to_train = Seconds(*sc.training.tokens / r.tokens_per_s);
  return r;
}

/// Simulates the rows at `fidelity` in parallel processes and replaces their figures; a row
/// whose exact memory model does not fit is marked pruned and not simulated.
void simulate_rows(const Scenario& sc, const CostModel& cost, std::vector<PlanRow>& rows, Fidelity fidelity,
                   int jobs) {
  std::vector<std::size_t> todo;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Workload w(sc.model, training_of(sc, rows[i].strategy), rows[i].strategy.parallelism);
    Bytes peak;
    rows[i].memory_per_stage.clear();
    for (int s = 0; s < w.stages(); ++s) {
      rows[i].memory_per_stage.push_back(w.memory(s));
      peak = std::max(peak, w.memory(s).total());
    }
    rows[i].memory = peak;
    if (peak > sc.machine.gpu.memory) {
      rows[i].fits = false;
      rows[i].pruned = fmt::format("memory: needs {:.2f} GiB per GPU, {:.2f} GiB over the {:.0f} GiB of a {}",
                                   peak.value() / (1 << 30), (peak - sc.machine.gpu.memory).value() / (1 << 30),
                                   sc.machine.gpu.memory.value() / (1 << 30), sc.machine.gpu.type);
      continue;
    }
    todo.push_back(i);
  }
  run_in_processes(
      todo.size(), jobs,
      [&](std::size_t k) {
        const PlanRow& row = rows[todo[k]];
        const Workload w(sc.model, training_of(sc, row.strategy), row.strategy.parallelism);
        const SimulationResult result = simulate(sc.machine, w, cost, {.fidelity = fidelity});
        return render_json(make_report(sc.name, sc.machine, w, cost, result, fidelity));
      },
      [&](std::size_t k, const std::string& text, const std::string& error) {
        PlanRow& row = rows[todo[k]];
        if (!error.empty()) {
          row.pruned = "simulation failed: " + error;
          return;
        }
        const nlohmann::json j = nlohmann::json::parse(text);
        row.fidelity = to_string(fidelity);
        row.iteration = Seconds(j.at("iteration_time_s").get<double>());
        row.tokens_per_s = j.at("tokens_per_s").get<double>();
        row.mfu = j.at("mfu").get<double>();
        row.memory = Bytes(j.at("memory_per_gpu_bytes").get<double>());
        row.fits = j.at("fits_memory").get<bool>();
        const auto& b = j.at("breakdown");
        row.breakdown = Breakdown{.compute = Seconds(b.at("compute").get<double>()),
                                  .tp_comm_exposed = Seconds(b.at("tp_comm_exposed").get<double>()),
                                  .cp_comm_exposed = Seconds(b.at("cp_comm_exposed").get<double>()),
                                  .ep_comm_exposed = Seconds(b.at("ep_comm_exposed").get<double>()),
                                  .pp_bubble = Seconds(b.at("pp_bubble").get<double>()),
                                  .pp_comm_exposed = Seconds(b.at("pp_comm_exposed").get<double>()),
                                  .dp_comm_exposed = Seconds(b.at("dp_comm_exposed").get<double>()),
                                  .optimizer = Seconds(b.at("optimizer").get<double>())};
        if (sc.training.tokens) row.time_to_train = Seconds(*sc.training.tokens / row.tokens_per_s);
      });
}

/// Simulated rows first (full before fast), each group fastest first; pruned rows last.
int fidelity_rank(const PlanRow& r) {
  if (!r.pruned.empty()) return 3;
  return r.fidelity == "full" ? 0 : r.fidelity == "fast" ? 1 : 2;
}

void rank_rows(std::vector<PlanRow>& rows) {
  std::stable_sort(rows.begin(), rows.end(), [](const PlanRow& a, const PlanRow& b) {
    const int fa = fidelity_rank(a), fb = fidelity_rank(b);
    if (fa != fb) return fa < fb;
    return a.tokens_per_s > b.tokens_per_s;
  });
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

} // namespace

PlanResult plan(const Scenario& sc, const CostModel& cost, const PlanOptions& options) {
  PlanResult r;
  r.scenario = sc.name;
  r.model = sc.model.name;
  r.machine = sc.machine.name;
  r.min_gpus = options.min_gpus > 0 ? options.min_gpus : sc.parallelism.gpus();
  r.max_gpus = options.max_gpus > 0 ? options.max_gpus : r.min_gpus;
  r.tokens = sc.training.tokens;
  r.deadline_days = options.deadline_days;
  const bool range = r.min_gpus != r.max_gpus;
  const int full = options.full >= 0 ? options.full : range ? 1 : 3;

  // Stage 1: every strategy through the rules and the closed form.
  const auto t0 = std::chrono::steady_clock::now();
  AnalyticalScreen screen(sc.machine, sc.model, sc.training, cost);
  const std::size_t per_count = 4 * std::size_t(std::max({options.fast, FAST_ONE_GPU_COUNT, 1}));
  std::map<long, std::vector<Scored>> best;  // by GPU count
  std::vector<Scored> too_big;
  const std::size_t keep_pruned = std::size_t(std::max(options.top, 1));
  for (const Strategy& s : enumerate_strategies(sc, r.min_gpus, r.max_gpus)) {
    ++r.candidates;
    const TrainingSpec t = training_of(sc, s);
    if (const auto problem = check_strategy(sc.model, t, s.parallelism, sc.machine)) {
      auto [it, fresh] = r.pruned_by_rule.try_emplace(problem->key, 0);
      ++it->second;
      if (fresh) r.rule_example[problem->key] = problem->message + " (" + describe(s) + ")";
      continue;
    }
    ++r.screened;
    Scored x{.strategy = s, .estimate = screen.evaluate(s)};
    if (x.estimate.memory > sc.machine.gpu.memory) {
      too_big.push_back(x);
      keep_best(too_big, keep_pruned);
      continue;
    }
    ++r.fitting;
    auto& list = best[s.gpus()];
    list.push_back(x);
    keep_best(list, per_count);
  }
  r.shapes = screen.shapes();
  r.screen_seconds = seconds_since(t0);

  // Stage 2: the best few hundred at fast fidelity, shared out over the GPU counts.
  const std::size_t counts = std::max<std::size_t>(1, best.size());
  const std::size_t share = options.fast < 0 ? std::size_t(range ? FAST_PER_GPU_COUNT : FAST_ONE_GPU_COUNT)
                                             : std::size_t(options.fast) / counts;
  std::vector<PlanRow> rows;
  for (auto& [gpus, list] : best) {
    std::stable_sort(list.begin(), list.end(), faster);
    std::vector<const Scored*> taken;
    for (const Scored& x : list) {
      if (taken.size() >= std::max<std::size_t>(share, 1)) break;
      if (std::any_of(taken.begin(), taken.end(), [&](const Scored* t) { return same_but_zero(*t, x); })) continue;
      taken.push_back(&x);
      rows.push_back(analytical_row(sc, cost, x));
    }
  }
  // The scenario's own strategy is always simulated when its GPU count is searched: the search
  // does not enumerate uneven stage layouts (first_stage_layers / last_stage_layers), and the
  // answer must never be worse than the plan the user started from.
  const Strategy own{.parallelism = sc.parallelism, .micro_batch = sc.training.micro_batch};
  if (own.gpus() >= r.min_gpus && own.gpus() <= r.max_gpus && !check_strategy(sc.model, sc.training, own.parallelism, sc.machine)) {
    auto same = std::find_if(rows.begin(), rows.end(), [&](const PlanRow& row) { return describe(row.strategy) == describe(own); });
    const bool uneven = own.parallelism.first_stage_layers > 0 || own.parallelism.last_stage_layers > 0;
    if (same == rows.end() || uneven) {
      rows.push_back(analytical_row(sc, cost, Scored{.strategy = own, .estimate = screen.evaluate(own)}));
      same = rows.end() - 1;
    }
    same->scenario_plan = true;
  }

  const auto t1 = std::chrono::steady_clock::now();
  if (options.fast != 0) {
    simulate_rows(sc, cost, rows, Fidelity::FAST, options.jobs);
    for (const PlanRow& row : rows) r.fast_runs += row.fidelity == "fast";
  }
  r.fast_seconds = seconds_since(t1);

  // The best of each GPU count, and for a deadline the fewest GPUs that meet it.
  auto best_of_counts = [&] {
    std::map<long, const PlanRow*> by_count;
    for (const PlanRow& row : rows) {
      if (!row.pruned.empty()) continue;
      const PlanRow*& b = by_count[row.strategy.gpus()];
      if (b == nullptr || fidelity_rank(row) < fidelity_rank(*b) ||
          (fidelity_rank(row) == fidelity_rank(*b) && row.tokens_per_s > b->tokens_per_s))
        b = &row;
    }
    std::vector<PlanRow> out;
    for (const auto& [gpus, row] : by_count) out.push_back(*row);
    return out;
  };

  // Stage 3: the best few at full fidelity: the fastest overall, or with a deadline the plans
  // of the fewest GPUs that meet it (a full run that misses it moves on to the next count).
  const auto t2 = std::chrono::steady_clock::now();
  rank_rows(rows);
  if (options.deadline_days && sc.training.tokens) {
    const double deadline = *options.deadline_days * 86400.0;
    for (const PlanRow& b : best_of_counts()) {
      if (r.full_runs >= full) break;
      if (!b.time_to_train || b.time_to_train->value() > deadline) continue;
      for (PlanRow& row : rows) {
        if (row.strategy.gpus() != b.strategy.gpus() || describe(row.strategy) != describe(b.strategy)) continue;
        std::vector<PlanRow> one{row};
        simulate_rows(sc, cost, one, Fidelity::FULL, options.jobs);
        row = one.front();
        ++r.full_runs;
        break;
      }
      const std::vector<PlanRow> now = best_of_counts();
      if (std::any_of(now.begin(), now.end(), [&](const PlanRow& x) {
            return x.fidelity == "full" && x.time_to_train && x.time_to_train->value() <= deadline;
          }))
        break;
    }
  } else {
    std::vector<std::size_t> chosen;
    std::vector<PlanRow> top;
    for (std::size_t i = 0; i < rows.size() && int(chosen.size()) < full; ++i)
      if (rows[i].pruned.empty()) {
        chosen.push_back(i);
        top.push_back(rows[i]);
      }
    simulate_rows(sc, cost, top, Fidelity::FULL, options.jobs);
    for (std::size_t k = 0; k < chosen.size(); ++k) rows[chosen[k]] = top[k];
    r.full_runs = long(chosen.size());
  }
  r.full_seconds = seconds_since(t2);
  rank_rows(rows);

  for (PlanRow& row : rows) {
    if (row.pruned.empty()) r.ranked.push_back(row);
    else r.pruned_memory.push_back(row);
  }
  if (range) r.best_per_gpus = best_of_counts();
  sort_best(too_big, keep_pruned);
  for (const Scored& x : too_big) {
    PlanRow row = analytical_row(sc, cost, x);
    row.pruned = fmt::format("memory: needs {:.1f} GiB per GPU (analytical), {:.1f} GiB over the {:.0f} GiB of a {}",
                             x.estimate.memory.value() / (1 << 30),
                             (x.estimate.memory - sc.machine.gpu.memory).value() / (1 << 30),
                             sc.machine.gpu.memory.value() / (1 << 30), sc.machine.gpu.type);
    r.pruned_memory.push_back(row);
  }
  if (options.deadline_days && sc.training.tokens) {
    const double deadline = *options.deadline_days * 86400.0;
    for (const PlanRow& b : best_of_counts())
      if (b.time_to_train && b.time_to_train->value() <= deadline) {
        r.deadline_answer = b;
        break;
      }
  }
  return r;
}

// ---- rendering ------------------------------------------------------------------------------------

namespace {

std::string table_header() {
  return fmt::format("  {:>4} {:>6} {:>3} {:>3} {:>4} {:>3} {:>3} {:>3}  {:<19} {:>4} {:<9} {:>2} {:>11} {:>10} {:>6} "
                     "{:>8} {:>10}\n",
                     "rank", "gpus", "tp", "pp", "dp", "cp", "ep", "mb", "schedule", "zero", "recompute", "sp",
                     "iteration", "tokens/s", "MFU", "mem/GPU", "fidelity");
}

std::string table_row(int rank, const PlanRow& r) {
  const ParallelismSpec& p = r.strategy.parallelism;
  const std::string schedule =
      p.virtual_stages > 1 ? fmt::format("{} v{}", to_string(p.schedule), p.virtual_stages) : to_string(p.schedule);
  return fmt::format("  {:>4} {:>6} {:>3} {:>3} {:>4} {:>3} {:>3} {:>3}  {:<19} {:>4} {:<9} {:>2} {:>9.3f} s {:>10.0f} "
                     "{:>5.1f}% {:>4.1f} GiB {:>10}\n",
                     rank, r.strategy.gpus(), p.tp, p.pp, p.dp, p.cp, p.ep, r.strategy.micro_batch, schedule, p.zero,
                     to_string(p.recompute), p.sequence_parallel ? "y" : "n", r.iteration.value(), r.tokens_per_s,
                     100 * r.mfu, r.memory.value() / (1 << 30), r.fidelity + (r.scenario_plan ? " *" : ""));
}

std::string days(const Seconds& s) { return fmt::format("{:.1f} days", s.value() / 86400); }

nlohmann::json row_json(const PlanRow& r) {
  const ParallelismSpec& p = r.strategy.parallelism;
  nlohmann::json j{{"strategy", describe(r.strategy)},
                   {"gpus", r.strategy.gpus()},
                   {"tp", p.tp},
                   {"pp", p.pp},
                   {"dp", p.dp},
                   {"cp", p.cp},
                   {"ep", p.ep},
                   {"micro_batch", r.strategy.micro_batch},
                   {"schedule", to_string(p.schedule)},
                   {"virtual_stages", p.virtual_stages},
                   {"zero", p.zero},
                   {"recompute", to_string(p.recompute)},
                   {"sequence_parallel", p.sequence_parallel},
                   {"fidelity", r.fidelity},
                   {"iteration_time_s", r.iteration.value()},
                   {"analytical_iteration_time_s", r.analytical.value()},
                   {"tokens_per_s", r.tokens_per_s},
                   {"mfu", r.mfu},
                   {"memory_per_gpu_bytes", r.memory.value()},
                   {"fits_memory", r.fits},
                   {"breakdown",
                    {{"compute", r.breakdown.compute.value()},
                     {"tp_comm_exposed", r.breakdown.tp_comm_exposed.value()},
                     {"cp_comm_exposed", r.breakdown.cp_comm_exposed.value()},
                     {"ep_comm_exposed", r.breakdown.ep_comm_exposed.value()},
                     {"pp_bubble", r.breakdown.pp_bubble.value()},
                     {"pp_comm_exposed", r.breakdown.pp_comm_exposed.value()},
                     {"dp_comm_exposed", r.breakdown.dp_comm_exposed.value()},
                     {"optimizer", r.breakdown.optimizer.value()}}}};
  if (r.time_to_train) {
    j["time_to_train_s"] = r.time_to_train->value();
    j["gpu_hours"] = r.time_to_train->value() / 3600.0 * double(r.strategy.gpus());
  }
  if (!r.pruned.empty()) j["pruned"] = r.pruned;
  if (r.scenario_plan) j["scenario_plan"] = true;
  if (!r.memory_per_stage.empty()) {
    j["memory_per_stage"] = nlohmann::json::array();
    for (const MemoryBreakdown& m : r.memory_per_stage)
      j["memory_per_stage"].push_back({{"weights", m.weights.value()},
                                       {"gradients", m.gradients.value()},
                                       {"optimizer_states", m.optimizer_states.value()},
                                       {"activations", m.activations.value()},
                                       {"workspace", m.workspace.value()},
                                       {"total", m.total().value()}});
  }
  return j;
}

} // namespace

std::string render_plan_text(const PlanResult& r, int top) {
  std::string out = fmt::format(
      "plan: {} on {} GPUs of {}\n  {} strategies enumerated, {} within the rules, {} fit in memory; {} operation "
      "shapes priced\n  screen {:.2f} s ({:.0f} candidates/s), fast fidelity {} runs in {:.1f} s, full fidelity {} "
      "runs in {:.1f} s\n\n",
      r.model, r.min_gpus == r.max_gpus ? std::to_string(r.min_gpus) : fmt::format("{} to {}", r.min_gpus, r.max_gpus),
      r.machine, r.candidates, r.screened, r.fitting, r.shapes, r.screen_seconds,
      r.screen_seconds > 0 ? double(r.candidates) / r.screen_seconds : 0.0, r.fast_runs, r.fast_seconds, r.full_runs,
      r.full_seconds);
  if (r.deadline_days) {
    if (r.deadline_answer) {
      const PlanRow& a = *r.deadline_answer;
      out += fmt::format("deadline {:.0f} days for {:.3g} tokens: fewest GPUs {} ({}), {} to train, {:.0f} GPU-hours "
                         "({} fidelity)\n\n",
                         *r.deadline_days, r.tokens.value_or(0), a.strategy.gpus(), describe(a.strategy),
                         days(*a.time_to_train), a.time_to_train->value() / 3600 * double(a.strategy.gpus()),
                         a.fidelity);
    } else {
      out += fmt::format("deadline {:.0f} days: no GPU count from {} to {} meets it\n\n", *r.deadline_days, r.min_gpus,
                         r.max_gpus);
    }
  }
  if (!r.best_per_gpus.empty()) {
    out += "best plan of each GPU count\n" + table_header();
    for (const PlanRow& row : r.best_per_gpus) {
      out += table_row(int(&row - r.best_per_gpus.data()) + 1, row);
      if (row.time_to_train) out.insert(out.size() - 1, "  " + days(*row.time_to_train));
    }
    out += "\n";
  }
  out += "ranked (simulated first: full, then fast fidelity)\n" + table_header();
  for (int i = 0; i < std::min<int>(top, int(r.ranked.size())); ++i) out += table_row(i + 1, r.ranked[size_t(i)]);
  if (r.ranked.empty()) out += "  no strategy fits\n";
  if (std::any_of(r.ranked.begin(), r.ranked.end(), [](const PlanRow& row) { return row.scenario_plan; }))
    out += "  * the scenario's own strategy\n";
  if (!r.pruned_by_rule.empty()) {
    out += "\npruned by the rules\n";
    for (const auto& [key, count] : r.pruned_by_rule)
      out += fmt::format("  {:>9} {:<30} e.g. {}\n", count, key, r.rule_example.at(key));
  }
  if (!r.pruned_memory.empty()) {
    out += "\npruned by memory (the fastest of them)\n";
    for (int i = 0; i < std::min<int>(top, int(r.pruned_memory.size())); ++i)
      out += fmt::format("  {}: {}\n", describe(r.pruned_memory[size_t(i)].strategy), r.pruned_memory[size_t(i)].pruned);
  }
  return out;
}

std::string render_plan_json(const PlanResult& r, int top) {
  nlohmann::json j;
  j["scenario"] = r.scenario;
  j["model"] = r.model;
  j["machine"] = r.machine;
  j["gpus"] = {r.min_gpus, r.max_gpus};
  j["candidates"] = r.candidates;
  j["screened"] = r.screened;
  j["fitting"] = r.fitting;
  j["shapes"] = r.shapes;
  j["screen_seconds"] = r.screen_seconds;
  j["fast_runs"] = r.fast_runs;
  j["fast_seconds"] = r.fast_seconds;
  j["full_runs"] = r.full_runs;
  j["full_seconds"] = r.full_seconds;
  j["ranked"] = nlohmann::json::array();
  for (int i = 0; i < std::min<int>(top, int(r.ranked.size())); ++i) j["ranked"].push_back(row_json(r.ranked[size_t(i)]));
  j["best_per_gpus"] = nlohmann::json::array();
  for (const PlanRow& row : r.best_per_gpus) j["best_per_gpus"].push_back(row_json(row));
  j["pruned_by_rule"] = nlohmann::json::object();
  for (const auto& [key, count] : r.pruned_by_rule)
    j["pruned_by_rule"][key] = {{"candidates", count}, {"example", r.rule_example.at(key)}};
  j["pruned_by_memory"] = nlohmann::json::array();
  for (int i = 0; i < std::min<int>(top, int(r.pruned_memory.size())); ++i)
    j["pruned_by_memory"].push_back(row_json(r.pruned_memory[size_t(i)]));
  if (r.deadline_days) {
    j["deadline_days"] = *r.deadline_days;
    j["deadline_answer"] = r.deadline_answer ? row_json(*r.deadline_answer) : nlohmann::json(nullptr);
  }
  return j.dump(2) + "\n";
}

std::string render_plan_csv(const PlanResult& r) {
  std::string out = "status,gpus,tp,pp,dp,cp,ep,micro_batch,schedule,virtual_stages,zero,recompute,sequence_parallel,"
                    "fidelity,iteration_time_s,tokens_per_s,mfu,memory_per_gpu_bytes,fits_memory,reason\n";
  auto line = [&](const char* status, const PlanRow& row) {
    const ParallelismSpec& p = row.strategy.parallelism;
    out += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.6g},{:.6g},{:.4f},{:.0f},{},\"{}\"\n", status,
                       row.strategy.gpus(), p.tp, p.pp, p.dp, p.cp, p.ep, row.strategy.micro_batch, to_string(p.schedule),
                       p.virtual_stages, p.zero, to_string(p.recompute), p.sequence_parallel, row.fidelity,
                       row.iteration.value(), row.tokens_per_s, row.mfu, row.memory.value(), row.fits, row.pruned);
  };
  for (const PlanRow& row : r.ranked) line("ranked", row);
  for (const PlanRow& row : r.best_per_gpus) line("best-of-gpu-count", row);
  for (const PlanRow& row : r.pruned_memory) line("pruned", row);
  return out;
}

} // namespace odyssey
