// The `odyssey` command line: results to stdout, diagnostics to stderr; exit 0 success, 2 bad
// input, 1 internal error. Only this file catches.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "calibration/cost_model.hpp"
#include "calibration/profile.hpp"
#include "models/input/diagnostics.hpp"
#include "models/input/files.hpp"
#include "models/input/units_parse.hpp"
#include "models/input/yaml_reader.hpp"
#include "models/workload.hpp"
#include "sim/collective.hpp"
#include "sim/engine.hpp"
#include "sim/isolation.hpp"
#include "sim/report.hpp"
#include "tools/calibrate_cli.hpp"
#include "tools/plan_command.hpp"
#include "tools/regress.hpp"
#include "tools/run.hpp"
#include "tools/scenario.hpp"

namespace {

constexpr const char* DEFAULT_SCENARIO = "scenarios/gpt3-175b-azure-2020.yaml";

int run(const std::string& path, const std::vector<std::string>& sets, odyssey::ReportFormat format,
        const std::string& trace, const std::vector<std::string>& simgrid_args, bool explain_ops) {
  const odyssey::Scenario scenario =
      odyssey::load_scenario(path, {.data_dir = ODYSSEY_DATA_DIR, .overrides = sets});
  const odyssey::CostModel cost = odyssey::scenario_cost_model(scenario);
  if (explain_ops) {
    std::cout << odyssey::explain_operations(scenario, cost);
    return 0;
  }
  const odyssey::Report report =
      odyssey::run_scenario(scenario, cost, {.record_trace = !trace.empty(), .simgrid_args = simgrid_args});
  if (!trace.empty()) odyssey::write_file_atomically(trace, odyssey::render_trace(report));
  std::cout << odyssey::render(report, format);
  return 0;
}

/// Message sizes from "A:B" (doubling from A to B, as nccl-tests -b A -e B -f 2) or "A".
std::vector<odyssey::Bytes> parse_sizes(const std::string& text) {
  const std::string where = "--sizes " + text;
  auto one = [&](const std::string& part) {
    try {
      return odyssey::Bytes(odyssey::parse_quantity(part, odyssey::Dimension::BYTES));
    } catch (const odyssey::UnitError& e) {
      throw odyssey::InputError({.file = where}, "", e.what());
    }
  };
  const auto colon = text.find(':');
  const odyssey::Bytes first = one(text.substr(0, colon));
  const odyssey::Bytes last = colon == std::string::npos ? first : one(text.substr(colon + 1));
  if (first.value() < 1 || last < first)
    throw odyssey::InputError({.file = where}, "", "sizes must be at least 1 B and in increasing order");
  std::vector<odyssey::Bytes> sizes;
  for (double b = first.value(); b <= last.value() * (1 + 1e-12); b *= 2) sizes.emplace_back(b);
  return sizes;
}

odyssey::CollectiveKind parse_op(const std::string& op) {
  if (const auto kind = odyssey::collective_named(op)) return *kind;
  const std::vector<std::string> names = odyssey::collective_name_list();
  const std::string near = odyssey::did_you_mean(op, names);
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
  throw odyssey::InputError({.file = "--op " + op}, "",
                            fmt::format("unknown collective '{}' ({}expected one of {})", op,
                                        near.empty() ? "" : "did you mean '" + near + "'? ", list));
}

/// --algo / --proto lists, as NCCL_ALGO / NCCL_PROTO take them.
template <class Parse> unsigned parse_nccl_list(const char* flag, const std::string& text, Parse parse) {
  try {
    return text.empty() ? ~0U : parse(text);
  } catch (const std::invalid_argument& e) {
    throw odyssey::InputError({.file = fmt::format("{} {}", flag, text)}, "", e.what());
  }
}

int collective(const std::string& machine_name, const std::string& op, int gpus, const std::string& sizes,
               const std::vector<std::string>& sets, const std::string& calibration, bool json,
               const std::string& algo, const std::string& proto) {
  const odyssey::MachineSpec machine =
      odyssey::load_machine(machine_name, {.data_dir = ODYSSEY_DATA_DIR, .overrides = sets});
  const odyssey::CollectiveKind kind = parse_op(op);
  const std::vector<odyssey::Bytes> list = parse_sizes(sizes);
  const std::string profile_path =
      calibration.empty() || calibration == "auto"
          ? odyssey::find_profile(std::string(ODYSSEY_DATA_DIR) + "/calibration/profiles", machine.gpu.type)
          : calibration;
  const odyssey::CostModel cost(
      odyssey::load_profile(profile_path),
      odyssey::nccl_config(machine, parse_nccl_list("--algo", algo, odyssey::parse_algorithms),
                           parse_nccl_list("--proto", proto, odyssey::parse_protocols)));
  const std::string where = fmt::format("--gpus {}", gpus);
  if (gpus < 2 || gpus > machine.total_gpus())
    throw odyssey::InputError({.file = where}, "",
                              fmt::format("a collective needs 2 to {} GPUs on machine '{}', got {}",
                                          machine.total_gpus(), machine.name, gpus));
  odyssey::CollectiveRun run;
  try {
    run = odyssey::simulate_collective(machine, cost, kind, gpus, list);
  } catch (const std::invalid_argument& e) {
    // The cost model names algorithms or protocols the group cannot run: the flags that asked for them.
    const bool restriction =
        std::string_view(e.what()).starts_with("no allowed") && !(algo.empty() && proto.empty());
    const std::string flags = (algo.empty() ? "" : "--algo " + algo) +
                              (algo.empty() || proto.empty() ? "" : " ") +
                              (proto.empty() ? "" : "--proto " + proto);
    throw odyssey::InputError({.file = restriction ? flags : where}, "", e.what());
  }
  std::cout << (json ? odyssey::render_collective_json(run) : odyssey::render_collective_text(run));
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  odyssey::stop_on_interrupt(); // SIGTERM / SIGINT: one line, exit 128 + signal, children with it
  CLI::App app{"Odyssey: discrete-event simulator and capacity planner for AI supercomputers", "odyssey"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "odyssey 0.1.0");

  std::string scenario;
  std::vector<std::string> sets;
  bool json = false;
  std::string trace;
  std::vector<std::string> logs;
  auto* run_cmd = app.add_subcommand("run", "simulate one training iteration and print the report");
  run_cmd->add_option("scenario", scenario, "scenario YAML (default: the GPT-3 175B Azure 2020 scenario)");
  run_cmd->add_flag("--json", json, "print the report as JSON (same as --format json)");
  std::string format = "text";
  run_cmd->add_option("--format", format, "report format: text | markdown | json (default text)")
      ->check(CLI::IsMember({"text", "markdown", "json"}));
  run_cmd->add_option("--trace", trace, "write one iteration as Chrome/Perfetto trace-event JSON");
  run_cmd->add_option("--set", sets, "override a scenario key: KEY=VALUE (repeatable)");
  bool explain_ops = false;
  run_cmd->add_flag("--explain", explain_ops,
                    "print the priced operations of one micro-batch instead of simulating");
  run_cmd->add_option("--log", logs, "SimGrid logging, e.g. odyssey.thres:debug (repeatable)");

  std::string validate_path;
  std::vector<std::string> validate_sets;
  bool schema = false;
  auto* validate_cmd = app.add_subcommand("validate", "check a scenario and print it resolved");
  validate_cmd->add_option("scenario", validate_path, "scenario YAML");
  validate_cmd->add_option("--set", validate_sets, "override a scenario key: KEY=VALUE (repeatable)");
  validate_cmd->add_flag("--schema", schema, "print every scenario key with its type, default and help");
  bool strict = false;
  validate_cmd->add_flag("--strict", strict,
                         "a layout that does not fit in GPU memory is an error (exit 2), not a warning");

  std::string coll_machine;
  std::string coll_op;
  int coll_gpus = 0;
  std::string coll_sizes = "8 B:4 GiB";
  std::string coll_calibration = "auto";
  std::vector<std::string> coll_sets;
  bool coll_json = false;
  auto* coll_cmd =
      app.add_subcommand("collective", "simulate one collective over N GPUs and print nccl-tests' table");
  coll_cmd->add_option("--machine", coll_machine, "machine preset or machine YAML file")->required();
  coll_cmd
      ->add_option("--op", coll_op,
                   "all-reduce | all-gather | reduce-scatter | broadcast | reduce | all-to-all | send-recv")
      ->required();
  coll_cmd->add_option("--gpus", coll_gpus, "GPUs taking part (the first N of the machine, in rank order)")
      ->required();
  coll_cmd->add_option("--sizes", coll_sizes, "message sizes A:B, doubling (default \"8 B:4 GiB\")");
  coll_cmd->add_option("--set", coll_sets, "override a machine key: machine.KEY=VALUE (repeatable)");
  coll_cmd->add_option("--calibration", coll_calibration, "calibration profile (default: auto)");
  coll_cmd->add_flag("--json", coll_json, "print the table as JSON");
  std::string coll_algo;
  std::string coll_proto;
  coll_cmd->add_option("--algo", coll_algo,
                       "algorithms allowed, as NCCL_ALGO (e.g. ring, tree, nvls, \"^tree\")");
  coll_cmd->add_option("--proto", coll_proto, "protocols allowed, as NCCL_PROTO (LL, LL128, Simple)");

  odyssey::CalibrateCommand calibrate_cmd(app); // CLI11 writes into it: keep it in place
  odyssey::PlannerCommands planner;
  odyssey::add_planner_commands(app, planner);
  odyssey::RegressOptions regress_options;
  auto* regress_cmd =
      app.add_subcommand("regress", "compare scenarios' predicted metrics with a committed baseline");
  regress_cmd->add_option("scenarios", regress_options.scenarios,
                          "scenario files (default: every *.yaml of --scenarios)");
  regress_cmd->add_option("--scenarios", regress_options.scenario_dir,
                          "scenario directory (default: scenarios)");
  regress_cmd->add_option("--baseline", regress_options.baseline,
                          "baseline file (default: tests/regress/baseline.yaml)");
  regress_cmd->add_flag("--update", regress_options.update, "rewrite the baseline with the current figures");
  regress_cmd->add_option("--jobs", regress_options.jobs, "simulations at once (default: one per CPU core)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "odyssey: error: " << e.what() << "\n";
    return 2;
  }

  try {
    if (run_cmd->parsed()) {
      std::vector<std::string> simgrid_args;
      for (const auto& l : logs) simgrid_args.push_back("--log=" + l);
      const odyssey::ReportFormat report_format = json || format == "json" ? odyssey::ReportFormat::JSON
                                                  : format == "markdown"   ? odyssey::ReportFormat::MARKDOWN
                                                                           : odyssey::ReportFormat::TEXT;
      return run(scenario.empty() ? std::string(ODYSSEY_DATA_DIR) + "/" + DEFAULT_SCENARIO : scenario, sets,
                 report_format, trace, simgrid_args, explain_ops);
    }
    if (regress_cmd->parsed()) {
      regress_options.odyssey = std::filesystem::read_symlink("/proc/self/exe").string();
      return odyssey::regress(regress_options);
    }
    if (calibrate_cmd.parsed()) return calibrate_cmd.run();
    if (const auto rc = odyssey::run_planner_commands(planner, ODYSSEY_DATA_DIR)) return *rc;
    if (coll_cmd->parsed())
      return collective(coll_machine, coll_op, coll_gpus, coll_sizes, coll_sets, coll_calibration, coll_json,
                        coll_algo, coll_proto);
    if (validate_cmd->parsed()) {
      if (schema) {
        std::cout << odyssey::render_schema();
        return 0;
      }
      if (validate_path.empty()) {
        std::cerr << "odyssey: error: validate needs a scenario file\n";
        return 2;
      }
      const odyssey::Scenario s =
          odyssey::load_scenario(validate_path, {.data_dir = ODYSSEY_DATA_DIR, .overrides = validate_sets});
      // What run checks before it simulates: the profile (it must describe the machine's GPU and
      // price every dtype the workload computes in), then the memory model run reports.
      odyssey::scenario_cost_model(s);
      odyssey::check_checkpoint_storage(s);
      const odyssey::Workload workload = odyssey::scenario_workload(s);
      const std::string memory = odyssey::memory_fit_problem(s, odyssey::scenario_memory_fit(s, workload));
      if (!memory.empty() && strict) throw odyssey::InputError({.file = validate_path}, "", memory);
      if (!memory.empty()) std::cerr << odyssey::warning_text({.file = validate_path}, "", memory) << "\n";
      if (s.parallelism.offload.any()) {
        const odyssey::HostResources host = odyssey::host_resources(s.machine, s.parallelism.gpus());
        const std::string h = odyssey::host_fit_problem(odyssey::host_fit(workload, host), host.gpus);
        if (!h.empty() && strict)
          throw odyssey::InputError(s.at("parallelism.offload.optimizer"), "parallelism.offload.optimizer",
                                    h);
        if (!h.empty())
          std::cerr << odyssey::warning_text(s.at("parallelism.offload.optimizer"),
                                             "parallelism.offload.optimizer", h)
                    << "\n";
      }
      std::cout << odyssey::render_scenario(s);
      return 0;
    }
  } catch (const odyssey::InputError& e) {
    std::cerr << e.what() << "\n";
    return 2;
  } catch (const std::invalid_argument& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const odyssey::RunFailed& e) {
    std::cerr << "odyssey: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "odyssey: internal error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
