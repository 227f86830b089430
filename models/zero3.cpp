// ZeRO-3's gather and release granularity: how many all-gathers one pass over a chunk issues and
// how many gathered parameters are live at once.
//
// PyTorch FSDP gathers one wrapped unit at a time (typically one transformer layer, the
// transformer_auto_wrap_policy), prefetches the next unit (forward_prefetch, backward_prefetch =
// BACKWARD_PRE) and frees each unit after use (reshard_after_forward); limit_all_gathers (default
// True) lets at most two all-gathers be in flight, so at most the computed unit and the
// prefetched one are live (PyTorch docs, torch.distributed.fsdp.FullyShardedDataParallel). After
// each unit's backward it reduce-scatters that unit's gradients.
//
// DeepSpeed ZeRO-3 gathers parameters submodule by submodule, prefetching ahead up to
// stage3_prefetch_bucket_size parameters (default 5e7) and keeping at most
// stage3_max_live_parameters (default 1e9) gathered; it releases them after use and reduces
// gradients in reduce_bucket_size buckets (DeepSpeed config docs, "ZeRO optimizations for FP16
// training"). Odyssey splits a chunk's parameters into equal buckets of at most the prefetch
// bucket: a submodule larger than the bucket (GPT-3 175B's 12288 x 49152 MLP weight) is gathered
// whole by DeepSpeed, which this even split does not show.
#include <algorithm>
#include <cmath>

#include "models/workload.hpp"

namespace odyssey {

Zero3Gathers zero3_gathers(const ParallelismSpec& p, double elements, int layers) {
  Zero3Gathers g;
  if (elements <= 0) return g;
  // The unit being computed, and the next one prefetched while it computes.
  const int in_flight = p.zero_overlap ? 2 : 1;
  if (p.zero3_unit == Zero3Unit::LAYER) {
    // The embedding and the LM head are spread over the chunk's layers (a chunk without layers
    // is one unit).
    g.units = std::max(1, layers);
    g.unit_elements = elements / g.units;
    g.live_elements = std::min(g.units, in_flight) * g.unit_elements;
    return g;
  }
  g.units = std::max(1, static_cast<int>(std::ceil(elements / p.zero3_bucket)));
  g.unit_elements = elements / g.units;
  // At most max_live gathered, but never less than the unit being computed.
  g.live_elements =
      std::max(g.unit_elements, std::min(std::min(g.units, in_flight) * g.unit_elements, p.zero3_max_live));
  return g;
}

int gradient_buckets(const ParallelismSpec& p, const TrainingSpec& training, Bytes gradients, int layers) {
  if (gradients.value() <= 0) return 0;
  if (p.zero >= 3 && p.zero3_unit == Zero3Unit::LAYER && p.dp_bucket.value() <= 0) return std::max(1, layers);
  // A rounding error must not add a bucket when the gradients are a whole number of buckets.
  const double buckets = gradients.value() / dp_bucket_bytes(p, training).value();
  return std::max(1, static_cast<int>(std::ceil(buckets * (1 - 1e-12))));
}

} // namespace odyssey
