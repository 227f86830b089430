// `odyssey collective`: simulated nccl-tests figures against the public ones.
#include <catch2/catch.hpp>

#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "calibration/cost_model.hpp"
#include "calibration/profile.hpp"
#include "sim/collective.hpp"
#include "sim/nccl_flows.hpp"
#include "tools/scenario.hpp"

using namespace odyssey;

namespace {

const std::string DATA = ODYSSEY_DATA_DIR;

CollectiveRun run(const std::string& machine_name, CollectiveKind kind, int gpus, std::vector<Bytes> sizes) {
  const MachineSpec machine = load_machine(machine_name, {.data_dir = DATA, .overrides = {}});
  const CostModel cost(load_profile(find_profile(DATA + "/calibration/profiles", machine.gpu.type)));
  return simulate_collective(machine, cost, kind, gpus, sizes);
}

} // namespace

TEST_CASE("sim::Collective: large all-reduce bus bandwidth within 15% of NVIDIA's nccl-tests figures",
          "[collective]") {
  // ../shared/reference/hardware.yaml, collectives_busbw (NVIDIA GTC24 S62129), GB/s.
  struct Case {
    const char* machine;
    int gpus;
    double published;
  };
  const Case cases[] = {
      {"azure-openai-2020", 8, 122},  // NVLink2 V100, inside a server
      {"dgx-a100-superpod", 8, 232},  // NVLink3 A100
      {"dgx-a100-superpod", 64, 192}, // DGX A100: NVLink3 + 8 x 200 Gb/s, across servers
      {"dgx-h100-superpod", 8, 370},  // NVLink4 H100
      {"dgx-h100-superpod", 64, 380}, // DGX H100: NVLink4 + 8 x 400 Gb/s, across servers
  };
  for (const Case& c : cases) {
    const CollectiveRun r = run(c.machine, CollectiveKind::ALL_REDUCE, c.gpus, {Bytes(4.0 * (1L << 30))});
    const double busbw = r.rows.front().busbw.value() / 1e9;
    INFO(c.machine << " x " << c.gpus << ": " << busbw << " GB/s vs " << c.published);
    CHECK(std::abs(busbw - c.published) / c.published <= 0.15);
  }
}

TEST_CASE("sim::Collective: small-message latency grows with the ring's step count", "[collective]") {
  double previous = 0;
  for (int gpus : {8, 16, 64, 256}) {
    const CollectiveRun r = run("dgx-a100-superpod", CollectiveKind::ALL_REDUCE, gpus, {Bytes(8)});
    INFO(gpus << " GPUs: " << r.rows.front().time.value() * 1e6 << " us");
    CHECK(r.rows.front().time.value() > previous);
    CHECK(r.rows.front().protocol == "LL");
    previous = r.rows.front().time.value();
  }
}

TEST_CASE("sim::Collective: nccl-tests' algbw and busbw definitions", "[collective]") {
  CHECK(bus_factor(CollectiveKind::ALL_REDUCE, 8) == Approx(1.75));
  CHECK(bus_factor(CollectiveKind::ALL_GATHER, 8) == Approx(0.875));
  CHECK(bus_factor(CollectiveKind::REDUCE_SCATTER, 4) == Approx(0.75));
  CHECK(bus_factor(CollectiveKind::ALL_TO_ALL, 8) == Approx(0.875));
  CHECK(bus_factor(CollectiveKind::BROADCAST, 8) == Approx(1.0));
  const CollectiveRun r =
      run("dgx-h100-superpod", CollectiveKind::ALL_GATHER, 16, {Bytes(1 << 20), Bytes(1 << 21)});
  REQUIRE(r.rows.size() == 2);
  for (const CollectiveRow& row : r.rows) {
    CHECK(row.algbw.value() == Approx(row.bytes.value() / row.time.value()));
    CHECK(row.busbw.value() == Approx(row.algbw.value() * 15.0 / 16.0));
  }
}

TEST_CASE("sim::Collective: all-to-all slows with oversubscription in proportion to the bisection",
          "[collective]") {
  // Leaves of 4 servers keep the all-to-all small (every GPU pair is a flow).
  const MachineSpec base =
      load_machine("dgx-a100-superpod",
                   {.data_dir = DATA,
                    .overrides = {"machine.fabric.servers_per_leaf=4", "machine.fabric.leaves_per_pod=384"}});
  const CostModel cost(load_profile(find_profile(DATA + "/calibration/profiles", base.gpu.type)));
  // Two full leaves: half of every server's all-to-all traffic crosses its leaf's trunk, so once
  // the trunk (injection / oversubscription) is the bottleneck, time grows with oversubscription.
  const int gpus = 2 * base.fabric.servers_per_leaf * base.server.gpus;
  auto time_with = [&](double oversubscription) {
    MachineSpec m = base;
    m.fabric.leaf_oversubscription = oversubscription;
    return simulate_collective(m, cost, CollectiveKind::ALL_TO_ALL, gpus, {Bytes(1L << 28)})
        .rows.front()
        .time.value();
  };
  const double t1 = time_with(1.0);
  const double t4 = time_with(4.0);
  const double t8 = time_with(8.0);
  INFO("1:1 " << t1 << " s, 4:1 " << t4 << " s, 8:1 " << t8 << " s");
  CHECK(t4 > 1.8 * t1);
  CHECK(t8 / t4 == Approx(2.0).epsilon(0.1));
}

TEST_CASE("sim::Collective: NCCL's tuning picks trees for small all-reduces across servers, rings for large",
          "[collective]") {
  const CollectiveRun r = run("dgx-a100-superpod", CollectiveKind::ALL_REDUCE, 1024, {Bytes(8)});
  CHECK(r.rows[0].algorithm == "tree");
  // A tree's latency grows with log2(servers), a ring's with the ranks: 1,024 ranks stay well
  // under a millisecond only with the tree (a ring would take 2 x 1,023 steps).
  CHECK(r.rows[0].time.value() < 200e-6);
  // Over 8 servers a large message goes round the ring (its bandwidth term is 0.92 / (2(n-1)/n)
  // better than the tree's); at 1,024 GPUs the ring's 2,046 steps cost ~10 ms and NCCL's model
  // keeps the tree even at 4 GiB.
  CHECK(
      run("dgx-a100-superpod", CollectiveKind::ALL_REDUCE, 64, {Bytes(4.0 * (1L << 30))}).rows[0].algorithm ==
      "ring");
  // Within one server NCCL's tree is a chain; Odyssey keeps the ring there.
  CHECK(run("dgx-a100-superpod", CollectiveKind::ALL_REDUCE, 8, {Bytes(8)}).rows[0].algorithm == "ring");
}

TEST_CASE("sim::Collective: over two servers the tree carries the buffer once through the network and wins",
          "[collective]") {
  // "2 nodes is a special case": each server is the root of one tree and a leaf of the other, so
  // the network carries half a ring's bytes and "NCCL should use Tree on 2 nodes for large sizes"
  // (NVIDIA/nccl#946; nccl-tests#196: "On two nodes, NCCL uses the tree"). 16 A100 in 2 DGX A100.
  const MachineSpec machine = load_machine("dgx-a100-superpod", {.data_dir = DATA, .overrides = {}});
  const CostModel cost(load_profile(find_profile(DATA + "/calibration/profiles", machine.gpu.type)),
                       nccl_config(machine, ALL_ALGORITHMS, ALL_PROTOCOLS));
  std::vector<Bytes> sizes;
  for (double mib = 1; mib <= 1024; mib *= 2) sizes.emplace_back(mib * (1 << 20));
  const CollectiveRun r = simulate_collective(machine, cost, CollectiveKind::ALL_REDUCE, 16, sizes);
  double previous = 0;
  for (const CollectiveRow& row : r.rows) {
    const double busbw = row.busbw.value() / 1e9;
    INFO(row.bytes.value() << " B: " << row.algorithm << "/" << row.protocol << ", " << busbw << " GB/s");
    // The tree from 2 MiB (where ring LL128 used to win) to 64 MiB; beyond, the ring's bus
    // bandwidth (192 GB/s through the NICs) beats the tree's, capped at 8 channels x 23.6 GB/s.
    if (row.bytes.value() >= 2 * (1 << 20) && row.bytes.value() <= 64 * (1 << 20))
      CHECK(row.algorithm == "tree");
    CHECK(busbw >= previous); // no dip where a choice changes
    previous = busbw;
    // The simulated flows move what the cost model prices: the trees between the servers and the
    // chains inside them (each NVLink port carries 2(k-1)/k x the buffer each way).
    const Seconds priced =
        cost.collective_time(CollectiveKind::ALL_REDUCE, row.bytes, GroupShape{.ranks = 16, .servers = 2},
                             machine.server.nvlink_bandwidth, machine.server.nic_bandwidth);
    CHECK(row.time.value() == Approx(priced.value()).epsilon(0.05));
  }
  // Published: 183.82 GB/s at 1 GiB on two 8-A100 NDmv4 servers, NCCL 2.17.1
  // (microsoft/mscclpp docs/performance-ndmv4.md).
  const double busbw = r.rows.back().busbw.value() / 1e9;
  INFO("1 GiB: " << busbw << " GB/s");
  CHECK(std::abs(busbw - 183.82) / 183.82 <= 0.10);
}

TEST_CASE("sim::Collective: rings and trees leave a server through every NIC", "[collective]") {
  // Azure's servers have 4 NICs for 8 GPUs: 400 Gb/s per server, so a large all-reduce across
  // servers reaches about 50 GB/s x the protocol's efficiency of bus bandwidth, not half of it.
  const CollectiveRun r = run("azure-openai-2020", CollectiveKind::ALL_REDUCE, 64, {Bytes(1L << 30)});
  CHECK(r.rows[0].busbw.value() / 1e9 > 40);
}

TEST_CASE("sim::Collective: the table reads as nccl-tests' output, column by column", "[collective]") {
  // What scripts that parse nccl-tests' `<op>_perf` output do: skip '#' lines, split the rest on
  // whitespace, read the columns by position (NVIDIA/nccl-tests src/util.cu: size count type redop
  // root | out-of-place time algbw busbw #wrong | in-place time algbw busbw #wrong).
  struct Case {
    CollectiveKind kind;
    const char* redop;
    const char* root;
    double count_per_byte; // elements per byte of the size column
  };
  const Case cases[] = {{CollectiveKind::ALL_REDUCE, "sum", "-1", 1.0 / 4},
                        {CollectiveKind::ALL_GATHER, "none", "-1", 1.0 / 4 / 16},
                        {CollectiveKind::BROADCAST, "none", "0", 1.0 / 4}};
  for (const Case& c : cases) {
    const CollectiveRun r =
        run("dgx-a100-superpod", c.kind, 16, {Bytes(1 << 10), Bytes(1 << 20), Bytes(64.0 * (1 << 20))});
    const std::string text = render_collective_text(r);
    INFO(text);
    std::istringstream lines(text);
    std::vector<std::vector<std::string>> rows;
    std::vector<std::string> header;
    double average = -1;
    for (std::string line; std::getline(lines, line);) {
      std::istringstream in(line);
      std::vector<std::string> words;
      for (std::string w; in >> w;) words.push_back(w);
      if (line.starts_with("#")) {
        if (line.find("#wrong") != std::string::npos) header = words;
        if (line.starts_with("# Avg bus bandwidth")) average = std::stod(line.substr(line.find(':') + 1));
        continue;
      }
      if (!words.empty()) rows.push_back(words);
    }
    const std::vector<std::string> expected_header = {"#",    "size",  "count", "type",  "redop",
                                                      "root", "time",  "algbw", "busbw", "#wrong",
                                                      "time", "algbw", "busbw", "#wrong"};
    CHECK(header == expected_header);
    REQUIRE(rows.size() == r.rows.size());
    double sum = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      const std::vector<std::string>& w = rows[i];
      const CollectiveRow& row = r.rows[i];
      REQUIRE(w.size() == 13);
      CHECK(std::stod(w[0]) == row.bytes.value());
      CHECK(std::stod(w[1]) == row.bytes.value() * c.count_per_byte);
      CHECK(w[2] == "float");
      CHECK(w[3] == c.redop);
      CHECK(w[4] == c.root);
      CHECK(std::stod(w[5]) == Approx(row.time.value() * 1e6).epsilon(0.01));
      CHECK(std::stod(w[6]) == Approx(row.algbw.value() / 1e9).margin(0.006));
      CHECK(std::stod(w[7]) == Approx(row.busbw.value() / 1e9).margin(0.006));
      CHECK(w[8] == "N/A");
      for (int k = 5; k < 8; ++k) CHECK(w[static_cast<size_t>(k + 4)] == w[static_cast<size_t>(k)]);
      CHECK(w[12] == "N/A");
      sum += row.busbw.value() / 1e9;
    }
    CHECK(average == Approx(sum / static_cast<double>(rows.size())).epsilon(1e-5));
  }
}

TEST_CASE("sim::tree_edges_as_rings: every GPU keeps its flows in and out, none stays in a server",
          "[collective]") {
  // A double binary tree over 11 servers, two GPUs of each (two channels of heads).
  const int gpus = 8;
  std::vector<long> members;
  for (long s = 0; s < 11; ++s)
    for (long g : {s * gpus + 1, s * gpus + 5}) members.push_back(g);
  const ServerSpec server{.gpus = gpus, .nics = 8};
  std::vector<sim::Flow> flows =
      sim::nccl_trees(members, server, {.size = Bytes(1e9), .efficiency_net = 1.0});
  const std::vector<sim::Flow> tree = flows;
  REQUIRE(sim::tree_edges_as_rings(flows, gpus));
  REQUIRE(flows.size() == tree.size());
  std::map<long, int> out_tree, in_tree, out_ring, in_ring;
  int moved = 0;
  for (size_t i = 0; i < flows.size(); ++i) {
    CHECK(flows[i].src == tree[i].src); // what the report counts is the tree's own flow
    CHECK(flows[i].dst == tree[i].dst);
    CHECK(flows[i].bytes.value() == tree[i].bytes.value());
    ++out_tree[tree[i].src];
    ++in_tree[tree[i].dst];
    const long to = flows[i].sim_dst >= 0 ? flows[i].sim_dst : flows[i].dst;
    CHECK(to / gpus != flows[i].src / gpus);
    CHECK(to % gpus == flows[i].src % gpus); // the same position, so the same rail
    ++out_ring[flows[i].src];
    ++in_ring[to];
    moved += flows[i].sim_dst >= 0 ? 1 : 0;
  }
  CHECK(out_ring == out_tree);
  CHECK(in_ring == in_tree);
  CHECK(moved == static_cast<int>(flows.size()));

  // A GPU that sends more than it receives is no tree: nothing moves.
  std::vector<sim::Flow> lopsided = {{.src = 0, .dst = 8, .bytes = Bytes(1)},
                                     {.src = 0, .dst = 16, .bytes = Bytes(1)},
                                     {.src = 8, .dst = 0, .bytes = Bytes(1)}};
  CHECK_FALSE(sim::tree_edges_as_rings(lopsided, gpus));
  for (const sim::Flow& f : lopsided) CHECK(f.sim_dst == -1);
}
