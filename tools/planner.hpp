// The capacity planner: every strategy for a scenario's model and machine, screened in closed
// form (the analytical fidelity of DESIGN.md), the best simulated at fast and then full fidelity.
// The screen prices the same operations through the same cost model as the engine, once per
// distinct operation shape, and combines them with the pipeline schedule's fill and drain and the
// cost model's collective times; it never touches SimGrid.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "calibration/cost_model.hpp"
#include "models/spec.hpp"
#include "models/workload.hpp"
#include "sim/engine.hpp"
#include "tools/scenario.hpp"
#include "topologies/machine.hpp"

namespace odyssey {

/// One strategy: the parallel layout and the micro-batch (the only training key the planner varies).
struct Strategy {
  ParallelismSpec parallelism;
  int micro_batch = 1;
  [[nodiscard]] long gpus() const { return parallelism.gpus(); }
};

/// "tp 8 pp 16 dp 8 cp 1 ep 1 mb 1 1f1b v1 zero 1 recompute full sp"
std::string describe(const Strategy& s);

/// The closed-form estimate of one strategy.
struct Estimate {
  Seconds iteration;
  Breakdown breakdown;       ///< of the critical stage
  Bytes memory;              ///< peak per GPU over the stages
  int memory_stage = 0;
  double model_flops = 0.0;  ///< of the whole job per iteration
};

/// Prices strategies in closed form. Operations are priced once per distinct local shape (tp,
/// cp, ep, micro-batch, sequence parallelism, recomputation; dp too under ZeRO-3, whose parameter
/// gathers span it) from two small proxy workloads of 3 and 6 layer periods over 3 stages:
/// their difference is the cost of one period of layers, the rest the embedding, the LM head and
/// the stage boundaries. Candidates that share a shape share the priced operations.
class AnalyticalScreen {
public:
  AnalyticalScreen(const MachineSpec& machine, const ModelSpec& model, const TrainingSpec& training,
                   const CostModel& cost);
  /// The estimate of `s`, which must keep every rule of check_strategy.
  [[nodiscard]] Estimate evaluate(const Strategy& s);
  /// Distinct shapes priced so far.
  [[nodiscard]] std::size_t shapes() const { return cache_.size(); }

  /// Time of one pass (forward or backward) of a part of a chunk; linear in its parts.
  struct Pass {
    static constexpr int GROUPS = 6;  ///< GroupKind values
    double compute = 0.0;
    double blocking[GROUPS] = {};    ///< by GroupKind: collectives that block
    double overlapped[GROUPS] = {};  ///< by GroupKind: collectives that run under the compute
    Pass& operator+=(const Pass& o);
    Pass operator*(double k) const;
    Pass operator-(const Pass& o) const;
  };
  /// One part of a chunk: forward, backward, and the two halves of the backward (zero-bubble).
  struct Part {
    Pass forward, backward, backward_input, backward_weight;
    double parameters = 0.0;   ///< local parameters
    double activations = 0.0;  ///< bytes kept per micro-batch
    Part& operator+=(const Part& o);
    Part operator*(double k) const;
    Part operator-(const Part& o) const;
  };
  /// Priced operations of one local shape.
  struct Shape {
    Part period;        ///< one period of layers (moe.every layers; 1 for a dense model)
    Part first;         ///< the first chunk's extra (embedding, minus one boundary)
    Part last;          ///< the last chunk's extra (LM head, minus one boundary)
    Part boundary;      ///< a middle chunk's extra (the boundary gathers)
    double activation_out = 0.0;   ///< bytes to the next stage per micro-batch
    double expert_fraction = 0.0;  ///< of a layer period's gradients, the experts' (reduced apart)
    double transient = 0.0;        ///< activations a backward re-creates at once
    double optimizer_per_parameter = 0.0;  ///< seconds per local parameter of the optimizer step
    double optimizer_fixed = 0.0;          ///< seconds of launches
    double model_flops_per_period = 0.0;   ///< per sequence
    double model_flops_fixed = 0.0;        ///< per sequence
  };

private:
  using Key = std::tuple<int, int, int, int, bool, int, int, int>;
  const Shape& shape(const Strategy& s);
  [[nodiscard]] Pass price(const std::vector<ComputeOp>& compute, const std::vector<CollectiveOp>& comm,
                           const ParallelismSpec& p) const;
  [[nodiscard]] double collective_seconds(const CollectiveOp& op, const ParallelismSpec& p) const;
  [[nodiscard]] GroupShape group_shape(GroupKind g, const ParallelismSpec& p) const;

  MachineSpec machine_;
  ModelSpec model_;
  TrainingSpec training_;
  const CostModel& cost_;
  std::map<Key, Shape> cache_;
};

/// What `odyssey plan` searches and how many candidates each stage keeps.
struct PlanOptions {
  long min_gpus = 0;          ///< 0: the scenario's GPU count
  long max_gpus = 0;
  int top = 15;               ///< rows printed
  int fast = -1;              ///< candidates simulated at fast fidelity (-1: 200 for one GPU count, 3 per count of a range)
  int full = -1;              ///< candidates simulated at full fidelity (-1: 3 for one GPU count, 1 for a range)
  int jobs = 0;               ///< simulations at once (0: every core)
  std::optional<double> deadline_days;
};

/// One ranked (or pruned) strategy.
struct PlanRow {
  Strategy strategy;
  std::string fidelity;       ///< where the figures come from: "analytical", "fast" or "full"
  Seconds iteration;
  double tokens_per_s = 0.0;
  double mfu = 0.0;
  Bytes memory;
  bool fits = true;
  Breakdown breakdown;
  Seconds analytical;         ///< the screen's iteration time, kept for comparison
  std::optional<Seconds> time_to_train;
  std::string pruned;         ///< why it was set aside (empty: ranked)
  std::vector<MemoryBreakdown> memory_per_stage;  ///< from the memory model, once simulated
  bool scenario_plan = false; ///< the scenario's own strategy (always simulated when in range)
};

struct PlanResult {
  std::string scenario;
  std::string model;
  std::string machine;
  long min_gpus = 0;
  long max_gpus = 0;
  long candidates = 0;        ///< strategies enumerated
  long screened = 0;          ///< passed the rules and priced in closed form
  long fitting = 0;           ///< of those, fit in memory
  std::size_t shapes = 0;     ///< distinct operation shapes priced
  double screen_seconds = 0.0;
  double fast_seconds = 0.0;
  double full_seconds = 0.0;
  long fast_runs = 0;
  long full_runs = 0;
  std::vector<PlanRow> ranked;          ///< best first
  std::vector<PlanRow> best_per_gpus;   ///< with a GPU range: the best of each GPU count, fewest GPUs first
  std::map<std::string, long> pruned_by_rule;     ///< rule key -> candidates
  std::map<std::string, std::string> rule_example;  ///< rule key -> one message
  std::vector<PlanRow> pruned_memory;   ///< the fastest that did not fit, with by how much
  std::optional<double> tokens;
  std::optional<double> deadline_days;
  std::optional<PlanRow> deadline_answer;  ///< fewest GPUs meeting the deadline
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
