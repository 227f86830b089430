#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "models/workload.hpp"

using namespace odyssey;

namespace {

struct Case {
  PipelineScheduleKind kind;
  int pp, v, m;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  for (int pp : {1, 2, 3, 4, 8})
    for (int m : {1, 2, 3, 4, 8, 12, 16}) {
      out.push_back({PipelineScheduleKind::GPIPE, pp, 1, m});
      out.push_back({PipelineScheduleKind::GPIPE, pp, 2, m});
      out.push_back({PipelineScheduleKind::ONE_F_ONE_B, pp, 1, m});
      for (int v : {1, 2, 3, 4})
        if (m % pp == 0) out.push_back({PipelineScheduleKind::INTERLEAVED_1F1B, pp, v, m});
    }
  return out;
}

std::vector<std::vector<PipelineStep>> all_stages(const Case& c) {
  std::vector<std::vector<PipelineStep>> s;
  for (int stage = 0; stage < c.pp; ++stage) s.push_back(pipeline_schedule(c.kind, c.pp, c.v, c.m, stage));
  return s;
}

/// Runs every stage's schedule with unit-time steps and blocking receives: a forward of virtual
/// stage j waits for the forward of j-1 on the same micro-batch, a backward of j for the backward
/// of j+1 (the last virtual stage for its own forward). Returns false on deadlock.
bool runs_to_completion(const Case& c, const std::vector<std::vector<PipelineStep>>& schedules) {
  const int last = c.pp * c.v - 1;
  std::set<std::pair<int, int>> fwd_done, bwd_done;  // (virtual stage, micro-batch)
  std::vector<size_t> next(size_t(c.pp), 0);
  for (;;) {
    std::vector<std::pair<bool, std::pair<int, int>>> finished;
    bool all_done = true;
    for (int s = 0; s < c.pp; ++s) {
      if (next[size_t(s)] == schedules[size_t(s)].size()) continue;
      all_done = false;
      const PipelineStep& step = schedules[size_t(s)][next[size_t(s)]];
      const int j = step.chunk * c.pp + s;
      bool ready = false;
      if (step.kind == StepKind::FORWARD) ready = j == 0 || fwd_done.count({j - 1, step.microbatch});
      else ready = j == last ? fwd_done.count({j, step.microbatch}) > 0 : bwd_done.count({j + 1, step.microbatch}) > 0;
      if (ready) {
        finished.push_back({step.kind == StepKind::FORWARD, {j, step.microbatch}});
        ++next[size_t(s)];
      }
    }
    if (all_done) return true;
    if (finished.empty()) return false;
    for (const auto& [is_forward, key] : finished) (is_forward ? fwd_done : bwd_done).insert(key);
  }
}

} // namespace

TEST_CASE("models::Pipeline: every forward and backward runs once, backward after forward", "[models]") {
  for (const Case& c : cases()) {
    INFO("kind " << to_string(c.kind) << " pp " << c.pp << " v " << c.v << " m " << c.m);
    for (int stage = 0; stage < c.pp; ++stage) {
      const auto steps = pipeline_schedule(c.kind, c.pp, c.v, c.m, stage);
      CHECK(steps.size() == size_t(2 * c.m * c.v));
      std::map<std::pair<int, int>, int> forward_at, backward_at;
      for (size_t i = 0; i < steps.size(); ++i) {
        const auto key = std::make_pair(steps[i].microbatch, steps[i].chunk);
        auto& seen = steps[i].kind == StepKind::FORWARD ? forward_at : backward_at;
        CHECK(seen.count(key) == 0);
        seen[key] = int(i);
      }
      CHECK(forward_at.size() == size_t(c.m * c.v));
      CHECK(backward_at.size() == size_t(c.m * c.v));
      for (const auto& [key, at] : backward_at) CHECK(forward_at.at(key) < at);
    }
  }
}

TEST_CASE("models::Pipeline: schedules of all stages cannot deadlock", "[models]") {
  for (const Case& c : cases()) {
    INFO("kind " << to_string(c.kind) << " pp " << c.pp << " v " << c.v << " m " << c.m);
    CHECK(runs_to_completion(c, all_stages(c)));
  }
}

TEST_CASE("models::Pipeline: 1F1B keeps at most pp - stage forwards in flight", "[models]") {
  for (int pp : {2, 4, 8})
    for (int m : {1, 3, 8, 32})
      for (int stage = 0; stage < pp; ++stage) {
        int held = 0, peak = 0;
        for (const auto& step : pipeline_schedule(PipelineScheduleKind::ONE_F_ONE_B, pp, 1, m, stage)) {
          held += step.kind == StepKind::FORWARD ? 1 : -1;
          peak = std::max(peak, held);
        }
        CHECK(peak == std::min(pp - stage, m));
      }
}

TEST_CASE("models::Pipeline: interleaved order follows Megatron-LM", "[models]") {
  // pp = 2, v = 2, m = 4, stage 0: warm-up (2-0-1)*2 + (2-1)*2 = 4 forwards.
  const auto steps = pipeline_schedule(PipelineScheduleKind::INTERLEAVED_1F1B, 2, 2, 4, 0);
  const std::vector<std::pair<int, int>> first_forwards = {{0, 0}, {1, 0}, {0, 1}, {1, 1}, {2, 0}};
  for (size_t i = 0; i < first_forwards.size(); ++i) {
    CHECK(steps[i].kind == StepKind::FORWARD);
    CHECK(steps[i].microbatch == first_forwards[i].first);
    CHECK(steps[i].chunk == first_forwards[i].second);
  }
  // First backward: micro-batch 0 on the last chunk.
  CHECK(steps[5].kind == StepKind::BACKWARD);
  CHECK(steps[5].microbatch == 0);
  CHECK(steps[5].chunk == 1);
}

TEST_CASE("models::Pipeline: one stage runs F then B per micro-batch", "[models]") {
  for (auto kind : {PipelineScheduleKind::GPIPE, PipelineScheduleKind::ONE_F_ONE_B,
                    PipelineScheduleKind::INTERLEAVED_1F1B}) {
    const auto steps = pipeline_schedule(kind, 1, 1, 3, 0);
    REQUIRE(steps.size() == 6);
    for (int i = 0; i < 3; ++i) {
      CHECK(steps[size_t(2 * i)].kind == StepKind::FORWARD);
      CHECK(steps[size_t(2 * i + 1)].kind == StepKind::BACKWARD);
      CHECK(steps[size_t(2 * i + 1)].microbatch == i);
    }
  }
}

TEST_CASE("models::Pipeline: rejected schedules", "[models]") {
  SECTION("zero bubble with several chunks") {
    CHECK_THROWS_WITH(pipeline_schedule(PipelineScheduleKind::ZERO_BUBBLE, 4, 2, 8, 0),
                      Catch::Contains("virtual_stages = 2"));
  }
  SECTION("interleaving with micro-batches not divisible by pp") {
    CHECK_THROWS_AS(pipeline_schedule(PipelineScheduleKind::INTERLEAVED_1F1B, 4, 2, 6, 0), std::invalid_argument);
  }
  SECTION("1F1B with several chunks") {
    CHECK_THROWS_AS(pipeline_schedule(PipelineScheduleKind::ONE_F_ONE_B, 4, 2, 8, 0), std::invalid_argument);
  }
}
