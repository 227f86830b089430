// One collective over N GPUs of a machine, simulated for a range of sizes: what `odyssey
// collective` prints, in nccl-tests' terms, so users can hold the network model against their
// own nccl-tests runs.
#pragma once

#include <string>
#include <vector>

#include "calibration/cost_model.hpp"
#include "topologies/machine.hpp"

namespace odyssey {

struct CollectiveRow {
  Bytes bytes;          ///< nccl-tests "size"
  Seconds time;         ///< simulated flows plus the algorithm's fixed latency
  BytesPerSecond algbw; ///< bytes / time
  BytesPerSecond busbw; ///< algbw x nccl-tests' bus factor
  std::string algorithm;
  std::string protocol;
};

struct CollectiveRun {
  std::string machine;
  std::string op;
  int gpus = 0;
  int servers = 0;
  double bus_factor = 1.0;
  std::vector<CollectiveRow> rows;
  long flows = 0;
  double wall_seconds = 0.0;
  std::string profile;    ///< name (kind) of the calibration profile
  std::string algorithms; ///< allowed algorithms, as NCCL_ALGO ("all" when unrestricted)
  std::string protocols;  ///< allowed protocols, as NCCL_PROTO
};

/// NCCL's view of a machine: NVLS where its NVSwitches have NVLink SHARP, CollNet (and NVLS
/// across servers) where its switches reduce in the network, its NICs; `algorithms` and
/// `protocols` restrict the choice as NCCL_ALGO and NCCL_PROTO do.
NcclConfig nccl_config(const MachineSpec& machine, AlgorithmSet algorithms, ProtocolSet protocols);

/// Simulates `kind` over GPUs 0..gpus-1 of `machine` once per size. Throws std::invalid_argument
/// for an impossible request (more GPUs than the machine, all-to-all too large to simulate).
CollectiveRun simulate_collective(const MachineSpec& machine, const CostModel& cost, CollectiveKind kind,
                                  int gpus, const std::vector<Bytes>& sizes);

/// Runs one collective of `size` on each of `groups` (global GPU indices) at the same time and
/// returns each one's time: groups whose flows share links slow each other as
/// max-min sharing says.
std::vector<Seconds> simulate_concurrent(const MachineSpec& machine, const CostModel& cost,
                                         CollectiveKind kind, const std::vector<std::vector<long>>& groups,
                                         Bytes size);

std::string render_collective_text(const CollectiveRun& run);
std::string render_collective_json(const CollectiveRun& run);

} // namespace odyssey
