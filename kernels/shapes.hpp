// The shapes the GEMM and attention benchmarks measure: either the built-in sweep over the
// layers of a transformer (hidden sizes, TP degrees, tokens per micro-batch), or exactly the
// shapes of one scenario, from a shapes file written by `odyssey calibrate shapes SCENARIO`.
//
// Shapes file: one case per line, '#' starts a comment.
//   gemm NAME ROLE M N K BATCH DTYPE        C[M,N] = A[M,K] B[K,N], row-major as models/ops.hpp
//   attention NAME B HEADS KV_HEADS SEQ_Q SEQ_KV HEAD_DIM CAUSAL DTYPE   (CAUSAL: 1 or 0)
// ROLE is fprop (B is a weight stored [N,K]), dgrad (both plain), wgrad (A stored [K,M]) or
// batched (no weights, both plain).
#pragma once

#include <string>
#include <vector>

namespace odyssey::bench {

struct GemmCase {
  std::string name; ///< e.g. "qkv", "mlp_down"
  std::string role; ///< fprop | dgrad | wgrad | batched
  long m = 0;
  long n = 0;
  long k = 0;
  long batch = 1;
  std::string dtype; ///< fp32 | tf32 | fp16 | bf16 | fp8; "" in the sweep (every dtype is run)
  long hidden = 0;   ///< sweep coordinates, 0 when read from a shapes file
  long tp = 0;
  long tokens = 0;
};

struct AttentionCase {
  std::string name;
  long batch = 1;
  long heads = 0;
  long kv_heads = 0;
  long seq_q = 0;
  long seq_kv = 0;
  long head_dim = 0;
  bool causal = true;
  std::string dtype; ///< fp16 | bf16
};

struct ShapeList {
  std::vector<GemmCase> gemms;
  std::vector<AttentionCase> attentions;
};

/// Reads a shapes file; throws UsageError naming the line of a malformed case.
ShapeList read_shapes(const std::string& path);

/// The transformer-layer GEMM sweep: QKV, attention output, MLP up and down and the LM head for
/// each hidden size, TP degree and token count, each as forward, input-gradient and
/// weight-gradient GEMM (Megatron-LM's shapes: 4h MLP, head dim 128, multi-head attention).
std::vector<GemmCase> gemm_sweep(bool quick);

/// The fused-attention sweep: head dim, sequence length and GQA ratio, causal.
std::vector<AttentionCase> attention_sweep(bool quick);

} // namespace odyssey::bench
