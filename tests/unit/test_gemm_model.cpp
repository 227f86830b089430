#include <catch2/catch.hpp>

#include "calibration/gemm_model.hpp"

using namespace odyssey;

namespace {

/// An H100-like profile with the GEMM model's constants of calibration/profiles (built in code so
/// these properties do not depend on the YAML reader).
Profile hopper() {
  Profile p;
  p.gpu = "H100-SXM5-80GB";
  p.peak[Precision::BF16] = FlopsPerSecond(989.4e12);
  p.gemm_max_efficiency_by_dtype[Precision::BF16] = 0.87;
  p.gemm_max_efficiency = 0.87;
  p.sms = 132;
  p.gemm_tile_m = 128;
  p.gemm_tile_n = 256;
  p.gemm_tiles = {{128, 256}, {256, 128}, {128, 128}, {128, 64}, {64, 128}};
  p.gemm_k_block = 64;
  p.gemm_fill = 3;
  p.gemm_max_split_k = 4;
  p.memory_bandwidth = BytesPerSecond(3.35e12);
  p.memory_efficiency = 0.85;
  return p;
}

double eff(const Profile& p, long m, long n, long k) {
  return analytic_gemm(p, GemmShape{.m = m, .n = n, .k = k}, Precision::BF16).efficiency;
}

} // namespace

TEST_CASE("calibration::GemmModel: pipeline fill makes short K slow, long K approaches the main loop",
          "[calibration]") {
  const Profile p = hopper();
  // 4096 x 4096 with 128x256 tiles: 512 tiles on 132 SMs, 4 waves (97%). K/64 iterations + 3 fill.
  CHECK(eff(p, 4096, 4096, 4096) == Approx(0.87 * (512.0 / 528) * 64.0 / 67).epsilon(1e-6));
  CHECK(eff(p, 4096, 4096, 256) == Approx(0.87 * (512.0 / 528) * 4.0 / 7).epsilon(1e-6));
  double last = 0.0;
  for (long k : {256L, 512L, 1024L, 2048L, 4096L, 16384L}) {
    const double e = eff(p, 4096, 4096, k);
    CHECK(e > last);
    CHECK(e <= 0.87);
    last = e;
  }
}

TEST_CASE("calibration::GemmModel: an FP8 iteration covers twice the K of a BF16 one, the fill as long",
          "[calibration]") {
  Profile p = hopper();
  p.peak[Precision::FP8] = FlopsPerSecond(1978.9e12);
  p.gemm_max_efficiency_by_dtype[Precision::FP8] = 0.87;
  auto fp8 = [&](long k) {
    return analytic_gemm(p, GemmShape{.m = 4096, .n = 4096, .k = k}, Precision::FP8).efficiency;
  };
  // 4096 x 4096: 4 waves as for BF16; K/128 iterations + 3 fill, each as long as a BF16 one.
  CHECK(fp8(4096) == Approx(0.87 * (512.0 / 528) * 32.0 / 35).epsilon(1e-6));
  CHECK(fp8(4096) < eff(p, 4096, 4096, 4096));
  // The same bytes of K per iteration: FP8 at 2K loses what BF16 loses at K.
  CHECK(fp8(8192) == Approx(eff(p, 4096, 4096, 4096)).epsilon(1e-6));
}

TEST_CASE("calibration::GemmModel: tiles and split K follow the shape", "[calibration]") {
  const Profile p = hopper();
  // One row of 128x256 tiles would fill 16 of 132 SMs: split K (or a smaller tile) does better.
  const GemmKernel narrow = analytic_gemm(p, {.m = 128, .n = 4096, .k = 16384}, Precision::BF16);
  CHECK((narrow.split_k > 1 || narrow.tile.m * narrow.tile.n < 128 * 256));
  Profile one_tile = p;
  one_tile.gemm_tiles = {{128, 256}};
  one_tile.gemm_max_split_k = 1;
  CHECK(narrow.efficiency > eff(one_tile, 128, 4096, 16384));
  // Whole waves of the usual tile: nothing to gain from others.
  CHECK(analytic_gemm(p, {.m = 4096, .n = 8448, .k = 4096}, Precision::BF16).split_k == 1);
  // Skinny, short GEMMs stream their operands: bound by HBM, not the tensor cores.
  CHECK(analytic_gemm(p, {.m = 65536, .n = 128, .k = 128}, Precision::BF16).memory_bound);
}

TEST_CASE("calibration::GemmModel: a best fraction measured at a shape is reproduced there",
          "[calibration]") {
  Profile p = hopper();
  p.gemm_max_efficiency_by_dtype[Precision::BF16] = 0.803;  // MAMF's H100 best...
  p.gemm_best_shape[Precision::BF16] = {2048, 2048, 13312}; // ...measured at this shape
  CHECK(eff(p, 2048, 2048, 13312) == Approx(0.803).epsilon(1e-9));
  // The main loop runs faster than that shape shows (it lost a partial wave and the K fill), but
  // no shape is priced above the sweep's best: 16384^3, whose waves and K fill better, was in the
  // sweep and measured no faster.
  CHECK(eff(p, 16384, 16384, 16384) == Approx(0.803).epsilon(1e-9));
  CHECK(eff(p, 16384, 16384, 1024) < 0.803); // a short K still loses its fill
  // Without a best shape the main loop runs at the best fraction and every shape is below it.
  p.gemm_best_shape.clear();
  CHECK(eff(p, 16384, 16384, 16384) < 0.803);
}
