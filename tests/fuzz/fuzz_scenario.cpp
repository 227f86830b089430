// libFuzzer target for the scenario loader: any bytes given as a scenario file must either load
// (and then build a workload and find a profile, as `odyssey validate` and `odyssey run` do) or be
// rejected with an InputError. Any other exception, crash, leak or undefined behaviour is a bug.
// Built by the `fuzz` preset (clang, -DODYSSEY_FUZZ=ON); run by `tools/test.sh --fuzz SECONDS`.
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include <unistd.h>

#include "calibration/profile.hpp"
#include "models/input/diagnostics.hpp"
#include "models/workload.hpp"
#include "tools/scenario.hpp"

namespace {

/// One file per fuzzing process, rewritten for each input: the loader reads scenarios from paths.
const std::string& scenario_path() {
  static const std::string path = "/tmp/odyssey-fuzz-" + std::to_string(getpid()) + ".yaml";
  return path;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  {
    std::ofstream out(scenario_path(), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    const odyssey::Scenario s =
        odyssey::load_scenario(scenario_path(), {.data_dir = ODYSSEY_DATA_DIR, .overrides = {}});
    (void)odyssey::render_scenario(s);
    (void)odyssey::load_profile(s.calibration);
    // The loader's checks must be enough for the workload model (it throws std::invalid_argument
    // for combinations the loader should have rejected with a position).
    const odyssey::Workload w(s.model, s.training, s.parallelism);
    (void)w.microbatches();
  } catch (const odyssey::InputError&) {
    // Bad input, reported with its position: the expected outcome for most inputs.
  }
  return 0;
}
