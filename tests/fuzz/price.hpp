// Shared by the calibration fuzz targets: what `odyssey run` asks of a profile that loaded.
#pragma once

#include <cmath>
#include <cstdlib>

#include "calibration/cost_model.hpp"
#include "calibration/profile.hpp"

namespace odyssey::fuzz {

/// A price the cost model gives must be a finite, non-negative number.
inline void check(double v) {
  if (!std::isfinite(v) || v < 0) std::abort();
}

/// GEMM rates over shapes from a decode step to a long-sequence layer, and collectives inside a
/// server and across servers; a profile that loads must price them all.
inline void price(const Profile& p) {
  const CostModel cost(p);
  for (const auto& entry : p.peak) {
    for (const long m : {1L, 96L, 4096L, 1L << 20})
      for (const long k : {64L, 12288L}) {
        const double e = cost.gemm_efficiency({.m = m, .n = 4096, .k = k}, entry.first);
        if (!(e > 0 && e <= 1)) std::abort();
      }
  }
  for (const CollectiveKind kind :
       {CollectiveKind::ALL_REDUCE, CollectiveKind::ALL_GATHER, CollectiveKind::ALL_TO_ALL})
    for (const double bytes : {8.0, 1048576.0, 4294967296.0}) {
      check(cost.collective_time(kind, Bytes(bytes), {.ranks = 8, .servers = 1}, p.nvlink.bandwidth,
                                 p.net.bandwidth)
                .value());
      check(cost.collective_time(kind, Bytes(bytes), {.ranks = 64, .servers = 8}, p.nvlink.bandwidth,
                                 p.net.bandwidth)
                .value());
    }
}

} // namespace odyssey::fuzz
