#include "models/strategy.hpp"

#include <algorithm>
#include <string_view>
#include <tuple>
#include <utility>

#include <fmt/format.h>

#include "models/input/diagnostics.hpp"
#include "models/wording.hpp"

namespace odyssey {
namespace {

/// The first rule a strategy breaks, as a problem at its key; nothing when it keeps them all.
using Problem = std::optional<StrategyProblem>;

Problem problem(std::string_view key, std::string message) {
  return StrategyProblem{.key = std::string(key), .message = std::move(message)};
}

/// Stage layouts: even, or with `first_stage_layers` / `last_stage_layers` set and the rest split
/// evenly over the other stages. Interleaved, every model chunk holds the same number of layers
/// except the first chunk of stage 0 and the last chunk of the last stage, which give up the layers
/// their stage lacks (Llama 3, arXiv 2407.21783 sec. 3.3.2: those chunks keep only the embedding
/// and the LM head).
Problem check_pipeline(const ModelSpec& m, const ParallelismSpec& p) {
  const int v = p.virtual_stages;
  const bool interleaved = p.schedule == PipelineScheduleKind::INTERLEAVED_1F1B;
  if (p.schedule == PipelineScheduleKind::ZERO_BUBBLE && v != 1)
    return problem(
        "parallelism.virtual_stages",
        fmt::format("zero-bubble (ZB-H1) runs one model chunk per stage; virtual_stages must be 1, got {}",
                    v));
  if (interleaved && v < 2)
    return problem("parallelism.virtual_stages",
                   fmt::format("interleaved-1f1b needs virtual_stages > 1, got {}", v));
  if (!interleaved && v != 1)
    return problem(
        "parallelism.virtual_stages",
        fmt::format("virtual_stages ({}) needs schedule interleaved-1f1b, got {}", v, to_string(p.schedule)));

  const int first = p.first_stage_layers;
  const int last = p.last_stage_layers;
  if (first == 0 && last == 0) {
    if (m.layers % p.pp != 0)
      return problem("parallelism.pp",
                     fmt::format("layers ({}) must be divisible by pp ({})", m.layers, p.pp));
    if ((m.layers / p.pp) % v != 0)
      return problem(
          "parallelism.virtual_stages",
          fmt::format("layers per stage ({} / pp {} = {}) must be divisible by virtual_stages ({})", m.layers,
                      p.pp, m.layers / p.pp, v));
    return std::nullopt;
  }

  const std::string_view key = first > 0 ? "parallelism.first_stage_layers" : "parallelism.last_stage_layers";
  const int fixed = (first > 0 ? 1 : 0) + (last > 0 ? 1 : 0);
  if (fixed == 2 && p.pp < 3)
    return problem(key, fmt::format("first_stage_layers and last_stage_layers together need pp >= 3 (a stage "
                                    "between them), got pp {}",
                                    p.pp));
  if (p.pp < 2)
    return problem(key, fmt::format("{} needs pp >= 2, got pp {}", key.substr(key.find('.') + 1), p.pp));
  const int others = p.pp - fixed;
  const int rest = m.layers - first - last;
  std::string names = "layers";
  std::string values = std::to_string(m.layers);
  for (const auto& [name, value] :
       {std::pair{"first_stage_layers", first}, std::pair{"last_stage_layers", last}}) {
    if (value > 0) {
      names += fmt::format(" - {}", name);
      values += fmt::format(" - {}", value);
    }
  }
  const std::string left = fmt::format("{} ({} = {})", names, values, rest);
  if (rest < others)
    return problem(key, fmt::format("{} leaves fewer layers than the {} other stages; each needs at least 1",
                                    left, others));
  if (rest % others != 0)
    return problem(key, fmt::format("{} must be divisible by the {} other stages", left, others));
  const int per_stage = rest / others;
  if (per_stage % v != 0)
    return problem(
        "parallelism.virtual_stages",
        fmt::format("layers per other stage ({} / {} = {}) must be divisible by virtual_stages ({})", rest,
                    others, per_stage, v));
  const int chunk = per_stage / v;
  for (const auto& [name, value, which] :
       {std::tuple{"first_stage_layers", first, "first"}, std::tuple{"last_stage_layers", last, "last"}}) {
    if (value > 0 && value < (v - 1) * chunk)
      return problem(
          fmt::format("parallelism.{}", name),
          fmt::format("with virtual_stages {} only the {} model chunk is shortened: {} ({}) must be at "
                      "least (virtual_stages - 1) x layers per chunk ({} x {} = {})",
                      v, which, name, value, v - 1, chunk, (v - 1) * chunk));
  }
  return std::nullopt;
}

} // namespace

std::optional<StrategyProblem> check_model(const ModelSpec& m) {
  if (m.kv_heads > m.heads)
    return problem("model.kv_heads",
                   fmt::format("kv_heads ({}) must not exceed heads ({})", m.kv_heads, m.heads));
  if (m.kv_heads < 1 || m.heads % m.kv_heads != 0)
    return problem("model.kv_heads",
                   fmt::format("heads ({}) must be divisible by kv_heads ({})", m.heads, m.kv_heads));
  if (m.heads < 1 || m.hidden % m.heads != 0)
    return problem("model.heads",
                   fmt::format("hidden ({}) must be divisible by heads ({})", m.hidden, m.heads));
  if (m.moe) {
    const MoeSpec& e = *m.moe;
    if (e.top_k > e.experts)
      return problem("model.moe.top_k",
                     fmt::format("top_k ({}) must not exceed experts ({})", e.top_k, e.experts));
    if (e.every < 1 || m.layers % e.every != 0)
      return problem("model.moe.every",
                     fmt::format("layers ({}) must be divisible by moe.every ({})", m.layers, e.every));
  }
  return std::nullopt;
}

std::optional<StrategyProblem> check_strategy(const ModelSpec& m, const TrainingSpec& t,
                                              const ParallelismSpec& p,
                                              const std::optional<JobCapacity>& capacity,
                                              DpChoice dp_choice) {
  if (t.fp8_param_gather && t.precision != Precision::FP8)
    return problem("training.fp8_param_gather",
                   fmt::format("FP8 primary weights need precision fp8, got {}", to_string(t.precision)));
  if (m.heads % p.tp != 0)
    return problem("parallelism.tp", fmt::format("heads ({}) must be divisible by tp ({})", m.heads, p.tp));
  if (m.kv_heads % p.tp != 0 && p.tp % m.kv_heads != 0)
    return problem(
        "parallelism.tp",
        fmt::format("kv_heads ({}) and tp ({}) must divide one another (with fewer KV heads than tp "
                    "ranks, each KV head is replicated)",
                    m.kv_heads, p.tp));
  if (m.ffn_hidden % p.tp != 0)
    return problem("parallelism.tp",
                   fmt::format("ffn_hidden ({}) must be divisible by tp ({})", m.ffn_hidden, p.tp));
  if (m.moe && m.moe->expert_ffn_hidden % p.tp != 0)
    return problem("parallelism.tp", fmt::format("moe.expert_ffn_hidden ({}) must be divisible by tp ({})",
                                                 m.moe->expert_ffn_hidden, p.tp));

  if (p.cp > 1 && m.seq_len % (2 * p.cp) != 0)
    return problem(
        "parallelism.cp",
        fmt::format("seq_len ({}) must be divisible by 2 x cp (2 x {} = {}): context parallelism cuts "
                    "the sequence into 2 x cp chunks for causal load balancing",
                    m.seq_len, p.cp, 2 * p.cp));
  if (p.sequence_parallel && p.cp == 1 && m.seq_len % p.tp != 0)
    return problem("parallelism.sequence_parallel",
                   fmt::format("sequence_parallel needs seq_len ({}) divisible by tp ({})", m.seq_len, p.tp));
  if (p.sequence_parallel && p.cp > 1 && (m.seq_len / p.cp) % p.tp != 0)
    return problem("parallelism.sequence_parallel",
                   fmt::format("sequence_parallel needs seq_len / cp ({} / {} = {}) divisible by tp ({})",
                               m.seq_len, p.cp, m.seq_len / p.cp, p.tp));

  if (p.pipeline_sync && p.pp_overlap)
    return problem("parallelism.pipeline_sync",
                   "pipeline_sync makes pipeline send/recv blocking: it cannot be combined with overlap.pp");

  if (p.ep > 1 && !m.moe)
    return problem(
        "parallelism.ep",
        fmt::format("expert parallelism (ep {}) needs a mixture-of-experts model (model.moe)", p.ep));
  if (m.moe && m.moe->experts % p.ep != 0)
    return problem("parallelism.ep",
                   fmt::format("moe.experts ({}) must be divisible by ep ({})", m.moe->experts, p.ep));

  if (Problem pipeline = check_pipeline(m, p)) return pipeline;

  if (t.global_batch % t.micro_batch != 0)
    return problem("training.micro_batch",
                   fmt::format("global_batch ({}) must be divisible by micro_batch ({})", t.global_batch,
                               t.micro_batch));

  if (capacity) {
    const long gpus = static_cast<long>(p.tp) * p.pp * p.dp * p.cp;
    const long per_server = capacity->gpus_per_server;
    const long servers = (gpus + per_server - 1) / per_server;
    if (servers > capacity->servers)
      return problem(dp_choice == DpChoice::AUTO ? "parallelism.pp" : "parallelism.dp",
                     fmt::format("job needs {} {} (tp {} x pp {} x dp {}{} = {} GPUs, {} per server) but "
                                 "machine '{}' has {}",
                                 grouped(servers), noun_for(double(servers), "server"), p.tp, p.pp, p.dp,
                                 p.cp > 1 ? fmt::format(" x cp {}", p.cp) : "", grouped(gpus), per_server,
                                 capacity->machine, grouped(capacity->servers)));
  }
  if (p.dp % p.ep != 0)
    return problem("parallelism.ep",
                   fmt::format("ep ({}) must divide dp ({}): expert-parallel groups are carved "
                               "out of the data-parallel replicas",
                               p.ep, p.dp));

  if (t.global_batch % (t.micro_batch * p.dp) != 0)
    return problem("training.global_batch",
                   fmt::format("global_batch ({}) must be divisible by micro_batch x dp ({} x {} = {})",
                               t.global_batch, t.micro_batch, p.dp, t.micro_batch * p.dp));
  const int microbatches = t.global_batch / (t.micro_batch * p.dp);
  if (p.schedule == PipelineScheduleKind::INTERLEAVED_1F1B && microbatches % p.pp != 0)
    return problem(
        "parallelism.schedule",
        fmt::format(
            "interleaved-1f1b needs the micro-batches per replica (global_batch / (micro_batch x dp) = {}) "
            "to be a multiple of pp ({})",
            microbatches, p.pp));
  return std::nullopt;
}

std::string describe(const Strategy& s) {
  const ParallelismSpec& p = s.parallelism;
  const bool uneven = p.first_stage_layers > 0 || p.last_stage_layers > 0;
  return fmt::format(
      "tp {} pp {} dp {} cp {} ep {} mb {} {}{} zero {} recompute {}{}{}{}", p.tp, p.pp, p.dp, p.cp, p.ep,
      s.micro_batch, to_string(p.schedule), p.virtual_stages > 1 ? fmt::format(" v{}", p.virtual_stages) : "",
      p.zero, to_string(p.recompute), p.sequence_parallel ? " sp" : "",
      uneven ? fmt::format(" layers first {} last {}", p.first_stage_layers, p.last_stage_layers) : "",
      p.offload.optimizer != OffloadDevice::NONE
          ? fmt::format(" offload {}{}", to_string(p.offload.optimizer),
                        p.offload.delayed_update ? " delayed" : "")
          : "");
}

std::string describe_layout(const ParallelismSpec& p) {
  std::string s = fmt::format("tp {} x pp {} x dp {}", p.tp, p.pp, p.dp);
  if (p.cp > 1)
    s += fmt::format(" x cp {} ({})", p.cp, p.cp_kind == ContextParallelKind::RING ? "ring" : "all-gather");
  if (p.ep > 1) s += fmt::format(", ep {}", p.ep);
  s += fmt::format(", {}", to_string(p.schedule));
  if (p.virtual_stages > 1) s += fmt::format(" v{}", p.virtual_stages);
  s += fmt::format(", recompute {}", to_string(p.recompute));
  if (p.sequence_parallel) s += ", sequence parallel";
  if (p.zero > 0) s += fmt::format(", zero {}", p.zero);
  if (p.offload.optimizer != OffloadDevice::NONE)
    s += fmt::format(", optimizer offloaded to {}{}", to_string(p.offload.optimizer),
                     p.offload.delayed_update ? " (delayed update)" : "");
  return s;
}

int RankOrder::group_size(GroupKind g) const {
  switch (g) {
  case GroupKind::TP: return p_.tp;
  case GroupKind::CP: return p_.cp;
  case GroupKind::EP: return p_.ep;
  case GroupKind::PP: return 2;
  case GroupKind::DP: return p_.dp * p_.cp;
  case GroupKind::EXPERT_DP: return p_.dp * p_.cp / p_.ep;
  }
  return 1;
}

int RankOrder::servers_spanned(GroupKind g, int gpus_per_server) const {
  const long tp = p_.tp, cp = p_.cp;
  if (g == GroupKind::PP) // neighbouring stages are tp x cp x dp ranks apart
    return tp * cp * p_.dp < gpus_per_server ? 1 : 2;
  // The ranks from a group's first member to its last, rounded up to whole servers.
  long extent = tp;
  switch (g) {
  case GroupKind::TP: extent = tp; break;
  case GroupKind::CP: extent = tp * cp; break;
  case GroupKind::EP: extent = tp * cp * p_.ep; break;
  case GroupKind::DP:
  case GroupKind::EXPERT_DP: extent = tp * cp * p_.dp; break;
  case GroupKind::PP: break;
  }
  const long servers = (extent + gpus_per_server - 1) / gpus_per_server;
  return int(std::clamp<long>(servers, 1, group_size(g)));
}

} // namespace odyssey
