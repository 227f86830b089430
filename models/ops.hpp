// Operations of a training iteration, with the shapes, FLOPs and bytes that calibration/ prices.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "models/spec.hpp"
#include "models/units.hpp"

namespace odyssey {

enum class OpKind { GEMM, ATTENTION, MEMORY_BOUND, OPTIMIZER };
/// Which pass an op belongs to. BACKWARD_INPUT and BACKWARD_WEIGHT are the two halves of the
/// backward pass (input gradient dX and weight gradient dW) that zero-bubble schedules separate.
enum class Pass { FORWARD, BACKWARD_INPUT, BACKWARD_WEIGHT };

/// C[m,n] = A[m,k] * B[k,n], `batch` independent products (row-major, as cuBLAS sees them transposed).
struct GemmShape {
  long m = 0;
  long n = 0;
  long k = 0;
  long batch = 1;
};

/// Fused scaled-dot-product attention on one GPU's share of heads.
struct AttentionShape {
  long batch = 0;
  int heads = 0;    ///< query heads on this GPU
  int kv_heads = 0; ///< key/value heads on this GPU
  long seq_q = 0;
  long seq_kv = 0;
  int head_dim = 0;
  bool causal = true;
  /// Fused (flash) attention skips the masked half of a causal score matrix; the unfused kernels
  /// of 2021 Megatron compute all of it. Set from training.flash_attention.
  bool fused = true;
  AttentionKernel kernel = AttentionKernel::NEWEST; ///< from training.attention_kernel
};

struct ComputeOp {
  std::string name; ///< e.g. "qkv", "attn_core", "mlp_up", "layernorm", "lm_head"
  OpKind kind = OpKind::GEMM;
  Pass pass = Pass::FORWARD;
  Precision dtype = Precision::FP16;
  GemmShape gemm;           ///< when kind == GEMM
  AttentionShape attention; ///< when kind == ATTENTION
  Flops flops;              ///< arithmetic work of the op on one GPU
  Bytes bytes;              ///< HBM traffic of the op on one GPU (reads + writes)
  int kernels = 1;          ///< kernel launches the op takes
  /// A GEMM run as this many chunks of m rows each from one input this GPU holds whole
  /// (userbuffers' pipeline overlap): that input has m x input_splits rows.
  int input_splits = 1;
};

enum class CollectiveKind {
  ALL_REDUCE,
  ALL_GATHER,
  REDUCE_SCATTER,
  BROADCAST,
  REDUCE,
  ALL_TO_ALL,
  SEND_RECV
};
/// EXPERT_DP: the expert-data-parallel group (the dp*cp/ep ranks holding the same experts).
enum class GroupKind { TP, PP, DP, CP, EP, EXPERT_DP };

/// One collective call. `bytes` follows nccl-tests' "size": the full buffer of one rank for
/// all-reduce/broadcast/reduce/send-recv, the gathered output for all-gather, the input for
/// reduce-scatter, the whole send buffer for all-to-all.
struct CollectiveOp {
  std::string name;
  CollectiveKind kind = CollectiveKind::ALL_REDUCE;
  GroupKind group = GroupKind::TP;
  Bytes bytes;
  /// Runs concurrently with the block's compute (ring-attention K/V passes, TP overlap); only the
  /// part the compute cannot hide is exposed. Otherwise blocking, as Megatron-LM's collectives are.
  bool overlap_with_compute = false;
  /// The same collective issued `count` times back to back (ZeRO-3's per-layer or per-bucket
  /// gathers): each pays its own latency and algorithm choice at `bytes`.
  int count = 1;
  /// The GEMM of the block this overlapped collective runs beside, by name: Transformer Engine's
  /// userbuffers pair each tensor-parallel collective with one GEMM, and Megatron-LM overlaps the
  /// backward's re-gather of a sequence-parallel input with the dgrad GEMM. It hides under that
  /// GEMM only (beside_exposed, calibration/overlap.hpp). Empty: under the block's compute.
  std::string beside;
};

const char* to_string(OpKind k);
const char* to_string(Pass p);
const char* to_string(CollectiveKind k);
/// The collectives by the names users give them (`odyssey collective --op`, profiles): nccl-tests'
/// and XLA's spelling, "all-reduce", "all-gather", ..., "send-recv".
const std::vector<std::pair<std::string, CollectiveKind>>& collective_names();
/// The user-facing name of a collective ("all-reduce").
std::string collective_name(CollectiveKind k);
/// The collective a user-facing name names; nothing for an unknown name.
std::optional<CollectiveKind> collective_named(std::string_view name);
/// The user-facing names, in collective_names() order, for error messages.
std::vector<std::string> collective_name_list();
/// nccl-tests' bus-bandwidth factor for `kind` over `ranks` ranks (busbw = algbw x factor).
double bus_factor(CollectiveKind kind, int ranks);
const char* to_string(GroupKind g);

} // namespace odyssey
