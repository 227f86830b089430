// The one path from a scenario to its report: scenario -> profile (checked against the machine's
// GPU) -> cost model with the machine's NCCL configuration -> workload -> simulation -> report.
// `odyssey run`, `sweep`, `plan`, `regress` (through `run`) and the validation test all go through
// it, so a layout is priced the same whichever command asks.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "calibration/cost_model.hpp"
#include "calibration/import.hpp"
#include "calibration/profile.hpp"
#include "models/workload.hpp"
#include "sim/engine.hpp"
#include "sim/report.hpp"
#include "sim/storage.hpp"
#include "tools/scenario.hpp"

namespace odyssey {

/// The scenario's calibration profile; throws InputError when it describes another GPU than the
/// machine's.
Profile scenario_profile(const Scenario& scenario);

/// The cost model the scenario runs under: its profile, and NCCL as the machine offers it
/// (NVLS, in-network reduction, PCIe-only servers, NICs) restricted by `nccl.algo` / `nccl.proto`.
/// Throws InputError at `training.precision` when the GPU has no peak for a dtype the workload
/// computes in: what the profile decides is checked here, before anything simulates (`validate`
/// and every command that simulates build the cost model through this function).
CostModel scenario_cost_model(const Scenario& scenario);

/// The per-rank program of the scenario's model, training and parallelism.
Workload scenario_workload(const Scenario& scenario);

/// The scenario's layout against its GPU's memory, by the memory model the report uses.
MemoryFit scenario_memory_fit(const Scenario& scenario, const Workload& workload);

/// One line saying by how much the layout does not fit (empty when it fits): what `validate`
/// warns, and with `--strict` fails, on.
std::string memory_fit_problem(const Scenario& scenario, const MemoryFit& fit);

/// What a caller may add to a run; everything else comes from the scenario.
struct RunOptions {
  bool record_trace = false;             ///< keep timeline events for `--trace`
  std::vector<std::string> simgrid_args; ///< extra SimGrid flags (`--log=...`)
};

/// The simulation options of the scenario (fidelity, seed, placement) with the caller's additions.
SimulationOptions simulation_options(const Scenario& scenario, const RunOptions& options = {});

/// Throws InputError at `machine.storage.capacity` when the scenario's checkpoint does not fit the
/// machine's storage: what `validate` checks without simulating.
void check_checkpoint_storage(const Scenario& scenario);

/// The checkpoint of the scenario's model (weights and optimizer states) for a job of `gpus`
/// GPUs on the machine's storage (plan_checkpoint, simulated). Throws InputError at
/// `machine.storage.capacity` when it does not fit the storage.
/// `fabric_nic_busy`: training's use of the busiest fabric NIC (SimulationResult's), which an async
/// drain over the fabric NICs leaves to training; zero where no iteration was simulated.
CheckpointPlan scenario_checkpoint_plan(const Scenario& scenario, long gpus, double fabric_nic_busy = 0.0);

/// The scenario's input pipeline (`data:`) for its job laid out as `parallelism` (the scenario's
/// own, or a planner's candidate), against a training iteration of `iteration` without a data
/// stall: what run_scenario adds to the report and the planner's screen to its estimate.
DataLoading scenario_data_loading(const Scenario& scenario, const ParallelismSpec& parallelism,
                                  Seconds iteration);

/// The recovery policy of the scenario for a job of `gpus` GPUs: its checkpoint (written and
/// restored as scenario_checkpoint_plan says), its recovery times and spares (auto: the servers the
/// job leaves idle).
RecoveryPolicy scenario_recovery_policy(const Scenario& scenario, long gpus);

/// The whole run with failures for a job of `gpus` GPUs that trains in `failure_free` when nothing
/// fails: the scenario's trials from its seed. Nothing when the machine has no failure rates.
std::optional<FailureStudy> scenario_failures(const Scenario& scenario, long gpus, Seconds failure_free);

/// The time to train with failures at P90 of a job of `gpus` GPUs that trains in `failure_free`
/// when nothing fails (the scenario's trials at its own checkpoint interval, no interval search):
/// what `odyssey plan --deadline-p90` holds to the deadline. `failure_free` when the machine has no
/// failure rates.
Seconds scenario_time_to_train_p90(const Scenario& scenario, long gpus, Seconds failure_free);

/// The best MFU published for the scenario's GPU in its precision (its `published_mfu` table);
/// nothing when the table has no such row or the scenario names no table.
std::optional<PublishedMfuRow> scenario_published_mfu(const Scenario& scenario);

/// A simulation that stopped without a result (SimGrid aborted it, or its process died): the
/// message names the scenario, says what stopped it and what to try. Not bad input (exit 1).
class RunFailed : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Simulates one iteration of `scenario` under `cost` (scenario_cost_model's) and reports it.
/// Throws RunFailed when the simulation stops without a result.
Report run_scenario(const Scenario& scenario, const CostModel& cost, const RunOptions& options = {});

/// The same, building the cost model from the scenario.
Report run_scenario(const Scenario& scenario, const RunOptions& options = {});

/// `odyssey run --explain`: the priced operations of one micro-batch on the first model chunk that
/// holds transformer layers (stage 0, chunk 0 unless that one holds only the embedding, as Llama
/// 3's uneven stages do). Compute ops of one name (one per layer) are summed into one row: what
/// they cost, at what rate, from which kind of data. Collectives equal in name, kind, bytes and
/// group are merged the same way, with their uncontended time (AnalyticalScreen::collective_time).
std::string explain_operations(const Scenario& scenario, const CostModel& cost);

/// A layer-time row's layer (calibration/published/*-layer-times.csv), priced with `profile` as
/// `odyssey run` and the planner price it: the row's scenario with its sequence parallelism and
/// recomputation, one layer of the planner's screen (presets from `data_dir`). The pricer `odyssey
/// calibrate import --published layer-times=...` fits kernel.time_scale with.
LayerPrice price_measured_layer(const LayerTimeRow& row, const Profile& profile, const std::string& data_dir);

} // namespace odyssey
