// The analytic GEMM model: how a cuBLAS-style kernel runs an (m, n, k) product on a GPU whose
// profile gives its peak, SMs, output tiles, main-loop depth and pipeline fill. Used where the
// profile records no per-shape points for a dtype, and to extrapolate beyond the recorded ones.
#pragma once

#include "calibration/profile.hpp"
#include "models/ops.hpp"

namespace odyssey {

/// The kernel the model picks for a shape and what it achieves.
struct GemmKernel {
  GemmTile tile;
  int split_k = 1;           ///< slices of K computed by separate CTAs and summed after
  long waves = 0;            ///< rounds of one CTA per SM
  double efficiency = 0.0;   ///< FLOPs over peak x time, time including the roofline
  bool memory_bound = false; ///< the operands' HBM traffic, not the tensor cores, sets the time
};

/// Prices a GEMM the way cuBLAS runs it, over every output tile the profile lists and every
/// split of K up to `gemm.max_split_k`, and keeps the fastest (cuBLAS's heuristics aim at it):
///  - a tile runs ceil(k / split / k_block) main-loop iterations plus `gemm.fill` iterations of
///    fixed cost (pipeline prologue and epilogue), which is what makes small K slow;
///  - the main loop runs at the dtype's best achievable fraction of peak (`max_efficiency`), or,
///    where the profile gives the shape it was measured at, at the rate that reproduces it there;
///    no shape is priced above `max_efficiency`, the best any shape of the sweep achieved;
///  - tiles pad the output (m = 1 wastes a whole tile row) and run in waves of one CTA per SM,
///    the last partial wave idling SMs;
///  - split K writes fp32 partial tiles and sums them (HBM traffic);
///  - the whole GEMM cannot beat streaming A, B and C through HBM (roofline).
[[nodiscard]] GemmKernel analytic_gemm(const Profile& profile, const GemmShape& shape, Precision dtype);

/// Best fraction of peak of a dtype's GEMMs: its own `max_efficiency` where listed, else the
/// profile's highest.
[[nodiscard]] double gemm_best_fraction(const Profile& profile, Precision dtype);

} // namespace odyssey
