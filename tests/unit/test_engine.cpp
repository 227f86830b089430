// Properties of the SimGrid engine (each simulate() call runs SimGrid in a child process).
#include <catch2/catch.hpp>

#include "calibration/cost_model.hpp"
#include "calibration/overlap.hpp"
#include "calibration/profile.hpp"
#include "models/workload.hpp"
#include "sim/collective.hpp"
#include "sim/engine.hpp"
#include "sim/report.hpp"

#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

using namespace odyssey;

namespace {

MachineSpec small_machine(int servers) {
  MachineSpec m;
  m.name = "test";
  m.gpu = {.type = "A100-SXM4-80GB", .memory = Bytes(80.0 * (1 << 30))};
  m.servers = servers;
  m.server = {.gpus = 8,
              .intra = IntraServer::NVSWITCH,
              .nvlink_bandwidth = BytesPerSecond(300e9),
              .nvlink_latency = Seconds(1e-6),
              .nics = 8,
              .nic_bandwidth = BytesPerSecond(25e9),
              .nic_latency = Seconds(1e-6),
              .cpu_cores = 128};
  m.fabric.servers_per_leaf = 4;
  m.fabric.leaves_per_pod = 4;
  m.fabric.levels = 3;
  m.fabric.switch_latency = Seconds(3e-7);
  return m;
}

Profile a100_profile() {
  return load_profile(std::string(ODYSSEY_DATA_DIR) + "/calibration/profiles/a100-sxm4-80gb-datasheet.yaml");
}

/// A profile whose communication costs nothing but bandwidth, and whose kernels launch for free.
Profile free_latency_profile() {
  Profile p = a100_profile();
  p.launch_overhead = Seconds(0);
  p.collective_base_latency = Seconds(0);
  p.collective_base_latency_by_protocol = {};
  for (LinkClassProfile* l : {&p.nvlink, &p.pcie, &p.net}) {
    l->step_latency = Seconds(0);
    l->step_latency_by_protocol = {};
  }
  return p;
}

ModelSpec gpt(int layers, int hidden, int heads, int vocab) {
  return {.name = "test-gpt",
          .layers = layers,
          .hidden = hidden,
          .heads = heads,
          .kv_heads = heads,
          .ffn_hidden = 4 * hidden,
          .activation = Activation::GELU,
          .vocab = vocab,
          .seq_len = 1024};
}

} // namespace

TEST_CASE("sim::Engine: with free communication the 1F1B bubble is (p-1)/(m+p-1)", "[engine]") {
  MachineSpec machine = small_machine(1);
  machine.server.nvlink_bandwidth = BytesPerSecond(1e18);
  machine.server.nvlink_latency = Seconds(0);
  const CostModel cost(free_latency_profile());
  const int p = 4;
  const int m = 8;
  // A tiny vocabulary keeps the embedding and LM head negligible, so stages are uniform.
  const Workload w(gpt(8, 2048, 16, 8), {.global_batch = m, .micro_batch = 1, .precision = Precision::FP16},
                   {.tp = 1, .pp = p, .dp = 1, .schedule = PipelineScheduleKind::ONE_F_ONE_B});
  const SimulationResult r = simulate(machine, w, cost, {});
  const double busy = (r.iteration_time - r.breakdown.optimizer).value();
  const double bubble = r.breakdown.pp_bubble.value() / busy;
  CHECK(bubble == Approx(static_cast<double>(p - 1) / (m + p - 1)).epsilon(0.02));
  CHECK(r.breakdown.total().value() == Approx(r.iteration_time.value()).epsilon(1e-9));
  // A bubble of 3/11 of the iteration is the report's first suggestion.
  const Report report = make_report("bubble", machine, w, cost, r, Fidelity::FULL);
  REQUIRE_FALSE(report.suggestions.empty());
  CHECK(report.suggestions[0].text.starts_with(
      fmt::format("pipeline bubble is {:.1f}% of the iteration (8 micro-batches per replica over 4 stages)",
                  100 * r.breakdown.pp_bubble.value() / r.iteration_time.value())));
}

TEST_CASE("sim::Engine: more link bandwidth never slows an iteration", "[engine]") {
  const CostModel cost(a100_profile());
  const Workload w(gpt(8, 2048, 16, 51200),
                   {.global_batch = 32, .micro_batch = 1, .precision = Precision::FP16},
                   {.tp = 2, .pp = 2, .dp = 8, .schedule = PipelineScheduleKind::ONE_F_ONE_B});
  double previous = 1e300;
  for (double gbps : {5.0, 12.5, 25.0, 50.0, 100.0}) {
    MachineSpec machine = small_machine(4);
    machine.server.nic_bandwidth = BytesPerSecond(gbps * 1e9);
    const double t = simulate(machine, w, cost, {}).iteration_time.value();
    INFO("NIC " << gbps << " GB/s: " << t << " s");
    CHECK(t <= previous * (1 + 1e-12));
    previous = t;
  }
}

TEST_CASE("sim::Engine: data-parallel replicas finish together and the run is deterministic", "[engine]") {
  const CostModel cost(a100_profile());
  const MachineSpec machine = small_machine(4);
  const Workload w(gpt(4, 1024, 16, 51200),
                   {.global_batch = 64, .micro_batch = 2, .precision = Precision::FP16},
                   {.tp = 1, .pp = 1, .dp = 32});
  SimulationOptions options;
  options.record_trace = true;
  const SimulationResult a = simulate(machine, w, cost, options);
  const SimulationResult b = simulate(machine, w, cost, options);
  CHECK(a.iteration_time.value() == b.iteration_time.value());
  CHECK(a.activities == b.activities);
  CHECK(a.simulated_gpus == 32);
  // The gradient all-reduce synchronises replicas: every replica waits for the same last bucket,
  // so the critical replica's exposed DP time ends where the iteration's optimizer starts.
  CHECK(a.breakdown.dp_comm_exposed.value() > 0);
  CHECK(a.breakdown.total().value() == Approx(a.iteration_time.value()).epsilon(1e-9));
}

TEST_CASE("sim::Engine: the whole machine is in the platform, every job GPU simulated", "[engine]") {
  const CostModel cost(a100_profile());
  MachineSpec machine = small_machine(16);
  machine.cpu_hosts = {.count = 10, .cores_per_host = 64};
  const Workload w(gpt(4, 1024, 16, 51200),
                   {.global_batch = 16, .micro_batch = 1, .precision = Precision::FP16},
                   {.tp = 8, .pp = 2, .dp = 2});
  const SimulationResult r = simulate(machine, w, cost, {});
  CHECK(r.platform_gpus == 128);
  CHECK(r.platform_cpu_hosts == 10);
  CHECK(r.simulated_gpus == 32);
  CHECK(r.actors == 2 * 2 + 2); // one per (stage, replica) TP group, one DP driver per stage
}

TEST_CASE("sim::Engine: fast fidelity folds replicas and agrees with full where uncontended", "[engine]") {
  const CostModel cost(a100_profile());
  const MachineSpec machine = small_machine(8);
  const Workload w(gpt(8, 2048, 16, 51200),
                   {.global_batch = 64, .micro_batch = 1, .precision = Precision::FP16},
                   {.tp = 8, .pp = 2, .dp = 4, .schedule = PipelineScheduleKind::ONE_F_ONE_B});
  const SimulationResult full = simulate(machine, w, cost, {.fidelity = Fidelity::FULL});
  const SimulationResult fast = simulate(machine, w, cost, {.fidelity = Fidelity::FAST});
  CHECK(fast.actors < full.actors);
  CHECK(fast.simulated_gpus == 16);
  CHECK(full.simulated_gpus == 64);
  CHECK(fast.iteration_time.value() == Approx(full.iteration_time.value()).epsilon(0.005));
}

TEST_CASE("sim::Engine: fast fidelity stands for NCCL's trees by their busiest server", "[engine]") {
  // On a tree the root and the leaves send less than the interior servers, which set the
  // all-reduce's time; a representative taken at the root (replica 0) would make it too fast.
  // One GPU per server, so that every collective crosses servers and NCCL may run it on its tree.
  MachineSpec machine = small_machine(32);
  machine.server.gpus = 1;
  machine.server.nics = 1;
  const CostModel cost(a100_profile(), nccl_config(machine, parse_algorithms("tree"), ALL_PROTOCOLS));
  const Workload w(gpt(8, 2048, 16, 51200),
                   {.global_batch = 64, .micro_batch = 1, .precision = Precision::FP16},
                   {.tp = 1, .pp = 2, .dp = 16, .schedule = PipelineScheduleKind::ONE_F_ONE_B});
  const SimulationResult full = simulate(machine, w, cost, {.fidelity = Fidelity::FULL});
  const SimulationResult fast = simulate(machine, w, cost, {.fidelity = Fidelity::FAST});
  INFO("full " << full.iteration_time.value() << " s (DP exposed " << full.breakdown.dp_comm_exposed.value()
               << " s), fast " << fast.iteration_time.value() << " s (DP exposed "
               << fast.breakdown.dp_comm_exposed.value() << " s)");
  CHECK(full.breakdown.dp_comm_exposed.value() > 0.01 * full.iteration_time.value());
  CHECK(fast.iteration_time.value() == Approx(full.iteration_time.value()).epsilon(0.005));
  CHECK(fast.breakdown.dp_comm_exposed.value() ==
        Approx(full.breakdown.dp_comm_exposed.value()).epsilon(0.05));
}

TEST_CASE("sim::Engine: the sharing shortcuts change no answer, only the flows SimGrid moves", "[engine]") {
  // Links no flow can saturate left out, flows of tensor positions t != 0 riding with their
  // images on t = 0 (on links all positions share, with their images' part of the capacity):
  // exact by construction, so the iteration is the same to rounding.
  const CostModel cost(a100_profile());
  struct Case {
    const char* what;
    MachineSpec machine;
    ParallelismSpec parallelism;
    /// How many times fewer flows SimGrid moves with the shortcuts: the tensor positions the
    /// machine treats alike, every flow folding (inside servers too, behind an NVSwitch); 0: fewer,
    /// but a cube-mesh's NVLink flows all move.
    long fold;
  };
  MachineSpec rail = small_machine(8);
  rail.fabric.kind = FabricKind::RAIL_OPTIMIZED;
  MachineSpec oversubscribed = small_machine(8);
  oversubscribed.fabric.leaf_oversubscription = 4;
  MachineSpec rail_spine = small_machine(8); // rails whose spine level carries a quarter
  rail_spine.fabric.kind = FabricKind::RAIL_OPTIMIZED;
  rail_spine.fabric.leaf_oversubscription = 4;
  MachineSpec hashed = oversubscribed; // a flow and its image may hash onto different uplinks
  hashed.fabric.ecmp = Ecmp::HASH;
  MachineSpec pcie = small_machine(8);
  pcie.server.pcie_switches = 4;
  pcie.server.pcie_bandwidth = BytesPerSecond(32e9);
  MachineSpec mesh = small_machine(8); // a DGX-1: NVLink cube-mesh, 2 GPUs per NIC behind PCIe switches
  mesh.server.intra = IntraServer::NVLINK_MESH;
  mesh.server.nvlink_bandwidth = BytesPerSecond(150e9);
  mesh.server.nics = 4;
  mesh.server.nic_bandwidth = BytesPerSecond(12.5e9);
  mesh.server.pcie_switches = 4;
  mesh.server.pcie_bandwidth = BytesPerSecond(16e9);
  const ParallelismSpec tp8{.tp = 8, .pp = 2, .dp = 4, .schedule = PipelineScheduleKind::ONE_F_ONE_B};
  const ParallelismSpec tp4{
      .tp = 4, .pp = 2, .dp = 8, .cp = 1, .schedule = PipelineScheduleKind::ONE_F_ONE_B};
  // Inside servers behind an NVSwitch, TP rings, CP rings and the data-parallel rings' NVLink hops
  // fold onto NIC 0's positions' ports too.
  MachineSpec four_nics = small_machine(8); // two GPUs per NIC, behind an NVSwitch
  four_nics.server.nics = 4;
  four_nics.server.nic_bandwidth = BytesPerSecond(50e9);
  ParallelismSpec tp4_overlapped = tp4;
  tp4_overlapped.tp_overlap = true;
  tp4_overlapped.pp_overlap = true;
  tp4_overlapped.zero = 1;
  const ParallelismSpec tp2_cp2{
      .tp = 2, .pp = 2, .dp = 4, .cp = 2, .schedule = PipelineScheduleKind::ONE_F_ONE_B};
  const ParallelismSpec tp2_ep2{
      .tp = 2, .pp = 2, .dp = 8, .ep = 2, .schedule = PipelineScheduleKind::ONE_F_ONE_B};
  ParallelismSpec tp2_cp2_all_gather = tp2_cp2;
  tp2_cp2_all_gather.cp_kind = ContextParallelKind::ALL_GATHER;
  const std::vector<Case> cases = {
      {"non-blocking fat tree, tp 8", small_machine(8), tp8, 8},
      {"rail-optimized, tp 4", rail, tp4, 4},
      {"rail-optimized, tp 4, TP and PP overlap, ZeRO-1", rail, tp4_overlapped, 4},
      {"rail-optimized, tp 2, cp 2", rail, tp2_cp2, 2},
      {"2 GPUs per NIC behind an NVSwitch, tp 4", four_nics, tp4_overlapped, 2},
      {"rail-optimized, tp 2, ep 2 (all-to-all inside servers)", rail, tp2_ep2, 2},
      {"rail-optimized, tp 2, cp 2 all-gather", rail, tp2_cp2_all_gather, 2},
      {"PCIe switches, tp 4", pcie, tp4, 4},
      {"cube-mesh, 2 GPUs per NIC, tp 8", mesh, tp8, 4},
      {"cube-mesh, 2 GPUs per NIC, tp 4", mesh, tp4, 0},
      {"4:1 oversubscribed leaves, tp 8", oversubscribed, tp8, 8},
      {"4:1 oversubscribed leaves, tp 4", oversubscribed, tp4, 4},
      {"rails, 4:1 oversubscribed spine, tp 4", rail_spine, tp4, 4},
      {"4:1 oversubscribed leaves, hashed ECMP, tp 8", hashed, tp8, 1}};
  for (const Case& c : cases) {
    ModelSpec model = gpt(8, 2048, 16, 51200);
    if (c.parallelism.ep > 1) model.moe = MoeSpec{.experts = 8, .top_k = 2};
    const Workload w(model, {.global_batch = 64, .micro_batch = 1, .precision = Precision::FP16},
                     c.parallelism);
    const SimulationResult with = simulate(c.machine, w, cost, {});
    const SimulationResult without = simulate(c.machine, w, cost, {.sharing_shortcuts = false});
    INFO(c.what << ": " << with.iteration_time.value() << " s with " << with.flows << " flows, "
                << without.iteration_time.value() << " s with " << without.flows);
    CHECK(with.iteration_time.value() == Approx(without.iteration_time.value()).epsilon(1e-9));
    CHECK(with.breakdown.pp_comm_exposed.value() ==
          Approx(without.breakdown.pp_comm_exposed.value()).epsilon(1e-9).margin(1e-12));
    CHECK(with.busiest_links.front().bytes == Approx(without.busiest_links.front().bytes).epsilon(1e-9));
    CHECK(with.busiest_links.front().utilisation ==
          Approx(without.busiest_links.front().utilisation).epsilon(1e-9));
    if (c.fold == 0)
      CHECK(with.flows < without.flows);
    else
      CHECK(with.flows * c.fold == without.flows);
  }
}

TEST_CASE("sim::Engine: trees as rings move the same bytes at nearly the same iteration", "[engine]") {
  // Data-parallel all-reduces restricted to NCCL's tree, on a non-blocking fat tree: the tree's
  // flows between servers run as rings with the same NIC loads (sim::tree_edges_as_rings). Link
  // bytes count the tree's own routes, so they do not move. Rings pair the NICs differently, so
  // the shares of a NIC's flows may differ: here the iteration is the same to 1e-9, the exposed
  // data-parallel time 2% apart (it was 0.2% and 0.4% while CM02 weighed shares by route latency).
  const MachineSpec machine = small_machine(16);
  const CostModel cost(a100_profile(), nccl_config(machine, parse_algorithms("tree"), ALL_PROTOCOLS));
  // tp 1: NCCL's tree needs servers to cross, so no collective inside one server is left to it.
  const Workload w(gpt(8, 2048, 16, 51200),
                   {.global_batch = 128, .micro_batch = 1, .precision = Precision::FP16},
                   {.tp = 1, .pp = 2, .dp = 64, .schedule = PipelineScheduleKind::ONE_F_ONE_B});
  const SimulationResult with = simulate(machine, w, cost, {});
  const SimulationResult without = simulate(machine, w, cost, {.sharing_shortcuts = false});
  INFO(with.iteration_time.value() << " s with the shortcuts, " << without.iteration_time.value()
                                   << " s without");
  CHECK(with.iteration_time.value() == Approx(without.iteration_time.value()).epsilon(0.001));
  CHECK(with.breakdown.dp_comm_exposed.value() ==
        Approx(without.breakdown.dp_comm_exposed.value()).epsilon(0.05).margin(1e-4));
  REQUIRE(with.busiest_links.size() == without.busiest_links.size());
  for (size_t i = 0; i < with.busiest_links.size(); ++i)
    CHECK(with.busiest_links[i].bytes == Approx(without.busiest_links[i].bytes).epsilon(1e-9));
}

TEST_CASE("sim::Engine: on a 4:1 oversubscribed fabric full fidelity sees the contention fast cannot",
          "[engine]") {
  // Leaves of 2 servers whose uplinks carry a quarter of what the NICs under them can send: the
  // 8 data-parallel rings of a stage (one per tensor position) each cross every leaf boundary,
  // twice what an uplink can carry. Fast fidelity keeps the edges leaving replica 0's server,
  // which stay inside its leaf, so it sees none of this.
  const CostModel cost(a100_profile());
  MachineSpec machine = small_machine(16);
  machine.fabric.servers_per_leaf = 2;
  machine.fabric.leaf_oversubscription = 4;
  // tp 1: NCCL's tree needs servers to cross, so no collective inside one server is left to it.
  const Workload w(gpt(8, 2048, 16, 51200),
                   {.global_batch = 128, .micro_batch = 1, .precision = Precision::FP16},
                   {.tp = 1, .pp = 2, .dp = 64, .schedule = PipelineScheduleKind::ONE_F_ONE_B});
  const SimulationResult full = simulate(machine, w, cost, {.fidelity = Fidelity::FULL});
  const SimulationResult fast = simulate(machine, w, cost, {.fidelity = Fidelity::FAST});
  INFO("full " << full.iteration_time.value() << " s (dp exposed " << full.breakdown.dp_comm_exposed.value()
               << " s), fast " << fast.iteration_time.value() << " s (dp exposed "
               << fast.breakdown.dp_comm_exposed.value() << " s), busiest "
               << full.busiest_links.front().name);
  CHECK(full.iteration_time.value() > 1.02 * fast.iteration_time.value());
  CHECK(full.breakdown.dp_comm_exposed.value() > 1.5 * fast.breakdown.dp_comm_exposed.value());
  // The busiest links say why: the oversubscribed leaf uplinks, nearly full.
  CHECK(full.busiest_links.front().role == "leaf-trunk");
}

TEST_CASE("sim::Report: the trace is Chrome trace-event JSON with named tracks, flows and link counters",
          "[engine]") {
  const CostModel cost(a100_profile());
  const MachineSpec machine = small_machine(4);
  // tp 4 leaves each server's other GPUs to another stage: TP comm runs as flows on NVLink and
  // the pipeline crosses servers, so every link role the job uses has a counter.
  const bool pp_overlap = GENERATE(false, true);
  ParallelismSpec p{
      .tp = 4, .pp = 4, .dp = 2, .schedule = PipelineScheduleKind::INTERLEAVED_1F1B, .virtual_stages = 2};
  p.pp_overlap = pp_overlap;
  const Workload w(gpt(8, 1024, 16, 51200),
                   {.global_batch = 16, .micro_batch = 1, .precision = Precision::FP16}, p);
  SimulationOptions options;
  options.record_trace = true;
  const SimulationResult r = simulate(machine, w, cost, options);
  const Report report = make_report("trace-test", machine, w, cost, r, Fidelity::FULL);
  const auto doc = nlohmann::json::parse(render_trace(report));
  int complete = 0;
  double last = -1;
  std::set<std::pair<int, std::string>> tracks;
  std::set<std::string> processes;
  std::map<std::string, int> sends;
  std::map<std::string, int> receives;
  std::map<std::string, double> send_time;
  std::map<std::string, double> receive_end;
  std::set<std::string> counters;
  for (const auto& e : doc.at("traceEvents")) {
    if (e.at("ph") == "M" && e.at("name") == "thread_name")
      tracks.insert({e.at("pid").get<int>(), e.at("args").at("name").get<std::string>()});
    if (e.at("ph") == "M" && e.at("name") == "process_name")
      processes.insert(e.at("args").at("name").get<std::string>());
    if (e.at("ph") == "M") {
      CHECK(last < 0); // metadata first
      continue;
    }
    CHECK(e.at("ts").get<double>() >= last); // every timed event sorted by time
    last = e.at("ts").get<double>();
    if (e.at("ph") == "C") {
      counters.insert(e.at("name").get<std::string>());
      CHECK(e.at("args").at("busiest").get<double>() >= 0);
      CHECK(e.at("args").at("busiest").get<double>() <= 100 + 1e-6);
      CHECK(e.at("args").at("mean").get<double>() <= e.at("args").at("busiest").get<double>() + 1e-9);
      continue;
    }
    REQUIRE(e.at("ph") == "X");
    ++complete;
    CHECK(e.at("dur").get<double>() >= 0);
    CHECK(e.at("pid").get<int>() < 4);
    if (e.contains("bind_id")) {
      const auto id = e.at("bind_id").get<std::string>();
      CHECK(e.at("cat") == "pp");
      if (e.contains("flow_out")) {
        ++sends[id];
        send_time[id] = e.at("ts").get<double>();
      } else {
        REQUIRE(e.contains("flow_in"));
        ++receives[id];
        receive_end[id] = e.at("ts").get<double>() + e.at("dur").get<double>();
      }
    }
  }
  CHECK(complete > 0);
  for (int s = 0; s < 4; ++s) {
    CHECK(processes.count(fmt::format("stage {}", s)) == 1);
    for (const char* stream : {"compute", "TP comm", "PP send/recv", "DP comm"})
      CHECK(tracks.count({s, stream}) == 1);
    // cp and ep are 1: no track can carry anything, so none is drawn.
    for (const char* stream : {"CP comm", "EP comm"}) CHECK(tracks.count({s, stream}) == 0);
  }
  // Every pipeline message: one send, one receive, the receive ending no earlier than the send.
  // Interleaved 1F1B over 4 stages x 2 chunks: 7 hops forward and 7 back per micro-batch.
  const int m = w.microbatches();
  CHECK(sends.size() == static_cast<size_t>(2 * 7 * m));
  CHECK(sends == receives);
  for (const auto& [id, t] : send_time) CHECK(receive_end.at(id) >= t);
  CHECK(counters.count("nvlink utilisation %") == 1);
  CHECK(counters.count("nic utilisation %") == 1);
}

TEST_CASE("sim::Engine: zero-bubble (ZB-H1) shrinks the 1F1B bubble with free communication", "[engine]") {
  MachineSpec machine = small_machine(1);
  machine.server.nvlink_bandwidth = BytesPerSecond(1e18);
  machine.server.nvlink_latency = Seconds(0);
  const CostModel cost(free_latency_profile());
  auto bubble = [&](PipelineScheduleKind kind) {
    const Workload w(gpt(8, 2048, 16, 8), {.global_batch = 8, .micro_batch = 1, .precision = Precision::FP16},
                     {.tp = 1, .pp = 4, .dp = 1, .schedule = kind});
    const SimulationResult r = simulate(machine, w, cost, {});
    return r.breakdown.pp_bubble.value() / (r.iteration_time - r.breakdown.optimizer).value();
  };
  const double one_f_one_b = bubble(PipelineScheduleKind::ONE_F_ONE_B);
  const double zero_bubble = bubble(PipelineScheduleKind::ZERO_BUBBLE);
  INFO("1F1B bubble " << one_f_one_b << ", ZB-H1 bubble " << zero_bubble);
  CHECK(zero_bubble < 0.6 * one_f_one_b);
}

TEST_CASE("sim::Engine: ZeRO-1 reduce-scatters gradients and gathers parameters", "[engine]") {
  const CostModel cost(a100_profile());
  const MachineSpec machine = small_machine(4);
  auto run = [&](int zero) {
    const Workload w(gpt(4, 2048, 16, 51200),
                     {.global_batch = 32, .micro_batch = 1, .precision = Precision::BF16},
                     {.tp = 1, .pp = 1, .dp = 32, .zero = zero, .dp_overlap = false});
    return simulate(machine, w, cost, {});
  };
  const SimulationResult plain = run(0);
  const SimulationResult zero1 = run(1);
  // bf16 training reduces fp32 gradients: the all-reduce moves 2 x 4 bytes per parameter per
  // rank, the reduce-scatter 4 and the bf16 parameter all-gather 2, three quarters of it.
  const double ratio = zero1.breakdown.dp_comm_exposed.value() / plain.breakdown.dp_comm_exposed.value();
  CHECK(ratio == Approx(0.75).epsilon(0.1));
  // The optimizer works on a 1/dp shard; only zeroing the whole gradient buffer (4 of the 42
  // bytes per parameter of the step) is not sharded.
  CHECK(zero1.breakdown.optimizer.value() < plain.breakdown.optimizer.value() / 4);
}

TEST_CASE("sim::Engine: ZeRO-2 reduce-scatters gradients every micro-batch", "[engine]") {
  const CostModel cost(free_latency_profile());
  const MachineSpec machine = small_machine(4);
  auto run = [&](int zero) {
    const Workload w(gpt(4, 2048, 16, 51200),
                     {.global_batch = 128, .micro_batch = 1, .precision = Precision::BF16},
                     {.tp = 1, .pp = 1, .dp = 32, .zero = zero, .dp_overlap = false});
    return simulate(machine, w, cost, {});
  };
  const SimulationResult zero1 = run(1);
  const SimulationResult zero2 = run(2);
  // 4 micro-batches: ZeRO-1 moves one fp32 reduce-scatter (4 bytes per parameter) and one bf16
  // all-gather (2), ZeRO-2 four reduce-scatters and the same all-gather.
  const double ratio = zero2.breakdown.dp_comm_exposed.value() / zero1.breakdown.dp_comm_exposed.value();
  CHECK(ratio == Approx((4 * 4 + 2) / 6.0).epsilon(0.05));
}

TEST_CASE("sim::Engine: context and expert parallel collectives run inside the lockstep block", "[engine]") {
  const CostModel cost(a100_profile());
  const MachineSpec machine = small_machine(8);
  ModelSpec model = gpt(4, 2048, 16, 51200);
  model.seq_len = 8192;
  SECTION("context parallel, all-gather kind: exposed") {
    const Workload w(model, {.global_batch = 8, .micro_batch = 1, .precision = Precision::BF16},
                     {.tp = 4, .pp = 1, .dp = 2, .cp = 4, .cp_kind = ContextParallelKind::ALL_GATHER});
    const SimulationResult r = simulate(machine, w, cost, {});
    CHECK(r.simulated_gpus == 32);
    CHECK(r.actors == 2 + 1);
    CHECK(r.breakdown.cp_comm_exposed.value() > 0);
  }
  SECTION("expert parallel: all-to-all exposed") {
    ModelSpec moe = gpt(4, 2048, 16, 51200);
    moe.moe = MoeSpec{.experts = 8, .top_k = 2};
    const Workload w(moe, {.global_batch = 16, .micro_batch = 1, .precision = Precision::BF16},
                     {.tp = 2, .pp = 1, .dp = 8, .ep = 4});
    const SimulationResult r = simulate(machine, w, cost, {});
    CHECK(r.simulated_gpus == 16);
    CHECK(r.actors == 2 + 1);
    CHECK(r.breakdown.ep_comm_exposed.value() > 0);
  }
}

TEST_CASE("sim::Engine: pipeline_sync blocks sends and pays a launch after each p2p call", "[engine]") {
  const CostModel cost(a100_profile());
  const MachineSpec machine = small_machine(4);
  const bool interleaved = GENERATE(false, true);
  ParallelismSpec p{.tp = 4, .pp = 4, .dp = 2};
  if (interleaved) {
    p.schedule = PipelineScheduleKind::INTERLEAVED_1F1B;
    p.virtual_stages = 2;
  }
  const TrainingSpec t{.global_batch = 16, .micro_batch = 1, .precision = Precision::FP16};
  const Workload plain(gpt(8, 1024, 16, 51200), t, p);
  p.pipeline_sync = true;
  const Workload synced(gpt(8, 1024, 16, 51200), t, p);
  const SimulationResult a = simulate(machine, plain, cost, {});
  const SimulationResult b = simulate(machine, synced, cost, {}); // no deadlock in either schedule
  // At least one launch per micro-batch and pass on the critical path; never faster.
  const double launches = 2.0 * plain.microbatches() * cost.profile().launch_overhead.value();
  CHECK(b.iteration_time.value() >= a.iteration_time.value() + launches);
}

TEST_CASE("sim::Engine: ZeRO-3 pays each per-layer all-gather's latency", "[engine]") {
  const MachineSpec machine = small_machine(4);
  auto run = [&](const CostModel& cost, Zero3Unit unit) {
    ParallelismSpec p{.tp = 1, .pp = 1, .dp = 32, .zero = 3, .dp_overlap = false, .zero_overlap = false};
    p.zero3_unit = unit;
    p.zero3_bucket = 1e12; // one bucket: the whole chunk in one all-gather
    const Workload w(gpt(8, 2048, 16, 51200),
                     {.global_batch = 64, .micro_batch = 1, .precision = Precision::BF16}, p);
    return simulate(machine, w, cost, {}).iteration_time.value();
  };
  // The same bytes in 8 all-gathers per pass instead of one: with free latency the same time...
  const CostModel free(free_latency_profile());
  CHECK(run(free, Zero3Unit::LAYER) == Approx(run(free, Zero3Unit::BUCKET)).epsilon(0.02));
  // ...with NCCL's latencies, 7 more per pass, forward and backward, for each of 2 micro-batches.
  const CostModel cost(a100_profile());
  const CollectivePlan plan =
      cost.collective(CollectiveKind::ALL_GATHER, Bytes(1e6), {.ranks = 32, .servers = 4});
  const double extra = run(cost, Zero3Unit::LAYER) - run(cost, Zero3Unit::BUCKET);
  INFO("extra " << extra << " s, one gather's latency " << plan.latency.value() << " s");
  CHECK(extra > 0.5 * 2 * 2 * 7 * plan.latency.value());
}

TEST_CASE("sim::part_collectives: ZeRO-3's backward gathers go with their units", "[engine]") {
  const CollectiveOp first{.name = "zero3_param_gather_bwd",
                           .kind = CollectiveKind::ALL_GATHER,
                           .group = GroupKind::DP,
                           .bytes = Bytes(1e6)};
  CollectiveOp prefetch = first;
  prefetch.name = "zero3_param_gather_bwd_prefetch";
  prefetch.overlap_with_compute = true;
  prefetch.count = 7;
  const CollectiveOp tp{.name = "tp_all_reduce", .group = GroupKind::TP, .bytes = Bytes(1e6)};
  const std::vector<CollectiveOp> comm{first, prefetch, tp, tp};
  const int parts = 8;
  int gathers = 0;
  int tps = 0;
  for (int k = 0; k < parts; ++k) {
    const std::vector<CollectiveOp> part = part_collectives(comm, k, parts);
    for (const CollectiveOp& op : part) {
      if (op.name == "zero3_param_gather_bwd") CHECK(k == 0); // before the pass's first unit
      if (op.name == "zero3_param_gather_bwd_prefetch") {
        CHECK(op.count == 1); // one unit ahead of each part but the last
        CHECK(k < parts - 1);
        gathers += op.count;
      }
      if (op.group == GroupKind::TP) ++tps;
    }
  }
  CHECK(gathers == 7);
  CHECK(tps == 2); // the others whole, each once
}

TEST_CASE("sim::Engine: ZeRO-3's backward gathers hide under the compute of the units before them",
          "[engine]") {
  // MPT-13B's shape on 8 GPUs of one server: a layer's gather and reduce-scatter take less than
  // its backward, so only the first unit's gather and the last unit's reduce-scatter show.
  const MachineSpec machine = small_machine(1);
  const CostModel cost(a100_profile());
  ParallelismSpec p{.tp = 1, .pp = 1, .dp = 8, .zero = 3};
  p.zero3_unit = Zero3Unit::LAYER;
  const Workload w(gpt(8, 5120, 40, 50368),
                   {.global_batch = 16, .micro_batch = 2, .precision = Precision::BF16}, p);
  const SimulationResult r = simulate(machine, w, cost, {});
  const Bytes layer = Bytes(12.0 * 5120 * 5120 * 2);
  const GroupShape dp{.ranks = 8, .servers = 1};
  const BytesPerSecond nvlink = machine.server.nvlink_bandwidth, nic = machine.server.nic_bandwidth;
  const double gather = cost.collective_time(CollectiveKind::ALL_GATHER, layer, dp, nvlink, nic).value();
  const double scatter =
      cost.collective_time(CollectiveKind::REDUCE_SCATTER, layer * 2.0, dp, nvlink, nic).value();
  INFO("dp exposed " << r.breakdown.dp_comm_exposed.value() << " s, a layer's gather " << gather
                     << " s and reduce-scatter " << scatter << " s");
  CHECK(r.breakdown.dp_comm_exposed.value() < 2 * (gather + scatter));
}

TEST_CASE("sim::Engine: overlapped communication slows the compute beside it", "[engine]") {
  const MachineSpec machine = small_machine(1);
  const CostModel cost(a100_profile()); // 108 SMs
  auto compute = [&](bool overlap) {
    ParallelismSpec p{.tp = 8, .pp = 1, .dp = 1};
    p.tp_overlap = overlap;
    const Workload w(gpt(4, 4096, 32, 51200),
                     {.global_batch = 4, .micro_batch = 1, .precision = Precision::BF16}, p);
    return simulate(machine, w, cost, {}).breakdown.compute.value();
  };
  // Userbuffers take 16 of the 108 SMs while they run: the compute beside them is slower, by at
  // most 108/92.
  const double alone = compute(false), beside = compute(true);
  CHECK(beside > alone);
  CHECK(beside < alone / (1 - 16.0 / 108) * 1.0001);
}

TEST_CASE("calibration::beside_exposed: a collective hides under its own GEMM only", "[engine]") {
  const CostModel cost(a100_profile());
  auto gemm = [](const std::string& name, long m) {
    ComputeOp op;
    op.name = name;
    op.kind = OpKind::GEMM;
    op.dtype = Precision::BF16;
    op.gemm = GemmShape{.m = m, .n = 4096, .k = 4096};
    op.flops = Flops(2.0 * double(m) * 4096 * 4096);
    return op;
  };
  // Two layers' worth: a, b, a, b.
  const std::vector<ComputeOp> compute = {gemm("a", 1024), gemm("b", 8192), gemm("a", 2048), gemm("b", 8192)};
  const Seconds a1 = cost.compute_time(compute[0]), a2 = cost.compute_time(compute[2]);
  const Seconds b = cost.compute_time(compute[1]);
  auto comm = [](const std::string& beside, double ms) {
    CollectiveOp op;
    op.name = "c";
    op.bytes = Bytes(ms); // the test's comm_time reads the time from here
    op.beside = beside;
    return op;
  };
  const auto time = [](const CollectiveOp& op) { return Seconds(op.bytes.value() * 1e-3); };
  const double longer = (a2.value() + 1e-3) * 1e3; // longer than either "a"
  // The k-th collective naming a GEMM pairs with the k-th of that name.
  CHECK(beside_exposed(compute, {comm("a", longer), comm("a", longer)}, cost, time).value() ==
        Approx(2 * longer * 1e-3 - a1.value() - a2.value()));
  // Shorter than its GEMM: hidden; no name, or a GEMM the block lacks: left to the block's rule.
  CHECK(beside_exposed(compute, {comm("b", b.value() * 1e3 / 2)}, cost, time).value() == 0.0);
  CHECK(beside_exposed(compute, {comm("", 1e6), comm("z", 1e6)}, cost, time).value() == 0.0);
  // A third "a" collective has no third "a" GEMM.
  CHECK(beside_exposed(compute, {comm("a", 0), comm("a", 0), comm("a", 1e6)}, cost, time).value() == 0.0);
}

TEST_CASE("sim::Engine: a userbuffers collective longer than its GEMM stalls the compute", "[engine]") {
  const MachineSpec machine = small_machine(1);
  const CostModel cost(a100_profile());
  // tp 8 on a small hidden size: the attention projection's reduce-scatter outlasts its GEMM.
  ParallelismSpec p{.tp = 8, .pp = 1, .dp = 1};
  p.sequence_parallel = true;
  p.tp_overlap = true;
  const Workload w(gpt(2, 1024, 16, 51200),
                   {.global_batch = 4, .micro_batch = 4, .precision = Precision::BF16}, p);
  const ChunkWork& c = w.chunk(0, 0);
  std::vector<CollectiveOp> forward = c.forward.comm;
  for (CollectiveOp& op : forward) op.overlap_with_compute = true;
  const auto tp_time = [&](const CollectiveOp& op) {
    return cost.collective_time(op.kind, op.bytes, GroupShape{.ranks = 8, .servers = 1},
                                machine.server.nvlink_bandwidth, machine.server.nic_bandwidth);
  };
  const Seconds stall = beside_exposed(c.forward.compute, forward, cost, tp_time);
  REQUIRE(stall.value() > 0);
  const SimulationResult r = simulate(machine, w, cost, {});
  // At least the forward's stall for each of the 4 micro-batches is exposed TP time.
  CHECK(r.breakdown.tp_comm_exposed.value() >= 4 * stall.value() * 0.999);
}

TEST_CASE("calibration::compute_under_overlap: slowed while the kernel runs, full speed after", "[engine]") {
  const Seconds c(1.0);
  CHECK(compute_under_overlap(c, Seconds(0.5), 0.0).value() == 1.0);
  CHECK(compute_under_overlap(c, Seconds(0), 0.25).value() == 1.0);
  // Half a second at 3/4 speed leaves 0.625 s of work at full speed.
  CHECK(compute_under_overlap(c, Seconds(0.5), 0.25).value() == Approx(1.125));
  // A kernel longer than the slowed compute: all of it at 3/4 speed.
  CHECK(compute_under_overlap(c, Seconds(10), 0.25).value() == Approx(1 / 0.75));
  CHECK(overlap_sm_share(USERBUFFERS_SMS, 132) == Approx(16.0 / 132));
  // NCCL across servers: two channels per ring leaving the server, one ring per NIC at most.
  CHECK(nccl_kernel_sms(1, 16, 8, 24) == 2);
  CHECK(nccl_kernel_sms(8, 2, 8, 24) == 16);
  CHECK(nccl_kernel_sms(8, 2, 4, 24) == 8);
  // Inside one server: the GPU's NVLink rings, whatever the group's size; without that figure
  // (V100's profile) the NIC rule, as if each rank had a NIC of its own.
  CHECK(nccl_kernel_sms(8, 1, 8, 24) == 24);
  CHECK(nccl_kernel_sms(4, 1, 8, 24) == 24);
  CHECK(nccl_kernel_sms(8, 1, 8, 0) == 16);
  CHECK(nccl_kernel_sms(8, 1, 8, 64) == NCCL_MAX_CHANNELS);
}

TEST_CASE("calibration::Profile: the NVLink ring channels of the shipped NVSwitch GPUs", "[engine]") {
  // NCCL's logs of 8-GPU NVSwitch servers: HGX A100 and H100 run 24 ring channels.
  for (const char* gpu : {"A100-SXM4-80GB", "H100-SXM5-80GB"}) {
    const Profile p =
        load_profile(find_profile(std::string(ODYSSEY_DATA_DIR) + "/calibration/profiles", gpu));
    CHECK(p.nvlink.ring_channels == 24);
  }
}
