// The per-rank program of one training iteration: what each pipeline stage computes and
// communicates for each micro-batch, in the order its pipeline schedule runs it, plus the
// job-level FLOP counts and the memory model. Pure C++; knows nothing of SimGrid or of costs.
#pragma once

#include <vector>

#include "models/ops.hpp"
#include "models/spec.hpp"

namespace odyssey {

/// Work of one pass over one model chunk for one micro-batch, on one GPU of the TP group.
/// TP collectives are blocking (Megatron-LM): time = compute + communication, in any order.
struct WorkBlock {
  std::vector<ComputeOp> compute;
  std::vector<CollectiveOp> comm;
};

/// A contiguous range of layers held by one pipeline stage (one model chunk when interleaved).
struct ChunkWork {
  int first_layer = 0;
  int layers = 0;
  bool has_embedding = false;  ///< first virtual stage
  bool has_lm_head = false;    ///< last virtual stage (LM head + loss)
  WorkBlock forward;
  WorkBlock backward;          ///< the whole backward pass, including recomputation when enabled
  WorkBlock backward_input;    ///< dX half of `backward` (zero-bubble schedules)
  WorkBlock backward_weight;   ///< dW half of `backward`
  Bytes activation_out;        ///< bytes each GPU of the stage sends to the next stage per micro-batch
                               ///< (the gradient sent back has the same size)
  Bytes parameters;            ///< bytes of this chunk's parameters on one GPU, in the gradient dtype
};

enum class StepKind { FORWARD, BACKWARD, BACKWARD_INPUT, BACKWARD_WEIGHT };

/// One step of a stage's pipeline schedule.
struct PipelineStep {
  StepKind kind = StepKind::FORWARD;
  int microbatch = 0;
  int chunk = 0;   ///< model chunk on this stage, 0..virtual_stages-1 (virtual stage = chunk*pp + stage)
};

/// Memory of one GPU of a pipeline stage at its peak.
struct MemoryBreakdown {
  Bytes weights;
  Bytes gradients;
  Bytes optimizer_states;
  Bytes activations;
  Bytes workspace;  ///< communication buffers, cuBLAS workspace, allocator fragmentation
  [[nodiscard]] Bytes total() const { return weights + gradients + optimizer_states + activations + workspace; }
};

class Workload {
public:
  /// Builds the program; throws std::invalid_argument for combinations it cannot model
  /// (the scenario loader checks divisibility first and reports positions).
  Workload(ModelSpec model, TrainingSpec training, ParallelismSpec parallelism);

  [[nodiscard]] const ModelSpec& model() const { return model_; }
  [[nodiscard]] const TrainingSpec& training() const { return training_; }
  [[nodiscard]] const ParallelismSpec& parallelism() const { return parallelism_; }

  [[nodiscard]] int stages() const { return parallelism_.pp; }
  [[nodiscard]] int chunks_per_stage() const { return parallelism_.virtual_stages; }
  /// Micro-batches each data-parallel replica runs per iteration.
  [[nodiscard]] int microbatches() const;
  [[nodiscard]] const ChunkWork& chunk(int stage, int chunk_index) const;
  /// Steps of `stage` in execution order.
  [[nodiscard]] const std::vector<PipelineStep>& schedule(int stage) const;
  /// Gradient bytes one GPU of `stage` reduces across data parallelism per iteration.
  [[nodiscard]] Bytes gradient_bytes(int stage) const;
  /// Optimizer step of one GPU of `stage`.
  [[nodiscard]] const std::vector<ComputeOp>& optimizer(int stage) const;

  /// Model FLOPs of one iteration for the whole job: forward + backward, no recomputation
  /// (Korthikanti et al. 2022 eq. 7 convention, with the model's actual FFN and GQA shapes).
  [[nodiscard]] Flops model_flops() const;
  /// FLOPs the hardware executes in one iteration for the whole job, recomputation included.
  [[nodiscard]] Flops hardware_flops() const;
  /// Number of parameters of the model.
  [[nodiscard]] double parameters() const;
  /// Peak memory of one GPU of `stage`.
  [[nodiscard]] MemoryBreakdown memory(int stage) const;

private:
  ModelSpec model_;
  TrainingSpec training_;
  ParallelismSpec parallelism_;
  std::vector<std::vector<ChunkWork>> chunks_;          // [stage][chunk]
  std::vector<std::vector<PipelineStep>> schedules_;    // [stage]
  std::vector<std::vector<ComputeOp>> optimizer_;       // [stage]
  std::vector<Bytes> gradient_bytes_;                   // [stage]
};

} // namespace odyssey
