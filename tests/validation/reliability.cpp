// Validation of the failure model against published failure statistics: each snapshot of
// reliability.yaml (a scenario, a wall time, published counts) simulated by the Monte Carlo over
// that wall time; prints a markdown table and fails when the mean interruption count misses the
// published one by more than the stated fraction or the effective training time is not above
// the published bound. Needs no simulation of an iteration: the counts do not depend on it.
// Usage: odyssey_validation_reliability [reliability.yaml]
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "models/input/diagnostics.hpp"
#include "models/input/yaml_reader.hpp"
#include "models/reliability.hpp"
#include "tools/run.hpp"
#include "tools/scenario.hpp"

int main(int argc, char** argv) {
  const std::string data_dir = ODYSSEY_DATA_DIR;
  const std::string table = argc > 1 ? argv[1] : data_dir + "/tests/validation/reliability.yaml";
  const std::filesystem::path base = std::filesystem::path(table).parent_path();
  bool ok = true;
  try {
    const odyssey::YamlValue root = odyssey::load_yaml_file(table);
    std::cout
        << "| snapshot | GPUs | days | published interruptions | simulated (P10-P90) | effective training "
           "time | simulated goodput (P10) | Monte Carlo wall (s) "
           "|\n|---|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const odyssey::YamlValue& snap : root.require("snapshots").items()) {
      std::vector<std::string> overrides;
      if (const auto o = snap.get("overrides"))
        for (const odyssey::YamlValue& item : o->items()) overrides.push_back(item.as_string());
      const std::string path = (base / snap.require("scenario").as_string()).string();
      const odyssey::Scenario s =
          odyssey::load_scenario(path, {.data_dir = data_dir, .overrides = overrides});
      const long gpus = s.parallelism.gpus();
      const odyssey::JobComponents job = odyssey::job_components(s.machine, gpus);
      const odyssey::FailureModel failures = odyssey::failure_model(s.machine.reliability, job);
      const odyssey::RecoveryPolicy policy = odyssey::scenario_recovery_policy(s, gpus);
      const double days = snap.require("days").as_number();
      // A run longer than the snapshot, stopped at its wall time.
      const odyssey::RunLength run{.work = odyssey::Seconds(1e3 * days * 86400),
                                   .horizon = odyssey::Seconds(days * 86400)};
      const int trials = static_cast<int>(snap.require("trials").as_number());
      const auto start = std::chrono::steady_clock::now();
      const odyssey::MonteCarloResult r =
          odyssey::simulate_run(failures, policy, run, s.simulation.seed, trials);
      const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const double published = snap.require("unexpected_interruptions").as_number();
      const double within = snap.require("interruptions_within").as_number();
      const double floor = snap.require("effective_training_time_above").as_number();
      const bool row_ok = std::fabs(r.interruptions_mean / published - 1) <= within && r.goodput_mean > floor;
      ok = ok && row_ok;
      std::cout << fmt::format(
          "| {} | {} | {:g} | {:g} | {:.0f} ({:.0f}-{:.0f}) | >{:.0f}% | {:.1f}% ({:.1f}%) | {:.2f} |{}\n",
          snap.require("id").as_string(), gpus, days, published, r.interruptions_mean, r.interruptions_p10,
          r.interruptions_p90, floor * 100, r.goodput_mean * 100, r.goodput_p10 * 100, wall,
          row_ok ? "" : " FAIL");
    }
  } catch (const odyssey::InputError& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
  return ok ? 0 : 1;
}
