// libFuzzer target for the tables measured by others (calibration/published/) and
// `odyssey calibrate import --published`: any bytes given as a published table must either be read
// (each reader's rows hold what its header promises) and, for the per-shape formats, become a
// profile that loads back and prices GEMMs and collectives, or be rejected with an InputError. Any
// other exception, crash, leak or undefined behaviour is a bug. The same bytes go to every reader:
// the best-MFU table `odyssey run` and `odyssey plan` read before simulating, the layer-time and
// FlashAttention CSVs, and OpenXLA's matmul and collective text-protos. Built by the `fuzz` preset; run by
// `tools/test.sh --fuzz SECONDS`.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include <unistd.h>

#include "calibration/import.hpp"
#include "calibration/profile.hpp"
#include "calibration/published.hpp"
#include "models/input/diagnostics.hpp"
#include "tests/fuzz/price.hpp"

namespace {

std::string scratch(const char* what) {
  return "/tmp/odyssey-fuzz-published-" + std::to_string(getpid()) + what;
}

void require(bool ok) {
  if (!ok) std::abort();
}

bool positive(double v) {
  return std::isfinite(v) && v > 0;
}

/// A read table whose rows break their own header's promises is a reader bug, not bad input.
void best_mfu(const std::string& path) {
  const auto rows = odyssey::read_published_mfu_table(path);
  for (const auto& r : rows) {
    require(r.mfu > 0 && r.mfu <= 1 && r.gpus > 0);
    // Every row is a candidate for its own GPU and precision: the best one exists and is as high.
    const auto best = odyssey::best_published_mfu(rows, r.gpu, r.precision);
    require(best.has_value() && best->mfu >= r.mfu);
  }
}

void layer_times(const std::string& path) {
  for (const auto& r : odyssey::read_layer_time_table(path))
    require(positive(r.forward.value()) && positive(r.backward.value()));
}

/// The per-shape formats through the whole import: a profile that loads back and prices. Only
/// for tables their reader accepted (the import reads them the same way), so that bad input does
/// not pay for loading the base profile.
void import(odyssey::PublishedFormat format, const std::string& path) {
  static const std::string profile = scratch("-profile.yaml");
  (void)odyssey::import_published({.published = {{.format = format, .path = path}},
                                   .out = profile,
                                   .gpu = "H100-SXM5-80GB",
                                   .profiles_dir = ODYSSEY_DATA_DIR "/calibration/profiles"});
  odyssey::fuzz::price(odyssey::load_profile(profile));
}

void flash_attention(const std::string& path) {
  for (const auto& r : odyssey::read_flash_attention_table(path))
    require(r.head_dim > 0 && r.seq > 0 && positive(r.tflops));
  import(odyssey::PublishedFormat::FLASH_ATTENTION, path);
}

void xla_matmul(const std::string& path) {
  for (const auto& e : odyssey::read_xla_matmul_table(path).entries) {
    require(e.b > 0 && e.m > 0 && e.n > 0 && e.k > 0);
    for (const auto& r : e.rates) require(positive(r.flops_per_second));
  }
  import(odyssey::PublishedFormat::XLA_MATMUL, path);
}

void xla_collective(const std::string& path) {
  for (const auto& e : odyssey::read_xla_collective_table(path).entries) {
    require(!e.dimensions.empty() && positive(e.throughput));
    require(e.opcode == "collective-permute" ? e.pairs > 0 : e.devices_per_group > 0 && e.groups > 0);
  }
  import(odyssey::PublishedFormat::XLA_COLLECTIVE, path);
}

template <typename Read> void bad_input_is_an_error(Read read) {
  try {
    read();
  } catch (const odyssey::InputError&) {
    // Bad input, reported with its position.
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string table = scratch(".table");
  {
    std::ofstream out(table, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  bad_input_is_an_error([] { best_mfu(table); });
  bad_input_is_an_error([] { layer_times(table); });
  bad_input_is_an_error([] { flash_attention(table); });
  bad_input_is_an_error([] { xla_matmul(table); });
  bad_input_is_an_error([] { xla_collective(table); });
  return 0;
}
