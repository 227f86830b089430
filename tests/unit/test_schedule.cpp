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
  std::set<std::pair<int, int>> fwd_done, bwd_done; // (virtual stage, micro-batch)
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
      if (step.kind == StepKind::FORWARD)
        ready = j == 0 || fwd_done.count({j - 1, step.microbatch});
      else
        ready = j == last ? fwd_done.count({j, step.microbatch}) > 0
                          : bwd_done.count({j + 1, step.microbatch}) > 0;
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
    CHECK_THROWS_AS(pipeline_schedule(PipelineScheduleKind::INTERLEAVED_1F1B, 4, 2, 6, 0),
                    std::invalid_argument);
  }
  SECTION("1F1B with several chunks") {
    CHECK_THROWS_AS(pipeline_schedule(PipelineScheduleKind::ONE_F_ONE_B, 4, 2, 8, 0), std::invalid_argument);
  }
}

namespace {

/// Makespan of all stages' schedules with blocking receives and unit step times (F = B-input =
/// W = 1, a fused backward B = 2): a forward waits for the upstream forward of its micro-batch, a
/// backward (or B-input) for the downstream one (the last stage for its own forward).
int makespan(int pp, int m, PipelineScheduleKind kind) {
  std::vector<std::vector<PipelineStep>> s;
  for (int stage = 0; stage < pp; ++stage) s.push_back(pipeline_schedule(kind, pp, 1, m, stage));
  std::map<std::pair<int, int>, int> fwd_end, bwd_end; // (stage, micro-batch) -> finish time
  std::vector<size_t> next(size_t(pp), 0);
  std::vector<int> clock(size_t(pp), 0);
  for (bool progress = true; progress;) {
    progress = false;
    for (int st = 0; st < pp; ++st) {
      while (next[size_t(st)] < s[size_t(st)].size()) {
        const PipelineStep& step = s[size_t(st)][next[size_t(st)]];
        int ready = 0;
        if (step.kind == StepKind::FORWARD && st > 0) {
          auto it = fwd_end.find({st - 1, step.microbatch});
          if (it == fwd_end.end()) break;
          ready = it->second;
        }
        if (step.kind == StepKind::BACKWARD || step.kind == StepKind::BACKWARD_INPUT) {
          auto& from = st == pp - 1 ? fwd_end : bwd_end;
          auto it = from.find({st == pp - 1 ? st : st + 1, step.microbatch});
          if (it == from.end()) break;
          ready = it->second;
        }
        const int length = step.kind == StepKind::BACKWARD ? 2 : 1;
        clock[size_t(st)] = std::max(clock[size_t(st)], ready) + length;
        if (step.kind == StepKind::FORWARD) fwd_end[{st, step.microbatch}] = clock[size_t(st)];
        if (step.kind == StepKind::BACKWARD || step.kind == StepKind::BACKWARD_INPUT)
          bwd_end[{st, step.microbatch}] = clock[size_t(st)];
        ++next[size_t(st)];
        progress = true;
      }
    }
  }
  for (int st = 0; st < pp; ++st) REQUIRE(next[size_t(st)] == s[size_t(st)].size()); // no deadlock
  return *std::max_element(clock.begin(), clock.end());
}

} // namespace

TEST_CASE("models::Pipeline: ZB-H1 runs F, B and W once per micro-batch, in order", "[models]") {
  for (int pp : {1, 2, 3, 4, 8})
    for (int m : {1, 2, 3, 4, 8, 16}) {
      for (int stage = 0; stage < pp; ++stage) {
        INFO("pp " << pp << " m " << m << " stage " << stage);
        const auto steps = pipeline_schedule(PipelineScheduleKind::ZERO_BUBBLE, pp, 1, m, stage);
        CHECK(steps.size() == size_t(3 * m));
        std::map<StepKind, std::map<int, int>> at;
        int held = 0, peak = 0;
        for (size_t i = 0; i < steps.size(); ++i) {
          CHECK(steps[i].kind != StepKind::BACKWARD);
          CHECK(at[steps[i].kind].count(steps[i].microbatch) == 0);
          at[steps[i].kind][steps[i].microbatch] = int(i);
          if (steps[i].kind == StepKind::FORWARD) ++held;
          if (steps[i].kind == StepKind::BACKWARD_WEIGHT) --held;
          peak = std::max(peak, held);
        }
        for (StepKind k : {StepKind::FORWARD, StepKind::BACKWARD_INPUT, StepKind::BACKWARD_WEIGHT})
          CHECK(at[k].size() == size_t(m));
        for (int mb = 0; mb < m; ++mb) {
          CHECK(at[StepKind::FORWARD][mb] < at[StepKind::BACKWARD_INPUT][mb]);
          CHECK(at[StepKind::BACKWARD_INPUT][mb] < at[StepKind::BACKWARD_WEIGHT][mb]);
        }
        // 1F1B's peak memory (stage 0: pp micro-batches) on every stage (Qi et al. 2023 sec. 3.1).
        CHECK(peak <= std::min(pp, m));
      }
    }
}

TEST_CASE("models::Pipeline: ZB-H1 bubble is a third of 1F1B's when F = B = W", "[models]") {
  for (int pp : {2, 4, 8})
    for (int m : {8, 16, 32}) {
      INFO("pp " << pp << " m " << m);
      const double ideal = 3.0 * m;
      const double zb = makespan(pp, m, PipelineScheduleKind::ZERO_BUBBLE) - ideal;
      const double one_f_one_b = makespan(pp, m, PipelineScheduleKind::ONE_F_ONE_B) - ideal;
      CHECK(one_f_one_b == Approx(3.0 * (pp - 1)));
      // (p-1)*(F + B - W) against (p-1)*(F + B + W) (Qi et al. 2023 sec. 3.1).
      CHECK(zb / one_f_one_b == Approx(1.0 / 3.0).margin(0.05));
    }
}
