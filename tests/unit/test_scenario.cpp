#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "models/input/diagnostics.hpp"
#include "tools/scenario.hpp"
#include "tests/unit/scratch.hpp"

using namespace odyssey;
using Catch::Matchers::Contains;
using Catch::Matchers::Equals;
namespace fs = std::filesystem;

namespace {

const fs::path DATA_DIR = ODYSSEY_DATA_DIR;

LoadOptions options(std::vector<std::string> overrides = {}) {
  return LoadOptions{.data_dir = DATA_DIR.string(), .overrides = std::move(overrides)};
}

std::vector<fs::path> yaml_files(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == ".yaml") out.push_back(entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

/// A scenario file in the test's temporary folder.
class TempScenario {
public:
  TempScenario(const std::string& name, const std::string& text) : path_(odyssey::test::process_temp_dir() / name) {
    fs::create_directories(path_.parent_path());
    std::ofstream(path_) << text;
  }
  ~TempScenario() {
    std::error_code ignored;
    fs::remove(path_, ignored);
    fs::remove(path_.parent_path(), ignored); // only once empty
  }
  TempScenario(const TempScenario&) = delete;
  TempScenario& operator=(const TempScenario&) = delete;
  [[nodiscard]] std::string path() const { return path_.string(); }

private:
  fs::path path_;
};

const std::string DEFAULT_SCENARIO = (DATA_DIR / "scenarios" / "gpt3-175b-azure-2020.yaml").string();

std::string scenario_with(const std::string& machine, const std::string& model,
                          const std::string& parallelism, int global_batch) {
  return "machine: " + machine + "\nmodel: " + model +
         "\ntraining:\n  global_batch: " + std::to_string(global_batch) + "\nparallelism:\n" + parallelism;
}

} // namespace

TEST_CASE("tools::Scenario: every shipped scenario loads and passes its checks", "[scenario]") {
  const auto files = yaml_files(DATA_DIR / "scenarios");
  REQUIRE(files.size() >= 4);
  for (const auto& file : files) {
    INFO(file.string());
    const Scenario s = load_scenario(file.string(), options());
    CHECK(s.parallelism.gpus() <= s.machine.total_gpus());
    CHECK(fs::exists(s.calibration));
    CHECK_FALSE(render_scenario(s).empty());
  }
}

TEST_CASE("tools::Scenario: the default scenario is GPT-3 175B on the 2020 Azure machine", "[scenario]") {
  const Scenario s = load_scenario(DEFAULT_SCENARIO, options());
  CHECK(s.name == "gpt3-175b-azure-2020");
  CHECK(s.machine.name == "azure-openai-2020");
  CHECK(s.machine.total_gpus() == 10000);
  CHECK(s.machine.total_cpu_cores() >= 285000);
  CHECK(s.machine.server.nics * s.machine.server.nic_bandwidth.value() == Approx(400e9 / 8));
  CHECK(s.model.layers == 96);
  CHECK(s.model.kv_heads == 96);
  CHECK(s.training.global_batch == 1536);
  CHECK(s.training.tokens.value() == 300e9);
  CHECK_FALSE(s.training.flash_attention);
  CHECK(s.parallelism.gpus() == 9216);
  CHECK(s.parallelism.recompute == Recompute::FULL);
  CHECK(s.parallelism.dp_bucket.value() == 0); // auto: Megatron-core's bucket rule
  CHECK(s.parallelism.dp_overlap);
  CHECK_THAT(s.calibration, Contains("v100"));
}

TEST_CASE("tools::Scenario: every machine preset loads and checks", "[scenario]") {
  for (const auto& file : yaml_files(DATA_DIR / "topologies" / "presets")) {
    const std::string name = file.stem().string();
    INFO(name);
    TempScenario t("odyssey-machine-" + name + ".yaml", scenario_with(name, "megatron-1.7b", "  tp: 1\n", 8));
    const Scenario s = load_scenario(t.path(), options());
    CHECK(s.machine.name == name);
    CHECK(s.machine.servers > 0);
    const auto& f = s.machine.fabric;
    if (f.levels < 3) CHECK(static_cast<long>(f.servers_per_leaf) * f.leaves_per_pod >= s.machine.servers);
  }
}

TEST_CASE("tools::Scenario: machine presets carry the published figures", "[scenario]") {
  auto machine = [](const std::string& name) {
    TempScenario t("odyssey-machine-facts.yaml", scenario_with(name, "megatron-1.7b", "  tp: 1\n", 8));
    return load_scenario(t.path(), options()).machine;
  };
  const MachineSpec a100 = machine("dgx-a100-superpod");
  CHECK(a100.servers == 1536);
  CHECK(a100.server.nvlink_bandwidth.value() == 300e9);
  CHECK(a100.server.nic_bandwidth.value() == 25e9);
  const MachineSpec h100 = machine("dgx-h100-superpod");
  CHECK(h100.servers == 1344);
  CHECK(h100.fabric.kind == FabricKind::RAIL_OPTIMIZED);
  CHECK(h100.server.nvlink_bandwidth.value() == 450e9);
  const MachineSpec roce = machine("h100-roce-24k");
  CHECK(roce.total_gpus() == 24576);
  CHECK(roce.fabric.servers_per_leaf * roce.fabric.leaves_per_pod * roce.server.gpus == 3072);
  CHECK(roce.fabric.core_oversubscription == 7.0);
  CHECK(roce.fabric.pod_oversubscription == 1.0);
  const MachineSpec azure = machine("azure-openai-2020");
  CHECK(azure.server.intra == IntraServer::NVLINK_MESH);
  CHECK(azure.server.nvlink_bandwidth.value() == 150e9);
}

TEST_CASE("tools::Scenario: every model preset loads", "[scenario]") {
  for (const auto& file : yaml_files(DATA_DIR / "models" / "presets")) {
    const std::string name = file.stem().string();
    INFO(name);
    TempScenario t("odyssey-model-" + name + ".yaml",
                   scenario_with("dgx-h100-superpod", name, "  tp: 1\n", 8));
    const Scenario s = load_scenario(t.path(), options());
    CHECK(s.model.name == name);
    CHECK(s.model.hidden % s.model.heads == 0);
    CHECK(s.model.heads % s.model.kv_heads == 0);
  }
  TempScenario t("odyssey-model-405b.yaml",
                 scenario_with("dgx-h100-superpod", "llama3-405b", "  tp: 1\n", 8));
  const ModelSpec m = load_scenario(t.path(), options()).model;
  CHECK(m.layers == 126);
  CHECK(m.kv_heads == 8);
  CHECK(m.activation == Activation::SWIGLU);
  CHECK(m.vocab == 128256);
}

TEST_CASE("tools::Scenario: --set overrides go through the schema", "[scenario]") {
  SECTION("model, machine and parallelism keys") {
    const Scenario s = load_scenario(
        DEFAULT_SCENARIO, options({"model.layers=48", "machine.servers=2000", "parallelism.schedule=gpipe",
                                   "parallelism.zero=3", "machine.server.nic_bandwidth=200 Gb/s",
                                   "training.flash_attention=true", "parallelism.dp_bucket=25 MB"}));
    CHECK(s.model.layers == 48);
    CHECK(s.model.name == "gpt3-175b");
    CHECK(s.machine.servers == 2000);
    CHECK(s.parallelism.schedule == PipelineScheduleKind::GPIPE);
    CHECK(s.parallelism.zero == 3);
    CHECK(s.machine.server.nic_bandwidth.value() == 25e9);
    CHECK(s.training.flash_attention);
    CHECK(s.parallelism.dp_bucket.value() == 25e6);
  }
  SECTION("a different machine preset") {
    const Scenario s = load_scenario(DEFAULT_SCENARIO, options({"machine=h100-roce-24k"}));
    CHECK(s.machine.name == "h100-roce-24k");
    CHECK_THAT(s.calibration, Contains("h100"));
  }
  SECTION("unknown key") {
    CHECK_THROWS_WITH(
        load_scenario(DEFAULT_SCENARIO, options({"model.layres=48"})),
        Equals("--set model.layres=48: error: model.layres: unknown key 'layres' (did you mean 'layers'?)"));
  }
  SECTION("unknown nested key") {
    CHECK_THROWS_WITH(
        load_scenario(DEFAULT_SCENARIO, options({"parallelism.tpp=4"})),
        Equals("--set parallelism.tpp=4: error: parallelism.tpp: unknown key 'tpp' (did you mean 'tp'?)"));
  }
  SECTION("a group is not a value") {
    CHECK_THROWS_WITH(load_scenario(DEFAULT_SCENARIO, options({"machine.server=4"})),
                      Contains("is a group of keys; set one of them: gpus, intra"));
  }
  SECTION("bad value") {
    CHECK_THROWS_WITH(
        load_scenario(DEFAULT_SCENARIO, options({"parallelism.tp=0"})),
        Equals("--set parallelism.tp=0: error: parallelism.tp: must be a positive integer, got 0"));
  }
  SECTION("cross-field rule at the override") {
    CHECK_THROWS_WITH(
        load_scenario(DEFAULT_SCENARIO, options({"parallelism.tp=5"})),
        Equals("--set parallelism.tp=5: error: parallelism.tp: heads (96) must be divisible by tp (5)"));
  }
  SECTION("no equals sign") {
    CHECK_THROWS_WITH(load_scenario(DEFAULT_SCENARIO, options({"model.layers"})),
                      Equals("--set model.layers: error: expected KEY=VALUE, e.g. --set model.layers=48"));
  }
}

TEST_CASE("tools::Scenario: dp auto takes as many replicas as fit and divide the batch", "[scenario]") {
  SECTION("limited by the machine") {
    // 1,250 servers x 8 = 10,000 GPUs; tp 8 x pp 16 = 128 per replica: 78 fit, 64 divides 1536.
    TempScenario t("odyssey-dp-auto.yaml",
                   scenario_with("azure-openai-2020", "gpt3-175b", "  tp: 8\n  pp: 16\n  dp: auto\n", 1536));
    const Scenario s = load_scenario(t.path(), options());
    CHECK(s.parallelism.dp == 64);
  }
  SECTION("limited by the batch") {
    TempScenario t("odyssey-dp-auto.yaml",
                   scenario_with("dgx-h100-superpod", "megatron-1.7b", "  dp: auto\n", 96));
    CHECK(load_scenario(t.path(), options()).parallelism.dp == 96);
  }
  SECTION("interleaved keeps micro-batches a multiple of pp") {
    TempScenario t(
        "odyssey-dp-auto.yaml",
        scenario_with("azure-openai-2020", "gpt3-175b",
                      "  tp: 8\n  pp: 24\n  dp: auto\n  schedule: interleaved-1f1b\n  virtual_stages: 2\n",
                      1536));
    const Scenario s = load_scenario(t.path(), options());
    CHECK(s.parallelism.dp == 32);
    CHECK((1536 / s.parallelism.dp) % 24 == 0);
  }
  SECTION("through --set") {
    const Scenario s = load_scenario(DEFAULT_SCENARIO, options({"parallelism.dp=auto"}));
    CHECK(s.parallelism.dp == 48);
  }
}

TEST_CASE("tools::Scenario: presets with overrides and inline definitions", "[scenario]") {
  SECTION("machine preset with overrides") {
    TempScenario t(
        "odyssey-override.yaml",
        scenario_with("{preset: dgx-a100-superpod, servers: 64, fabric: {core_oversubscription: 2}}",
                      "{preset: llama2-70b, layers: 40}", "  tp: 8\n  pp: 2\n  dp: 4\n", 64));
    const Scenario s = load_scenario(t.path(), options());
    CHECK(s.machine.servers == 64);
    CHECK(s.machine.name == "dgx-a100-superpod");
    CHECK(s.machine.fabric.core_oversubscription == 2.0);
    CHECK(s.machine.server.nics == 8);
    CHECK(s.model.layers == 40);
    CHECK(s.model.kv_heads == 8);
  }
  SECTION("inline model with defaults") {
    TempScenario t("odyssey-inline.yaml",
                   scenario_with("dgx-a100-superpod",
                                 "{layers: 4, hidden: 1024, heads: 16, vocab: 32000, seq_len: 1024}",
                                 "  tp: 2\n", 16));
    const Scenario s = load_scenario(t.path(), options());
    CHECK(s.model.name == "custom");
    CHECK(s.model.kv_heads == 16);
    CHECK(s.model.ffn_hidden == 4096);
    CHECK(s.model.activation == Activation::GELU);
    CHECK(s.name == "odyssey-inline");
  }
  SECTION("inline model missing a required key") {
    TempScenario t("odyssey-inline.yaml",
                   scenario_with("dgx-a100-superpod",
                                 "{layers: 4, hidden: 1024, vocab: 32000, seq_len: 1024}", "  tp: 2\n", 16));
    CHECK_THROWS_WITH(load_scenario(t.path(), options()), Contains("model: missing required key 'heads'"));
  }
  SECTION("machine from a file") {
    TempScenario t("odyssey-from-file.yaml",
                   scenario_with((DATA_DIR / "topologies" / "presets" / "dgx-h100-superpod.yaml").string(),
                                 "llama3-8b", "  tp: 8\n", 64));
    CHECK(load_scenario(t.path(), options()).machine.servers == 1344);
  }
}

TEST_CASE("tools::Scenario: rejected scenarios", "[scenario]") {
  auto load = [](const std::string& parallelism, int batch, const std::string& model = "gpt3-175b") {
    TempScenario t("odyssey-bad.yaml", scenario_with("azure-openai-2020", model, parallelism, batch));
    load_scenario(t.path(), options());
  };
  SECTION("heads not divisible by tp") {
    CHECK_THROWS_WITH(load("  tp: 5\n", 64),
                      Contains("parallelism.tp: heads (96) must be divisible by tp (5)"));
  }
  SECTION("layers not divisible by pp") {
    CHECK_THROWS_WITH(load("  pp: 5\n", 64),
                      Contains("parallelism.pp: layers (96) must be divisible by pp (5)"));
  }
  SECTION("layers per stage not divisible by virtual stages") {
    CHECK_THROWS_WITH(load("  pp: 32\n  schedule: interleaved-1f1b\n  virtual_stages: 2\n", 64),
                      Contains("layers per stage (96 / pp 32 = 3) must be divisible by virtual_stages (2)"));
  }
  SECTION("interleaved needs virtual stages") {
    CHECK_THROWS_WITH(load("  pp: 8\n  schedule: interleaved-1f1b\n", 64),
                      Contains("interleaved-1f1b needs virtual_stages > 1, got 1"));
  }
  SECTION("virtual stages need interleaving") {
    CHECK_THROWS_WITH(load("  pp: 8\n  virtual_stages: 2\n", 64),
                      Contains("virtual_stages (2) needs schedule interleaved-1f1b, got 1f1b"));
  }
  SECTION("kv heads above heads") {
    CHECK_THROWS_WITH(load("  tp: 1\n", 64, "{preset: llama3-8b, kv_heads: 64}"),
                      Contains("model.kv_heads: kv_heads (64) must not exceed heads (32)"));
  }
  SECTION("batch not divisible") {
    CHECK_THROWS_WITH(load("  dp: 3\n", 64),
                      Contains("global_batch (64) must be divisible by micro_batch x dp (1 x 3 = 3)"));
  }
  SECTION("job larger than the machine") {
    CHECK_THROWS_WITH(
        load("  tp: 8\n  pp: 16\n  dp: 80\n", 1280),
        Contains("job needs 1,280 servers (tp 8 x pp 16 x dp 80 = 10,240 GPUs, 8 per server) but "
                 "machine 'azure-openai-2020' has 1,250"));
  }
  SECTION("expert parallelism on a dense model") {
    CHECK_THROWS_WITH(load("  ep: 2\n  dp: 2\n", 64),
                      Contains("parallelism.ep: expert parallelism (ep 2) needs a mixture-of-experts model"));
  }
  SECTION("ep not dividing the experts") {
    CHECK_THROWS_WITH(load("  ep: 16\n  dp: 16\n", 64, "mixtral-8x7b"),
                      Contains("parallelism.ep: moe.experts (8) must be divisible by ep (16)"));
  }
  SECTION("ep not dividing dp") {
    CHECK_THROWS_WITH(load("  ep: 4\n  dp: 2\n", 64, "mixtral-8x7b"), Contains("ep (4) must divide dp (2)"));
  }
  SECTION("cp not dividing the sequence in 2 x cp chunks") {
    CHECK_THROWS_WITH(load("  cp: 3\n", 64),
                      Contains("parallelism.cp: seq_len (2048) must be divisible by 2 x cp (2 x 3 = 6)"));
  }
  SECTION("sequence parallelism with cp") {
    CHECK_THROWS_WITH(
        load("  tp: 8\n  cp: 2\n  sequence_parallel: true\n", 64, "{preset: llama3-8b, seq_len: 2056}"),
        Contains("sequence_parallel needs seq_len / cp (2056 / 2 = 1028) divisible by tp (8)"));
  }
  SECTION("zero-bubble with model chunks") {
    CHECK_THROWS_WITH(
        load("  pp: 8\n  schedule: zero-bubble\n  virtual_stages: 2\n", 64),
        Contains("zero-bubble (ZB-H1) runs one model chunk per stage; virtual_stages must be 1, got 2"));
  }
  SECTION("zero-bubble and cp are accepted") {
    CHECK_NOTHROW(load("  pp: 8\n  schedule: zero-bubble\n  cp: 2\n", 64));
  }
  SECTION("kv heads and tp must divide one another") {
    CHECK_THROWS_WITH(load("  tp: 4\n", 64, "{preset: llama3-8b, hidden: 3072, heads: 24, kv_heads: 6}"),
                      Contains("kv_heads (6) and tp (4) must divide one another"));
    CHECK_NOTHROW(load("  tp: 16\n", 64, "llama3-8b"));
  }
  SECTION("uneven stages") {
    const std::string model = "{preset: llama3-8b, layers: 30}";
    CHECK_NOTHROW(load("  pp: 4\n  first_stage_layers: 6\n", 64, model));
    CHECK_NOTHROW(load("  pp: 4\n  first_stage_layers: 7\n  last_stage_layers: 7\n", 64, model));
    CHECK_THROWS_WITH(load("  first_stage_layers: 6\n", 64, model),
                      Contains("parallelism.first_stage_layers: first_stage_layers needs pp >= 2, got pp 1"));
    CHECK_THROWS_WITH(load("  last_stage_layers: 6\n", 64, model),
                      Contains("parallelism.last_stage_layers: last_stage_layers needs pp >= 2, got pp 1"));
    CHECK_THROWS_WITH(load("  pp: 2\n  first_stage_layers: 15\n  last_stage_layers: 15\n", 64, model),
                      Contains("together need pp >= 3"));
    CHECK_THROWS_WITH(
        load("  pp: 4\n  first_stage_layers: 5\n", 64, model),
        Contains("layers - first_stage_layers (30 - 5 = 25) must be divisible by the 3 other stages"));
    CHECK_THROWS_WITH(load("  pp: 4\n  first_stage_layers: 15\n  last_stage_layers: 14\n", 64, model),
                      Contains("(30 - 15 - 14 = 1) leaves fewer layers than the 2 other stages"));
  }
  SECTION("moe checks") {
    CHECK_THROWS_WITH(load("  tp: 1\n", 64, "{preset: llama3-8b, moe: {top_k: 1}}"),
                      Contains("model.moe: missing required key 'experts'"));
    CHECK_THROWS_WITH(load("  tp: 1\n", 64, "{preset: mixtral-8x7b, moe: {top_k: 9}}"),
                      Contains("model.moe.top_k: top_k (9) must not exceed experts (8)"));
    CHECK_THROWS_WITH(load("  tp: 1\n", 64, "{preset: mixtral-8x7b, moe: {every: 3}}"),
                      Contains("model.moe.every: layers (32) must be divisible by moe.every (3)"));
    CHECK_THROWS_WITH(load("  tp: 1\n", 64, "{preset: mixtral-8x7b, moe: {capacity_factor: -1}}"),
                      Contains("model.moe.capacity_factor: must be greater than zero, got '-1'"));
    CHECK_THROWS_WITH(load("  tp: 8\n", 64, "{preset: mixtral-8x7b, moe: {expert_ffn_hidden: 14004}}"),
                      Contains("moe.expert_ffn_hidden (14004) must be divisible by tp (8)"));
  }
  SECTION("zero stage out of range") {
    CHECK_THROWS_WITH(load("  zero: 4\n", 64), Contains("parallelism.zero: must be 0, 1, 2 or 3, got 4"));
  }
  SECTION("selective recompute and zero 1..3 are accepted") {
    CHECK_NOTHROW(load("  zero: 2\n  recompute: selective\n", 64));
  }
  SECTION("unknown top-level key") {
    TempScenario t("odyssey-bad-key.yaml",
                   "machine: azure-openai-2020\nmodel: gpt3-175b\ntrainin:\n  global_batch: 8\n");
    CHECK_THROWS_WITH(
        load_scenario(t.path(), options()),
        Contains(
            "odyssey-bad-key.yaml:3:1: error: trainin: unknown key 'trainin' (did you mean 'training'?)"));
  }
  SECTION("missing machine") {
    TempScenario t("odyssey-no-machine.yaml", "model: gpt3-175b\ntraining:\n  global_batch: 8\n");
    CHECK_THROWS_WITH(load_scenario(t.path(), options()), Contains("missing required key 'machine'"));
  }
}

TEST_CASE("tools::Scenario: render_scenario output loads back to the same scenario", "[scenario]") {
  std::vector<fs::path> files = yaml_files(DATA_DIR / "scenarios");
  for (const char* dir : {"megatron-2021", "llama3-2024", "mlperf-v3.1"}) {
    const auto more = yaml_files(DATA_DIR / "tests" / "validation" / dir);
    files.insert(files.end(), more.begin(), more.end());
  }
  for (const auto& file : files) {
    INFO(file.string());
    const Scenario s = load_scenario(file.string(), options());
    const std::string text = render_scenario(s);
    TempScenario t("odyssey-rendered.yaml", text);
    const Scenario again = load_scenario(t.path(), options());
    CHECK(render_scenario(again) == text);
  }
}

TEST_CASE("tools::Scenario: render_schema lists every key once with its default", "[scenario]") {
  const std::string schema = render_schema();
  for (const char* key :
       {"machine.fabric.core_oversubscription", "model.kv_heads", "training.flash_attention",
        "parallelism.overlap.dp", "parallelism.overlap.tp", "parallelism.overlap.pp",
        "parallelism.overlap.zero", "parallelism.dp_bucket", "parallelism.cp_kind",
        "parallelism.first_stage_layers", "parallelism.last_stage_layers", "model.moe.experts",
        "model.moe.top_k", "model.moe.capacity_factor", "model.moe.expert_ffn_hidden", "model.moe.every",
        "simulation.seed", "calibration"}) {
    INFO(key);
    CHECK_THAT(schema, Contains(key));
  }
  CHECK_THAT(schema, Contains("max(40M, 1M x dp)"));
  CHECK_THAT(schema, !Contains("dp_overlap"));
}

TEST_CASE("tools::Scenario: mixture-of-experts models", "[scenario]") {
  SECTION("the Mixtral preset") {
    const Scenario s =
        load_scenario((DATA_DIR / "scenarios" / "mixtral-8x7b-dgx-h100.yaml").string(), options());
    REQUIRE(s.model.moe.has_value());
    CHECK(s.model.moe->experts == 8);
    CHECK(s.model.moe->top_k == 2);
    CHECK(s.model.moe->capacity_factor == 1.0);
    CHECK(s.model.moe->expert_ffn_hidden == 14336);
    CHECK(s.model.moe->every == 1);
    CHECK(s.parallelism.ep == 8);
    CHECK(s.parallelism.dp % s.parallelism.ep == 0);
  }
  SECTION("the GPT-style preset: every other layer, top-1") {
    TempScenario t("odyssey-gpt-moe.yaml",
                   scenario_with("dgx-h100-superpod", "gpt-moe-1.3b-128e", "  dp: 128\n  ep: 64\n", 512));
    const Scenario s = load_scenario(t.path(), options());
    REQUIRE(s.model.moe.has_value());
    CHECK(s.model.moe->experts == 128);
    CHECK(s.model.moe->top_k == 1);
    CHECK(s.model.moe->every == 2);
  }
  SECTION("a dense model has no moe and renders none") {
    const Scenario s = load_scenario(DEFAULT_SCENARIO, options());
    CHECK_FALSE(s.model.moe.has_value());
    CHECK_THAT(render_scenario(s), !Contains("moe"));
  }
  SECTION("inline moe keys take the defaults for the rest") {
    TempScenario t(
        "odyssey-moe-inline.yaml",
        scenario_with("dgx-h100-superpod", "{preset: llama3-8b, moe: {experts: 16}}", "  tp: 1\n", 64));
    const Scenario s = load_scenario(t.path(), options());
    REQUIRE(s.model.moe.has_value());
    CHECK(s.model.moe->experts == 16);
    CHECK(s.model.moe->top_k == 2);
    CHECK(s.model.moe->capacity_factor == 1.25);
    CHECK(s.model.moe->expert_ffn_hidden == s.model.ffn_hidden);
    CHECK(s.model.moe->every == 1);
  }
}

TEST_CASE("tools::Scenario: --set reaches the strategy keys", "[scenario]") {
  SECTION("moe keys turn a dense model into a mixture of experts") {
    const Scenario s = load_scenario(
        DEFAULT_SCENARIO,
        options({"model.moe.experts=64", "model.moe.top_k=1", "model.moe.capacity_factor=2",
                 "model.moe.expert_ffn_hidden=24576", "model.moe.every=2", "parallelism.ep=8"}));
    REQUIRE(s.model.moe.has_value());
    CHECK(s.model.moe->experts == 64);
    CHECK(s.model.moe->top_k == 1);
    CHECK(s.model.moe->capacity_factor == 2.0);
    CHECK(s.model.moe->expert_ffn_hidden == 24576);
    CHECK(s.model.moe->every == 2);
    CHECK(s.parallelism.ep == 8);
  }
  SECTION("overlap switches") {
    const Scenario s = load_scenario(
        DEFAULT_SCENARIO, options({"parallelism.overlap.dp=false", "parallelism.overlap.tp=true",
                                   "parallelism.overlap.pp=true", "parallelism.overlap.zero=false"}));
    CHECK_FALSE(s.parallelism.dp_overlap);
    CHECK(s.parallelism.tp_overlap);
    CHECK(s.parallelism.pp_overlap);
    CHECK_FALSE(s.parallelism.zero_overlap);
  }
  SECTION("overlap defaults") {
    const Scenario s = load_scenario(DEFAULT_SCENARIO, options());
    CHECK(s.parallelism.dp_overlap);
    CHECK_FALSE(s.parallelism.tp_overlap);
    CHECK_FALSE(s.parallelism.pp_overlap);
    CHECK(s.parallelism.zero_overlap);
    CHECK(s.parallelism.cp_kind == ContextParallelKind::RING);
    CHECK(s.parallelism.first_stage_layers == 0);
    CHECK(s.parallelism.last_stage_layers == 0);
  }
  SECTION("context parallelism and its kind") {
    const Scenario s =
        load_scenario(DEFAULT_SCENARIO,
                      options({"parallelism.cp=2", "parallelism.cp_kind=all-gather", "parallelism.dp=24"}));
    CHECK(s.parallelism.cp == 2);
    CHECK(s.parallelism.cp_kind == ContextParallelKind::ALL_GATHER);
    CHECK(s.parallelism.gpus() == 8 * 24 * 24 * 2);
  }
  SECTION("uneven stages") {
    const Scenario s = load_scenario(
        DEFAULT_SCENARIO, options({"parallelism.first_stage_layers=3", "parallelism.last_stage_layers=5"}));
    CHECK(s.parallelism.first_stage_layers == 3); // 96 = 3 + 22 x 4 + 5 over pp 24
    CHECK(s.parallelism.last_stage_layers == 5);
  }
  SECTION("zero-bubble") {
    const Scenario s = load_scenario(DEFAULT_SCENARIO, options({"parallelism.schedule=zero-bubble"}));
    CHECK(s.parallelism.schedule == PipelineScheduleKind::ZERO_BUBBLE);
  }
  SECTION("the old dp_overlap key is gone") {
    CHECK_THROWS_WITH(load_scenario(DEFAULT_SCENARIO, options({"parallelism.dp_overlap=false"})),
                      Contains("unknown key 'dp_overlap' (did you mean 'overlap'?)"));
  }
  SECTION("an overlap group is not a value") {
    CHECK_THROWS_WITH(load_scenario(DEFAULT_SCENARIO, options({"parallelism.overlap=false"})),
                      Contains("is a group of keys; set one of them: dp, tp, pp, zero"));
  }
}

TEST_CASE("tools::Scenario: the published Llama 3 and MLPerf layouts load", "[scenario]") {
  SECTION("Llama 3 405B, 128k context") {
    const Scenario s = load_scenario(
        (DATA_DIR / "tests" / "validation" / "llama3-2024" / "llama3-405b-128k-16384gpu.yaml").string(),
        options());
    CHECK(s.parallelism.gpus() == 16384);
    CHECK(s.parallelism.cp == 16);
    CHECK(s.parallelism.cp_kind == ContextParallelKind::ALL_GATHER);
    CHECK(s.parallelism.first_stage_layers == 7);
    CHECK(s.parallelism.last_stage_layers == 7);
    CHECK(s.model.seq_len == 131072);
    CHECK(s.training.global_batch * s.model.seq_len == 16777216);
  }
  SECTION("MLPerf GPT-3 on the whole of Eos") {
    const Scenario s = load_scenario(
        (DATA_DIR / "tests" / "validation" / "mlperf-v3.1" / "mlperf31-gpt3-10752.yaml").string(), options());
    CHECK(s.parallelism.gpus() == 10752);
    CHECK(s.machine.servers == 1344);
    CHECK(s.training.precision == Precision::FP8);
    CHECK(s.model.vocab == 50257);
    CHECK(s.parallelism.tp_overlap);
  }
}
