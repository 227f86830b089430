// The capacity planner: every strategy for a scenario's model and machine, screened in closed
// form (the analytical fidelity, sim/analytical), the best simulated at fast and then full
// fidelity through the one run path (tools/run) that `odyssey run` takes.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "calibration/cost_model.hpp"
#include "calibration/published.hpp"
#include "models/spec.hpp"
#include "models/workload.hpp"
#include "sim/analytical.hpp"
#include "sim/engine.hpp"
#include "tools/scenario.hpp"
#include "topologies/machine.hpp"

namespace odyssey {

/// What `odyssey plan` searches and how many candidates each stage keeps.
struct PlanOptions {
  long min_gpus = 0; ///< 0: the scenario's GPU count
  long max_gpus = 0;
  int top = 15; ///< rows printed
  int fast =
      -1; ///< candidates simulated at fast fidelity (-1: 200 for one GPU count, 3 per count of a range)
  int full = -1; ///< candidates simulated at full fidelity (-1: 3 for one GPU count, 1 for a range)
  int jobs = 0;  ///< simulations at once (0: every core)
  std::optional<double> deadline_days;
  /// With a deadline: the time to train with failures at P90 (the scenario's failure rates,
  /// checkpoint and recovery) must meet it, not the failure-free time.
  bool deadline_p90 = false;
  /// Share of each GPU's memory a plan leaves free, for what the memory model's workspace estimate
  /// misses (allocator peaks, fragmentation beyond its assumption, framework buffers): a planning
  /// choice; `odyssey run` still reports fit against the whole memory.
  double memory_margin = 0.05;
};

/// The memory a plan may use per GPU: the GPU's less the planner's margin. The one place the
/// planner decides whether a layout fits.
struct PlanMemoryLimit {
  Bytes gpu;           ///< the GPU's memory
  double margin = 0.0; ///< PlanOptions::memory_margin
  [[nodiscard]] Bytes usable() const { return gpu * (1.0 - margin); }
  [[nodiscard]] bool fits(Bytes need) const { return need <= usable(); }
};

/// One ranked (or pruned) strategy.
struct PlanRow {
  Strategy strategy;
  std::string fidelity; ///< where the figures come from: "analytical", "fast" or "full"
  Seconds iteration;
  double tokens_per_s = 0.0;
  double mfu = 0.0;
  Bytes memory;
  bool fits = true;
  Breakdown breakdown;
  Seconds analytical; ///< the screen's iteration time, kept for comparison
  std::optional<Seconds> time_to_train;
  std::optional<Seconds> time_to_train_p90;      ///< with failures, for a --deadline-p90 answer
  std::string pruned;                            ///< why it was set aside (empty: ranked)
  std::vector<MemoryBreakdown> memory_per_stage; ///< from the memory model, once simulated
  bool scenario_plan = false; ///< the scenario's own strategy (always simulated when in range)
};

struct PlanResult {
  std::string scenario;
  std::string model;
  std::string machine;
  long min_gpus = 0;
  long max_gpus = 0;
  long candidates = 0;       ///< strategies enumerated
  long screened = 0;         ///< passed the rules and priced in closed form
  long fitting = 0;          ///< of those, fit in memory
  long offload_variants = 0; ///< of those, ZeRO-Offload variants of candidates too big for GPU memory
  std::size_t shapes = 0;    ///< distinct operation shapes priced
  double screen_seconds = 0.0;
  double fast_seconds = 0.0;
  double full_seconds = 0.0;
  long fast_runs = 0;
  long full_runs = 0;
  std::vector<PlanRow> ranked;        ///< best first
  std::vector<PlanRow> best_per_gpus; ///< with a GPU range: the best of each GPU count, fewest GPUs first
  std::map<std::string, long> pruned_by_rule;      ///< rule key -> candidates
  std::map<std::string, std::string> rule_example; ///< rule key -> one message
  std::vector<PlanRow> pruned_memory;              ///< the fastest that did not fit, with by how much
  std::optional<double> tokens;
  std::optional<double> deadline_days;
  std::optional<PlanRow> deadline_answer;  ///< fewest GPUs meeting the deadline
  std::optional<PlanRow> deadline_closest; ///< when none meets it: the shortest time to train
  PlanMemoryLimit memory_limit;
  /// The best MFU published for the GPU in the scenario's precision, when the table has one, and
  /// the profile that priced the plans.
  std::optional<PublishedMfuRow> published_mfu;
  std::string profile;
  ProfileKind profile_kind = ProfileKind::DATASHEET;
};

/// Searches every strategy of `scenario`'s model on its machine.
PlanResult plan(const Scenario& scenario, const CostModel& cost, const PlanOptions& options);

std::string render_plan_text(const PlanResult& r, int top);
std::string render_plan_json(const PlanResult& r, int top);
std::string render_plan_csv(const PlanResult& r);

/// Every strategy the planner enumerates for `gpus_min..gpus_max` GPUs (before any rule),
/// in a fixed order; the scenario's non-searched keys (overlaps, cp_kind, buckets) are kept.
std::vector<Strategy> enumerate_strategies(const Scenario& scenario, long gpus_min, long gpus_max);

} // namespace odyssey
