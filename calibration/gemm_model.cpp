// The analytic GEMM model (see gemm_model.hpp). Sources of every constant live in the profiles.
#include "calibration/gemm_model.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace odyssey {

namespace {

long ceil_div(long a, long b) {
  return (a + b - 1) / b;
}

/// Bytes of one fp32 partial-sum element that split K writes and reads back.
constexpr double SPLIT_K_PARTIAL_BYTES = 4.0;

/// K elements one main-loop iteration of a tile consumes in `dtype`. The profile's `k_block` is
/// for 16-bit operands; a stage holds the same bytes of K at any width: the tensor-core
/// instruction takes 32 bytes of K (Hopper's wgmma: k16 for f16/bf16, k32 for e4m3/e5m2, k8 for
/// tf32; PTX ISA, "Matrix shape" of wgmma.mma_async), and CUTLASS's kernel generator stacks four
/// of them per tile for every type (python/cutlass_library/generator.py, the SM90 WGMMA tile
/// descriptions: instruction K x 4). So an FP8 iteration covers twice the K of a BF16 one at the
/// same time per iteration, and the pipeline fill is as long in time.
long k_step(const Profile& p, Precision dtype) {
  const double width = bytes_per_element(dtype);
  return std::max(1L, std::lround(double(p.gemm_k_block) * 2.0 / width));
}

/// The model with the main loop at `best` of peak (see analytic_gemm).
GemmKernel run_model(const Profile& p, const GemmShape& s, Precision dtype, double best) {
  GemmKernel none{.tile = {p.gemm_tile_m, p.gemm_tile_n}, .efficiency = best};
  auto peak_it = p.peak.find(dtype);
  if (s.m <= 0 || s.n <= 0 || s.k <= 0 || p.sms <= 0 || peak_it == p.peak.end()) return none;
  const double peak = peak_it->second.value();
  const long batch = std::max(1L, s.batch);
  const double m = double(s.m), n = double(s.n), k = double(s.k);
  const double flops = 2.0 * m * n * k * double(batch);
  const double hbm = p.memory_bandwidth.value() * p.memory_efficiency;
  const double operand_bytes = bytes_per_element(dtype) * (m * k + k * n + m * n) * double(batch);
  const double roofline = hbm > 0 ? operand_bytes / hbm : 0.0;

  std::vector<GemmTile> tiles = p.gemm_tiles;
  if (tiles.empty()) tiles.push_back({p.gemm_tile_m, p.gemm_tile_n});
  const long kb = k_step(p, dtype);
  const double sm_rate = peak * best / p.sms; // FLOP/s of one SM in the main loop

  GemmKernel chosen;
  double chosen_time = 0.0;
  for (const GemmTile& t : tiles) {
    const long output_tiles = ceil_div(s.m, t.m) * ceil_div(s.n, t.n) * batch;
    for (int split = 1; split <= std::max(1, p.gemm_max_split_k); ++split) {
      // A split only pays when the unsplit grid leaves SMs idle; more slices than that is waste.
      if (split > 1 && output_tiles * (split - 1) >= p.sms) break;
      const long ctas = output_tiles * split;
      const long waves = ceil_div(ctas, p.sms);
      const double iterations = double(ceil_div(ceil_div(s.k, split), kb)) + p.gemm_fill;
      const double per_tile = iterations * 2.0 * double(t.m) * double(t.n) * double(kb) / sm_rate;
      double time = double(waves) * per_tile;
      if (split > 1 && hbm > 0) time += 2.0 * m * n * double(batch) * split * SPLIT_K_PARTIAL_BYTES / hbm;
      if (chosen_time == 0.0 || time < chosen_time) { // strict: earlier tiles and fewer splits win ties
        chosen_time = time;
        chosen = {.tile = t, .split_k = split, .waves = waves};
      }
    }
  }
  chosen.memory_bound = roofline > chosen_time;
  chosen.efficiency = flops / (peak * std::max(chosen_time, roofline));
  return chosen;
}

/// The main loop's fraction of peak: `max_efficiency` itself, or, where the profile says at which
/// shape it was measured, the rate that reproduces it there (the measured best includes that
/// shape's tile, wave and pipeline-fill losses).
double main_loop_fraction(const Profile& p, Precision dtype) {
  const double best = gemm_best_fraction(p, dtype);
  auto at = p.gemm_best_shape.find(dtype);
  if (at == p.gemm_best_shape.end()) return best;
  const auto [m, n, k] = at->second;
  const double losses = run_model(p, GemmShape{.m = m, .n = n, .k = k}, dtype, 1.0).efficiency;
  return losses > 0 ? std::min(1.0, best / losses) : best;
}

} // namespace

double gemm_best_fraction(const Profile& p, Precision dtype) {
  auto it = p.gemm_max_efficiency_by_dtype.find(dtype);
  return it != p.gemm_max_efficiency_by_dtype.end() ? it->second : p.gemm_max_efficiency;
}

GemmKernel analytic_gemm(const Profile& p, const GemmShape& s, Precision dtype) {
  // No shape beats the measured best: `max_efficiency` is the highest rate a sweep over shapes
  // found (MAMF, ml-engineering's "Maximum Achievable Matmul FLOPS": the best of a brute-force
  // search over M, N and K up to 16-20k), so a shape whose waves and K fill the arithmetic above
  // rates better than the best shape's ran no faster when it was measured.
  GemmKernel g = run_model(p, s, dtype, main_loop_fraction(p, dtype));
  g.efficiency = std::min(g.efficiency, gemm_best_fraction(p, dtype));
  return g;
}

} // namespace odyssey
