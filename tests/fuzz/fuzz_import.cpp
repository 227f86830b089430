// libFuzzer target for `odyssey calibrate import`: any bytes given as a raw benchmark file
// (odyssey-raw/1, as kernels/ writes it) must either become a profile that loads back and prices
// GEMMs and collectives, or be rejected with an InputError. Any other exception, crash, leak or
// undefined behaviour is a bug. Built by the `fuzz` preset; run by `tools/test.sh --fuzz SECONDS`.
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include <unistd.h>

#include "calibration/import.hpp"
#include "calibration/profile.hpp"
#include "models/input/diagnostics.hpp"
#include "tests/fuzz/price.hpp"

namespace {

std::string scratch(const char* what) {
  return "/tmp/odyssey-fuzz-import-" + std::to_string(getpid()) + what;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string raw = scratch(".json");
  static const std::string profile = scratch("-profile.yaml");
  {
    std::ofstream out(raw, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    // The GPU is named, as with --gpu, so that inputs reach the tables rather than stopping at
    // an unknown device name; the datasheet profile supplies what the file does not measure.
    (void)odyssey::import_profile({.raw_files = {raw},
                                   .out = profile,
                                   .gpu = "H100-SXM5-80GB",
                                   .profiles_dir = ODYSSEY_DATA_DIR "/calibration/profiles"});
    odyssey::fuzz::price(odyssey::load_profile(profile));
  } catch (const odyssey::InputError&) {
    // Bad input, reported with its position.
  }
  return 0;
}
