#include "sim/collective.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <set>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <simgrid/s4u.hpp>

#include "models/input/units_parse.hpp"
#include "models/wording.hpp"
#include "sim/isolation.hpp"
#include "sim/nccl_flows.hpp"
#include "sim/platform.hpp"

namespace odyssey {

// JSON of `odyssey collective --json` (and of the child process's answer): SI units, named keys.
void to_json(nlohmann::json& j, const CollectiveRow& r) {
  j = nlohmann::json{{"bytes", r.bytes.value()}, {"time_s", r.time.value()}, {"algbw", r.algbw.value()},
                     {"busbw", r.busbw.value()}, {"algorithm", r.algorithm}, {"protocol", r.protocol}};
}
void from_json(const nlohmann::json& j, CollectiveRow& r) {
  r = CollectiveRow{.bytes = Bytes(j.at("bytes").get<double>()),
                    .time = Seconds(j.at("time_s").get<double>()),
                    .algbw = BytesPerSecond(j.at("algbw").get<double>()),
                    .busbw = BytesPerSecond(j.at("busbw").get<double>()),
                    .algorithm = j.at("algorithm").get<std::string>(),
                    .protocol = j.at("protocol").get<std::string>()};
}
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(CollectiveRun, machine, op, gpus, servers, bus_factor, rows, flows,
                                   wall_seconds, profile, algorithms, protocols)

namespace {

namespace sg4 = simgrid::s4u;

/// All-to-all is simulated as every pair of GPUs; beyond this many GPUs that is too many flows.
constexpr int MAX_ALL_TO_ALL_GPUS = 1024;

} // namespace

NcclConfig nccl_config(const MachineSpec& machine, AlgorithmSet algorithms, ProtocolSet protocols) {
  return NcclConfig{.nvls = machine.server.nvls,
                    .collnet = machine.fabric.in_network_reduction,
                    .intra = machine.server.intra == IntraServer::PCIE ? LinkClass::PCIE : LinkClass::NVLINK,
                    .nics_per_server = machine.server.nics,
                    .nic_bandwidth = machine.server.nic_bandwidth,
                    .algorithms = algorithms,
                    .protocols = protocols};
}

CollectiveRun simulate_collective(const MachineSpec& machine, const CostModel& cost, CollectiveKind kind,
                                  int gpus, const std::vector<Bytes>& sizes) {
  if (gpus < 2) throw std::invalid_argument(fmt::format("a collective needs at least 2 GPUs, got {}", gpus));
  if (gpus > machine.total_gpus())
    throw std::invalid_argument(fmt::format("{} asked for but machine '{}' has {}", counted(gpus, "GPU"),
                                            machine.name, machine.total_gpus()));
  if (kind == CollectiveKind::ALL_TO_ALL && gpus > MAX_ALL_TO_ALL_GPUS)
    throw std::invalid_argument(fmt::format(
        "all-to-all is simulated as every pair of GPUs; at most {} GPUs, got {}", MAX_ALL_TO_ALL_GPUS, gpus));
  const int per_server = machine.server.gpus;
  const int servers = (gpus + per_server - 1) / per_server;
  // Plan every size here, so that algorithms or protocols the group cannot run are reported as
  // bad input before any simulation starts (the cost model throws std::invalid_argument).
  for (const Bytes& size : sizes)
    (void)cost.collective(kind, size, GroupShape{.ranks = gpus, .servers = servers});
  const std::string text = sim::run_isolated([&] {
    const auto wall0 = std::chrono::steady_clock::now();
    const auto engine = sim::make_engine({});
    const sim::Platform platform(machine);

    CollectiveRun run{
        .machine = machine.name,
        .op = to_string(kind),
        .gpus = gpus,
        .servers = servers,
        .bus_factor = bus_factor(kind, gpus),
        .rows = {},
        .flows = 0,
        .wall_seconds = 0,
        .profile = fmt::format("{} ({})", cost.profile().name, to_string(cost.profile().provenance.kind)),
        .algorithms = algorithms_text(cost.nccl().algorithms),
        .protocols = protocols_text(cost.nccl().protocols)};
    std::vector<long> members(static_cast<size_t>(gpus));
    for (int g = 0; g < gpus; ++g) members[static_cast<size_t>(g)] = g;

    // The flows of one size, grouped by the server that sends them: one actor per server issues
    // its own (SimGrid 3.32 scans an actor's activities linearly, so no actor holds them all).
    std::vector<std::vector<sim::Flow>> by_server(static_cast<size_t>(servers));
    std::vector<CollectivePlan> plans;
    std::vector<std::vector<std::vector<sim::Flow>>> flows_per_size;
    for (const Bytes& size : sizes) {
      const CollectivePlan plan = cost.collective(kind, size, GroupShape{.ranks = gpus, .servers = servers});
      plans.push_back(plan);
      for (auto& v : by_server) v.clear();
      for (const sim::Flow& f : sim::nccl_flows(plan, kind, members, machine, size))
        by_server[static_cast<size_t>(f.src / per_server)].push_back(f);
      flows_per_size.push_back(by_server);
    }

    auto barrier = sg4::Barrier::create(static_cast<unsigned>(servers));
    std::vector<double> started(sizes.size(), 0.0);
    std::vector<double> finished(sizes.size(), 0.0);
    std::vector<double> landed(sizes.size(), 0.0); // when the last bytes arrived (route latency)
    for (int s = 0; s < servers; ++s) {
      sg4::Actor::create(fmt::format("server{}", s), platform.gpu(static_cast<long>(s) * per_server), [&, s] {
        for (size_t k = 0; k < sizes.size(); ++k) {
          barrier->wait();
          if (s == 0) started[k] = sg4::Engine::get_clock();
          sim::FlowsInFlight flows;
          for (const sim::Flow& f : flows_per_size[k][static_cast<size_t>(s)])
            flows.add(platform.start_flow(f), platform.route_latency(f.src, f.dst));
          const double left = sim::wait_bytes(flows).value();
          landed[k] = std::max(landed[k], sg4::Engine::get_clock() + left);
          barrier->wait();
          if (s == 0) finished[k] = sg4::Engine::get_clock();
        }
      });
    }
    engine->run();
    for (size_t k = 0; k < sizes.size(); ++k) {
      const double t = std::max(finished[k], landed[k]) - started[k] + plans[k].latency.value();
      const BytesPerSecond algbw = sizes[k] / Seconds(t);
      run.rows.push_back({.bytes = sizes[k],
                          .time = Seconds(t),
                          .algbw = algbw,
                          .busbw = algbw * run.bus_factor,
                          .algorithm = plans[k].algorithm,
                          .protocol = plans[k].protocol});
      for (const auto& v : flows_per_size[k]) run.flows += static_cast<long>(v.size());
    }
    run.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    return nlohmann::json(run).dump();
  });
  return nlohmann::json::parse(text).get<CollectiveRun>();
}

std::vector<Seconds> simulate_concurrent(const MachineSpec& machine, const CostModel& cost,
                                         CollectiveKind kind, const std::vector<std::vector<long>>& groups,
                                         Bytes size) {
  const int per_server = machine.server.gpus;
  std::vector<CollectivePlan> plans;
  for (const auto& g : groups) {
    std::set<long> servers;
    for (long gpu : g) {
      if (gpu < 0 || gpu >= machine.total_gpus())
        throw std::invalid_argument(fmt::format("GPU {} is not in machine '{}'", gpu, machine.name));
      servers.insert(gpu / per_server);
    }
    plans.push_back(cost.collective(
        kind, size,
        GroupShape{.ranks = static_cast<int>(g.size()), .servers = static_cast<int>(servers.size())}));
  }
  const std::string text = sim::run_isolated([&] {
    const auto engine = sim::make_engine({});
    const sim::Platform platform(machine);
    std::vector<double> times(groups.size(), 0.0);
    for (size_t i = 0; i < groups.size(); ++i) {
      sg4::Actor::create(fmt::format("group{}", i), platform.gpu(groups[i].front()), [&, i] {
        sim::FlowsInFlight flows;
        for (const sim::Flow& f : sim::nccl_flows(plans[i], kind, groups[i], machine, size))
          flows.add(platform.start_flow(f), platform.route_latency(f.src, f.dst));
        const Seconds landing = sim::wait_bytes(flows);
        times[i] = sg4::Engine::get_clock() + landing.value() + plans[i].latency.value();
      });
    }
    engine->run();
    return nlohmann::json(times).dump();
  });
  std::vector<Seconds> times;
  for (double t : nlohmann::json::parse(text).get<std::vector<double>>()) times.emplace_back(t);
  return times;
}

namespace {

/// What nccl-tests' `<op>_perf` prints in its `redop`, `root` and `count` columns for `kind`
/// (NVIDIA/nccl-tests src/*.cu): the reduction ("none" for data movement), the root rank (-1 for
/// rootless collectives) and how many ranks' shares the buffer holds (count = size / 4 B / that, the
/// per-rank element count of all-gather, reduce-scatter and all-to-all).
struct NcclTestsColumns {
  const char* redop;
  int root;
  bool per_rank_count;
};

NcclTestsColumns nccl_tests_columns(CollectiveKind kind) {
  switch (kind) {
  case CollectiveKind::ALL_REDUCE: return {"sum", -1, false};
  case CollectiveKind::REDUCE_SCATTER: return {"sum", -1, true};
  case CollectiveKind::ALL_GATHER: return {"none", -1, true};
  case CollectiveKind::ALL_TO_ALL: return {"none", -1, true};
  case CollectiveKind::BROADCAST: return {"none", 0, false};
  case CollectiveKind::REDUCE: return {"sum", 0, false};
  case CollectiveKind::SEND_RECV: return {"sum", -1, false};
  }
  return {"sum", -1, false};
}

/// The collective whose to_string is `op` (CollectiveRun keeps the name).
CollectiveKind kind_named(const std::string& op) {
  for (CollectiveKind k : {CollectiveKind::ALL_REDUCE, CollectiveKind::ALL_GATHER,
                           CollectiveKind::REDUCE_SCATTER, CollectiveKind::BROADCAST, CollectiveKind::REDUCE,
                           CollectiveKind::ALL_TO_ALL, CollectiveKind::SEND_RECV})
    if (op == to_string(k)) return k;
  throw std::invalid_argument(fmt::format("unknown collective '{}'", op));
}

/// A figure in `width` characters, as many decimals (2, 1, 0) as fit, as nccl-tests prints them.
std::string figure(double value, int width) {
  for (int decimals = 2; decimals > 0; --decimals) {
    std::string text = fmt::format("{:.{}f}", value, decimals);
    if (static_cast<int>(text.size()) <= width) return fmt::format("{:>{}}", text, width);
  }
  return fmt::format("{:>{}.0f}", value, width);
}

/// Consecutive sizes that ran the same algorithm and protocol, as one line each.
std::string choices(const CollectiveRun& run) {
  std::string out;
  for (size_t i = 0; i < run.rows.size();) {
    size_t j = i;
    while (j + 1 < run.rows.size() && run.rows[j + 1].algorithm == run.rows[i].algorithm &&
           run.rows[j + 1].protocol == run.rows[i].protocol)
      ++j;
    const auto size = [&](size_t k) { return format_quantity(run.rows[k].bytes.value(), Dimension::BYTES); };
    const std::string sizes = i == j ? size(i) : size(i) + " to " + size(j);
    out += fmt::format("#   {:<30} {}/{}\n", sizes, run.rows[i].algorithm, run.rows[i].protocol);
    i = j + 1;
  }
  return out;
}

} // namespace

std::string render_collective_text(const CollectiveRun& run) {
  // The layout of nccl-tests' `<op>_perf` (src/util.cu writeResultHeader, writeBenchmarkLine*):
  // '#' comment lines, then one row per size with the same columns in the same order, so that
  // scripts that read nccl-tests output by whitespace-separated column read this too.
  const NcclTestsColumns c = nccl_tests_columns(kind_named(run.op));
  std::string out =
      fmt::format("# odyssey collective: {} over {} ({}) of {}, simulated; profile {}\n", run.op,
                  counted(run.gpus, "GPU"), counted(run.servers, "server"), run.machine, run.profile);
  out += fmt::format("# busbw = algbw x {:.4f} (nccl-tests' definition for {} ranks)\n", run.bus_factor,
                     run.gpus);
  out += "# in-place figures equal out-of-place ones: the simulation moves the same bytes either way;\n"
         "# #wrong is N/A: no data is checked\n";
  if (run.algorithms != "all" || run.protocols != "all")
    out += fmt::format("# restricted as NCCL_ALGO={} NCCL_PROTO={}\n", run.algorithms, run.protocols);
  out += "#\n";
  out += fmt::format(
      "# {:>10}  {:>12}  {:>8}  {:>6}  {:>6}           out-of-place                       in-place\n", "", "",
      "", "", "");
  out += fmt::format(
      "# {:>10}  {:>12}  {:>8}  {:>6}  {:>6}  {:>7}  {:>6}  {:>6}  {:>6}  {:>7}  {:>6}  {:>6}  {:>6}\n",
      "size", "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong", "time", "algbw", "busbw",
      "#wrong");
  out += fmt::format(
      "# {:>10}  {:>12}  {:>8}  {:>6}  {:>6}  {:>7}  {:>6}  {:>6}  {:>6}  {:>7}  {:>6}  {:>6}  {:>6}\n",
      "(B)", "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)", "");
  constexpr double FLOAT_BYTES = 4; // nccl-tests' default type, float
  const double shares = c.per_rank_count ? run.gpus : 1;
  for (const CollectiveRow& r : run.rows) {
    const std::string result =
        fmt::format("  {}  {}  {}  {:>6}", figure(r.time.value() * 1e6, 7), figure(r.algbw.value() / 1e9, 6),
                    figure(r.busbw.value() / 1e9, 6), "N/A");
    out += fmt::format("{:>12.0f}  {:>12.0f}  {:>8}  {:>6}  {:>6}{}{}\n", r.bytes.value(),
                       std::floor(r.bytes.value() / FLOAT_BYTES / shares), "float", c.redop, c.root, result,
                       result);
  }
  double sum = 0;
  for (const CollectiveRow& r : run.rows) sum += r.busbw.value();
  out += fmt::format("# {:<20} : {:g}\n", "Avg bus bandwidth",
                     run.rows.empty() ? 0.0 : sum / run.rows.size() / 1e9);
  out += "#\n# algorithm/protocol NCCL's tuning chose, by size\n" + choices(run);
  out += fmt::format("# simulated with {} in {:.2f} s wall\n", counted(run.flows, "flow"), run.wall_seconds);
  return out;
}

std::string render_collective_json(const CollectiveRun& run) {
  return nlohmann::json(run).dump(2) + "\n";
}

} // namespace odyssey
