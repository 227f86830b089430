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
  const auto& write = slices.at("checkpoint drain");
  CHECK(copy.at("ts").get<double>() == Approx(2e6));
  CHECK(copy.at("dur").get<double>() == Approx(r.checkpoint->device_to_host.value() * 1e6));
  CHECK(write.at("ts").get<double>() == Approx(copy.at("ts").get<double>() + copy.at("dur").get<double>()));
  CHECK(write.at("dur").get<double>() == Approx(r.checkpoint->to_storage.value() * 1e6));
  // Async: the copy stalls training, the write does not.
  CHECK(copy.at("args").at("stalls training") == true);
  CHECK(write.at("args").at("stalls training") == false);
}

TEST_CASE("sim::plan_data_loading: the slowest stage sets the loader, and only a shortfall stalls",
          "[storage]") {
  const MachineSpec m = machine();
  const DataJob job{.gpus = 64, .pp = 1, .seq_len = 2048, .global_batch = 512, .vocab = 51200};
  DataSpec spec;
  spec.format = DataFormat::RAW;
  spec.cpu_per_sample = Seconds(8e-3);
  spec.workers = 2;
  const DataLoading d = plan_data_loading(m, spec, job, Seconds(0.2));
  CHECK(d.loaders == 8);
  CHECK(d.samples == Approx(64));
  CHECK(d.sample_bytes.value() == Approx(2049 * 4));
  CHECK(d.cpu.value() == Approx(64 * 8e-3 / 2));
  CHECK(d.bottleneck() == "cpu");
  CHECK(d.stall().value() == Approx(0.256 - 0.2));
  CHECK(d.headroom() == Approx(0.2 / 0.256));
  // Twice the workers halve the CPU stage; enough of them, and nothing stalls.
  spec.workers = 4;
  CHECK(plan_data_loading(m, spec, job, Seconds(0.2)).cpu.value() == Approx(d.cpu.value() / 2));
  spec.workers = 8;
  CHECK(plan_data_loading(m, spec, job, Seconds(0.2)).stall().value() == 0);
  // Storage shares its bandwidth among the loaders, within each one's storage NICs.
  spec.cpu_per_sample = Seconds(0);
  const DataLoading slow =
      plan_data_loading(machine({"machine.storage.bandwidth=8 MB/s"}), spec, job, Seconds(0.2));
  CHECK(slow.storage.value() == Approx(64 * 2049 * 4 / 1e6));
  CHECK(slow.bottleneck() == "storage");
}

TEST_CASE("sim::plan_data_loading: only the first pipeline stage's servers load; defaults by format",
          "[storage]") {
  const DataJob job{.gpus = 512, .pp = 8, .seq_len = 2048, .global_batch = 512, .vocab = 128256};
  const DataLoading d = plan_data_loading(machine(), DataSpec{}, job, Seconds(1));
  CHECK(d.loaders == 8);                             // 64 first-stage GPUs on 8 servers
  CHECK(d.sample_bytes.value() == Approx(2049 * 4)); // ids above 16 bits: 4 bytes
  CHECK(data_bytes_per_token(DataSpec{}, 51200).value() == 2);
  DataSpec raw;
  raw.format = DataFormat::RAW;
  CHECK(data_cpu_per_sample(raw, Bytes(1e9)).value() == Approx(20)); // 20 s a GB
}

TEST_CASE("sim::add_data_loading: a stall lengthens the iteration and every figure derived from it",
          "[storage]") {
  Report r;
  r.iteration_time = Seconds(1);
  r.tokens_per_s = 1000;
  r.mfu = 0.5;
  r.time_to_train = Seconds(100);
  DataLoading d;
  d.iteration = Seconds(1);
  d.cpu = Seconds(1.25);
  add_data_loading(r, d);
  CHECK(r.breakdown.data_stall.value() == Approx(0.25));
  CHECK(r.iteration_time.value() == Approx(1.25));
  CHECK(r.tokens_per_s == Approx(800));
  CHECK(r.mfu == Approx(0.4));
  CHECK(r.time_to_train->value() == Approx(125));
  REQUIRE_FALSE(r.suggestions.empty());
  CHECK(r.suggestions.front().text.find("data.workers") != std::string::npos);
}

TEST_CASE("tools::Run: with ZeRO-Offload the checkpoint copies only what is on the GPUs", "[storage]") {
  // gpt-10b-zero-offload-azure-2020: the optimizer states (12 bytes a parameter) live in host memory,
  // so only the fp16 weights (2 of the 14 bytes a parameter) cross PCIe; the storage write is whole.
  const std::string path = DATA + "/scenarios/gpt-10b-zero-offload-azure-2020.yaml";
  const Scenario offload = load_scenario(path, {.data_dir = DATA});
  const Scenario on_gpu =
      load_scenario(path, {.data_dir = DATA, .overrides = {"parallelism.offload.optimizer=none"}});
  const long gpus = offload.parallelism.gpus();
  const CheckpointPlan with = scenario_checkpoint_plan(offload, gpus);
  const CheckpointPlan without = scenario_checkpoint_plan(on_gpu, gpus);
  CHECK(with.total.value() == without.total.value());
  CHECK(with.to_storage.value() == without.to_storage.value());
  CHECK(with.device_to_host.value() == Approx(without.device_to_host.value() * 2.0 / 14.0));
  CHECK(with.host_to_device.value() == with.device_to_host.value());
  // Parameters offloaded too (ZeRO-3): nothing is copied from the GPUs.
  const Scenario all = load_scenario(
      path, {.data_dir = DATA, .overrides = {"parallelism.zero=3", "parallelism.offload.params=cpu"}});
  CHECK(scenario_checkpoint_plan(all, gpus).device_to_host.value() == 0.0);
}

TEST_CASE("sim::render_trace: the data loader on host tracks, and its stall on every stage", "[storage]") {
  // The loader of gpt-350m-data-stall's shape: 64 raw samples a server on 2 workers at 8 ms each.
  const DataJob job{.gpus = 64, .pp = 1, .seq_len = 2048, .global_batch = 512, .vocab = 51200};
  DataSpec spec;
  spec.format = DataFormat::RAW;
  spec.cpu_per_sample = Seconds(8e-3);
  spec.workers = 6;
  const DataLoading d = plan_data_loading(machine(), spec, job, Seconds(0.05));
  REQUIRE(d.stall().value() > 0);
  Report r;
  r.memory_per_stage.resize(2); // two stages: both wait
  r.iteration_time = d.iteration;
  add_data_loading(r, d);
  const auto doc = nlohmann::json::parse(render_trace(r));
  std::map<std::string, std::vector<nlohmann::json>> slices;
  std::vector<std::string> tracks;
  int loader_pid = -1;
  for (const auto& e : doc.at("traceEvents")) {
    if (e.at("ph") == "M" && e.at("name") == "process_name" &&
        e.at("args").at("name").get<std::string>().starts_with("data loader"))
      loader_pid = e.at("pid").get<int>();
    if (e.at("ph") == "M" && e.at("name") == "thread_name" && e.at("pid") == loader_pid)
      tracks.push_back(e.at("args").at("name").get<std::string>());
    if (e.at("ph") == "X" && e.at("cat") == "data loader")
      slices[e.at("name").get<std::string>()].push_back(e);
  }
  REQUIRE(loader_pid >= 0);
  // Four worker tracks, the last standing for workers 3-5.
  CHECK(tracks == std::vector<std::string>{"storage: read samples", "CPU: worker 0", "CPU: worker 1",
                                           "CPU: worker 2", "CPU: workers 3-5 (each the same)",
                                           "PCIe: host -> GPU"});
  // Each stage runs from the iteration's start for plan_data_loading's time.
  const auto& read = slices.at("read next batch");
  REQUIRE(read.size() == 1);
  CHECK(read[0].at("dur").get<double>() == Approx(d.storage.value() * 1e6));
  const auto& prepare = slices.at(fmt::format("prepare {:.3g} samples", d.samples / 6));
  CHECK(prepare.size() == 4);
  CHECK(prepare[0].at("dur").get<double>() == Approx(d.cpu.value() * 1e6));
  CHECK(prepare[0].at("args").at("sets the loader's time") == true);
  CHECK(slices.at("copy batch to GPUs")[0].at("dur").get<double>() == Approx(d.pcie.value() * 1e6));
  // The stall follows the training iteration on each stage's compute track and ends with the loader.
  const auto& stall = slices.at("data stall (loader held by cpu)");
  REQUIRE(stall.size() == 2);
  for (const auto& e : stall) {
    CHECK(e.at("tid") == 0);
    CHECK(e.at("ts").get<double>() == Approx(d.iteration.value() * 1e6));
    CHECK(e.at("ts").get<double>() + e.at("dur").get<double>() == Approx(d.loader().value() * 1e6));
  }
}

namespace {

CheckpointWriting async_to(CheckpointLevel level, double fabric_nic_busy = 0.0) {
  CheckpointWriting how;
  how.policy.mode = CheckpointMode::ASYNC;
  how.policy.first_level = level;
  how.fabric_nic_busy = fabric_nic_busy;
  return how;
}

} // namespace

TEST_CASE("sim::plan_checkpoint: two levels: training waits for the first, the drain for the interval",
          "[storage]") {
  // 1 TB from 16 DGX A100 (128 GPUs): 62.5 GB a server, 7.8 GB a GPU.
  const MachineSpec m = machine({"machine.storage.metadata_latency=none"});
  const CheckpointPlan sync = plan_checkpoint(m, Bytes(1e12), 128);
  const CheckpointPlan host = plan_checkpoint(m, Bytes(1e12), 128, async_to(CheckpointLevel::HOST_MEMORY));
  const CheckpointPlan nvme = plan_checkpoint(m, Bytes(1e12), 128, async_to(CheckpointLevel::NVME));
  // Host memory: the PCIe copy; the drain at the storage NICs' 50 GB/s, as the sync write.
  CHECK(host.to_first_level.value() == Approx(host.device_to_host.value()));
  CHECK(host.to_storage.value() == Approx(sync.to_storage.value()));
  CHECK(host.stall(CheckpointMode::ASYNC).value() == Approx(host.device_to_host.value()));
  CHECK(host.host_memory(CheckpointMode::ASYNC).value() == Approx(62.5e9));
  // NVMe: the copy streams on to the 12 GB/s NVMe, which sets it and then the drain.
  CHECK(nvme.to_first_level.value() == Approx(62.5e9 / 12e9));
  CHECK(nvme.to_storage.value() == Approx(62.5e9 / 12e9).epsilon(1e-3));
  CHECK(nvme.write_limit == "reading the NVMe");
  CHECK(nvme.host_memory(CheckpointMode::ASYNC).value() == 0);
  // A drain longer than the interval holds the next checkpoint back by the difference.
  CheckpointWriting tight = async_to(CheckpointLevel::NVME);
  tight.policy.interval = Seconds(2);
  const CheckpointPlan behind = plan_checkpoint(m, Bytes(1e12), 128, tight);
  CHECK(behind.backlog().value() == Approx(behind.to_storage.value() - 2));
  CHECK(behind.stall(CheckpointMode::ASYNC).value() ==
        Approx(behind.to_first_level.value() + behind.backlog().value()));
  // A cap on the drain: it takes longer and holds nothing more up front.
  CheckpointWriting capped = async_to(CheckpointLevel::HOST_MEMORY);
  capped.policy.drain_bandwidth = BytesPerSecond(5e9);
  const CheckpointPlan slow = plan_checkpoint(m, Bytes(1e12), 128, capped);
  CHECK(slow.to_storage.value() == Approx(62.5e9 / 5e9).epsilon(1e-3));
  CHECK(slow.write_limit == "checkpoint.drain_bandwidth");
  CHECK(slow.to_first_level.value() == Approx(host.to_first_level.value()));
}

TEST_CASE("sim::plan_checkpoint: a drain over the fabric NICs takes what training leaves, storage NICs do "
          "not share",
          "[storage]") {
  // Storage over the fabric NICs (no storage.client_bandwidth): 8 x 25 GB/s a server.
  const MachineSpec fabric =
      machine({"machine.storage.client_bandwidth=none", "machine.storage.metadata_latency=none"});
  const CheckpointPlan idle =
      plan_checkpoint(fabric, Bytes(1e12), 128, async_to(CheckpointLevel::HOST_MEMORY));
  const CheckpointPlan busy =
      plan_checkpoint(fabric, Bytes(1e12), 128, async_to(CheckpointLevel::HOST_MEMORY, 0.75));
  CHECK(busy.shares_fabric);
  CHECK(busy.write_rate.value() == Approx(0.25 * idle.write_rate.value()));
  CHECK(busy.to_storage > idle.to_storage);
  // The restore runs while training is stopped: the whole NICs.
  CHECK(busy.from_storage.value() == Approx(idle.from_storage.value()));
  // With storage NICs of its own, training's fabric traffic changes nothing.
  const MachineSpec apart = machine({"machine.storage.metadata_latency=none"});
  const CheckpointPlan a = plan_checkpoint(apart, Bytes(1e12), 128, async_to(CheckpointLevel::HOST_MEMORY));
  const CheckpointPlan b =
      plan_checkpoint(apart, Bytes(1e12), 128, async_to(CheckpointLevel::HOST_MEMORY, 0.75));
  CHECK_FALSE(a.shares_fabric);
  CHECK(a.to_storage.value() == Approx(b.to_storage.value()));
  // Staged on NVMe that cannot hold a server's shards: bad input at the key.
  try {
    (void)plan_checkpoint(machine({"machine.server.nvme=10 GB"}), Bytes(1e12), 128,
                          async_to(CheckpointLevel::NVME));
    FAIL("no error");
  } catch (const InputError& e) {
    CHECK(e.key_path() == "checkpoint.first_level");
  }
}

TEST_CASE("sim::add_checkpoint: a drain that outlasts the interval is a thing to try", "[storage]") {
  CheckpointWriting how = async_to(CheckpointLevel::HOST_MEMORY);
  how.policy.interval = Seconds(1);
  how.policy.drain_bandwidth = BytesPerSecond(10e9);
  const CheckpointPlan plan = plan_checkpoint(machine(), Bytes(1e12), 128, how);
  REQUIRE(plan.backlog().value() > 0);
  Report r;
  r.iteration_time = Seconds(1);
  add_checkpoint(r, plan, how.policy);
  REQUIRE_FALSE(r.suggestions.empty());
  CHECK(r.suggestions.front().text.find("checkpoint.drain_bandwidth") != std::string::npos);
  // Keeping up, nothing to say about it.
  how.policy.interval = Seconds(1800);
  Report fine;
  fine.iteration_time = Seconds(1);
  add_checkpoint(fine, plan_checkpoint(machine(), Bytes(1e12), 128, how), how.policy);
  CHECK(fine.suggestions.empty());
}
