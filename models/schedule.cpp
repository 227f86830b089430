// Pipeline schedules: the order in which one stage runs the forward and backward passes of its
// model chunks over the micro-batches of an iteration.
#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "models/workload.hpp"

namespace odyssey {
namespace {

PipelineStep forward(int microbatch, int chunk) {
  return PipelineStep{.kind = StepKind::FORWARD, .microbatch = microbatch, .chunk = chunk};
}
PipelineStep backward(int microbatch, int chunk) {
  return PipelineStep{.kind = StepKind::BACKWARD, .microbatch = microbatch, .chunk = chunk};
}

/// No pipelining: each micro-batch runs forward through every chunk, then backward.
std::vector<PipelineStep> sequential(int chunks, int microbatches) {
  std::vector<PipelineStep> steps;
  steps.reserve(static_cast<size_t>(2 * chunks * microbatches));
  for (int mb = 0; mb < microbatches; ++mb) {
    for (int c = 0; c < chunks; ++c) steps.push_back(forward(mb, c));
    for (int c = chunks - 1; c >= 0; --c) steps.push_back(backward(mb, c));
  }
  return steps;
}

/// GPipe (Huang et al. 2019): all forwards, then all backwards. With several chunks per stage,
/// chunk by chunk, so that virtual stage j's forwards only wait on virtual stage j-1's.
std::vector<PipelineStep> gpipe(int chunks, int microbatches) {
  std::vector<PipelineStep> steps;
  steps.reserve(static_cast<size_t>(2 * chunks * microbatches));
  for (int c = 0; c < chunks; ++c)
    for (int mb = 0; mb < microbatches; ++mb) steps.push_back(forward(mb, c));
  for (int c = chunks - 1; c >= 0; --c)
    for (int mb = 0; mb < microbatches; ++mb) steps.push_back(backward(mb, c));
  return steps;
}

/// PipeDream-Flush 1F1B (Narayanan et al. 2021 sec. 2.2.1), as Megatron-LM's
/// forward_backward_pipelining_without_interleaving: warm-up forwards, steady 1F1B, cool-down.
std::vector<PipelineStep> one_f_one_b(int stages, int microbatches, int stage) {
  const int warmup = std::min(stages - stage - 1, microbatches);
  const int remaining = microbatches - warmup;
  std::vector<PipelineStep> steps;
  steps.reserve(static_cast<size_t>(2 * microbatches));
  for (int i = 0; i < warmup; ++i) steps.push_back(forward(i, 0));
  for (int i = 0; i < remaining; ++i) {
    steps.push_back(forward(warmup + i, 0));
    steps.push_back(backward(i, 0));
  }
  for (int i = remaining; i < microbatches; ++i) steps.push_back(backward(i, 0));
  return steps;
}

/// Megatron-LM's forward_backward_pipelining_with_interleaving (Narayanan et al. 2021 sec. 2.2.2):
/// virtual micro-batch k runs chunk (k / pp) % v on micro-batch (k / (pp*v))*pp + k % pp going
/// forward, chunk v-1-(k / pp) % v going backward.
std::vector<PipelineStep> interleaved(int stages, int chunks, int microbatches, int stage) {
  if (microbatches % stages != 0)
    throw std::invalid_argument(fmt::format(
        "interleaved 1F1B needs micro-batches divisible by pipeline stages (got {} micro-batches, pp = {})",
        microbatches, stages));
  const int total = microbatches * chunks;
  const int group = stages * chunks;
  const int warmup = std::min((stages - stage - 1) * 2 + (chunks - 1) * stages, total);
  const int remaining = total - warmup;
  auto microbatch_of = [&](int k) { return (k / group) * stages + k % stages; };
  auto fwd = [&](int k) { return forward(microbatch_of(k), (k % group) / stages); };
  auto bwd = [&](int k) { return backward(microbatch_of(k), chunks - 1 - (k % group) / stages); };

  std::vector<PipelineStep> steps;
  steps.reserve(static_cast<size_t>(2 * total));
  for (int k = 0; k < warmup; ++k) steps.push_back(fwd(k));
  for (int k = 0; k < remaining; ++k) {
    steps.push_back(fwd(warmup + k));
    steps.push_back(bwd(k));
  }
  for (int k = remaining; k < total; ++k) steps.push_back(bwd(k));
  return steps;
}

/// ZB-H1 (Qi et al. 2023, arXiv 2401.10241 sec. 3.1): 1F1B with the backward split into B
/// (input gradient, sent upstream as soon as it is done) and W (weight gradient, local). Warm-up
/// as 1F1B (pp - stage - 1 forwards); in the steady state each round runs F, B and a W, but
/// stage i starts its W passes i rounds late, so that the B passes travel upstream without the
/// W work in between and the deferred W passes fill the cool-down. Every stage then holds at most
/// pp micro-batches between F and W, 1F1B's peak (stage 0), and with F = B = W the bubble is
/// (pp-1)*(F + B - W), a third of 1F1B's (pp-1)*(F + B + W).
std::vector<PipelineStep> zero_bubble_h1(int stages, int microbatches, int stage) {
  const int warmup = std::min(stages - stage - 1, microbatches);
  const int steady = microbatches - warmup;
  const int delay = stage;
  auto step = [](StepKind kind, int microbatch) {
    return PipelineStep{.kind = kind, .microbatch = microbatch, .chunk = 0};
  };
  std::vector<PipelineStep> steps;
  steps.reserve(static_cast<size_t>(3 * microbatches));
  int weights_done = 0;
  for (int i = 0; i < warmup; ++i) steps.push_back(forward(i, 0));
  for (int i = 0; i < steady; ++i) {
    steps.push_back(forward(warmup + i, 0));
    steps.push_back(step(StepKind::BACKWARD_INPUT, i));
    if (i >= delay) steps.push_back(step(StepKind::BACKWARD_WEIGHT, weights_done++));
  }
  for (int i = steady; i < microbatches; ++i) {
    steps.push_back(step(StepKind::BACKWARD_INPUT, i));
    steps.push_back(step(StepKind::BACKWARD_WEIGHT, weights_done++));
  }
  while (weights_done < microbatches) steps.push_back(step(StepKind::BACKWARD_WEIGHT, weights_done++));
  return steps;
}

} // namespace

std::vector<PipelineStep> pipeline_schedule(PipelineScheduleKind kind, int stages, int chunks,
                                            int microbatches, int stage) {
  if (stages < 1 || chunks < 1 || microbatches < 1 || stage < 0 || stage >= stages)
    throw std::invalid_argument(fmt::format("pipeline schedule: bad arguments (pp = {}, virtual stages = {}, "
                                            "micro-batches = {}, stage = {})",
                                            stages, chunks, microbatches, stage));
  if (kind == PipelineScheduleKind::ZERO_BUBBLE) {
    if (chunks != 1)
      throw std::invalid_argument(fmt::format(
          "schedule zero-bubble (ZB-H1) runs one model chunk per stage (got virtual_stages = {})", chunks));
    return zero_bubble_h1(stages, microbatches, stage);
  }
  if (kind == PipelineScheduleKind::ONE_F_ONE_B && chunks > 1)
    throw std::invalid_argument(fmt::format(
        "schedule 1f1b runs one model chunk per stage (got virtual_stages = {}; use interleaved-1f1b)",
        chunks));
  if (stages == 1) return sequential(chunks, microbatches);
  switch (kind) {
  case PipelineScheduleKind::GPIPE: return gpipe(chunks, microbatches);
  case PipelineScheduleKind::ONE_F_ONE_B: return one_f_one_b(stages, microbatches, stage);
  case PipelineScheduleKind::INTERLEAVED_1F1B:
    // With one chunk per stage Megatron-LM runs the non-interleaved schedule.
    if (chunks == 1) return one_f_one_b(stages, microbatches, stage);
    return interleaved(stages, chunks, microbatches, stage);
  case PipelineScheduleKind::ZERO_BUBBLE: break;
  }
  throw std::invalid_argument(fmt::format("unknown pipeline schedule ({})", static_cast<int>(kind)));
}

} // namespace odyssey
