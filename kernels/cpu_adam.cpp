// CPU-Adam benchmark: the fused AdamW step DeepSpeed's CPU-Adam runs on host cores for
// ZeRO-Offload (Ren et al., USENIX ATC 2021, sec. 5.1; deepspeed/ops/csrc/adam/cpu_adam_impl.cpp),
// over fp32 parameters, gradients, momentum and variance, one pass per step, vectorised by the
// compiler and split over threads with OpenMP when the compiler has it. Runs on any CPU; needs no
// GPU and no Odyssey library.
//
// Prints, for 1..N threads, the steps' median time, parameters per second (in total and per
// thread) and the memory bandwidth achieved (BYTES_PER_PARAMETER per parameter), then, with
// --yaml, the measured entry that calibration/profiles/host/cpu-adam.yaml holds.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

/// Bytes the step moves per parameter: reads parameter, gradient, momentum and variance (4 x 4 B)
/// and writes parameter, momentum and variance back (3 x 4 B).
constexpr double BYTES_PER_PARAMETER = 28.0;

struct Adam {
  float lr = 1e-4f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.01f;
};

/// One AdamW step (decoupled weight decay, bias-corrected), as DeepSpeed's Step_1 with adamw_mode.
void adam_step(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v,
               long n, const Adam& a, int step, int threads) {
  const float bc1 = 1.0f - std::pow(a.beta1, float(step));
  const float bc2 = 1.0f / std::sqrt(1.0f - std::pow(a.beta2, float(step)));
  const float step_size = -a.lr / bc1;
  const float decay = 1.0f - a.lr * a.weight_decay;
#if defined(_OPENMP)
#pragma omp parallel for simd num_threads(threads) schedule(static)
#endif
  for (long i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = a.beta1 * m[i] + (1.0f - a.beta1) * gi;
    const float vi = a.beta2 * v[i] + (1.0f - a.beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay + step_size * mi / (std::sqrt(vi) * bc2 + a.eps);
  }
  (void)threads;
}

int max_threads() {
#if defined(_OPENMP)
  return omp_get_num_procs();
#else
  return 1;
#endif
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      std::string name = line.substr(colon + 1);
      name.erase(0, name.find_first_not_of(" \t"));
      return name;
    }
  return "unknown";
}

void usage() {
  std::fprintf(stderr, "usage: odyssey_bench_cpu_adam [--params N] [--steps N] [--threads N] [--yaml]\n");
}

} // namespace

int main(int argc, char** argv) {
  long params = 1L << 25; // 32M parameters: 896 MB touched per step, far beyond any cache
  int steps = 20;
  int threads_max = max_threads();
  bool yaml = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--params")
      params = std::atol(next());
    else if (arg == "--steps")
      steps = std::atoi(next());
    else if (arg == "--threads")
      threads_max = std::atoi(next());
    else if (arg == "--yaml")
      yaml = true;
    else {
      usage();
      return 2;
    }
  }
  if (params < 1 || steps < 3 || threads_max < 1) {
    usage();
    return 2;
  }

  const auto n = static_cast<size_t>(params);
  std::vector<float> p(n), g(n), m(n, 0.0f), v(n, 0.0f);
  for (long i = 0; i < params; ++i) {
    // Reproducible values in [-1, 1).
    p[size_t(i)] = float((i * 2654435761L) % 2000) / 1000.0f - 1.0f;
    g[size_t(i)] = float((i * 40503L) % 2000) / 1000.0f - 1.0f;
  }
  const Adam adam;
  struct Row {
    int threads;
    double median_s, params_per_s, bandwidth;
  };
  std::vector<Row> rows;
  std::printf("%8s %12s %16s %18s %14s\n", "threads", "median ms", "params/s", "params/s/thread", "GB/s");
  int step = 0;
  for (int t = 1; t <= threads_max; ++t) {
    adam_step(p.data(), g.data(), m.data(), v.data(), params, adam, ++step, t); // warm-up
    std::vector<double> samples;
    for (int s = 0; s < steps; ++s) {
      const auto t0 = std::chrono::steady_clock::now();
      adam_step(p.data(), g.data(), m.data(), v.data(), params, adam, ++step, t);
      samples.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(samples.begin(), samples.end());
    const double median = samples[samples.size() / 2];
    const Row r{t, median, double(params) / median, double(params) * BYTES_PER_PARAMETER / median};
    rows.push_back(r);
    std::printf("%8d %12.2f %16.4g %18.4g %14.2f\n", t, median * 1e3, r.params_per_s, r.params_per_s / t,
                r.bandwidth / 1e9);
  }
  double checksum = 0;
  for (long i = 0; i < params; i += 4096) checksum += p[size_t(i)];
  std::fprintf(stderr, "checksum %.6g\n", checksum); // keeps the updates observable

  if (yaml) {
    char date[16];
    const std::time_t now = std::time(nullptr);
    std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
    std::printf("\n# measured entry (calibration/profiles/host/cpu-adam.yaml)\n");
    std::printf("  - cpu: \"%s\"\n    kind: measured\n    date: \"%s\"\n", cpu_model().c_str(), date);
    std::printf("    command: \"odyssey_bench_cpu_adam --params %ld --steps %d --threads %d --yaml\"\n",
                params, steps, threads_max);
#if defined(_OPENMP)
    std::printf("    openmp: true\n");
#else
    std::printf("    openmp: false\n");
#endif
    std::printf("    bytes_per_parameter: %g\n    runs:\n", BYTES_PER_PARAMETER);
    for (const Row& r : rows)
      std::printf("      - {threads: %d, parameters_per_s: %.4g, bandwidth: \"%.2f GB/s\"}\n", r.threads,
                  r.params_per_s, r.bandwidth / 1e9);
  }
  return 0;
}
