// Prices operations from a calibration profile. Knows nothing of SimGrid: compute ops become
// durations; collectives become a plan (algorithm, protocol, fixed latency, bytes per algorithm
// edge and protocol efficiency) that sim/ turns into flows, or an analytic time for the screen.
#pragma once

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "calibration/profile.hpp"
#include "models/offload.hpp"
#include "models/ops.hpp"

namespace odyssey {

enum class LinkClass { NVLINK, PCIE, NET };

/// NCCL's algorithms, in NCCL's order (src/include/device.h): ties in predicted time keep the first.
/// P2P is not an NCCL algorithm: all-to-all and send/recv run as point-to-point transfers.
enum class Algorithm { TREE, RING, COLLNET, NVLS, NVLS_TREE, PAT, P2P };

/// A set of algorithms or protocols, one bit per enumerator.
using AlgorithmSet = unsigned;
using ProtocolSet = unsigned;
inline constexpr AlgorithmSet ALL_ALGORITHMS = ~0U;
inline constexpr ProtocolSet ALL_PROTOCOLS = ~0U;

/// NCCL's channels between servers for a communicator with `ranks_per_server` of its ranks in each
/// server: one per rank, each leaving through its own NIC, so at most one per NIC (and at least
/// one). The cost model prices a rank's share of the network with it, the flow builders lay that
/// many rings or trees.
constexpr int nccl_net_channels(int ranks_per_server, int nics) {
  return std::max(1, std::min(ranks_per_server, nics));
}

/// What the machine offers NCCL and what the user lets it use (NCCL_ALGO, NCCL_PROTO).
struct NcclConfig {
  bool nvls = false;    ///< NVSwitch with NVLink SHARP (gen3: H100/H200 servers)
  bool collnet = false; ///< fabric switches reduce in the network (InfiniBand SHARP)
  LinkClass intra =
      LinkClass::NVLINK;        ///< how a server's GPUs reach each other (PCIE: the profile's pcie class)
  int nics_per_server = 0;      ///< 0: unknown, the profile's per-GPU network share is used
  BytesPerSecond nic_bandwidth; ///< per NIC, per direction (with nics_per_server)
  AlgorithmSet algorithms = ALL_ALGORITHMS;
  ProtocolSet protocols = ALL_PROTOCOLS;
};

/// Parses a list as NCCL_ALGO takes it ("ring,tree", "^nvls" excludes; case-insensitive; NCCL's
/// names Ring, Tree, CollNetDirect (or CollNet), NVLS, NVLSTree, PAT). Throws std::invalid_argument
/// naming the unknown entry and the accepted names.
AlgorithmSet parse_algorithms(std::string_view list);
/// Parses a list as NCCL_PROTO takes it ("LL,LL128,Simple", "^LL").
ProtocolSet parse_protocols(std::string_view list);
/// The list as the user would write it back ("all" for every one).
std::string algorithms_text(AlgorithmSet set);
std::string protocols_text(ProtocolSet set);

const char* to_string(Algorithm a);

/// Shape of a communicator: how many ranks and how many servers they span.
struct GroupShape {
  int ranks = 1;
  int servers = 1;
};

/// How one collective runs, for the engine.
struct CollectivePlan {
  std::string
      algorithm; ///< to_string(Algorithm): "ring", "tree", "nvls", "nvls-tree", "collnet", "pat", "p2p"
  Algorithm algo = Algorithm::RING;
  std::string protocol;           ///< "LL", "LL128" or "Simple" (a one-rank group: "ring"/"Simple", all zero)
  Seconds latency;                ///< fixed part: base latency + steps x per-step latency
  int steps = 0;                  ///< algorithm steps (2(n-1) for a ring all-reduce)
  double edge_bytes_factor = 0.0; ///< bytes crossing each ring edge = factor x size
  double efficiency_nvlink = 1.0; ///< fraction of NVLink bandwidth the protocol achieves
  double efficiency_net = 1.0;    ///< fraction of NIC bandwidth the protocol achieves
  double efficiency_nvls = 1.0;   ///< fraction of NVLink bandwidth NVLink SHARP achieves (NVLS algorithms)
};

/// A GEMM's achieved fraction of peak, and whether its shape lies outside the profile's measured
/// points (then it is extrapolated conservatively and reports flag it).
struct GemmEstimate {
  double efficiency = 0.0;
  bool extrapolated = false;
};

/// FLOPs of a fused attention pass in the FlashAttention papers' convention (Dao 2023, arXiv
/// 2307.08691 sec. 4.1; Shah et al. 2024, arXiv 2407.08608 sec. 4.1), the convention of the
/// profiles' attention efficiencies: forward 4 x seq_q x seq_kv x head_dim x heads per sequence,
/// halved for a causal mask (masked tiles are skipped); backward 2.5 x the forward (it recomputes
/// the scores: five matmuls against the forward's two).
[[nodiscard]] Flops flash_attention_flops(const AttentionShape& shape, AttentionPass pass);

/// Which kind of data priced an operation: a profile's own points for it (the profile's kind,
/// `measured` or `published`), or the datasheet model (peaks, best fractions, assumptions).
[[nodiscard]] ProfileKind price_source_of(const Profile& profile, const ComputeOp& op);

/// A profile's GEMM points of one dtype, placed for interpolation (built once per cost model).
struct GemmTable;

class CostModel {
public:
  explicit CostModel(Profile profile, NcclConfig nccl = {});

  [[nodiscard]] const Profile& profile() const { return profile_; }
  [[nodiscard]] const NcclConfig& nccl() const { return nccl_; }
  /// CPU-Adam throughput from the host profile (ZeRO-Offload); zero when none was loaded.
  [[nodiscard]] const CpuAdamRate& cpu_adam() const { return cpu_adam_; }
  void set_cpu_adam(CpuAdamRate rate) { cpu_adam_ = std::move(rate); }

  /// Duration of one compute op on one GPU, launch overhead included: modelled_time times the
  /// profile's kernel.time_scale.
  [[nodiscard]] Seconds compute_time(const ComputeOp& op) const;

  [[nodiscard]] Seconds compute_time(const std::vector<ComputeOp>& ops) const;
  /// Achieved fraction of peak for a GEMM shape (interpolated over the profile's points).
  [[nodiscard]] double gemm_efficiency(const GemmShape& shape, Precision dtype) const;
  /// The same, saying whether the shape is outside the measured range.
  [[nodiscard]] GemmEstimate gemm_estimate(const GemmShape& shape, Precision dtype) const;

  /// Achieved fraction of peak of a fused attention pass, in flash_attention_flops' convention:
  /// interpolated over the profile's attention points of the dtype, pass and mask where it has
  /// them, else its `attention` efficiencies.
  [[nodiscard]] double attention_efficiency(const AttentionShape& shape, AttentionPass pass,
                                            Precision dtype) const;
  /// Where the price of `op` comes from (measured, published or datasheet data).
  [[nodiscard]] ProfileKind price_source(const ComputeOp& op) const { return price_source_of(profile_, op); }

  /// Dense peak of a dtype; throws std::invalid_argument when the profile lists none.
  [[nodiscard]] FlopsPerSecond peak(Precision dtype) const;

  /// The plan of a collective; algorithm and protocol are chosen with the profile's nominal link
  /// bandwidths among those the NcclConfig allows and the group can run. Throws
  /// std::invalid_argument when the allowed ones cannot run this collective.
  [[nodiscard]] CollectivePlan collective(CollectiveKind kind, Bytes size, GroupShape group) const;
  /// The plan of a collective whose ranks have `intra` / `inter` bandwidth (per GPU, per
  /// direction); the protocol is the one NCCL's tuning would pick for those bandwidths.
  [[nodiscard]] CollectivePlan collective(CollectiveKind kind, Bytes size, GroupShape group,
                                          BytesPerSecond intra, BytesPerSecond inter) const;
  /// Uncontended time of a collective whose ranks have `intra` bandwidth to peers in their
  /// server and `inter` bandwidth to other servers (per GPU, per direction).
  [[nodiscard]] Seconds collective_time(CollectiveKind kind, Bytes size, GroupShape group,
                                        BytesPerSecond intra, BytesPerSecond inter) const;

private:
  /// The op's time by the model alone (shapes, rates, launches), before kernel.time_scale.
  [[nodiscard]] Seconds modelled_time(const ComputeOp& op) const;
  Profile profile_;
  NcclConfig nccl_;
  CpuAdamRate cpu_adam_;
  /// The profile with the server's intra link class in place of NVLink (a PCIe-only server
  /// prices its intra-server steps with the pcie class), for collectives.
  Profile links_;
  /// profile_.gemm_points by dtype, derived once: the planner prices thousands of shapes.
  std::shared_ptr<const std::map<Precision, GemmTable>> gemm_tables_;
};

} // namespace odyssey
