// Plain values describing the workload: the model's shape, the training set-up and the parallel
// strategy. Produced by the scenario loader (tools/), consumed by models/, calibration/ and sim/.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "models/units.hpp"

namespace odyssey {

enum class Activation { GELU, SWIGLU };
enum class Precision { FP32, FP16, BF16, FP8 };
enum class PipelineScheduleKind { GPIPE, ONE_F_ONE_B, INTERLEAVED_1F1B, ZERO_BUBBLE };
enum class Recompute { NONE, SELECTIVE, FULL };
enum class Fidelity { FULL, FAST };
/// Context-parallel attention: K/V passed around a ring overlapped with attention compute
/// (ring attention), or K/V all-gathered before attention (Llama 3, arXiv 2407.21783 sec. 3.3.2).
enum class ContextParallelKind { RING, ALL_GATHER };
/// What ZeRO-3 gathers at once: one transformer layer (PyTorch FSDP with one wrapped unit per
/// layer) or a bucket of parameters (DeepSpeed ZeRO-3's prefetch bucket).
enum class Zero3Unit { LAYER, BUCKET };
/// Which fused-attention kernel generation runs: the newest the GPU's profile prices (its
/// `attention` figures: FlashAttention-3 on Hopper, -2 on Ampere), FlashAttention-2, which runs
/// trained before FlashAttention-3 (July 2024) used on Hopper, or FlashAttention's Triton kernel
/// (flash_attn_triton.py, the FlashAttention-1 algorithm in Triton), which MosaicML's MPT ran in
/// 2023 (llm-foundry attn_impl: triton).
enum class AttentionKernel { NEWEST, FLASH_ATTENTION_2, FLASH_ATTENTION_TRITON };
/// The training framework whose own gradient handling a run used where it is not fused into the
/// weight-gradient GEMMs (unfused_gradient_pass): Megatron-LM, DeepSpeed (its BF16 optimizer) or
/// PyTorch FSDP.
enum class Framework { MEGATRON_LM, DEEPSPEED, PYTORCH_FSDP };
/// How FP8 training scales a tensor before its cast: with the amax history of earlier steps
/// (delayed scaling, Transformer Engine's DelayedScaling, one pass that casts and records the
/// amax) or with the tensor's own amax (current scaling, TE's Float8CurrentScaling: an amax pass
/// over the tensor, then the cast).
enum class Fp8Recipe { DELAYED, CURRENT };
/// Where DeepSpeed's ZeRO-Offload / ZeRO-Infinity keeps a kind of model state: on the GPU (NONE),
/// in host memory (CPU) or on the server's local NVMe (NVME).
enum class OffloadDevice { NONE, CPU, NVME };

/// ZeRO-Offload (Ren et al., USENIX ATC 2021) and ZeRO-Infinity (Rajbhandari et al., SC 2021):
/// optimizer states (with the gradient shard they update) and optionally the parameters leave GPU
/// memory; the Adam step runs on the host cores (DeepSpeed's CPU-Adam).
struct OffloadSpec {
  OffloadDevice optimizer = OffloadDevice::NONE;
  OffloadDevice params = OffloadDevice::NONE;
  /// One-step delayed parameter update (ZeRO-Offload sec. 4.2): the CPU step and the parameter
  /// copy back overlap the next step's forward and backward.
  bool delayed_update = false;
  [[nodiscard]] bool any() const { return optimizer != OffloadDevice::NONE || params != OffloadDevice::NONE; }
};

/// Mixture-of-experts feed-forward layers (Switch/GShard/Mixtral style).
struct MoeSpec {
  int experts = 0;               ///< experts per MoE layer
  int top_k = 2;                 ///< experts each token is routed to
  double capacity_factor = 1.25; ///< tokens an expert accepts, relative to an even split
  int expert_ffn_hidden = 0;     ///< FFN width of one expert (0: the model's ffn_hidden)
  int every = 1;                 ///< an MoE layer every `every` layers (1: every layer)
};

/// Shape of a decoder-only transformer (GPT or Llama style), dense or mixture-of-experts.
struct ModelSpec {
  std::string name; ///< preset name or "custom"
  int layers = 0;
  int hidden = 0;
  int heads = 0;
  int kv_heads = 0; ///< < heads: grouped-query attention
  int ffn_hidden = 0;
  Activation activation = Activation::GELU;
  int vocab = 0;
  int seq_len = 0;
  std::optional<MoeSpec> moe; ///< absent: dense
  /// Dropout probability of the hidden states and the attention probabilities (Megatron-LM's
  /// --hidden-dropout and --attention-dropout); unset: default_dropout(activation).
  std::optional<double> dropout;
  [[nodiscard]] int head_dim() const { return hidden / heads; }
};

/// Dropout of a model that does not set it: 0.1 for GPT-style (GELU) models, Megatron-LM's default
/// --hidden-dropout and --attention-dropout (megatron/arguments.py), which GPT-3 and the Megatron
/// 2021 runs train with; 0 for Llama-style (SwiGLU) models, which train without dropout (Meta's
/// llama/model.py has no dropout layer).
constexpr double default_dropout(Activation a) {
  return a == Activation::GELU ? 0.1 : 0.0;
}

/// The dropout probability `m` trains with.
inline double dropout_probability(const ModelSpec& m) {
  return m.dropout.value_or(default_dropout(m.activation));
}

struct TrainingSpec {
  int global_batch = 0; ///< sequences per iteration
  int micro_batch = 1;  ///< sequences per micro-batch
  Precision precision = Precision::FP16;
  bool flash_attention = true; ///< fused memory-efficient attention (no s^2 score matrix in memory);
                               ///< Megatron-LM 2021 predates it
  AttentionKernel attention_kernel = AttentionKernel::NEWEST;
  /// The weight-gradient GEMM accumulates into the fp32 main gradient (Megatron-LM
  /// --gradient-accumulation-fusion, 2022); false: it writes a 16-bit gradient that a separate
  /// kernel adds to the main gradient, every micro-batch (Megatron-LM 2021).
  bool gradient_accumulation_fusion = true;
  /// dtype of the main gradients that are accumulated and reduced across data-parallel ranks;
  /// unset: the precision's own (gradient_element_bytes). BF16: Megatron-core without
  /// grad_reduce_in_fp32 (NeMo's optim.grad_sync_dtype: bf16), a 16-bit buffer and reduction.
  std::optional<Precision> grad_reduce_dtype;
  Framework framework = Framework::MEGATRON_LM;
  Fp8Recipe fp8_recipe = Fp8Recipe::DELAYED;
  /// FP8 training with FP8 primary weights (Megatron-core --fp8-param-gather, Transformer Engine's
  /// fp8_model_init): the weights are held and all-gathered in one byte, with the FP8 master copy
  /// written by the optimizer step, instead of 16-bit weights cast each iteration.
  bool fp8_param_gather = false;
  std::optional<double> tokens; ///< token budget for time-to-train
};

struct ParallelismSpec {
  int tp = 1;
  int pp = 1;
  int dp = 1; ///< after `auto` has been resolved
  int cp = 1;
  int ep = 1;
  bool sequence_parallel = false;
  PipelineScheduleKind schedule = PipelineScheduleKind::ONE_F_ONE_B;
  int virtual_stages = 1;
  int zero = 0; ///< 0..3
  Recompute recompute = Recompute::NONE;
  ContextParallelKind cp_kind = ContextParallelKind::RING;
  int first_stage_layers = 0; ///< layers on pipeline stage 0 (0: an even split)
  int last_stage_layers = 0;  ///< layers on the last pipeline stage (0: an even split)
  bool dp_overlap = true;     ///< gradient all-reduce overlapped with the backward pass
  Bytes dp_bucket;            ///< gradient bucket; 0: automatic (Workload::dp_bucket_bytes)
  bool tp_overlap = false;    ///< TP communication overlapped with GEMMs (userbuffers-style)
  bool pp_overlap = false;    ///< pipeline send/recv overlapped with compute
  bool zero_overlap = true;   ///< ZeRO-3 parameter all-gather prefetched during compute
  /// Megatron-LM 2021's p2p_communication: blocking batched send/recv followed by
  /// torch.cuda.synchronize() (the next kernel waits for the host to launch it).
  bool pipeline_sync = false;
  Zero3Unit zero3_unit = Zero3Unit::BUCKET; ///< ZeRO-3 gather and release granularity
  /// Parameters one ZeRO-3 bucket gathers: DeepSpeed's zero_optimization.stage3_prefetch_bucket_size
  /// default, 5e7 (DeepSpeed config docs, "ZeRO optimizations").
  double zero3_bucket = 5e7;
  /// Gathered parameters DeepSpeed keeps live at most: stage3_max_live_parameters default, 1e9
  /// (DeepSpeed config docs).
  double zero3_max_live = 1e9;
  OffloadSpec offload;
  [[nodiscard]] int gpus() const { return tp * pp * dp * cp; }
};

struct SimulationSpec {
  Fidelity fidelity = Fidelity::FULL;
  std::uint64_t seed = 1;
  int trials = 1000; ///< Monte Carlo trials of the run with failures
};

/// Bytes per element of a precision's compute dtype.
constexpr double bytes_per_element(Precision p) {
  switch (p) {
  case Precision::FP32: return 4;
  case Precision::FP16:
  case Precision::BF16: return 2;
  case Precision::FP8: return 1;
  }
  return 4;
}

/// Bytes per element of the gradients kept for the optimizer: FP16 training reduces FP16
/// gradients; BF16 and FP8 mixed precision keep FP32 main gradients, FP32 training FP32 ones.
constexpr double gradient_element_bytes(Precision p) {
  return p == Precision::FP16 ? 2.0 : 4.0;
}

/// Bytes per main-gradient element of a training setup: its grad_reduce_dtype where set.
inline double gradient_element_bytes(const TrainingSpec& t) {
  return t.grad_reduce_dtype ? bytes_per_element(*t.grad_reduce_dtype) : gradient_element_bytes(t.precision);
}

/// Bytes per element of the weights a GPU holds: FP32, or 16-bit (FP8 training keeps BF16 weights;
/// its FP8 casts are transient).
constexpr double weight_element_bytes(Precision p) {
  return p == Precision::FP32 ? 4.0 : 2.0;
}

/// Bytes per element of the weights a training setup holds and gathers: one under FP8 training
/// with FP8 primary weights (fp8_param_gather), else its precision's.
inline double weight_element_bytes(const TrainingSpec& t) {
  return t.precision == Precision::FP8 && t.fp8_param_gather ? 1.0 : weight_element_bytes(t.precision);
}

/// Adam's optimizer states per parameter: momentum and variance in FP32, plus the FP32 master copy
/// of the weights under mixed precision.
constexpr double optimizer_state_bytes(Precision p) {
  return p == Precision::FP32 ? 8.0 : 12.0;
}

const char* to_string(Activation a);
const char* to_string(Precision p);
const char* to_string(PipelineScheduleKind s);
const char* to_string(Recompute r);
const char* to_string(Fidelity f);
const char* to_string(Zero3Unit u);
const char* to_string(Framework f);
const char* to_string(Fp8Recipe r);
const char* to_string(AttentionKernel k);
const char* to_string(OffloadDevice d);

} // namespace odyssey
