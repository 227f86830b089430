// Common parts of the calibration benchmarks; see bench_common.hpp.
#include "kernels/bench_common.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <unistd.h>

#include "kernels/source_commit.hpp" // generated at build time (kernels/commit.cmake)

namespace odyssey::bench {

void fail_call(const char* library, const char* call, const char* file, int line, const std::string& what) {
  throw BenchError(std::string(library) + " call failed at " +
                   std::filesystem::path(file).filename().string() + ":" + std::to_string(line) + ": " +
                   call + ": " + what);
}

Args::Args(int argc, char** argv, std::vector<std::string> valued, std::vector<std::string> switches) {
  valued.insert(valued.end(), {"--out", "--device"});
  switches.insert(switches.end(), {"--quick", "--help"});
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (std::find(switches.begin(), switches.end(), a) != switches.end()) {
      values_[a] = "";
    } else if (std::find(valued.begin(), valued.end(), a) != valued.end()) {
      if (i + 1 >= argc) throw UsageError(a + " needs a value");
      values_[a] = argv[++i];
    } else {
      throw UsageError("unknown argument '" + a + "' (--help lists the flags)");
    }
  }
}

std::string Args::get(const std::string& flag, const std::string& fallback) const {
  auto it = values_.find(flag);
  return it == values_.end() ? fallback : it->second;
}

long Args::get_long(const std::string& flag, long fallback) const {
  const std::string v = get(flag, "");
  if (v.empty()) return fallback;
  try {
    std::size_t used = 0;
    const long x = std::stol(v, &used);
    if (used == v.size()) return x;
  } catch (const std::exception&) {
  }
  throw UsageError(flag + " expects an integer, got '" + v + "'");
}

std::vector<std::string> Args::get_list(const std::string& flag, const std::string& fallback) const {
  std::vector<std::string> out;
  std::stringstream in(get(flag, fallback));
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

bool start(const Args& args, const char* tool, const char* usage) {
  if (args.help()) {
    std::printf("usage: %s %s\n", tool, usage);
    return false;
  }
  if (args.out().empty()) throw UsageError("--out FILE is required");
  require_device(tool);
  ODY_CUDA(cudaSetDevice(args.device()));
  return true;
}

void require_device(const char* tool) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    const std::string why = e != cudaSuccess ? std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e)
                                             : std::string("the driver reports 0 devices");
    std::fprintf(stderr, "%s: error: no CUDA device (cudaGetDeviceCount: %s); run it on a GPU node\n", tool,
                 why.c_str());
    std::exit(EXIT_NO_DEVICE);
  }
}

TimingPolicy TimingPolicy::for_mode(bool quick) {
  TimingPolicy p;
  if (quick) {
    p.warmup = 2;
    p.min_samples = 5;
    p.max_samples = 20;
    p.budget_s = 0.3;
    p.stable_rel = 0.03;
  }
  return p;
}

namespace {

double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0.0;
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const auto hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return percentile(v, 0.5);
}

} // namespace

nlohmann::ordered_json Timing::to_json() const {
  nlohmann::ordered_json j;
  j["median_s"] = median_s;
  j["min_s"] = min_s;
  j["max_s"] = max_s;
  j["p10_s"] = p10_s;
  j["p90_s"] = p90_s;
  j["spread"] = median_s > 0 ? (p90_s - p10_s) / median_s : 0.0;
  j["samples"] = samples;
  j["launches_per_sample"] = launches_per_sample;
  j["stable"] = stable;
  return j;
}

Timing summarize(std::vector<double> per_launch_s, int launches_per_sample, bool stable) {
  Timing t;
  std::sort(per_launch_s.begin(), per_launch_s.end());
  t.samples = static_cast<int>(per_launch_s.size());
  t.launches_per_sample = launches_per_sample;
  t.stable = stable;
  if (per_launch_s.empty()) return t;
  t.median_s = percentile(per_launch_s, 0.5);
  t.min_s = per_launch_s.front();
  t.max_s = per_launch_s.back();
  t.p10_s = percentile(per_launch_s, 0.1);
  t.p90_s = percentile(per_launch_s, 0.9);
  return t;
}

Timing sample_until_stable(const std::function<double(int)>& timed, const TimingPolicy& policy,
                           int max_batch) {
  for (int i = 0; i < policy.warmup; ++i) timed(1);
  // Events resolve about half a microsecond: short kernels are timed in batches.
  const double one = std::max(timed(1), 1e-7);
  const int per_sample = static_cast<int>(
      std::clamp(std::ceil(policy.target_sample_s / one), 1.0, static_cast<double>(max_batch)));
  std::vector<double> samples;
  double spent = 0.0;
  bool stable = false;
  while (static_cast<int>(samples.size()) < policy.max_samples && spent < policy.budget_s) {
    const double t = timed(per_sample);
    samples.push_back(t);
    spent += t * per_sample;
    if (static_cast<int>(samples.size()) >= policy.min_samples) {
      const double all = median(samples);
      const double first_half =
          median(std::vector<double>(samples.begin(), samples.begin() + samples.size() / 2));
      if (std::abs(all - first_half) <= policy.stable_rel * all) {
        stable = true;
        break;
      }
    }
  }
  return summarize(samples, per_sample, stable);
}

Timing measure(const std::function<void(cudaStream_t)>& launch, cudaStream_t stream,
               const TimingPolicy& policy) {
  cudaEvent_t start = nullptr;
  cudaEvent_t stop = nullptr;
  ODY_CUDA(cudaEventCreate(&start));
  ODY_CUDA(cudaEventCreate(&stop));
  struct Events {
    cudaEvent_t a, b;
    ~Events() {
      cudaEventDestroy(a);
      cudaEventDestroy(b);
    }
  } guard{start, stop};

  return sample_until_stable(
      [&](int launches) {
        ODY_CUDA(cudaEventRecord(start, stream));
        for (int i = 0; i < launches; ++i) launch(stream);
        ODY_CUDA(cudaGetLastError());
        ODY_CUDA(cudaEventRecord(stop, stream));
        ODY_CUDA(cudaEventSynchronize(stop));
        float ms = 0.0f;
        ODY_CUDA(cudaEventElapsedTime(&ms, start, stop));
        return 1e-3 * static_cast<double>(ms) / launches;
      },
      policy, 1000);
}

std::string cuda_version_string(int v) {
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

int compute_capability(int device) {
  int major = 0;
  int minor = 0;
  ODY_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  ODY_CUDA(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return major * 10 + minor;
}

namespace {

/// FNV-1a: the host is identified without publishing its name.
std::string host_hash() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "unknown";
  std::uint64_t h = 1469598103934665603ULL;
  for (const char* c = name; *c; ++c) h = (h ^ static_cast<unsigned char>(*c)) * 1099511628211ULL;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

} // namespace

nlohmann::ordered_json provenance(int device, const std::string& tool,
                                  const std::vector<std::pair<std::string, std::string>>& libraries,
                                  const std::string& notes) {
  cudaDeviceProp prop{};
  ODY_CUDA(cudaGetDeviceProperties(&prop, device));
  int sm_khz = 0;
  int mem_khz = 0;
  ODY_CUDA(cudaDeviceGetAttribute(&sm_khz, cudaDevAttrClockRate, device));
  ODY_CUDA(cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, device));
  int driver = 0;
  int runtime = 0;
  ODY_CUDA(cudaDriverGetVersion(&driver));
  ODY_CUDA(cudaRuntimeGetVersion(&runtime));

  nlohmann::ordered_json gpu;
  gpu["name"] = prop.name;
  gpu["compute_capability"] = std::to_string(prop.major) + "." + std::to_string(prop.minor);
  gpu["sms"] = prop.multiProcessorCount;
  gpu["memory_bytes"] = static_cast<std::uint64_t>(prop.totalGlobalMem);
  gpu["l2_bytes"] = prop.l2CacheSize;
  gpu["sm_clock_mhz"] = sm_khz / 1000;
  gpu["memory_clock_mhz"] = mem_khz / 1000;
  gpu["memory_bus_bits"] = prop.memoryBusWidth;

  nlohmann::ordered_json p;
  p["tool"] = tool;
  p["gpu"] = gpu;
  p["driver"] = cuda_version_string(driver);
  p["cuda_runtime"] = cuda_version_string(runtime);
  nlohmann::ordered_json libs = nlohmann::ordered_json::object();
  for (const auto& [name, version] : libraries) libs[name] = version;
  p["libraries"] = libs;
  p["host_hash"] = host_hash();
  p["date"] = utc_now();
  p["commit"] = ODYSSEY_SOURCE_COMMIT;
  p["notes"] = notes;
  return p;
}

void write_raw(const std::string& path, const std::string& benchmark, const nlohmann::ordered_json& prov,
               const TimingPolicy& policy, const std::vector<nlohmann::ordered_json>& results) {
  nlohmann::ordered_json pol;
  pol["warmup"] = policy.warmup;
  pol["min_samples"] = policy.min_samples;
  pol["max_samples"] = policy.max_samples;
  pol["target_sample_s"] = policy.target_sample_s;
  pol["budget_s"] = policy.budget_s;
  pol["stable_rel"] = policy.stable_rel;

  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw BenchError("cannot write " + tmp);
    out << "{\n \"format\": \"" << RAW_FORMAT << "\",\n \"benchmark\": \"" << benchmark << "\",\n";
    out << " \"provenance\": " << prov.dump() << ",\n \"policy\": " << pol.dump() << ",\n \"results\": [";
    for (std::size_t i = 0; i < results.size(); ++i) out << (i ? ",\n  " : "\n  ") << results[i].dump();
    out << "\n ]\n}\n";
    if (!out.flush()) throw BenchError("cannot write " + tmp);
  }
  std::filesystem::rename(tmp, path);
}

std::size_t element_bytes(ElementType t) {
  switch (t) {
  case ElementType::FP32: return 4;
  case ElementType::FP16:
  case ElementType::BF16: return 2;
  case ElementType::FP8_E4M3: return 1;
  }
  return 4;
}

int run_main(const char* tool, const std::function<int()>& body) {
  try {
    return body();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s: error: %s\n", tool, e.what());
    return EXIT_USAGE;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", tool, e.what());
    return EXIT_FAILED;
  }
}

} // namespace odyssey::bench
