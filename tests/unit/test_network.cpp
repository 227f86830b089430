// Network and collectives: NCCL's algorithms beyond rings and trees, and the fabrics beyond fat
// trees, held to published figures and to the properties their structure implies.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "calibration/cost_model.hpp"
#include "calibration/profile.hpp"
#include "models/workload.hpp"
#include "sim/collective.hpp"
#include "sim/engine.hpp"
#include "tools/run.hpp"
#include "tools/scenario.hpp"

using namespace odyssey;

namespace {

const std::string DATA = ODYSSEY_DATA_DIR;

MachineSpec machine(const std::string& name, std::vector<std::string> sets = {}) {
  return load_machine(name, {.data_dir = DATA, .overrides = std::move(sets)});
}

CollectiveRow one(const MachineSpec& m, CollectiveKind kind, int gpus, Bytes size,
                  const std::string& algo = "all", const std::string& proto = "all") {
  const CostModel cost(load_profile(find_profile(DATA + "/calibration/profiles", m.gpu.type)),
                       nccl_config(m, parse_algorithms(algo), parse_protocols(proto)));
  return simulate_collective(m, cost, kind, gpus, {size}).rows.front();
}

const Bytes GIB4(4.0 * (1L << 30));

} // namespace

TEST_CASE("sim::Network: NVLS all-reduce within 15% of NVIDIA's NVLink SHARP figures", "[network]") {
  // ../shared/reference/hardware.yaml collectives_busbw (GTC24 S62129): NVLink4 SHARP (NVLS)
  // H100 inside a server 480 GB/s; DGX H100 with SHARP across servers 480 GB/s. The profile's
  // NVLS efficiency comes from the first, so it agrees by construction; the second adds the
  // switches' in-network reduction and is the independent check.
  const CollectiveRow intra = one(machine("dgx-h100-superpod"), CollectiveKind::ALL_REDUCE, 8, GIB4);
  CHECK(intra.algorithm == "nvls");
  CHECK(std::abs(intra.busbw.value() / 1e9 - 480) / 480 <= 0.15);
  const CollectiveRow sharp = one(machine("dgx-h100-superpod", {"machine.fabric.in_network_reduction=true"}),
                                  CollectiveKind::ALL_REDUCE, 64, GIB4);
  INFO("NVLS + SHARP over 64 GPUs: " << sharp.busbw.value() / 1e9 << " GB/s");
  CHECK(sharp.algorithm == "nvls");
  CHECK(std::abs(sharp.busbw.value() / 1e9 - 480) / 480 <= 0.15);
  // Without NVLink SHARP (A100, NVSwitch gen2) the ring stays.
  CHECK(one(machine("dgx-a100-superpod"), CollectiveKind::ALL_REDUCE, 8, GIB4).algorithm == "ring");
}

TEST_CASE("sim::Network: in-network reduction halves what an all-reduce puts on the NICs", "[network]") {
  // CollNet on A100 (no NVLS): each server sends its buffer once up and gets it back once,
  // where a ring sends 2(n-1)/n of it. With NICs the bottleneck (2 x 100 Gb/s per server of 8
  // GPUs), the all-reduce nearly doubles its bus bandwidth.
  const std::vector<std::string> slow_nics = {"machine.server.nics=2",
                                              "machine.fabric.in_network_reduction=true"};
  const MachineSpec m = machine("dgx-a100-superpod", slow_nics);
  const CollectiveRow ring = one(m, CollectiveKind::ALL_REDUCE, 64, GIB4, "ring");
  const CollectiveRow collnet = one(m, CollectiveKind::ALL_REDUCE, 64, GIB4, "collnet");
  CHECK(collnet.algorithm == "collnet");
  INFO("ring " << ring.busbw.value() / 1e9 << " GB/s, collnet " << collnet.busbw.value() / 1e9 << " GB/s");
  CHECK(collnet.busbw / ring.busbw == Approx(2.0).epsilon(0.1));
  CHECK(one(m, CollectiveKind::ALL_REDUCE, 64, GIB4).algorithm == "collnet");
}

TEST_CASE(
    "sim::Network: PAT for all-gather at one GPU per server, its latency growing with log2 of the ranks",
    "[network]") {
  const MachineSpec m = machine("dgx-h100-superpod", {"machine.server.gpus=1", "machine.server.nics=1"});
  const CollectiveRow r8 = one(m, CollectiveKind::ALL_GATHER, 8, Bytes(8));
  const CollectiveRow r64 = one(m, CollectiveKind::ALL_GATHER, 64, Bytes(8));
  const CollectiveRow r512 = one(m, CollectiveKind::ALL_GATHER, 512, Bytes(8));
  const CollectiveRow r1024 = one(m, CollectiveKind::ALL_GATHER, 1024, Bytes(8));
  // Few ranks: the ring's n-1 LL steps of 2.7 us beat PAT's 8 + log2(n) x 14 us; many: PAT.
  CHECK(r8.algorithm == "ring");
  CHECK(r64.algorithm == "pat");
  CHECK(r1024.algorithm == "pat");
  // Each doubling of the ranks adds one PAT step of 14 us (NCCL's hwLat NET for PAT).
  CHECK((r512.time.value() - r64.time.value()) * 1e6 == Approx(3 * 14).margin(3));
  CHECK((r1024.time.value() - r512.time.value()) * 1e6 == Approx(14).margin(3));
  // Large messages go round the ring (PAT runs at 0.75 of the bus bandwidth).
  CHECK(one(m, CollectiveKind::ALL_GATHER, 8, GIB4).algorithm == "ring");
  // With 8 GPUs per server NCCL does not use PAT.
  CHECK(one(machine("dgx-h100-superpod"), CollectiveKind::ALL_GATHER, 64, Bytes(8)).algorithm == "ring");
}

TEST_CASE("sim::Network: --algo and --proto restrict NCCL's choice as NCCL_ALGO and NCCL_PROTO do",
          "[network]") {
  const MachineSpec h100 = machine("dgx-h100-superpod");
  CHECK(one(h100, CollectiveKind::ALL_REDUCE, 8, GIB4, "ring").algorithm == "ring");
  CHECK(one(h100, CollectiveKind::ALL_REDUCE, 8, GIB4, "^nvls").algorithm == "ring");
  CHECK(one(h100, CollectiveKind::ALL_REDUCE, 64, Bytes(8), "Ring").algorithm == "ring");
  const CollectiveRow ll128 = one(h100, CollectiveKind::ALL_REDUCE, 8, Bytes(8), "ring", "LL128");
  CHECK(ll128.protocol == "LL128");
  // Forcing the algorithm can only slow the collective down: the tuning model had it to choose.
  CHECK(one(h100, CollectiveKind::ALL_REDUCE, 64, Bytes(8), "ring").time.value() >
        one(h100, CollectiveKind::ALL_REDUCE, 64, Bytes(8)).time.value());
  SECTION("unknown names") {
    CHECK_THROWS_WITH(parse_algorithms("ring,nvl"), Catch::Contains("unknown algorithm 'nvl'"));
    CHECK_THROWS_WITH(parse_protocols("LL129"), Catch::Contains("unknown protocol 'LL129'"));
  }
  SECTION("an algorithm the group cannot run") {
    const MachineSpec a100 = machine("dgx-a100-superpod");
    const CostModel cost(load_profile(find_profile(DATA + "/calibration/profiles", a100.gpu.type)),
                         nccl_config(a100, parse_algorithms("nvls"), ALL_PROTOCOLS));
    CHECK_THROWS_AS(simulate_collective(a100, cost, CollectiveKind::ALL_REDUCE, 8, {GIB4}),
                    std::invalid_argument);
  }
}

TEST_CASE("sim::Network: every collective of nccl-tests runs", "[network]") {
  const MachineSpec h100 = machine("dgx-h100-superpod");
  for (CollectiveKind kind :
       {CollectiveKind::ALL_REDUCE, CollectiveKind::ALL_GATHER, CollectiveKind::REDUCE_SCATTER,
        CollectiveKind::BROADCAST, CollectiveKind::REDUCE, CollectiveKind::ALL_TO_ALL,
        CollectiveKind::SEND_RECV}) {
    const CollectiveRow r = one(h100, kind, 16, Bytes(1 << 26));
    INFO(to_string(kind) << ": " << r.busbw.value() / 1e9 << " GB/s " << r.algorithm);
    CHECK(r.time.value() > 0);
    CHECK(r.busbw > BytesPerSecond(10e9));
  }
}

TEST_CASE("sim::Network: a torus's all-to-all is bound by its bisection", "[network]") {
  // 16 servers as a 4 x 4 torus (bisection 16 links), a 2 x 8 torus (8) and a 16-ring (2).
  auto all_to_all = [](const std::string& dims) {
    const MachineSpec m = machine("dgx-a100-superpod", {"machine.servers=16", "machine.fabric.kind=torus",
                                                        "machine.fabric.torus.link_bandwidth=10 GB/s",
                                                        "machine.fabric.torus.dims=" + dims});
    return one(m, CollectiveKind::ALL_TO_ALL, 128, Bytes(1 << 30)).time.value();
  };
  const double square = all_to_all("[4, 4]");
  const double oblong = all_to_all("[2, 8]");
  const double ring = all_to_all("[16, 1]");
  INFO("4x4 " << square << " s, 2x8 " << oblong << " s, 16x1 " << ring << " s");
  CHECK(oblong > 1.5 * square);
  CHECK(ring > 1.5 * oblong);
}

TEST_CASE("sim::Network: a dragonfly's traffic between groups is bound by its global links", "[network]") {
  auto all_to_all = [](int global_links_per_router) {
    const MachineSpec m = machine(
        "dgx-a100-superpod",
        {"machine.servers=16", "machine.fabric.kind=dragonfly", "machine.fabric.dragonfly.groups=4",
         "machine.fabric.dragonfly.routers_per_group=4", "machine.fabric.dragonfly.servers_per_router=1",
         "machine.fabric.dragonfly.link_bandwidth=10 GB/s",
         "machine.fabric.dragonfly.global_links_per_router=" + std::to_string(global_links_per_router)});
    return one(m, CollectiveKind::ALL_TO_ALL, 128, Bytes(1 << 30)).time.value();
  };
  // 4 routers x h global links over 3 other groups: 1 cable per pair of groups at h = 1, 4 at h = 3.
  const double narrow = all_to_all(1);
  const double wide = all_to_all(3);
  INFO("h=1 " << narrow << " s, h=3 " << wide << " s");
  CHECK(narrow > 1.5 * wide);
}

TEST_CASE("sim::Network: PCIe links between GPUs and NICs bound traffic leaving the server", "[network]") {
  const std::vector<std::string> pcie = {"machine.server.pcie_switches=4",
                                         "machine.server.pcie_bandwidth=5 GB/s"};
  const CollectiveRow fast =
      one(machine("dgx-a100-superpod"), CollectiveKind::ALL_REDUCE, 16, Bytes(1 << 30));
  const CollectiveRow slow =
      one(machine("dgx-a100-superpod", pcie), CollectiveKind::ALL_REDUCE, 16, Bytes(1 << 30));
  INFO("without " << fast.busbw.value() / 1e9 << " GB/s, with 5 GB/s PCIe " << slow.busbw.value() / 1e9
                  << " GB/s");
  // Eight channels leave through eight 5 GB/s PCIe links: at most 40 GB/s of bus bandwidth.
  CHECK(slow.busbw < BytesPerSecond(41e9));
  CHECK(fast.busbw > BytesPerSecond(150e9));
}

TEST_CASE("sim::Network: NCCL's rings on a hybrid cube-mesh use all six NVLinks of every GPU", "[network]") {
  // The DGX-1's NVLinks as pairs of one or two 25 GB/s links: the rings follow the mesh's
  // cycles, so the 8 V100 reach the 150 GB/s port figure the profile's efficiency applies to.
  const MachineSpec azure = machine("azure-openai-2020");
  REQUIRE(azure.server.intra == IntraServer::NVLINK_MESH);
  const CollectiveRow mesh = one(azure, CollectiveKind::ALL_REDUCE, 8, GIB4);
  const CollectiveRow nvswitch = one(machine("azure-openai-2020", {"machine.server.intra=nvswitch"}),
                                     CollectiveKind::ALL_REDUCE, 8, GIB4);
  CHECK(mesh.busbw.value() == Approx(nvswitch.busbw.value()).epsilon(0.01));
  // Four GPUs of the mesh are not all neighbours: their ring forwards over two links.
  CHECK(one(azure, CollectiveKind::ALL_REDUCE, 4, GIB4).busbw <
        one(machine("azure-openai-2020", {"machine.server.intra=nvswitch"}), CollectiveKind::ALL_REDUCE, 4,
            GIB4)
            .busbw);
}

TEST_CASE("sim::Network: collectives that share links slow each other as max-min sharing says", "[network]") {
  // Servers with one NIC: two data-parallel rings (GPU 0 and GPU 1 of the same 8 servers) share
  // every NIC, so each gets half of it and takes twice as long as alone; a ring on 8 other
  // servers shares nothing and keeps its time.
  const MachineSpec m = machine("dgx-a100-superpod", {"machine.server.nics=1"});
  const CostModel cost(load_profile(find_profile(DATA + "/calibration/profiles", m.gpu.type)),
                       nccl_config(m, ALL_ALGORITHMS, ALL_PROTOCOLS));
  auto ring_of = [](int first_server, int local) {
    std::vector<long> g;
    for (int s = first_server; s < first_server + 8; ++s) g.push_back(8L * s + local);
    return g;
  };
  const Bytes size(1L << 30);
  auto seconds = [&](const std::vector<std::vector<long>>& groups) {
    std::vector<double> out;
    for (Seconds t : simulate_concurrent(m, cost, CollectiveKind::ALL_REDUCE, groups, size))
      out.push_back(t.value());
    return out;
  };
  const double alone = seconds({ring_of(0, 0)}).front();
  const std::vector<double> shared = seconds({ring_of(0, 0), ring_of(0, 1)});
  const std::vector<double> apart = seconds({ring_of(0, 0), ring_of(8, 0)});
  INFO("alone " << alone << " s, sharing NICs " << shared[0] << " / " << shared[1] << " s, apart "
                << apart[0]);
  CHECK(shared[0] == Approx(2 * alone).epsilon(0.02));
  CHECK(shared[1] == Approx(shared[0]).epsilon(0.001));
  CHECK(apart[0] == Approx(alone).epsilon(0.001));
  CHECK(apart[1] == Approx(alone).epsilon(0.001));
}

TEST_CASE("sim::Network: flows share a congested NIC equally whatever their route, and pay its latency",
          "[network]") {
  // Servers with one NIC: GPU 0 of server 0 all-gathers with server 1 (the same leaf), GPU 1 of
  // server 0 with server 150 (another pod, five more switches away). Both pairs' flows go in and
  // out through server 0's NIC, the only link they share and the bottleneck. A lossless fabric
  // gives each half of it; CM02's TCP-like weights (the inverse of the route latency) gave the
  // pair across pods less, and it finished well after the other.
  const MachineSpec m = machine("dgx-a100-superpod", {"machine.server.nics=1"});
  const CostModel cost(load_profile(find_profile(DATA + "/calibration/profiles", m.gpu.type)),
                       nccl_config(m, ALL_ALGORITHMS, ALL_PROTOCOLS));
  const std::vector<std::vector<long>> pairs = {{0, 8}, {1, 8L * 150}};
  const std::vector<Seconds> big =
      simulate_concurrent(m, cost, CollectiveKind::ALL_GATHER, pairs, Bytes(1L << 30));
  INFO("near pair " << big[0].value() << " s, far pair " << big[1].value() << " s");
  CHECK(big[1].value() == Approx(big[0].value()).epsilon(1e-3));
  // Alone, each pair is twice as fast: the NIC was shared, not split by distance.
  const Seconds alone =
      simulate_concurrent(m, cost, CollectiveKind::ALL_GATHER, {pairs[1]}, Bytes(1L << 30)).front();
  CHECK(big[1].value() == Approx(2 * alone.value()).epsilon(0.02));
  // A tiny message costs about its route's latency: the far pair pays more, by microseconds.
  const std::vector<Seconds> tiny = simulate_concurrent(m, cost, CollectiveKind::ALL_GATHER, pairs, Bytes(8));
  INFO("tiny: near " << tiny[0].value() * 1e6 << " us, far " << tiny[1].value() * 1e6 << " us");
  CHECK(tiny[1] > tiny[0]);
  CHECK(tiny[1].value() - tiny[0].value() < 10e-6);
}

TEST_CASE("sim::Network: placements are permutations, and spreading TP over servers costs", "[network]") {
  for (Placement p : {Placement::TP_IN_SERVER, Placement::DP_ACROSS_RAILS, Placement::TP_ACROSS_SERVERS}) {
    std::vector<char> seen(64, 0);
    for (long r = 0; r < 64; ++r) seen[static_cast<size_t>(place_rank(p, r, 64, 8, 8))]++;
    CHECK(std::all_of(seen.begin(), seen.end(), [](char c) { return c == 1; }));
  }
  // TP peers (ranks 0..7) share a server by default, sit on 8 servers when spread.
  CHECK(place_rank(Placement::TP_ACROSS_SERVERS, 1, 64, 8, 8) / 8 == 1);
  CHECK(place_rank(Placement::TP_IN_SERVER, 1, 64, 8, 8) / 8 == 0);
  // Rail-unaware: rank 8 (server 1's first GPU, data-parallel peer of rank 0) moves to GPU 9.
  CHECK(place_rank(Placement::DP_ACROSS_RAILS, 8, 64, 8, 8) == 9);
  CHECK(place_rank(Placement::DP_ACROSS_RAILS, 8, 64, 8, 8) / 8 == 1);
}

TEST_CASE("sim::Network: a scenario's placement moves its collectives onto other links", "[network]") {
  auto iteration = [](const std::string& placement) {
    const Scenario s = load_scenario(
        DATA + "/scenarios/llama3-70b-dgx-h100.yaml",
        {.data_dir = DATA,
         .overrides = {"parallelism.dp=4", "training.global_batch=64", "parallelism.placement=" + placement,
                       "machine.fabric.leaf_oversubscription=4"}});
    return simulate(s.machine, scenario_workload(s), scenario_cost_model(s), simulation_options(s));
  };
  const SimulationResult in_server = iteration("tp-in-server");
  const SimulationResult across_rails = iteration("dp-across-rails");
  const SimulationResult spread = iteration("tp-across-servers");
  INFO("tp-in-server " << in_server.iteration_time.value() << " s (dp exposed "
                       << in_server.breakdown.dp_comm_exposed.value() << "), dp-across-rails "
                       << across_rails.iteration_time.value() << " s (dp exposed "
                       << across_rails.breakdown.dp_comm_exposed.value() << "), tp-across-servers "
                       << spread.iteration_time.value() << " s");
  // TP over the network instead of NVLink: the tensor-parallel exchanges dominate.
  CHECK(spread.breakdown.tp_comm_exposed.value() > 3 * in_server.breakdown.tp_comm_exposed.value());
  // Off their rails, data-parallel rings cross the 4:1 oversubscribed leaf uplinks.
  CHECK(across_rails.breakdown.dp_comm_exposed.value() > in_server.breakdown.dp_comm_exposed.value());
}

TEST_CASE("sim::Network: PCIe servers and single-NIC RDMA within 15% of NVIDIA's figures", "[network]") {
  // ../shared/reference/hardware.yaml collectives_busbw (GTC24 S62129), GB/s: PCIe Gen4 24, Gen5 48
  // inside a server; 200 Gb and 400 Gb RDMA 24 and 48 across servers. The profiles' pcie and net
  // efficiencies come from these figures, so this checks that PCIe-only servers are priced and
  // routed as PCIe and that one NIC per server is the bottleneck, not an independent figure.
  // (100 GbE over TCP sockets, 10 GB/s, is not modelled: Odyssey's fabrics are RDMA.)
  struct Case {
    const char* machine;
    std::vector<std::string> sets;
    int gpus;
    double published;
  };
  const std::vector<Case> cases = {
      {"dgx-a100-superpod", {"machine.server.intra=pcie", "machine.server.nvlink_bandwidth=32 GB/s"}, 8, 24},
      {"dgx-h100-superpod",
       {"machine.server.intra=pcie", "machine.server.nvlink_bandwidth=64 GB/s", "machine.server.nvls=false"},
       8,
       48},
      {"dgx-a100-superpod", {"machine.server.gpus=1", "machine.server.nics=1"}, 2, 24},
      {"dgx-h100-superpod", {"machine.server.gpus=1", "machine.server.nics=1"}, 2, 48},
  };
  for (const Case& c : cases) {
    const CollectiveRow r = one(machine(c.machine, c.sets), CollectiveKind::ALL_REDUCE, c.gpus, GIB4);
    INFO(c.machine << " " << c.sets.front() << ": " << r.busbw.value() / 1e9 << " GB/s vs " << c.published);
    CHECK(std::abs(r.busbw.value() / 1e9 - c.published) / c.published <= 0.15);
  }
}

TEST_CASE("sim::Network: hashed ECMP lets flows collide on one uplink, spreading does not", "[network]") {
  // Leaves of 4 DGX A100 (32 NIC ports) with 16 uplinks (2:1): the 8 ring channels leaving a leaf
  // each take one uplink by hash; two on the same uplink halve each other, where the aggregate
  // (ideal spreading) gives every channel its share.
  auto ring = [](const char* ecmp) {
    const MachineSpec m = machine("dgx-a100-superpod", {"machine.fabric.servers_per_leaf=4",
                                                        "machine.fabric.leaf_oversubscription=2",
                                                        std::string("machine.fabric.ecmp=") + ecmp});
    return one(m, CollectiveKind::ALL_REDUCE, 64, Bytes(1 << 30), "ring").busbw.value();
  };
  const double spread = ring("spread");
  const double hash = ring("hash");
  INFO("spread " << spread / 1e9 << " GB/s, hash " << hash / 1e9 << " GB/s");
  CHECK(hash < 0.9 * spread);
}
