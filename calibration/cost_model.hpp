// Prices operations from a calibration profile. Knows nothing of SimGrid: compute ops become
// durations; collectives become a plan (algorithm, protocol, fixed latency, bytes per algorithm
// edge and protocol efficiency) that sim/ turns into flows, or an analytic time for the screen.
#pragma once

#include <string>
#include <vector>

#include "calibration/profile.hpp"
#include "models/ops.hpp"

namespace odyssey {

enum class LinkClass { NVLINK, PCIE, NET };

/// Shape of a communicator: how many ranks and how many servers they span.
struct GroupShape {
  int ranks = 1;
  int servers = 1;
};

/// How one collective runs, for the engine.
struct CollectivePlan {
  std::string algorithm;           ///< "ring" (tree, NVLS, ... arrive with the network issue)
  std::string protocol;            ///< "LL", "LL128" or "Simple" (a one-rank group: "ring"/"Simple", all zero)
  Seconds latency;                 ///< fixed part: base latency + steps x per-step latency
  int steps = 0;                   ///< algorithm steps (2(n-1) for a ring all-reduce)
  double edge_bytes_factor = 0.0;  ///< bytes crossing each ring edge = factor x size
  double efficiency_nvlink = 1.0;  ///< fraction of NVLink bandwidth the protocol achieves
  double efficiency_net = 1.0;     ///< fraction of NIC bandwidth the protocol achieves
};

/// A GEMM's achieved fraction of peak, and whether its shape lies outside the profile's measured
/// points (then it is extrapolated conservatively and reports flag it).
struct GemmEstimate {
  double efficiency = 0.0;
  bool extrapolated = false;
};

class CostModel {
public:
  explicit CostModel(Profile profile);

  [[nodiscard]] const Profile& profile() const { return profile_; }

  /// Duration of one compute op on one GPU, launch overhead included.
  [[nodiscard]] Seconds compute_time(const ComputeOp& op) const;
  [[nodiscard]] Seconds compute_time(const std::vector<ComputeOp>& ops) const;
  /// Achieved fraction of peak for a GEMM shape (interpolated over the profile's points).
  [[nodiscard]] double gemm_efficiency(const GemmShape& shape, Precision dtype) const;
  /// The same, saying whether the shape is outside the measured range.
  [[nodiscard]] GemmEstimate gemm_estimate(const GemmShape& shape, Precision dtype) const;

  /// Dense peak of a dtype; throws std::invalid_argument when the profile lists none.
  [[nodiscard]] FlopsPerSecond peak(Precision dtype) const;

  /// The plan of a collective; the protocol is chosen with the profile's nominal link bandwidths.
  [[nodiscard]] CollectivePlan collective(CollectiveKind kind, Bytes size, GroupShape group) const;
  /// The plan of a collective whose ranks have `intra` / `inter` bandwidth (per GPU, per
  /// direction); the protocol is the one NCCL's tuning would pick for those bandwidths.
  [[nodiscard]] CollectivePlan collective(CollectiveKind kind, Bytes size, GroupShape group, BytesPerSecond intra,
                                          BytesPerSecond inter) const;
  /// Uncontended time of a collective whose ranks have `intra` bandwidth to peers in their
  /// server and `inter` bandwidth to other servers (per GPU, per direction).
  [[nodiscard]] Seconds collective_time(CollectiveKind kind, Bytes size, GroupShape group, BytesPerSecond intra,
                                        BytesPerSecond inter) const;

private:
  Profile profile_;
};

} // namespace odyssey
