#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "calibration/cost_model.hpp"
#include "calibration/profile.hpp"
#include "models/input/diagnostics.hpp"
#include "tests/unit/scratch.hpp"

using namespace odyssey;
using odyssey::test::input_error;
using odyssey::test::ScratchDir;
namespace fs = std::filesystem;

namespace {

const fs::path PROFILE_DIR = fs::path(ODYSSEY_DATA_DIR) / "calibration" / "profiles";

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p);
  out << text;
}

std::string replace_once(std::string text, const std::string& from, const std::string& to) {
  const auto at = text.find(from);
  REQUIRE(at != std::string::npos);
  return text.replace(at, from.size(), to);
}

std::string h100_text() {
  return read_text(PROFILE_DIR / "h100-sxm5-80gb-datasheet.yaml");
}

} // namespace

TEST_CASE("calibration::Profile: every shipped profile loads", "[calibration]") {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(PROFILE_DIR)) {
    if (entry.path().extension() == ".yaml") files.push_back(entry.path());
  }
  REQUIRE(files.size() >= 4);
  // No measured profile ships; a published one wins over its GPU's datasheet profile.
  std::set<std::string> published_gpus;
  for (const fs::path& file : files) {
    const Profile p = load_profile(file.string());
    if (p.provenance.kind == ProfileKind::PUBLISHED) published_gpus.insert(p.gpu);
  }
  for (const fs::path& file : files) {
    INFO(file.string());
    const Profile p = load_profile(file.string());
    CHECK(p.name == file.stem().string());
    CHECK_FALSE(p.gpu.empty());
    CHECK(p.provenance.kind != ProfileKind::MEASURED);
    CHECK((p.provenance.kind == ProfileKind::DATASHEET || !p.tables.empty()));
    CHECK_FALSE(p.provenance.source.empty());
    CHECK_FALSE(p.peak.empty());
    CHECK(p.sms > 0);
    CHECK(p.gemm_max_efficiency > 0.0);
    CHECK(p.gemm_max_efficiency <= 1.0);
    CHECK(p.memory_bandwidth.value() > 0.0);
    CHECK(p.nvlink.bus_efficiency < 1.0);
    CHECK(p.collective_base_latency.value() == Approx(8.4e-6));
    CHECK(p.nvlink.step_latency.value() == Approx(3.4e-6));
    CHECK(p.net.step_latency.value() == Approx(14.0e-6));
    if (p.provenance.kind == ProfileKind::PUBLISHED || !published_gpus.contains(p.gpu))
      CHECK(find_profile(PROFILE_DIR.string(), p.gpu) == file.string());
  }
}

TEST_CASE("calibration::Profile: datasheet values", "[calibration]") {
  const Profile h100 = load_profile((PROFILE_DIR / "h100-sxm5-80gb-datasheet.yaml").string());
  CHECK(h100.gpu == "H100-SXM5-80GB");
  CHECK(h100.peak.at(Precision::BF16).value() == Approx(989.4e12));
  CHECK(h100.peak.at(Precision::FP8).value() == Approx(1978.9e12));
  CHECK(h100.gemm_max_efficiency_by_dtype.at(Precision::FP8) == Approx(0.709));
  CHECK(h100.memory_bandwidth.value() == Approx(3.35e12));
  CHECK(h100.nvlink.bandwidth.value() == Approx(450e9));
  CHECK(h100.sms == 132);
  // Sustained at the power limit: ml-engineering's MSMF of the H200 over the MAMF the fractions rest on.
  CHECK(h100.sustained(Precision::BF16) == Approx(755.0 / 794.5).epsilon(1e-3));
  CHECK(h100.sustained(Precision::FP8) == Approx(1354.0 / 1402.6).epsilon(1e-3));

  const Profile v100 = load_profile((PROFILE_DIR / "v100-sxm2-32gb-datasheet.yaml").string());
  CHECK_FALSE(v100.peak.contains(Precision::BF16));
  const CostModel model(v100);
  ComputeOp op;
  op.name = "qkv";
  op.dtype = Precision::BF16;
  op.gemm = {.m = 1024, .n = 1024, .k = 1024};
  op.flops = Flops(2.0 * 1024 * 1024 * 1024);
  CHECK_THROWS_WITH(model.compute_time(op),
                    Catch::StartsWith("GPU V100-SXM2-32GB has no bf16 peak in profile ") &&
                        Catch::Contains("fp16"));
  CHECK_THROWS_AS(model.compute_time(op), std::invalid_argument);
}

TEST_CASE("calibration::Profile: rejected profiles", "[calibration]") {
  ScratchDir dir("test-profile-rejected");
  const fs::path file = dir.path / "bad.yaml";

  SECTION("unsupported format version") {
    write_text(file, replace_once(h100_text(), "format: odyssey-profile/1", "format: odyssey-profile/2"));
    const std::string msg = input_error([&] { load_profile(file.string()); });
    CHECK_THAT(
        msg, Catch::Contains("unsupported profile format 'odyssey-profile/2' (expected odyssey-profile/1)"));
    CHECK_THAT(msg, Catch::Contains("bad.yaml:6:"));
  }
  SECTION("missing table names it") {
    std::string text = h100_text();
    const auto from = text.find("\nattention:");
    const auto to = text.find("\nmemory:");
    REQUIRE((from != std::string::npos && to != std::string::npos && from < to));
    write_text(file, text.erase(from, to - from));
    CHECK_THAT(input_error([&] { load_profile(file.string()); }), Catch::Contains("attention"));
  }
  SECTION("missing key inside a table names its path") {
    write_text(file, replace_once(h100_text(), "kernel:\n  launch_overhead: \"4 us\"", "kernel: {}"));
    const std::string msg = input_error([&] { load_profile(file.string()); });
    CHECK_THAT(msg, Catch::Contains("kernel") && Catch::Contains("launch_overhead"));
  }
  SECTION("the GEMM model's constants are checked where they stand") {
    write_text(file, replace_once(h100_text(), "  fill: 3\n", "  fill: -1\n"));
    CHECK_THAT(input_error([&] { load_profile(file.string()); }),
               Catch::Contains("gemm.fill") && Catch::Contains("expected 0 to 64 main-loop iterations"));
    write_text(file, replace_once(h100_text(), "  max_split_k: 4\n", "  max_split_k: 0\n"));
    CHECK_THAT(input_error([&] { load_profile(file.string()); }), Catch::Contains("gemm.max_split_k"));
    write_text(file, replace_once(h100_text(), "  tiles: [", "  tiles: []\n  old_tiles: ["));
    CHECK_THAT(input_error([&] { load_profile(file.string()); }), Catch::Contains("gemm"));
  }
  SECTION("a best shape needs its best fraction") {
    std::string text = h100_text();
    const auto at = text.find("    fp8: 0.709");
    REQUIRE(at != std::string::npos);
    write_text(file,
               text.erase(at, text.find('\n', at) + 1 - at)); // fp8's best fraction gone, its shape kept
    CHECK_THAT(input_error([&] { load_profile(file.string()); }),
               Catch::Contains("gemm.best_shape.fp8") && Catch::Contains("has no max_efficiency to go with"));
    write_text(file, replace_once(h100_text(), "    fp8: {m: 1024, n: 9216, k: 14336}",
                                  "    fp8: {m: 1024, n: 9216}"));
    CHECK_THAT(input_error([&] { load_profile(file.string()); }),
               Catch::Contains("gemm.best_shape.fp8") && Catch::Contains("k"));
  }
  SECTION("a sustained fraction is a fraction, of a dtype with a peak") {
    write_text(file, replace_once(h100_text(), "    fp8: 0.9653", "    fp8: 1.2"));
    CHECK(input_error([&] { load_profile(file.string()); }) ==
          file.string() + ":45:10: error: gemm.sustained.fp8: must be a fraction in (0, 1], got 1.2");
    write_text(file, replace_once(h100_text(), "    fp8: 0.9653", "    fp32: 0.9653"));
    CHECK_THAT(input_error([&] { load_profile(file.string()); }),
               Catch::Contains("gemm.sustained.fp32") && Catch::Contains("has no matching peak"));
  }
  SECTION("FlashAttention-2's figures come as a pair") {
    write_text(file,
               replace_once(h100_text(), "flash_attention_2: {efficiency: 0.35, backward_efficiency: 0.34}",
                            "flash_attention_2: {efficiency: 0.35}"));
    CHECK_THAT(input_error([&] { load_profile(file.string()); }),
               Catch::Contains("attention.flash_attention_2") && Catch::Contains("backward_efficiency"));
  }
  SECTION("efficiency above one") {
    write_text(file, replace_once(h100_text(), "efficiency: 0.85", "efficiency: 1.2"));
    CHECK_THAT(input_error([&] { load_profile(file.string()); }),
               Catch::Contains("memory.efficiency") && Catch::Contains("fraction"));
  }
  SECTION("unknown key") {
    write_text(file, replace_once(h100_text(), "attention:", "atention:"));
    CHECK_THAT(input_error([&] { load_profile(file.string()); }), Catch::Contains("atention"));
  }
  SECTION("empty gpu") {
    write_text(file, replace_once(h100_text(), "gpu: H100-SXM5-80GB", "gpu: \"\""));
    CHECK_THAT(input_error([&] { load_profile(file.string()); }), Catch::Contains("gpu"));
  }
}

TEST_CASE("calibration::find_profile: measured beats datasheet, then newest, then name", "[calibration]") {
  ScratchDir dir("test-profile-find");
  const std::string base = h100_text();
  const std::string measured_old = replace_once(replace_once(base, "kind: datasheet", "kind: measured"),
                                                "date: \"2026-11-25\"", "date: \"2024-01-01\"");
  const std::string datasheet_new = replace_once(base, "date: \"2026-11-25\"", "date: \"2027-06-01\"");
  write_text(dir.path / "a-datasheet.yaml", datasheet_new);
  write_text(dir.path / "b-measured.yaml", measured_old);
  write_text(dir.path / "c-datasheet.yaml", base);
  CHECK(find_profile(dir.path.string(), "H100-SXM5-80GB") == (dir.path / "b-measured.yaml").string());

  SECTION("newest measured wins") {
    write_text(dir.path / "d-measured.yaml",
               replace_once(measured_old, "date: \"2024-01-01\"", "date: \"2025-03-01\""));
    CHECK(find_profile(dir.path.string(), "H100-SXM5-80GB") == (dir.path / "d-measured.yaml").string());
  }
  SECTION("same kind and date: first name wins") {
    write_text(dir.path / "a-measured.yaml", measured_old);
    CHECK(find_profile(dir.path.string(), "H100-SXM5-80GB") == (dir.path / "a-measured.yaml").string());
  }
  SECTION("no profile for the GPU lists the available ones") {
    const std::string msg = input_error([&] { find_profile(dir.path.string(), "B200-SXM-192GB"); });
    CHECK_THAT(msg, Catch::Contains("no calibration profile for GPU 'B200-SXM-192GB' in " +
                                    dir.path.string() + " (available: H100-SXM5-80GB)"));
  }
}
