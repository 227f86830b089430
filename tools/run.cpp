#include "tools/run.hpp"

#include "sim/collective.hpp"

namespace odyssey {

Profile scenario_profile(const Scenario& scenario) {
  Profile profile = load_profile(scenario.calibration);
  check_profile_gpu(profile, scenario.machine.gpu.type, scenario.machine.name);
  return profile;
}

CostModel scenario_cost_model(const Scenario& scenario) {
  return CostModel(scenario_profile(scenario),
                   nccl_config(scenario.machine, scenario.nccl.algorithms, scenario.nccl.protocols));
}

Workload scenario_workload(const Scenario& scenario) {
  return Workload(scenario.model, scenario.training, scenario.parallelism);
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
