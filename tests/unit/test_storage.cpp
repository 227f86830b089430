// The storage system and checkpoints (sim/storage.*): the simulated write against the storage's
// limits, properties, and what a checkpoint stalls.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <map>

#include <nlohmann/json.hpp>

#include "models/input/diagnostics.hpp"
#include "sim/report.hpp"
#include "sim/storage.hpp"
#include "tools/run.hpp"
#include "tools/scenario.hpp"

using namespace odyssey;

namespace {

const std::string DATA = ODYSSEY_DATA_DIR;

MachineSpec machine(const std::vector<std::string>& overrides = {}) {
  return load_machine("dgx-a100-superpod", {.data_dir = DATA, .overrides = overrides});
}

} // namespace

TEST_CASE("sim::plan_checkpoint: the write is bound by the storage or by the servers' storage NICs",
          "[storage]") {
  // 1 TB from 64 servers (512 GPUs): the servers' 64 x 50 GB/s = 3.2 TB/s exceed 2 TB/s of storage.
  const MachineSpec m = machine({"machine.storage.metadata_latency=10 ms"});
  const CheckpointPlan p = plan_checkpoint(m, Bytes(1e12), 512);
  REQUIRE(p.modelled);
  CHECK(p.servers == 64);
  CHECK(p.per_gpu.value() == Approx(1e12 / 512));
  CHECK(p.per_server.value() == Approx(8e12 / 512));
  CHECK(p.to_storage.value() == Approx(0.010 + 1e12 / 2e12).epsilon(1e-3));
  CHECK(p.from_storage.value() == Approx(p.to_storage.value()).epsilon(1e-3));
  // 16 servers: 16 x 50 GB/s = 0.8 TB/s, under the storage's 2 TB/s.
  const CheckpointPlan few = plan_checkpoint(m, Bytes(1e12), 128);
  CHECK(few.to_storage.value() == Approx(0.010 + 1e12 / (16 * 50e9)).epsilon(1e-3));
  // GPU -> host: each GPU's 1/128 of it over its 32 GB/s PCIe link, all at once.
  CHECK(few.device_to_host.value() == Approx(1e12 / 128 / 32e9));
  CHECK(few.write().value() == Approx(few.device_to_host.value() + few.to_storage.value()));
}

TEST_CASE("sim::plan_checkpoint: more storage bandwidth never slows a write", "[storage]") {
  double previous = 1e300;
  for (const char* bw : {"200 GB/s", "1 TB/s", "2 TB/s", "7 TB/s"}) {
    const CheckpointPlan p =
        plan_checkpoint(machine({fmt::format("machine.storage.bandwidth={}", bw)}), Bytes(2e12), 1024);
    CHECK(p.to_storage.value() <= previous);
    previous = p.to_storage.value();
  }
}

TEST_CASE("sim::plan_checkpoint: a server the job fills in part writes only its GPUs' shards", "[storage]") {
  // 12 GPUs: one full server and one with 4 GPUs; the full one's 8 shards set the time.
  const MachineSpec m = machine({"machine.storage.metadata_latency=none"});
  const CheckpointPlan p = plan_checkpoint(m, Bytes(12e9), 12);
  CHECK(p.servers == 2);
  CHECK(p.to_storage.value() == Approx(8e9 / 50e9).epsilon(1e-3));
}

TEST_CASE("sim::plan_checkpoint: without storage nothing is modelled; too large a checkpoint is bad input",
          "[storage]") {
  const CheckpointPlan none = plan_checkpoint(machine({"machine.storage.bandwidth=none"}), Bytes(1e12), 64);
  CHECK_FALSE(none.modelled);
  CHECK(none.write().value() == 0);
  CHECK(none.stall(CheckpointMode::SYNC).value() == 0);
  try {
    (void)plan_checkpoint(machine({"machine.storage.capacity=1 TB"}), Bytes(2e12), 64);
    FAIL("no error");
  } catch (const InputError& e) {
    CHECK(e.key_path() == "storage.capacity");
  }
}

TEST_CASE("sim::host_copy_time: GPUs under one PCIe switch share its uplink", "[storage]") {
  ServerSpec s;
  s.gpus = 8;
  s.pcie_bandwidth = BytesPerSecond(16e9);
  CHECK(host_copy_time(s, Bytes(16e9)).value() == Approx(1.0));
  s.pcie_switches = 4; // two GPUs a switch
  CHECK(host_copy_time(s, Bytes(16e9)).value() == Approx(2.0));
  s.pcie_bandwidth = BytesPerSecond(0);
  CHECK(host_copy_time(s, Bytes(16e9)).value() == 0);
}

TEST_CASE("sim::CheckpointPlan: sync stalls for the write, async for the copy and holds host memory",
          "[storage]") {
  const CheckpointPlan p = plan_checkpoint(machine(), Bytes(1e12), 512);
  CHECK(p.stall(CheckpointMode::SYNC).value() == p.write().value());
  CHECK(p.stall(CheckpointMode::ASYNC).value() == p.device_to_host.value());
  CHECK(p.stall(CheckpointMode::ASYNC) < p.stall(CheckpointMode::SYNC));
  CHECK(p.host_memory(CheckpointMode::SYNC).value() == 0);
  CHECK(p.host_memory(CheckpointMode::ASYNC).value() == p.per_server.value());
}

TEST_CASE("tools::Run: the recovery policy takes its checkpoint from the storage model", "[storage]") {
  Scenario s = load_scenario(DATA + "/scenarios/megatron-145.6b-dgx-a100.yaml", {.data_dir = DATA});
  const long gpus = s.parallelism.gpus();
  const CheckpointPlan plan = scenario_checkpoint_plan(s, gpus);
  RecoveryPolicy p = scenario_recovery_policy(s, gpus);
  CHECK(p.checkpoint_write.value() == plan.write().value());
  CHECK(p.checkpoint_load.value() == plan.restore().value());
  CHECK(p.stall().value() == plan.stall(s.checkpoint.mode).value());
  // A checkpoint larger than the storage: bad input at the machine's key.
  const Scenario small = load_scenario(DATA + "/scenarios/megatron-145.6b-dgx-a100.yaml",
                                       {.data_dir = DATA, .overrides = {"machine.storage.capacity=1 TB"}});
  CHECK_THROWS_AS(scenario_checkpoint_plan(small, gpus), InputError);
}

TEST_CASE("sim::render_trace: a checkpoint on the host tracks after the iteration", "[storage]") {
  Report r;
  r.iteration_time = Seconds(2);
  r.checkpoint = plan_checkpoint(machine(), Bytes(1e12), 512);
  r.checkpoint_policy.mode = CheckpointMode::ASYNC;
  const auto doc = nlohmann::json::parse(render_trace(r));
  std::map<std::string, nlohmann::json> slices;
  for (const auto& e : doc.at("traceEvents"))
    if (e.at("ph") == "X" && e.at("cat") == "checkpoint") slices[e.at("name").get<std::string>()] = e;
  REQUIRE(slices.size() == 2);
  const auto& copy = slices.at("checkpoint copy");
  const auto& write = slices.at("checkpoint write");
  CHECK(copy.at("ts").get<double>() == Approx(2e6));
  CHECK(copy.at("dur").get<double>() == Approx(r.checkpoint->device_to_host.value() * 1e6));
  CHECK(write.at("ts").get<double>() == Approx(copy.at("ts").get<double>() + copy.at("dur").get<double>()));
  CHECK(write.at("dur").get<double>() == Approx(r.checkpoint->to_storage.value() * 1e6));
  // Async: the copy stalls training, the write does not.
  CHECK(copy.at("args").at("stalls training") == true);
  CHECK(write.at("args").at("stalls training") == false);
}
