// Scenario loading: YAML with unit strings, presets for machines and models, `--set` overrides,
// strict keys with did-you-mean, cross-field checks. Produces plain values; throws InputError.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "calibration/cost_model.hpp"
#include "models/data.hpp"
#include "models/input/diagnostics.hpp"
#include "models/reliability.hpp"
#include "models/spec.hpp"
#include "models/strategy.hpp"
#include "topologies/machine.hpp"

namespace odyssey {

/// What the job lets NCCL use, as NCCL_ALGO and NCCL_PROTO do.
struct NcclPolicy {
  AlgorithmSet algorithms = ALL_ALGORITHMS;
  ProtocolSet protocols = ALL_PROTOCOLS;
};

/// The host CPU profile, relative to the data directory (calibration/README.md).
inline constexpr const char* HOST_PROFILE = "calibration/profiles/host/cpu-adam.yaml";
/// The best MFU published per GPU type, under the data directory.
inline constexpr const char* PUBLISHED_MFU_TABLE = "calibration/published/best-mfu.csv";

struct Scenario {
  std::string name;
  std::string file; ///< the scenario file as the user named it
  MachineSpec machine;
  ModelSpec model;
  TrainingSpec training;
  ParallelismSpec parallelism;
  std::string calibration = "auto"; ///< "auto" or a profile path; resolved to a path by the loader
  /// The host CPU profile (CPU-Adam throughput) under the data directory: HOST_PROFILE.
  std::string host_calibration;
  /// The table of the best MFU published per GPU under the data directory: PUBLISHED_MFU_TABLE.
  std::string published_mfu;
  SimulationSpec simulation;
  CheckpointSpec checkpoint;
  RecoverySpec recovery;
  DataSpec data;
  NcclPolicy nccl;
  Placement placement = Placement::TP_IN_SERVER; ///< key parallelism.placement
  /// Where each key was written, by key path ("parallelism.tp", "model.heads"): a file position,
  /// or the `--set KEY=VALUE` that gave it.
  std::map<std::string, SourceLocation, std::less<>> where;

  /// Where `key` was written; the scenario file alone when it was not (a default).
  [[nodiscard]] SourceLocation at(std::string_view key) const;
};

struct LoadOptions {
  std::string data_dir; ///< root holding topologies/presets, models/presets, calibration/profiles
  std::vector<std::string> overrides; ///< KEY=VALUE, applied before validation
};

/// Loads, resolves presets and overrides, checks every field and the cross-field rules.
Scenario load_scenario(const std::string& path, const LoadOptions& options);

/// Reads the scenario and applies `options.overrides`, checking each key and value on its own
/// but no cross-field rule: what a sweep checks of its keys before it runs any point.
void check_overrides(const std::string& path, const LoadOptions& options);

/// A machine alone (a preset name or a machine YAML file), with `machine.*` overrides and the
/// machine's checks; for commands that need no workload (`odyssey collective`).
MachineSpec load_machine(const std::string& machine, const LoadOptions& options);

/// The resolved scenario as YAML, every value with its unit (what `odyssey validate` prints).
std::string render_scenario(const Scenario& scenario);

/// Every scenario key with its type, default and help text (`odyssey validate --schema`).
std::string render_schema();

} // namespace odyssey
