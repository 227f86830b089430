// The `odyssey plan`, `odyssey sweep` and `odyssey plot` subcommands, registered on the front
// end's CLI11 app and run after parsing. They throw InputError for bad input; main catches.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "calibration/profile.hpp"
#include "tools/scenario.hpp"

namespace odyssey {

/// Options of the planner's subcommands, filled by CLI11.
struct PlannerCommands {
  CLI::App* plan = nullptr;
  CLI::App* sweep = nullptr;
  CLI::App* plot = nullptr;
  std::string scenario;
  std::vector<std::string> sets;
  std::string gpus;
  int top = 15;
  int fast = -1;
  int full = -1;
  int jobs = 0;
  double deadline = 0;
  bool deadline_p90 = false;        ///< --deadline-p90
  std::string memory_margin = "5%"; ///< plan --memory-margin: a percentage of GPU memory kept free
  bool json = false;
  bool csv = false;
  std::string plot_out;
  std::string sweep_file;
  std::string out;
  std::string shard;
  std::vector<std::string> merge; ///< sweep --merge: shard outputs to merge into --out
  bool mpi = false;
  bool no_progress = false;
  std::string plot_input;
};

/// Adds `plan`, `sweep` and `plot` to `app`; `commands` must outlive the parse.
void add_planner_commands(CLI::App& app, PlannerCommands& commands);

/// Runs whichever of them was parsed and returns its exit code; nothing when none was.
std::optional<int> run_planner_commands(const PlannerCommands& commands, const std::string& data_dir);

} // namespace odyssey
