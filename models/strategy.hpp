// The rules a parallel strategy must keep and where its ranks sit: one home for both, read by the
// scenario loader (which reports a broken rule at its key), the Workload (which refuses one), the
// engine and the planner's screen (which lay groups over servers in the same rank order).
#pragma once

#include <optional>
#include <string>

#include "models/ops.hpp"
#include "models/spec.hpp"

namespace odyssey {

/// A rule a model or a strategy breaks: the scenario key it is reported at and the message, with
/// the numbers.
struct StrategyProblem {
  std::string key; ///< e.g. "parallelism.tp"
  std::string message;
};

/// Whether dp was given or chosen by `dp: auto` (a job too large is then blamed on pp).
enum class DpChoice { GIVEN, AUTO };

/// What the job-size rule needs of a machine.
struct JobCapacity {
  std::string machine; ///< its name, for the message
  int gpus_per_server = 1;
  long servers = 0;
};

/// The first rule of the model's own shape that `model` breaks (kv_heads and heads, hidden and
/// heads, the mixture of experts' top_k and period), or nothing.
std::optional<StrategyProblem> check_model(const ModelSpec& model);

/// The first cross-field rule that `parallelism` breaks for `model` and `training`'s batch sizes
/// (divisibility by tp, cp, ep, the pipeline layout, micro-batches) and, given `capacity`, the job
/// size, or that `training` breaks (FP8 primary weights without FP8 training); or nothing.
std::optional<StrategyProblem> check_strategy(const ModelSpec& model, const TrainingSpec& training,
                                              const ParallelismSpec& parallelism,
                                              const std::optional<JobCapacity>& capacity = std::nullopt,
                                              DpChoice dp_choice = DpChoice::GIVEN);

/// One strategy: the parallel layout and the micro-batch (the only training key the planner varies).
struct Strategy {
  ParallelismSpec parallelism;
  int micro_batch = 1;
  [[nodiscard]] long gpus() const { return parallelism.gpus(); }
};

/// "tp 8 pp 16 dp 8 cp 1 ep 1 mb 1 1f1b v1 zero 1 recompute full sp": every searched key, as plan
/// rows name a strategy.
std::string describe(const Strategy& s);

/// "tp 8 x pp 24 x dp 48, interleaved-1f1b v2, recompute full": the layout as a report states it.
std::string describe_layout(const ParallelismSpec& p);

/// Megatron-core's rank order tp-cp-ep-dp-pp (tp varies fastest): a block of tp x cp x ep ranks
/// of one pipeline stage (the ep ranks being consecutive data-parallel ranks) is a contiguous
/// range, the dp / ep blocks of a stage follow one another, and stages are outermost.
class RankOrder {
public:
  explicit RankOrder(const ParallelismSpec& parallelism) : p_(parallelism) {}

  /// The first rank of block `replica` (0 .. dp/ep - 1) of `stage`.
  [[nodiscard]] long block_base(int stage, int replica) const {
    return long(p_.tp) * p_.cp * (long(replica) * p_.ep + long(p_.dp) * stage);
  }
  /// The offset inside a block of tensor rank `t`, context rank `c` and expert rank `e`.
  [[nodiscard]] long local_index(int t, int c, int e) const {
    return t + long(p_.tp) * (c + long(p_.cp) * e);
  }

  /// Ranks in one group of kind `g`: a pipeline group is the two neighbours of one transfer; the
  /// data-parallel group of dense gradients spans dp x cp ranks, that of experts dp x cp / ep.
  [[nodiscard]] int group_size(GroupKind g) const;

  /// Servers one group of kind `g` spans when rank r runs on GPU r of servers of
  /// `gpus_per_server` GPUs (the ranks the group's members are apart, over the server size).
  [[nodiscard]] int servers_spanned(GroupKind g, int gpus_per_server) const;

private:
  ParallelismSpec p_;
};

} // namespace odyssey
