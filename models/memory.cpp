// Memory model: peak bytes on one GPU of a pipeline stage.
//
// Model states follow ZeRO (Rajbhandari et al. 2020 sec. 3.1 and 5): mixed-precision Adam keeps
// 2 bytes of fp16/bf16 weights, 2 or 4 bytes of gradients (Megatron-LM accumulates and reduces
// bf16 gradients in fp32; fp16 gradients stay fp16) and 12 bytes of fp32 master weights, momentum
// and variance per parameter; fp32 training keeps 4 + 4 + 8. ZeRO-1 shards the optimizer states
// over dp, ZeRO-2 also the gradients, ZeRO-3 also the weights.
//
// Activations follow Korthikanti et al. 2022 sec. 4 (Table 2), derived tensor by tensor so that
// GQA and SwiGLU shapes get their own coefficient and GPT shapes get exactly the paper's:
//   kept whole on every TP rank (split by t with sequence parallelism): both norm inputs, the QKV
//   input, the MLP input (d bytes each: 4*d*s*b*h) and the two dropout masks (1 byte each: 2*s*b*h)
//   -> 10*s*b*h for GPT in fp16;
//   split by t: Q (d*s*b*q), K and V (d*s*b*kv each), the output-projection input (d*s*b*q), the
//   MLP activation input (GELU: d*s*b*f; SwiGLU gate and up: 2*d*s*b*f) and the down-projection
//   input (d*s*b*f) -> 24*s*b*h/t for GPT (q = kv = h, f = 4h, d = 2);
//   the attention scores (softmax output d, dropout mask 1, dropout output d bytes per element of
//   the b*(a/t)*s*s matrix) -> 5*a*s^2*b/t; no dropout (Llama) keeps only the softmax output.
// Flash attention stores none of the scores (its fp32 log-sum-exp, 4*b*a*s/t bytes, is left out:
// below 0.1% of a layer for s >= 2048). Selective recomputation drops the scores; full
// recomputation keeps the layer input (d*s*b*h, split by t with sequence parallelism since the
// layer input is then sequence-sharded) and re-creates one layer's activations during its backward.
#include <algorithm>

#include "models/workload.hpp"

namespace odyssey {
namespace {

constexpr double MIB = 1024.0 * 1024.0;

/// cuBLAS workspace: cuBLAS recommends 32 MiB on Hopper (4 MiB before) and Transformer Engine
/// allocates 32 MiB; take the larger so one figure serves every GPU.
constexpr double CUBLAS_WORKSPACE = 32 * MIB;
/// NCCL buffers per communicator: NCCL_BUFFSIZE (4 MiB, Simple protocol) per channel per ring
/// neighbour (2), for 16 channels, a typical count on NVSwitch and multi-rail InfiniBand systems.
constexpr double NCCL_BUFFERS_PER_COMMUNICATOR = 4 * MIB * 2 * 16;
/// CUDA context, kernel images and NCCL/cuBLAS handles: about 0.5 GiB in nvidia-smi for a PyTorch
/// process on A100/H100, outside the caching allocator but on the GPU.
constexpr double CUDA_CONTEXT = 512 * MIB;
/// Allocator fragmentation as a fraction of activation memory. ZeRO-R (Rajbhandari et al. 2020
/// sec. 6.3) traces fragmentation to interleaved short- and long-lived activation buffers, while
/// model states live in contiguous buffers allocated once (Megatron-LM's grad buffer, apex's flat
/// master weights); we charge 10% of the activations.
constexpr double FRAGMENTATION_OF_ACTIVATIONS = 0.10;

double activation_bytes_per_element(Precision p) { return p == Precision::FP32 ? 4.0 : 2.0; }

} // namespace

Bytes Workload::attention_score_activations() const {
  if (training_.flash_attention) return Bytes(0);
  const bool llama = model_.activation == Activation::SWIGLU;
  const double d = activation_bytes_per_element(training_.precision);
  const double elements = double(training_.micro_batch) * (model_.heads / parallelism_.tp) *
                          double(model_.seq_len) * double(model_.seq_len);
  return Bytes(elements * (llama ? d : 2 * d + 1));
}

Bytes Workload::layer_activations_no_recompute() const {
  const double t = parallelism_.tp;
  const bool sp = parallelism_.sequence_parallel && parallelism_.tp > 1;
  const bool llama = model_.activation == Activation::SWIGLU;
  const double d = activation_bytes_per_element(training_.precision);
  const double mask = llama ? 0.0 : 1.0;
  const double sb = double(training_.micro_batch) * model_.seq_len;
  const double h = model_.hidden;
  const double hd = model_.head_dim();
  const double q = double(model_.heads / parallelism_.tp) * hd;
  const double kv = double(std::max(model_.kv_heads / parallelism_.tp, 1)) * hd;
  const double f = double(model_.ffn_hidden) / t;
  const double whole = sb * h * (4 * d + 2 * mask) / (sp ? t : 1.0);
  const double split = sb * d * (2 * q + 2 * kv + (llama ? 3 : 2) * f);
  return Bytes(whole + split) + attention_score_activations();
}

Bytes Workload::layer_activations() const {
  switch (parallelism_.recompute) {
  case Recompute::NONE: break;
  case Recompute::SELECTIVE: return layer_activations_no_recompute() - attention_score_activations();
  case Recompute::FULL: {
    const bool sp = parallelism_.sequence_parallel && parallelism_.tp > 1;
    const double d = activation_bytes_per_element(training_.precision);
    return Bytes(double(training_.micro_batch) * model_.seq_len * model_.hidden * d / (sp ? parallelism_.tp : 1));
  }
  }
  return layer_activations_no_recompute();
}

Bytes Workload::chunk_activations(int stage, int chunk_index) const {
  const ChunkWork& c = chunk(stage, chunk_index);
  const bool sp = parallelism_.sequence_parallel && parallelism_.tp > 1;
  const double d = activation_bytes_per_element(training_.precision);
  const double sbh = double(training_.micro_batch) * model_.seq_len * model_.hidden / (sp ? parallelism_.tp : 1);
  Bytes bytes = layer_activations() * c.layers;
  // Korthikanti et al. 2022 sec. 4.3: the first stage keeps the embedding-dropout mask (1 byte
  // per element; Llama-style models have no dropout); the last keeps the final-norm input and the
  // LM-head input (d bytes each) and the fp32 logits of the cross-entropy (4*s*b*V/t), which is
  // 4*s*b*h/t*(1 + V/h) with sequence parallelism in fp16.
  if (c.has_embedding && model_.activation != Activation::SWIGLU) bytes += Bytes(sbh);
  if (c.has_lm_head) {
    const double logits = double(training_.micro_batch) * model_.seq_len * double(vocab_padded() / parallelism_.tp);
    bytes += Bytes(2 * d * sbh + 4 * logits);
  }
  return bytes;
}

Bytes Workload::peak_activations(int stage) const {
  // What a backward re-creates for one layer at a time and frees before the next layer.
  Bytes transient;
  if (parallelism_.recompute == Recompute::FULL) transient = layer_activations_no_recompute();
  if (parallelism_.recompute == Recompute::SELECTIVE) transient = attention_score_activations();
  Bytes held, peak;
  for (const PipelineStep& step : schedule(stage)) {
    const Bytes a = chunk_activations(stage, step.chunk);
    if (step.kind == StepKind::FORWARD) {
      held += a;
      peak = std::max(peak, held);
    } else {
      peak = std::max(peak, held + transient);
      held -= a;
    }
  }
  return peak;
}

double Workload::inflight_microbatches(int stage) const {
  // Korthikanti et al. 2022 sec. 4.2.3 counts in-flight micro-batches on stage 0: p for 1F1B and
  // p*(1 + (p-1)/(p*v)) interleaved. Counting held chunk-forwards along each stage's own schedule
  // gives every stage's figure: min(p - s, m) for 1F1B, m for GPipe, and for interleaving
  // (2*(p-s-1) + (v-1)*p + 1)/v whole-stage equivalents before the first backward.
  int held = 0, peak = 0;
  for (const PipelineStep& step : schedule(stage)) {
    held += step.kind == StepKind::FORWARD ? 1 : -1;
    peak = std::max(peak, held);
  }
  return double(peak) / parallelism_.virtual_stages;
}

MemoryBreakdown Workload::memory(int stage) const {
  const double params = local_parameters(stage);
  const bool fp32 = training_.precision == Precision::FP32;
  const double dp = parallelism_.dp;
  const int zero = parallelism_.zero;
  // FP8 training (Transformer Engine) keeps BF16 weights; its FP8 casts are transient.
  const double weight_bytes = fp32 ? 4.0 : 2.0;
  const double gradient_bytes = training_.precision == Precision::FP16 ? 2.0 : 4.0;
  const double optimizer_bytes = fp32 ? 8.0 : 12.0;  // (fp32 master +) momentum + variance

  MemoryBreakdown m;
  m.weights = Bytes(params * weight_bytes / (zero >= 3 ? dp : 1.0));
  m.gradients = Bytes(params * gradient_bytes / (zero >= 2 ? dp : 1.0));
  m.optimizer_states = Bytes(params * optimizer_bytes / (zero >= 1 ? dp : 1.0));
  m.activations = peak_activations(stage);

  int communicators = 0;
  if (parallelism_.tp > 1) ++communicators;
  if (parallelism_.pp > 1) ++communicators;
  if (parallelism_.dp > 1) ++communicators;
  m.workspace = Bytes(CUDA_CONTEXT + CUBLAS_WORKSPACE + communicators * NCCL_BUFFERS_PER_COMMUNICATOR) +
                m.activations * FRAGMENTATION_OF_ACTIVATIONS;
  return m;
}

} // namespace odyssey
