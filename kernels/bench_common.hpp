// Shared by every calibration benchmark: command-line flags, the no-device check, CUDA error
// checks, the timing policy (warm-up, CUDA events, repeat to a stable median, spread) and the raw
// result file (`format: odyssey-raw/1`, described in kernels/README.md) with its provenance.
// Host code only: it compiles with the host compiler so that nvcc sees as little as possible.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>
#include <nlohmann/json.hpp>

namespace odyssey::bench {

/// The raw format this build writes; `odyssey calibrate import` refuses any other.
inline constexpr const char* RAW_FORMAT = "odyssey-raw/1";

/// Exit codes: 0 done, 1 a CUDA/library call failed, 2 bad flags, 3 no CUDA device.
inline constexpr int EXIT_FAILED = 1;
inline constexpr int EXIT_USAGE = 2;
inline constexpr int EXIT_NO_DEVICE = 3;

/// A failed CUDA, cuBLAS, cuDNN or NCCL call: where, which call, and the library's message.
class BenchError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// A bad command line.
class UsageError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail_call(const char* library, const char* call, const char* file, int line,
                            const std::string& what);

inline void check_cuda(cudaError_t e, const char* call, const char* file, int line) {
  if (e != cudaSuccess)
    fail_call("CUDA", call, file, line, std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e));
}

#define ODY_CUDA(call) ::odyssey::bench::check_cuda((call), #call, __FILE__, __LINE__)

/// Flags shared by every benchmark plus the benchmark's own (`--name value` or `--flag`).
class Args {
public:
  /// `valued`: flags that take a value; `switches`: flags without one. --out, --quick, --device
  /// and --help are always accepted.
  Args(int argc, char** argv, std::vector<std::string> valued, std::vector<std::string> switches);

  [[nodiscard]] bool has(const std::string& flag) const { return values_.find(flag) != values_.end(); }
  [[nodiscard]] std::string get(const std::string& flag, const std::string& fallback) const;
  [[nodiscard]] long get_long(const std::string& flag, long fallback) const;
  /// A comma-separated value as its items.
  [[nodiscard]] std::vector<std::string> get_list(const std::string& flag, const std::string& fallback) const;
  [[nodiscard]] bool quick() const { return has("--quick"); }
  [[nodiscard]] bool help() const { return has("--help"); }
  [[nodiscard]] std::string out() const { return get("--out", ""); }
  [[nodiscard]] int device() const { return static_cast<int>(get_long("--device", 0)); }

private:
  std::map<std::string, std::string> values_;
};

/// Exits with EXIT_NO_DEVICE and one line on stderr when no CUDA device is usable.
void require_device(const char* tool);

/// The start every benchmark shares: prints "usage: TOOL USAGE" for --help and returns false
/// (nothing to run); otherwise requires --out and a CUDA device, selects --device, returns true.
bool start(const Args& args, const char* tool, const char* usage);

/// How long to measure one case.
struct TimingPolicy {
  int warmup = 5;       ///< untimed runs first (clocks ramp up, caches and plans settle)
  int min_samples = 10; ///< samples before the median may be declared stable
  int max_samples = 100;
  double target_sample_s = 1e-3; ///< launches per sample are batched up to about this long
  double budget_s = 2.0;         ///< stop sampling after this much measured time, stable or not
  double stable_rel = 0.01;      ///< stable: the median of all samples within 1% of the first half's

  static TimingPolicy for_mode(bool quick);
};

/// A measured time per launch and its spread over samples.
struct Timing {
  double median_s = 0.0;
  double min_s = 0.0;
  double max_s = 0.0;
  double p10_s = 0.0;
  double p90_s = 0.0;
  int samples = 0;
  int launches_per_sample = 1;
  bool stable = false; ///< the median settled before max_samples or budget_s ran out

  [[nodiscard]] nlohmann::ordered_json to_json() const;
};

/// Times `launch` (which enqueues one run on `stream`) with CUDA events: warm-up, then samples
/// of N back-to-back launches until the median is stable. Launch errors are checked per sample.
Timing measure(const std::function<void(cudaStream_t)>& launch, cudaStream_t stream,
               const TimingPolicy& policy);

/// The sampling loop of `measure` for any timer: `timed(n)` runs n launches back to back and
/// returns the time per launch. Warm-up, batching to about target_sample_s, stability test.
Timing sample_until_stable(const std::function<double(int)>& timed, const TimingPolicy& policy,
                           int max_batch);

/// Median, min, max and percentiles of per-launch times measured elsewhere (NCCL across GPUs).
Timing summarize(std::vector<double> per_launch_s, int launches_per_sample, bool stable);

/// GPU, driver, CUDA, host (hashed), date and source commit; `libraries` adds cuBLASLt, cuDNN or
/// NCCL versions. `notes` says anything a reader of the numbers must know.
nlohmann::ordered_json provenance(int device, const std::string& tool,
                                  const std::vector<std::pair<std::string, std::string>>& libraries,
                                  const std::string& notes);

/// "MAJOR.MINOR.PATCH" from a CUDA-style integer version (e.g. 12040 -> "12.4").
std::string cuda_version_string(int v);

/// The compute capability as an integer, e.g. 90 for sm_90.
int compute_capability(int device);

/// Writes the raw file: format, benchmark, provenance, policy, then one result per line so that
/// import errors can point at a line. Written to FILE.tmp and renamed.
void write_raw(const std::string& path, const std::string& benchmark,
               const nlohmann::ordered_json& provenance, const TimingPolicy& policy,
               const std::vector<nlohmann::ordered_json>& results);

/// Element types the benchmarks fill.
enum class ElementType { FP32, FP16, BF16, FP8_E4M3 };

/// Bytes of one element.
std::size_t element_bytes(ElementType t);

/// Fills `count` elements of a device buffer with reproducible values in [-1, 1) (kernels/fill.cu).
/// Zero data would let the GPU idle parts of its datapath and run cooler and faster than on
/// training data.
void fill_random(void* data, std::size_t count, ElementType type, std::uint32_t seed, cudaStream_t stream);

/// Runs `body` and turns errors into the exit codes above, with one line on stderr.
int run_main(const char* tool, const std::function<int()>& body);

} // namespace odyssey::bench
