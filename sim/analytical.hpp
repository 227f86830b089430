// The analytical fidelity: a strategy priced in closed form, without SimGrid, from the same
// workload and cost-model functions the engine uses. The planner screens every candidate with it
// before it simulates the best at fast and full fidelity. It prices the same operations through the
// same cost model as the engine, once per distinct operation shape, and combines them with the
// pipeline schedule's fill and drain and the cost model's collective times.
#pragma once

#include <map>
#include <tuple>
#include <vector>

#include "calibration/cost_model.hpp"
#include "models/spec.hpp"
#include "models/strategy.hpp"
#include "models/workload.hpp"
#include "sim/engine.hpp"
#include "topologies/machine.hpp"

namespace odyssey {

/// The closed-form estimate of one strategy.
struct Estimate {
  Seconds iteration;
  Breakdown breakdown; ///< of the critical stage
  Bytes memory;        ///< peak per GPU over the stages
  int memory_stage = 0;
  Flops model_flops; ///< of the whole job per iteration
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
  /// Uncontended time of `op` (all its `count` issues) in its group under `p`: the rates the
  /// screen gives each group kind, the cost model's algorithm choice. `odyssey run --explain`
  /// prints it.
  [[nodiscard]] Seconds collective_time(const CollectiveOp& op, const ParallelismSpec& p) const;
  /// Ranks of a group of kind `g` under `p`, and the servers they span.
  [[nodiscard]] GroupShape group_shape(GroupKind g, const ParallelismSpec& p) const;

  /// Time of one pass (forward or backward) of a part of a chunk; linear in its parts.
  struct Pass {
    static constexpr int GROUPS = 6; ///< GroupKind values
    Seconds compute;
    Seconds blocking[GROUPS] = {};   ///< by GroupKind: collectives that block
    Seconds overlapped[GROUPS] = {}; ///< by GroupKind: collectives that run under the compute
    Seconds interference;            ///< compute slowed by the SMs the overlapped kernels take
    Seconds beside; ///< TP collectives' time their own GEMM does not hide (beside_exposed): a stall
    Pass& operator+=(const Pass& o);
    Pass operator*(double k) const;
    Pass operator-(const Pass& o) const;
    /// Its duration: compute (slowed by overlapped kernels, stalled by `beside`), blocking
    /// collectives, and the part of the overlapped ones the compute does not hide.
    [[nodiscard]] Seconds elapsed() const;
  };
  /// One part of a chunk: forward, backward, and the two halves of the backward (zero-bubble).
  struct Part {
    Pass forward, backward, backward_input, backward_weight;
    double parameters = 0.0; ///< local parameters
    Bytes activations;       ///< kept per micro-batch
    Bytes
        fp8_weight_cache; ///< FP8 copies of the weights, kept for the step (Workload::fp8_weight_cache_bytes)
    Seconds weight_casts; ///< casting them, once per step (ChunkWork::weight_casts)
    Part& operator+=(const Part& o);
    Part operator*(double k) const;
    Part operator-(const Part& o) const;
  };
  /// Priced operations of one local shape.
  struct Shape {
    Part period;                           ///< one period of layers (moe.every layers; 1 for a dense model)
    Part first;                            ///< the first chunk's extra (embedding, minus one boundary)
    Part last;                             ///< the last chunk's extra (LM head, minus one boundary)
    Part boundary;                         ///< a middle chunk's extra (the boundary gathers)
    Bytes activation_out;                  ///< to the next stage per micro-batch
    double expert_fraction = 0.0;          ///< of a layer period's gradients, the experts' (reduced apart)
    Bytes transient;                       ///< activations a backward re-creates at once
    Seconds optimizer_per_parameter;       ///< of the optimizer step, per parameter of the rank's shard
    Seconds optimizer_per_local_parameter; ///< of its work over every local gradient (ZERO_GRAD_OP)
    Seconds optimizer_fixed;               ///< of the optimizer step's launches
    Flops model_flops_per_period;          ///< per sequence
    Flops model_flops_fixed;               ///< per sequence
  };

  /// One period of layers (one layer of a dense model) of `s`, priced: what every chunk repeats.
  [[nodiscard]] const Part& layer(const Strategy& s) { return shape(s).period; }

private:
  using Key = std::tuple<int, int, int, int, bool, int, int, int>;
  const Shape& shape(const Strategy& s);
  [[nodiscard]] Pass price(const std::vector<ComputeOp>& compute, const std::vector<CollectiveOp>& comm,
                           const ParallelismSpec& p) const;
  /// Workload::inflight_microbatches of `stage`, counted once per pipeline layout.
  double inflight(const ParallelismSpec& p, int microbatches, int stage);

  MachineSpec machine_;
  ModelSpec model_;
  TrainingSpec training_;
  const CostModel& cost_;
  std::map<Key, Shape> cache_;
  std::map<std::tuple<int, int, int, int, int>, double> inflight_;
};

} // namespace odyssey
