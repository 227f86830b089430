// The per-rank program of one training iteration: what each pipeline stage computes and
// communicates for each micro-batch, in the order its pipeline schedule runs it, plus the
// job-level FLOP counts and the memory model. Pure C++; knows nothing of SimGrid or of costs.
#pragma once

#include <string>
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

/// Whether `op` runs beside the compute of its block rather than blocking it: marked so by the
/// workload (ring attention, the sequence-parallel re-gather, ZeRO-3 prefetch), or a TP collective
/// under userbuffers overlap (`overlap.tp`). The engine, the planner's screen and `--explain` ask it.
[[nodiscard]] bool overlaps_compute(const CollectiveOp& op, const ParallelismSpec& p);

/// A contiguous range of layers held by one pipeline stage (one model chunk when interleaved).
struct ChunkWork {
  int first_layer = 0;
  int layers = 0;
  bool has_embedding = false; ///< first virtual stage
  bool has_lm_head = false;   ///< last virtual stage (LM head + loss)
  WorkBlock forward;
  WorkBlock backward;        ///< the whole backward pass, including recomputation when enabled
  WorkBlock backward_input;  ///< dX half of `backward` (zero-bubble schedules)
  WorkBlock backward_weight; ///< dW half of `backward`
  WorkBlock weight_casts;    ///< FP8 training: the weight casts run once per iteration, in the
                             ///< forward of micro-batch 0 before `forward` (empty otherwise)
  Bytes activation_out;      ///< bytes each GPU of the stage sends to the next stage per micro-batch
                             ///< (the gradient sent back has the same size)
  Bytes parameters;          ///< bytes of this chunk's dense (non-expert) parameters on one GPU, in the
                             ///< gradient dtype: the gradients reduced over the dp*cp ranks
  Bytes expert_parameters;   ///< bytes of this chunk's local expert parameters on one GPU, in the
                             ///< gradient dtype: the gradients reduced over the expert-data-parallel ranks
};

enum class StepKind { FORWARD, BACKWARD, BACKWARD_INPUT, BACKWARD_WEIGHT };

/// One step of a stage's pipeline schedule.
struct PipelineStep {
  StepKind kind = StepKind::FORWARD;
  int microbatch = 0;
  int chunk = 0; ///< model chunk on this stage, 0..virtual_stages-1 (virtual stage = chunk*pp + stage)
};

/// Memory of one GPU of a pipeline stage at its peak.
struct MemoryBreakdown {
  Bytes weights;
  Bytes gradients;
  Bytes optimizer_states;
  Bytes activations;
  Bytes workspace; ///< communication buffers, cuBLAS workspace, allocator fragmentation
  [[nodiscard]] Bytes total() const {
    return weights + gradients + optimizer_states + activations + workspace;
  }
};

/// The optimizer step's one operation over every local gradient rather than the rank's ZeRO shard:
/// zeroing the gradient buffer for the next step.
inline constexpr const char* ZERO_GRAD_OP = "zero_grad";

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
  /// Dense (non-expert) gradient bytes one GPU of `stage` reduces over its dp*cp ranks per iteration.
  [[nodiscard]] Bytes gradient_bytes(int stage) const;
  /// Expert gradient bytes one GPU of `stage` reduces over its expert-data-parallel group (dp/ep ranks).
  [[nodiscard]] Bytes expert_gradient_bytes(int stage) const;
  /// Local parameters of one GPU of `stage` (expert ones included) in the weight dtype: what a
  /// ZeRO >= 1 all-gather after the optimizer step moves.
  [[nodiscard]] Bytes parameter_bytes(int stage) const;
  /// FP8 training: the cached FP8 copies of the FP8 GEMMs' weights on one GPU of `stage`, the
  /// weight and its transpose at 1 byte per element each (zero otherwise).
  [[nodiscard]] Bytes fp8_weight_cache_bytes(int stage) const;
  /// Optimizer step of one GPU of `stage`.
  [[nodiscard]] const std::vector<ComputeOp>& optimizer(int stage) const;

  /// Model FLOPs of one iteration for the whole job: forward + backward, no recomputation
  /// (Korthikanti et al. 2022 eq. 7 convention, with the model's actual FFN and GQA shapes).
  [[nodiscard]] Flops model_flops() const;
  /// FLOPs the hardware executes in one iteration for the whole job, recomputation included.
  [[nodiscard]] Flops hardware_flops() const;
  /// Number of parameters of the model (every expert counted).
  [[nodiscard]] double parameters() const;
  /// Parameters one token uses: the top_k experts of each MoE layer and its router (equals
  /// parameters() for a dense model).
  [[nodiscard]] double active_parameters() const;
  /// Number of MoE layers (layer i is one when (i+1) % moe.every == 0).
  [[nodiscard]] int moe_layers() const;
  /// Ranks a ZeRO stage shards dense model states over: dp*cp.
  [[nodiscard]] int zero_shards() const;
  /// Ranks a ZeRO stage shards expert model states over: the expert-data-parallel group, dp*cp/ep
  /// (Megatron-core: every context-parallel rank holds the same experts and sees its own tokens).
  [[nodiscard]] int expert_zero_shards() const;
  /// Bytes of one data-parallel gradient bucket: parallelism.dp_bucket, or by default DeepSpeed's
  /// 5e8 elements for ZeRO-2/3 and Megatron-core's max(40M, 1M x data-parallel size) elements
  /// (DistributedDataParallelConfig.bucket_size) otherwise, in the gradient's element size.
  [[nodiscard]] Bytes dp_bucket_bytes() const;
  /// Peak memory of one GPU of `stage`.
  [[nodiscard]] MemoryBreakdown memory(int stage) const;
  /// Parameters whose optimizer states one GPU of `stage` holds: its local parameters over the
  /// ZeRO shards (dense over zero_shards, experts over expert_zero_shards) from ZeRO-1 on.
  [[nodiscard]] double optimizer_shard_parameters(int stage) const;

  /// Parameters held by one GPU of `stage` (its TP shard of all its chunks, replicated norms and
  /// biases included, the tied word-embedding copy of the last stage included).
  [[nodiscard]] double local_parameters(int stage) const;
  /// Vocabulary padded as Megatron-LM pads it (--make-vocab-size-divisible-by 128, times tp), so
  /// that each TP rank holds vocab_padded()/tp rows of the embedding and LM head.
  [[nodiscard]] long vocab_padded() const;
  /// Activation bytes one transformer layer keeps per micro-batch on one GPU between its forward
  /// and its backward, under the configured recomputation (Korthikanti et al. 2022 Table 2).
  [[nodiscard]] Bytes layer_activations() const;
  /// Activation bytes one transformer layer holds per micro-batch with no recomputation.
  [[nodiscard]] Bytes layer_activations_no_recompute() const;
  /// layer_activations() for an MoE layer (router probabilities, routed tokens, expert FFN).
  [[nodiscard]] Bytes moe_layer_activations() const;
  /// Activation bytes one micro-batch leaves on one GPU after the forward of (stage, chunk):
  /// its layers plus the embedding / LM-head tensors of the first / last virtual stage.
  [[nodiscard]] Bytes chunk_activations(int stage, int chunk_index) const;
  /// Peak number of micro-batches whose activations `stage` holds at once, in units of a whole
  /// stage (all its chunks): pp - stage for 1F1B, pp*(1 + (pp-1)/(pp*v)) on stage 0 interleaved,
  /// pp on every stage for ZB-H1 (activations are freed by the weight-gradient pass).
  [[nodiscard]] double inflight_microbatches(int stage) const;

private:
  enum class ParameterCount { ALL, ACTIVE };
  [[nodiscard]] double parameters_counted(ParameterCount which) const;
  /// Activation bytes of one layer (dense or MoE) under recomputation `r`.
  [[nodiscard]] Bytes layer_activation_bytes(bool moe, Recompute r) const;
  /// The attention-score part of layer_activations_no_recompute() (zero with flash attention).
  [[nodiscard]] Bytes attention_score_activations() const;
  /// Peak activation bytes of `stage` found by running its schedule: each forward adds its
  /// chunk's activations, each backward briefly adds what it recomputes, then frees the chunk's.
  [[nodiscard]] Bytes peak_activations(int stage) const;

  ModelSpec model_;
  TrainingSpec training_;
  ParallelismSpec parallelism_;
  std::vector<std::vector<ChunkWork>> chunks_;       // [stage][chunk]
  std::vector<std::vector<PipelineStep>> schedules_; // [stage]
  std::vector<std::vector<ComputeOp>> optimizer_;    // [stage]
  std::vector<Bytes> gradient_bytes_;                // [stage]
  std::vector<double> local_parameters_;             // [stage], expert parameters included
  std::vector<double> local_expert_parameters_;      // [stage]
};

/// The memory of a layout against a GPU's capacity (Workload::memory of every stage).
struct MemoryFit {
  std::vector<MemoryBreakdown> per_stage;
  Bytes peak;         ///< the largest stage's total: memory per GPU
  int peak_stage = 0; ///< the first stage that needs `peak`
  Bytes capacity;
  bool fits = false; ///< peak <= capacity
};

/// Every stage's memory against `capacity`: what `odyssey run` reports as memory per GPU and
/// `fits_memory`, and what `odyssey validate` warns about.
[[nodiscard]] MemoryFit memory_fit(const Workload& workload, Bytes capacity);

/// The dtypes a workload under training precision `precision` computes GEMMs and fused attention
/// in, which the cost model prices against the GPU's peak for that dtype: the precision itself
/// and the activations' (FP8 training keeps everything but its GEMMs in BF16).
[[nodiscard]] std::vector<Precision> compute_precisions(Precision precision);

/// Peak number of micro-batches whose activations a stage running `schedule` holds at once, in
/// units of a whole stage of `virtual_stages` chunks (Workload::inflight_microbatches).
[[nodiscard]] double inflight_microbatches(const std::vector<PipelineStep>& schedule, int virtual_stages);

/// Bytes of one data-parallel gradient bucket (Workload::dp_bucket_bytes).
[[nodiscard]] Bytes dp_bucket_bytes(const ParallelismSpec& parallelism, const TrainingSpec& training);

/// The pass over each weight gradient that follows its GEMM every micro-batch where the framework
/// does not fuse the gradient into the GEMM (training.gradient_accumulation_fusion off).
struct GradientPass {
  std::string name;               ///< prefix of the operation's name
  double bytes_per_element = 0.0; ///< HBM bytes read and written per gradient element
};

/// That pass for `framework`, weights of `weight_bytes` and main gradients of `grad_bytes` per
/// element: Megatron-LM's add into the main gradient, DeepSpeed's BF16 optimizer's fp32 copy and
/// add, or PyTorch FSDP's cast and pre-division before its reduce-scatter. Sources in
/// models/workload.cpp.
[[nodiscard]] GradientPass unfused_gradient_pass(Framework framework, double weight_bytes, double grad_bytes);

/// How ZeRO-3 gathers and releases the parameters of one model chunk on one GPU.
struct Zero3Gathers {
  int units = 0;              ///< all-gathers per pass over the chunk (forward, and again backward)
  double unit_elements = 0.0; ///< local parameters each all-gather collects (the GPU's TP shard)
  double live_elements = 0.0; ///< gathered parameters held at once: the unit computed, the prefetched one
};

/// ZeRO-3's gather granularity for a chunk of `layers` layers holding `elements` local parameters
/// (dense and expert parameters are gathered apart, each over its own group). The one rule the
/// workload (its all-gathers), the memory model (the live gathered weights), the engine and the
/// planner's screen read. Zero units when there is nothing to gather.
[[nodiscard]] Zero3Gathers zero3_gathers(const ParallelismSpec& parallelism, double elements, int layers);

/// Gradient reduce-scatters (or all-reduces) of one chunk's `gradients` bytes over `layers`
/// layers: one per layer when ZeRO-3 gathers by layer and the bucket is automatic (FSDP
/// reduce-scatters each unit's gradients after its backward), otherwise one per dp_bucket_bytes.
/// Zero when there are no gradients.
[[nodiscard]] int gradient_buckets(const ParallelismSpec& parallelism, const TrainingSpec& training,
                                   Bytes gradients, int layers);

/// GPU memory besides model states and activations: the CUDA context, the cuBLAS workspace, NCCL's
/// buffers for each communicator (one per parallel dimension above 1) and the allocator's
/// fragmentation of the activations.
[[nodiscard]] Bytes workspace_bytes(const ParallelismSpec& parallelism, Bytes activations);

/// Steps of `stage` for a pipeline of `stages` stages, `chunks` model chunks per stage and
/// `microbatches` micro-batches, in execution order. Throws std::invalid_argument for
/// combinations the schedule does not define (interleaving with microbatches % stages != 0,
/// 1F1B or zero-bubble with chunks > 1). Zero-bubble (ZB-H1) emits BACKWARD_INPUT and
/// BACKWARD_WEIGHT steps; the others emit BACKWARD.
[[nodiscard]] std::vector<PipelineStep> pipeline_schedule(PipelineScheduleKind kind, int stages, int chunks,
                                                          int microbatches, int stage);

} // namespace odyssey
