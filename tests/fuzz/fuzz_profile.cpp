// libFuzzer target for calibration profiles: any bytes given as a profile file must either load,
// price a GEMM and a collective through the cost model, or be rejected with an InputError. Any
// other exception, crash, leak or undefined behaviour is a bug. A measured profile is a file users
// write by hand or receive from another site, so it gets the same scrutiny as a scenario.
// Built by the `fuzz` preset; run by `tools/test.sh --fuzz SECONDS`.
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include <unistd.h>

#include "calibration/profile.hpp"
#include "models/input/diagnostics.hpp"
#include "tests/fuzz/price.hpp"

namespace {

const std::string& profile_path() {
  static const std::string path = "/tmp/odyssey-fuzz-profile-" + std::to_string(getpid()) + ".yaml";
  return path;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  {
    std::ofstream out(profile_path(), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    const odyssey::Profile p = odyssey::load_profile(profile_path());
    odyssey::fuzz::price(p);
  } catch (const odyssey::InputError&) {
    // Bad input, reported with its position.
  }
  return 0;
}
