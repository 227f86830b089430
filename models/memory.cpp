// Memory model: peak bytes on one GPU of a pipeline stage.
//
// Model states follow ZeRO (Rajbhandari et al. 2020 sec. 3.1 and 5): mixed-precision Adam keeps
// 2 bytes of fp16/bf16 weights, 2 or 4 bytes of gradients (Megatron-LM accumulates and reduces
// bf16 gradients in fp32; fp16 gradients stay fp16) and 12 bytes of fp32 master weights, momentum
// and variance per parameter; fp32 training keeps 4 + 4 + 8. ZeRO-1 shards the optimizer states
// over dp, ZeRO-2 also the gradients, ZeRO-3 also the weights. Sharded gradients are produced
// whole by each micro-batch's backward and reduce-scattered at once, so ZeRO-2/3 also hold one
// chunk's whole gradients (at most two buckets of them when the reduction overlaps the backward),
// counted with the communication buffers in the workspace.
//
// Activations follow Korthikanti et al. 2022 sec. 4 (Table 2), derived tensor by tensor so that
// GQA and SwiGLU shapes get their own coefficient and GPT shapes get exactly the paper's:
//   kept whole on every TP rank (split by t with sequence parallelism): both norm inputs, the QKV
//   input, the MLP input (d bytes each: 4*d*s*b*h) and, when the model trains with dropout, the
//   two dropout masks (1 byte each: 2*s*b*h) -> 10*s*b*h for GPT in fp16;
//   split by t: Q (d*s*b*q), K and V (d*s*b*kv each), the output-projection input (d*s*b*q), the
//   MLP activation input (GELU: d*s*b*f; SwiGLU gate and up: 2*d*s*b*f) and the down-projection
//   input (d*s*b*f) -> 24*s*b*h/t for GPT (q = kv = h, f = 4h, d = 2);
//   the attention scores (softmax output d, dropout mask 1, dropout output d bytes per element of
//   the b*(a/t)*s*s matrix) -> 5*a*s^2*b/t; without dropout (Llama) only the softmax output.
// Under FP8 training the four GEMM inputs kept for the weight gradients (QKV, output projection,
// MLP, down projection) are Transformer Engine's FP8 copies, 1 byte each (FP8_SAVED_INPUT_BYTES).
// Flash attention stores none of the scores (its fp32 log-sum-exp, 4*b*a*s/t bytes, is left out:
// below 0.1% of a layer for s >= 2048). Selective recomputation drops the scores; full
// recomputation keeps the layer input (d*s*b*h, split by t with sequence parallelism since the
// layer input is then sequence-sharded) and re-creates one layer's activations during its backward.
//
// Context parallelism divides every term by cp (each rank keeps s/cp tokens); the attention
// scores are (s/cp) x s per head. An MoE layer keeps, instead of the dense MLP's split tensors,
// the routed token copies (T = b*s/cp*top_k*capacity_factor rows: the expert input, d*T*h, and the
// expert FFN's, d*T*(2|3)*f_e/t) and the fp32 router probabilities with int64 top-k indices.
// FP8 training adds Transformer Engine's cached FP8 copy of each FP8 GEMM's weight and its
// transpose (1 byte each per element) to the weights, kept for the whole iteration; with FP8
// primary weights (fp8_param_gather) the weights are one byte and only the transpose is added.
// Zero-bubble schedules free a micro-batch's activations after its weight-gradient pass, which
// still needs the GEMM inputs (Qi et al. 2023 sec. 2 count M_B for B and W together).
#include <algorithm>
#include <cmath>

#include "models/workload.hpp"

namespace odyssey {
namespace {

constexpr double MIB = 1024.0 * 1024.0;

/// cuBLAS workspace: the cuBLAS documentation (cublasSetWorkspace) recommends 32 MiB on Hopper and
/// 4 MiB on earlier GPUs, which PyTorch allocates per handle and stream (CUBLAS_WORKSPACE_CONFIG
/// default, pytorch/pytorch#120925), and Transformer Engine allocates 32 MiB per stream. The
/// memory model does not know the GPU: take the larger, at most 28 MiB too much on an A100.
constexpr double CUBLAS_WORKSPACE = 32 * MIB;
/// NCCL buffers of one connection of one channel, one per protocol, at NCCL's defaults (src/init.cc):
/// Simple DEFAULT_BUFFSIZE 4 MiB (NCCL_BUFFSIZE), LL DEFAULT_LL_BUFFSIZE = 8 lines per thread x 512
/// threads x 8 steps x 16 B = 512 KiB, LL128 DEFAULT_LL128_BUFFSIZE = 120 elements per thread x
/// 640 threads x 8 steps x 8 B = 4.6875 MiB.
constexpr double NCCL_BUFFERS_PER_CONNECTION = 4 * MIB + 0.5 * MIB + 4.6875 * MIB;
/// NCCL channels of a communicator. ASSUMPTION: 16, a typical count on NVSwitch and multi-rail
/// InfiniBand systems (NCCL_MIN_NCHANNELS/NCCL_MAX_NCHANNELS tune it).
constexpr double NCCL_CHANNELS = 16;
/// Connections each GPU holds per channel: a ring's two neighbours (send and receive).
constexpr double NCCL_CONNECTIONS_PER_CHANNEL = 2;
constexpr double NCCL_BUFFERS_PER_COMMUNICATOR =
    NCCL_BUFFERS_PER_CONNECTION * NCCL_CHANNELS * NCCL_CONNECTIONS_PER_CHANNEL;
/// CUDA context, kernel images and the NCCL/cuBLAS handles, outside the caching allocator but on
/// the GPU. ASSUMPTION: 512 MiB, within the 300-600 MiB that nvidia-smi shows for a PyTorch
/// process with CUDA 11/12 on A100/H100 (less with CUDA_MODULE_LOADING=LAZY, CUDA 11.7+).
constexpr double CUDA_CONTEXT = 512 * MIB;
/// Allocator fragmentation as a fraction of activation memory. ZeRO-R (Rajbhandari et al. 2020
/// sec. 6.3) traces fragmentation to interleaved short- and long-lived activation buffers, while
/// model states live in contiguous buffers allocated once (Megatron-LM's grad buffer, apex's flat
/// master weights); we charge 10% of the activations.
constexpr double FRAGMENTATION_OF_ACTIVATIONS = 0.10;

double activation_bytes_per_element(Precision p) {
  return p == Precision::FP32 ? 4.0 : 2.0;
}

/// Bytes per element of the input an FP8 GEMM keeps for its weight gradient: Transformer Engine
/// saves the FP8 copy it cast for the forward GEMM (its column-wise or transposed data), not the
/// BF16 input (transformer_engine/pytorch/module/linear.py, `saved_inputmat = inputmat` of the
/// quantized input; layernorm_linear.py saves the quantized `ln_out`).
constexpr double FP8_SAVED_INPUT_BYTES = 1.0;

} // namespace

Bytes Workload::attention_score_activations() const {
  if (training_.flash_attention) return Bytes(0);
  const bool dropout = dropout_probability(model_) > 0;
  const double d = activation_bytes_per_element(training_.precision);
  const double elements = double(training_.micro_batch) * (model_.heads / parallelism_.tp) *
                          double(model_.seq_len / parallelism_.cp) * double(model_.seq_len);
  return Bytes(elements * (dropout ? 2 * d + 1 : d));
}

Bytes Workload::layer_activation_bytes(bool moe, Recompute r) const {
  const double t = parallelism_.tp;
  const bool sp = parallelism_.sequence_parallel && parallelism_.tp > 1;
  const bool llama = model_.activation == Activation::SWIGLU;
  const double d = activation_bytes_per_element(training_.precision);
  const double sb = double(training_.micro_batch) * (model_.seq_len / parallelism_.cp);
  const double h = model_.hidden;
  if (r == Recompute::FULL) return Bytes(sb * h * d / (sp ? t : 1.0));
  const double mask = dropout_probability(model_) > 0 ? 1.0 : 0.0;
  const double hd = model_.head_dim();
  const double q = double(model_.heads / parallelism_.tp) * hd;
  const double kv = double(std::max(model_.kv_heads / parallelism_.tp, 1)) * hd;
  const double f = double(model_.ffn_hidden) / t;
  // The input each GEMM keeps for its weight gradient: d bytes, or 1 where the GEMM runs in FP8
  // (Transformer Engine saves its FP8 copy, FP8_SAVED_INPUT_BYTES).
  const double g = training_.precision == Precision::FP8 ? FP8_SAVED_INPUT_BYTES : d;
  const double whole = sb * h * (2 * d + 2 * g + 2 * mask) / (sp ? t : 1.0);
  double split = sb * (d * (q + 2 * kv) + g * q);
  if (moe) {
    const MoeSpec& e = *model_.moe;
    const double fe = double(e.expert_ffn_hidden > 0 ? e.expert_ffn_hidden : model_.ffn_hidden) / t;
    const int ep = parallelism_.ep;
    const double rows = std::ceil(sb * e.top_k * e.capacity_factor * ep / e.experts) * double(e.experts / ep);
    split += d * rows * (h + (llama ? 3 : 2) * fe) + sb * (4.0 * e.experts + 8.0 * e.top_k);
  } else {
    split += sb * f * (d * (llama ? 2 : 1) + g);
  }
  const Bytes bytes(whole + split);
  if (r == Recompute::SELECTIVE) return bytes;
  return bytes + attention_score_activations();
}

Bytes Workload::layer_activations_no_recompute() const {
  return layer_activation_bytes(false, Recompute::NONE);
}

Bytes Workload::layer_activations() const {
  return layer_activation_bytes(false, parallelism_.recompute);
}

Bytes Workload::moe_layer_activations() const {
  return layer_activation_bytes(model_.moe.has_value(), parallelism_.recompute);
}

Bytes Workload::chunk_activations(int stage, int chunk_index) const {
  const ChunkWork& c = chunk(stage, chunk_index);
  const bool sp = parallelism_.sequence_parallel && parallelism_.tp > 1;
  const double d = activation_bytes_per_element(training_.precision);
  const double sb = double(training_.micro_batch) * (model_.seq_len / parallelism_.cp);
  const double sbh = sb * model_.hidden / (sp ? parallelism_.tp : 1);
  Bytes bytes;
  for (int l = c.first_layer; l < c.first_layer + c.layers; ++l) {
    const bool moe = model_.moe && (l + 1) % model_.moe->every == 0;
    bytes += moe ? moe_layer_activations() : layer_activations();
  }
  // Korthikanti et al. 2022 sec. 4.3: the first stage keeps the embedding-dropout mask (1 byte
  // per element, when the model trains with dropout); the last keeps the final-norm input and the
  // LM-head input (d bytes each) and the fp32 logits of the cross-entropy (4*s*b*V/t), which is
  // 4*s*b*h/t*(1 + V/h) with sequence parallelism in fp16.
  if (c.has_embedding && dropout_probability(model_) > 0) bytes += Bytes(sbh);
  if (c.has_lm_head) {
    const double logits = sb * double(vocab_padded() / parallelism_.tp);
    bytes += Bytes(2 * d * sbh + 4 * logits);
  }
  return bytes;
}

namespace {

/// Steps that free a micro-batch's activations: the whole backward, or the weight-gradient half.
bool releases_activations(StepKind k) {
  return k == StepKind::BACKWARD || k == StepKind::BACKWARD_WEIGHT;
}
/// Steps that re-create recomputed activations.
bool recomputes(StepKind k) {
  return k == StepKind::BACKWARD || k == StepKind::BACKWARD_INPUT;
}

} // namespace

Bytes Workload::peak_activations(int stage) const {
  // What a backward re-creates for one layer at a time and frees before the next layer.
  Bytes transient;
  if (parallelism_.recompute == Recompute::FULL) {
    transient = layer_activations_no_recompute();
    if (model_.moe) transient = std::max(transient, layer_activation_bytes(true, Recompute::NONE));
  }
  if (parallelism_.recompute == Recompute::SELECTIVE) transient = attention_score_activations();
  Bytes held, peak;
  for (const PipelineStep& step : schedule(stage)) {
    const Bytes a = chunk_activations(stage, step.chunk);
    if (step.kind == StepKind::FORWARD) {
      held += a;
      peak = std::max(peak, held);
      continue;
    }
    if (recomputes(step.kind)) peak = std::max(peak, held + transient);
    if (releases_activations(step.kind)) held -= a;
  }
  return peak;
}

double inflight_microbatches(const std::vector<PipelineStep>& schedule, int virtual_stages) {
  // Korthikanti et al. 2022 sec. 4.2.3 counts in-flight micro-batches on stage 0: p for 1F1B and
  // p*(1 + (p-1)/(p*v)) interleaved. Counting held chunk-forwards along each stage's own schedule
  // gives every stage's figure: min(p - s, m) for 1F1B, m for GPipe, and for interleaving
  // (2*(p-s-1) + (v-1)*p + 1)/v whole-stage equivalents before the first backward.
  int held = 0, peak = 0;
  for (const PipelineStep& step : schedule) {
    if (step.kind == StepKind::FORWARD) ++held;
    if (releases_activations(step.kind)) --held;
    peak = std::max(peak, held);
  }
  return double(peak) / virtual_stages;
}

double Workload::inflight_microbatches(int stage) const {
  return odyssey::inflight_microbatches(schedule(stage), parallelism_.virtual_stages);
}

Bytes workspace_bytes(const ParallelismSpec& p, Bytes activations) {
  int communicators = 0;
  for (int degree : {p.tp, p.pp, p.dp, p.cp, p.ep})
    if (degree > 1) ++communicators;
  return Bytes(CUDA_CONTEXT + CUBLAS_WORKSPACE + communicators * NCCL_BUFFERS_PER_COMMUNICATOR) +
         activations * FRAGMENTATION_OF_ACTIVATIONS;
}

MemoryFit memory_fit(const Workload& workload, Bytes capacity) {
  MemoryFit fit;
  fit.capacity = capacity;
  for (int s = 0; s < workload.stages(); ++s) {
    fit.per_stage.push_back(workload.memory(s));
    if (fit.per_stage.back().total() > fit.peak) {
      fit.peak = fit.per_stage.back().total();
      fit.peak_stage = s;
    }
  }
  fit.fits = fit.peak <= capacity;
  return fit;
}

MemoryBreakdown Workload::memory(int stage) const {
  const double params = local_parameters(stage);
  const double experts = local_expert_parameters_.at(size_t(stage));
  const double dense = params - experts;
  const int zero = parallelism_.zero;
  const double weight_bytes = weight_element_bytes(training_);
  const double gradient_bytes = gradient_element_bytes(training_);
  const double optimizer_bytes = optimizer_state_bytes(training_.precision);
  // Dense states shard over the dp*cp ranks that hold the same parameters, expert states over the
  // expert-data-parallel group (dp*cp/ep).
  auto sharded = [&](double bytes_per_param, int from_stage) {
    const bool shard = zero >= from_stage;
    return Bytes(dense * bytes_per_param / (shard ? zero_shards() : 1) +
                 experts * bytes_per_param / (shard ? expert_zero_shards() : 1));
  };

  MemoryBreakdown m;
  // PyTorch FSDP keeps a rank's shard of the parameters in full precision: it is the fp32 copy the
  // optimizer steps (optimizer_state_bytes counts it), and the low-precision shard exists only
  // while its unit is gathered (torch.distributed.fsdp.MixedPrecision: "outside forward and
  // backward, the sharded parameters are kept in full precision"; _flat_param.py frees _mp_shard
  // after the all-gather). DeepSpeed ZeRO-3 holds a low-precision partition beside its fp32 one.
  const bool full_precision_shard =
      zero >= 3 && training_.framework == Framework::PYTORCH_FSDP && training_.precision != Precision::FP32;
  const Bytes resident_shard = full_precision_shard ? Bytes(0) : sharded(weight_bytes, 3);
  m.weights = resident_shard;
  if (zero >= 3) {
    // The gathered weights live at once (zero3_gathers: the unit being computed and the
    // prefetched one, not the whole chunk), dense and expert apart, for the chunk that holds most.
    double largest = 0;
    for (int c = 0; c < chunks_per_stage(); ++c) {
      const ChunkWork& w = chunk(stage, c);
      double live = 0;
      if (zero_shards() > 1)
        live += zero3_gathers(parallelism_, w.parameters.value() / gradient_bytes, w.layers).live_elements;
      if (expert_zero_shards() > 1)
        live +=
            zero3_gathers(parallelism_, w.expert_parameters.value() / gradient_bytes, w.layers).live_elements;
      largest = std::max(largest, live * weight_bytes);
    }
    m.weights += Bytes(largest);
  }
  m.weights += fp8_weight_cache_bytes(stage);
  m.gradients = sharded(gradient_bytes, 2);
  m.optimizer_states = sharded(optimizer_bytes, 1);
  // ZeRO-Offload (models/offload.hpp): the optimizer states and the gradient partition they
  // update live on the host; gradients stream out bucket by bucket as ZeRO-2 reduces them.
  // ZeRO-Infinity's offloaded parameters leave only the gathered ones on the GPU.
  const OffloadSpec& offload = parallelism_.offload;
  const bool offloaded = offload.optimizer != OffloadDevice::NONE;
  if (offloaded) {
    m.optimizer_states = Bytes(0);
    m.gradients = Bytes(0);
  }
  if (offload.params != OffloadDevice::NONE) m.weights -= resident_shard;
  m.activations = peak_activations(stage);

  m.workspace = workspace_bytes(parallelism_, m.activations);
  if ((zero >= 2 && (zero_shards() > 1 || expert_zero_shards() > 1)) || offloaded) {
    // Sharded gradients are produced whole by each backward and reduce-scattered every
    // micro-batch: a chunk's unsharded gradients live until their buckets are reduced, at most
    // two buckets at a time when the reduction overlaps the backward (one filling, one in
    // flight), the whole chunk when it waits for the end of the backward.
    double held = 0;
    for (int c = 0; c < chunks_per_stage(); ++c) {
      const ChunkWork& w = chunk(stage, c);
      const Bytes whole = w.parameters + w.expert_parameters;
      const int buckets = gradient_buckets(parallelism_, training_, whole, w.layers);
      held = std::max(held, parallelism_.dp_overlap && buckets > 0
                                ? std::min(whole.value(), 2 * whole.value() / buckets)
                                : whole.value());
    }
    m.workspace += Bytes(held);
  }
  return m;
}

} // namespace odyssey
