#include "sim/analytical.hpp"

#include <algorithm>
#include <cmath>

#include "calibration/overlap.hpp"

namespace odyssey {

namespace {

constexpr int GROUPS = AnalyticalScreen::Pass::GROUPS;

} // namespace

// ---- Pass and Part arithmetic ---------------------------------------------------------------------

AnalyticalScreen::Pass& AnalyticalScreen::Pass::operator+=(const Pass& o) {
  compute += o.compute;
  interference += o.interference;
  beside += o.beside;
  for (int g = 0; g < GROUPS; ++g) {
    blocking[g] += o.blocking[g];
    overlapped[g] += o.overlapped[g];
  }
  return *this;
}
Seconds AnalyticalScreen::Pass::elapsed() const {
  Seconds blocked, over;
  for (int g = 0; g < GROUPS; ++g) {
    blocked += blocking[g];
    over += overlapped[g];
  }
  const Seconds busy = compute + interference + beside;
  return busy + blocked + std::max(Seconds(0), over - busy);
}

AnalyticalScreen::Pass AnalyticalScreen::Pass::operator*(double k) const {
  Pass r = *this;
  r.compute *= k;
  r.interference *= k;
  r.beside *= k;
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
  fp8_weight_cache += o.fp8_weight_cache;
  weight_casts += o.weight_casts;
  return *this;
}
AnalyticalScreen::Part AnalyticalScreen::Part::operator*(double k) const {
  return Part{.forward = forward * k,
              .backward = backward * k,
              .backward_input = backward_input * k,
              .backward_weight = backward_weight * k,
              .parameters = parameters * k,
              .activations = activations * k,
              .fp8_weight_cache = fp8_weight_cache * k,
              .weight_casts = weight_casts * k};
}
AnalyticalScreen::Part AnalyticalScreen::Part::operator-(const Part& o) const {
  Part r = *this;
  r += o * -1.0;
  return r;
}

// ---- the screen -----------------------------------------------------------------------------------

AnalyticalScreen::AnalyticalScreen(const MachineSpec& machine, const ModelSpec& model,
                                   const TrainingSpec& training, const CostModel& cost)
    : machine_(machine), model_(model), training_(training), cost_(cost) {}

GroupShape AnalyticalScreen::group_shape(GroupKind g, const ParallelismSpec& p) const {
  const RankOrder order(p);
  return {.ranks = order.group_size(g), .servers = order.servers_spanned(g, machine_.server.gpus)};
}

double AnalyticalScreen::inflight(const ParallelismSpec& p, int microbatches, int stage) {
  const auto key = std::tuple{int(p.schedule), p.pp, p.virtual_stages, microbatches, stage};
  if (auto it = inflight_.find(key); it != inflight_.end()) return it->second;
  const double held = inflight_microbatches(
      pipeline_schedule(p.schedule, p.pp, p.virtual_stages, microbatches, stage), p.virtual_stages);
  return inflight_.emplace(key, held).first->second;
}

Seconds AnalyticalScreen::collective_time(const CollectiveOp& op, const ParallelismSpec& p) const {
  const GroupShape shape = group_shape(op.group, p);
  if (shape.ranks < 2) return Seconds(0);
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
    const double k =
        std::max(1.0, std::min(double(gps) / double(stride), double(shape.ranks) / shape.servers));
    const double channels = std::min(k, double(nics));
    const double concurrent = std::max(1.0, double(gps) / k);
    inter = machine_.server.nic_bandwidth * std::min(channels, double(nics) / concurrent);
  }
  // An op issued `count` times back to back (ZeRO-3's gathers) pays each one's latency.
  return op.count * cost_.collective_time(op.kind, op.bytes, shape, machine_.server.nvlink_bandwidth, inter);
}

AnalyticalScreen::Pass AnalyticalScreen::price(const std::vector<ComputeOp>& compute,
                                               const std::vector<CollectiveOp>& comm,
                                               const ParallelismSpec& p) const {
  Pass x;
  x.compute = cost_.compute_time(compute);
  std::vector<CollectiveOp> beside;
  for (const CollectiveOp& op : comm) {
    if (RankOrder(p).group_size(op.group) <= 1) continue; // the engine skips them too
    // ZeRO-3's prefetched parameter gathers wait in the data-parallel stream behind the gradient
    // buckets of the previous backward (one NCCL communicator runs its collectives in order), so
    // the compute usually waits for them: the screen counts them as blocking.
    const bool gather_behind_buckets = op.group == GroupKind::DP || op.group == GroupKind::EXPERT_DP;
    const bool overlapped = !gather_behind_buckets && overlaps_compute(op, p);
    const Seconds t = collective_time(op, p);
    (overlapped ? x.overlapped : x.blocking)[int(op.group)] += t;
    if (overlapped && op.group == GroupKind::TP) beside.push_back(op);
    if (overlapped) {
      // Its kernel takes SMs from the compute it runs beside (the engine's rule).
      const GroupShape g = group_shape(op.group, p);
      const int sms = cost_.profile().sms;
      const double share = op.group == GroupKind::TP && p.tp_overlap
                               ? overlap_sm_share(USERBUFFERS_SMS, sms)
                               : nccl_overlap_share((g.ranks + g.servers - 1) / g.servers, g.servers,
                                                    machine_.server.nics, cost_.profile());
      x.interference += compute_under_overlap(x.compute, t, share) - x.compute;
    }
  }
  x.beside =
      beside_exposed(compute, beside, cost_, [&](const CollectiveOp& op) { return collective_time(op, p); });
  return x;
}

const AnalyticalScreen::Shape& AnalyticalScreen::shape(const Strategy& s) {
  const ParallelismSpec& p = s.parallelism;
  const bool zero3 = p.zero >= 3;
  const Key key{p.tp,
                p.cp,
                p.ep,
                s.micro_batch,
                p.sequence_parallel && p.tp > 1,
                int(p.recompute),
                zero3 ? p.dp : 0,
                zero3 ? 3 : (p.zero >= 1 ? 1 : 0)};
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
                .activations = w.chunk_activations(stage, 0),
                .fp8_weight_cache = w.fp8_weight_cache_bytes(stage),
                .weight_casts = cost_.compute_time(c.weight_casts.compute)};
  };
  const Part a0 = part(a, 0), a1 = part(a, 1), a2 = part(a, 2);
  Shape sh;
  sh.period = part(b, 1) - a1;
  sh.boundary = a1 - sh.period;
  sh.first = a0 - sh.period;
  sh.last = a2 - sh.period;
  sh.activation_out = a.chunk(0, 0).activation_out;
  const double dense_gradients = a.gradient_bytes(1).value(),
               expert_gradients = a.expert_gradient_bytes(1).value();
  sh.expert_fraction =
      dense_gradients + expert_gradients > 0 ? expert_gradients / (dense_gradients + expert_gradients) : 0.0;
  if (p.recompute == Recompute::FULL) sh.transient = a.layer_activations_no_recompute();
  if (p.recompute == Recompute::SELECTIVE)
    sh.transient = a.layer_activations_no_recompute() - a.layer_activations();
  // The optimizer step: launches plus a rate per parameter of the rank's shard, and one per local
  // parameter for the work over the whole gradient buffer (the proxy's shards are not the job's).
  const double shards = p.zero >= 1 ? a.zero_shards() : 1;
  auto step_time = [&](int stage, bool whole_buffer) {
    Seconds t;
    for (const ComputeOp& op : a.optimizer(stage))
      if ((op.name == ZERO_GRAD_OP) == whole_buffer) t += cost_.compute_time(op);
    return t;
  };
  const double dlocal = a0.parameters - a1.parameters;
  sh.optimizer_per_parameter =
      dlocal != 0 ? (step_time(0, false) - step_time(1, false)) / (dlocal / shards) : Seconds(0);
  sh.optimizer_per_local_parameter =
      dlocal != 0 ? (step_time(0, true) - step_time(1, true)) / dlocal : Seconds(0);
  sh.optimizer_fixed = step_time(1, false) + step_time(1, true) -
                       sh.optimizer_per_parameter * a1.parameters / shards -
                       sh.optimizer_per_local_parameter * a1.parameters;
  const Flops fa = a.model_flops() / a.training().global_batch;
  const Flops fb = b.model_flops() / b.training().global_batch;
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
  const Seconds tp_recv = collective_time(CollectiveOp{.name = "pp",
                                                       .kind = CollectiveKind::SEND_RECV,
                                                       .group = GroupKind::PP,
                                                       .bytes = sh.activation_out},
                                          p);

  // Stage 0, a middle stage and the last stage: the others equal the middle one.
  struct StageTime {
    Seconds f, b, bi, bw, recv, compute;
    Seconds group[GROUPS] = {};
    Part sum;
    std::vector<Seconds> chunk_backward; // by chunk, for the gradient reduction
    std::vector<double> chunk_gradients; // parameters, by chunk
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
        st.compute += x->compute + x->interference;
        st.group[int(GroupKind::TP)] += x->beside;
        Seconds over;
        for (int g = 0; g < GROUPS; ++g) over += x->overlapped[g];
        const Seconds hidden = std::min(over, x->compute + x->interference + x->beside);
        for (int g = 0; g < GROUPS; ++g)
          st.group[g] +=
              x->blocking[g] + (over > Seconds(0) ? x->overlapped[g] * (1 - hidden / over) : Seconds(0));
      }
      if (zb) {
        st.compute += part.backward_weight.compute + part.backward_weight.interference;
        for (int g = 0; g < GROUPS; ++g)
          st.group[g] += part.backward_weight.blocking[g] + part.backward_weight.overlapped[g];
      }
      st.f += part.forward.elapsed();
      st.b += part.backward.elapsed();
      st.bi += part.backward_input.elapsed();
      st.bw += part.backward_weight.elapsed();
      const double neighbours = (j > 0 ? 1.0 : 0.0) + (j < vstages - 1 ? 1.0 : 0.0);
      st.recv += tp_recv * neighbours;
      if (p.pipeline_sync) {
        // Megatron-LM 2021 (as the engine runs it): the sender moves each message itself, and
        // every send and receive call ends with a device synchronise that costs a kernel launch.
        st.recv += tp_recv * neighbours + cost_.profile().launch_overhead * (2 * neighbours);
      }
      st.chunk_backward.push_back(part.backward.elapsed());
      st.chunk_gradients.push_back(part.parameters);
    }
    return st;
  };
  const StageTime first = stage_time(0);
  const StageTime last = pp > 1 ? stage_time(pp - 1) : first;
  const StageTime middle = pp > 2 ? stage_time(1) : first;
  auto work = [](const StageTime& st) { return st.f + st.b + st.recv; };
  // Gradient reduction, optimizer step and (ZeRO >= 1) parameter all-gather of each stage.
  const double grad_element = gradient_element_bytes(training_);
  const double weight_element = weight_element_bytes(training_);
  const bool has_dp = long(p.dp) * p.cp > 1;
  const bool has_expert_dp = long(p.dp) * p.cp / p.ep > 1;
  const int chunk_layers = std::max(1, int(std::lround(periods * period)));
  const CollectiveKind grad_kind = p.zero >= 1 ? CollectiveKind::REDUCE_SCATTER : CollectiveKind::ALL_REDUCE;
  const double shards = p.zero >= 1 ? double(p.dp) * p.cp : 1.0;
  // Under ZeRO-3 each micro-batch's parameter gathers wait in the data-parallel stream behind the
  // previous micro-batch's gradient reduce-scatters, and its compute waits for them: a stage
  // runs no faster than that stream.
  auto dp_stream = [&](const StageTime& st) {
    if (p.zero < 3 || !has_dp) return Seconds(0);
    Seconds load;
    for (int c = 0; c < v; ++c) {
      const double bytes = st.chunk_gradients[size_t(c)] * grad_element;
      const int buckets = std::max(1, gradient_buckets(p, training_, Bytes(bytes), chunk_layers));
      load += buckets * collective_time(CollectiveOp{.name = "grad",
                                                     .kind = grad_kind,
                                                     .group = GroupKind::DP,
                                                     .bytes = Bytes(bytes / buckets)},
                                        p);
    }
    const int dp = int(GroupKind::DP);
    for (const Pass* x : {&st.sum.forward, &st.sum.backward}) load += x->blocking[dp] + x->overlapped[dp];
    return load;
  };
  const Seconds w_max = std::max({work(first), work(middle), work(last), dp_stream(first), dp_stream(last)});
  const Seconds w_mean = pp > 1 ? (work(first) + work(last) + (pp - 2) * work(middle)) / pp : work(first);

  Seconds bubble_per_stage = w_mean / v;
  if (p.schedule == PipelineScheduleKind::ZERO_BUBBLE) {
    // ZB-H1 (Qi et al. 2023): the weight-gradient passes fill the bubble, (p-1)(F + B - W).
    auto zb = [](const StageTime& st) { return std::max(Seconds(0), st.f + st.bi - st.bw + st.recv); };
    bubble_per_stage = pp > 1 ? (zb(first) + zb(last) + (pp - 2) * zb(middle)) / pp : Seconds(0);
  }
  const Seconds pipeline = m * w_max + (pp - 1) * bubble_per_stage;

  // SM share of the data-parallel stream's kernels (the engine's rule).
  const GroupShape dp_group = group_shape(GroupKind::DP, p);
  const double dp_share = nccl_overlap_share((dp_group.ranks + dp_group.servers - 1) / dp_group.servers,
                                             dp_group.servers, machine_.server.nics, cost_.profile());
  auto finish = [&](const StageTime& st, Seconds end, Seconds* dp_exposed, Seconds* optimizer,
                    Seconds* interference) {
    Seconds queue; // when the data-parallel stream is free
    Seconds under; // stream work that runs while the stage computes
    if (has_dp || has_expert_dp) {
      // Chunk c's gradients are released during its last backward pass, c passes before the end
      // (interleaved drain), bucket by bucket; without overlap all at the end (Megatron-LM 2021).
      // ZeRO-2/3 reduce-scatter every micro-batch's gradients: the earlier ones keep the stream
      // busy from the stage's first backward on.
      Seconds every_microbatch;
      for (int c = v - 1; c >= 0; --c) {
        // Dense gradients go to the dp*cp ranks, expert ones to the expert-data-parallel group,
        // bucket by bucket into one queue (the engine's stage driver).
        const double bytes = st.chunk_gradients[size_t(c)] * grad_element;
        const double dense = has_dp ? bytes * (1 - sh.expert_fraction) : 0.0;
        const double expert = has_expert_dp ? bytes * sh.expert_fraction : 0.0;
        const int dense_buckets = gradient_buckets(p, training_, Bytes(dense), chunk_layers);
        const int expert_buckets = gradient_buckets(p, training_, Bytes(expert), chunk_layers);
        const int buckets = std::max({1, dense_buckets, expert_buckets});
        auto bucket_time = [&](double b, int n, GroupKind g) {
          return n > 0
                     ? collective_time(
                           CollectiveOp{.name = "grad", .kind = grad_kind, .group = g, .bytes = Bytes(b / n)},
                           p)
                     : Seconds(0);
        };
        const Seconds each_dense = bucket_time(dense, dense_buckets, GroupKind::DP);
        const Seconds each_expert = bucket_time(expert, expert_buckets, GroupKind::EXPERT_DP);
        every_microbatch += each_dense * dense_buckets + each_expert * expert_buckets;
        const Seconds pass = st.chunk_backward[size_t(c)];
        for (int k = 0; k < buckets; ++k) {
          const Seconds release = p.dp_overlap ? end - c * pass - pass * (buckets - 1 - k) / buckets : end;
          const Seconds work =
              (k < dense_buckets ? each_dense : Seconds(0)) + (k < expert_buckets ? each_expert : Seconds(0));
          const Seconds begin = std::max(queue, release);
          queue = begin + work;
          under += std::max(Seconds(0), std::min(queue, end) - begin);
        }
      }
      if (p.zero >= 2 && m > 1) {
        // ZeRO-3's parameter gathers share the stream from the first forward on.
        Seconds start = end - m * (st.f + st.b + st.recv);
        if (p.zero >= 3) {
          const int dp = int(GroupKind::DP);
          for (const Pass* x : {&st.sum.forward, &st.sum.backward})
            every_microbatch += x->blocking[dp] + x->overlapped[dp];
          start = Seconds(0);
        }
        queue = std::max(queue, start + m * every_microbatch);
        under += (m - 1) * every_microbatch;
      }
    }
    // The stream's kernels slow the compute they run beside (compute_under_overlap).
    const Seconds compute = m * st.compute;
    *interference = compute_under_overlap(compute, std::min(under, compute), dp_share) - compute;
    end += *interference;
    queue += *interference;
    *dp_exposed = std::max(Seconds(0), queue - end);
    // The step's FP8 weight casts (the engine runs them in micro-batch 0's forward) count with it.
    *optimizer = sh.optimizer_per_parameter * st.sum.parameters / shards +
                 sh.optimizer_per_local_parameter * st.sum.parameters + sh.optimizer_fixed +
                 st.sum.weight_casts;
    if (p.zero == 1 || p.zero == 2) {
      const double params = st.sum.parameters * weight_element;
      if (has_dp)
        *dp_exposed += collective_time(CollectiveOp{.name = "gather",
                                                    .kind = CollectiveKind::ALL_GATHER,
                                                    .group = GroupKind::DP,
                                                    .bytes = Bytes(params * (1 - sh.expert_fraction))},
                                       p);
      if (has_expert_dp && sh.expert_fraction > 0)
        *dp_exposed += collective_time(CollectiveOp{.name = "gather",
                                                    .kind = CollectiveKind::ALL_GATHER,
                                                    .group = GroupKind::EXPERT_DP,
                                                    .bytes = Bytes(params * sh.expert_fraction)},
                                       p);
    }
    return end + *dp_exposed + *optimizer;
  };
  Seconds dp0, opt0, dpl, optl, slow0, slowl;
  const Seconds end0 = finish(first, pipeline, &dp0, &opt0, &slow0);
  const Seconds last_end = pipeline - (pp - 1) * (last.b + tp_recv) / v;
  const Seconds endl = pp > 1 ? finish(last, last_end, &dpl, &optl, &slowl) : end0;
  if (pp <= 1) slowl = slow0;
  const bool last_critical = endl > end0;
  const StageTime& crit = last_critical ? last : first;

  Estimate e;
  e.iteration = std::max(end0, endl);
  Breakdown& bd = e.breakdown;
  bd.compute = m * crit.compute + (last_critical ? slowl : slow0);
  bd.tp_comm_exposed = m * crit.group[int(GroupKind::TP)];
  bd.cp_comm_exposed = m * crit.group[int(GroupKind::CP)];
  bd.ep_comm_exposed = m * crit.group[int(GroupKind::EP)];
  bd.pp_comm_exposed = m * crit.recv;
  bd.dp_comm_exposed = (last_critical ? dpl : dp0) +
                       m * (crit.group[int(GroupKind::DP)] + crit.group[int(GroupKind::EXPERT_DP)]);
  bd.optimizer = last_critical ? optl : opt0;
  bd.pp_bubble = std::max(Seconds(0), e.iteration - (bd.compute + bd.tp_comm_exposed + bd.cp_comm_exposed +
                                                     bd.ep_comm_exposed + bd.pp_comm_exposed +
                                                     bd.dp_comm_exposed + bd.optimizer));

  // Memory of stage 0 and of the last stage (the middle ones hold no more).
  const double weights_shards = p.zero >= 3 ? double(p.dp) * p.cp : 1.0;
  const double grads_shards = p.zero >= 2 ? double(p.dp) * p.cp : 1.0;
  const double optimizer_bytes = optimizer_state_bytes(training_.precision);
  auto memory = [&](const StageTime& st, int stage) {
    const double held = inflight(p, int(m), stage);
    const double params = st.sum.parameters;
    double weights = params * weight_element / weights_shards;
    if (p.zero >= 3) {
      // The gathered weights live at once (zero3_gathers), dense and expert apart.
      const double chunk = params / v;
      double live = 0;
      if (has_dp) live += zero3_gathers(p, chunk * (1 - sh.expert_fraction), chunk_layers).live_elements;
      if (has_expert_dp) live += zero3_gathers(p, chunk * sh.expert_fraction, chunk_layers).live_elements;
      weights += live * weight_element;
    }
    const double activations = (held * st.sum.activations + sh.transient).value();
    // ZeRO-2/3 hold a chunk's whole gradients until reduced: two buckets of them with overlap.
    const double chunk_gradients = params / v * grad_element;
    const int buckets = gradient_buckets(p, training_, Bytes(chunk_gradients), chunk_layers);
    const double gradient_buffer =
        p.zero >= 2 && has_dp
            ? (p.dp_overlap && buckets > 0 ? std::min(chunk_gradients, 2 * chunk_gradients / buckets)
                                           : chunk_gradients)
            : 0.0;
    weights += st.sum.fp8_weight_cache.value();
    return weights + params * grad_element / grads_shards + params * optimizer_bytes / shards + activations +
           workspace_bytes(p, Bytes(activations)).value() + gradient_buffer;
  };
  const double mem0 = memory(first, 0);
  const double meml = pp > 1 ? memory(last, pp - 1) : mem0;
  e.memory = Bytes(std::max(mem0, meml));
  e.memory_stage = meml > mem0 ? pp - 1 : 0;
  e.model_flops =
      (sh.model_flops_per_period * model_.layers / period + sh.model_flops_fixed) * training_.global_batch;
  return e;
}

} // namespace odyssey
