#include "tools/run.hpp"

#include <optional>

#include <fmt/format.h>

#include "models/input/diagnostics.hpp"
#include "sim/collective.hpp"

namespace odyssey {

namespace {

/// The first dtype a workload under `precision` computes in that the profile has no peak for.
std::optional<Precision> missing_peak(const Profile& profile, Precision precision) {
  for (const Precision dtype : compute_precisions(precision))
    if (!profile.peak.contains(dtype)) return dtype;
  return std::nullopt;
}

/// Without a peak the cost model cannot price the workload's GEMMs and attention: bad input,
/// found before any simulation starts rather than by the cost model in the middle of one.
void check_precision(const Scenario& scenario, const Profile& profile) {
  const Precision precision = scenario.training.precision;
  const auto missing = missing_peak(profile, precision);
  if (!missing) return;
  std::string supported;
  for (const Precision p : {Precision::FP32, Precision::FP16, Precision::BF16, Precision::FP8})
    if (!missing_peak(profile, p))
      supported += fmt::format("{}{}", supported.empty() ? "" : ", ", to_string(p));
  const std::string why = *missing == precision
                              ? ""
                              : fmt::format("{} training computes activations and attention in {}, and ",
                                            to_string(precision), to_string(*missing));
  throw InputError(scenario.at("training.precision"), "training.precision",
                   fmt::format("{}GPU {} has no {} peak in profile {} (precisions it supports: {})", why,
                               profile.gpu, to_string(*missing), profile.name,
                               supported.empty() ? "none" : supported));
}

std::string gib(Bytes b) {
  return fmt::format("{:.2f} GiB", b.value() / 1073741824.0);
}

} // namespace

Profile scenario_profile(const Scenario& scenario) {
  Profile profile = load_profile(scenario.calibration);
  check_profile_gpu(profile, scenario.machine.gpu.type, scenario.machine.name);
  return profile;
}

CostModel scenario_cost_model(const Scenario& scenario) {
  Profile profile = scenario_profile(scenario);
  check_precision(scenario, profile);
  return CostModel(std::move(profile),
                   nccl_config(scenario.machine, scenario.nccl.algorithms, scenario.nccl.protocols));
}

Workload scenario_workload(const Scenario& scenario) {
  return Workload(scenario.model, scenario.training, scenario.parallelism);
}

MemoryFit scenario_memory_fit(const Scenario& scenario, const Workload& workload) {
  return memory_fit(workload, scenario.machine.gpu.memory);
}

std::string memory_fit_problem(const Scenario& scenario, const MemoryFit& fit) {
  if (fit.fits) return "";
  const std::string who =
      fit.per_stage.size() > 1 ? fmt::format("a GPU of pipeline stage {}", fit.peak_stage) : "each GPU";
  return fmt::format("the layout does not fit in GPU memory: {} needs {}, {} more than the {} of a {} "
                     "(odyssey run shows where it goes)",
                     who, gib(fit.peak), gib(fit.peak - fit.capacity), gib(fit.capacity),
                     scenario.machine.gpu.type);
}

SimulationOptions simulation_options(const Scenario& scenario, const RunOptions& options) {
  return SimulationOptions{.fidelity = scenario.simulation.fidelity,
                           .seed = scenario.simulation.seed,
                           .record_trace = options.record_trace,
                           .simgrid_args = options.simgrid_args,
                           .placement = scenario.placement};
}

Report run_scenario(const Scenario& scenario, const CostModel& cost, const RunOptions& options) {
  const Workload workload = scenario_workload(scenario);
  const SimulationResult result =
      simulate(scenario.machine, workload, cost, simulation_options(scenario, options));
  return make_report(scenario.name, scenario.machine, workload, cost, result, scenario.simulation.fidelity);
}

Report run_scenario(const Scenario& scenario, const RunOptions& options) {
  return run_scenario(scenario, scenario_cost_model(scenario), options);
}

} // namespace odyssey
