#include "tools/run.hpp"

#include <algorithm>
#include <filesystem>
#include <optional>

#include <fmt/format.h>

#include "calibration/host_profile.hpp"
#include "models/input/diagnostics.hpp"
#include "models/offload.hpp"
#include "models/strategy.hpp"
#include "models/wording.hpp"
#include "sim/analytical.hpp"
#include "sim/collective.hpp"
#include "sim/isolation.hpp"

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

/// The model's weights and optimizer states: what a checkpoint saves.
Bytes scenario_checkpoint_size(const Scenario& scenario) {
  const Precision precision = scenario.training.precision;
  return checkpoint_size(scenario_workload(scenario).parameters(), weight_element_bytes(precision),
                         optimizer_state_bytes(precision));
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
  CostModel cost(std::move(profile),
                 nccl_config(scenario.machine, scenario.nccl.algorithms, scenario.nccl.protocols));
  if (!scenario.host_calibration.empty()) cost.set_cpu_adam(load_cpu_adam_profile(scenario.host_calibration));
  return cost;
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

void check_checkpoint_storage(const Scenario& scenario) {
  try {
    check_checkpoint_fits(scenario.machine.storage, scenario_checkpoint_size(scenario));
  } catch (const InputError& e) {
    const std::string key = "machine." + e.key_path();
    throw InputError(scenario.at(key), key, e.message());
  }
  try {
    check_checkpoint_first_level(scenario.machine, scenario.checkpoint, scenario_checkpoint_size(scenario),
                                 scenario.parallelism.gpus());
  } catch (const InputError& e) {
    throw InputError(scenario.at(e.key_path()), e.key_path(), e.message());
  }
}

CheckpointPlan scenario_checkpoint_plan(const Scenario& scenario, long gpus, double fabric_nic_busy) {
  check_checkpoint_storage(scenario);
  return plan_checkpoint(
      scenario.machine, scenario_checkpoint_size(scenario), gpus,
      CheckpointWriting{.policy = scenario.checkpoint,
                        .fabric_nic_busy = fabric_nic_busy,
                        .in_host_memory = checkpoint_bytes_in_host_memory(scenario_workload(scenario))});
}

DataLoading scenario_data_loading(const Scenario& scenario, const ParallelismSpec& parallelism,
                                  Seconds iteration) {
  return plan_data_loading(scenario.machine, scenario.data,
                           DataJob{.gpus = parallelism.gpus(),
                                   .pp = parallelism.pp,
                                   .seq_len = scenario.model.seq_len,
                                   .global_batch = scenario.training.global_batch,
                                   .vocab = scenario.model.vocab},
                           iteration);
}

namespace {

RecoveryPolicy recovery_policy(const Scenario& scenario, long gpus, const CheckpointPlan& plan) {
  const MachineSpec& m = scenario.machine;
  const long idle = m.servers - job_components(m, gpus).servers;
  return RecoveryPolicy{.checkpoint_interval = scenario.checkpoint.interval,
                        .mode = scenario.checkpoint.mode,
                        .checkpoint_write = plan.write(),
                        .checkpoint_load = plan.restore(),
                        .checkpoint_copy = plan.stall(CheckpointMode::ASYNC),
                        .detection = scenario.recovery.detection,
                        .restart = scenario.recovery.restart,
                        .spares = scenario.recovery.spares < 0 ? idle : scenario.recovery.spares};
}

std::optional<FailureStudy> failures_with(const Scenario& scenario, long gpus, Seconds failure_free,
                                          const CheckpointPlan& plan) {
  const MachineSpec& m = scenario.machine;
  if (!m.reliability.any()) return std::nullopt;
  return study_failures(m.reliability, job_components(m, gpus), recovery_policy(scenario, gpus, plan),
                        plan.total, failure_free, scenario.simulation.seed, scenario.simulation.trials);
}

} // namespace

RecoveryPolicy scenario_recovery_policy(const Scenario& scenario, long gpus) {
  return recovery_policy(scenario, gpus, scenario_checkpoint_plan(scenario, gpus));
}

std::optional<FailureStudy> scenario_failures(const Scenario& scenario, long gpus, Seconds failure_free) {
  if (!scenario.machine.reliability.any()) return std::nullopt;
  return failures_with(scenario, gpus, failure_free, scenario_checkpoint_plan(scenario, gpus));
}

Seconds scenario_time_to_train_p90(const Scenario& scenario, long gpus, Seconds failure_free) {
  const MachineSpec& m = scenario.machine;
  if (!m.reliability.any()) return failure_free;
  return simulate_run(failure_model(m.reliability, job_components(m, gpus)),
                      scenario_recovery_policy(scenario, gpus), RunLength{.work = failure_free},
                      scenario.simulation.seed, scenario.simulation.trials)
      .wall_p90;
}

std::optional<PublishedMfuRow> scenario_published_mfu(const Scenario& scenario) {
  if (scenario.published_mfu.empty()) return std::nullopt;
  return best_published_mfu(read_published_mfu_table(scenario.published_mfu), scenario.machine.gpu.type,
                            to_string(scenario.training.precision));
}

Report run_scenario(const Scenario& scenario, const CostModel& cost, const RunOptions& options) {
  const Workload workload = scenario_workload(scenario);
  // Read before simulating: a table with bad input stops the run before it spends its time.
  const std::optional<PublishedMfuRow> published_mfu = scenario_published_mfu(scenario);
  SimulationResult result;
  try {
    result = simulate(scenario.machine, workload, cost, simulation_options(scenario, options));
  } catch (const sim::ProcessDied& e) {
    const bool fast = scenario.simulation.fidelity == Fidelity::FAST;
    throw RunFailed(fmt::format(
        "{}: the simulation stopped: {}; {}please report it with the scenario", scenario.name, e.what(),
        fast ? "" : "simulation.fidelity: fast (one replica per pipeline stage) may get past it; "));
  }
  Report report =
      make_report(scenario.name, scenario.machine, workload, cost, result, scenario.simulation.fidelity);
  report.published_mfu = published_mfu;
  add_data_loading(report, scenario_data_loading(scenario, scenario.parallelism, report.iteration_time));
  const CheckpointPlan plan =
      scenario_checkpoint_plan(scenario, report.gpus, report.simulation.busiest_nic_utilisation);
  if (plan.modelled) add_checkpoint(report, plan, scenario.checkpoint);
  if (report.time_to_train)
    if (auto study = failures_with(scenario, report.gpus, *report.time_to_train, plan))
      add_failures(report, std::move(*study));
  return report;
}

Report run_scenario(const Scenario& scenario, const RunOptions& options) {
  return run_scenario(scenario, scenario_cost_model(scenario), options);
}

LayerPrice price_measured_layer(const LayerTimeRow& row, const Profile& profile,
                                const std::string& data_dir) {
  const LoadOptions load{
      .data_dir = data_dir,
      .overrides = {fmt::format("parallelism.sequence_parallel={}", row.sequence_parallel ? "true" : "false"),
                    "parallelism.recompute=" + row.recompute}};
  if (!std::filesystem::is_regular_file(row.scenario))
    throw InputError(row.scenario_where, "scenario", "no such scenario file: " + row.scenario);
  const Scenario s = load_scenario(row.scenario, load);
  if (s.machine.gpu.type != row.gpu)
    throw InputError(row.scenario_where, "scenario",
                     fmt::format("its machine '{}' has {}, the row measured {}", s.machine.name,
                                 s.machine.gpu.type, row.gpu));
  check_precision(s, profile);
  const CostModel cost(profile, nccl_config(s.machine, s.nccl.algorithms, s.nccl.protocols));
  AnalyticalScreen screen(s.machine, s.model, s.training, cost);
  const AnalyticalScreen::Part& layer =
      screen.layer(Strategy{.parallelism = s.parallelism, .micro_batch = s.training.micro_batch});
  return {.forward_compute = layer.forward.compute,
          .forward_other = layer.forward.elapsed() - layer.forward.compute,
          .backward_compute = layer.backward.compute,
          .backward_other = layer.backward.elapsed() - layer.backward.compute};
}

std::string explain_operations(const Scenario& scenario, const CostModel& cost) {
  const Workload w = scenario_workload(scenario);
  int stage = 0;
  int chunk = 0;
  for (int v = 0; v < w.chunks_per_stage() * w.stages() && w.chunk(stage, chunk).layers == 0; ++v) {
    stage = (v + 1) % w.stages(); // the next virtual stage: chunk-major, as Megatron orders them
    chunk = (v + 1) / w.stages();
  }
  if (w.chunk(stage, chunk).layers == 0) stage = chunk = 0;
  const ChunkWork& c = w.chunk(stage, chunk);
  const AnalyticalScreen screen(scenario.machine, scenario.model, scenario.training, cost);
  std::string out = fmt::format("operations of one micro-batch on one GPU of stage {}{} ({}{}{})\n", stage,
                                w.chunks_per_stage() > 1 ? fmt::format(", model chunk {}", chunk) : "",
                                counted(c.layers, "layer"), c.has_embedding ? ", embedding" : "",
                                c.has_lm_head ? ", LM head" : "");
  out += "collectives: uncontended time in their group, as the planner's screen prices them; the "
         "simulation adds contention, and overlapped ones hide under the compute\n";
  if (const std::string sustained = sustained_text(cost.profile()); !sustained.empty())
    out += "compute: " + sustained + ", included below\n";
  if (cost.profile().kernel_time_scale != 1.0)
    out += fmt::format("compute: every time below is the model's x{} (kernel.time_scale of {}: {})\n",
                       cost.profile().kernel_time_scale, cost.profile().name,
                       kernel_time_scale_origin(cost.profile()));
  struct ComputeRow {
    const ComputeOp* op = nullptr;
    int calls = 0;
    Seconds time;
    double flops = 0;
    double bytes = 0;
  };
  struct CommRow {
    const CollectiveOp* op = nullptr;
    int calls = 0;
    Seconds time;
  };
  // How a collective meets the compute, as the engine runs it.
  auto overlap_text = [&](const CollectiveOp& op) -> std::string {
    if (!overlaps_compute(op, scenario.parallelism)) return "blocking";
    return op.beside.empty() ? "overlapped" : "beside " + op.beside;
  };
  auto block = [&](const char* title, const WorkBlock& b) {
    std::vector<ComputeRow> rows;
    Seconds total;
    for (const ComputeOp& op : b.compute) {
      auto it =
          std::find_if(rows.begin(), rows.end(), [&](const ComputeRow& r) { return r.op->name == op.name; });
      if (it == rows.end()) it = rows.insert(rows.end(), ComputeRow{.op = &op});
      const Seconds t = cost.compute_time(op);
      ++it->calls;
      it->time += t;
      it->flops += op.flops.value();
      it->bytes += op.bytes.value();
      total += t;
    }
    std::vector<CommRow> comm;
    for (const CollectiveOp& op : b.comm) {
      auto it = std::find_if(comm.begin(), comm.end(), [&](const CommRow& r) {
        return r.op->name == op.name && r.op->kind == op.kind && r.op->group == op.group &&
               r.op->bytes == op.bytes && r.op->overlap_with_compute == op.overlap_with_compute;
      });
      if (it == comm.end()) it = comm.insert(comm.end(), CommRow{.op = &op});
      it->calls += op.count;
      it->time += screen.collective_time(op, scenario.parallelism);
    }
    out += fmt::format("\n  {}\n  {:<28} {:<12} {:>24} {:>5} {:>11} {:>6} {:>8} {:>7}  {}\n", title, "op",
                       "kind", "shape", "calls", "time", "share", "TFLOP/s", "GB/s", "price");
    for (const ComputeRow& r : rows) {
      std::string shape;
      if (r.op->kind == OpKind::GEMM)
        shape = fmt::format("{}x{}x{}{}", r.op->gemm.m, r.op->gemm.n, r.op->gemm.k,
                            r.op->gemm.batch > 1 ? fmt::format(" *{}", r.op->gemm.batch) : "");
      out += fmt::format("  {:<28} {:<12} {:>24} {:>5} {:>8.3f} ms {:>5.1f}% {:>8.1f} {:>7.0f}  {}\n",
                         r.op->name, to_string(r.op->kind), shape, r.calls, r.time.value() * 1e3,
                         100 * r.time.value() / total.value(), r.flops / r.time.value() / 1e12,
                         r.bytes / r.time.value() / 1e9, to_string(cost.price_source(*r.op)));
    }
    out += fmt::format("  {:<28} {:<12} {:>24} {:>5} {:>8.3f} ms\n", "total compute", "", "", "",
                       total.value() * 1e3);
    Seconds comm_total;
    for (const CommRow& r : comm) {
      out += fmt::format("  {:<28} {:<12} {:>24} {:>5} {:>8.3f} ms {:>6} {:>8} {:>7}  {}\n", r.op->name,
                         to_string(r.op->kind),
                         fmt::format("{:.1f} MB {}", r.op->bytes.value() / 1e6, to_string(r.op->group)),
                         r.calls, r.time.value() * 1e3, "", "", "", overlap_text(*r.op));
      comm_total += r.time;
    }
    if (!comm.empty())
      out += fmt::format("  {:<28} {:<12} {:>24} {:>5} {:>8.3f} ms\n", "total collectives", "", "", "",
                         comm_total.value() * 1e3);
  };
  block("forward", c.forward);
  block("backward (recomputation included)", c.backward);
  return out;
}

} // namespace odyssey
