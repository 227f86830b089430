// The per-rank program of one training iteration: the ops of each model chunk (Megatron-LM
// layout on one GPU of a TP group), stage assignment, gradient and optimizer work, FLOP counts.
//
// FLOP convention: `flops` of GEMM and ATTENTION ops are the matrix-multiply FLOPs (2*m*n*k; the
// attention core counts the full s^2 score matrix even when causal, as Narayanan et al. 2021
// eq. 3 does). Memory-bound ops carry their HBM bytes and no FLOPs, so model_flops() and
// hardware_flops() reproduce the published closed forms exactly.
#include <algorithm>
#include <cmath>
#include <map>
#include <stdexcept>
#include <tuple>
#include <utility>

#include <fmt/format.h>

#include "models/workload.hpp"

#include "models/strategy.hpp"

namespace odyssey {
namespace {

/// Megatron-LM's default --make-vocab-size-divisible-by.
constexpr long VOCAB_PAD_MULTIPLE = 128;

/// Apex multi_tensor_apply (used by Megatron-LM's fused Adam): chunks of 2048*32 elements, at
/// most 320 blocks per launch, so one launch covers about 21M elements.
constexpr double ELEMENTS_PER_MULTI_TENSOR_LAUNCH = 2048.0 * 32.0 * 320.0;

/// The precision of everything that is not a GEMM: FP8 training (Transformer Engine) runs GEMMs
/// in FP8 and keeps activations, norms, softmax and communication in BF16.
Precision activation_precision(Precision p) {
  return p == Precision::FP8 ? Precision::BF16 : p;
}

} // namespace

std::vector<Precision> compute_precisions(Precision precision) {
  if (activation_precision(precision) == precision) return {precision};
  return {precision, activation_precision(precision)};
}

namespace {

/// Everything one layer's ops need: sizes on one GPU of the TP group for one micro-batch.
struct LocalShape {
  long b = 0, s = 0, h = 0; ///< s: this GPU's tokens of a sequence (seq_len / cp)
  long s_kv = 0;            ///< keys each query attends to: the whole sequence
  long tokens = 0;          ///< b*s: rows of every GEMM
  long rows = 0;            ///< rows elementwise ops see: tokens / t with sequence parallelism
  long heads = 0, kv_heads = 0, head_dim = 0;
  long q = 0, kv = 0; ///< query width and one of key/value widths on this GPU
  long ffn = 0;       ///< ffn / t
  long vocab = 0;     ///< padded vocab / t
  int t = 1;
  int cp = 1;
  ContextParallelKind cp_kind = ContextParallelKind::RING;
  long experts = 0;       ///< MoE: experts per MoE layer (0: dense model)
  long local_experts = 0; ///< experts / ep
  long expert_ffn = 0;    ///< expert FFN width / t
  long expert_rows = 0;   ///< tokens one local expert computes: tokens*top_k*capacity*ep/experts
  long routed = 0;        ///< token copies this GPU dispatches: tokens*top_k*capacity
  long top_k = 0;
  int ep = 1;
  bool llama = false;              ///< RMSNorm, SwiGLU, rotary embeddings, no bias
  bool dropout = false;            ///< dropout probability > 0: dropout kernels and their 1-byte masks
  bool accumulation_fusion = true; ///< dW GEMMs accumulate into the main gradient
  bool flash = true;
  AttentionKernel attention_kernel = AttentionKernel::NEWEST;
  bool sp = false;
  /// Transformer Engine's userbuffers overlap (parallelism.overlap.tp with sequence parallelism)
  /// splits the GEMMs next to a TP collective into chunks (tp_overlap_chunks).
  bool tp_overlap = false;
  Precision gemm_dtype = Precision::FP16;
  Precision act_dtype = Precision::FP16;
  double d = 2;    ///< bytes per activation element
  double g = 2;    ///< bytes per GEMM operand element
  double grad = 4; ///< bytes per gradient element (accumulation and reduction)
  double w = 2;    ///< bytes per weight element (the dtype of an unfused weight gradient)
};

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

  /// `batch` independent GEMMs of one shape with weights (the grouped GEMM of local experts).
  ComputeOp gemm(std::string name, Pass pass, long m, long n, long k, long batch = 1) const {
    ComputeOp op = make_op(std::move(name), OpKind::GEMM, pass, x_.gemm_dtype);
    op.gemm = GemmShape{.m = m, .n = n, .k = k, .batch = batch};
    const double count = double(batch);
    op.flops = Flops(2.0 * double(m) * double(n) * double(k) * count);
    if (pass == Pass::BACKWARD_WEIGHT) {
      // dW = X^T dY: read both operands; accumulated into the gradient buffer (Megatron-LM
      // gradient_accumulation_fusion) it read-modify-writes the gradient, else it writes a
      // gradient in the weight dtype that add_gradient_accumulation adds to the main gradient.
      const double out = x_.accumulation_fusion ? 2 * x_.grad : x_.w;
      op.bytes = Bytes(
          count * ((double(k) * double(m) + double(k) * double(n)) * x_.g + double(m) * double(n) * out));
    } else {
      op.bytes = Bytes(
          count * ((double(m) * double(k) + double(k) * double(n)) * x_.g + double(m) * double(n) * x_.d));
    }
    return op;
  }

  /// A GEMM next to an overlapped TP collective, as Transformer Engine's userbuffers run it
  /// (transformer_engine/pytorch/module/base.py, initialize_ub defaults): `ring_exchange`
  /// (qkv and fc1 forward, proj and fc2 dgrad) computes one chunk of m/tp rows per ring step as
  /// each shard arrives; `pipeline` (proj and fc2 forward) splits the GEMM into num_splits = 4
  /// chunks whose reduce-scatters follow one another; `bulk` (qkv and fc1 dgrad and wgrad) runs
  /// the GEMM whole. Each chunk is its own, smaller GEMM: priced at its shape, launched apart.
  enum class Overlap { RING_EXCHANGE, PIPELINE };
  ComputeOp overlapped(ComputeOp op, Overlap how) const {
    if (!x_.tp_overlap) return op;
    constexpr int PIPELINE_SPLITS = 4; // initialize_ub: num_splits=4 if method == "pipeline"
    const long chunks = how == Overlap::RING_EXCHANGE ? x_.t : PIPELINE_SPLITS;
    op.gemm.m = std::max(1L, op.gemm.m / chunks);
    op.kernels *= int(chunks);
    // A ring exchange's chunks arrive from the other ranks: this GPU holds (and casts) one.
    if (how == Overlap::PIPELINE) op.input_splits = int(chunks);
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
    op.attention = AttentionShape{.batch = x_.b,
                                  .heads = int(x_.heads),
                                  .kv_heads = int(x_.kv_heads),
                                  .seq_q = x_.s,
                                  .seq_kv = x_.s_kv,
                                  .head_dim = int(x_.head_dim),
                                  .causal = true,
                                  .fused = x_.flash,
                                  .kernel = x_.attention_kernel};
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
    op.bytes =
        Bytes((double(m) * double(k) + double(k) * double(n) + double(m) * double(n)) * x_.d * double(batch));
    return op;
  }

  /// The MoE router (h x experts): small, replicated on every TP rank and kept in the activation
  /// dtype (Transformer Engine does not run it in FP8).
  ComputeOp router_gemm(std::string name, Pass pass, long m, long n, long k) const {
    ComputeOp op = gemm(std::move(name), pass, m, n, k);
    op.dtype = x_.act_dtype;
    return op;
  }

  CollectiveOp collective(std::string name, CollectiveKind kind, GroupKind group, double bytes,
                          bool overlap = false) const {
    return CollectiveOp{.name = std::move(name),
                        .kind = kind,
                        .group = group,
                        .bytes = Bytes(bytes),
                        .overlap_with_compute = overlap};
  }
  CollectiveOp tp(std::string name, CollectiveKind kind, double bytes, std::string beside = {}) const {
    CollectiveOp op = collective(std::move(name), kind, GroupKind::TP, bytes);
    op.beside = std::move(beside);
    return op;
  }

  /// Bytes of the b*s*h activation every TP collective of a layer moves (Megatron-LM eqs. in
  /// Narayanan et al. 2021 sec. 3.3; with sequence parallelism each all-reduce becomes an
  /// all-gather plus a reduce-scatter of the same size, Korthikanti et al. 2022 sec. 4.2.2).
  /// With context parallelism s is this rank's s/cp tokens.
  double hidden_bytes() const { return double(x_.tokens) * double(x_.h) * x_.d; }
  double score_elements() const { return double(x_.b) * double(x_.heads) * double(x_.s) * double(x_.s_kv); }
  double qkv_columns() const { return double(x_.q + 2 * x_.kv); }
  long mlp_up_columns() const { return x_.llama ? 2 * x_.ffn : x_.ffn; }
  /// The MLP's first GEMM: gate and up projections fused (SwiGLU) or the up projection alone.
  std::string mlp_up_name() const { return x_.llama ? "mlp_gate_up" : "mlp_up"; }
  long expert_up_columns() const { return x_.llama ? 2 * x_.expert_ffn : x_.expert_ffn; }
  const char* norm_name() const { return x_.llama ? "rmsnorm" : "layernorm"; }
  /// Forward FLOPs of QK^T and attention-over-values on this GPU (full s^2, Narayanan eq. 3).
  /// With context parallelism this rank's s/cp queries meet all s keys: with causal load
  /// balancing (each rank holds chunks r and 2cp-1-r of 2cp) that is the job's total over cp.
  double attention_flops() const {
    return 4.0 * double(x_.b) * double(x_.s) * double(x_.s_kv) * double(x_.q);
  }
  /// The whole sequence's K and V for this TP rank: what context parallelism moves per layer.
  double kv_sequence_bytes() const { return double(x_.b) * double(x_.s_kv) * 2.0 * double(x_.kv) * x_.d; }

  /// The row-parallel output collective of the forward pass (after attn_out and mlp_down);
  /// overlapped, it runs beside that GEMM (`gemm`).
  void forward_reduce(WorkBlock& w, const std::string& what, const std::string& gemm = {}) const {
    if (x_.t == 1) return;
    if (x_.sp)
      w.comm.push_back(tp("tp_sp_scatter_" + what, CollectiveKind::REDUCE_SCATTER, hidden_bytes(), gemm));
    else
      w.comm.push_back(tp("tp_" + what, CollectiveKind::ALL_REDUCE, hidden_bytes(), gemm));
  }
  /// With sequence parallelism the column-parallel input is all-gathered (forward of Megatron's g);
  /// overlapped, beside the GEMM that consumes it (`gemm`).
  void forward_gather(WorkBlock& w, const std::string& what, const std::string& gemm = {}) const {
    if (x_.t > 1 && x_.sp)
      w.comm.push_back(tp("tp_sp_gather_" + what, CollectiveKind::ALL_GATHER, hidden_bytes(), gemm));
  }
  /// With sequence parallelism a column-parallel linear keeps only its sequence shard of the input
  /// for the weight gradient and all-gathers it again in the backward (Korthikanti et al. 2022
  /// sec. 4.2.2; Megatron-LM LinearWithGradAccumulationAndAsyncCommunication.backward), overlapped
  /// with the dgrad GEMM (`gemm`): Megatron-LM issues it asynchronously before that GEMM,
  /// Transformer Engine runs it as userbuffers' bulk overlap of the dgrad GEMM. The memory model
  /// keeps that shard (Workload::layer_activation_bytes).
  void backward_regather(WorkBlock& w, const std::string& what, const std::string& gemm) const {
    if (x_.t == 1 || !x_.sp) return;
    CollectiveOp op = tp("tp_sp_regather_" + what, CollectiveKind::ALL_GATHER, hidden_bytes(), gemm);
    op.overlap_with_compute = true;
    w.comm.push_back(op);
  }

  /// Context parallelism before the attention core: ring attention passes the K/V shards around
  /// the ring in cp-1 steps overlapped with the partial attention of each step (Liu et al. 2023,
  /// arXiv 2310.01889 sec. 3), the all-gather variant gathers them first (Llama 3, arXiv
  /// 2407.21783 sec. 3.3.2). Both move the whole sequence's K/V (all-gather volume).
  void context_parallel_forward(WorkBlock& w) const {
    if (x_.cp == 1) return;
    const bool ring = x_.cp_kind == ContextParallelKind::RING;
    w.comm.push_back(collective(ring ? "cp_kv_ring" : "cp_kv_gather", CollectiveKind::ALL_GATHER,
                                GroupKind::CP, kv_sequence_bytes(), ring));
  }
  /// Backward of the above: the ring passes K/V again and sends dK/dV back around (a
  /// reduce-scatter's volume); the all-gather variant gathers K/V again (the forward keeps only
  /// the local shard: the whole sequence's K/V for every in-flight micro-batch would not fit) and
  /// reduce-scatters dK/dV.
  void context_parallel_backward(WorkBlock& w) const {
    if (x_.cp == 1) return;
    const bool ring = x_.cp_kind == ContextParallelKind::RING;
    w.comm.push_back(collective(ring ? "cp_kv_ring_bwd" : "cp_kv_gather_bwd", CollectiveKind::ALL_GATHER,
                                GroupKind::CP, kv_sequence_bytes(), ring));
    w.comm.push_back(collective(ring ? "cp_dkv_ring" : "cp_dkv_scatter", CollectiveKind::REDUCE_SCATTER,
                                GroupKind::CP, kv_sequence_bytes(), ring));
  }

  /// Forward ops of the attention core (fused, or the unfused softmax and dropout).
  void attention_core_forward(WorkBlock& w) const {
    context_parallel_forward(w);
    const double io = double(x_.tokens) * double(2 * x_.q) * x_.d + kv_sequence_bytes();
    if (x_.flash) {
      const double lse = 4.0 * double(x_.b) * double(x_.heads) * double(x_.s);
      w.compute.push_back(attention("attn_core", Pass::FORWARD, attention_flops(), io + lse, 1));
      return;
    }
    const double n = score_elements();
    // Unfused attention (Megatron-LM 2021: baddbmm + bmm) is two strided-batched GEMMs per head
    // whose s x s output and input live in HBM, so they are priced as GEMMs: with a head
    // dimension of 64-128 they are memory bound, which a fused-attention rate would hide.
    w.compute.push_back(batched_gemm("attn_scores", Pass::FORWARD, x_.s, x_.s_kv, x_.head_dim));
    w.compute.push_back(batched_gemm("attn_values", Pass::FORWARD, x_.s, x_.head_dim, x_.s_kv));
    w.compute.push_back(memory_bound("scale_mask_softmax", Pass::FORWARD, 2 * n * x_.d));
    if (x_.dropout) w.compute.push_back(memory_bound("attn_dropout", Pass::FORWARD, n * (2 * x_.d + 1)));
  }

  /// Norm, QKV, attention core, output projection and residual of one layer's forward.
  void attention_forward(WorkBlock& w) const {
    const double hidden_rows = double(x_.rows) * double(x_.h);
    const double tok = double(x_.tokens);
    w.compute.push_back(memory_bound(norm_name(), Pass::FORWARD, 2 * hidden_rows * x_.d));
    forward_gather(w, "attn", "qkv");
    w.compute.push_back(
        overlapped(gemm("qkv", Pass::FORWARD, x_.tokens, x_.q + 2 * x_.kv, x_.h), Overlap::RING_EXCHANGE));
    if (x_.llama)
      w.compute.push_back(memory_bound("rope", Pass::FORWARD, 2 * tok * double(x_.q + x_.kv) * x_.d));
    attention_core_forward(w);
    w.compute.push_back(
        overlapped(gemm("attn_out", Pass::FORWARD, x_.tokens, x_.h, x_.q), Overlap::PIPELINE));
    forward_reduce(w, "attn_out", "attn_out");
    w.compute.push_back(residual(Pass::FORWARD));
  }

  /// Norm, dense MLP (or the MoE block) and residual of one layer's forward.
  void mlp_forward(WorkBlock& w, bool moe) const {
    const double hidden_rows = double(x_.rows) * double(x_.h);
    w.compute.push_back(memory_bound(norm_name(), Pass::FORWARD, 2 * hidden_rows * x_.d));
    const std::string up = mlp_up_name();
    forward_gather(w, "mlp", moe ? "" : up);
    if (moe) {
      moe_forward(w);
    } else {
      w.compute.push_back(
          overlapped(gemm(up, Pass::FORWARD, x_.tokens, mlp_up_columns(), x_.h), Overlap::RING_EXCHANGE));
      const double f = double(x_.tokens) * double(x_.ffn);
      if (x_.llama)
        w.compute.push_back(memory_bound("swiglu", Pass::FORWARD, 3 * f * x_.d));
      else
        w.compute.push_back(memory_bound("gelu", Pass::FORWARD, 2 * f * x_.d));
      w.compute.push_back(
          overlapped(gemm("mlp_down", Pass::FORWARD, x_.tokens, x_.h, x_.ffn), Overlap::PIPELINE));
    }
    forward_reduce(w, "mlp_down", moe ? "" : "mlp_down");
    w.compute.push_back(residual(Pass::FORWARD));
  }

  WorkBlock forward(bool moe) const {
    WorkBlock w;
    attention_forward(w);
    mlp_forward(w, moe);
    return w;
  }

  /// Bytes of one all-to-all of an MoE layer: the token copies this GPU routes, b*s/cp*top_k*
  /// capacity_factor*h (nccl-tests' all-to-all size is the whole send buffer).
  double all_to_all_bytes() const { return double(x_.routed) * double(x_.h) * x_.d; }

  /// MoE feed-forward (Megatron-core MoELayer with the all-to-all token dispatcher; Fedus et al.
  /// 2021 sec. 2 for top-k routing with a capacity factor): router GEMM, top-k softmax,
  /// permutation, dispatch all-to-all over ep, the grouped GEMMs of the local experts (split by tp
  /// like the dense MLP), combine all-to-all and un-permutation weighted by the router
  /// probabilities.
  void moe_forward(WorkBlock& w) const {
    const double tok = double(x_.tokens);
    const double e = double(x_.experts);
    const double routed_h = double(x_.routed) * double(x_.h) * x_.d;
    w.compute.push_back(router_gemm("moe_router", Pass::FORWARD, x_.tokens, x_.experts, x_.h));
    // fp32 softmax over the logits, top-k selection: read logits, write probabilities, then the
    // top-k probabilities (fp32) and indices (int64).
    w.compute.push_back(
        memory_bound("moe_topk_softmax", Pass::FORWARD, tok * e * 8 + tok * double(x_.top_k) * 12, 2));
    w.compute.push_back(memory_bound("moe_permute", Pass::FORWARD, tok * double(x_.h) * x_.d + routed_h));
    if (x_.ep > 1)
      w.comm.push_back(
          collective("moe_dispatch", CollectiveKind::ALL_TO_ALL, GroupKind::EP, all_to_all_bytes()));
    w.compute.push_back(gemm(x_.llama ? "expert_gate_up" : "expert_up", Pass::FORWARD, x_.expert_rows,
                             expert_up_columns(), x_.h, x_.local_experts));
    const double f = double(x_.routed) * double(x_.expert_ffn);
    if (x_.llama)
      w.compute.push_back(memory_bound("expert_swiglu", Pass::FORWARD, 3 * f * x_.d));
    else
      w.compute.push_back(memory_bound("expert_gelu", Pass::FORWARD, 2 * f * x_.d));
    w.compute.push_back(
        gemm("expert_down", Pass::FORWARD, x_.expert_rows, x_.h, x_.expert_ffn, x_.local_experts));
    if (x_.ep > 1)
      w.comm.push_back(
          collective("moe_combine", CollectiveKind::ALL_TO_ALL, GroupKind::EP, all_to_all_bytes()));
    w.compute.push_back(memory_bound("moe_unpermute", Pass::FORWARD, routed_h + tok * double(x_.h) * x_.d));
  }

  /// Input-gradient half of the MoE block: the all-to-alls run in reverse (combine's gradient is
  /// dispatched, dispatch's gradient combined), the expert dX GEMMs and the router's dX.
  void moe_backward_input(WorkBlock& w) const {
    const Pass p = Pass::BACKWARD_INPUT;
    const double tok = double(x_.tokens);
    const double e = double(x_.experts);
    const double routed_h = double(x_.routed) * double(x_.h) * x_.d;
    w.compute.push_back(memory_bound("moe_unpermute_bwd", p, tok * double(x_.h) * x_.d + 2 * routed_h));
    if (x_.ep > 1)
      w.comm.push_back(
          collective("moe_combine_grad", CollectiveKind::ALL_TO_ALL, GroupKind::EP, all_to_all_bytes()));
    w.compute.push_back(gemm("expert_down_dgrad", p, x_.expert_rows, x_.expert_ffn, x_.h, x_.local_experts));
    const double f = double(x_.routed) * double(x_.expert_ffn);
    if (x_.llama)
      w.compute.push_back(memory_bound("expert_swiglu_bwd", p, 5 * f * x_.d));
    else
      w.compute.push_back(memory_bound("expert_gelu_bwd", p, 3 * f * x_.d));
    w.compute.push_back(gemm(x_.llama ? "expert_gate_up_dgrad" : "expert_up_dgrad", p, x_.expert_rows, x_.h,
                             expert_up_columns(), x_.local_experts));
    if (x_.ep > 1)
      w.comm.push_back(
          collective("moe_dispatch_grad", CollectiveKind::ALL_TO_ALL, GroupKind::EP, all_to_all_bytes()));
    w.compute.push_back(memory_bound("moe_permute_bwd", p, routed_h + tok * double(x_.h) * x_.d));
    w.compute.push_back(memory_bound("moe_topk_softmax_bwd", p, tok * e * 12, 2));
    w.compute.push_back(router_gemm("moe_router_dgrad", p, x_.tokens, x_.h, x_.experts));
  }

  void moe_backward_weight(WorkBlock& w) const {
    const Pass p = Pass::BACKWARD_WEIGHT;
    w.compute.push_back(gemm("expert_down_wgrad", p, x_.expert_ffn, x_.h, x_.expert_rows, x_.local_experts));
    w.compute.push_back(gemm(x_.llama ? "expert_gate_up_wgrad" : "expert_up_wgrad", p, x_.h,
                             expert_up_columns(), x_.expert_rows, x_.local_experts));
    w.compute.push_back(router_gemm("moe_router_wgrad", p, x_.h, x_.experts, x_.tokens));
  }

  /// Bias-dropout-add (read output and residual, write sum and 1-byte mask) or, without dropout,
  /// the plain residual add. Its backward (only with dropout: the add's gradient passes through)
  /// reads the gradient and the mask and writes the masked gradient.
  ComputeOp residual(Pass pass) const {
    const double n = double(x_.rows) * double(x_.h);
    if (pass == Pass::FORWARD)
      return x_.dropout ? memory_bound("dropout_add", pass, n * (3 * x_.d + 1))
                        : memory_bound("residual_add", pass, 3 * n * x_.d);
    return memory_bound("dropout_add_bwd", pass, n * (2 * x_.d + 1));
  }

  /// Input-gradient (dX) half of one layer's backward, in execution order.
  WorkBlock backward_input(bool moe) const {
    WorkBlock w;
    const Pass p = Pass::BACKWARD_INPUT;
    const double tok = double(x_.tokens);
    const double hidden_rows = double(x_.rows) * double(x_.h);
    const double f = tok * double(x_.ffn);
    // Backward of Megatron's f and g operators: all-reduce of the column-parallel input gradient,
    // or with sequence parallelism all-gather (of the reduce-scatter) and reduce-scatter.
    // Overlapped (userbuffers), the gradient's gather runs beside the dgrad GEMM that consumes it
    // and the input gradient's reduction beside the layer's wgrad GEMM (bulk overlap).
    auto backward_gather = [&](const std::string& what, const std::string& gemm) {
      if (x_.t > 1 && x_.sp)
        w.comm.push_back(
            tp("tp_sp_gather_" + what + "_grad", CollectiveKind::ALL_GATHER, hidden_bytes(), gemm));
    };
    auto backward_reduce = [&](const std::string& what, const std::string& gemm) {
      if (x_.t == 1) return;
      if (x_.sp)
        w.comm.push_back(
            tp("tp_sp_scatter_" + what + "_grad", CollectiveKind::REDUCE_SCATTER, hidden_bytes(), gemm));
      else
        w.comm.push_back(tp("tp_" + what + "_grad", CollectiveKind::ALL_REDUCE, hidden_bytes(), gemm));
    };
    const std::string up = mlp_up_name();
    if (x_.dropout) w.compute.push_back(residual(p));
    backward_gather("mlp_down", moe ? "" : "mlp_down_dgrad");
    if (moe) {
      moe_backward_input(w);
    } else {
      w.compute.push_back(
          overlapped(gemm("mlp_down_dgrad", p, x_.tokens, x_.ffn, x_.h), Overlap::RING_EXCHANGE));
      if (x_.llama)
        w.compute.push_back(memory_bound("swiglu_bwd", p, 5 * f * x_.d));
      else
        w.compute.push_back(memory_bound("gelu_bwd", p, 3 * f * x_.d));
      backward_regather(w, "mlp", up + "_dgrad");
      w.compute.push_back(gemm(up + "_dgrad", p, x_.tokens, x_.h, mlp_up_columns()));
    }
    backward_reduce("mlp_up", moe ? "" : up + "_wgrad");
    // Norm backward (read x and dy, write dx) plus the residual-gradient accumulation.
    w.compute.push_back(memory_bound(std::string(norm_name()) + "_bwd", p, 6 * hidden_rows * x_.d, 2));
    if (x_.dropout) w.compute.push_back(residual(p));
    backward_gather("attn_out", "attn_out_dgrad");
    w.compute.push_back(overlapped(gemm("attn_out_dgrad", p, x_.tokens, x_.q, x_.h), Overlap::RING_EXCHANGE));
    context_parallel_backward(w);
    // q, o, dO read and dq written for this rank's tokens; k, v read and dk, dv written for the sequence.
    const double io = tok * double(4 * x_.q) * x_.d + 2 * kv_sequence_bytes();
    if (x_.flash) {
      w.compute.push_back(attention("attn_core_bwd", p, 2 * attention_flops(), io, 2));
    } else {
      const double n = score_elements();
      // dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q: four batched GEMMs, twice the forward.
      w.compute.push_back(batched_gemm("attn_values_dgrad_v", p, x_.s_kv, x_.head_dim, x_.s));
      w.compute.push_back(batched_gemm("attn_values_dgrad_p", p, x_.s, x_.s_kv, x_.head_dim));
      w.compute.push_back(batched_gemm("attn_scores_dgrad_q", p, x_.s, x_.head_dim, x_.s_kv));
      w.compute.push_back(batched_gemm("attn_scores_dgrad_k", p, x_.s_kv, x_.head_dim, x_.s));
      if (x_.dropout) w.compute.push_back(memory_bound("attn_dropout_bwd", p, n * (2 * x_.d + 1)));
      w.compute.push_back(memory_bound("scale_mask_softmax_bwd", p, 3 * n * x_.d));
    }
    if (x_.llama) w.compute.push_back(memory_bound("rope_bwd", p, 2 * tok * double(x_.q + x_.kv) * x_.d));
    backward_regather(w, "attn", "qkv_dgrad");
    w.compute.push_back(gemm("qkv_dgrad", p, x_.tokens, x_.h, x_.q + 2 * x_.kv));
    backward_reduce("qkv", "qkv_wgrad");
    w.compute.push_back(memory_bound(std::string(norm_name()) + "_bwd", p, 6 * hidden_rows * x_.d, 2));
    return w;
  }

  /// Weight-gradient (dW) half of one layer's backward, in execution order.
  WorkBlock backward_weight(bool moe) const {
    WorkBlock w;
    const Pass p = Pass::BACKWARD_WEIGHT;
    if (moe) {
      moe_backward_weight(w);
    } else {
      w.compute.push_back(gemm("mlp_down_wgrad", p, x_.ffn, x_.h, x_.tokens));
      w.compute.push_back(gemm(mlp_up_name() + "_wgrad", p, x_.h, mlp_up_columns(), x_.tokens));
    }
    w.compute.push_back(gemm("attn_out_wgrad", p, x_.q, x_.h, x_.tokens));
    w.compute.push_back(gemm("qkv_wgrad", p, x_.h, x_.q + 2 * x_.kv, x_.tokens));
    return w;
  }

  /// Work re-run at the start of a layer's backward: the whole forward with its TP collectives
  /// (full recomputation, Chen et al. 2016 / Megatron-LM), or the attention core alone (selective,
  /// Korthikanti et al. 2022 sec. 5).
  WorkBlock recompute(Recompute r, bool moe) const {
    if (r == Recompute::FULL) return forward(moe);
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
      if (x_.sp)
        w.comm.push_back(tp("tp_sp_scatter_embedding", CollectiveKind::REDUCE_SCATTER, hidden_bytes()));
      else
        w.comm.push_back(tp("tp_embedding", CollectiveKind::ALL_REDUCE, hidden_bytes()));
    }
    if (x_.dropout)
      w.compute.push_back(
          memory_bound("embedding_dropout", Pass::FORWARD, double(x_.rows) * double(x_.h) * (2 * x_.d + 1)));
    return w;
  }

  void embedding_backward(WorkBlock& input, WorkBlock& weight) const {
    const double tok_h = double(x_.tokens) * double(x_.h);
    if (x_.dropout)
      input.compute.push_back(memory_bound("embedding_dropout_bwd", Pass::BACKWARD_INPUT,
                                           double(x_.rows) * double(x_.h) * (2 * x_.d + 1)));
    if (x_.t > 1 && x_.sp)
      input.comm.push_back(tp("tp_sp_gather_embedding_grad", CollectiveKind::ALL_GATHER, hidden_bytes()));
    // Scatter-add of the incoming gradient rows into the embedding gradient buffer.
    weight.compute.push_back(
        memory_bound("embedding_wgrad", Pass::BACKWARD_WEIGHT, tok_h * (x_.d + 2 * x_.grad)));
  }

  /// Final norm, LM head and Megatron-LM's vocab_parallel_cross_entropy, which works in fp32:
  /// cast, max, exp, sum, normalise over the local logits, with three small TP all-reduces
  /// (max, sum of exponentials, target logit) of b*s fp32 values each.
  WorkBlock head_forward() const {
    WorkBlock w;
    const double hidden_rows = double(x_.rows) * double(x_.h);
    const double logits = double(x_.tokens) * double(x_.vocab);
    w.compute.push_back(
        memory_bound(std::string("final_") + norm_name(), Pass::FORWARD, 2 * hidden_rows * x_.d));
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
      if (x_.sp)
        input.comm.push_back(
            tp("tp_sp_scatter_lm_head_grad", CollectiveKind::REDUCE_SCATTER, hidden_bytes()));
      else
        input.comm.push_back(tp("tp_lm_head_grad", CollectiveKind::ALL_REDUCE, hidden_bytes()));
    }
    input.compute.push_back(
        memory_bound(std::string("final_") + norm_name() + "_bwd", p, 3 * hidden_rows * x_.d));
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

/// Bytes of the amax (absolute maximum, fp32) each FP8 cast also writes for the tensor's scale.
constexpr double FP8_AMAX_BYTES = 4;

/// Whether `op` is a GEMM with weights that runs in FP8 (batched GEMMs without weights run in the
/// activation dtype, the MoE router too).
bool fp8_weight_gemm(const ComputeOp& op) {
  return op.kind == OpKind::GEMM && op.dtype == Precision::FP8 && op.pass == Pass::FORWARD;
}

/// Reads of its BF16 input an FP8 cast makes: one with delayed scaling (the cast records the amax
/// as it goes), two with current scaling (an amax pass, then the cast with the scale it gives:
/// transformer_engine's Float8CurrentScalingQuantizer computes the amax before quantizing).
double fp8_cast_reads(Fp8Recipe recipe) {
  return recipe == Fp8Recipe::CURRENT ? 2.0 : 1.0;
}

/// Transformer-Engine-style FP8 casts before each FP8 GEMM of `w` (Micikevicius et al. 2022 "FP8
/// formats for deep learning" sec. 4 for the per-tensor scaling): a memory-bound kernel reads the
/// BF16 tensor (twice under current scaling, fp8_cast_reads) and writes its FP8 copy and that
/// copy's transpose plus an amax. Forward GEMMs cast their activation input, dX GEMMs the incoming
/// gradient; dW GEMMs reuse the FP8 input saved by the forward and the gradient cast by dX, in
/// their transposed copies: Hopper's FP8 GEMMs take both operands K-major (TN), so the quantizers
/// that feed a dW GEMM run with columnwise usage, TE's fused cast-transpose (transformer_engine/
/// pytorch/module/linear.py: the input quantizer's columnwise usage when the backward needs the
/// input, the grad-output quantizer's rowwise and columnwise). Weights are cast once per
/// iteration (fp8_weight_casts), not here.
void add_fp8_casts(WorkBlock& w, Precision act_dtype, Fp8Recipe recipe) {
  const double read = bytes_per_element(act_dtype) * fp8_cast_reads(recipe);
  const double write = 2 * bytes_per_element(Precision::FP8);
  std::vector<ComputeOp> out;
  out.reserve(w.compute.size() * 2);
  for (const ComputeOp& op : w.compute) {
    if (op.kind == OpKind::GEMM && op.dtype == Precision::FP8 && op.pass != Pass::BACKWARD_WEIGHT) {
      const double input =
          double(op.gemm.m) * double(op.input_splits) * double(op.gemm.k) * double(op.gemm.batch);
      ComputeOp cast = make_op("fp8_cast_" + op.name, OpKind::MEMORY_BOUND, op.pass, act_dtype);
      cast.bytes = Bytes(input * (read + write) + FP8_AMAX_BYTES);
      out.push_back(cast);
    }
    out.push_back(op);
  }
  w.compute = std::move(out);
}

/// Weight elements of the FP8 GEMMs of a forward block (k x n per GEMM of the batch).
double fp8_weight_elements(const WorkBlock& forward) {
  double elements = 0;
  for (const ComputeOp& op : forward.compute)
    if (fp8_weight_gemm(op)) elements += double(op.gemm.k) * double(op.gemm.n) * double(op.gemm.batch);
  return elements;
}

/// The weight casts of a chunk's FP8 GEMMs, run once per iteration in the forward of micro-batch
/// 0: Transformer Engine casts a weight to FP8 when `is_first_microbatch` is true and reuses the
/// cached FP8 copy and its transpose (for the dX GEMM) in every later forward, backward and
/// recomputation of the iteration (transformer_engine/pytorch/module/linear.py). Each cast reads
/// the BF16 weight (twice under current scaling) and writes the copy and the transpose. With FP8
/// primary weights (fp8_param_gather) the weight already is the FP8 copy: only its transpose is
/// written, reading the FP8 weight.
WorkBlock fp8_weight_casts(const WorkBlock& forward, const TrainingSpec& training) {
  WorkBlock w;
  const Precision act_dtype = activation_precision(training.precision);
  const double fp8 = bytes_per_element(Precision::FP8);
  const double read =
      training.fp8_param_gather ? fp8 : bytes_per_element(act_dtype) * fp8_cast_reads(training.fp8_recipe);
  const double write = training.fp8_param_gather ? fp8 : 2 * fp8;
  for (const ComputeOp& op : forward.compute) {
    if (!fp8_weight_gemm(op)) continue;
    const double weight = double(op.gemm.k) * double(op.gemm.n) * double(op.gemm.batch);
    ComputeOp cast = make_op("fp8_cast_" + op.name + "_weight", OpKind::MEMORY_BOUND, op.pass, act_dtype);
    cast.bytes = Bytes(weight * (read + write) + (training.fp8_param_gather ? 0.0 : FP8_AMAX_BYTES));
    w.compute.push_back(cast);
  }
  return w;
}

} // namespace

/// Bytes moved per gradient element after each weight-gradient GEMM, every micro-batch, by a
/// framework that does not fuse the gradient into the GEMM (gradient_accumulation_fusion off), and
/// the name of that pass.
/// - Megatron-LM before --gradient-accumulation-fusion (and PyTorch DDP's AccumulateGrad):
///   `main_grad.add_(grad)`, reading the GEMM's gradient (weight dtype) and the main gradient and
///   writing the main gradient.
/// - DeepSpeed's BF16 optimizer (deepspeed/runtime/bf16_optimizer.py, update_hp_grads, which its
///   pipeline engine calls after every micro-batch's backward):
///   `hp_grad.data.add_(lp.grad.data.to(hp_grad.dtype))`: the cast materialises an fp32 copy
///   (read the weight dtype, write the main dtype) that the add then reads beside the main
///   gradient it read-modify-writes.
/// - PyTorch FSDP: the gradient is freed after every reduce-scatter, so nothing accumulates; the
///   post-backward hook casts the unsharded gradient to the reduce dtype where that is wider
///   (`param.grad.data.to(mixed_precision.reduce_dtype)`: read the weight dtype, write the reduce
///   dtype) and divides it by the pre-division factor (`grad.div_(gradient_predivide_factor)`,
///   above 1 for every world size of 2 or more: read and write), torch.distributed.fsdp's
///   _post_backward_hook and its reduce-scatter hook.
GradientPass unfused_gradient_pass(Framework framework, double weight_bytes, double grad_bytes) {
  switch (framework) {
  case Framework::PYTORCH_FSDP: {
    const double cast = grad_bytes > weight_bytes ? weight_bytes + grad_bytes : 0.0;
    return {.name = "fsdp_grad_cast_divide_", .bytes_per_element = cast + 2 * grad_bytes};
  }
  case Framework::DEEPSPEED:
    return {.name = "bf16_optimizer_grad_accum_", .bytes_per_element = weight_bytes + 4 * grad_bytes};
  case Framework::MEGATRON_LM: break;
  }
  return {.name = "grad_accum_", .bytes_per_element = weight_bytes + 2 * grad_bytes};
}

namespace {

/// Without gradient accumulation fusion every weight-gradient GEMM of `w` is followed by `pass`
/// over its gradient (unfused_gradient_pass).
void add_gradient_accumulation(WorkBlock& w, const GradientPass& pass, Precision act_dtype) {
  std::vector<ComputeOp> out;
  out.reserve(w.compute.size() * 2);
  for (const ComputeOp& op : w.compute) {
    out.push_back(op);
    if (op.kind != OpKind::GEMM || op.pass != Pass::BACKWARD_WEIGHT) continue;
    const double elements = double(op.gemm.m) * double(op.gemm.n) * double(op.gemm.batch);
    ComputeOp add = make_op(pass.name + op.name, OpKind::MEMORY_BOUND, op.pass, act_dtype);
    add.bytes = Bytes(elements * pass.bytes_per_element);
    out.push_back(add);
  }
  w.compute = std::move(out);
}

/// Layers of each pipeline stage: an even split, or stage 0 and the last stage overridden
/// (parallelism.first_stage_layers / last_stage_layers) and the rest split evenly over the others.
std::vector<int> stage_layer_counts(int layers, const ParallelismSpec& par) {
  const int pp = par.pp;
  if (par.first_stage_layers == 0 && par.last_stage_layers == 0)
    return std::vector<int>(size_t(pp), layers / pp);
  if (par.first_stage_layers < 0 || par.last_stage_layers < 0)
    throw std::invalid_argument(
        fmt::format("first_stage_layers ({}) and last_stage_layers ({}) must not be negative",
                    par.first_stage_layers, par.last_stage_layers));
  std::vector<int> counts(size_t(pp), 0);
  std::vector<bool> fixed(size_t(pp), false);
  if (par.first_stage_layers > 0) {
    counts.front() = par.first_stage_layers;
    fixed.front() = true;
  }
  if (par.last_stage_layers > 0) {
    if (pp == 1 && fixed.front() && par.last_stage_layers != par.first_stage_layers)
      throw std::invalid_argument(
          fmt::format("with pp = 1 first_stage_layers ({}) and last_stage_layers ({}) are the "
                      "same stage",
                      par.first_stage_layers, par.last_stage_layers));
    counts.back() = par.last_stage_layers;
    fixed.back() = true;
  }
  int fixed_layers = 0, free_stages = 0;
  for (int s = 0; s < pp; ++s) {
    if (fixed[size_t(s)])
      fixed_layers += counts[size_t(s)];
    else
      ++free_stages;
  }
  const int rest = layers - fixed_layers;
  if (free_stages == 0) {
    if (rest != 0)
      throw std::invalid_argument(
          fmt::format("first_stage_layers + last_stage_layers ({}) must equal layers ({}) "
                      "with pp = {}",
                      fixed_layers, layers, pp));
    return counts;
  }
  if (rest < free_stages || rest % free_stages != 0)
    throw std::invalid_argument(
        fmt::format("layers ({}) minus first_stage_layers ({}) and last_stage_layers ({}) "
                    "leaves {} for {} middle stages: must be a positive multiple",
                    layers, par.first_stage_layers, par.last_stage_layers, rest, free_stages));
  for (int s = 0; s < pp; ++s)
    if (!fixed[size_t(s)]) counts[size_t(s)] = rest / free_stages;
  return counts;
}

/// Layers of each virtual stage (index chunk*pp + stage). With interleaving and uneven stages only
/// the first model chunk of stage 0 and the last of the last stage are shortened, as Llama 3 does
/// (126 layers on pp 16, v 8: 7 layers on the first and last stage, arXiv 2407.21783 sec. 3.3.2);
/// they may hold no transformer layer, only the embedding or the LM head.
std::vector<int> virtual_stage_layer_counts(int layers, const ParallelismSpec& par) {
  const int pp = par.pp, v = par.virtual_stages;
  const std::vector<int> stages = stage_layer_counts(layers, par);
  std::vector<int> counts(size_t(pp * v), 0);
  const bool uneven = par.first_stage_layers != 0 || par.last_stage_layers != 0;
  if (!uneven || v == 1) {
    for (int j = 0; j < pp * v; ++j) counts[size_t(j)] = stages[size_t(j % pp)] / v;
    return counts;
  }
  const int middle = pp > 2 ? stages[1] : layers / pp;
  if (middle % v != 0)
    throw std::invalid_argument(
        fmt::format("layers per middle stage ({}) must be divisible by virtual_stages ({})", middle, v));
  const int per_chunk = middle / v;
  for (int j = 0; j < pp * v; ++j) counts[size_t(j)] = per_chunk;
  auto shorten = [&](int stage, int chunk, int stage_layers) {
    const int rest = stage_layers - (v - 1) * per_chunk;
    if (rest < 0)
      throw std::invalid_argument(
          fmt::format("with virtual_stages {} only one model chunk of stage {} is shortened: "
                      "its {} layers must be at least (virtual_stages - 1) x layers per "
                      "chunk ({} x {} = {})",
                      v, stage, stage_layers, v - 1, per_chunk, (v - 1) * per_chunk));
    counts[size_t(chunk * pp + stage)] = rest;
  };
  shorten(0, 0, stages.front());
  shorten(pp - 1, v - 1, stages.back());
  return counts;
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
  if (m.kv_heads == 0) m.kv_heads = m.heads; // unset: multi-head attention
  require(m.layers > 0 && m.hidden > 0 && m.heads > 0 && m.ffn_hidden > 0 && m.vocab > 0 && m.seq_len > 0,
          fmt::format("model sizes must be positive (layers = {}, hidden = {}, heads = {}, ffn_hidden = {}, "
                      "vocab = {}, seq_len = {})",
                      m.layers, m.hidden, m.heads, m.ffn_hidden, m.vocab, m.seq_len));
  require(training_.global_batch > 0 && training_.micro_batch > 0,
          fmt::format("batch sizes must be positive (global_batch = {}, micro_batch = {})",
                      training_.global_batch, training_.micro_batch));
  require(par.tp >= 1 && par.pp >= 1 && par.dp >= 1 && par.cp >= 1 && par.ep >= 1 && par.virtual_stages >= 1,
          fmt::format("parallel degrees must be at least 1 (tp = {}, pp = {}, dp = {}, cp = {}, ep = {}, "
                      "virtual_stages = {})",
                      par.tp, par.pp, par.dp, par.cp, par.ep, par.virtual_stages));
  require(par.zero >= 0 && par.zero <= 3, fmt::format("zero stage must be 0..3 (got {})", par.zero));
  require(dropout_probability(m) >= 0 && dropout_probability(m) < 1,
          fmt::format("dropout must be in [0, 1) (got {})", dropout_probability(m)));
  if (m.moe) {
    const MoeSpec& e = *m.moe;
    require(
        e.experts >= 1 && e.top_k >= 1 && e.capacity_factor > 0,
        fmt::format("moe needs experts >= 1, top_k >= 1 and capacity_factor > 0 (experts = {}, top_k = {}, "
                    "capacity_factor = {})",
                    e.experts, e.top_k, e.capacity_factor));
  }
  // The loader reports these rules at their keys; a Workload built directly refuses them the same.
  if (const auto problem = check_model(m)) throw std::invalid_argument(problem->message);
  if (const auto problem = check_strategy(m, training_, par)) throw std::invalid_argument(problem->message);
  const int virtual_stages = par.pp * par.virtual_stages;

  const std::vector<int> vstage_layers = virtual_stage_layer_counts(m.layers, par);
  const int mb = microbatches();
  schedules_.reserve(size_t(par.pp));
  for (int s = 0; s < par.pp; ++s)
    schedules_.push_back(pipeline_schedule(par.schedule, par.pp, par.virtual_stages, mb, s));

  LocalShape x;
  x.t = par.tp;
  x.cp = par.cp;
  x.cp_kind = par.cp_kind;
  x.b = training_.micro_batch;
  x.s = m.seq_len / par.cp;
  x.s_kv = m.seq_len;
  x.h = m.hidden;
  x.tokens = x.b * x.s;
  x.sp = par.sequence_parallel && par.tp > 1;
  x.tp_overlap = x.sp && par.tp_overlap;
  x.rows = x.sp ? x.tokens / x.t : x.tokens;
  x.head_dim = m.head_dim();
  x.heads = m.heads / x.t;
  x.kv_heads = std::max(m.kv_heads / x.t, 1); // fewer KV heads than ranks: each rank keeps a copy
  x.q = x.heads * x.head_dim;
  x.kv = x.kv_heads * x.head_dim;
  x.ffn = m.ffn_hidden / x.t;
  x.vocab = vocab_padded() / x.t;
  x.llama = m.activation == Activation::SWIGLU;
  x.flash = training_.flash_attention;
  x.attention_kernel = training_.attention_kernel;
  x.gemm_dtype = training_.precision;
  x.act_dtype = activation_precision(training_.precision);
  x.d = bytes_per_element(x.act_dtype);
  x.g = bytes_per_element(x.gemm_dtype);
  x.grad = gradient_element_bytes(training_);
  x.w = weight_element_bytes(training_.precision);
  x.dropout = dropout_probability(m) > 0;
  x.accumulation_fusion = training_.gradient_accumulation_fusion;
  x.ep = par.ep;
  if (m.moe) {
    const MoeSpec& e = *m.moe;
    x.experts = e.experts;
    x.local_experts = e.experts / par.ep;
    x.top_k = e.top_k;
    x.expert_ffn = (e.expert_ffn_hidden > 0 ? e.expert_ffn_hidden : m.ffn_hidden) / x.t;
    // Capacity: each expert accepts capacity_factor times an even share of the routed tokens
    // (Fedus et al. 2021 sec. 2.2), and computes that many rows (dropped or padded to it).
    x.expert_rows = long(std::ceil(double(x.tokens) * e.top_k * e.capacity_factor * par.ep / e.experts));
    x.routed = x.expert_rows * x.local_experts;
  }
  const LayerBuilder layer(x);
  const bool fp8 = training_.precision == Precision::FP8;
  const GradientPass gradient_pass = unfused_gradient_pass(training_.framework, x.w, x.grad);
  auto is_moe = [&](int layer_index) { return m.moe && (layer_index + 1) % m.moe->every == 0; };

  // The two kinds of layer, built once and repeated: every layer of one kind is identical.
  struct LayerBlocks {
    WorkBlock fwd, rec, dx, dw;
  };
  auto layer_blocks = [&](bool moe) {
    LayerBlocks l{layer.forward(moe), layer.recompute(par.recompute, moe), layer.backward_input(moe),
                  layer.backward_weight(moe)};
    if (fp8) {
      add_fp8_casts(l.fwd, x.act_dtype, training_.fp8_recipe);
      add_fp8_casts(l.rec, x.act_dtype, training_.fp8_recipe);
      add_fp8_casts(l.dx, x.act_dtype, training_.fp8_recipe);
    }
    if (!x.accumulation_fusion) add_gradient_accumulation(l.dw, gradient_pass, x.act_dtype);
    return l;
  };
  const LayerBlocks dense_layer = layer_blocks(false);
  const LayerBlocks moe_layer = m.moe ? layer_blocks(true) : dense_layer;
  const double boundary = double(x.tokens) * double(x.h) * x.d;
  const bool gather_boundary =
      x.t > 1 && !x.sp; // scatter/gather optimisation, Narayanan et al. 2021 sec. 4.1

  auto build = [&](int vstage, int first_layer, int layers) {
    ChunkWork c;
    c.first_layer = first_layer;
    c.layers = layers;
    c.has_embedding = vstage == 0;
    c.has_lm_head = vstage == virtual_stages - 1;
    c.activation_out = Bytes(x.t > 1 ? boundary / x.t : boundary);
    const CollectiveOp gather{.name = "pp_gather",
                              .kind = CollectiveKind::ALL_GATHER,
                              .group = GroupKind::TP,
                              .bytes = Bytes(boundary)};
    if (gather_boundary && !c.has_embedding) c.forward.comm.push_back(gather);
    if (gather_boundary && !c.has_lm_head) c.backward_input.comm.push_back(gather);
    if (c.has_embedding) append(c.forward, layer.embedding_forward());
    for (int l = first_layer; l < first_layer + layers; ++l)
      append(c.forward, is_moe(l) ? moe_layer.fwd : dense_layer.fwd);
    if (c.has_lm_head) {
      WorkBlock head = layer.head_forward(), input, weight;
      layer.head_backward(input, weight);
      if (fp8) {
        add_fp8_casts(head, x.act_dtype, training_.fp8_recipe);
        add_fp8_casts(input, x.act_dtype, training_.fp8_recipe);
      }
      if (!x.accumulation_fusion) add_gradient_accumulation(weight, gradient_pass, x.act_dtype);
      append(c.forward, head);
      append(c.backward_input, input);
      append(c.backward_weight, weight);
    }
    if (fp8) c.weight_casts = fp8_weight_casts(c.forward, training_);
    c.backward = c.backward_input;
    append(c.backward, c.backward_weight);
    for (int l = first_layer + layers - 1; l >= first_layer; --l) {
      const LayerBlocks& blocks = is_moe(l) ? moe_layer : dense_layer;
      append(c.backward_input, blocks.rec);
      append(c.backward_input, blocks.dx);
      append(c.backward_weight, blocks.dw);
      append(c.backward, blocks.rec);
      append(c.backward, blocks.dx);
      append(c.backward, blocks.dw);
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
  const double expert_up_cols = double(x.llama ? 2 * x.expert_ffn : x.expert_ffn);
  double attention_params = h * qkv_cols + double(x.q) * h;
  double mlp_params = h * up_cols + double(x.ffn) * h;
  double expert_params = h * expert_up_cols + double(x.expert_ffn) * h;
  if (x.llama) {
    attention_params += 2 * h; // two RMSNorm gains
  } else {
    attention_params += 4 * h + qkv_cols + h; // two LayerNorms, QKV and output biases
    mlp_params += up_cols + h;
    expert_params += expert_up_cols + h;
  }
  const double router_params = h * double(x.experts);
  const double word_embedding = double(x.vocab) * h;
  const double embedding_params = word_embedding + (x.llama ? 0.0 : double(m.seq_len) * h);
  const double final_norm = x.llama ? h : 2 * h;

  // Layer ranges of each virtual stage (chunk*pp + stage), in order along the model.
  std::vector<int> first_of_vstage(size_t(virtual_stages), 0);
  for (int j = 1; j < virtual_stages; ++j)
    first_of_vstage[size_t(j)] = first_of_vstage[size_t(j - 1)] + vstage_layers[size_t(j - 1)];

  // A chunk's ops depend only on its layer count, MoE pattern and whether it holds the embedding
  // and/or the LM head: build each distinct chunk once.
  std::map<std::tuple<bool, bool, int, int>, ChunkWork> variants;
  const bool gather_parameters = par.zero >= 3 && par.dp * par.cp > 1;
  const bool gather_expert_parameters = par.zero >= 3 && par.dp * par.cp / par.ep > 1;
  const double weight_bytes = weight_element_bytes(training_);
  chunks_.assign(size_t(par.pp), {});
  local_parameters_.assign(size_t(par.pp), 0.0);
  local_expert_parameters_.assign(size_t(par.pp), 0.0);
  for (int s = 0; s < par.pp; ++s) {
    for (int c = 0; c < par.virtual_stages; ++c) {
      const int vstage = c * par.pp + s;
      const int first = first_of_vstage[size_t(vstage)];
      const int count = vstage_layers[size_t(vstage)];
      const auto key =
          std::make_tuple(vstage == 0, vstage == virtual_stages - 1, m.moe ? first % m.moe->every : 0, count);
      auto it = variants.find(key);
      if (it == variants.end()) it = variants.emplace(key, build(vstage, first, count)).first;
      ChunkWork chunk = it->second;
      chunk.first_layer = first;
      double dense = 0, experts = 0;
      for (int l = first; l < first + count; ++l) {
        dense += attention_params + (is_moe(l) ? router_params : mlp_params);
        if (is_moe(l)) experts += expert_params * double(x.local_experts);
      }
      if (chunk.has_embedding) dense += embedding_params;
      if (chunk.has_lm_head) {
        dense += final_norm;
        // GPT ties the LM head to the word embedding; Megatron-LM keeps a copy on the last stage
        // when the two are on different GPUs and all-reduces their gradients.
        if (x.llama || par.pp > 1) dense += word_embedding;
      }
      chunk.parameters = Bytes(dense * x.grad);
      chunk.expert_parameters = Bytes(experts * x.grad);
      // ZeRO-3 (Rajbhandari et al. 2020 sec. 5.3): the chunk's parameters are all-gathered unit
      // by unit (zero3_gathers: a layer or a bucket) before its forward and again before its
      // backward (they are freed after use), each unit's gather prefetched under the previous
      // unit's compute when zero_overlap is on; the first unit of a pass has nothing before it to
      // hide under. Expert weights are gathered over the expert-data-parallel group.
      auto gather = [&](const std::string& name, GroupKind group, double elements) {
        const Zero3Gathers g = zero3_gathers(par, elements, count);
        if (g.units == 0) return;
        const double bytes = g.unit_elements * weight_bytes;
        auto insert = [&](const std::string& pass) {
          std::vector<CollectiveOp> ops{
              layer.collective(name + pass, CollectiveKind::ALL_GATHER, group, bytes)};
          ops.front().count = par.zero_overlap ? 1 : g.units;
          if (par.zero_overlap && g.units > 1) {
            ops.push_back(layer.collective(name + pass + "_prefetch", CollectiveKind::ALL_GATHER, group,
                                           bytes, par.zero_overlap));
            ops.back().count = g.units - 1;
          }
          return ops;
        };
        const std::vector<CollectiveOp> fwd = insert(""), bwd = insert("_bwd");
        chunk.forward.comm.insert(chunk.forward.comm.begin(), fwd.begin(), fwd.end());
        chunk.backward.comm.insert(chunk.backward.comm.begin(), bwd.begin(), bwd.end());
        chunk.backward_input.comm.insert(chunk.backward_input.comm.begin(), bwd.begin(), bwd.end());
      };
      if (gather_parameters) gather("zero3_param_gather", GroupKind::DP, dense);
      if (gather_expert_parameters) gather("zero3_expert_gather", GroupKind::EXPERT_DP, experts);
      local_parameters_[size_t(s)] += dense + experts;
      local_expert_parameters_[size_t(s)] += experts;
      chunks_[size_t(s)].push_back(std::move(chunk));
    }
  }

  gradient_bytes_.reserve(size_t(par.pp));
  optimizer_.reserve(size_t(par.pp));
  for (int s = 0; s < par.pp; ++s) {
    const double experts = local_expert_parameters_[size_t(s)];
    const double dense = local_parameters_[size_t(s)] - experts;
    gradient_bytes_.push_back(Bytes(dense * x.grad));
    // Each ZeRO stage >= 1 gives every rank of the data-parallel group (dp*cp ranks, which all
    // hold the same dense parameters; Megatron-core's distributed optimizer shards over
    // data_parallel_group with context parallelism) 1/(dp*cp) of the optimizer step, and
    // every rank of the expert-data-parallel group (dp/ep) 1/(dp/ep) of the experts'.
    const double shard =
        par.zero >= 1 ? dense / zero_shards() + experts / expert_zero_shards() : dense + experts;
    const bool fp32 = training_.precision == Precision::FP32;
    const bool loss_scaling = training_.precision == Precision::FP16;
    // Megatron-LM's mixed-precision optimizer step (megatron/optimizer/optimizer.py,
    // MixedPrecisionOptimizer.step), kernel by kernel over this rank's shard:
    //  - fp16 only: unscale the main gradients and check them for inf/NaN (read, write);
    //  - gradient-norm clipping reads every gradient;
    //  - fused Adam reads the fp32 weights, m, v and the gradient and writes weights, m and v;
    //  - mixed precision: copy the fp32 weights to the 16-bit model copy (read 4 B, write 2 B);
    //  - the gradient buffer is zeroed for the next step (DistributedDataParallel.zero_grad_buffer),
    //    every local gradient, sharded or not.
    std::vector<ComputeOp> step;
    auto streaming = [&](const char* name, OpKind kind, double bytes_per_element, double elements,
                         double flops) {
      ComputeOp op = make_op(name, kind, Pass::BACKWARD_WEIGHT,
                             kind == OpKind::OPTIMIZER || x.grad == 4.0 ? Precision::FP32 : Precision::FP16);
      op.flops = Flops(flops * elements);
      op.bytes = Bytes(elements * bytes_per_element);
      op.kernels = std::max(1, int(std::ceil(elements / ELEMENTS_PER_MULTI_TENSOR_LAUNCH)));
      step.push_back(std::move(op));
    };
    if (loss_scaling) streaming("grad_unscale", OpKind::MEMORY_BOUND, 2 * x.grad, shard, 1);
    streaming("grad_norm", OpKind::MEMORY_BOUND, x.grad, shard, 2);
    streaming("adam", OpKind::OPTIMIZER, fp32 ? 7 * 4.0 : 6 * 4.0 + x.grad, shard, 12);
    if (!fp32) streaming("main_to_model_copy", OpKind::MEMORY_BOUND, 4.0 + 2.0, shard, 0);
    streaming(ZERO_GRAD_OP, OpKind::MEMORY_BOUND, x.grad, dense + experts, 0);
    optimizer_.push_back(std::move(step));
  }
}

int Workload::zero_shards() const {
  return parallelism_.dp * parallelism_.cp;
}

int Workload::expert_zero_shards() const {
  return parallelism_.dp * parallelism_.cp / parallelism_.ep;
}

Bytes Workload::dp_bucket_bytes() const {
  return odyssey::dp_bucket_bytes(parallelism_, training_);
}

Bytes dp_bucket_bytes(const ParallelismSpec& p, const TrainingSpec& training) {
  if (p.dp_bucket.value() > 0) return p.dp_bucket;
  const double element = gradient_element_bytes(training);
  // ZeRO-2/3 reduce every micro-batch, as DeepSpeed does, in DeepSpeed's default bucket
  // (zero_optimization.reduce_bucket_size, 5e8 elements); Megatron-core's otherwise.
  if (p.zero >= 2) return Bytes(5e8 * element);
  return Bytes(std::max(40e6, 1e6 * p.dp * p.cp) * element);
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

const std::vector<PipelineStep>& Workload::schedule(int stage) const {
  return schedules_.at(size_t(stage));
}

Bytes Workload::gradient_bytes(int stage) const {
  return gradient_bytes_.at(size_t(stage));
}

Bytes Workload::expert_gradient_bytes(int stage) const {
  return Bytes(local_expert_parameters_.at(size_t(stage)) * gradient_element_bytes(training_));
}

double Workload::optimizer_shard_parameters(int stage) const {
  const double experts = local_expert_parameters_.at(size_t(stage));
  const double dense = local_parameters_.at(size_t(stage)) - experts;
  if (parallelism_.zero < 1) return dense + experts;
  return dense / zero_shards() + experts / expert_zero_shards();
}

Bytes Workload::parameter_bytes(int stage) const {
  return Bytes(local_parameters_.at(size_t(stage)) * weight_element_bytes(training_));
}

bool overlaps_compute(const CollectiveOp& op, const ParallelismSpec& p) {
  return op.overlap_with_compute || (op.group == GroupKind::TP && p.tp_overlap);
}

Bytes Workload::fp8_weight_cache_bytes(int stage) const {
  double elements = 0;
  for (int c = 0; c < chunks_per_stage(); ++c) elements += fp8_weight_elements(chunk(stage, c).forward);
  // The FP8 copy and its transpose; with FP8 primary weights the copy is the weight itself.
  const double copies = training_.fp8_param_gather ? 1.0 : 2.0;
  return Bytes(copies * elements * bytes_per_element(Precision::FP8));
}

const std::vector<ComputeOp>& Workload::optimizer(int stage) const {
  return optimizer_.at(size_t(stage));
}

double Workload::local_parameters(int stage) const {
  return local_parameters_.at(size_t(stage));
}

Flops Workload::model_flops() const {
  const double s = model_.seq_len, h = model_.hidden, f = model_.ffn_hidden, v = model_.vocab;
  const double q = double(model_.heads) * model_.head_dim();
  const double kv = double(model_.kv_heads) * model_.head_dim();
  const double mlp_matrices = model_.activation == Activation::SWIGLU ? 3 : 2;
  // Forward FLOPs per sequence: QKV, QK^T + AV, output projection, MLP; then the LM head.
  const double attention = 2 * s * h * (q + 2 * kv) + 4 * s * s * q + 2 * s * q * h;
  const double dense_mlp = mlp_matrices * 2 * s * h * f;
  double layers = model_.layers * (attention + dense_mlp);
  if (model_.moe) {
    // Active parameters only (Megatron-LM's num_floating_point_operations convention): each
    // token runs the router and its top_k experts; capacity-factor padding is hardware work.
    const MoeSpec& e = *model_.moe;
    const double fe = e.expert_ffn_hidden > 0 ? e.expert_ffn_hidden : f;
    const double moe_mlp = e.top_k * mlp_matrices * 2 * s * h * fe + 2 * s * h * e.experts;
    layers += moe_layers() * (moe_mlp - dense_mlp);
  }
  const double head = 2 * s * h * v;
  // Backward is twice the forward (dX and dW GEMMs; attention backward), Narayanan et al. 2021 sec. 5.1.
  return Flops(3.0 * double(training_.global_batch) * (layers + head));
}

Flops Workload::hardware_flops() const {
  // The FLOPs of the ops the GPUs execute (recomputation and vocab padding included), times the
  // micro-batches, the TP and CP ranks that each run their share and the data-parallel replicas.
  double per_replica = 0;
  for (const auto& stage : chunks_)
    for (const auto& c : stage)
      per_replica += gemm_attention_flops(c.forward) + gemm_attention_flops(c.backward);
  return Flops(per_replica * microbatches() * parallelism_.tp * parallelism_.cp * parallelism_.dp);
}

int Workload::moe_layers() const {
  return model_.moe ? model_.layers / model_.moe->every : 0;
}

double Workload::parameters() const {
  return parameters_counted(ParameterCount::ALL);
}

double Workload::active_parameters() const {
  return parameters_counted(ParameterCount::ACTIVE);
}

double Workload::parameters_counted(ParameterCount which) const {
  const double h = model_.hidden, f = model_.ffn_hidden, v = model_.vocab;
  const double q = double(model_.heads) * model_.head_dim();
  const double kv = double(model_.kv_heads) * model_.head_dim();
  const bool llama = model_.activation == Activation::SWIGLU;
  // Llama: no biases, RMSNorm gains only, untied LM head, rotary positions (no parameters).
  // GPT: biases on every linear layer, LayerNorm gain and bias, learned positions, tied LM head.
  auto mlp = [&](double width) { return llama ? 3 * h * width : 2 * h * width + width + h; };
  const double attention =
      llama ? h * (q + 2 * kv) + q * h + 2 * h : h * (q + 2 * kv) + (q + 2 * kv) + q * h + h + 4 * h;
  double total = model_.layers * (attention + mlp(f));
  if (model_.moe) {
    const MoeSpec& e = *model_.moe;
    const double experts = which == ParameterCount::ALL ? e.experts : e.top_k;
    const double fe = e.expert_ffn_hidden > 0 ? e.expert_ffn_hidden : f;
    total += moe_layers() * (experts * mlp(fe) + h * e.experts - mlp(f));
  }
  if (llama) return total + 2 * v * h + h;
  return total + v * h + double(model_.seq_len) * h + 2 * h;
}

} // namespace odyssey
