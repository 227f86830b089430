#include "sim/report.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "models/input/units_parse.hpp"
#include "models/strategy.hpp"
#include "models/wording.hpp"

namespace odyssey {
namespace {

/// A large count the way people say it: "300B", "15.6T".
std::string count(double n) {
  if (n >= 1e12) return fmt::format("{:.3g}T", n / 1e12);
  if (n >= 1e9) return fmt::format("{:.3g}B", n / 1e9);
  if (n >= 1e6) return fmt::format("{:.3g}M", n / 1e6);
  return fmt::format("{:.0f}", n);
}

std::string gib(Bytes b) {
  return fmt::format("{:.1f} GiB", b.value() / 1073741824.0);
}

/// Stages shown: the first and last three of a long pipeline.
bool elided(size_t stages, size_t s) {
  return stages > 6 && s >= 3 && s + 3 < stages;
}

/// Memory against capacity: 20 cells to capacity, a '|' at capacity, '!' beyond it.
std::string memory_bar(Bytes used, Bytes capacity) {
  constexpr int CELLS = 20;
  const double f = capacity.value() > 0 ? used.value() / capacity.value() : 0.0;
  const int inside = static_cast<int>(std::lround(std::min(f, 1.0) * CELLS));
  const int beyond = f > 1 ? std::min(CELLS, static_cast<int>(std::lround((f - 1) * CELLS))) : 0;
  return std::string(static_cast<size_t>(inside), '#') +
         std::string(static_cast<size_t>(CELLS - inside), '.') + "|" +
         std::string(static_cast<size_t>(beyond), '!') +
         std::string(static_cast<size_t>(CELLS / 4 - std::min(beyond, CELLS / 4)), ' ') +
         fmt::format("{:4.0f}%", f * 100);
}

std::string duration(Seconds s) {
  const double v = s.value();
  if (v >= 86400 * 2) return fmt::format("{:.1f} days", v / 86400);
  if (v >= 3600) return fmt::format("{:.1f} h", v / 3600);
  if (v >= 1) return fmt::format("{:.3f} s", v);
  return fmt::format("{:.2f} ms", v * 1e3);
}

/// A time span of minutes to days: "45 s", "10 min", "3.1 h", "13.4 days".
std::string span(Seconds s) {
  const double v = s.value();
  if (v < 120) return fmt::format("{:.0f} s", v);
  if (v < 7200) return fmt::format("{:.0f} min", v / 60);
  if (v < 86400 * 2) return fmt::format("{:.1f} h", v / 3600);
  return fmt::format("{:.1f} days", v / 86400);
}

/// The figure `read` takes from the run with failures; NaN (absent) without one.
double failure_figure(const Report& r, double (*read)(const FailureStudy&)) {
  return r.failures ? read(*r.failures) : std::nan("");
}

/// A time of the report's checkpoint plan, or NaN (absent) on a machine without storage.
double checkpoint_figure(const Report& r, Seconds (CheckpointPlan::*time)() const) {
  return r.checkpoint && r.checkpoint->modelled ? ((*r.checkpoint).*time)().value() : std::nan("");
}

/// The checkpoint interval far from the simulated optimum, when moving it gains goodput.
std::optional<Suggestion> checkpoint_suggestion(const FailureStudy& f) {
  // Worth saying when the interval is off by more than twice and it costs half a point of goodput.
  constexpr double FAR = 2.0;
  constexpr double GAIN = 0.005;
  const double ratio = f.policy.checkpoint_interval / f.best.best;
  const double gain = f.best.at_best.goodput_mean - f.run_as_searched.goodput_mean;
  if ((ratio < FAR && ratio > 1 / FAR) || gain < GAIN) return std::nullopt;
  const std::string yd =
      f.young_daly.value() > 0 ? fmt::format(", Young/Daly {}", span(f.young_daly)) : std::string();
  return Suggestion{
      .weight = gain,
      .text = fmt::format("checkpoint interval {} is far from the simulated optimum {}{}: "
                          "checkpoint.interval: \"{:.0f} min\" raises goodput from {:.1f}% to {:.1f}%",
                          span(f.policy.checkpoint_interval), span(f.best.best), yd, f.best.best.value() / 60,
                          f.run_as_searched.goodput_mean * 100, f.best.at_best.goodput_mean * 100)};
}

/// "2.44 TB", "305 MB": decimal units, three significant digits.
std::string bytes_text(Bytes b) {
  const double v = b.value();
  if (v >= 1e15) return fmt::format("{:.3g} PB", v / 1e15);
  if (v >= 1e12) return fmt::format("{:.3g} TB", v / 1e12);
  if (v >= 1e9) return fmt::format("{:.3g} GB", v / 1e9);
  return fmt::format("{:.3g} MB", v / 1e6);
}

std::string rate_text(BytesPerSecond r) {
  return bytes_text(Bytes(r.value())) + "/s";
}

/// The checkpoint plan as JSON: seconds and bytes.
nlohmann::json checkpoint_json(const CheckpointPlan& c, const CheckpointSpec& policy) {
  return {{"interval_s", policy.interval.value()},
          {"mode", to_string(policy.mode)},
          {"size_bytes", c.total.value()},
          {"per_gpu_bytes", c.per_gpu.value()},
          {"per_server_bytes", c.per_server.value()},
          {"servers", c.servers},
          {"device_to_host_s", c.device_to_host.value()},
          {"to_storage_s", c.to_storage.value()},
          {"write_s", c.write().value()},
          {"from_storage_s", c.from_storage.value()},
          {"restore_s", c.restore().value()},
          {"stall_s", c.stall(policy.mode).value()},
          {"host_memory_per_server_bytes", c.host_memory(policy.mode).value()},
          {"storage_rate_bytes_per_s", c.storage_rate().value()},
          {"first_level", to_string(policy.first_level)},
          {"to_first_level_s", c.to_first_level.value()},
          {"write_rate_per_server_bytes_per_s", c.write_rate.value()},
          {"write_limit", c.write_limit},
          {"shares_fabric", c.shares_fabric},
          {"drain_within_interval", c.to_storage <= policy.interval},
          {"backlog_s", c.backlog().value()}};
}

/// The text report's lines on the checkpoint.
std::string checkpoint_text(const CheckpointPlan& c, const CheckpointSpec& policy) {
  const bool sync = policy.mode == CheckpointMode::SYNC;
  std::string out = fmt::format("\n  checkpoint {} ({} per GPU) every {}, {}\n", bytes_text(c.total),
                                bytes_text(c.per_gpu), span(policy.interval), to_string(policy.mode));
  const std::string pcie = c.device_to_host.value() > 0
                               ? duration(c.device_to_host) + " (PCIe)"
                               : std::string("not modelled (no server.pcie_bandwidth)");
  const std::string limit =
      c.shares_fabric ? fmt::format("{} per server over its fabric NICs, which training uses too",
                                    rate_text(c.client_bandwidth))
                      : fmt::format("{} per server over its storage NICs, apart from training's fabric",
                                    rate_text(c.client_bandwidth));
  if (sync) {
    out += fmt::format("    write      {}: GPU -> host {}, host -> storage {} ({} servers at {} together; "
                       "storage {}, {})\n",
                       duration(c.write()), pcie, duration(c.to_storage), c.servers,
                       rate_text(c.storage_rate()), rate_text(c.storage_bandwidth), limit);
    out += fmt::format("    restore    {}; stall per checkpoint {} (sync: the whole write)\n",
                       duration(c.restore()), duration(c.stall(policy.mode)));
    return out;
  }
  const bool nvme = policy.first_level == CheckpointLevel::NVME;
  out += fmt::format("    copy       {} to {}: GPU -> host {}{}; training waits for it\n",
                     duration(c.to_first_level), nvme ? "local NVMe" : "host memory", pcie,
                     nvme ? ", host -> NVMe with it" : "");
  out +=
      fmt::format("    drain      {} to storage while training goes on ({} servers at {} together; storage "
                  "{}, {}; each server's drain held to {} by {})\n",
                  duration(c.to_storage), c.servers, rate_text(c.storage_rate()),
                  rate_text(c.storage_bandwidth), limit, rate_text(c.write_rate), c.write_limit);
  const std::string keeps_up =
      c.backlog().value() > 0
          ? fmt::format(
                "it does NOT finish within the {} interval: the next checkpoint's copy waits {} for it",
                span(policy.interval), duration(c.backlog()))
          : fmt::format("it finishes within the {} interval", span(policy.interval));
  out += fmt::format("               {}; durable {} after the checkpoint starts\n", keeps_up,
                     duration(c.write()));
  out += fmt::format(
      "    restore    {}; stall per checkpoint {}{}\n", duration(c.restore()), duration(c.stall(policy.mode)),
      nvme ? fmt::format(" (its {} per server stay on the NVMe until drained)", bytes_text(c.per_server))
           : fmt::format(" (it holds {} of host memory per server until drained)",
                         bytes_text(c.host_memory(policy.mode))));
  return out;
}

/// A checkpoint on the host tracks of the trace (process `pid`), as if written after the traced
/// iteration ends at `after`: each GPU's copy to host memory over PCIe, then the server's write to
/// storage; every server of the job does the same at once (one flow each on the storage network).
void checkpoint_trace(const CheckpointPlan& c, const CheckpointSpec& policy, Seconds after, int pid,
                      nlohmann::json& events, nlohmann::json& timed) {
  using nlohmann::json;
  events.push_back({{"ph", "M"},
                    {"name", "process_name"},
                    {"pid", pid},
                    {"args",
                     {{"name", fmt::format("host of each server: checkpoint ({}, every {})",
                                           to_string(policy.mode), span(policy.interval))}}}});
  events.push_back(
      {{"ph", "M"}, {"name", "process_sort_index"}, {"pid", pid}, {"args", {{"sort_index", pid}}}});
  const bool nvme = policy.mode == CheckpointMode::ASYNC && policy.first_level == CheckpointLevel::NVME;
  const std::array<std::string_view, 2> tracks = {
      nvme ? "PCIe: GPU -> host -> local NVMe" : "PCIe: GPU -> host memory",
      c.shares_fabric ? "fabric NICs: host -> storage" : "storage NICs: host -> storage"};
  for (int t = 0; t < 2; ++t)
    events.push_back({{"ph", "M"},
                      {"name", "thread_name"},
                      {"pid", pid},
                      {"tid", t},
                      {"args", {{"name", tracks[static_cast<size_t>(t)]}}}});
  const double start = after.value();
  const double copied = start + c.to_first_level.value();
  const bool sync = policy.mode == CheckpointMode::SYNC;
  auto slice = [&](int tid, std::string name, double from, double to, Bytes bytes) {
    timed.push_back({{"ph", "X"},
                     {"name", std::move(name)},
                     {"cat", "checkpoint"},
                     {"pid", pid},
                     {"tid", tid},
                     {"ts", from * 1e6},
                     {"dur", (to - from) * 1e6},
                     {"args", {{"bytes", bytes.value()}, {"stalls training", sync || tid == 0}}}});
  };
  if (c.to_first_level.value() > 0) slice(0, "checkpoint copy", start, copied, c.per_gpu);
  slice(1, sync ? "checkpoint write" : "checkpoint drain", copied, copied + c.to_storage.value(),
        c.per_server);
}

/// The input pipeline on host tracks (process `pid`), from the numbers plan_data_loading computed:
/// during the traced iteration each loader prepares the next one's batch, its stages streaming
/// samples through one another (the loader prefetches), so each stage runs from the iteration's
/// start for its own time and the batch is ready when the slowest ends. Where that is after the
/// iteration's own work, the stages wait for it: a `data stall` slice on every stage's compute track.
void data_loading_trace(const DataLoading& d, int stages, int pid, nlohmann::json& events,
                        nlohmann::json& timed) {
  using nlohmann::json;
  const bool service = d.spec.service == DataService::CPU_HOSTS;
  events.push_back(
      {{"ph", "M"},
       {"name", "process_name"},
       {"pid", pid},
       {"args",
        {{"name", service ? fmt::format("data loader: each of {} CPU hosts (data service)", d.loaders)
                          : fmt::format("data loader: each of {} loading servers", d.loaders)}}}});
  events.push_back(
      {{"ph", "M"}, {"name", "process_sort_index"}, {"pid", pid}, {"args", {{"sort_index", pid}}}});
  // One track per worker core, up to WORKER_TRACKS; the last one stands for the rest, which do the same.
  constexpr int WORKER_TRACKS = 4;
  const int workers = std::max(1, d.spec.workers);
  const int worker_tracks = std::min(workers, WORKER_TRACKS);
  std::vector<std::string> tracks = {"storage: read samples"};
  for (int w = 0; w < worker_tracks; ++w)
    tracks.push_back(w + 1 == worker_tracks && workers > worker_tracks
                         ? fmt::format("CPU: workers {}-{} (each the same)", w, workers - 1)
                         : fmt::format("CPU: worker {}", w));
  if (service) tracks.emplace_back("fabric: CPU host -> GPU server");
  tracks.emplace_back("PCIe: host -> GPU");
  for (std::size_t t = 0; t < tracks.size(); ++t) {
    events.push_back(
        {{"ph", "M"}, {"name", "thread_name"}, {"pid", pid}, {"tid", t}, {"args", {{"name", tracks[t]}}}});
    events.push_back({{"ph", "M"},
                      {"name", "thread_sort_index"},
                      {"pid", pid},
                      {"tid", t},
                      {"args", {{"sort_index", t}}}});
  }
  const double samples_per_worker = d.samples / workers;
  const bool stalls = d.stall().value() > 0;
  auto slice = [&](std::size_t tid, std::string name, Seconds time, json args) {
    if (!(time.value() > 0)) return;
    args["sets the loader's time"] = time == d.loader();
    timed.push_back({{"ph", "X"},
                     {"name", std::move(name)},
                     {"cat", "data loader"},
                     {"pid", pid},
                     {"tid", tid},
                     {"ts", 0.0},
                     {"dur", time.value() * 1e6},
                     {"args", std::move(args)}});
  };
  slice(0, "read next batch", d.storage,
        {{"samples", d.samples}, {"bytes", d.sample_bytes.value() * d.samples}});
  for (int w = 0; w < worker_tracks; ++w)
    slice(static_cast<std::size_t>(1 + w), fmt::format("prepare {:.3g} samples", samples_per_worker), d.cpu,
          {{"samples", samples_per_worker}, {"cpu per sample s", d.cpu_per_sample.value()}});
  std::size_t next = static_cast<std::size_t>(1 + worker_tracks);
  if (service) slice(next++, "send samples to GPU server", d.network, json::object());
  slice(next, "copy batch to GPUs", d.pcie, json::object());
  if (!stalls) return;
  for (int s = 0; s < stages; ++s)
    timed.push_back(
        {{"ph", "X"},
         {"name", fmt::format("data stall (loader held by {})", d.bottleneck())},
         {"cat", "data loader"},
         {"pid", s},
         {"tid", 0},
         {"ts", d.iteration.value() * 1e6},
         {"dur", d.stall().value() * 1e6},
         {"args", {{"loader s", d.loader().value()}, {"iteration without stall s", d.iteration.value()}}}});
}

/// The input pipeline as JSON: seconds per iteration and counts.
nlohmann::json data_loading_json(const DataLoading& d) {
  return {{"format", to_string(d.spec.format)},
          {"service", to_string(d.spec.service)},
          {"workers", d.spec.workers},
          {"prefetch", d.spec.prefetch},
          {"loaders", d.loaders},
          {"samples_per_loader", d.samples},
          {"sample_bytes", d.sample_bytes.value()},
          {"cpu_per_sample_s", d.cpu_per_sample.value()},
          {"storage_s", d.storage.value()},
          {"cpu_s", d.cpu.value()},
          {"network_s", d.network.value()},
          {"pcie_s", d.pcie.value()},
          {"loader_s", d.loader().value()},
          {"headroom", d.headroom()},
          {"stall_s", d.stall().value()}};
}

/// The text report's line on the input pipeline: each stage's time as a share of the iteration.
std::string data_loading_text(const DataLoading& d) {
  const double it = std::max(1e-12, d.iteration.value());
  auto pct = [&](Seconds t) {
    const double p = t.value() / it * 100;
    return p >= 10    ? fmt::format("{:.0f}%", p)
           : p >= 0.1 ? fmt::format("{:.1f}%", p)
                      : fmt::format("{:.2g}%", p);
  };
  std::string used = fmt::format("storage {}, cpu {}",
                                 d.storage.value() > 0 ? pct(d.storage) : "none (local cache)", pct(d.cpu));
  if (d.spec.service == DataService::CPU_HOSTS) used += fmt::format(", network {}", pct(d.network));
  used += fmt::format(", pcie {}", pct(d.pcie));
  const std::string who = d.spec.service == DataService::CPU_HOSTS
                              ? fmt::format("{} CPU hosts prepare {:.3g} samples each for {} GPU servers",
                                            d.loaders, d.samples, d.gpu_servers)
                              : fmt::format("{} servers load {:.3g} samples each", d.loaders, d.samples);
  const std::string what =
      fmt::format("{}, {} workers, {} data, {:.3g} kB and {} CPU a sample", who, d.spec.workers,
                  to_string(d.spec.format), d.sample_bytes.value() / 1e3, duration(d.cpu_per_sample));
  if (d.stall().value() > 0)
    return fmt::format("  data loader  cannot keep up: it needs {} per iteration, training {}; held by {} "
                       "({} of the iteration); data stall {} per iteration\n               ({})\n",
                       duration(d.loader()), duration(d.iteration), d.bottleneck(), used, duration(d.stall()),
                       what);
  const double h = d.headroom();
  return fmt::format("  data loader  headroom {}x: {} of the iteration used\n               ({})\n",
                     h >= 100 ? fmt::format("{:.0f}", h) : fmt::format("{:.3g}", h), used, what);
}

/// What to change when the loader stalls training, by the stage that holds it.
std::string data_stall_suggestion(const DataLoading& d, double share) {
  std::string fix;
  if (d.bottleneck() == "cpu") {
    const auto needed = static_cast<int>(std::ceil(d.spec.workers * (d.cpu / d.iteration)));
    fix = fmt::format("the loader's CPU work ({} a sample on {} workers) is the limit: data.workers: {}{}",
                      duration(d.cpu_per_sample), d.spec.workers, needed,
                      d.spec.format == DataFormat::RAW ? ", or pre-tokenised data (data.format: tokenized)"
                                                       : "");
  } else if (d.bottleneck() == "storage") {
    fix = fmt::format("reading {:.3g} samples a loader from storage takes {}: more storage bandwidth "
                      "(machine.storage.bandwidth, machine.storage.client_bandwidth) or smaller samples "
                      "(data.format: tokenized)",
                      d.samples, duration(d.storage));
  } else {
    fix = fmt::format("the {} transfers of the samples are the limit", d.bottleneck());
  }
  return fmt::format("data stall is {:.1f}% of the iteration: {}", share * 100, fix);
}

/// The run with failures as JSON: figures in seconds, bytes and fractions.
nlohmann::json failures_json(const FailureStudy& f) {
  nlohmann::json lost = nlohmann::json::object();
  for (std::size_t c = 0; c < FAILURE_CAUSES; ++c)
    lost[to_string(ALL_FAILURE_CAUSES[c])] = f.run.lost_mean.by_cause[c].value();
  lost["planned"] = f.run.lost_mean.planned.value();
  lost["checkpoints"] = f.run.lost_mean.checkpoints.value();
  return {{"trials", f.run.trials},
          {"seed", f.seed},
          {"time_to_train_p50_s", f.run.wall_p50.value()},
          {"time_to_train_p90_s", f.run.wall_p90.value()},
          {"time_to_train_mean_s", f.run.wall_mean.value()},
          {"goodput", f.run.goodput_mean},
          {"goodput_p10", f.run.goodput_p10},
          {"interruptions", f.run.interruptions_mean},
          {"interruptions_p90", f.run.interruptions_p90},
          {"planned_interruptions", f.run.planned_mean},
          {"job_mtbf_s", f.job_mtbf().value()},
          {"job", {{"gpus", f.job.gpus}, {"servers", f.job.servers}, {"nics", f.job.nics}}},
          {"checkpoint",
           {{"interval_s", f.policy.checkpoint_interval.value()},
            {"mode", to_string(f.policy.mode)},
            {"size_bytes", f.checkpoint_size.value()},
            {"write_s", f.policy.checkpoint_write.value()},
            {"load_s", f.policy.checkpoint_load.value()},
            {"optimum_interval_s", f.best.best.value()},
            {"optimum_goodput", f.best.at_best.goodput_mean},
            {"goodput_as_searched", f.run_as_searched.goodput_mean},
            {"young_daly_interval_s", f.young_daly.value()}}},
          {"recovery",
           {{"detection_s", f.policy.detection.value()},
            {"restart_s", f.policy.restart.value()},
            {"spares", f.policy.spares}}},
          {"lost_s", lost}};
}

/// The text report's lines on the run with failures.
std::string failures_text(const FailureStudy& f) {
  std::string out = fmt::format("\n  failures over the run ({} trials, seed {})\n", f.run.trials, f.seed);
  out += fmt::format("    job MTBF {} ({} GPUs, {} servers, {} NICs); {:.1f} interruptions (P90 {:.0f}) and "
                     "{:.1f} planned\n",
                     span(f.job_mtbf()), f.job.gpus, f.job.servers, f.job.nics, f.run.interruptions_mean,
                     f.run.interruptions_p90, f.run.planned_mean);
  out += fmt::format("    recovery     {} to detect, {} to restart, {} to restore the checkpoint; {} spare "
                     "servers\n",
                     span(f.policy.detection), span(f.policy.restart), duration(f.policy.checkpoint_load),
                     f.policy.spares);
  std::string lost;
  for (std::size_t c = 0; c < FAILURE_CAUSES; ++c)
    if (f.run.lost_mean.by_cause[c].value() > 0)
      lost += fmt::format("{} {}, ", to_string(ALL_FAILURE_CAUSES[c]), span(f.run.lost_mean.by_cause[c]));
  lost += fmt::format("planned {}, checkpoint stalls {}", span(f.run.lost_mean.planned),
                      span(f.run.lost_mean.checkpoints));
  out += fmt::format("    time lost    {} (mean per run)\n", lost);
  out += fmt::format(
      "    interval     {}: simulated optimum {} (goodput {:.1f}% against {:.1f}%), Young/Daly {}\n",
      span(f.policy.checkpoint_interval), span(f.best.best), f.best.at_best.goodput_mean * 100,
      f.run_as_searched.goodput_mean * 100,
      f.young_daly.value() > 0 ? span(f.young_daly) : std::string("none (no stall)"));
  return out;
}

/// The distinct GEMMs of the job that the profile prices by extrapolation, in program order.
std::vector<std::string> extrapolated_gemms(const Workload& w, const CostModel& cost) {
  std::vector<std::string> out;
  auto scan = [&](const std::vector<ComputeOp>& ops) {
    for (const ComputeOp& op : ops) {
      if (op.kind != OpKind::GEMM || !cost.gemm_estimate(op.gemm, op.dtype).extrapolated) continue;
      std::string name =
          fmt::format("{} {}x{}x{}{} {}", op.name, op.gemm.m, op.gemm.n, op.gemm.k,
                      op.gemm.batch > 1 ? fmt::format(" *{}", op.gemm.batch) : "", to_string(op.dtype));
      if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(std::move(name));
    }
  };
  for (int s = 0; s < w.stages(); ++s)
    for (int c = 0; c < w.chunks_per_stage(); ++c) {
      scan(w.chunk(s, c).forward.compute);
      scan(w.chunk(s, c).backward.compute);
    }
  return out;
}

/// Share of the job's compute time per kind of data that priced it (CostModel::price_source).
std::map<std::string, double> price_sources(const Workload& w, const CostModel& cost) {
  std::map<std::string, double> seconds;
  double total = 0.0;
  auto scan = [&](const std::vector<ComputeOp>& ops) {
    for (const ComputeOp& op : ops) {
      const double t = cost.compute_time(op).value();
      seconds[to_string(cost.price_source(op))] += t;
      total += t;
    }
  };
  for (int s = 0; s < w.stages(); ++s)
    for (int c = 0; c < w.chunks_per_stage(); ++c) {
      scan(w.chunk(s, c).forward.compute);
      scan(w.chunk(s, c).backward.compute);
    }
  if (total > 0)
    for (auto& [kind, t] : seconds) t /= total;
  return seconds;
}

} // namespace

const std::vector<BreakdownPart>& breakdown_parts() {
  static const std::vector<BreakdownPart> PARTS = {
      {.key = "compute", .label = "compute", .member = &Breakdown::compute},
      {.key = "tp_comm_exposed", .label = "tp comm exposed", .member = &Breakdown::tp_comm_exposed},
      {.key = "cp_comm_exposed", .label = "cp comm exposed", .member = &Breakdown::cp_comm_exposed},
      {.key = "ep_comm_exposed", .label = "ep comm exposed", .member = &Breakdown::ep_comm_exposed},
      {.key = "pp_bubble", .label = "pp bubble", .member = &Breakdown::pp_bubble},
      {.key = "pp_comm_exposed", .label = "pp comm exposed", .member = &Breakdown::pp_comm_exposed},
      {.key = "dp_comm_exposed", .label = "dp comm exposed", .member = &Breakdown::dp_comm_exposed},
      {.key = "optimizer", .label = "optimizer", .member = &Breakdown::optimizer},
      {.key = "host_optimizer", .label = "host optimizer", .member = &Breakdown::host_optimizer},
      {.key = "data_stall", .label = "data stall", .member = &Breakdown::data_stall}};
  return PARTS;
}

const std::vector<ReportMetric>& report_metrics() {
  static const std::vector<ReportMetric> METRICS = {
      {.key = "iteration_time_s",
       .better = Better::LOWER,
       .in_rows = true,
       .read = [](const Report& r) { return r.iteration_time.value(); }},
      {.key = "tokens_per_s",
       .better = Better::HIGHER,
       .in_rows = true,
       .read = [](const Report& r) { return r.tokens_per_s; }},
      {.key = "model_tflops_per_gpu",
       .better = Better::HIGHER,
       .in_rows = true,
       .read = [](const Report& r) { return r.model_tflops_per_gpu; }},
      {.key = "hardware_tflops_per_gpu",
       .better = Better::HIGHER,
       .in_rows = false,
       .read = [](const Report& r) { return r.hardware_tflops_per_gpu; }},
      {.key = "mfu",
       .better = Better::HIGHER,
       .in_rows = true,
       .read = [](const Report& r) { return r.mfu; }},
      {.key = "memory_per_gpu_bytes",
       .better = Better::LOWER,
       .in_rows = true,
       .read = [](const Report& r) { return r.memory_per_gpu.value(); }},
      // The run with failures: absent (NaN, left out of the JSON) without a token budget.
      {.key = "goodput",
       .better = Better::HIGHER,
       .in_rows = true,
       .read =
           [](const Report& r) {
             return failure_figure(r, [](const FailureStudy& f) { return f.run.goodput_mean; });
           }},
      {.key = "time_to_train_p50_s",
       .better = Better::LOWER,
       .in_rows = true,
       .read =
           [](const Report& r) {
             return failure_figure(r, [](const FailureStudy& f) { return f.run.wall_p50.value(); });
           }},
      {.key = "time_to_train_p90_s",
       .better = Better::LOWER,
       .in_rows = true,
       .read =
           [](const Report& r) {
             return failure_figure(r, [](const FailureStudy& f) { return f.run.wall_p90.value(); });
           }},
      // The checkpoint's write (GPU -> host -> storage) and restore, as the report's checkpoint
      // block prints them: absent (NaN) on a machine without storage.
      {.key = "checkpoint.write_s",
       .better = Better::LOWER,
       .in_rows = false,
       .top_level = false,
       .read = [](const Report& r) { return checkpoint_figure(r, &CheckpointPlan::write); }},
      {.key = "checkpoint.restore_s",
       .better = Better::LOWER,
       .in_rows = false,
       .top_level = false,
       .read = [](const Report& r) { return checkpoint_figure(r, &CheckpointPlan::restore); }}};
  return METRICS;
}

const ReportMetric& report_metric(std::string_view key) {
  for (const ReportMetric& m : report_metrics())
    if (m.key == key) return m;
  throw std::out_of_range(fmt::format("no report metric '{}'", key));
}

Report make_report(const std::string& scenario_name, const MachineSpec& machine, const Workload& workload,
                   const CostModel& cost, const SimulationResult& result, Fidelity fidelity) {
  Report r;
  r.scenario = scenario_name;
  r.machine = machine.name;
  r.model = workload.model().name;
  r.strategy = describe_layout(workload.parallelism());
  r.gpus = workload.parallelism().gpus();
  r.cp = workload.parallelism().cp;
  r.ep = workload.parallelism().ep;
  r.iteration_time = result.iteration_time;
  const double it = result.iteration_time.value();
  const double tokens = static_cast<double>(workload.training().global_batch) * workload.model().seq_len;
  r.tokens_per_s = tokens / it;
  r.model_tflops_per_gpu = workload.model_flops().value() / it / static_cast<double>(r.gpus) / 1e12;
  r.hardware_tflops_per_gpu = workload.hardware_flops().value() / it / static_cast<double>(r.gpus) / 1e12;
  const auto peak = cost.profile().peak.find(workload.training().precision);
  r.peak_tflops = peak != cost.profile().peak.end() ? peak->second.value() / 1e12 : 0.0;
  r.mfu = r.peak_tflops > 0 ? r.model_tflops_per_gpu / r.peak_tflops : 0.0;
  MemoryFit fit = memory_fit(workload, machine.gpu.memory);
  r.memory_per_stage = std::move(fit.per_stage);
  r.memory_per_gpu = fit.peak;
  r.memory_peak_stage = fit.peak_stage;
  r.gpu_memory = fit.capacity;
  r.fits_memory = fit.fits;
  r.breakdown = result.breakdown;
  if (workload.parallelism().offload.any()) {
    const HostResources host = host_resources(machine, r.gpus);
    r.host_fit = odyssey::host_fit(workload, host);
    r.host_cores = host.cores;
    r.host_adam_rate = cpu_adam_rate(host, cost.cpu_adam());
    r.cpu_adam = cost.cpu_adam();
    r.host_dram = host.host.memory_bandwidth;
    const int stage = result.critical_stage;
    r.offload_step = offload_step(
        workload, stage, host, cost.cpu_adam(),
        overlap_windows(workload, stage, [&](const WorkBlock& b) { return cost.compute_time(b.compute); }));
  }
  if (workload.training().tokens) {
    r.tokens = *workload.training().tokens;
    r.time_to_train = odyssey::time_to_train(*r.tokens, r.tokens_per_s);
  }
  r.parallelism = workload.parallelism();
  r.microbatches = workload.microbatches();
  r.micro_batch = workload.training().micro_batch;
  r.gpus_per_server = machine.server.gpus;
  r.fidelity = fidelity;
  r.profile = cost.profile();
  r.extrapolated_gemms = extrapolated_gemms(workload, cost);
  r.price_sources = price_sources(workload, cost);
  r.simulation = result;
  r.suggestions = suggest(r);
  return r;
}

void add_data_loading(Report& report, const DataLoading& loading) {
  report.data_loading = loading;
  const Seconds stall = loading.stall();
  report.breakdown.data_stall = stall;
  if (stall.value() > 0) {
    const double slower = (report.iteration_time + stall) / report.iteration_time;
    report.iteration_time += stall;
    report.tokens_per_s /= slower;
    report.model_tflops_per_gpu /= slower;
    report.hardware_tflops_per_gpu /= slower;
    report.mfu /= slower;
    if (report.time_to_train) *report.time_to_train = *report.time_to_train * slower;
  }
  report.suggestions = suggest(report);
}

void add_checkpoint(Report& report, const CheckpointPlan& plan, const CheckpointSpec& policy) {
  report.checkpoint = plan;
  report.checkpoint_policy = policy;
  report.suggestions = suggest(report);
}

void add_failures(Report& report, FailureStudy study) {
  report.failures = std::move(study);
  report.suggestions = suggest(report);
}

/// The host memory, NVMe and host step lines of a run with ZeRO-Offload.
static std::string host_text(const Report& r) {
  const HostFit& h = *r.host_fit;
  const OffloadStep& o = r.offload_step;
  const ParallelismSpec& p = r.parallelism;
  std::string out = fmt::format("\n  host per server (ZeRO-Offload: optimizer {}, params {}{})\n",
                                to_string(p.offload.optimizer), to_string(p.offload.params),
                                p.offload.delayed_update ? ", delayed update" : "");
  out +=
      fmt::format("    host memory {:>9} of {} (per GPU {}){}\n", gib(h.host_per_server),
                  gib(h.host_capacity), gib(h.host_per_gpu),
                  h.host_fits ? "" : "  DOES NOT FIT, over by " + gib(h.host_per_server - h.host_capacity));
  if (h.nvme_per_server.value() > 0)
    out +=
        fmt::format("    NVMe        {:>9} of {} (per GPU {}){}\n", gib(h.nvme_per_server),
                    gib(h.nvme_capacity), gib(h.nvme_per_gpu),
                    h.nvme_fits ? "" : "  DOES NOT FIT, over by " + gib(h.nvme_per_server - h.nvme_capacity));
  out += fmt::format(
      "    step of a GPU of stage {}: gradients to host {}, CPU-Adam {} ({} cores shared by the "
      "server's GPUs), parameters to GPU {}{}{}; on the critical path {}\n",
      r.simulation.critical_stage, duration(o.gradients_to_host), duration(o.cpu_adam), r.host_cores,
      duration(o.parameters_to_device), o.nvme.value() > 0 ? ", NVMe " + duration(o.nvme) : std::string(),
      o.parameter_fetch.value() > 0 ? ", parameter fetches " + duration(o.parameter_fetch) : std::string(),
      duration(o.exposed));
  const double cores = r.host_cores * r.cpu_adam.parameters_per_s_per_core;
  out += fmt::format(
      "    CPU-Adam {:.2f} G parameters/s per server: min({} cores x {:.2f} G/s, DRAM {:.0f} GB/s / {:g} B "
      "per parameter) ({}); host profile {}\n",
      r.host_adam_rate / 1e9, r.host_cores, r.cpu_adam.parameters_per_s_per_core / 1e9,
      r.host_dram.value() / 1e9, r.cpu_adam.bytes_per_parameter,
      cores <= r.host_adam_rate ? "core bound" : "memory-bandwidth bound", r.cpu_adam.source);
  return out;
}

std::vector<Suggestion> suggest(const Report& r) {
  // A part under this share of the iteration is not worth a suggestion.
  constexpr double NOTABLE = 0.05;
  // Memory this far below capacity leaves room to trade memory for time.
  constexpr double ROOMY = 0.75;
  const ParallelismSpec& p = r.parallelism;
  const Breakdown& b = r.breakdown;
  const double it = std::max(1e-12, r.iteration_time.value());
  auto share = [&](Seconds t) { return t.value() / it; };
  const double memory_use = r.gpu_memory.value() > 0 ? r.memory_per_gpu.value() / r.gpu_memory.value() : 0.0;
  std::vector<Suggestion> out;

  if (!r.fits_memory && !r.memory_per_stage.empty()) {
    const MemoryBreakdown& m = r.memory_per_stage[static_cast<size_t>(r.memory_peak_stage)];
    std::string fix;
    if (m.activations >= m.optimizer_states && p.recompute != Recompute::FULL)
      fix = fmt::format("activations take {}: {} or more pipeline stages", gib(m.activations),
                        p.recompute == Recompute::NONE ? "recomputation (recompute: selective, or full)"
                                                       : "full recomputation (recompute: full)");
    else if (m.optimizer_states >= m.activations && p.zero == 0 && p.dp > 1)
      fix = fmt::format(
          "optimizer states take {}: the distributed optimizer (zero: 1) shards them over the {} replicas",
          gib(m.optimizer_states), p.dp);
    else
      fix = "more tensor or pipeline parallelism spreads the model over more GPUs";
    out.push_back({.weight = 2.0,
                   .text = fmt::format("stage {} needs {} of {} ({:.0f}%): {}", r.memory_peak_stage,
                                       gib(r.memory_per_gpu), gib(r.gpu_memory), memory_use * 100, fix)});
  }
  if (const double s = share(b.pp_bubble); s > NOTABLE) {
    std::string fix;
    switch (p.schedule) {
    case PipelineScheduleKind::GPIPE:
    case PipelineScheduleKind::ONE_F_ONE_B:
      fix = "more micro-batches (a larger global batch or fewer replicas) or interleaving (schedule: "
            "interleaved-1f1b)";
      break;
    case PipelineScheduleKind::INTERLEAVED_1F1B:
      fix = fmt::format("more micro-batches or more virtual stages (now {})", p.virtual_stages);
      break;
    case PipelineScheduleKind::ZERO_BUBBLE: fix = "more micro-batches or fewer pipeline stages"; break;
    }
    out.push_back(
        {.weight = s,
         .text = fmt::format("pipeline bubble is {:.1f}% of the iteration ({} per replica over {}): {}",
                             s * 100, counted(r.microbatches, "micro-batch", "micro-batches"),
                             counted(p.pp, "stage"), fix)});
  }
  if (const double s = share(b.dp_comm_exposed); s > NOTABLE) {
    const std::string fix =
        !p.dp_overlap ? "overlap it with the backward pass (overlap.dp: true)"
        : p.zero == 0
            ? "the distributed optimizer (zero: 1) moves fewer bytes; or fewer replicas (more tp or pp)"
            : "fewer replicas per ring (more tp or pp) or a faster network";
    out.push_back(
        {.weight = s,
         .text = fmt::format("data-parallel communication exposes {:.1f}% of the iteration (dp {}): {}",
                             s * 100, p.dp, fix)});
  }
  if (const double s = share(b.tp_comm_exposed); s > NOTABLE) {
    const std::string fix =
        p.tp > r.gpus_per_server
            ? fmt::format("tp {} spans servers of {}: keep tensor parallelism inside a server", p.tp,
                          counted(r.gpus_per_server, "GPU"))
        : !p.tp_overlap
            ? std::string("overlap it with the GEMMs (overlap.tp: true)") +
                  (p.sequence_parallel ? "" : " or sequence parallelism (sequence_parallel: true)")
            : "less tensor parallelism (more pipeline stages)";
    out.push_back(
        {.weight = s,
         .text = fmt::format("tensor-parallel communication exposes {:.1f}% of the iteration (tp {}): {}",
                             s * 100, p.tp, fix)});
  }
  if (const double s = share(b.pp_comm_exposed); s > NOTABLE)
    out.push_back({.weight = s,
                   .text = fmt::format("pipeline transfers expose {:.1f}% of the iteration: {}", s * 100,
                                       p.pp_overlap ? "fewer pipeline stages"
                                                    : "overlap sends with compute (overlap.pp: true)")});
  if (const double s = share(b.cp_comm_exposed); s > NOTABLE)
    out.push_back(
        {.weight = s,
         .text = fmt::format("context-parallel communication exposes {:.1f}% of the iteration (cp {}): {}",
                             s * 100, p.cp,
                             p.cp_kind == ContextParallelKind::RING
                                 ? "fewer context-parallel ranks"
                                 : "ring attention hides it behind compute (cp_kind: ring)")});
  if (const double s = share(b.ep_comm_exposed); s > NOTABLE)
    out.push_back(
        {.weight = s,
         .text = fmt::format(
             "expert-parallel all-to-all exposes {:.1f}% of the iteration (ep {}): {}", s * 100, p.ep,
             p.tp * p.ep > r.gpus_per_server ? "keep tp x ep inside a server"
                                             : "a lower capacity factor or fewer experts per token")});
  if (const double s = share(b.host_optimizer); s > NOTABLE) {
    const OffloadStep& o = r.offload_step;
    const bool cpu_bound = o.cpu_adam >= o.gradients_to_host + o.parameters_to_device + o.nvme;
    std::string what = p.offload.delayed_update
                           ? "the delayed update cannot hide it behind the forward and backward"
                           : "parallelism.offload.delayed_update: true hides the CPU step behind the next "
                             "forward and backward (one step of staleness, ZeRO-Offload sec. 4.2)";
    out.push_back(
        {.weight = s,
         .text = fmt::format(
             "the host's optimizer step is {:.1f}% of the iteration (CPU-Adam {}, PCIe copies {}): {}; {}; "
             "or "
             "no offload (parallelism.offload.optimizer: none) on more GPUs, with ZeRO sharding the states "
             "over them",
             s * 100, duration(o.cpu_adam), duration(o.gradients_to_host + o.parameters_to_device), what,
             cpu_bound ? fmt::format("more host cores per GPU (the {} of a server are shared by its GPUs)",
                                     r.host_cores)
                       : "a faster GPU-host link (the PCIe copies are the larger part)")});
  }
  if (r.host_fit && !r.host_fit->fits())
    out.push_back(
        {.weight = 1.0,
         .text = host_fit_problem(*r.host_fit, static_cast<int>(std::min<long>(r.gpus, r.gpus_per_server))) +
                 (r.host_fit->nvme_capacity.value() > 0
                      ? ": offload to nvme, or more data-parallel replicas (ZeRO shards the states over them)"
                      : ": more data-parallel replicas (ZeRO shards the states over them, so each server "
                        "holds less)")});
  if (const double s = share(b.optimizer); s > NOTABLE && p.zero == 0 && p.dp > 1)
    out.push_back(
        {.weight = s,
         .text = fmt::format("the optimizer step is {:.1f}% of the iteration: the distributed optimizer "
                             "(zero: 1) shards it over the {} replicas",
                             s * 100, p.dp)});
  if (r.fits_memory && memory_use < ROOMY && p.recompute != Recompute::NONE &&
      r.hardware_tflops_per_gpu > 0) {
    // Recomputation is the hardware FLOPs beyond the model FLOPs, done on the compute stream.
    const double s = share(b.compute) * (1 - r.model_tflops_per_gpu / r.hardware_tflops_per_gpu);
    if (s > NOTABLE / 2)
      out.push_back({.weight = s,
                     .text = fmt::format(
                         "memory peaks at {:.0f}% of capacity ({} of {}) while recomputation costs "
                         "about {:.1f}% of the iteration: {}",
                         memory_use * 100, gib(r.memory_per_gpu), gib(r.gpu_memory), s * 100,
                         p.recompute == Recompute::FULL ? "selective recomputation (recompute: selective)"
                                                        : "no recomputation (recompute: none)")});
  }
  if (const double s = share(b.data_stall); s > 0 && r.data_loading)
    out.push_back({.weight = s, .text = data_stall_suggestion(*r.data_loading, s)});
  if (r.fits_memory && memory_use < ROOMY && r.micro_batch == 1 && r.mfu < 0.35 && r.microbatches > 1)
    out.push_back(
        {.weight = NOTABLE,
         .text = fmt::format("MFU is {:.1f}% with micro-batch 1 and memory at {:.0f}% of capacity: a "
                             "larger micro_batch makes larger, more efficient GEMMs",
                             r.mfu * 100, memory_use * 100)});
  // An async checkpoint whose drain outlasts the interval holds the next one back: a share of the
  // training time between checkpoints.
  if (r.checkpoint && r.checkpoint->backlog().value() > 0) {
    const CheckpointPlan& c = *r.checkpoint;
    out.push_back(
        {.weight = c.backlog() / r.checkpoint_policy.interval,
         .text = fmt::format(
             "the checkpoint's drain to storage ({}) outlasts the {} interval, so each "
             "checkpoint waits {} for the last: checkpoint.interval: \"{:.0f} min\" or more{}",
             duration(c.to_storage), span(r.checkpoint_policy.interval), duration(c.backlog()),
             std::ceil(c.to_storage.value() / 60),
             c.write_limit == "checkpoint.drain_bandwidth"
                 ? fmt::format(", or a higher checkpoint.drain_bandwidth (now {})", rate_text(c.write_rate))
                 : fmt::format(" (the drain is held by {})", c.write_limit))});
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const Suggestion& x, const Suggestion& y) { return x.weight > y.weight; });
  if (out.size() > 3) out.resize(3);
  // A checkpoint interval far from its optimum costs the whole run, not one iteration: it is
  // always named, in its place by the share of time it recovers, else last.
  if (const auto c = r.failures ? checkpoint_suggestion(*r.failures) : std::nullopt) {
    if (out.size() == 3) out.pop_back();
    const auto at =
        std::find_if(out.begin(), out.end(), [&](const Suggestion& x) { return x.weight < c->weight; });
    out.insert(at, *c);
  }
  return out;
}

MfuAgainstPublished mfu_against_published(const PublishedMfuRow& row, double mfu, const Breakdown& breakdown,
                                          Seconds iteration) {
  MfuAgainstPublished out{.ratio = row.mfu > 0 ? mfu / row.mfu : 0.0};
  if (iteration.value() > 0) out.compute_share = breakdown.compute.value() / iteration.value();
  if (out.compute_share > 0) out.compute_mfu = mfu / out.compute_share;
  return out;
}

/// gemm.sustained by dtype name ({} when the profile has none).
nlohmann::json sustained_json(const Profile& p) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [dtype, fraction] : p.gemm_sustained) j[to_string(dtype)] = fraction;
  return j;
}

nlohmann::json published_mfu_json(const PublishedMfuRow& row, const MfuAgainstPublished& against) {
  return {{"gpu", row.gpu},
          {"precision", row.precision},
          {"mfu", row.mfu},
          {"gpus", row.gpus},
          {"run", row.run},
          {"source", row.source},
          {"ratio", against.ratio},
          {"compute_share", against.compute_share},
          {"compute_mfu", against.compute_mfu}};
}

std::string describe_published_mfu(const PublishedMfuRow& row) {
  return fmt::format("{:.1f}% ({}, {} on {}; {})", row.mfu * 100, row.precision, row.run,
                     counted(row.gpus, "GPU"), row.source);
}

namespace {

/// The report's run against its published row (which the caller has checked is there).
MfuAgainstPublished against_published(const Report& r) {
  return mfu_against_published(*r.published_mfu, r.mfu, r.breakdown, r.iteration_time);
}

/// "1.16x it: compute is 80% of the iteration and runs the model's FLOPs at 62% of peak", or
/// "below it": the text and markdown reports' words for the comparison.
std::string against_published_text(const Report& r) {
  const MfuAgainstPublished a = against_published(r);
  if (!a.above()) return "below it";
  return fmt::format(
      "{:.2f}x it: compute is {:.0f}% of the iteration and runs the model's FLOPs at {:.0f}% of peak",
      a.ratio, a.compute_share * 100, a.compute_mfu * 100);
}

} // namespace

std::string render_text(const Report& r) {
  std::string out;
  const bool datasheet = r.profile.provenance.kind == ProfileKind::DATASHEET;
  out += fmt::format("{}: {} on {} of {} - {:.3f} s per iteration, {:.0f} tokens/s, MFU {:.1f}%{}\n",
                     r.scenario, r.model, counted(r.gpus, "GPU"), r.machine, r.iteration_time.value(),
                     r.tokens_per_s, r.mfu * 100, r.fits_memory ? "" : " - DOES NOT FIT in GPU memory");
  out += fmt::format("  strategy     {}\n", r.strategy);
  out += fmt::format(
      "  throughput   {:.1f} model TFLOP/s per GPU ({:.1f} hardware, recompute included; peak {:.1f})\n",
      r.model_tflops_per_gpu, r.hardware_tflops_per_gpu, r.peak_tflops);
  if (r.published_mfu)
    out +=
        fmt::format("  published    best MFU published on {}: {}\n               this run's {:.1f}% is {}\n",
                    r.published_mfu->gpu, describe_published_mfu(*r.published_mfu), r.mfu * 100,
                    against_published_text(r));
  if (r.time_to_train)
    out += fmt::format("  time to train {} tokens: {}\n", count(*r.tokens), duration(*r.time_to_train));
  if (r.failures)
    out +=
        fmt::format("  with failures: P50 {}, P90 {}; goodput {:.1f}%\n", duration(r.failures->run.wall_p50),
                    duration(r.failures->run.wall_p90), r.failures->run.goodput_mean * 100);
  if (r.data_loading) out += data_loading_text(*r.data_loading);
  if (r.checkpoint) out += checkpoint_text(*r.checkpoint, r.checkpoint_policy);
  if (r.failures) out += failures_text(*r.failures);
  out +=
      "\n  where the time goes (critical GPU: stage " + std::to_string(r.simulation.critical_stage) + ")\n";
  const double total = std::max(1e-12, r.iteration_time.value());
  for (const BreakdownPart& part : breakdown_parts()) {
    const std::string_view key = part.key, name = part.label;
    const Seconds t = r.breakdown.*part.member;
    // Context- and expert-parallel rows only for strategies that have them.
    if ((key == "cp_comm_exposed" && r.cp == 1) || (key == "ep_comm_exposed" && r.ep == 1) ||
        (key == "host_optimizer" && !r.host_fit))
      continue;
    if (key == "data_stall" && t.value() == 0) continue; // the loader keeps up
    const double f = t.value() / total;
    const int width = static_cast<int>(std::lround(f * 40));
    out += fmt::format("    {:<16} {:>10} {:5.1f}% {}\n", name, duration(t), f * 100,
                       std::string(static_cast<size_t>(width), '#'));
  }
  out += fmt::format("\n  memory per GPU (capacity {}, | marks it)\n", gib(r.gpu_memory));
  for (size_t s = 0; s < r.memory_per_stage.size(); ++s) {
    if (elided(r.memory_per_stage.size(), s)) {
      if (s == 3) out += "    ...\n";
      continue;
    }
    const auto& m = r.memory_per_stage[s];
    out += fmt::format(
        "    stage {:<3} {:>9} {} (weights {}, grads {}, optimizer {}, activations {}, workspace {}){}\n", s,
        gib(m.total()), memory_bar(m.total(), r.gpu_memory), gib(m.weights), gib(m.gradients),
        gib(m.optimizer_states), gib(m.activations), gib(m.workspace),
        m.total() > r.gpu_memory ? "  over by " + gib(m.total() - r.gpu_memory) : "");
  }
  if (r.host_fit) out += host_text(r);
  out += "\n  things to try\n";
  if (r.suggestions.empty()) out += "    nothing stands out: no part but compute takes 5% of the iteration\n";
  for (size_t i = 0; i < r.suggestions.size(); ++i)
    out += fmt::format("    {}. {}\n", i + 1, r.suggestions[i].text);
  if (!r.simulation.busiest_links.empty()) {
    out += "\n  busiest links\n";
    for (const auto& l : r.simulation.busiest_links)
      out += fmt::format("    {:<16} {:<10} {:5.1f}% busy, {:.2f} GB\n", l.name, l.role, l.utilisation * 100,
                         l.bytes / 1e9);
  }
  out += fmt::format(
      "\n  simulation   {} fidelity, {} GPUs simulated ({} in the platform, {} CPU hosts), {} actors, "
      "{} activities ({} flows), {:.2f} s wall, {:.0f} MiB peak\n",
      to_string(r.fidelity), r.simulation.simulated_gpus, r.simulation.platform_gpus,
      r.simulation.platform_cpu_hosts, r.simulation.actors, r.simulation.activities, r.simulation.flows,
      r.simulation.wall_seconds, r.simulation.peak_memory_bytes / 1048576.0);
  out += fmt::format("  profile      {} ({}{}): {}\n", r.profile.name, to_string(r.profile.provenance.kind),
                     datasheet ? ": published peak rates and achievable fractions, not measurements" : "",
                     r.profile.provenance.source);
  if (!r.price_sources.empty()) {
    std::string shares;
    for (const char* kind : {"measured", "published", "datasheet"}) {
      auto it = r.price_sources.find(kind);
      if (it == r.price_sources.end() || it->second <= 0) continue;
      shares += fmt::format("{}{:.0f}% {}", shares.empty() ? "" : ", ", 100 * it->second, kind);
    }
    out += fmt::format(
        "  prices       compute time priced from {} data (odyssey run --explain: per operation)\n", shares);
  }
  if (const std::string sustained = sustained_text(r.profile); !sustained.empty())
    out += fmt::format("               {}\n", sustained);
  if (r.profile.kernel_time_scale != 1.0)
    out += fmt::format("               every kernel's time x{} (kernel.time_scale: {})\n",
                       r.profile.kernel_time_scale, kernel_time_scale_origin(r.profile));
  if (!r.extrapolated_gemms.empty()) {
    std::string list;
    for (size_t i = 0; i < std::min<size_t>(3, r.extrapolated_gemms.size()); ++i)
      list += (i ? ", " : "") + r.extrapolated_gemms[i];
    if (r.extrapolated_gemms.size() > 3) list += fmt::format(" and {} more", r.extrapolated_gemms.size() - 3);
    out += fmt::format("  calibration  {} GEMM shapes outside the profile's measured range, extrapolated "
                       "conservatively: {}\n",
                       r.extrapolated_gemms.size(), list);
  }
  return out;
}

std::string render_json(const Report& r) {
  using nlohmann::json;
  json breakdown = json::object();
  for (const BreakdownPart& part : breakdown_parts())
    breakdown[std::string(part.key)] = (r.breakdown.*part.member).value();
  json stages = json::array();
  for (const auto& m : r.memory_per_stage)
    stages.push_back({{"weights", m.weights.value()},
                      {"gradients", m.gradients.value()},
                      {"optimizer_states", m.optimizer_states.value()},
                      {"activations", m.activations.value()},
                      {"workspace", m.workspace.value()},
                      {"total", m.total().value()}});
  json links = json::array();
  for (const auto& l : r.simulation.busiest_links)
    links.push_back({{"name", l.name}, {"role", l.role}, {"bytes", l.bytes}, {"utilisation", l.utilisation}});
  json j = {
      {"scenario", r.scenario},
      {"machine", r.machine},
      {"model", r.model},
      {"strategy", r.strategy},
      {"gpus", r.gpus},
      {"memory_peak_stage", r.memory_peak_stage},
      {"memory_per_stage", stages},
      {"gpu_memory_bytes", r.gpu_memory.value()},
      {"fits_memory", r.fits_memory},
      {"breakdown", breakdown},
      {"busiest_links", links},
      {"simulation",
       {{"wall_s", r.simulation.wall_seconds},
        {"peak_memory_bytes", r.simulation.peak_memory_bytes},
        {"simulated_gpus", r.simulation.simulated_gpus},
        {"platform_gpus", r.simulation.platform_gpus},
        {"platform_cpu_hosts", r.simulation.platform_cpu_hosts},
        {"actors", r.simulation.actors},
        {"activities", r.simulation.activities},
        {"flows", r.simulation.flows},
        {"fidelity", to_string(r.fidelity)},
        {"critical_stage", r.simulation.critical_stage},
        {"profile",
         {{"name", r.profile.name},
          {"gpu", r.profile.gpu},
          {"kind", to_string(r.profile.provenance.kind)},
          {"source", r.profile.provenance.source},
          {"date", r.profile.provenance.date},
          {"kernel_time_scale", r.profile.kernel_time_scale},
          {"sustained", sustained_json(r.profile)}}}}},
  };
  for (const ReportMetric& m : report_metrics())
    if (const double v = m.read(r); m.top_level && std::isfinite(v)) j[std::string(m.key)] = v;
  if (r.failures) j["failures"] = failures_json(*r.failures);
  if (r.checkpoint) j["checkpoint"] = checkpoint_json(*r.checkpoint, r.checkpoint_policy);
  if (r.data_loading) j["data_loader"] = data_loading_json(*r.data_loading);
  json suggestions = json::array();
  for (const Suggestion& s : r.suggestions) suggestions.push_back(s.text);
  j["suggestions"] = suggestions;
  if (r.host_fit) {
    const HostFit& h = *r.host_fit;
    const OffloadStep& o = r.offload_step;
    j["offload"] = {{"host_memory_per_server_bytes", h.host_per_server.value()},
                    {"host_memory_capacity_bytes", h.host_capacity.value()},
                    {"fits_host_memory", h.host_fits},
                    {"nvme_per_server_bytes", h.nvme_per_server.value()},
                    {"nvme_capacity_bytes", h.nvme_capacity.value()},
                    {"fits_nvme", h.nvme_fits},
                    {"gradients_to_host_s", o.gradients_to_host.value()},
                    {"nvme_s", o.nvme.value()},
                    {"cpu_adam_s", o.cpu_adam.value()},
                    {"parameters_to_device_s", o.parameters_to_device.value()},
                    {"parameter_fetch_s", o.parameter_fetch.value()},
                    {"exposed_s", o.exposed.value()}};
  }
  if (r.time_to_train) j["time_to_train_s"] = r.time_to_train->value();
  if (!r.extrapolated_gemms.empty()) j["simulation"]["profile"]["extrapolated_gemms"] = r.extrapolated_gemms;
  if (!r.price_sources.empty()) j["simulation"]["profile"]["price_sources"] = r.price_sources;
  if (r.published_mfu) j["published_mfu"] = published_mfu_json(*r.published_mfu, against_published(r));
  return j.dump(2) + "\n";
}

std::string render_markdown(const Report& r) {
  std::string out = fmt::format(
      "## {}\n\n**{:.3f} s per iteration, {:.0f} tokens/s, MFU {:.1f}%**{} — {} on {} GPUs of {}\n\n",
      r.scenario, r.iteration_time.value(), r.tokens_per_s, r.mfu * 100,
      r.fits_memory ? "" : " — **does not fit in GPU memory**", r.model, r.gpus, r.machine);
  out += fmt::format(
      "| | |\n|---|---|\n| strategy | {} |\n| throughput | {:.1f} model TFLOP/s per GPU ({:.1f} hardware, "
      "recompute included; peak {:.1f}) |\n",
      r.strategy, r.model_tflops_per_gpu, r.hardware_tflops_per_gpu, r.peak_tflops);
  if (r.published_mfu)
    out += fmt::format("| best MFU published on {} | {}; this run's {:.1f}% is {} |\n", r.published_mfu->gpu,
                       describe_published_mfu(*r.published_mfu), r.mfu * 100, against_published_text(r));
  if (r.time_to_train)
    out += fmt::format("| time to train {} tokens | {} |\n", count(*r.tokens), duration(*r.time_to_train));
  if (r.failures) {
    const FailureStudy& f = *r.failures;
    out += fmt::format("| with failures ({} trials) | P50 {}, P90 {}; goodput {:.1f}% |\n", f.run.trials,
                       duration(f.run.wall_p50), duration(f.run.wall_p90), f.run.goodput_mean * 100);
    out += fmt::format("| interruptions | {:.1f} (P90 {:.0f}) and {:.1f} planned; job MTBF {} |\n",
                       f.run.interruptions_mean, f.run.interruptions_p90, f.run.planned_mean,
                       span(f.job_mtbf()));
    out += fmt::format("| checkpoint interval | {} ({}); simulated optimum {}, Young/Daly {} |\n",
                       span(f.policy.checkpoint_interval), to_string(f.policy.mode), span(f.best.best),
                       f.young_daly.value() > 0 ? span(f.young_daly) : std::string("none"));
  }
  out += "\n### Things to try\n\n";
  if (r.suggestions.empty()) out += "Nothing stands out: no part but compute takes 5% of the iteration.\n";
  for (size_t i = 0; i < r.suggestions.size(); ++i)
    out += fmt::format("{}. {}\n", i + 1, r.suggestions[i].text);
  out += fmt::format(
      "\n### Where the time goes (critical GPU: stage {})\n\n| part | time | share |\n|---|---:|---:|\n",
      r.simulation.critical_stage);
  const double total = std::max(1e-12, r.iteration_time.value());
  for (const BreakdownPart& part : breakdown_parts()) {
    const std::string_view key = part.key, name = part.label;
    const Seconds t = r.breakdown.*part.member;
    if ((key == "cp_comm_exposed" && r.cp == 1) || (key == "ep_comm_exposed" && r.ep == 1)) continue;
    out += fmt::format("| {} | {} | {:.1f}% |\n", name, duration(t), 100 * t.value() / total);
  }
  out += fmt::format(
      "\n### Memory per GPU (capacity {})\n\n| stage | total | of capacity | weights | grads | optimizer | "
      "activations | workspace |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n",
      gib(r.gpu_memory));
  for (size_t s = 0; s < r.memory_per_stage.size(); ++s) {
    if (elided(r.memory_per_stage.size(), s)) {
      if (s == 3) out += "| ... | | | | | | | |\n";
      continue;
    }
    const auto& m = r.memory_per_stage[s];
    out += fmt::format("| {} | {} | {:.0f}%{} | {} | {} | {} | {} | {} |\n", s, gib(m.total()),
                       100 * m.total().value() / std::max(1.0, r.gpu_memory.value()),
                       m.total() > r.gpu_memory ? " **over**" : "", gib(m.weights), gib(m.gradients),
                       gib(m.optimizer_states), gib(m.activations), gib(m.workspace));
  }
  if (!r.simulation.busiest_links.empty()) {
    out += "\n### Busiest links\n\n| link | role | busy | carried |\n|---|---|---:|---:|\n";
    for (const auto& l : r.simulation.busiest_links)
      out += fmt::format("| {} | {} | {:.1f}% | {:.2f} GB |\n", l.name, l.role, l.utilisation * 100,
                         l.bytes / 1e9);
  }
  out += fmt::format("\n{} fidelity, {} simulated, {}, {} ({}), {:.2f} s wall. "
                     "Profile {} ({}).\n",
                     to_string(r.fidelity), counted(r.simulation.simulated_gpus, "GPU"),
                     counted(r.simulation.actors, "actor"),
                     counted(r.simulation.activities, "activity", "activities"),
                     counted(r.simulation.flows, "flow"), r.simulation.wall_seconds, r.profile.name,
                     to_string(r.profile.provenance.kind));
  return out;
}

std::string render(const Report& r, ReportFormat format) {
  switch (format) {
  case ReportFormat::TEXT: return render_text(r);
  case ReportFormat::MARKDOWN: return render_markdown(r);
  case ReportFormat::JSON: return render_json(r);
  }
  return render_text(r);
}

std::string render_trace(const Report& r) {
  using nlohmann::json;
  static const char* const STREAMS[] = {"compute", "tp", "cp", "ep", "pp", "dp", "optimizer", "host"};
  constexpr int TRACKS = static_cast<int>(std::size(STREAMS));
  const std::vector<std::string_view> labels = {
      "compute",      "TP comm", "CP comm",   "EP comm",
      "PP send/recv", "DP comm", "optimizer", "host (CPU-Adam, PCIe)"};
  auto tid_of = [](const std::string& stream) {
    for (int i = 0; i < TRACKS; ++i)
      if (stream == STREAMS[i]) return i;
    return TRACKS;
  };
  // A communication track whose parallel dimension is 1 can carry nothing: left out unless an
  // event lands on it after all.
  const ParallelismSpec& p = r.parallelism;
  const int dimension[TRACKS] = {0, p.tp, p.cp, p.ep, p.pp, p.dp, 0, p.offload.any() ? 0 : 1};
  bool shown[TRACKS];
  for (int t = 0; t < TRACKS; ++t) shown[t] = dimension[t] != 1;
  for (const auto& e : r.simulation.trace)
    if (const int t = tid_of(e.stream); t < TRACKS) shown[t] = true;
  json events = json::array();
  const auto stages = static_cast<int>(r.memory_per_stage.size());
  for (int s = 0; s < stages; ++s) {
    events.push_back({{"ph", "M"},
                      {"name", "process_name"},
                      {"pid", s},
                      {"args", {{"name", fmt::format("stage {}", s)}}}});
    events.push_back(
        {{"ph", "M"}, {"name", "process_sort_index"}, {"pid", s}, {"args", {{"sort_index", s}}}});
    for (int t = 0; t < TRACKS; ++t) {
      if (!shown[t]) continue;
      events.push_back({{"ph", "M"},
                        {"name", "thread_name"},
                        {"pid", s},
                        {"tid", t},
                        {"args", {{"name", labels[static_cast<size_t>(t)]}}}});
      events.push_back({{"ph", "M"},
                        {"name", "thread_sort_index"},
                        {"pid", s},
                        {"tid", t},
                        {"args", {{"sort_index", t}}}});
    }
  }
  // Link utilisation counters, in percent, on a process of their own below the stages.
  const int fabric = stages;
  events.push_back(
      {{"ph", "M"}, {"name", "process_name"}, {"pid", fabric}, {"args", {{"name", "fabric links in use"}}}});
  events.push_back(
      {{"ph", "M"}, {"name", "process_sort_index"}, {"pid", fabric}, {"args", {{"sort_index", fabric}}}});
  json timed = json::array();
  for (const auto& e : r.simulation.trace) {
    json x = {{"ph", "X"},
              {"name", e.name},
              {"cat", e.stream},
              {"pid", e.stage},
              {"tid", tid_of(e.stream)},
              {"ts", e.start * 1e6},
              {"dur", (e.end - e.start) * 1e6}};
    if (e.flow >= 0) {
      // Flow events v2: the send slice starts the arrow, the receive slice that shares its id ends it.
      x["bind_id"] = fmt::format("0x{:x}", e.flow);
      x[e.name.starts_with("send") ? "flow_out" : "flow_in"] = true;
    }
    timed.push_back(std::move(x));
  }
  const auto& counters = r.simulation.link_counters;
  for (size_t c = 0; c + 1 < counters.size(); c += 2) {
    // Counters come in pairs per link role: the mean over the links in use, and the busiest.
    const std::string role = counters[c].name.substr(0, counters[c].name.find(' '));
    if (std::all_of(counters[c + 1].utilisation.begin(), counters[c + 1].utilisation.end(),
                    [](double u) { return u == 0; }))
      continue; // a role the job never used
    for (size_t i = 0; i < counters[c].time.size(); ++i)
      timed.push_back({{"ph", "C"},
                       {"name", role + " utilisation %"},
                       {"pid", fabric},
                       {"ts", counters[c].time[i] * 1e6},
                       {"args",
                        {{"mean", counters[c].utilisation[i] * 100},
                         {"busiest", counters[c + 1].utilisation[i] * 100}}}});
  }
  int host_pid = fabric + 1;
  if (r.data_loading) data_loading_trace(*r.data_loading, stages, host_pid++, events, timed);
  if (r.checkpoint)
    checkpoint_trace(*r.checkpoint, r.checkpoint_policy, r.iteration_time, host_pid, events, timed);
  std::stable_sort(timed.begin(), timed.end(), [](const json& a, const json& b) {
    return a.at("ts").get<double>() < b.at("ts").get<double>();
  });
  for (auto& e : timed) events.push_back(std::move(e));
  json doc = {{"traceEvents", events},
              {"displayTimeUnit", "ms"},
              {"otherData", {{"scenario", r.scenario}, {"strategy", r.strategy}, {"replica", 0}}}};
  return doc.dump() + "\n";
}

} // namespace odyssey
