// A calibration profile: the rates and overheads of one GPU type and its links, with provenance.
// Stored as YAML in calibration/profiles/; `datasheet` profiles come from published peaks and
// published achievable fractions, `published` ones add per-shape tables measured by others on the
// real GPU (each table names its source), `measured` ones come from our own kernels/ benchmarks.
#pragma once

#include <array>
#include <map>
#include <string>
#include <vector>

#include "models/input/diagnostics.hpp"
#include "models/ops.hpp"
#include "models/spec.hpp"
#include "models/units.hpp"

namespace odyssey {

/// Where a profile's numbers come from, weakest first: `find_profile` prefers the strongest.
enum class ProfileKind { DATASHEET, PUBLISHED, MEASURED };

struct Provenance {
  ProfileKind kind = ProfileKind::DATASHEET;
  std::string source; ///< where the numbers come from (citation or tool + commit)
  std::string date;
  std::string notes;
};

/// One recorded GEMM point: shape, dtype and the achieved fraction of peak.
struct GemmPoint {
  long m = 0;
  long n = 0;
  long k = 0;
  long batch = 1; ///< strided-batched count (OpenXLA's table records b = 1, 2, 4)
  Precision dtype = Precision::FP16;
  double efficiency = 0.0; ///< achieved FLOP/s over the dtype's peak
};

/// Which pass of fused attention a point measures.
enum class AttentionPass { FORWARD, BACKWARD };

/// One recorded fused-attention (FlashAttention) point: query length = key length = `seq`,
/// `head_dim`, causal or not. `efficiency` is the achieved rate over the dtype's peak in the
/// FlashAttention papers' FLOP convention (`flash_attention_flops` in cost_model.hpp): forward
/// 4 x seq^2 x head_dim x heads per sequence, halved when causal; backward 2.5 x the forward.
struct AttentionPoint {
  AttentionPass pass = AttentionPass::FORWARD;
  int head_dim = 128;
  long seq = 0;
  bool causal = false;
  Precision dtype = Precision::BF16;
  double efficiency = 0.0;
};

/// A table of points measured by others, named with its source (published profiles).
struct TableSource {
  std::string table;  ///< "gemm bf16", "attention forward bf16", ...
  std::string source; ///< citation: repository@commit path, or paper and table/figure
};

/// An output tile of a GEMM kernel: rows x columns of C one thread block (CTA) computes.
struct GemmTile {
  long m = 128;
  long n = 128;
};

/// NCCL's three protocols, in NCCL's order.
enum class Protocol { LL, LL128, SIMPLE };

/// One latency per protocol (NCCL's tuning tables are indexed this way).
struct ProtocolLatency {
  Seconds ll;
  Seconds ll128;
  Seconds simple;

  [[nodiscard]] Seconds at(Protocol p) const;
};

/// The bus efficiency NCCL reached for one collective over `ranks` GPUs of one server, at the
/// largest message a published or measured table timed (busbw over the port's bandwidth).
struct GroupEfficiency {
  CollectiveKind kind = CollectiveKind::ALL_REDUCE;
  int ranks = 0;
  double bus_efficiency = 1.0;
};

/// Per-link-class parameters of the collective cost model (NCCL's tuning model, see
/// calibration/README.md for the constants' sources).
struct LinkClassProfile {
  BytesPerSecond bandwidth;    ///< nominal per GPU per direction (informational; the machine sets links)
  double bus_efficiency = 1.0; ///< achievable fraction of link bandwidth for large messages (Simple protocol)
  Seconds step_latency;        ///< per algorithm step (NCCL hwLat, Simple)
  ProtocolLatency step_latency_by_protocol; ///< per algorithm step for LL, LL128, Simple (NCCL hwLat, Ring)
  /// NVLink only: achievable fraction of the port's bandwidth under NVLink SHARP (NVLS), 0 when
  /// the GPU's NVSwitch generation has none (optional key `nvls_efficiency`).
  double nvls_efficiency = 0.0;
  /// NVLink only: the ring channels NCCL runs a collective of a group inside one NVSwitch server
  /// on, one CTA (one SM) each, as NCCL's own logs of such groups show them; 0 where no log is at
  /// hand (optional key `ring_channels`; nccl_kernel_sms then counts NIC rings).
  int ring_channels = 0;
  /// NVLink only: measured bus efficiencies of collectives inside one server by kind and group
  /// size (optional key `group_efficiency`), which NCCL's ring and point-to-point transfers of such
  /// a group run at instead of `bus_efficiency`; empty where no table measured them.
  std::vector<GroupEfficiency> group_efficiency;

  /// The ring efficiency of `kind` over `ranks` GPUs of one server: the measured one at that group
  /// size; between two measured sizes, linear in the ranks; beyond them, the nearest; without any
  /// for this kind, `bus_efficiency`.
  [[nodiscard]] double ring_efficiency(CollectiveKind kind, int ranks) const;
};

/// NCCL's cap on one tree channel's bus bandwidth for this GPU generation (perChMaxTreeBws,
/// src/graph/tuning.cc) over one server, two, and three or more; zero: no cap (optional key
/// `collective.tree_channel_bandwidth`).
struct TreeChannelCap {
  BytesPerSecond one_server;
  BytesPerSecond two_servers;
  BytesPerSecond more_servers;
  /// The cap of a tree over `servers` servers (NCCL's index: 1, 2, more).
  [[nodiscard]] BytesPerSecond over(int servers) const {
    return servers <= 1 ? one_server : servers == 2 ? two_servers : more_servers;
  }
};

struct Profile {
  std::string name;         ///< file stem, e.g. "h100-sxm5-80gb-datasheet"
  std::string gpu;          ///< GPU type it describes, e.g. "H100-SXM5-80GB"
  SourceLocation gpu_where; ///< where the file names it (for mismatch errors)
  Provenance provenance;
  std::map<Precision, FlopsPerSecond> peak; ///< dense tensor-core peak per dtype
  FlopsPerSecond tf32_peak; ///< TF32 tensor-core peak, 0 when not published (recorded, not priced yet)
  double gemm_max_efficiency = 0.8; ///< best achievable fraction of peak for large GEMMs (any dtype)
  std::map<Precision, double>
      gemm_max_efficiency_by_dtype; ///< per dtype where published; else gemm_max_efficiency
  /// Fraction of its measured rate a tensor-core kernel (GEMM, fused attention) of a dtype holds
  /// when every GPU of the server computes at once and the board settles at its power limit
  /// (`gemm.sustained`): the best sustained matmul rate over the best short burst, as
  /// ml-engineering's MSMF and MAMF measure them. Absent: 1, the measurements already sustained.
  std::map<Precision, double> gemm_sustained;
  /// gemm_sustained for `dtype`, 1 where the profile has none.
  [[nodiscard]] double sustained(Precision dtype) const {
    const auto it = gemm_sustained.find(dtype);
    return it == gemm_sustained.end() ? 1.0 : it->second;
  }
  int sms = 0;            ///< streaming multiprocessors (wave quantization)
  long gemm_tile_m = 128; ///< output tile rows of the typical cuBLAS kernel
  long gemm_tile_n = 128; ///< output tile columns of the typical cuBLAS kernel
  /// Output tiles the GPU's cuBLAS kernels offer (`gemm.tiles`); empty: the one tile above.
  std::vector<GemmTile> gemm_tiles;
  long gemm_k_block = 64; ///< K elements of 16-bit operands one main-loop iteration of a tile consumes
  /// Fixed time per tile in main-loop iterations: filling the software pipeline before the first
  /// multiply-accumulate and writing the tile out after the last (`gemm.fill`); 0: none.
  double gemm_fill = 0.0;
  int gemm_max_split_k = 1; ///< most slices cuBLAS splits K into for a GEMM with few tiles
  /// Shape at which a dtype's `max_efficiency` was measured (`gemm.best_shape`): the GEMM model's
  /// main loop then runs at the rate that reproduces that measurement at that shape. Without it
  /// `max_efficiency` is the main loop's rate itself.
  std::map<Precision, std::array<long, 3>> gemm_best_shape;
  std::vector<GemmPoint> gemm_points; ///< measured or modelled points to interpolate over
  /// Fused attention forward, fraction of peak in flash_attention_flops' convention, where no points.
  double attention_efficiency = 0.5;
  /// The same for the backward pass; 0: the forward's (`attention.backward_efficiency`).
  double attention_backward_efficiency = 0.0;
  /// FlashAttention-2's forward and backward figures on a GPU whose `attention` figures are a newer
  /// kernel's (`attention.flash_attention_2`); 0: none, the newest kernel's are used.
  double attention_fa2_efficiency = 0.0;
  double attention_fa2_backward_efficiency = 0.0;
  std::vector<AttentionPoint> attention_points; ///< fused attention, forward and backward
  std::vector<TableSource> tables;              ///< where each table of points comes from
  BytesPerSecond memory_bandwidth;              ///< HBM peak
  double memory_efficiency = 0.85;              ///< achievable fraction for streaming kernels
  Seconds launch_overhead;                      ///< per kernel
  /// Every kernel's modelled time is multiplied by it (`kernel.time_scale`, 1 without): a published
  /// profile's ratio of measured whole-layer times to the model's price of the same layers (`odyssey
  /// calibrate import --published layer-times=...`), the table named under `tables`.
  double kernel_time_scale = 1.0;
  Seconds collective_base_latency; ///< per collective call (NCCL base latency, Ring Simple)
  ProtocolLatency collective_base_latency_by_protocol; ///< NCCL base latency, Ring, per protocol
  TreeChannelCap tree_channel_bandwidth;               ///< NCCL's per-channel tree cap
  LinkClassProfile nvlink;
  LinkClassProfile pcie;
  LinkClassProfile net;
  std::string path; ///< file it was loaded from
};

/// Loads and checks a profile; throws InputError with file:line:col for bad content.
Profile load_profile(const std::string& path);

/// Throws InputError at the profile's `gpu:` key when it describes another GPU than `gpu`, the
/// GPU of machine `machine`: a profile never prices a GPU it was not made for.
void check_profile_gpu(const Profile& profile, const std::string& gpu, const std::string& machine);

/// Finds the best profile for `gpu` among the *.yaml in `directory`: measured beats published,
/// published beats datasheet, then newest date, then name. Throws InputError when none matches.
std::string find_profile(const std::string& directory, const std::string& gpu);

/// What a profile's kernel.time_scale rests on, for reports: "the layer times measured in SOURCE"
/// from its `layer times` or `layer times of another GPU` table (the latter's source says ASSUMED).
std::string kernel_time_scale_origin(const Profile& profile);

/// What a profile's gemm.sustained does, for reports: "bf16 x0.9503, fp8 x0.9653 of the measured
/// rate (gemm.sustained: ...)"; "" when the profile has none.
std::string sustained_text(const Profile& profile);

/// The range of kernel.time_scale a profile may hold: a layer measured at under half or over twice
/// the model's price of its kernels says the model or the measurement is wrong, not the GPU's pace.
inline constexpr double KERNEL_TIME_SCALE_MIN = 0.5;
inline constexpr double KERNEL_TIME_SCALE_MAX = 2.0;

/// The name of the table a layer-time import records under `tables`.
inline constexpr const char* LAYER_TIMES_TABLE = "layer times";
/// The name of the table an assumed-time-scale import records: another GPU's layer-time factor.
inline constexpr const char* ASSUMED_TIME_SCALE_TABLE = "layer times of another GPU";

const char* to_string(ProfileKind k);
const char* to_string(Protocol p);

/// The profile format this build reads (the `format:` key of every profile).
inline constexpr const char* PROFILE_FORMAT = "odyssey-profile/1";

} // namespace odyssey
