// The report of one simulated iteration: figures derived from the engine's records, rendered for
// a terminal, as JSON (the contract in README's Architecture section) and as a Chrome/Perfetto trace.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "calibration/cost_model.hpp"
#include "calibration/published.hpp"
#include "models/reliability.hpp"
#include "models/workload.hpp"
#include "sim/engine.hpp"
#include "sim/storage.hpp"
#include "topologies/machine.hpp"

namespace odyssey {

/// Something worth trying, derived from the simulated breakdown and memory.
struct Suggestion {
  double weight =
      0.0; ///< share of the iteration it addresses (ordering); above 1 for a layout that does not fit
  std::string text; ///< "pipeline bubble is 41.6% of the iteration: ...", with the number that triggered it
};

struct Report {
  std::string scenario;
  std::string machine;
  std::string model;
  std::string strategy; ///< "tp 8 x pp 24 x dp 48, interleaved-1f1b v2, recompute full"
  long gpus = 0;
  int cp = 1;
  int ep = 1;
  Seconds iteration_time;
  double tokens_per_s = 0.0;
  double model_tflops_per_gpu = 0.0;
  double hardware_tflops_per_gpu = 0.0;
  double mfu = 0.0; ///< model FLOP/s per GPU over the GPU's dense peak for the precision
  double peak_tflops = 0.0;
  std::vector<MemoryBreakdown> memory_per_stage;
  Bytes memory_per_gpu; ///< peak over stages
  int memory_peak_stage = 0;
  Bytes gpu_memory;
  bool fits_memory = false;
  /// ZeRO-Offload: host memory and NVMe per server against their capacity, and the host side of
  /// the critical stage's optimizer step (models/offload.hpp); empty without offload.
  std::optional<HostFit> host_fit;
  OffloadStep offload_step;
  int host_cores = 0;
  double host_adam_rate = 0; ///< CPU-Adam parameters per second of one server
  CpuAdamRate cpu_adam;      ///< the host profile's rate it scales from
  BytesPerSecond host_dram;  ///< the server's DRAM bandwidth
  Breakdown breakdown;
  std::optional<Seconds> time_to_train;
  std::optional<double> tokens;
  /// The whole run with failures, checkpoints and restarts (when the scenario has a token budget
  /// and the machine failure rates).
  std::optional<FailureStudy> failures;
  /// The checkpoint on the machine's storage (when the machine has storage), and the scenario's
  /// interval and mode for it.
  std::optional<CheckpointPlan> checkpoint;
  CheckpointSpec checkpoint_policy;
  /// The input pipeline against the iteration; its stall is in the breakdown and the iteration.
  std::optional<DataLoading> data_loading;
  ParallelismSpec parallelism;
  int microbatches = 1; ///< per data-parallel replica per iteration
  int micro_batch = 1;  ///< sequences per micro-batch
  int gpus_per_server = 8;
  std::vector<Suggestion> suggestions; ///< the best first, at most three
  Fidelity fidelity = Fidelity::FULL;
  Profile profile; ///< the profile used (its provenance is printed)
  /// GEMMs ("qkv 4096x12288x4096 bf16") outside the profile's measured shapes, priced by
  /// conservative extrapolation; empty for profiles without measured points.
  std::vector<std::string> extrapolated_gemms;
  /// Share of one micro-batch's compute time (every chunk's forward and backward, summed) priced
  /// from each kind of data: "measured", "published", "datasheet".
  std::map<std::string, double> price_sources;
  /// The best MFU published for the GPU in the run's precision (calibration/published/best-mfu.csv),
  /// when the table has one.
  std::optional<PublishedMfuRow> published_mfu;
  SimulationResult simulation;
};

/// A prediction's MFU against the best published for its GPU: by how much it is above, and the
/// two factors of its MFU, the share of the iteration its critical GPU computes and the rate its
/// compute runs the model's FLOPs at (a fraction of peak), so that a reader can tell a layout with
/// less bubble and exposed communication from kernels priced faster than those runs ran them.
struct MfuAgainstPublished {
  double ratio = 0.0;         ///< predicted MFU over the published one
  double compute_share = 0.0; ///< compute time over the iteration
  double compute_mfu = 0.0;   ///< MFU over compute_share
  [[nodiscard]] bool above() const { return ratio > 1.0; }
};
MfuAgainstPublished mfu_against_published(const PublishedMfuRow& row, double mfu, const Breakdown& breakdown,
                                          Seconds iteration);

/// The published row and the comparison as the JSON of `odyssey run` and `odyssey plan` carry them.
nlohmann::json published_mfu_json(const PublishedMfuRow& row, const MfuAgainstPublished& against);

/// "43.0% (bf16; Llama 3 405B, ... on 8192 GPUs; SOURCE)": the published row as reports cite it.
std::string describe_published_mfu(const PublishedMfuRow& row);

/// One part of the breakdown: its JSON key (inside "breakdown"), its label in the text report and
/// the member it reads. The list is in report order; sweeps, plans and the report read it.
struct BreakdownPart {
  std::string_view key;
  std::string_view label;
  Seconds Breakdown::*member;
};
const std::vector<BreakdownPart>& breakdown_parts();

/// Which way a figure improves.
enum class Better { HIGHER, LOWER };

/// A scalar figure of the report under its `odyssey run --json` key. The one list of report
/// metrics: the JSON report, sweep rows, plan rows, regress baselines and the validation read it.
struct ReportMetric {
  std::string_view key;
  Better better = Better::HIGHER;
  bool in_rows = true; ///< a column of sweep results
  /// A top-level key of `odyssey run --json`; else a dotted path into a block the JSON report
  /// writes whole (`checkpoint.write_s`), read here from the same result.
  bool top_level = true;
  double (*read)(const Report&) = nullptr;
};
const std::vector<ReportMetric>& report_metrics();
/// The metric of `key`; throws std::out_of_range for a key that is not a report metric.
const ReportMetric& report_metric(std::string_view key);

Report make_report(const std::string& scenario_name, const MachineSpec& machine, const Workload& workload,
                   const CostModel& cost, const SimulationResult& result, Fidelity fidelity);

/// Adds the input pipeline to `report`: a loader slower than the iteration stalls it, which the
/// iteration time, the breakdown's data stall and every figure derived from the time then include.
void add_data_loading(Report& report, const DataLoading& loading);

/// Adds the checkpoint plan to `report`.
void add_checkpoint(Report& report, const CheckpointPlan& plan, const CheckpointSpec& policy);

/// Adds the run with failures to `report` (and what it suggests).
void add_failures(Report& report, FailureStudy study);

/// The three most promising changes, best first (fewer when little stands out).
std::vector<Suggestion> suggest(const Report& report);

enum class ReportFormat { TEXT, MARKDOWN, JSON };

std::string render_text(const Report& report);
std::string render_markdown(const Report& report);
std::string render_json(const Report& report);
std::string render(const Report& report, ReportFormat format);
/// One iteration as Chrome trace-event JSON (opens in ui.perfetto.dev): one process per pipeline
/// stage of replica 0, one thread per stream; other replicas are summarised by their stage tracks.
std::string render_trace(const Report& report);

} // namespace odyssey
