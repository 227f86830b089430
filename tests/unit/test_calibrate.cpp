// `odyssey calibrate import` on the recorded raw files of tests/calibration/ (a synthetic
// fixture, not a measurement: no GPU has been available), and the cost model on the profile it
// makes: interpolation over the recorded GEMM shapes, conservative and flagged extrapolation.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <tuple>

#include <nlohmann/json.hpp>

#include "calibration/cost_model.hpp"
#include "calibration/import.hpp"
#include "calibration/profile.hpp"
#include "models/input/diagnostics.hpp"
#include "models/workload.hpp"
#include "sim/report.hpp"
#include "tests/unit/scratch.hpp"
#include "tools/scenario.hpp"

using namespace odyssey;
using odyssey::test::input_error;
using odyssey::test::ScratchDir;
namespace fs = std::filesystem;

namespace {

const fs::path ROOT = fs::path(ODYSSEY_DATA_DIR);
const fs::path FIXTURES = ROOT / "tests" / "calibration";
constexpr double H100_BF16_PEAK = 989.4e12; // the datasheet profile's, which the import keeps

std::vector<std::string> fixture_files() {
  std::vector<std::string> files;
  for (const char* name : {"fixture-gemm.json", "fixture-attention.json", "fixture-memory.json",
                           "fixture-nccl.json", "fixture-nccl-2nodes.json"})
    files.push_back((FIXTURES / name).string());
  return files;
}

ImportOptions fixture_import(const fs::path& out) {
  return ImportOptions{.raw_files = fixture_files(),
                       .out = out.string(),
                       .gpu = "H100-SXM5-80GB",
                       .profiles_dir = (ROOT / "calibration" / "profiles").string()};
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

/// The fixture's bf16 GEMMs straight from the raw file: shape -> mean time over layouts.
std::map<std::tuple<long, long, long>, double> recorded_bf16_times() {
  std::map<std::tuple<long, long, long>, std::pair<double, int>> sum;
  const nlohmann::json raw = read_json(FIXTURES / "fixture-gemm.json");
  for (const auto& r : raw["results"]) {
    if (r["status"] != "ok" || r["dtype"] != "bf16") continue;
    auto& s = sum[{r["m"].get<long>(), r["n"].get<long>(), r["k"].get<long>()}];
    s.first += r["time"]["median_s"].get<double>();
    s.second += 1;
  }
  std::map<std::tuple<long, long, long>, double> out;
  for (const auto& [k, v] : sum) out[k] = v.first / v.second;
  return out;
}

} // namespace

TEST_CASE("calibrate::import: recorded raw files become a measured profile", "[calibration]") {
  ScratchDir dir("calibrate-import");
  const fs::path out = dir.path / "h100-fixture-measured.yaml";
  const ImportSummary summary = import_profile(fixture_import(out));
  CHECK(summary.gpu == "H100-SXM5-80GB");
  CHECK(summary.base == "h100-sxm5-80gb-datasheet");

  const Profile p = load_profile(out.string());
  CHECK(p.provenance.kind == ProfileKind::MEASURED);
  CHECK(p.gpu == "H100-SXM5-80GB");
  CHECK_THAT(p.provenance.source, Catch::Contains("GPU 'fixture'") && Catch::Contains("132 SMs"));
  CHECK_THAT(p.provenance.notes, Catch::Contains("synthetic test fixture, not a measurement"));
  CHECK(p.provenance.date == "2026-11-25");

  SECTION("one GEMM point per recorded shape and priced dtype, layouts averaged") {
    // bf16 and fp8 have H100 peaks; tf32 results are not priced (Odyssey has no tf32 precision).
    CHECK(p.gemm_points.size() == 54);
    const auto times = recorded_bf16_times();
    REQUIRE(times.size() == 27);
    for (const GemmPoint& g : p.gemm_points) {
      if (g.dtype != Precision::BF16) continue;
      const double t = times.at({g.m, g.n, g.k});
      CHECK(g.efficiency == Approx(2.0 * g.m * g.n * g.k / t / H100_BF16_PEAK).epsilon(1e-5));
    }
  }
  SECTION("memory, attention, launch and NVLink from their benchmarks") {
    // Median over the seven kernels of their largest case: 2.75 TB/s of 3.35.
    CHECK(p.memory_efficiency == Approx(2.75e12 / 3.35e12).epsilon(1e-5));
    // The fixture's causal attention: forward at 55%, backward (twice the FLOPs) at 45%.
    CHECK(p.attention_efficiency == Approx(3.0 / (1 / 0.55 + 2 / 0.45)).epsilon(1e-5));
    CHECK(p.launch_overhead.value() == Approx(2.5e-6));
    auto best_busbw = [](const char* file) {
      double busbw = 0;
      const nlohmann::json raw = read_json(FIXTURES / file);
      for (const auto& r : raw["results"])
        if (r["op"] == "all-reduce") busbw = std::max(busbw, r["busbw_gbps"].get<double>() * 1e9);
      return busbw;
    };
    // Within a node over NVLink (450 GB/s per GPU), across two nodes over one 400 Gb/s NIC per GPU.
    CHECK(p.nvlink.bus_efficiency == Approx(best_busbw("fixture-nccl.json") / 450e9).epsilon(1e-5));
    CHECK(p.net.bus_efficiency == Approx(best_busbw("fixture-nccl-2nodes.json") / 50e9).epsilon(1e-5));
    // Not measured: kept from the datasheet profile.
    const Profile base = load_profile((ROOT / "calibration/profiles/h100-sxm5-80gb-datasheet.yaml").string());
    CHECK(p.pcie.bus_efficiency == base.pcie.bus_efficiency);
    CHECK(p.net.step_latency.value() == base.net.step_latency.value());
    CHECK(p.peak.at(Precision::FP8).value() == base.peak.at(Precision::FP8).value());
  }
  SECTION("a measured profile wins over the datasheet one for its GPU") {
    fs::copy_file(ROOT / "calibration/profiles/h100-sxm5-80gb-datasheet.yaml",
                  dir.path / "h100-sxm5-80gb-datasheet.yaml");
    CHECK(find_profile(dir.path.string(), "H100-SXM5-80GB") == out.string());
  }
}

TEST_CASE("calibrate::CostModel: interpolation over recorded GEMM shapes", "[calibration]") {
  ScratchDir dir("calibrate-interp");
  const fs::path out = dir.path / "fixture.yaml";
  import_profile(fixture_import(out));
  const CostModel cost(load_profile(out.string()));
  const auto times = recorded_bf16_times();
  double lo = 1, hi = 0;
  for (const auto& [shape, t] : times) {
    const auto [m, n, k] = shape;
    const GemmEstimate e = cost.gemm_estimate({.m = m, .n = n, .k = k}, Precision::BF16);
    CHECK_FALSE(e.extrapolated);
    CHECK(e.efficiency == Approx(2.0 * m * n * k / t / H100_BF16_PEAK).epsilon(1e-5));
    lo = std::min(lo, e.efficiency);
    hi = std::max(hi, e.efficiency);
  }

  SECTION("between recorded shapes: inside their range, not flagged, close to the recorded trend") {
    // The fixture's own formula gives the truth between its grid points (1024, 4096, 16384).
    auto truth = [](double m, double n, double k) {
      double e = 0.75;
      for (double d : {m, n, k}) e *= 1 - 0.5 * std::exp(-d / 2048);
      return e;
    };
    double worst = 0;
    for (long m : {2048L, 8192L})
      for (long n : {2048L, 8192L})
        for (long k : {2048L, 8192L}) {
          const GemmEstimate e = cost.gemm_estimate({.m = m, .n = n, .k = k}, Precision::BF16);
          CHECK_FALSE(e.extrapolated);
          CHECK(e.efficiency >= lo);
          CHECK(e.efficiency <= hi);
          worst = std::max(worst, std::abs(e.efficiency / truth(m, n, k) - 1));
        }
    // Trilinear in log space on a grid with steps of 4x: 7.3% at worst (inverse-distance
    // weighting alone: 18%).
    CHECK(worst < 0.08);
  }
  SECTION("outside the recorded range: flagged, never above the nearest recorded point") {
    const double nearest = cost.gemm_estimate({.m = 1024, .n = 4096, .k = 4096}, Precision::BF16).efficiency;
    const GemmEstimate small = cost.gemm_estimate({.m = 256, .n = 4096, .k = 4096}, Precision::BF16);
    CHECK(small.extrapolated);
    CHECK(small.efficiency <= nearest);
    const GemmEstimate huge = cost.gemm_estimate({.m = 65536, .n = 65536, .k = 65536}, Precision::BF16);
    CHECK(huge.extrapolated);
    CHECK(huge.efficiency <= hi);
  }
  SECTION("a dtype without recorded points uses the analytic model, unflagged") {
    CHECK_FALSE(cost.gemm_estimate({.m = 256, .n = 256, .k = 256}, Precision::FP16).extrapolated);
  }
}

TEST_CASE("calibrate::import: rejected raw files", "[calibration]") {
  ScratchDir dir("calibrate-rejected");
  const fs::path out = dir.path / "p.yaml";
  ImportOptions o = fixture_import(out);
  const std::string mem = (FIXTURES / "fixture-memory.json").string();
  std::ifstream in(mem);
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  auto write = [&](const std::string& body) {
    const fs::path f = dir.path / "raw.json";
    std::ofstream(f) << body;
    o.raw_files = {f.string()};
  };
  auto replaced = [&](const std::string& from, const std::string& to) {
    std::string s = text;
    const auto at = s.find(from);
    REQUIRE(at != std::string::npos);
    return s.replace(at, from.size(), to);
  };

  SECTION("unknown format version") {
    write(replaced("odyssey-raw/1", "odyssey-raw/7"));
    CHECK_THAT(input_error([&] { import_profile(o); }),
               Catch::Contains("raw.json:2:") && Catch::Contains("unsupported raw format 'odyssey-raw/7'"));
  }
  SECTION("missing results") {
    write(replaced("\"results\":", "\"outcomes\":"));
    CHECK_THAT(input_error([&] { import_profile(o); }), Catch::Contains("outcomes"));
  }
  SECTION("unknown status") {
    write(replaced("\"status\": \"ok\"", "\"status\": \"fine\""));
    CHECK_THAT(input_error([&] { import_profile(o); }), Catch::Contains("unknown status 'fine'"));
  }
  SECTION("non-positive time") {
    write(replaced("\"median_s\": ", "\"median_s\": -"));
    CHECK_THAT(input_error([&] { import_profile(o); }),
               Catch::Contains("time.median_s: must be a positive time"));
  }
  SECTION("unknown GPU without --gpu") {
    o.gpu.clear();
    CHECK_THAT(input_error([&] { import_profile(o); }),
               Catch::Contains("GPU 'fixture' is not one Odyssey knows"));
  }
  SECTION("the scenario's machine has another GPU") {
    o.machine_gpu = "A100-SXM4-80GB";
    o.machine_name = "dgx-a100-superpod";
    CHECK_THAT(
        input_error([&] { import_profile(o); }),
        Catch::Contains("measured on H100-SXM5-80GB but machine 'dgx-a100-superpod' has A100-SXM4-80GB"));
  }
  CHECK_FALSE(fs::exists(out));
}

TEST_CASE("calibrate::gpu_type_of_device: CUDA device names of the preset GPUs", "[calibration]") {
  CHECK(gpu_type_of_device("NVIDIA H100 80GB HBM3") == "H100-SXM5-80GB");
  CHECK(gpu_type_of_device("NVIDIA A100-SXM4-80GB") == "A100-SXM4-80GB");
  CHECK(gpu_type_of_device("NVIDIA H100 PCIe").empty());
}

TEST_CASE("calibrate::scenario_shapes: the GEMM and attention shapes a scenario prices", "[calibration]") {
  const Scenario s =
      load_scenario((ROOT / "scenarios/llama3-70b-dgx-h100.yaml").string(), {.data_dir = ROOT.string()});
  const Workload w(s.model, s.training, s.parallelism);
  const std::string shapes = scenario_shapes(w);
  // Llama 3 70B, tp 8, 8192 tokens per micro-batch: QKV of 64 + 2 x 8 heads of 128 over 8 ranks.
  CHECK_THAT(shapes, Catch::Contains("gemm qkv fprop 8192 1280 8192 1 bf16\n"));
  CHECK_THAT(shapes, Catch::Contains("gemm qkv_wgrad wgrad 8192 1280 8192 1 bf16\n"));
  CHECK_THAT(shapes, Catch::Contains("attention attn_core 1 8 1 8192 8192 128 1 bf16\n"));
  // Every GEMM the workload runs is listed once.
  std::set<std::string> seen;
  for (int st = 0; st < w.stages(); ++st)
    for (const ComputeOp& op : w.chunk(st, 0).forward.compute)
      if (op.kind == OpKind::GEMM) CHECK_THAT(shapes, Catch::Contains("gemm " + op.name + " "));
}

TEST_CASE("calibrate::report: GEMMs priced by extrapolation are listed", "[calibration]") {
  ScratchDir dir("calibrate-report");
  const fs::path out = dir.path / "fixture.yaml";
  import_profile(fixture_import(out));
  // 512-token micro-batches: below the fixture's smallest recorded dimension (1024).
  const Scenario s = load_scenario((ROOT / "scenarios/llama3-70b-dgx-h100.yaml").string(),
                                   {.data_dir = ROOT.string(), .overrides = {"model.seq_len=512"}});
  const Workload w(s.model, s.training, s.parallelism);
  SimulationResult result;
  result.iteration_time = Seconds(1.0);

  const CostModel measured(load_profile(out.string()));
  const Report r = make_report(s.name, s.machine, w, measured, result, Fidelity::FAST);
  REQUIRE_FALSE(r.extrapolated_gemms.empty());
  CHECK(r.extrapolated_gemms.front() == "qkv 512x1280x8192 bf16");
  CHECK_THAT(
      render_text(r),
      Catch::Contains("GEMM shapes outside the profile's measured range, extrapolated conservatively"));
  CHECK_THAT(render_json(r), Catch::Contains("\"extrapolated_gemms\""));

  const CostModel datasheet(
      load_profile((ROOT / "calibration/profiles/h100-sxm5-80gb-datasheet.yaml").string()));
  const Report d = make_report(s.name, s.machine, w, datasheet, result, Fidelity::FAST);
  CHECK(d.extrapolated_gemms.empty());
  CHECK_THAT(render_json(d), !Catch::Contains("extrapolated_gemms"));
}
