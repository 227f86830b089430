// `odyssey calibrate import RAW... --out PROFILE` (measured), `odyssey calibrate import --published
// FORMAT=FILE... --out PROFILE` (published) and `odyssey calibrate shapes SCENARIO`.
#include "tools/calibrate_cli.hpp"

#include <filesystem>
#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "calibration/import.hpp"
#include "models/input/diagnostics.hpp"
#include "models/workload.hpp"
#include "tools/run.hpp"
#include "tools/scenario.hpp"

namespace odyssey {

CalibrateCommand::CalibrateCommand(CLI::App& app) {
  calibrate_ =
      app.add_subcommand("calibrate", "measured calibration profiles from kernels/ benchmark results");
  calibrate_->require_subcommand(1);
  import_ = calibrate_->add_subcommand(
      "import",
      "turn raw benchmark results into a measured profile, or published tables into a published one");
  auto* raw = import_->add_option("raw", raw_files_, "raw result files written by the kernels/ benchmarks");
  auto* published = import_->add_option(
      "--published", published_,
      "a table measured by others, FORMAT=FILE with FORMAT xla-matmul (OpenXLA's GEMM text-proto), "
      "flash-attention (CSV), layer-times (CSV of measured per-layer times) or assumed-time-scale (another "
      "GPU's published profile, whose layer-time factor is carried over as an assumption); repeatable; makes a "
      "published profile (see calibration/published/README.md)");
  raw->excludes(published);
  published->excludes(raw);
  import_
      ->add_option("--out", out_, "profile to write, e.g. calibration/profiles/h100-sxm5-80gb-measured.yaml")
      ->required();
  import_->add_option("--gpu", gpu_,
                      "GPU type the results describe (default: from the device name in the raw files)");
  import_->add_option("--base", base_,
                      "datasheet profile for peaks and unmeasured values (default: the GPU's own)");
  import_->add_option("--scenario", scenario_,
                      "refuse results from another GPU than this scenario's machine has");
  import_->add_option("--set", sets_, "override a scenario key: KEY=VALUE (repeatable)");
  shapes_ = calibrate_->add_subcommand(
      "shapes", "print the GEMM and attention shapes a scenario runs (kernels/ --shapes)");
  shapes_->add_option("scenario", scenario_, "scenario YAML")->required();
  shapes_->add_option("--set", sets_, "override a scenario key: KEY=VALUE (repeatable)");
  shapes_->add_option("--out", out_, "write the shapes to this file instead of stdout");
}

bool CalibrateCommand::parsed() const {
  return calibrate_->parsed();
}

int CalibrateCommand::run() const {
  const LoadOptions load{.data_dir = ODYSSEY_DATA_DIR, .overrides = sets_};
  if (shapes_->parsed()) {
    const Scenario s = load_scenario(scenario_, load);
    const std::string text = scenario_shapes(Workload(s.model, s.training, s.parallelism));
    if (out_.empty()) {
      std::cout << text;
    } else {
      std::ofstream out(out_, std::ios::trunc);
      if (!out || !(out << text).flush())
        throw InputError({.file = out_}, "", "cannot write the shapes file");
    }
    return 0;
  }
  if (raw_files_.empty() && published_.empty())
    throw InputError({.file = "calibrate import"}, "",
                     "give raw result files or --published FORMAT=FILE tables");
  std::vector<PublishedTable> tables;
  for (const std::string& spec : published_) tables.push_back(parse_published_table(spec));
  ImportOptions o{.raw_files = raw_files_,
                  .published = tables,
                  .out = out_,
                  .gpu = gpu_,
                  .base = base_,
                  .profiles_dir = std::string(ODYSSEY_DATA_DIR) + "/calibration/profiles",
                  .price_layer = [](const LayerTimeRow& row, const Profile& profile) {
                    return price_measured_layer(row, profile, ODYSSEY_DATA_DIR);
                  }};
  if (!scenario_.empty()) {
    const Scenario s = load_scenario(scenario_, load);
    o.machine_gpu = s.machine.gpu.type;
    o.machine_name = s.machine.name;
  }
  const ImportSummary summary = import_profile(o);
  const char* kind = tables.empty() ? "measured" : "published";
  std::cout << fmt::format("wrote {}: {} profile for {} (other values from {})\n", out_, kind, summary.gpu,
                           summary.base);
  for (const std::string& m : summary.measured) std::cout << fmt::format("  {:<10} {}\n", kind, m);
  std::string kept;
  for (const std::string& k : summary.kept) kept += (kept.empty() ? "" : ", ") + k;
  std::cout << "  base       " << kept << "\n";
  for (const std::string& s : summary.skipped) std::cout << "  not used   " << s << "\n";
  return 0;
}

} // namespace odyssey
