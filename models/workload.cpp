// The per-rank program of one training iteration: the ops of each model chunk (Megatron-LM
// layout on one GPU of a TP group), stage assignment, gradient and optimizer work, FLOP counts.
//
// FLOP convention: `flops` of GEMM and ATTENTION ops are the matrix-multiply FLOPs (2*m*n*k; the
// attention core counts the full s^2 score matrix even when causal, as Narayanan et al. 2021
// eq. 3 does). Memory-bound ops carry their HBM bytes and no FLOPs, so model_flops() and
// hardware_flops() reproduce the published closed forms exactly.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>

#include "models/workload.hpp"

namespace odyssey {
namespace {

/// Megatron-LM's default --make-vocab-size-divisible-by.
constexpr long VOCAB_PAD_MULTIPLE = 128;

/// Apex multi_tensor_apply (used by Megatron-LM's fused Adam): chunks of 2048*32 elements, at
/// most 320 blocks per launch, so one launch covers about 21M elements.
constexpr double ELEMENTS_PER_MULTI_TENSOR_LAUNCH = 2048.0 * 32.0 * 320.0;

/// The precision of everything that is not a GEMM: FP8 training (Transformer Engine) runs GEMMs
/// in FP8 and keeps activations, norms, softmax and communication in BF16.
Precision activation_precision(Precision p) { return p == Precision::FP8 ? Precision::BF16 : p; }

/// Everything one layer's ops need: sizes on one GPU of the TP group for one micro-batch.
struct LocalShape {
  long b = 0, s = 0, h = 0;
  long tokens = 0;          ///< b*s: rows of every GEMM
  long rows = 0;            ///< rows elementwise ops see: tokens / t with sequence parallelism
  long heads = 0, kv_heads = 0, head_dim = 0;
  long q = 0, kv = 0;       ///< query width and one of key/value widths on this GPU
  long ffn = 0;             ///< ffn / t
  long vocab = 0;           ///< padded vocab / t
  int t = 1;
  bool llama = false;       ///< RMSNorm, SwiGLU, rotary embeddings, no bias, no dropout
  bool flash = true;
  bool sp = false;
  Precision gemm_dtype = Precision::FP16;
  Precision act_dtype = Precision::FP16;
  double d = 2;             ///< bytes per activation element
  double g = 2;             ///< bytes per GEMM operand element
  double grad = 4;          ///< bytes per gradient element (accumulation and reduction)
};

double gradient_element_bytes(Precision p) { return p == Precision::FP16 ? 2.0 : 4.0; }

/// An op with its identity set; the caller fills in shape, FLOPs, bytes and kernels.
ComputeOp make_op(std::string name, OpKind kind, Pass pass, Precision dtype) {
  ComputeOp op;
  op.name = std::move(name);
  op.kind = kind;
  op.pass = pass;
  op.dtype = dtype;
  return op;
}

class LayerBuilder {
public:
  explicit LayerBuilder(const LocalShape& x) : x_(x) {}

  ComputeOp gemm(std::string name, Pass pass, long m, long n, long k) const {
    ComputeOp op = make_op(std::move(name), OpKind::GEMM, pass, x_.gemm_dtype);
    op.gemm = GemmShape{.m = m, .n = n, .k = k, .batch = 1};
    op.flops = Flops(2.0 * double(m) * double(n) * double(k));
    if (pass == Pass::BACKWARD_WEIGHT) {
      // dW = X^T dY accumulated into the gradient buffer (Megatron-LM gradient_accumulation_fusion):
      // read both operands, read-modify-write the gradient.
      op.bytes = Bytes((double(k) * double(m) + double(k) * double(n)) * x_.g + double(m) * double(n) * 2 * x_.grad);
    } else {
      op.bytes = Bytes((double(m) * double(k) + double(k) * double(n)) * x_.g + double(m) * double(n) * x_.d);
    }
    return op;
  }

  ComputeOp memory_bound(std::string name, Pass pass, double bytes, int kernels = 1) const {
    ComputeOp op = make_op(std::move(name), OpKind::MEMORY_BOUND, pass, x_.act_dtype);
    op.bytes = Bytes(bytes);
    op.kernels = kernels;
    return op;
  }

  ComputeOp attention(std::string name, Pass pass, double flops, double bytes, int kernels) const {
    ComputeOp op = make_op(std::move(name), OpKind::ATTENTION, pass, x_.act_dtype);
    op.attention = AttentionShape{.batch = x_.b, .heads = int(x_.heads), .kv_heads = int(x_.kv_heads),
                                  .seq_q = x_.s, .seq_kv = x_.s, .head_dim = int(x_.head_dim), .causal = true};
    op.flops = Flops(flops);
    op.bytes = Bytes(bytes);
    op.kernels = kernels;
    return op;
  }

  /// One GEMM per (sequence, head) of this GPU, as a strided-batched cuBLAS call (no weights).
  ComputeOp batched_gemm(std::string name, Pass pass, long m, long n, long k) const {
    ComputeOp op = make_op(std::move(name), OpKind::GEMM, pass, x_.act_dtype);
    const long batch = x_.b * x_.heads;
    op.gemm = GemmShape{.m = m, .n = n, .k = k, .batch = batch};
    op.flops = Flops(2.0 * double(m) * double(n) * double(k) * double(batch));
    op.bytes = Bytes((double(m) * double(k) + double(k) * double(n) + double(m) * double(n)) * x_.d * double(batch));
    return op;
  }

  CollectiveOp tp(std::string name, CollectiveKind kind, double bytes) const {
    return CollectiveOp{.name = std::move(name), .kind = kind, .group = GroupKind::TP, .bytes = Bytes(bytes)};
  }

  /// Bytes of the b*s*h activation every TP collective of a layer moves (Megatron-LM eqs. in
  /// Narayanan et al. 2021 sec. 3.3; with sequence parallelism each all-reduce becomes an
  /// all-gather plus a reduce-scatter of the same size, Korthikanti et al. 2022 sec. 4.2.2).
  double hidden_bytes() const { return double(x_.tokens) * double(x_.h) * x_.d; }
  double score_elements() const { return double(x_.b) * double(x_.heads) * double(x_.s) * double(x_.s); }
  double qkv_columns() const { return double(x_.q + 2 * x_.kv); }
  long mlp_up_columns() const { return x_.llama ? 2 * x_.ffn : x_.ffn; }
  const char* norm_name() const { return x_.llama ? "rmsnorm" : "layernorm"; }
  /// Forward FLOPs of QK^T and attention-over-values on this GPU (full s^2, Narayanan eq. 3).
  double attention_flops() const { return 4.0 * double(x_.b) * double(x_.s) * double(x_.s) * double(x_.q); }

  /// The row-parallel output collective of the forward pass (after attn_out and mlp_down).
  void forward_reduce(WorkBlock& w, const std::string& what) const {
    if (x_.t == 1) return;
    if (x_.sp) w.comm.push_back(tp("tp_sp_scatter_" + what, CollectiveKind::REDUCE_SCATTER, hidden_bytes()));
    else w.comm.push_back(tp("tp_" + what, CollectiveKind::ALL_REDUCE, hidden_bytes()));
  }
  /// With sequence parallelism the column-parallel input is all-gathered (forward of Megatron's g).
  void forward_gather(WorkBlock& w, const std::string& what) const {
    if (x_.t > 1 && x_.sp) w.comm.push_back(tp("tp_sp_gather_" + what, CollectiveKind::ALL_GATHER, hidden_bytes()));
  }

  /// Forward ops of the attention core (fused, or the unfused softmax and dropout).
  void attention_core_forward(WorkBlock& w) const {
    const double io = double(x_.tokens) * double(2 * x_.q + 2 * x_.kv) * x_.d;
    if (x_.flash) {
      const double lse = 4.0 * double(x_.b) * double(x_.heads) * double(x_.s);
      w.compute.push_back(attention("attn_core", Pass::FORWARD, attention_flops(), io + lse, 1));
      return;
    }
    const double n = score_elements();
    // Unfused attention (Megatron-LM 2021: baddbmm + bmm) is two strided-batched GEMMs per head
    // whose s x s output and input live in HBM, so they are priced as GEMMs: with a head
    // dimension of 64-128 they are memory bound, which a fused-attention rate would hide.
    w.compute.push_back(batched_gemm("attn_scores", Pass::FORWARD, x_.s, x_.s, x_.head_dim));
    w.compute.push_back(batched_gemm("attn_values", Pass::FORWARD, x_.s, x_.head_dim, x_.s));
    w.compute.push_back(memory_bound("scale_mask_softmax", Pass::FORWARD, 2 * n * x_.d));
    if (!x_.llama) w.compute.push_back(memory_bound("attn_dropout", Pass::FORWARD, n * (2 * x_.d + 1)));
  }

  WorkBlock forward() const {
    WorkBlock w;
    const double hidden_rows = double(x_.rows) * double(x_.h);
    const double tok = double(x_.tokens);
    w.compute.push_back(memory_bound(norm_name(), Pass::FORWARD, 2 * hidden_rows * x_.d));
    forward_gather(w, "attn");
    w.compute.push_back(gemm("qkv", Pass::FORWARD, x_.tokens, x_.q + 2 * x_.kv, x_.h));
    if (x_.llama) w.compute.push_back(memory_bound("rope", Pass::FORWARD, 2 * tok * double(x_.q + x_.kv) * x_.d));
    attention_core_forward(w);
    w.compute.push_back(gemm("attn_out", Pass::FORWARD, x_.tokens, x_.h, x_.q));
    forward_reduce(w, "attn_out");
    w.compute.push_back(residual(Pass::FORWARD));
    w.compute.push_back(memory_bound(norm_name(), Pass::FORWARD, 2 * hidden_rows * x_.d));
    forward_gather(w, "mlp");
    w.compute.push_back(gemm(x_.llama ? "mlp_gate_up" : "mlp_up", Pass::FORWARD, x_.tokens, mlp_up_columns(), x_.h));
    const double f = tok * double(x_.ffn);
    if (x_.llama) w.compute.push_back(memory_bound("swiglu", Pass::FORWARD, 3 * f * x_.d));
    else w.compute.push_back(memory_bound("gelu", Pass::FORWARD, 2 * f * x_.d));
    w.compute.push_back(gemm("mlp_down", Pass::FORWARD, x_.tokens, x_.h, x_.ffn));
    forward_reduce(w, "mlp_down");
    w.compute.push_back(residual(Pass::FORWARD));
    return w;
  }

  /// Bias-dropout-add (GPT: read output and residual, write sum and 1-byte mask) or the plain
  /// residual add of Llama-style models, which train without dropout.
  ComputeOp residual(Pass pass) const {
    const double n = double(x_.rows) * double(x_.h);
    if (pass == Pass::FORWARD)
      return x_.llama ? memory_bound("residual_add", pass, 3 * n * x_.d)
                      : memory_bound("dropout_add", pass, n * (3 * x_.d + 1));
    return memory_bound("dropout_add_bwd", pass, n * (2 * x_.d + 1));
  }

  /// Input-gradient (dX) half of one layer's backward, in execution order.
  WorkBlock backward_input() const {
    WorkBlock w;
    const Pass p = Pass::BACKWARD_INPUT;
    const double tok = double(x_.tokens);
    const double hidden_rows = double(x_.rows) * double(x_.h);
    const double f = tok * double(x_.ffn);
    // Backward of Megatron's f and g operators: all-reduce of the column-parallel input gradient,
    // or with sequence parallelism all-gather (of the reduce-scatter) and reduce-scatter.
    auto backward_gather = [&](const std::string& what) {
      if (x_.t > 1 && x_.sp) w.comm.push_back(tp("tp_sp_gather_" + what + "_grad", CollectiveKind::ALL_GATHER, hidden_bytes()));
    };
    auto backward_reduce = [&](const std::string& what) {
      if (x_.t == 1) return;
      if (x_.sp) w.comm.push_back(tp("tp_sp_scatter_" + what + "_grad", CollectiveKind::REDUCE_SCATTER, hidden_bytes()));
      else w.comm.push_back(tp("tp_" + what + "_grad", CollectiveKind::ALL_REDUCE, hidden_bytes()));
    };
    if (!x_.llama) w.compute.push_back(residual(p));
    backward_gather("mlp_down");
    w.compute.push_back(gemm("mlp_down_dgrad", p, x_.tokens, x_.ffn, x_.h));
    if (x_.llama) w.compute.push_back(memory_bound("swiglu_bwd", p, 5 * f * x_.d));
    else w.compute.push_back(memory_bound("gelu_bwd", p, 3 * f * x_.d));
    w.compute.push_back(gemm(x_.llama ? "mlp_gate_up_dgrad" : "mlp_up_dgrad", p, x_.tokens, x_.h, mlp_up_columns()));
    backward_reduce("mlp_up");
    // Norm backward (read x and dy, write dx) plus the residual-gradient accumulation.
    w.compute.push_back(memory_bound(std::string(norm_name()) + "_bwd", p, 6 * hidden_rows * x_.d, 2));
    if (!x_.llama) w.compute.push_back(residual(p));
    backward_gather("attn_out");
    w.compute.push_back(gemm("attn_out_dgrad", p, x_.tokens, x_.q, x_.h));
    const double io = tok * double(4 * x_.q + 4 * x_.kv) * x_.d;  // q,k,v,o,dO read; dq,dk,dv written
    if (x_.flash) {
      w.compute.push_back(attention("attn_core_bwd", p, 2 * attention_flops(), io, 2));
    } else {
      const double n = score_elements();
      // dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q: four batched GEMMs, twice the forward.
      w.compute.push_back(batched_gemm("attn_values_dgrad_v", p, x_.s, x_.head_dim, x_.s));
      w.compute.push_back(batched_gemm("attn_values_dgrad_p", p, x_.s, x_.s, x_.head_dim));
      w.compute.push_back(batched_gemm("attn_scores_dgrad_q", p, x_.s, x_.head_dim, x_.s));
      w.compute.push_back(batched_gemm("attn_scores_dgrad_k", p, x_.s, x_.head_dim, x_.s));
      if (!x_.llama) w.compute.push_back(memory_bound("attn_dropout_bwd", p, n * (2 * x_.d + 1)));
      w.compute.push_back(memory_bound("scale_mask_softmax_bwd", p, 3 * n * x_.d));
    }
    if (x_.llama) w.compute.push_back(memory_bound("rope_bwd", p, 2 * tok * double(x_.q + x_.kv) * x_.d));
    w.compute.push_back(gemm("qkv_dgrad", p, x_.tokens, x_.h, x_.q + 2 * x_.kv));
    backward_reduce("qkv");
    w.compute.push_back(memory_bound(std::string(norm_name()) + "_bwd", p, 6 * hidden_rows * x_.d, 2));
    return w;
  }

  /// Weight-gradient (dW) half of one layer's backward, in execution order.
  WorkBlock backward_weight() const {
    WorkBlock w;
    const Pass p = Pass::BACKWARD_WEIGHT;
    w.compute.push_back(gemm("mlp_down_wgrad", p, x_.ffn, x_.h, x_.tokens));
    w.compute.push_back(gemm(x_.llama ? "mlp_gate_up_wgrad" : "mlp_up_wgrad", p, x_.h, mlp_up_columns(), x_.tokens));
    w.compute.push_back(gemm("attn_out_wgrad", p, x_.q, x_.h, x_.tokens));
    w.compute.push_back(gemm("qkv_wgrad", p, x_.h, x_.q + 2 * x_.kv, x_.tokens));
    return w;
  }

  /// Work re-run at the start of a layer's backward: the whole forward with its TP collectives
  /// (full recomputation, Chen et al. 2016 / Megatron-LM), or the attention core alone (selective,
  /// Korthikanti et al. 2022 sec. 5).
  WorkBlock recompute(Recompute r) const {
    if (r == Recompute::FULL) return forward();
    WorkBlock w;
    if (r == Recompute::SELECTIVE) attention_core_forward(w);
    return w;
  }

  WorkBlock embedding_forward() const {
    WorkBlock w;
    const double tok_h = double(x_.tokens) * double(x_.h);
    // Vocab-parallel lookup: read the rows (indices outside this rank's vocab slice give zeros),
    // write b*s*h; GPT also reads and adds the learned position embedding.
    w.compute.push_back(memory_bound("embedding", Pass::FORWARD, tok_h * x_.d * (x_.llama ? 2 : 3)));
    if (x_.t > 1) {
      if (x_.sp) w.comm.push_back(tp("tp_sp_scatter_embedding", CollectiveKind::REDUCE_SCATTER, hidden_bytes()));
      else w.comm.push_back(tp("tp_embedding", CollectiveKind::ALL_REDUCE, hidden_bytes()));
    }
    if (!x_.llama)
      w.compute.push_back(memory_bound("embedding_dropout", Pass::FORWARD, double(x_.rows) * double(x_.h) * (2 * x_.d + 1)));
    return w;
  }

  void embedding_backward(WorkBlock& input, WorkBlock& weight) const {
    const double tok_h = double(x_.tokens) * double(x_.h);
    if (!x_.llama)
      input.compute.push_back(memory_bound("embedding_dropout_bwd", Pass::BACKWARD_INPUT,
                                           double(x_.rows) * double(x_.h) * (2 * x_.d + 1)));
    if (x_.t > 1 && x_.sp)
      input.comm.push_back(tp("tp_sp_gather_embedding_grad", CollectiveKind::ALL_GATHER, hidden_bytes()));
    // Scatter-add of the incoming gradient rows into the embedding gradient buffer.
    weight.compute.push_back(memory_bound("embedding_wgrad", Pass::BACKWARD_WEIGHT, tok_h * (x_.d + 2 * x_.grad)));
  }

  /// Final norm, LM head and Megatron-LM's vocab_parallel_cross_entropy, which works in fp32:
  /// cast, max, exp, sum, normalise over the local logits, with three small TP all-reduces
  /// (max, sum of exponentials, target logit) of b*s fp32 values each.
  WorkBlock head_forward() const {
    WorkBlock w;
    const double hidden_rows = double(x_.rows) * double(x_.h);
    const double logits = double(x_.tokens) * double(x_.vocab);
    w.compute.push_back(memory_bound(std::string("final_") + norm_name(), Pass::FORWARD, 2 * hidden_rows * x_.d));
    forward_gather(w, "lm_head");
    w.compute.push_back(gemm("lm_head", Pass::FORWARD, x_.tokens, x_.vocab, x_.h));
    w.compute.push_back(memory_bound("cross_entropy", Pass::FORWARD, logits * (x_.d + 7 * 4.0), 5));
    if (x_.t > 1) {
      const double small = 4.0 * double(x_.tokens);
      w.comm.push_back(tp("tp_cross_entropy_max", CollectiveKind::ALL_REDUCE, small));
      w.comm.push_back(tp("tp_cross_entropy_sum", CollectiveKind::ALL_REDUCE, small));
      w.comm.push_back(tp("tp_cross_entropy_target", CollectiveKind::ALL_REDUCE, small));
    }
    return w;
  }

  void head_backward(WorkBlock& input, WorkBlock& weight) const {
    const Pass p = Pass::BACKWARD_INPUT;
    const double hidden_rows = double(x_.rows) * double(x_.h);
    const double logits = double(x_.tokens) * double(x_.vocab);
    // softmax - one_hot in place, times the loss gradient, cast for the GEMM.
    input.compute.push_back(memory_bound("cross_entropy_bwd", p, logits * (5 * 4.0 + x_.d), 3));
    input.compute.push_back(gemm("lm_head_dgrad", p, x_.tokens, x_.h, x_.vocab));
    if (x_.t > 1) {
      // The LM head is column-parallel: its input gradient is all-reduced (or reduce-scattered).
      if (x_.sp) input.comm.push_back(tp("tp_sp_scatter_lm_head_grad", CollectiveKind::REDUCE_SCATTER, hidden_bytes()));
      else input.comm.push_back(tp("tp_lm_head_grad", CollectiveKind::ALL_REDUCE, hidden_bytes()));
    }
    input.compute.push_back(memory_bound(std::string("final_") + norm_name() + "_bwd", p, 3 * hidden_rows * x_.d));
    weight.compute.push_back(gemm("lm_head_wgrad", Pass::BACKWARD_WEIGHT, x_.h, x_.vocab, x_.tokens));
  }

private:
  LocalShape x_;
};

void append(WorkBlock& to, const WorkBlock& from) {
  to.compute.insert(to.compute.end(), from.compute.begin(), from.compute.end());
  to.comm.insert(to.comm.end(), from.comm.begin(), from.comm.end());
}

double gemm_attention_flops(const WorkBlock& w) {
  double f = 0;
  for (const auto& op : w.compute)
    if (op.kind == OpKind::GEMM || op.kind == OpKind::ATTENTION) f += op.flops.value();
  return f;
}

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

} // namespace

long Workload::vocab_padded() const {
  const long multiple = VOCAB_PAD_MULTIPLE * parallelism_.tp;
  return (long(model_.vocab) + multiple - 1) / multiple * multiple;
}

Workload::Workload(ModelSpec model, TrainingSpec training, ParallelismSpec parallelism)
    : model_(std::move(model)), training_(training), parallelism_(parallelism) {
  ModelSpec& m = model_;
  const ParallelismSpec& par = parallelism_;
  if (m.kv_heads == 0) m.kv_heads = m.heads;  // unset: multi-head attention
  require(m.layers > 0 && m.hidden > 0 && m.heads > 0 && m.ffn_hidden > 0 && m.vocab > 0 && m.seq_len > 0,
          fmt::format("model sizes must be positive (layers = {}, hidden = {}, heads = {}, ffn_hidden = {}, "
                      "vocab = {}, seq_len = {})",
                      m.layers, m.hidden, m.heads, m.ffn_hidden, m.vocab, m.seq_len));
  require(training_.global_batch > 0 && training_.micro_batch > 0,
          fmt::format("batch sizes must be positive (global_batch = {}, micro_batch = {})", training_.global_batch,
                      training_.micro_batch));
  require(par.tp >= 1 && par.pp >= 1 && par.dp >= 1 && par.cp >= 1 && par.ep >= 1 && par.virtual_stages >= 1,
          fmt::format("parallel degrees must be at least 1 (tp = {}, pp = {}, dp = {}, cp = {}, ep = {}, "
                      "virtual_stages = {})",
                      par.tp, par.pp, par.dp, par.cp, par.ep, par.virtual_stages));
  require(par.cp == 1, fmt::format("context parallelism is not modelled yet (cp = {})", par.cp));
  require(par.ep == 1, fmt::format("expert parallelism needs a mixture-of-experts model (ep = {})", par.ep));
  require(par.zero >= 0 && par.zero <= 3, fmt::format("zero stage must be 0..3 (got {})", par.zero));
  require(m.hidden % m.heads == 0,
          fmt::format("hidden ({}) must be divisible by heads ({})", m.hidden, m.heads));
  require(m.kv_heads >= 1 && m.kv_heads <= m.heads && m.heads % m.kv_heads == 0,
          fmt::format("kv_heads ({}) must divide heads ({})", m.kv_heads, m.heads));
  require(m.heads % par.tp == 0, fmt::format("heads ({}) must be divisible by tp ({})", m.heads, par.tp));
  require(m.kv_heads % par.tp == 0 || par.tp % m.kv_heads == 0,
          fmt::format("kv_heads ({}) and tp ({}) must divide one another", m.kv_heads, par.tp));
  require(m.ffn_hidden % par.tp == 0,
          fmt::format("ffn_hidden ({}) must be divisible by tp ({})", m.ffn_hidden, par.tp));
  require(!par.sequence_parallel || m.seq_len % par.tp == 0,
          fmt::format("sequence parallelism needs seq_len ({}) divisible by tp ({})", m.seq_len, par.tp));
  const int virtual_stages = par.pp * par.virtual_stages;
  require(m.layers % virtual_stages == 0,
          fmt::format("layers ({}) must be divisible by pp * virtual_stages ({} * {} = {})", m.layers, par.pp,
                      par.virtual_stages, virtual_stages));
  const long replica_batch = long(training_.micro_batch) * par.dp;
  require(training_.global_batch % replica_batch == 0,
          fmt::format("global_batch ({}) must be divisible by micro_batch * dp ({} * {} = {})",
                      training_.global_batch, training_.micro_batch, par.dp, replica_batch));

  const int mb = microbatches();
  schedules_.reserve(size_t(par.pp));
  for (int s = 0; s < par.pp; ++s)
    schedules_.push_back(pipeline_schedule(par.schedule, par.pp, par.virtual_stages, mb, s));

  LocalShape x;
  x.t = par.tp;
  x.b = training_.micro_batch;
  x.s = m.seq_len;
  x.h = m.hidden;
  x.tokens = x.b * x.s;
  x.sp = par.sequence_parallel && par.tp > 1;
  x.rows = x.sp ? x.tokens / x.t : x.tokens;
  x.head_dim = m.head_dim();
  x.heads = m.heads / x.t;
  x.kv_heads = std::max(m.kv_heads / x.t, 1);  // fewer KV heads than ranks: each rank keeps a copy
  x.q = x.heads * x.head_dim;
  x.kv = x.kv_heads * x.head_dim;
  x.ffn = m.ffn_hidden / x.t;
  x.vocab = vocab_padded() / x.t;
  x.llama = m.activation == Activation::SWIGLU;
  x.flash = training_.flash_attention;
  x.gemm_dtype = training_.precision;
  x.act_dtype = activation_precision(training_.precision);
  x.d = bytes_per_element(x.act_dtype);
  x.g = bytes_per_element(x.gemm_dtype);
  x.grad = gradient_element_bytes(training_.precision);
  const LayerBuilder layer(x);

  // One layer's blocks, built once and repeated: every layer of every micro-batch is identical.
  const WorkBlock fwd = layer.forward();
  const WorkBlock rec = layer.recompute(par.recompute);
  const WorkBlock dx = layer.backward_input();
  const WorkBlock dw = layer.backward_weight();
  const int layers_per_chunk = m.layers / virtual_stages;
  const double boundary = double(x.tokens) * double(x.h) * x.d;
  const bool gather_boundary = x.t > 1 && !x.sp;  // scatter/gather optimisation, Narayanan et al. 2021 sec. 4.1

  auto build = [&](int vstage) {
    ChunkWork c;
    c.first_layer = vstage * layers_per_chunk;
    c.layers = layers_per_chunk;
    c.has_embedding = vstage == 0;
    c.has_lm_head = vstage == virtual_stages - 1;
    c.activation_out = Bytes(x.t > 1 ? boundary / x.t : boundary);
    const CollectiveOp gather{.name = "pp_gather", .kind = CollectiveKind::ALL_GATHER, .group = GroupKind::TP,
                              .bytes = Bytes(boundary)};
    if (gather_boundary && !c.has_embedding) c.forward.comm.push_back(gather);
    if (gather_boundary && !c.has_lm_head) c.backward_input.comm.push_back(gather);
    if (c.has_embedding) append(c.forward, layer.embedding_forward());
    for (int l = 0; l < layers_per_chunk; ++l) append(c.forward, fwd);
    if (c.has_lm_head) {
      append(c.forward, layer.head_forward());
      layer.head_backward(c.backward_input, c.backward_weight);
    }
    c.backward = c.backward_input;
    append(c.backward, c.backward_weight);
    for (int l = 0; l < layers_per_chunk; ++l) {
      append(c.backward_input, rec);
      append(c.backward_input, dx);
      append(c.backward_weight, dw);
      append(c.backward, rec);
      append(c.backward, dx);
      append(c.backward, dw);
    }
    if (c.has_embedding) {
      WorkBlock input, weight;
      layer.embedding_backward(input, weight);
      append(c.backward_input, input);
      append(c.backward_weight, weight);
      append(c.backward, input);
      append(c.backward, weight);
    }
    return c;
  };

  // Local parameter counts (one GPU of the TP group).
  const double h = double(x.h);
  const double qkv_cols = double(x.q + 2 * x.kv);
  const double up_cols = double(x.llama ? 2 * x.ffn : x.ffn);
  double layer_params = h * qkv_cols + double(x.q) * h + h * up_cols + double(x.ffn) * h;
  if (x.llama) layer_params += 2 * h;                                      // two RMSNorm gains
  else layer_params += 4 * h + qkv_cols + h + up_cols + h;                 // two LayerNorms, biases
  const double word_embedding = double(x.vocab) * h;
  const double embedding_params = word_embedding + (x.llama ? 0.0 : double(x.s) * h);
  const double final_norm = x.llama ? h : 2 * h;

  // A chunk's ops depend only on whether it holds the embedding and/or the LM head: build each
  // distinct chunk once.
  std::vector<ChunkWork> variants;
  auto variant_index = [&](int vstage) { return (vstage == 0 ? 1 : 0) + (vstage == virtual_stages - 1 ? 2 : 0); };
  variants.resize(4);
  std::vector<bool> built(4, false);
  chunks_.assign(size_t(par.pp), {});
  local_parameters_.assign(size_t(par.pp), 0.0);
  for (int s = 0; s < par.pp; ++s) {
    for (int c = 0; c < par.virtual_stages; ++c) {
      const int vstage = c * par.pp + s;
      const int key = variant_index(vstage);
      if (!built[size_t(key)]) {
        variants[size_t(key)] = build(vstage);
        built[size_t(key)] = true;
      }
      ChunkWork chunk = variants[size_t(key)];
      chunk.first_layer = vstage * layers_per_chunk;
      double params = layer_params * layers_per_chunk;
      if (chunk.has_embedding) params += embedding_params;
      if (chunk.has_lm_head) {
        params += final_norm;
        // GPT ties the LM head to the word embedding; Megatron-LM keeps a copy on the last stage
        // when the two are on different GPUs and all-reduces their gradients.
        if (x.llama || par.pp > 1) params += word_embedding;
      }
      chunk.parameters = Bytes(params * x.grad);
      local_parameters_[size_t(s)] += params;
      chunks_[size_t(s)].push_back(std::move(chunk));
    }
  }

  gradient_bytes_.reserve(size_t(par.pp));
  optimizer_.reserve(size_t(par.pp));
  for (int s = 0; s < par.pp; ++s) {
    gradient_bytes_.push_back(Bytes(local_parameters_[size_t(s)] * x.grad));
    // Each ZeRO stage >= 1 gives every data-parallel rank 1/dp of the optimizer step.
    const double shard = local_parameters_[size_t(s)] / (par.zero >= 1 ? par.dp : 1);
    const int launches = std::max(1, int(std::ceil(shard / ELEMENTS_PER_MULTI_TENSOR_LAUNCH)));
    const bool fp32 = training_.precision == Precision::FP32;
    // Fused Adam: read fp32 weights, m, v and the gradient; write weights, m, v and (mixed
    // precision) the fp16/bf16 model copy. Gradient-norm clipping first reads every gradient.
    const double adam_bytes = fp32 ? 7 * 4.0 : 6 * 4.0 + x.grad + 2.0;
    ComputeOp norm = make_op("grad_norm", OpKind::MEMORY_BOUND, Pass::BACKWARD_WEIGHT,
                             x.grad == 4.0 ? Precision::FP32 : Precision::FP16);
    norm.flops = Flops(2 * shard);
    norm.bytes = Bytes(shard * x.grad);
    norm.kernels = launches;
    ComputeOp adam = make_op("adam", OpKind::OPTIMIZER, Pass::BACKWARD_WEIGHT, Precision::FP32);
    adam.flops = Flops(12 * shard);
    adam.bytes = Bytes(shard * adam_bytes);
    adam.kernels = launches;
    optimizer_.push_back({norm, adam});
  }
}

int Workload::microbatches() const {
  return training_.global_batch / (training_.micro_batch * parallelism_.dp);
}

const ChunkWork& Workload::chunk(int stage, int chunk_index) const {
  if (stage < 0 || stage >= stages() || chunk_index < 0 || chunk_index >= chunks_per_stage())
    throw std::out_of_range(fmt::format("chunk ({}, {}) out of range ({} stages, {} chunks per stage)", stage,
                                        chunk_index, stages(), chunks_per_stage()));
  return chunks_[size_t(stage)][size_t(chunk_index)];
}

const std::vector<PipelineStep>& Workload::schedule(int stage) const { return schedules_.at(size_t(stage)); }

Bytes Workload::gradient_bytes(int stage) const { return gradient_bytes_.at(size_t(stage)); }

const std::vector<ComputeOp>& Workload::optimizer(int stage) const { return optimizer_.at(size_t(stage)); }

double Workload::local_parameters(int stage) const { return local_parameters_.at(size_t(stage)); }

Flops Workload::model_flops() const {
  const double s = model_.seq_len, h = model_.hidden, f = model_.ffn_hidden, v = model_.vocab;
  const double q = double(model_.heads) * model_.head_dim();
  const double kv = double(model_.kv_heads) * model_.head_dim();
  const double mlp_matrices = model_.activation == Activation::SWIGLU ? 3 : 2;
  // Forward FLOPs per sequence: QKV, QK^T + AV, output projection, MLP; then the LM head.
  const double layer = 2 * s * h * (q + 2 * kv) + 4 * s * s * q + 2 * s * q * h + mlp_matrices * 2 * s * h * f;
  const double head = 2 * s * h * v;
  // Backward is twice the forward (dX and dW GEMMs; attention backward), Narayanan et al. 2021 sec. 5.1.
  return Flops(3.0 * double(training_.global_batch) * (model_.layers * layer + head));
}

Flops Workload::hardware_flops() const {
  // The FLOPs of the ops the GPUs execute (recomputation and vocab padding included), times the
  // micro-batches, the TP ranks that each run their share and the data-parallel replicas.
  double per_replica = 0;
  for (const auto& stage : chunks_)
    for (const auto& c : stage) per_replica += gemm_attention_flops(c.forward) + gemm_attention_flops(c.backward);
  return Flops(per_replica * microbatches() * parallelism_.tp * parallelism_.dp);
}

double Workload::parameters() const {
  const double h = model_.hidden, f = model_.ffn_hidden, v = model_.vocab;
  const double q = double(model_.heads) * model_.head_dim();
  const double kv = double(model_.kv_heads) * model_.head_dim();
  if (model_.activation == Activation::SWIGLU) {
    // Llama: no biases, RMSNorm gains only, untied LM head, rotary positions (no parameters).
    const double layer = h * (q + 2 * kv) + q * h + 3 * h * f + 2 * h;
    return model_.layers * layer + 2 * v * h + h;
  }
  // GPT: biases on every linear layer, LayerNorm gain and bias, learned positions, tied LM head.
  const double layer = h * (q + 2 * kv) + (q + 2 * kv) + q * h + h + 2 * h * f + f + h + 4 * h;
  return model_.layers * layer + v * h + double(model_.seq_len) * h + 2 * h;
}

} // namespace odyssey
