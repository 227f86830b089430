// Readers of tables measured by others (calibration/published/): OpenXLA's GEMM throughput
// table (text-proto) and FlashAttention throughput rows (CSV). They only read and check; turning
// rows into a profile is import.cpp's. Throws InputError with file:line:col for bad input.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "models/input/diagnostics.hpp"
#include "models/units.hpp"

namespace odyssey {

/// One achieved rate of an OpenXLA table entry, per dtype combination ("bf16xbf16->bf16").
struct XlaMatmulRate {
  std::string dtypes;
  double flops_per_second = 0.0;
  SourceLocation where;
};

/// One entry of OpenXLA's matmul table: b x (m x k) x (k x n) under a GPU architecture key.
struct XlaMatmulEntry {
  std::string arch; ///< "sm_90", the table's key
  long b = 0;
  long m = 0;
  long n = 0;
  long k = 0;
  std::vector<XlaMatmulRate> rates;
  SourceLocation where;
};

/// A copy of OpenXLA's matmul table and where it was copied from.
struct XlaMatmulTable {
  std::string source; ///< the file's `# source: ...` comment line
  std::vector<XlaMatmulEntry> entries;
};

/// Reads OpenXLA's `kDefaultMatmulPTable` text-proto: `entries { key: "sm_90" value { entries {
/// b m n k flops { key value } ... } } }`. `#` starts a comment; a comment line `# source: ...`
/// before the first entry must cite the copy's origin. Any other field, a repeated or missing
/// b/m/n/k, a non-positive number or a syntax error is an InputError.
XlaMatmulTable read_xla_matmul_table(const std::string& path);

/// One entry of OpenXLA's collective table (`default_collective_perf_table.txtpb`): one NCCL
/// collective over groups of GPUs of one server, as OpenXLA's collective_perf_table_gen timed it
/// (the median of its runs through XLA's runtime, launch included).
struct XlaCollectiveEntry {
  std::string opcode; ///< "all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute"
  std::string element_type; ///< XLA's primitive type, e.g. "F32"
  std::vector<long> dimensions;
  int groups = 0;            ///< num_replica_groups; 0 for collective-permute
  int devices_per_group = 0; ///< num_devices_per_group; 0 for collective-permute
  int pairs = 0;             ///< collective-permute's source-target pairs
  double throughput = 0.0;   ///< network_throughput_bytes_per_sec: counted_bytes() over the time
  SourceLocation where;

  /// The bytes OpenXLA's generator divides by the time: the sweep's buffer size, the shape's
  /// bytes, and for reduce-scatter (whose shape is its output) the input, shape x group. That is
  /// nccl-tests' "size" (CollectiveOp::bytes): all-gather's gathered output, reduce-scatter's input.
  [[nodiscard]] Bytes counted_bytes() const;
  /// The measured time: counted_bytes() over the throughput.
  [[nodiscard]] Seconds time() const { return Seconds(counted_bytes().value() / throughput); }
};

/// A copy of OpenXLA's collective table for one GPU architecture key and where it was copied from.
struct XlaCollectiveTable {
  std::string source; ///< the file's `# source: ...` comment line
  std::string arch;   ///< the entries' key, "sm_90"
  std::vector<XlaCollectiveEntry> entries;
};

/// Reads a copy of OpenXLA's collective table (calibration/published/xla-collective-*.textproto):
/// a `key: "sm_90"` line, then `entry { opcode element_type dimensions... num_replica_groups
/// num_devices_per_group throughput }` per line (collective-permute: `source_target_pairs { source
/// target }` instead of the groups). A `# source: ...` comment line before the first field must
/// cite the copy's origin. An unknown opcode or element type, a missing or repeated field, a
/// non-positive number or a syntax error is an InputError.
XlaCollectiveTable read_xla_collective_table(const std::string& path);

/// One row of a FlashAttention throughput table (calibration/published/flash-attention.csv).
struct FlashAttentionRow {
  std::string gpu;    ///< Odyssey GPU type, e.g. "H100-SXM5-80GB"
  std::string kernel; ///< "FlashAttention-2", "FlashAttention-3"
  std::string pass;   ///< "forward" or "backward"
  std::string dtype;  ///< "fp16", "bf16", "fp8"
  int head_dim = 0;
  long seq = 0;
  bool causal = false;
  double tflops = 0.0; ///< TFLOP/s in the papers' convention (causal: half the FLOPs)
  std::string source;
  SourceLocation where;
};

/// The columns a FlashAttention table must have, in this order.
inline constexpr const char* FLASH_ATTENTION_HEADER =
    "gpu,kernel,pass,dtype,head_dim,seq,causal,tflops,source";

/// Reads a FlashAttention throughput CSV (header FLASH_ATTENTION_HEADER; fields may be quoted
/// with "..."; `#` lines are comments). A bad field is an InputError at its line and column.
std::vector<FlashAttentionRow> read_flash_attention_table(const std::string& path);

/// One row of a table of measured per-layer times (calibration/published/*-layer-times.csv): the
/// forward and backward time of one transformer layer on one GPU, as a paper measured them, for the
/// layer a scenario sets up with the row's sequence parallelism and recomputation.
struct LayerTimeRow {
  std::string gpu;      ///< Odyssey GPU type, e.g. "A100-SXM4-80GB"
  std::string scenario; ///< path of the scenario (resolved against the table's folder)
  SourceLocation scenario_where;
  bool sequence_parallel = false;
  std::string recompute; ///< "none", "selective", "full"
  Seconds forward;
  Seconds backward;       ///< recomputation included, as the paper counts it
  std::string experiment; ///< the row's name in its source
  std::string source;
  SourceLocation where;
};

/// The columns a layer-time table must have, in this order.
inline constexpr const char* LAYER_TIME_HEADER =
    "gpu,scenario,sequence_parallel,recompute,forward_ms,backward_ms,experiment,source";

/// Reads a layer-time CSV (header LAYER_TIME_HEADER, fields as in a FlashAttention table).
std::vector<LayerTimeRow> read_layer_time_table(const std::string& path);

/// One row of the table of the best MFU published per GPU (calibration/published/best-mfu.csv): a
/// run that really trained, the MFU its authors published (model FLOPs in their count over the
/// GPU's dense peak for the run's precision), and where.
struct PublishedMfuRow {
  std::string gpu;       ///< Odyssey GPU type, e.g. "H100-SXM5-80GB"
  std::string precision; ///< "fp16", "bf16", "fp8", "fp32"
  double mfu = 0.0;      ///< a fraction, 0.563 for 56.3%
  long gpus = 0;
  std::string run; ///< what trained, e.g. "GPT 1T, selective recomputation"
  std::string source;
  SourceLocation where;
};

/// The columns a published-MFU table must have, in this order.
inline constexpr const char* PUBLISHED_MFU_HEADER = "gpu,precision,mfu_percent,gpus,run,source";

/// Reads a published-MFU CSV (header PUBLISHED_MFU_HEADER, fields as in a FlashAttention table;
/// mfu_percent above 0 and at most 100).
std::vector<PublishedMfuRow> read_published_mfu_table(const std::string& path);

/// The row of highest MFU for `gpu` in a precision that runs at the same dense peak as
/// `precision` (fp16 and bf16 share one on every GPU with both; fp8 and fp32 stand alone);
/// nothing when the table has none.
std::optional<PublishedMfuRow> best_published_mfu(const std::vector<PublishedMfuRow>& rows,
                                                  std::string_view gpu, std::string_view precision);

} // namespace odyssey
