#include "tools/plan_command.hpp"

#include <filesystem>
#include <fstream>
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "calibration/cost_model.hpp"
#include "models/input/diagnostics.hpp"
#include "models/input/files.hpp"
#include "models/wording.hpp"
#include "tools/planner.hpp"
#include "tools/plot.hpp"
#include "tools/run.hpp"
#include "tools/sweep.hpp"

namespace odyssey {

void add_planner_commands(CLI::App& app, PlannerCommands& c) {
  c.plan = app.add_subcommand("plan",
                              "search every parallel strategy: analytical screen, fast and full simulation");
  c.plan->add_option("scenario", c.scenario, "scenario YAML (its model, machine and training)")->required();
  c.plan->add_option("--gpus", c.gpus, "GPU count N or range A:B (default: the scenario's)");
  c.plan->add_option("--top", c.top, "rows printed (default 15)");
  c.plan->add_option("--fast", c.fast,
                     "candidates simulated at fast fidelity (default 200, or 3 per GPU count of a range)");
  c.plan->add_option("--full", c.full, "candidates simulated at full fidelity (default 3, or 1 for a range)");
  c.plan->add_option("--jobs", c.jobs, "simulations at once (default: every core)");
  c.plan->add_option("--deadline", c.deadline, "days: the fewest GPUs that train training.tokens in time");
  c.plan->add_flag(
      "--deadline-p90", c.deadline_p90,
      "with --deadline: the time to train with failures at P90 must meet it (machine.reliability, "
      "checkpoint, recovery)");
  c.plan->add_option("--memory-margin", c.memory_margin,
                     "share of GPU memory a plan leaves free, in percent (default 5%)");
  c.plan->add_flag("--json", c.json, "print the plan as JSON");
  c.plan->add_flag("--csv", c.csv, "print the plan as CSV");
  c.plan->add_option("--plot", c.plot_out, "also draw the plan as SVG into this file");
  c.plan->add_option("--set", c.sets, "override a scenario key: KEY=VALUE (repeatable)");

  c.sweep =
      app.add_subcommand("sweep", "simulate every point of a grid over scenario keys, one row per point");
  c.sweep->add_option("sweep", c.sweep_file, "sweep YAML")->required();
  c.sweep->add_option(
      "--out", c.out,
      "results: FILE.csv or FILE.jsonl (default: the sweep's 'out', else SWEEP-NAME.csv here)");
  c.sweep->add_option("--jobs", c.jobs, "points at once (default: every core)");
  c.sweep->add_option("--shard", c.shard, "I/N: run the points of shard I of N (Slurm job arrays), 0-based");
  c.sweep->add_flag("--mpi", c.mpi, "under mpirun: ranks take shards, rank 0 writes the rows");
  c.sweep
      ->add_option("--merge", c.merge,
                   "merge these shard outputs into --out (rows in point order) instead of running")
      ->expected(1, -1);
  c.sweep->add_flag("--no-progress", c.no_progress, "no progress bar");
  c.sweep->add_option("--plot", c.plot_out, "also draw the results as SVG into this file");

  c.plot = app.add_subcommand("plot", "draw sweep results or a plan (--json) as SVG");
  c.plot->add_option("input", c.plot_input, "sweep output (.csv, .jsonl) or plan JSON")->required();
  c.plot->add_option("--out", c.plot_out, "SVG file (default: stdout)");
}

namespace {

/// "N" or "A:B" as a GPU range, within 1..machine.
std::pair<long, long> parse_gpus(const std::string& text, long machine_gpus, const std::string& machine) {
  const std::string where = "--gpus " + text;
  auto one = [&](const std::string& part) {
    try {
      std::size_t used = 0;
      const long v = std::stol(part, &used);
      if (used != part.size()) throw std::invalid_argument(part);
      return v;
    } catch (const std::exception&) {
      throw InputError({.file = where}, "",
                       fmt::format("expected a GPU count N or a range A:B, got '{}'", text));
    }
  };
  const auto colon = text.find(':');
  const long lo = one(text.substr(0, colon));
  const long hi = colon == std::string::npos ? lo : one(text.substr(colon + 1));
  if (lo < 1 || hi < lo)
    throw InputError({.file = where}, "", fmt::format("empty GPU range {}:{} (need 1 <= A <= B)", lo, hi));
  if (hi > machine_gpus)
    throw InputError({.file = where}, "",
                     fmt::format("GPU range reaches {} but machine '{}' has {}", hi, machine,
                                 counted(machine_gpus, "GPU")));
  return {lo, hi};
}

int plan_command(const PlannerCommands& c, const std::string& data_dir) {
  const Scenario sc = load_scenario(c.scenario, {.data_dir = data_dir, .overrides = c.sets});
  const CostModel cost = scenario_cost_model(sc);
  PlanOptions options{.top = c.top, .fast = c.fast, .full = c.full, .jobs = c.jobs};
  if (!c.gpus.empty())
    std::tie(options.min_gpus, options.max_gpus) =
        parse_gpus(c.gpus, sc.machine.total_gpus(), sc.machine.name);
  if (c.deadline > 0) {
    if (!sc.training.tokens)
      throw InputError({.file = c.scenario}, "training.tokens",
                       "--deadline needs the scenario's training.tokens");
    options.deadline_days = c.deadline;
    options.deadline_p90 = c.deadline_p90;
  } else if (c.deadline_p90) {
    throw InputError({.file = c.scenario}, "--deadline-p90", "needs --deadline DAYS");
  }
  {
    const std::string where = "--memory-margin " + c.memory_margin;
    std::string text = c.memory_margin;
    if (!text.empty() && text.back() == '%') text.pop_back();
    double percent = -1;
    try {
      std::size_t used = 0;
      percent = std::stod(text, &used);
      if (used != text.size()) percent = -1;
    } catch (const std::exception&) {
      percent = -1;
    }
    if (!(percent >= 0 && percent < 100))
      throw InputError(
          {.file = where}, "",
          fmt::format("expected a percentage of GPU memory from 0 to below 100, got '{}'", c.memory_margin));
    options.memory_margin = percent / 100;
  }
  if (c.json && c.csv) throw InputError({.file = "--csv"}, "", "choose one of --json and --csv");
  const PlanResult result = plan(sc, cost, options);
  const std::string json = render_plan_json(result, c.top);
  std::cout << (c.json ? json : c.csv ? render_plan_csv(result) : render_plan_text(result, c.top));
  if (!c.plot_out.empty()) write_file_atomically(c.plot_out, plot_plan(nlohmann::json::parse(json)));
  return 0;
}

/// `sweep --merge`: the shards' outputs into one file; exit 1 while points are missing, so that a
/// job that depends on the array can tell a finished sweep from a partial one.
int merge_command(const PlannerCommands& c, const SweepSpec& spec) {
  if (!c.shard.empty() || c.mpi)
    throw InputError({.file = "--merge"}, "", "--merge runs nothing: give it without --shard and --mpi");
  const std::string out = c.out.empty() ? spec.out : c.out;
  const SweepMerge m = merge_sweep(spec, c.merge, out);
  std::cerr << fmt::format("sweep: {} of {} merged into {}", m.rows,
                           counted(long(spec.points.size()), "point"), out);
  if (m.duplicates > 0)
    std::cerr << fmt::format(", {} dropped", counted(long(m.duplicates), "duplicate row"));
  if (m.damaged > 0) std::cerr << fmt::format(", {} left out", counted(long(m.damaged), "damaged line"));
  std::cerr << "\n";
  if (!c.plot_out.empty()) write_file_atomically(c.plot_out, plot_file(out));
  if (m.missing.empty()) return 0;
  std::string list;
  for (std::size_t i = 0; i < m.missing.size() && i < 20; ++i)
    list += (i > 0 ? ", " : "") + std::to_string(m.missing[i]);
  if (m.missing.size() > 20) list += fmt::format(" and {} more", m.missing.size() - 20);
  std::cerr << fmt::format("sweep: {} missing ({}); `odyssey sweep {} --out {}` runs {}\n",
                           counted(long(m.missing.size()), "point"), list, spec.file, out,
                           m.missing.size() == 1 ? "just that one" : "just those");
  return 1;
}

int sweep_command(const PlannerCommands& c, const std::string& data_dir) {
  const SweepSpec spec = load_sweep(c.sweep_file, data_dir);
  if (!c.merge.empty()) return merge_command(c, spec);
  SweepOptions options{.out = c.out, .jobs = c.jobs, .mpi = c.mpi, .progress = !c.no_progress};
  if (!c.shard.empty()) {
    const std::string where = "--shard " + c.shard;
    int i = -1, n = 0;
    char tail = 0;
    if (std::sscanf(c.shard.c_str(), "%d/%d%c", &i, &n, &tail) != 2 || n < 1 || i < 0 || i >= n)
      throw InputError({.file = where}, "", "expected I/N with 0 <= I < N, e.g. --shard 3/16");
    if (c.mpi) throw InputError({.file = where}, "", "--shard and --mpi both choose the shard; give one");
    options.shard = i;
    options.shards = n;
  }
  if (c.out.empty() && !spec.out_named && !c.mpi) // under MPI: rank 0 says where, at the end
    std::cerr << fmt::format("sweep: no --out and no 'out' in {}: the rows go to {}\n", spec.file, spec.out);
  const SweepRun ran = run_sweep(spec, options, data_dir);
  if (!ran.writer) return 0;
  const std::string out = options.out.empty() ? spec.out : options.out;
  std::cerr << fmt::format("sweep: {}, {} run by this process, results in {}\n",
                           counted(long(spec.points.size()), "point"), ran.points, out);
  if (!c.plot_out.empty()) write_file_atomically(c.plot_out, plot_file(out));
  return 0;
}

} // namespace

std::optional<int> run_planner_commands(const PlannerCommands& c, const std::string& data_dir) {
  if (c.plan != nullptr && c.plan->parsed()) return plan_command(c, data_dir);
  if (c.sweep != nullptr && c.sweep->parsed()) return sweep_command(c, data_dir);
  if (c.plot != nullptr && c.plot->parsed()) {
    const std::string svg = plot_file(c.plot_input);
    if (c.plot_out.empty())
      std::cout << svg;
    else
      write_file_atomically(c.plot_out, svg);
    return 0;
  }
  return std::nullopt;
}

} // namespace odyssey
