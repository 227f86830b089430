// The report's suggestions, derived from the breakdown and memory, each with its number; and
// `odyssey run --explain`'s table of priced operations.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "sim/report.hpp"
#include "tools/run.hpp"
#include "tools/scenario.hpp"

using namespace odyssey;

namespace {

/// A 10 s iteration on 80 GiB GPUs, every part of the breakdown given in seconds.
Report report_with(Breakdown b, double memory_gib) {
  Report r;
  r.iteration_time = b.total();
  r.breakdown = b;
  r.parallelism = {
      .tp = 8, .pp = 8, .dp = 4, .schedule = PipelineScheduleKind::ONE_F_ONE_B, .recompute = Recompute::NONE};
  r.microbatches = 16;
  r.gpu_memory = Bytes(80.0 * (1 << 30));
  MemoryBreakdown m{.weights = Bytes(memory_gib * 0.2 * (1 << 30)),
                    .gradients = Bytes(memory_gib * 0.2 * (1 << 30)),
                    .optimizer_states = Bytes(memory_gib * 0.4 * (1 << 30)),
                    .activations = Bytes(memory_gib * 0.2 * (1 << 30)),
                    .workspace = Bytes(0)};
  r.memory_per_stage = {m};
  r.memory_per_gpu = m.total();
  r.fits_memory = r.memory_per_gpu <= r.gpu_memory;
  r.mfu = 0.5;
  return r;
}

} // namespace

TEST_CASE("sim::Report: a bubble-heavy pipeline suggests more micro-batches or interleaving first",
          "[report]") {
  const Report r =
      report_with({.compute = Seconds(5), .pp_bubble = Seconds(4), .dp_comm_exposed = Seconds(1)}, 60);
  const auto s = suggest(r);
  REQUIRE(s.size() == 2);
  CHECK(s[0].text.starts_with(
      "pipeline bubble is 40.0% of the iteration (16 micro-batches per replica over 8 stages)"));
  CHECK(s[0].text.find("interleav") != std::string::npos);
  CHECK(s[1].text.starts_with("data-parallel communication exposes 10.0%"));
}

TEST_CASE("sim::Report: a layout over capacity says so before anything else", "[report]") {
  const Report r =
      report_with({.compute = Seconds(5), .tp_comm_exposed = Seconds(1), .pp_bubble = Seconds(4)}, 100);
  REQUIRE_FALSE(r.fits_memory);
  const auto s = suggest(r);
  REQUIRE(s.size() == 3);
  CHECK(s[0].text.starts_with("stage 0 needs 100.0 GiB of 80.0 GiB (125%)"));
  CHECK(s[0].text.find("zero: 1") != std::string::npos); // optimizer states are the largest part
  CHECK(s[1].text.starts_with("pipeline bubble"));
  CHECK(s[2].text.starts_with("tensor-parallel communication exposes 10.0%"));
}

TEST_CASE("sim::Report: at most three suggestions, none for parts under 5%", "[report]") {
  SECTION("many notable parts") {
    const Report r = report_with({.compute = Seconds(4),
                                  .tp_comm_exposed = Seconds(1),
                                  .pp_bubble = Seconds(2),
                                  .pp_comm_exposed = Seconds(0.6),
                                  .dp_comm_exposed = Seconds(1.5),
                                  .optimizer = Seconds(0.9)},
                                 60);
    const auto s = suggest(r);
    REQUIRE(s.size() == 3);
    CHECK(s[0].weight >= s[1].weight);
    CHECK(s[1].weight >= s[2].weight);
    CHECK(s[0].text.starts_with("pipeline bubble is 20.0%"));
  }
  SECTION("compute-bound") {
    const Report r = report_with(
        {.compute = Seconds(9.8), .pp_bubble = Seconds(0.1), .dp_comm_exposed = Seconds(0.1)}, 60);
    CHECK(suggest(r).empty());
    CHECK(render_text(r).find("nothing stands out") != std::string::npos);
  }
}

TEST_CASE("sim::Report: a checkpoint interval far from its optimum is always among the leads", "[report]") {
  Report r = report_with({.compute = Seconds(5),
                          .tp_comm_exposed = Seconds(1),
                          .pp_bubble = Seconds(3),
                          .dp_comm_exposed = Seconds(1)},
                         100);
  REQUIRE(suggest(r).size() == 3);
  // A job failing every 3 h, a 3 s synchronous checkpoint: Young/Daly says 4 min, not 6 h.
  ReliabilitySpec spec{.gpu_mtbf = Seconds(16384 * 3 * 3600.0)};
  const RecoveryPolicy policy{.checkpoint_interval = Seconds(6 * 3600.0),
                              .mode = CheckpointMode::SYNC,
                              .checkpoint_write = Seconds(3),
                              .checkpoint_load = Seconds(3),
                              .spares = 1};
  add_failures(r, study_failures(spec, {.gpus = 16384, .servers = 2048, .nics = 16384}, policy, Bytes(6e12),
                                 Seconds(30 * 86400.0), 1, 200));
  REQUIRE(r.suggestions.size() == 3);
  CHECK(r.suggestions[0].text.starts_with("stage 0 needs")); // not fitting stays first
  const bool named = std::any_of(r.suggestions.begin(), r.suggestions.end(), [](const Suggestion& x) {
    return x.text.starts_with("checkpoint interval 6.0 h is far from the simulated optimum");
  });
  CHECK(named);
  CHECK(report_metric("goodput").read(r) == r.failures->run.goodput_mean);
  // Without the run with failures its metrics are absent (NaN, left out of the JSON).
  CHECK(std::isnan(report_metric("time_to_train_p90_s").read(report_with({.compute = Seconds(5)}, 60))));
}

TEST_CASE("tools::explain_operations: equal collectives are one row with their calls and time", "[report]") {
  // Llama 3 70B with context parallelism: each of the chunk's 4 layers (80 layers over pp 4 x v 5)
  // passes its K/V around the CP ring once forward.
  const std::string data = ODYSSEY_DATA_DIR;
  const Scenario sc =
      load_scenario(data + "/scenarios/llama3-70b-dgx-h100.yaml",
                    {.data_dir = data, .overrides = {"parallelism.cp=2", "parallelism.dp=16"}});
  const std::string text = explain_operations(sc, scenario_cost_model(sc));
  std::istringstream lines(text);
  std::vector<std::vector<std::string>> rows;
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::vector<std::string> row;
    for (std::string word; words >> word;) row.push_back(word);
    if (!row.empty() && row.front() == "cp_kv_ring") rows.push_back(row);
  }
  INFO(text);
  // One row in the forward and one in the backward (its recomputation of the forward), not one per layer.
  REQUIRE(rows.size() == 2);
  for (const std::vector<std::string>& r : rows) {
    // name, kind, "<bytes> MB cp", calls, time "ms", how it runs
    REQUIRE(r.size() == 9);
    CHECK(r[4] == "cp");
    CHECK(r[5] == "4");
    CHECK(std::stod(r[6]) > 0);
    CHECK(r[7] == "ms");
    CHECK(r[8] == "overlapped");
  }
}

TEST_CASE("sim::report_metric: the checkpoint's write and restore times are the report's checkpoint block's",
          "[report]") {
  Report r = report_with({.compute = Seconds(5)}, 60);
  // A machine without storage: no checkpoint plan, the metric is absent (NaN).
  CHECK(std::isnan(report_metric("checkpoint.write_s").read(r)));
  CheckpointPlan plan;
  plan.modelled = true;
  plan.total = Bytes(2e12);
  plan.per_gpu = Bytes(2e12 / 64);
  plan.per_server = Bytes(2e12 / 8);
  plan.servers = 8;
  plan.device_to_host = Seconds(1.5);
  plan.to_first_level = plan.device_to_host;
  plan.to_storage = Seconds(12);
  add_checkpoint(r, plan, CheckpointSpec{});
  CHECK(report_metric("checkpoint.write_s").read(r) == 13.5);
  CHECK(std::isnan(report_metric("checkpoint.restore_s").read(report_with({.compute = Seconds(5)}, 60))));
  CHECK(report_metric("checkpoint.restore_s").read(r) == r.checkpoint->restore().value());
  // Its JSON home is the checkpoint block, not a second top-level key.
  const std::string json = render_json(r);
  CHECK(json.find("\"checkpoint.write_s\"") == std::string::npos);
  CHECK(json.find("\"write_s\": 13.5") != std::string::npos);
}

TEST_CASE("sim::Report: the MFU against the best published for the GPU, with its two factors when above it",
          "[report]") {
  // 10 s iteration, 8 s of it compute: a 50% MFU is 62.5% of peak while computing.
  Report r = report_with({.compute = Seconds(8), .pp_bubble = Seconds(2)}, 60);
  const PublishedMfuRow row{.gpu = "H100-SXM5-80GB",
                            .precision = "bf16",
                            .mfu = 0.43,
                            .gpus = 8192,
                            .run = "Llama 3 405B",
                            .source = "arXiv 2407.21783 Table 4"};
  const MfuAgainstPublished a = mfu_against_published(row, r.mfu, r.breakdown, r.iteration_time);
  CHECK(a.above());
  CHECK(a.ratio == Approx(0.5 / 0.43));
  CHECK(a.compute_share == Approx(0.8));
  CHECK(a.compute_mfu == Approx(0.625));
  CHECK(render_text(r).find("  published    ") == std::string::npos); // no row, no line
  r.published_mfu = row;
  const std::string text = render_text(r);
  CHECK(text.find(
            "  published    best MFU published on H100-SXM5-80GB: 43.0% (bf16, Llama 3 405B on 8192 GPUs; "
            "arXiv 2407.21783 Table 4)\n               this run's 50.0% is 1.16x it: compute is 80% of the "
            "iteration and runs the model's FLOPs at 62% of peak\n") != std::string::npos);
  const auto j = nlohmann::json::parse(render_json(r));
  CHECK(j["published_mfu"]["mfu"] == Approx(0.43));
  CHECK(j["published_mfu"]["compute_share"] == Approx(0.8));
  r.mfu = 0.40;
  CHECK(render_text(r).find("this run's 40.0% is below it\n") != std::string::npos);
}
