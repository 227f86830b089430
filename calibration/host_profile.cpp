#include "calibration/host_profile.hpp"

#include <filesystem>

#include <fmt/format.h>

#include "models/input/yaml_reader.hpp"

namespace odyssey {

CpuAdamRate load_cpu_adam_profile(const std::string& path) {
  const YamlValue root = load_yaml_file(path);
  root.check_keys({"format", "cpu_adam"});
  if (root.require("format").as_string() != "odyssey-host-profile/1")
    root.require("format").fail("expected 'odyssey-host-profile/1'");
  const YamlValue entries = root.require("cpu_adam");
  std::optional<CpuAdamRate> best;
  std::string best_date;
  for (const YamlValue& e : entries.items()) {
    e.check_keys({"cpu", "kind", "date", "command", "openmp", "bytes_per_parameter", "runs", "notes"});
    if (e.require("kind").as_string() != "measured") continue;
    const std::string date = e.require("date").as_string();
    double one_thread = 0;
    for (const YamlValue& run : e.require("runs").items()) {
      run.check_keys({"threads", "parameters_per_s", "bandwidth"});
      if (run.require("threads").as_positive_count() == 1) {
        one_thread = run.require("parameters_per_s").as_number();
        if (!(one_thread > 0)) run.require("parameters_per_s").fail("must be greater than zero");
      }
    }
    if (one_thread <= 0) e.require("runs").fail("needs a run with threads: 1 (the per-core rate)");
    const double bytes = e.require("bytes_per_parameter").as_number();
    if (!(bytes > 0)) e.require("bytes_per_parameter").fail("must be greater than zero");
    if (best && date <= best_date) continue;
    best_date = date;
    best = CpuAdamRate{.parameters_per_s_per_core = one_thread,
                       .bytes_per_parameter = bytes,
                       .source = fmt::format("{} ({}, measured {})",
                                             std::filesystem::path(path).filename().string(),
                                             e.require("cpu").as_string(), date)};
  }
  if (!best) entries.fail("has no measured entry");
  return *best;
}

} // namespace odyssey
