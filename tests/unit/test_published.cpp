// Published profiles: the readers of tables measured by others (calibration/published/), the
// import that turns them into a `kind: published` profile, the loader's checks of the published
// fields and find_profile's ranking of the three kinds.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <tuple>

#include "calibration/cost_model.hpp"
#include "calibration/import.hpp"
#include "calibration/profile.hpp"
#include "calibration/published.hpp"
#include "tests/unit/scratch.hpp"
#include "tools/run.hpp"

using namespace odyssey;
using odyssey::test::input_error;
using odyssey::test::ScratchDir;
namespace fs = std::filesystem;

namespace {

const fs::path ROOT = fs::path(ODYSSEY_DATA_DIR);
const fs::path PROFILES = ROOT / "calibration" / "profiles";
const fs::path XLA_SM90 = ROOT / "calibration" / "published" / "xla-matmul-sm90.textproto";
const fs::path XLA_COLLECTIVE_SM90 = ROOT / "calibration" / "published" / "xla-collective-sm90.textproto";
const fs::path H100_DATASHEET = PROFILES / "h100-sxm5-80gb-datasheet.yaml";

ImportOptions published_import(const fs::path& out, std::vector<PublishedTable> tables) {
  return ImportOptions{.published = std::move(tables),
                       .out = out.string(),
                       .base = H100_DATASHEET.string(),
                       .profiles_dir = PROFILES.string()};
}

fs::path write(const fs::path& dir, const std::string& name, const std::string& text) {
  const fs::path p = dir / name;
  std::ofstream(p) << text;
  return p;
}

} // namespace

TEST_CASE("calibrate::import: OpenXLA's sm_90 GEMM table becomes a published H100 profile", "[calibration]") {
  ScratchDir dir("published-xla");
  const fs::path out = dir.path / "h100-published.yaml";
  const ImportSummary summary = import_published(
      published_import(out, {{.format = PublishedFormat::XLA_MATMUL, .path = XLA_SM90.string()}}));
  const Profile p = load_profile(out.string());
  const Profile base = load_profile(H100_DATASHEET.string());
  CHECK(p.provenance.kind == ProfileKind::PUBLISHED);
  CHECK(p.gpu == "H100-SXM5-80GB");

  SECTION("every bf16 entry, and its rate back within rounding") {
    const XlaMatmulTable table = read_xla_matmul_table(XLA_SM90.string());
    CHECK(table.entries.size() == 375); // b in {1, 2, 4} x m, n, k in {256, ..., 4096}
    std::map<std::tuple<long, long, long, long>, double> bf16;
    for (const XlaMatmulEntry& e : table.entries)
      for (const XlaMatmulRate& r : e.rates)
        if (r.dtypes == "bf16xbf16->bf16") bf16[{e.b, e.m, e.n, e.k}] = r.flops_per_second;
    REQUIRE(bf16.size() == 375);
    REQUIRE(p.gemm_points.size() == 375);
    const double peak = base.peak.at(Precision::BF16).value();
    for (const GemmPoint& g : p.gemm_points) {
      CHECK(g.dtype == Precision::BF16);
      CHECK(g.efficiency * peak == Approx(bf16.at({g.batch, g.m, g.n, g.k})).epsilon(1e-5));
    }
  }
  SECTION("the copy is whole: every rate is 2 b m n k over a whole number of nanoseconds") {
    // OpenXLA's generator divides by an integer time in ns, so a miscopied digit breaks this.
    const XlaMatmulTable table = read_xla_matmul_table(XLA_SM90.string());
    int checked = 0;
    for (const XlaMatmulEntry& e : table.entries) {
      for (const XlaMatmulRate& r : e.rates) {
        const double work_ns = 2.0 * double(e.b) * double(e.m) * double(e.n) * double(e.k) * 1e9;
        const double ns = std::round(work_ns / r.flops_per_second);
        INFO("b " << e.b << " m " << e.m << " n " << e.n << " k " << e.k << " " << r.dtypes);
        CHECK(std::abs(work_ns / ns - r.flops_per_second) <= 1.0);
        ++checked;
      }
    }
    CHECK(checked == 750);
  }
  SECTION("each table names its source; the base's other values are kept") {
    REQUIRE(p.tables.size() == 1);
    CHECK(p.tables[0].table == "gemm bf16");
    CHECK_THAT(p.tables[0].source, Catch::Contains("372d578bb861cc5804e56d37d93aec931a59762c") &&
                                       Catch::Contains("matmul_interpolator_data.h"));
    CHECK(p.attention_efficiency == base.attention_efficiency);
    CHECK(p.nvlink.nvls_efficiency == base.nvlink.nvls_efficiency);
    CHECK(p.peak.at(Precision::FP8).value() == base.peak.at(Precision::FP8).value());
  }
  SECTION("f32 rates are left out, not priced at a peak they are not a fraction of") {
    // The H100 datasheet profile has no fp32 peak (only tf32, which Odyssey does not price).
    REQUIRE(summary.skipped.size() == 1);
    CHECK_THAT(summary.skipped[0],
               Catch::Contains("375 'f32xf32->f32' rates") && Catch::Contains("no fp32 peak"));
  }
}

TEST_CASE("calibrate::import: FlashAttention rows become attention points of their GPU", "[calibration]") {
  ScratchDir dir("published-fa");
  const fs::path out = dir.path / "h100-published.yaml";
  const fs::path csv = ROOT / "tests" / "calibration" / "fixture-flash-attention.csv";
  import_published(
      published_import(out, {{.format = PublishedFormat::FLASH_ATTENTION, .path = csv.string()}}));
  const Profile p = load_profile(out.string());
  REQUIRE(p.attention_points.size() == 3); // the A100 row is not this GPU's
  const double peak = 989.4e12;
  CHECK(p.attention_points[0].pass == AttentionPass::FORWARD);
  CHECK_FALSE(p.attention_points[0].causal);
  CHECK(p.attention_points[0].efficiency * peak == Approx(500e12).epsilon(1e-5));
  CHECK(p.attention_points[1].causal);
  CHECK(p.attention_points[1].efficiency * peak == Approx(400e12).epsilon(1e-5));
  CHECK(p.attention_points[2].pass == AttentionPass::BACKWARD);
  CHECK(p.attention_points[2].efficiency * peak == Approx(450e12).epsilon(1e-5));
  REQUIRE(p.tables.size() == 2);
  CHECK(p.tables[0].table == "attention backward bf16");
  CHECK(p.tables[1].table == "attention forward bf16");
  CHECK_THAT(p.tables[1].source, Catch::Contains("synthetic test fixture"));
}

TEST_CASE("calibrate::import: find_profile prefers measured over published over datasheet", "[calibration]") {
  ScratchDir dir("published-rank");
  fs::copy_file(H100_DATASHEET, dir.path / "h100-sxm5-80gb-datasheet.yaml");
  CHECK(find_profile(dir.path.string(), "H100-SXM5-80GB") ==
        (dir.path / "h100-sxm5-80gb-datasheet.yaml").string());
  // Named to sort first, so that only the kind can make it win.
  const fs::path published = dir.path / "a-published.yaml";
  import_published(
      published_import(published, {{.format = PublishedFormat::XLA_MATMUL, .path = XLA_SM90.string()}}));
  CHECK(find_profile(dir.path.string(), "H100-SXM5-80GB") == published.string());
  // The measured fixture's date is the datasheet's too; its kind decides.
  const fs::path fixtures = ROOT / "tests" / "calibration";
  const fs::path measured = dir.path / "z-measured.yaml";
  import_profile(ImportOptions{.raw_files = {(fixtures / "fixture-gemm.json").string()},
                               .out = measured.string(),
                               .gpu = "H100-SXM5-80GB",
                               .base = H100_DATASHEET.string()});
  CHECK(find_profile(dir.path.string(), "H100-SXM5-80GB") == measured.string());
}

TEST_CASE("calibrate::read_xla_collective_table: OpenXLA's sm_90 collectives, copied whole",
          "[calibration]") {
  const XlaCollectiveTable table = read_xla_collective_table(XLA_COLLECTIVE_SM90.string());
  CHECK(table.arch == "sm_90");
  CHECK_THAT(table.source, Catch::StartsWith("openxla/xla@336bb15c32a11820a81b226ae502d9ebbfab4412"));
  REQUIRE(table.entries.size() == 330);
  std::map<std::string, int> per_opcode;
  std::set<std::tuple<std::string, int, double>> seen;
  for (const XlaCollectiveEntry& e : table.entries) {
    ++per_opcode[e.opcode];
    // One point per collective, group size and buffer (collective-permute's three pair patterns
    // are not told apart here).
    if (e.opcode != "collective-permute")
      CHECK(seen.insert({e.opcode, e.devices_per_group, e.counted_bytes().value()}).second);
    // OpenXLA's generator divides the buffer by a whole number of nanoseconds and truncates: a
    // miscopied digit breaks this.
    const double ns = e.counted_bytes().value() * 1e9 / e.throughput;
    const double whole = std::round(ns);
    CHECK(std::floor(e.counted_bytes().value() * 1e9 / whole) == e.throughput);
  }
  for (const char* op : {"all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute"})
    CHECK(per_opcode[op] == 66); // 22 sizes, 1 KiB to 2 GiB, x 3 groupings
}

TEST_CASE("calibrate::import: OpenXLA's collective table gives the H100's NVLink group efficiencies",
          "[calibration]") {
  const Profile p = load_profile((PROFILES / "h100-sxm5-80gb-published.yaml").string());
  REQUIRE(p.nvlink.group_efficiency.size() == 12); // 4 collectives x groups of 2, 4 and 8
  const XlaCollectiveTable table = read_xla_collective_table(XLA_COLLECTIVE_SM90.string());
  for (const GroupEfficiency& g : p.nvlink.group_efficiency) {
    // The largest buffer of that collective and group size: its busbw over the port is the value.
    const XlaCollectiveEntry* largest = nullptr;
    for (const XlaCollectiveEntry& e : table.entries)
      if (collective_name(g.kind) == e.opcode && e.devices_per_group == g.ranks &&
          (largest == nullptr || e.counted_bytes() > largest->counted_bytes()))
        largest = &e;
    REQUIRE(largest != nullptr);
    CHECK(
        g.bus_efficiency ==
        Approx(largest->throughput * bus_factor(g.kind, g.ranks) / p.nvlink.bandwidth.value()).epsilon(1e-5));
    // And the cost model prices that point back (ring or point-to-point: NVLS not allowed).
    const CostModel ring(p, NcclConfig{.intra = LinkClass::NVLINK,
                                       .algorithms = parse_algorithms("ring"),
                                       .protocols = parse_protocols("Simple")});
    const Seconds t =
        ring.collective_time(g.kind, largest->counted_bytes(), GroupShape{.ranks = g.ranks, .servers = 1},
                             p.nvlink.bandwidth, p.net.bandwidth);
    CHECK(t.value() == Approx(largest->time().value()).epsilon(0.02));
  }
  // Between measured group sizes, linear in the ranks; beyond them, the nearest; other
  // collectives keep the link's efficiency.
  CHECK(p.nvlink.ring_efficiency(CollectiveKind::ALL_GATHER, 6) ==
        Approx((p.nvlink.ring_efficiency(CollectiveKind::ALL_GATHER, 4) +
                p.nvlink.ring_efficiency(CollectiveKind::ALL_GATHER, 8)) /
               2));
  CHECK(p.nvlink.ring_efficiency(CollectiveKind::ALL_GATHER, 16) ==
        p.nvlink.ring_efficiency(CollectiveKind::ALL_GATHER, 8));
  CHECK(p.nvlink.ring_efficiency(CollectiveKind::BROADCAST, 8) == p.nvlink.bus_efficiency);
  // A small group reaches less of the port than a whole server (the table's point).
  CHECK(p.nvlink.ring_efficiency(CollectiveKind::REDUCE_SCATTER, 2) <
        p.nvlink.ring_efficiency(CollectiveKind::REDUCE_SCATTER, 8));
}

TEST_CASE("calibrate::read_xla_collective_table: malformed text-proto", "[calibration]") {
  ScratchDir dir("published-bad-collective");
  const fs::path f = dir.path / "c.textproto";
  const std::string file = f.string();
  auto error_of = [&](const std::string& body) {
    write(dir.path, "c.textproto", "# source: test\nkey: \"sm_90\"\n" + body);
    return input_error([&] { read_xla_collective_table(file); });
  };
  const std::string ok_groups = "num_replica_groups: 1 num_devices_per_group: 8";
  CHECK(
      error_of("entry { opcode: \"all-reduse\" element_type: F32 dimensions: 4 " + ok_groups +
               " throughput: 1 }\n") ==
      file +
          ":3:17: error: entry.opcode: unknown opcode 'all-reduse' (expected one of all-reduce, all-gather, "
          "reduce-scatter, all-to-all, collective-permute)");
  CHECK_THAT(error_of("entry { opcode: \"all-reduce\" element_type: F33 dimensions: 4 " + ok_groups +
                      " throughput: 1 }\n"),
             Catch::StartsWith(file + ":3:44: error: entry.element_type: unknown element type 'F33'"));
  CHECK(error_of("entry { opcode: \"all-reduce\" element_type: F32 " + ok_groups + " throughput: 1 }\n") ==
        file + ":3:1: error: entry: missing field 'dimensions'");
  CHECK(error_of("entry { opcode: \"all-reduce\" element_type: F32 dimensions: 4 num_replica_groups: 1 "
                 "throughput: 1 }\n") == file + ":3:1: error: entry: missing field 'num_devices_per_group'");
  CHECK(error_of("entry { opcode: \"all-reduce\" element_type: F32 dimensions: 4 " + ok_groups +
                 " throughput: 0 }\n") ==
        file + ":3:121: error: entry.throughput: expected a positive number, got 0");
  CHECK_THAT(error_of("entry { opcode: \"collective-permute\" element_type: F32 dimensions: 4 "
                      "source_target_pairs { source: 1 target: 1 } throughput: 1 }\n"),
             Catch::Contains("entry.source_target_pairs: a pair from a device to itself"));
  CHECK_THAT(error_of("entry { opcode: \"all-reduce\" element_type: F32 dimensions: 4 " + ok_groups +
                      " source_target_pairs { target: 1 } throughput: 1 }\n"),
             Catch::Contains("only a collective-permute has source_target_pairs"));
  CHECK(error_of("") == file + ":1:1: error: entry: no entries");
  write(dir.path, "c.textproto", "# source: test\nentry { }\n");
  CHECK(input_error([&] { read_xla_collective_table(file); }) == file + ":1:1: error: missing field 'key'");
  // An import for a GPU the table was not measured on is refused.
  write(dir.path, "c.textproto",
        "# source: test\nkey: \"sm_100\"\nentry { opcode: \"all-reduce\" element_type: F32 dimensions: 4 " +
            ok_groups + " throughput: 1 }\n");
  CHECK_THAT(input_error([&] {
               import_published(published_import(
                   dir.path / "out.yaml", {{.format = PublishedFormat::XLA_COLLECTIVE, .path = file}}));
             }),
             Catch::Contains("the table is for 'sm_100', not 'sm_90'"));
  CHECK(parse_published_table("xla-collective=x.textproto").format == PublishedFormat::XLA_COLLECTIVE);
}

TEST_CASE("calibrate::read_xla_matmul_table: malformed text-proto", "[calibration]") {
  ScratchDir dir("published-bad-proto");
  const std::string head = "# source: test\nentries {\n  key: \"sm_90\"\n  value {\n";
  const std::string tail = "  }\n}\n";
  auto error_of = [&](const std::string& body) {
    const fs::path f = write(dir.path, "t.textproto", head + body + tail);
    return input_error([&] { read_xla_matmul_table(f.string()); });
  };
  const std::string file = (dir.path / "t.textproto").string();
  SECTION("an unknown field, with a did-you-mean") {
    CHECK(error_of("    entries { b: 1 m: 2 n: 3 kk: 4 flops { key: \"x\" value: 1 } }\n") ==
          file + ":5:30: error: entries.value.entries.kk: unknown field 'kk' (did you mean 'k'?)");
  }
  SECTION("a missing dimension") {
    CHECK(error_of("    entries { b: 1 m: 2 n: 3 flops { key: \"x\" value: 1 } }\n") ==
          file + ":5:5: error: entries.value.entries: missing field 'k'");
  }
  SECTION("a value that is not a positive number") {
    CHECK(error_of("    entries { b: 1 m: 2 n: 3 k: 4 flops { key: \"x\" value: -5 } }\n") ==
          file + ":5:59: error: entries.value.entries.flops.value: expected a positive number, got -5");
  }
  SECTION("an unclosed message") {
    const fs::path f = write(dir.path, "t.textproto", head + "    entries { b: 1\n");
    CHECK(input_error([&] { read_xla_matmul_table(f.string()); }) ==
          file + ":6:1: error: entries.value.entries: expected '}' to close 'entries', got end of file");
  }
  SECTION("no source") {
    const fs::path f = write(dir.path, "t.textproto", "entries { key: \"sm_90\" value { } }\n");
    CHECK_THAT(input_error([&] { read_xla_matmul_table(f.string()); }),
               Catch::StartsWith(file + ":1:1: error: ") && Catch::Contains("# source:"));
  }
  SECTION("no entries for the profile's GPU") {
    const fs::path f =
        write(dir.path, "t.textproto",
              "# source: test\nentries { key: \"sm_100\" value { entries { b: 1 m: 2 n: 3 k: 4 "
              "flops { key: \"bf16xbf16->bf16\" value: 1 } } } }\n");
    CHECK_THAT(input_error([&] {
                 import_published(published_import(
                     dir.path / "out.yaml", {{.format = PublishedFormat::XLA_MATMUL, .path = f.string()}}));
               }),
               Catch::Contains("no entries under 'sm_90' (H100-SXM5-80GB); the table has sm_100"));
  }
}

TEST_CASE("calibrate::read_flash_attention_table: malformed rows", "[calibration]") {
  ScratchDir dir("published-bad-csv");
  const std::string header = std::string(FLASH_ATTENTION_HEADER) + "\n";
  const fs::path f = dir.path / "fa.csv";
  auto error_of = [&](const std::string& text) {
    std::ofstream(f) << text;
    return input_error([&] { read_flash_attention_table(f.string()); });
  };
  CHECK(error_of(header + "H100-SXM5-80GB,FA3,sideways,bf16,128,512,false,300,src\n") ==
        f.string() + ":2:20: error: pass: unknown value 'sideways' (expected one of forward, backward)");
  CHECK(error_of(header + "H100-SXM5-80GB,FA3,forward,bf16,128,512,false,300,\n") ==
        f.string() + ":2:51: error: source: every row must cite its source");
  CHECK_THAT(error_of("gpu,pass\n"), Catch::StartsWith(f.string() + ":1:1: error: expected the header"));
}

TEST_CASE("profile::load_profile: published fields", "[calibration]") {
  ScratchDir dir("published-load");
  std::ifstream in(H100_DATASHEET);
  const std::string datasheet((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto with = [&](const std::string& from, const std::string& to, const std::string& extra = "") {
    std::string text = datasheet;
    const auto at = text.find(from);
    REQUIRE(at != std::string::npos);
    text.replace(at, from.size(), to);
    return write(dir.path, "p.yaml", text + extra).string();
  };
  SECTION("a published profile must list its tables") {
    const std::string f = with("kind: datasheet", "kind: published");
    CHECK(input_error([&] { load_profile(f); }) ==
          f + ":8:7: error: kind: a published profile must list its tables and their sources under 'tables'");
  }
  SECTION("tables, attention points and batched GEMM points are read") {
    const std::string f =
        with("kind: datasheet", "kind: published",
             "tables:\n  - {table: gemm bf16, source: \"somewhere@abc\"}\n"
             "gemm_points:\n  - {m: 256, n: 512, k: 1024, batch: 4, dtype: bf16, efficiency: 0.5}\n"
             "attention_points:\n  - {pass: backward, head_dim: 64, seq: 4096, causal: true, "
             "dtype: bf16, efficiency: 0.4}\n");
    const Profile p = load_profile(f);
    REQUIRE(p.tables.size() == 1);
    CHECK(p.tables[0].source == "somewhere@abc");
    REQUIRE(p.gemm_points.size() == 1);
    CHECK(p.gemm_points[0].batch == 4);
    REQUIRE(p.attention_points.size() == 1);
    CHECK(p.attention_points[0].pass == AttentionPass::BACKWARD);
    CHECK(p.attention_points[0].causal);
    CHECK(p.attention_points[0].seq == 4096);
  }
  SECTION("a bad attention point") {
    const std::string f =
        with("kind: datasheet", "kind: datasheet",
             "attention_points:\n  - {pass: sideways, head_dim: 64, seq: 4096, causal: true, "
             "dtype: bf16, efficiency: 0.4}\n");
    CHECK_THAT(input_error([&] { load_profile(f); }),
               Catch::Contains("attention_points[0].pass: unknown value 'sideways'"));
  }
}

TEST_CASE("calibration::GemmModel: the H100 datasheet profile against OpenXLA's measured table",
          "[calibration]") {
  // The analytic model with the shipped H100 constants (no points: the datasheet profile), and
  // the launch overhead the cost model adds, against the 125 single GEMMs OpenXLA measured:
  // mean relative error of the time. README ("Calibration") quotes these figures.
  const CostModel cost(load_profile(H100_DATASHEET.string()));
  const XlaMatmulTable table = read_xla_matmul_table(XLA_SM90.string());
  double all = 0, large = 0;
  int n_all = 0, n_large = 0;
  for (const XlaMatmulEntry& e : table.entries) {
    if (e.b != 1) continue;
    for (const XlaMatmulRate& r : e.rates) {
      if (r.dtypes != "bf16xbf16->bf16") continue;
      ComputeOp op;
      op.kind = OpKind::GEMM;
      op.dtype = Precision::BF16;
      op.gemm = {.m = e.m, .n = e.n, .k = e.k};
      const double flops = 2.0 * double(e.m) * double(e.n) * double(e.k);
      op.flops = Flops(flops);
      const double error = std::abs(cost.compute_time(op).value() / (flops / r.flops_per_second) - 1);
      all += error;
      ++n_all;
      if (flops >= 0x1p31) {
        large += error;
        ++n_large;
      }
    }
  }
  REQUIRE(n_all == 125);
  INFO("mean time error " << all / n_all << " over " << n_all << " GEMMs, " << large / n_large << " over the "
                          << n_large << " of 2^31 FLOPs or more");
  CHECK(all / n_all < 0.15);
  CHECK(large / n_large < 0.10);
}

namespace {

const fs::path LAYER_TIMES = ROOT / "calibration" / "published" / "korthikanti22-layer-times.csv";
const fs::path A100_DATASHEET = PROFILES / "a100-sxm4-80gb-datasheet.yaml";

ImportOptions layer_time_import(const fs::path& out, const fs::path& table) {
  return ImportOptions{.published = {{.format = PublishedFormat::LAYER_TIMES, .path = table.string()}},
                       .out = out.string(),
                       .base = A100_DATASHEET.string(),
                       .profiles_dir = PROFILES.string(),
                       .price_layer = [](const LayerTimeRow& row, const Profile& profile) {
                         return price_measured_layer(row, profile, ROOT.string());
                       }};
}

std::string text_of(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

} // namespace

TEST_CASE("calibrate::import: Korthikanti et al.'s layer times make the shipped A100 published profile",
          "[calibration]") {
  ScratchDir dir("published-layers");
  const fs::path out = dir.path / "a100-sxm4-80gb-published.yaml";
  const ImportSummary summary = import_published(layer_time_import(out, LAYER_TIMES));
  // The shipped profile is this import's output, value for value: rerunning it changes nothing.
  CHECK(text_of(out) == text_of(PROFILES / "a100-sxm4-80gb-published.yaml"));
  const Profile p = load_profile(out.string());
  CHECK(p.provenance.kind == ProfileKind::PUBLISHED);
  CHECK(p.kernel_time_scale > 1.0); // the layers took longer than the datasheet model prices them
  REQUIRE(p.tables.size() == 1);
  CHECK_THAT(p.tables[0].source, Catch::Contains("arXiv 2205.05198") && Catch::Contains("Table 4"));

  // One scale for ten measured passes: each row's forward and backward, priced with it, within
  // 5% of its measurement (the rows differ in sequence parallelism and recomputation, not scale).
  const std::vector<LayerTimeRow> rows = read_layer_time_table(LAYER_TIMES.string());
  REQUIRE(rows.size() == 5);
  for (const LayerTimeRow& r : rows) {
    INFO(r.experiment);
    const LayerPrice priced = price_measured_layer(r, p, ROOT.string());
    // Priced with the scaled profile, the kernels carry the scale already.
    CHECK((priced.forward_compute + priced.forward_other) / r.forward == Approx(1.0).margin(0.05));
    CHECK((priced.backward_compute + priced.backward_other) / r.backward == Approx(1.0).margin(0.05));
  }
  // Full recomputation reruns the forward in the backward: the measured backward grows by about
  // the forward (7.6 ms), and the priced one by as much.
  const LayerPrice none = price_measured_layer(rows[0], p, ROOT.string());
  const LayerPrice full = price_measured_layer(rows[2], p, ROOT.string());
  const Seconds grown =
      full.backward_compute + full.backward_other - none.backward_compute - none.backward_other;
  CHECK(grown.value() == Approx((rows[2].backward - rows[0].backward).value()).epsilon(0.1));
  CHECK(summary.measured.size() == 1 + rows.size());
}

TEST_CASE("calibrate::import: layer-time tables, bad input", "[calibration]") {
  ScratchDir dir("published-layers-bad");
  const fs::path f = dir.path / "layers.csv";
  const std::string header = std::string(LAYER_TIME_HEADER) + "\n";
  auto error_of = [&](const std::string& text) {
    std::ofstream(f) << text;
    return input_error([&] { read_layer_time_table(f.string()); });
  };
  CHECK(error_of(header + "A100-SXM4-80GB,s.yaml,false,some,7.7,11.9,Baseline,src\n") ==
        f.string() + ":2:29: error: recompute: unknown value 'some' (expected one of none, selective, full)");
  CHECK(error_of(header + "A100-SXM4-80GB,s.yaml,false,none,-7.7,11.9,Baseline,src\n") ==
        f.string() + ":2:34: error: forward_ms: expected a positive number, got '-7.7'");
  CHECK(error_of(header + "A100-SXM4-80GB,s.yaml,false,none,7.7,11.9,Baseline,\n") ==
        f.string() + ":2:52: error: source: every row must cite its source");
  CHECK_THAT(error_of(header), Catch::Contains("the table has no rows"));

  SECTION("the row's scenario runs another GPU") {
    const fs::path scenario = ROOT / "calibration" / "published" / "korthikanti22-22b-layer.yaml";
    std::ofstream(f) << header << "H100-SXM5-80GB," << scenario.string()
                     << ",false,none,7.7,11.9,Baseline,src\n";
    ImportOptions o = layer_time_import(dir.path / "out.yaml", f);
    o.base = H100_DATASHEET.string();
    CHECK_THAT(
        input_error([&] { import_published(o); }),
        Catch::Contains("scenario: its machine 'dgx-a100-superpod' has A100-SXM4-80GB, the row measured "
                        "H100-SXM5-80GB"));
  }
  SECTION("a scenario that is not there, at its cell") {
    std::ofstream(f) << header << "A100-SXM4-80GB,missing.yaml,false,none,7.7,11.9,Baseline,src\n";
    CHECK(input_error([&] { import_published(layer_time_import(dir.path / "out.yaml", f)); }) ==
          f.string() +
              ":2:16: error: scenario: no such scenario file: " + (dir.path / "missing.yaml").string());
  }
  SECTION("a layer measured far from the model's price is refused, not scaled") {
    const fs::path scenario = ROOT / "calibration" / "published" / "korthikanti22-22b-layer.yaml";
    std::ofstream(f) << header << "A100-SXM4-80GB," << scenario.string()
                     << ",false,none,77,119,Baseline,src\n";
    CHECK_THAT(input_error([&] { import_published(layer_time_import(dir.path / "out.yaml", f)); }),
               Catch::Contains("a factor beyond 0.5-2 says the model or the table is wrong"));
    CHECK_FALSE(fs::exists(dir.path / "out.yaml")); // nothing half-written
  }
  SECTION("a layer in a precision the profile has no peak for, at the scenario's key") {
    std::ifstream in(ROOT / "calibration" / "published" / "korthikanti22-22b-layer.yaml");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    text.replace(text.find("precision: fp16"), 15, "precision: fp8");
    const fs::path scenario = write(dir.path, "fp8-layer.yaml", text);
    std::ofstream(f) << header << "A100-SXM4-80GB,fp8-layer.yaml,false,none,7.7,11.9,Baseline,src\n";
    CHECK_THAT(input_error([&] { import_published(layer_time_import(dir.path / "out.yaml", f)); }),
               Catch::StartsWith(scenario.string() + ":") &&
                   Catch::Contains("training.precision: GPU A100-SXM4-80GB has no fp8 peak"));
  }
  SECTION("without the command line's pricing") {
    ImportOptions o = layer_time_import(dir.path / "out.yaml", LAYER_TIMES);
    o.price_layer = nullptr;
    CHECK_THAT(input_error([&] { import_published(o); }),
               Catch::Contains("need the command line's layer pricing"));
  }
}

TEST_CASE("calibrate::import: the H100 carries the A100's layer-time factor as an assumption, and says so",
          "[calibration]") {
  ScratchDir dir("published-assumed-scale");
  const fs::path a100 = PROFILES / "a100-sxm4-80gb-published.yaml";
  const fs::path out = dir.path / "h100-sxm5-80gb-published.yaml";
  const ImportSummary summary = import_published(published_import(
      out, {{.format = PublishedFormat::XLA_MATMUL, .path = XLA_SM90.string()},
            {.format = PublishedFormat::XLA_COLLECTIVE, .path = XLA_COLLECTIVE_SM90.string()},
            {.format = PublishedFormat::ASSUMED_TIME_SCALE, .path = a100.string()}}));
  // The shipped H100 profile is this import's output, value for value.
  CHECK(text_of(out) == text_of(PROFILES / "h100-sxm5-80gb-published.yaml"));
  const Profile p = load_profile(out.string());
  CHECK(p.kernel_time_scale == load_profile(a100.string()).kernel_time_scale);
  CHECK(p.kernel_time_scale > 1.0);
  REQUIRE(p.tables.size() == 3);
  CHECK(p.tables[2].table == ASSUMED_TIME_SCALE_TABLE);
  CHECK_THAT(kernel_time_scale_origin(p),
             Catch::StartsWith("the layer times measured in Korthikanti") &&
                 Catch::Contains("on A100-SXM4-80GB") &&
                 Catch::Contains("ASSUMED for H100-SXM5-80GB for want of its own"));
  CHECK_THAT(summary.measured.back(), Catch::Contains("ASSUMED"));

  SECTION("only a factor fitted to another GPU's measured layer times is carried over") {
    const fs::path bad = dir.path / "bad.yaml";
    auto error_for = [&](const fs::path& from, std::vector<PublishedTable> more = {}) {
      std::vector<PublishedTable> tables{
          {.format = PublishedFormat::ASSUMED_TIME_SCALE, .path = from.string()}};
      tables.insert(tables.end(), more.begin(), more.end());
      ImportOptions o = published_import(bad, tables);
      o.price_layer = [](const LayerTimeRow& row, const Profile& profile) {
        return price_measured_layer(row, profile, ROOT.string());
      };
      return input_error([&] { import_published(o); });
    };
    CHECK_THAT(
        error_for(PROFILES / "v100-sxm2-32gb-datasheet.yaml"),
        Catch::Contains("kernel.time_scale: v100-sxm2-32gb-datasheet has no kernel.time_scale fitted to "
                        "measured layer times to carry over"));
    // An assumed factor is not carried on again.
    CHECK_THAT(error_for(PROFILES / "h100-sxm5-80gb-published.yaml"),
               Catch::Contains("h100-sxm5-80gb-published has no kernel.time_scale fitted to measured layer"));
    ImportOptions own =
        published_import(bad, {{.format = PublishedFormat::ASSUMED_TIME_SCALE, .path = a100.string()}});
    own.base = A100_DATASHEET.string();
    CHECK_THAT(input_error([&] { import_published(own); }),
               Catch::Contains("gpu: a100-sxm4-80gb-published describes A100-SXM4-80GB itself: import its "
                               "layer-times table instead"));
    CHECK_THAT(error_for(a100, {{.format = PublishedFormat::ASSUMED_TIME_SCALE, .path = a100.string()}}),
               Catch::Contains("give one layer-times or assumed-time-scale table"));
    CHECK_FALSE(fs::exists(bad)); // nothing half-written
  }
  CHECK(parse_published_table("assumed-time-scale=x.yaml").format == PublishedFormat::ASSUMED_TIME_SCALE);
}

TEST_CASE("calibrate::import: the H200, the H100's die, carries the same assumed factor", "[calibration]") {
  // Without it an H200 run would price its kernels 10% faster than the same run on an H100 for no
  // reason of the hardware: the two share the GH100 die, its SMs and its clocks.
  ScratchDir dir("published-h200");
  const fs::path a100 = PROFILES / "a100-sxm4-80gb-published.yaml";
  const fs::path out = dir.path / "h200-sxm-141gb-published.yaml";
  ImportOptions o =
      published_import(out, {{.format = PublishedFormat::ASSUMED_TIME_SCALE, .path = a100.string()}});
  o.base = (PROFILES / "h200-sxm-141gb-datasheet.yaml").string();
  (void)import_published(o);
  // The shipped H200 profile is this import's output, value for value.
  CHECK(text_of(out) == text_of(PROFILES / "h200-sxm-141gb-published.yaml"));
  const Profile p = load_profile(out.string());
  CHECK(p.provenance.kind == ProfileKind::PUBLISHED);
  CHECK(p.kernel_time_scale ==
        load_profile((PROFILES / "h100-sxm5-80gb-published.yaml").string()).kernel_time_scale);
  CHECK_THAT(kernel_time_scale_origin(p), Catch::Contains("ASSUMED for H200-SXM-141GB for want of its own"));
  // calibration: auto takes it over the datasheet profile.
  CHECK(fs::path(find_profile(PROFILES.string(), "H200-SXM-141GB")).filename() ==
        "h200-sxm-141gb-published.yaml");
}

TEST_CASE("profile::load_profile: kernel.time_scale", "[calibration]") {
  ScratchDir dir("published-scale");
  const std::string shipped = text_of(PROFILES / "a100-sxm4-80gb-published.yaml");
  auto with_scale = [&](const std::string& kind, const std::string& scale) {
    std::string text = shipped;
    text.replace(text.find("kind: published"), 15, "kind: " + kind);
    const auto at = text.find("time_scale: ");
    text.replace(at, text.find('\n', at) - at, "time_scale: " + scale);
    return write(dir.path, "p.yaml", text).string();
  };
  CHECK(load_profile(with_scale("published", "1.25")).kernel_time_scale == 1.25);
  CHECK_THAT(input_error([&] { load_profile(with_scale("published", "3")); }),
             Catch::Contains("kernel.time_scale: expected a number from 0.5 to 2, got 3"));
  CHECK_THAT(input_error([&] { load_profile(with_scale("datasheet", "1.25")); }),
             Catch::Contains("only a published or measured profile may scale kernel times"));

  SECTION("every kernel's time is scaled, collectives are not") {
    const Profile scaled = load_profile(with_scale("published", "1.25"));
    Profile unscaled = scaled;
    unscaled.kernel_time_scale = 1.0;
    const ComputeOp gemm{.name = "g",
                         .kind = OpKind::GEMM,
                         .dtype = Precision::FP16,
                         .gemm = {.m = 4096, .n = 4096, .k = 4096},
                         .flops = Flops(2.0 * 4096 * 4096 * 4096),
                         .kernels = 1};
    ComputeOp stream = gemm;
    stream.kind = OpKind::MEMORY_BOUND;
    stream.bytes = Bytes(1e9);
    const CostModel a(scaled), b(unscaled);
    for (const ComputeOp& op : {gemm, stream})
      CHECK(a.compute_time(op).value() == Approx(1.25 * b.compute_time(op).value()).epsilon(1e-12));
    const GroupShape g{.ranks = 8, .servers = 1};
    CHECK(a.collective_time(CollectiveKind::ALL_REDUCE, Bytes(1e8), g, BytesPerSecond(300e9),
                            BytesPerSecond(25e9))
              .value() == b.collective_time(CollectiveKind::ALL_REDUCE, Bytes(1e8), g, BytesPerSecond(300e9),
                                            BytesPerSecond(25e9))
                              .value());
  }
}

TEST_CASE("calibrate::read_published_mfu_table: rows, the best per GPU and peak, bad input",
          "[calibration]") {
  ScratchDir dir("published-mfu");
  const std::string header = std::string(PUBLISHED_MFU_HEADER) + "\n";
  const fs::path f = write(dir.path, "mfu.csv",
                           header + "# a comment\n"
                                    "A100-SXM4-80GB,fp16,52.1,64,\"GPT 175B, full\",paper A\n"
                                    "A100-SXM4-80GB,bf16,56.3,512,GPT 1T,paper B\n"
                                    "H100-SXM5-80GB,bf16,43,8192,Llama 3 405B,paper C\n");
  const auto rows = read_published_mfu_table(f.string());
  REQUIRE(rows.size() == 3);
  CHECK(rows[0].run == "GPT 175B, full");
  CHECK(rows[0].mfu == Approx(0.521));
  CHECK(rows[0].where.line == 3);

  // The highest row of the GPU, fp16 and bf16 alike (one peak); none for another precision or GPU.
  const auto a100 = best_published_mfu(rows, "A100-SXM4-80GB", "fp16");
  REQUIRE(a100);
  CHECK(a100->source == "paper B");
  CHECK(best_published_mfu(rows, "H100-SXM5-80GB", "fp16")->mfu == Approx(0.43));
  CHECK_FALSE(best_published_mfu(rows, "H100-SXM5-80GB", "fp8"));
  CHECK_FALSE(best_published_mfu(rows, "V100-SXM2-32GB", "fp16"));

  auto error_of = [&](const std::string& text) {
    std::ofstream(f) << text;
    return input_error([&] { read_published_mfu_table(f.string()); });
  };
  CHECK(error_of(header + "A100-SXM4-80GB,fp16,156.3,512,GPT 1T,src\n") ==
        f.string() + ":2:21: error: mfu_percent: 156.3 is above 100");
  CHECK(error_of(header + "A100-SXM4-80GB,int8,56.3,512,GPT 1T,src\n") ==
        f.string() + ":2:16: error: precision: unknown value 'int8' (expected one of fp32, fp16, bf16, fp8)");
  CHECK(error_of(header + "A100-SXM4-80GB,fp16,56.3,512,GPT 1T,\n") ==
        f.string() + ":2:37: error: source: every row must cite its source");
  CHECK(error_of(header + "A100-SXM4-80GB,fp16,56.3,0.5,GPT 1T,src\n") ==
        f.string() + ":2:26: error: gpus: expected a positive integer, got '0.5'");
  CHECK(error_of(header) == f.string() + ":1:1: error: the table has no rows");
}

TEST_CASE("tools::scenario_published_mfu: the shipped table has the A100 and H100 runs, found by GPU and "
          "precision",
          "[calibration]") {
  auto published = [](const std::string& scenario, std::vector<std::string> sets = {}) {
    return scenario_published_mfu(
        load_scenario((ROOT / scenario).string(), {.data_dir = ROOT.string(), .overrides = std::move(sets)}));
  };
  const auto a100 = published("tests/validation/korthikanti-2022/korthikanti22-1t-selective.yaml");
  REQUIRE(a100);
  CHECK(a100->mfu == Approx(0.563));
  CHECK(a100->source.find("2205.05198") != std::string::npos);
  const auto h100 = published("scenarios/llama3-70b-dgx-h100.yaml");
  REQUIRE(h100);
  CHECK(h100->mfu == Approx(0.43));
  // No published MFU for FP8 on the H100 or for the V100: no comparison.
  CHECK_FALSE(published("scenarios/llama3-70b-dgx-h100.yaml", {"training.precision=fp8"}));
  CHECK_FALSE(published("scenarios/gpt3-175b-azure-2020.yaml"));
}
