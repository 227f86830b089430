#include <catch2/catch.hpp>

#include <string>

#include "models/input/units_parse.hpp"
#include "models/input/yaml_reader.hpp"
#include "models/wording.hpp"

using namespace odyssey;
using Catch::Matchers::Equals;

TEST_CASE("models::units: parses byte sizes", "[units]") {
  CHECK(parse_quantity("80 GiB", Dimension::BYTES) == 80.0 * 1024 * 1024 * 1024);
  CHECK(parse_quantity("160 MB", Dimension::BYTES) == 160e6);
  CHECK(parse_quantity("1.5kB", Dimension::BYTES) == 1500.0);
  CHECK(parse_quantity("8 b", Dimension::BYTES) == 1.0);
  CHECK(parse_quantity("1 Gb", Dimension::BYTES) == 125e6);
  CHECK(parse_quantity("2 PB", Dimension::BYTES) == 2e15);
  CHECK(parse_quantity(" 4 KiB ", Dimension::BYTES) == 4096.0);
}

TEST_CASE("models::units: parses byte rates", "[units]") {
  CHECK(parse_quantity("400 Gb/s", Dimension::BYTE_RATE) == 50e9);
  CHECK(parse_quantity("25 GB/s", Dimension::BYTE_RATE) == 25e9);
  CHECK(parse_quantity("100Mb/s", Dimension::BYTE_RATE) == 12.5e6);
  CHECK(parse_quantity("1 Tb/s", Dimension::BYTE_RATE) == 125e9);
  CHECK(parse_quantity("1 GiB/s", Dimension::BYTE_RATE) == 1073741824.0);
}

TEST_CASE("models::units: parses times", "[units]") {
  CHECK(parse_quantity("1.5 us", Dimension::TIME) == Approx(1.5e-6));
  CHECK(parse_quantity("936 ns", Dimension::TIME) == Approx(936e-9));
  CHECK(parse_quantity("2 ms", Dimension::TIME) == Approx(2e-3));
  CHECK(parse_quantity("3 min", Dimension::TIME) == 180.0);
  CHECK(parse_quantity("1 h", Dimension::TIME) == 3600.0);
  CHECK(parse_quantity("14.8 d", Dimension::TIME) == Approx(14.8 * 86400));
  CHECK(parse_quantity("5 ps", Dimension::TIME) == Approx(5e-12));
}

TEST_CASE("models::units: parses FLOP rates and FLOP counts", "[units]") {
  CHECK(parse_quantity("312 TFLOP/s", Dimension::FLOP_RATE) == 312e12);
  CHECK(parse_quantity("989.4 Tflop/s", Dimension::FLOP_RATE) == Approx(989.4e12));
  CHECK(parse_quantity("1 PFLOP/s", Dimension::FLOP_RATE) == 1e15);
  CHECK(parse_quantity("3.14e23 FLOP", Dimension::FLOPS) == Approx(3.14e23));
  CHECK(parse_quantity("1 EFLOP", Dimension::FLOPS) == 1e18);
  CHECK(parse_quantity("1EFLOP", Dimension::FLOPS) == 1e18);
}

TEST_CASE("models::units: parses plain counts", "[units]") {
  CHECK(parse_count("300e9") == 300e9);
  CHECK(parse_count("1536") == 1536.0);
  CHECK_THROWS_WITH(parse_count("many"), Equals("expected a number, got 'many'"));
  CHECK_THROWS_WITH(parse_count("400 GB"), Equals("expected a plain number without a unit, got '400 GB'"));
}

TEST_CASE("models::units: rejects bad quantities", "[units]") {
  SECTION("unknown unit") {
    CHECK_THROWS_WITH(
        parse_quantity("400 Gbs", Dimension::BYTE_RATE),
        Equals("unknown unit 'Gbs' (expected one of b/s, kb/s, Mb/s, Gb/s, Tb/s, B/s, kB/s, MB/s, GB/s, "
               "TB/s, KiB/s, MiB/s, GiB/s)"));
  }
  SECTION("missing unit") {
    CHECK_THROWS_WITH(
        parse_quantity("400", Dimension::BYTE_RATE),
        Equals("missing unit in '400' (expected one of b/s, kb/s, Mb/s, Gb/s, Tb/s, B/s, kB/s, MB/s, "
               "GB/s, TB/s, KiB/s, MiB/s, GiB/s)"));
  }
  SECTION("no number") {
    CHECK_THROWS_WITH(parse_quantity("fast", Dimension::BYTE_RATE),
                      Equals("expected a number with a unit, got 'fast'"));
  }
  SECTION("unit of another dimension") {
    CHECK_THROWS_AS(parse_quantity("80 GB", Dimension::BYTE_RATE), UnitError);
    CHECK_THROWS_AS(parse_quantity("1 s", Dimension::BYTES), UnitError);
  }
  SECTION("unit case matters: b is bits, B bytes, and no 'gb'") {
    CHECK_THROWS_AS(parse_quantity("80 gb", Dimension::BYTES), UnitError);
  }
  SECTION("infinity is not a number") {
    CHECK_THROWS_WITH(parse_quantity("inf GB", Dimension::BYTES),
                      Equals("expected a number with a unit, got 'inf GB'"));
  }
  SECTION("empty") {
    CHECK_THROWS_WITH(parse_quantity("", Dimension::TIME), Equals("expected a number with a unit, got ''"));
  }
}

TEST_CASE("models::units: format_quantity picks a readable unit", "[units]") {
  CHECK(format_quantity(80.0 * 1024 * 1024 * 1024, Dimension::BYTES) == "80 GiB");
  CHECK(format_quantity(160e6, Dimension::BYTES) == "160 MB");
  CHECK(format_quantity(50e9, Dimension::BYTE_RATE) == "50 GB/s");
  CHECK(format_quantity(1.5e-6, Dimension::TIME) == "1.5 us");
  CHECK(format_quantity(130e-9, Dimension::TIME) == "130 ns");
  CHECK(format_quantity(312e12, Dimension::FLOP_RATE) == "312 TFLOP/s");
  CHECK(format_quantity(50e9, "Gb/s") == "400 Gb/s");
  CHECK_THROWS_AS(format_quantity(1.0, "furlongs"), UnitError);
}

TEST_CASE("models::units: format_quantity round-trips through parse_quantity", "[units]") {
  struct Case {
    double value;
    Dimension dim;
  };
  const Case cases[] = {
      {80.0 * 1024 * 1024 * 1024, Dimension::BYTES},
      {160e6, Dimension::BYTES},
      {1.0, Dimension::BYTES},
      {12345678901.0, Dimension::BYTES},
      {32e9, Dimension::BYTES},
      {25e9, Dimension::BYTE_RATE},
      {12.5e9, Dimension::BYTE_RATE},
      {0.3, Dimension::BYTE_RATE},
      {1e-6, Dimension::TIME},
      {600e-9, Dimension::TIME},
      {90.0, Dimension::TIME},
      {1.2e6, Dimension::TIME},
      {989.4e12, Dimension::FLOP_RATE},
      {3.14e23, Dimension::FLOPS},
      {7.0, Dimension::FLOPS},
  };
  for (const Case& c : cases) {
    const std::string text = format_quantity(c.value, c.dim);
    INFO(text);
    CHECK(parse_quantity(text, c.dim) == Approx(c.value).epsilon(1e-11));
  }
}

TEST_CASE("models::units: accepted_units lists the canonical spellings", "[units]") {
  CHECK(accepted_units(Dimension::TIME) == "ps, ns, us, ms, s, min, h, d");
  CHECK(accepted_units(Dimension::FLOPS) == "FLOP, GFLOP, TFLOP, PFLOP, EFLOP");
}

TEST_CASE("models::YamlValue: typed values with positions", "[units][yaml]") {
  const YamlValue root =
      load_yaml_string("a:\n  count: 4\n  zero: 0\n  bad: abc\n  rate: 400 Gb/s\n  flag: yes\n", "t.yaml");
  const YamlValue a = root.require("a");
  CHECK(a.require("count").as_positive_count() == 4);
  CHECK(a.require("rate").as_byte_rate().value() == 50e9);
  CHECK(a.require("count").where().line == 2);
  CHECK(a.require("count").where().column == 10);

  SECTION("zero count") {
    CHECK_THROWS_WITH(a.require("zero").as_positive_count(),
                      Equals("t.yaml:3:9: error: a.zero: must be a positive integer, got 0"));
  }
  SECTION("wrong type") {
    CHECK_THROWS_WITH(a.require("bad").as_positive_count(),
                      Equals("t.yaml:4:8: error: a.bad: expected a positive integer, got 'abc'"));
  }
  SECTION("strict booleans") {
    CHECK_THROWS_WITH(a.require("flag").as_bool(),
                      Equals("t.yaml:6:9: error: a.flag: expected true or false, got 'yes'"));
  }
  SECTION("unknown key with a suggestion") {
    CHECK_THROWS_WITH(a.check_keys({"count", "zero", "bat", "rate", "flag"}),
                      Equals("t.yaml:4:3: error: a.bad: unknown key 'bad' (did you mean 'bat'?)"));
  }
  SECTION("missing key") {
    CHECK_THROWS_WITH(a.require("other"), Equals("t.yaml:2:3: error: a: missing required key 'other'"));
  }
  SECTION("duplicate key") {
    CHECK_THROWS_WITH(load_yaml_string("x: 1\ny: 2\nx: 3\n", "d.yaml"),
                      Equals("d.yaml:3:1: error: x: duplicate key 'x'"));
  }
  SECTION("syntax error") {
    CHECK_THROWS_AS(load_yaml_string("a: [1, 2\n", "s.yaml"), InputError);
  }
  SECTION("missing file") {
    CHECK_THROWS_WITH(load_yaml_file("/nonexistent/x.yaml"),
                      Equals("/nonexistent/x.yaml: error: cannot open file"));
  }
  SECTION("a folder, which opens but cannot be read (found by the fuzzer)") {
    CHECK_THROWS_WITH(load_yaml_file("/"), Equals("/: error: is a folder, not a file"));
  }
}

TEST_CASE("models::did_you_mean: suggests only close names", "[units][yaml]") {
  CHECK(did_you_mean("layres", {"layers", "hidden"}) == "layers");
  CHECK(did_you_mean("Gbs", {"Gb/s", "GB/s"}) == "Gb/s");
  CHECK(did_you_mean("zzzzzz", {"layers", "hidden"}).empty());
}

TEST_CASE("models::wording: a count takes its noun's number, a name its article", "[units]") {
  CHECK(counted(1, "server") == "1 server");
  CHECK(counted(8, "server") == "8 servers");
  CHECK(counted(0, "run") == "0 runs");
  CHECK(counted(1, "strategy", "strategies") == "1 strategy");
  CHECK(counted(3, "strategy", "strategies") == "3 strategies");
  CHECK(noun_for(1.0, "day") == "day");
  CHECK(noun_for(0.5, "day") == "days");
  // GPU names are read letter by letter: "an A100", "an H100", "an MI300X", "a V100", "a B200".
  CHECK(with_article("A100") == "an A100");
  CHECK(with_article("H100") == "an H100");
  CHECK(with_article("MI300X") == "an MI300X");
  CHECK(with_article("V100") == "a V100");
  CHECK(with_article("B200") == "a B200");
  CHECK(with_article("GB200") == "a GB200");
  CHECK(with_article("optimizer") == "an optimizer");
  CHECK(with_article("server") == "a server");
}
