#include "tools/planner.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <variant>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "models/wording.hpp"
#include "models/workload.hpp"
#include "sim/isolation.hpp"
#include "sim/report.hpp"
#include "tools/run.hpp"
#include "tools/sweep.hpp"

namespace odyssey {

namespace {

/// Candidates simulated at fast fidelity by default: for one GPU count, and for each count of a range.
constexpr int FAST_ONE_GPU_COUNT = 200;
constexpr int FAST_PER_GPU_COUNT = 3;

} // namespace

// ---- enumeration ----------------------------------------------------------------------------------

namespace {

std::vector<int> divisors(long n) {
  std::vector<int> out;
  for (long d = 1; d <= n; ++d)
    if (n % d == 0) out.push_back(int(d));
  return out;
}

std::vector<int> powers_of_two(int limit) {
  std::vector<int> out;
  for (int x = 1; x <= limit; x *= 2) out.push_back(x);
  return out;
}

/// Sorted union of two lists.
std::vector<int> merged(std::vector<int> a, const std::vector<int>& b) {
  a.insert(a.end(), b.begin(), b.end());
  std::sort(a.begin(), a.end());
  a.erase(std::unique(a.begin(), a.end()), a.end());
  return a;
}

} // namespace

std::vector<Strategy> enumerate_strategies(const Scenario& scenario, long gpus_min, long gpus_max) {
  const ModelSpec& model = scenario.model;
  const MachineSpec& machine = scenario.machine;
  const int gps = machine.server.gpus;
  // tp up to two servers (so that the search sees what TP across servers costs), pp over the
  // layers' divisors and powers of two, cp and ep over powers of two, dp over the batch's divisors.
  const std::vector<int> tps = powers_of_two(std::min(model.heads, 2 * gps));
  const std::vector<int> pps = merged(divisors(model.layers), powers_of_two(model.layers));
  const std::vector<int> cps = powers_of_two(std::min(8, std::max(1, model.seq_len / 1024)));
  const std::vector<int> eps = model.moe ? powers_of_two(model.moe->experts) : std::vector<int>{1};
  const std::vector<int> dps = divisors(scenario.training.global_batch);
  const std::vector<int> mbs = {1, 2, 4, 8};
  const long most = std::min(gpus_max, machine.total_gpus());

  std::vector<Strategy> out;
  Strategy s;
  s.parallelism = scenario.parallelism;
  s.parallelism.first_stage_layers = 0;
  s.parallelism.last_stage_layers = 0;
  for (int tp : tps)
    for (int pp : pps)
      for (int cp : cps)
        for (int ep : eps)
          for (int dp : dps) {
            const long gpus = long(tp) * pp * cp * dp;
            if (gpus < gpus_min || gpus > most) continue;
            ParallelismSpec& p = s.parallelism;
            p.tp = tp;
            p.pp = pp;
            p.cp = cp;
            p.ep = ep;
            p.dp = dp;
            for (int mb : mbs) {
              s.micro_batch = mb;
              std::vector<std::pair<PipelineScheduleKind, int>> schedules = {
                  {PipelineScheduleKind::ONE_F_ONE_B, 1}};
              if (pp > 1) {
                schedules.emplace_back(PipelineScheduleKind::GPIPE, 1);
                schedules.emplace_back(PipelineScheduleKind::ZERO_BUBBLE, 1);
                for (int v : divisors(model.layers / pp))
                  if (v > 1 && v <= 8) schedules.emplace_back(PipelineScheduleKind::INTERLEAVED_1F1B, v);
              }
              for (const auto& [schedule, v] : schedules) {
                p.schedule = schedule;
                p.virtual_stages = v;
                for (int zero = 0; zero <= 3; ++zero) {
                  p.zero = zero;
                  for (Recompute r : {Recompute::NONE, Recompute::SELECTIVE, Recompute::FULL}) {
                    p.recompute = r;
                    for (bool sp : {false, true}) {
                      if (sp && tp == 1) continue;
                      p.sequence_parallel = sp;
                      out.push_back(s);
                    }
                  }
                }
              }
            }
          }
  return out;
}

// ---- the three stages -----------------------------------------------------------------------------

namespace {

struct Scored {
  Strategy strategy;
  Estimate estimate;
};

bool faster(const Scored& a, const Scored& b) {
  // Per GPU count the iteration time ranks; of equal times the one that needs less memory first.
  if (a.estimate.iteration != b.estimate.iteration) return a.estimate.iteration < b.estimate.iteration;
  return a.estimate.memory < b.estimate.memory;
}

/// The same strategy but for the ZeRO stage, at the same estimated time: the one needing less
/// memory (first in `faster` order) stands for it, as nothing else tells them apart.
bool same_but_zero(const Scored& a, const Scored& b) {
  ParallelismSpec p = b.strategy.parallelism;
  p.zero = a.strategy.parallelism.zero;
  return a.estimate.iteration == b.estimate.iteration && a.strategy.micro_batch == b.strategy.micro_batch &&
         describe(Strategy{.parallelism = p, .micro_batch = b.strategy.micro_batch}) == describe(a.strategy);
}

/// Keeps the `k` best of a growing list without sorting it all.
void keep_best(std::vector<Scored>& list, std::size_t k) {
  if (list.size() < 2 * k + 64) return;
  std::nth_element(list.begin(), list.begin() + long(k), list.end(), faster);
  list.resize(k);
}

void sort_best(std::vector<Scored>& list, std::size_t k) {
  std::stable_sort(list.begin(), list.end(), faster);
  if (list.size() > k) list.resize(k);
}

TrainingSpec training_of(const Scenario& sc, const Strategy& s) {
  TrainingSpec t = sc.training;
  t.micro_batch = s.micro_batch;
  return t;
}

/// The scenario with `s` in place of its strategy, simulated at `fidelity`: what `odyssey run`
/// would run for that strategy.
Scenario scenario_of(const Scenario& sc, const Strategy& s, Fidelity fidelity) {
  Scenario x = sc;
  x.parallelism = s.parallelism;
  x.training = training_of(sc, s);
  x.simulation.fidelity = fidelity;
  return x;
}

/// Why a layout that needs `need` per GPU does not fit the plan's limit, with the numbers.
std::string over_limit(Bytes need, const PlanMemoryLimit& limit, const std::string& gpu_type,
                       std::string_view how) {
  constexpr double GIB = 1 << 30;
  return fmt::format(
      "memory: needs {:.2f} GiB per GPU{}, {:.2f} GiB over the {:.2f} GiB a plan may use of {}'s "
      "{:.0f} GiB ({:.3g}% margin)",
      need.value() / GIB, how, (need - limit.usable()).value() / GIB, limit.usable().value() / GIB,
      with_article(gpu_type), limit.gpu.value() / GIB, limit.margin * 100);
}

PlanRow analytical_row(const Scenario& sc, const CostModel& cost, const PlanMemoryLimit& limit,
                       const Scored& x) {
  PlanRow r;
  r.strategy = x.strategy;
  r.fidelity = "analytical";
  r.iteration = x.estimate.iteration;
  r.analytical = x.estimate.iteration;
  const double tokens = double(sc.training.global_batch) * sc.model.seq_len;
  r.tokens_per_s = tokens / r.iteration.value();
  r.mfu = x.estimate.model_flops.value() /
          (double(x.strategy.gpus()) * r.iteration.value() * cost.peak(sc.training.precision).value());
  r.memory = x.estimate.memory;
  r.fits = limit.fits(x.estimate.memory);
  r.breakdown = x.estimate.breakdown;
  if (sc.training.tokens) r.time_to_train = time_to_train(*sc.training.tokens, r.tokens_per_s);
  return r;
}

/// Of the candidates too big for GPU memory, this many of the smallest are tried with ZeRO-Offload
/// (a full Workload is built for each, so the count stays small), and at most OFFLOAD_VARIANTS of
/// them, the fastest, join the ranking.
constexpr std::size_t OFFLOAD_TRIES = 64;
constexpr long OFFLOAD_VARIANTS = 16;

bool smaller(const Scored& a, const Scored& b) {
  if (a.estimate.memory != b.estimate.memory) return a.estimate.memory < b.estimate.memory;
  return faster(a, b);
}

/// Keeps the `k` candidates needing least memory of a growing list.
void keep_smallest(std::vector<Scored>& list, std::size_t k) {
  if (list.size() < 2 * k + 64) return;
  std::nth_element(list.begin(), list.begin() + long(k), list.end(), smaller);
  list.resize(k);
}

/// The host's exposed optimizer step of `w` (ZeRO-Offload): each stage's offload_step over its
/// overlap windows, as the engine takes them, the slowest stage's.
Seconds offload_exposed(const Workload& w, const HostResources& host, const CostModel& cost) {
  Seconds exposed;
  for (int s = 0; s < w.stages(); ++s)
    exposed = std::max(
        exposed,
        offload_step(w, s, host, cost.cpu_adam(),
                     overlap_windows(w, s, [&](const WorkBlock& b) { return cost.compute_time(b.compute); }))
            .exposed);
  return exposed;
}

/// `e` with the GPU's optimizer step replaced by the host's exposed step (the engine's rule: an
/// offloaded optimizer leaves the GPU for the host cores).
void add_host_optimizer(Estimate& e, Seconds exposed) {
  e.iteration = e.iteration - e.breakdown.optimizer - e.breakdown.host_optimizer + exposed;
  e.breakdown.optimizer = Seconds(0);
  e.breakdown.host_optimizer = exposed;
}

/// `e` with the scenario's input pipeline's stall for `s`, from the iteration without one: what
/// run_scenario adds to the simulated iteration (scenario_data_loading). Calling it again after `e`
/// changed replaces the stall.
void add_data_stall(const Scenario& sc, const Strategy& s, Estimate& e) {
  const Seconds training = e.iteration - e.breakdown.data_stall;
  const Seconds stall = scenario_data_loading(sc, s.parallelism, training).stall();
  e.iteration = training + stall;
  e.breakdown.data_stall = stall;
}

/// The screen's estimate of `s` with what `odyssey run` adds beside the GPUs' work: the host's
/// optimizer step when the scenario offloads the optimizer (its memory then the run's memory model's,
/// as the screen's own counts the states on the GPU) and the input pipeline's stall. Nothing when
/// the offloaded states do not fit the host: the problem, at its key.
std::variant<Estimate, StrategyProblem> screen_estimate(const Scenario& sc, const CostModel& cost,
                                                        AnalyticalScreen& screen, const Strategy& s) {
  Estimate e = screen.evaluate(s);
  if (s.parallelism.offload.any()) {
    const HostResources host = host_resources(sc.machine, s.gpus());
    if (auto problem = check_offload(s.parallelism, host)) return *problem;
    TrainingSpec t = sc.training;
    t.micro_batch = s.micro_batch;
    const Workload w(sc.model, t, s.parallelism);
    const HostFit fit = host_fit(w, host);
    if (!fit.fits())
      return StrategyProblem{s.parallelism.offload.optimizer != OffloadDevice::NONE
                                 ? "parallelism.offload.optimizer"
                                 : "parallelism.offload.params",
                             host_fit_problem(fit, host.gpus)};
    const MemoryFit gpu = memory_fit(w, sc.machine.gpu.memory);
    e.memory = gpu.peak;
    e.memory_stage = gpu.peak_stage;
    add_host_optimizer(e, offload_exposed(w, host, cost));
  }
  add_data_stall(sc, s, e);
  return e;
}

/// ZeRO-Offload where GPU memory is the constraint: candidates that did not fit (ZeRO 1 or more,
/// the smallest OFFLOAD_TRIES, fastest first) get a variant with the optimizer states and CPU-Adam on the
/// host, when the machine describes a host to offload to. Its memory is the run's memory model's, its host
/// step the run's offload_step (models/offload.hpp): the screen's time with the GPU's optimizer step replaced
/// by the host step's exposed part, and the input pipeline's stall. Variants that fit GPU and host memory
/// join `best`; returns how many did.
long add_offload_variants(const Scenario& sc, const CostModel& cost, const PlanMemoryLimit& limit,
                          std::vector<Scored> too_big, std::map<long, std::vector<Scored>>& best) {
  std::stable_sort(too_big.begin(), too_big.end(), smaller);
  if (too_big.size() > OFFLOAD_TRIES) too_big.resize(OFFLOAD_TRIES);
  std::stable_sort(too_big.begin(), too_big.end(), faster);
  long added = 0;
  for (const Scored& x : too_big) {
    if (added >= OFFLOAD_VARIANTS) break;
    Strategy v = x.strategy;
    v.parallelism.offload.optimizer = OffloadDevice::CPU;
    const HostResources host = host_resources(sc.machine, v.gpus());
    if (v.parallelism.zero < 1 || check_offload(v.parallelism, host)) continue;
    const Workload w = scenario_workload(scenario_of(sc, v, Fidelity::FAST));
    const MemoryFit fit = memory_fit(w, sc.machine.gpu.memory);
    if (!limit.fits(fit.peak) || !host_fit(w, host).fits()) continue;
    Scored y{.strategy = v, .estimate = x.estimate};
    y.estimate.memory = fit.peak;
    y.estimate.memory_stage = fit.peak_stage;
    add_host_optimizer(y.estimate, offload_exposed(w, host, cost));
    add_data_stall(sc, v, y.estimate);
    best[v.gpus()].push_back(y);
    ++added;
  }
  return added;
}

/// Simulates the rows at `fidelity` in parallel processes and replaces their figures; a row
/// whose exact memory model does not fit is marked pruned and not simulated.
/// Simulates the rows that fit the limit (the others are pruned without a run); returns how many
/// simulations it started.
long simulate_rows(const Scenario& sc, const CostModel& cost, const PlanMemoryLimit& limit,
                   std::vector<PlanRow>& rows, Fidelity fidelity, int jobs) {
  std::vector<std::size_t> todo;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Workload w = scenario_workload(scenario_of(sc, rows[i].strategy, fidelity));
    Bytes peak;
    rows[i].memory_per_stage.clear();
    for (int s = 0; s < w.stages(); ++s) {
      rows[i].memory_per_stage.push_back(w.memory(s));
      peak = std::max(peak, w.memory(s).total());
    }
    rows[i].memory = peak;
    if (!limit.fits(peak)) {
      rows[i].fits = false;
      rows[i].pruned = over_limit(peak, limit, sc.machine.gpu.type, "");
      continue;
    }
    todo.push_back(i);
  }
  run_in_processes(
      todo.size(), jobs,
      [&](std::size_t k) {
        return render_json(run_scenario(scenario_of(sc, rows[todo[k]].strategy, fidelity), cost));
      },
      [&](std::size_t k, const std::string& text, const std::string& error) {
        PlanRow& row = rows[todo[k]];
        if (!error.empty()) {
          row.pruned = "simulation failed: " + error;
          return;
        }
        const nlohmann::json j = nlohmann::json::parse(text);
        row.fidelity = to_string(fidelity);
        auto metric = [&](std::string_view key) {
          return j.at(std::string(report_metric(key).key)).get<double>();
        };
        row.iteration = Seconds(metric("iteration_time_s"));
        row.tokens_per_s = metric("tokens_per_s");
        row.mfu = metric("mfu");
        row.memory = Bytes(metric("memory_per_gpu_bytes"));
        row.fits = limit.fits(row.memory);
        for (const BreakdownPart& part : breakdown_parts())
          row.breakdown.*part.member = Seconds(j.at("breakdown").at(std::string(part.key)).get<double>());
        if (sc.training.tokens) row.time_to_train = time_to_train(*sc.training.tokens, row.tokens_per_s);
      });
  return long(todo.size());
}

/// Simulated rows first (full before fast), each group fastest first; pruned rows last.
int fidelity_rank(const PlanRow& r) {
  if (!r.pruned.empty()) return 3;
  return r.fidelity == "full" ? 0 : r.fidelity == "fast" ? 1 : 2;
}

void rank_rows(std::vector<PlanRow>& rows) {
  std::stable_sort(rows.begin(), rows.end(), [](const PlanRow& a, const PlanRow& b) {
    const int fa = fidelity_rank(a), fb = fidelity_rank(b);
    if (fa != fb) return fa < fb;
    return a.tokens_per_s > b.tokens_per_s;
  });
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

} // namespace

PlanResult plan(const Scenario& sc, const CostModel& cost, const PlanOptions& options) {
  PlanResult r;
  r.scenario = sc.name;
  r.model = sc.model.name;
  r.machine = sc.machine.name;
  r.min_gpus = options.min_gpus > 0 ? options.min_gpus : sc.parallelism.gpus();
  r.max_gpus = options.max_gpus > 0 ? options.max_gpus : r.min_gpus;
  r.tokens = sc.training.tokens;
  r.deadline_days = options.deadline_days;
  r.memory_limit = PlanMemoryLimit{.gpu = sc.machine.gpu.memory, .margin = options.memory_margin};
  r.published_mfu = scenario_published_mfu(sc);
  r.profile = cost.profile().name;
  r.profile_kind = cost.profile().provenance.kind;
  const PlanMemoryLimit& limit = r.memory_limit;
  const bool range = r.min_gpus != r.max_gpus;
  const int full = options.full >= 0 ? options.full : range ? 1 : 3;

  // Stage 1: every strategy through the rules and the closed form.
  const auto t0 = std::chrono::steady_clock::now();
  AnalyticalScreen screen(sc.machine, sc.model, sc.training, cost);
  const std::size_t per_count = 4 * std::size_t(std::max({options.fast, FAST_ONE_GPU_COUNT, 1}));
  std::map<long, std::vector<Scored>> best; // by GPU count
  std::vector<Scored> too_big;
  std::vector<Scored> offloadable; // too big, ZeRO >= 1: the smallest, for ZeRO-Offload variants
  const std::size_t keep_pruned = std::size_t(std::max(options.top, 1));
  for (const Strategy& s : enumerate_strategies(sc, r.min_gpus, r.max_gpus)) {
    ++r.candidates;
    const TrainingSpec t = training_of(sc, s);
    auto prune = [&](const StrategyProblem& problem) {
      auto [it, fresh] = r.pruned_by_rule.try_emplace(problem.key, 0);
      ++it->second;
      if (fresh) r.rule_example[problem.key] = problem.message + " (" + describe(s) + ")";
    };
    if (const auto problem = check_strategy(sc.model, t, s.parallelism, job_capacity(sc.machine))) {
      prune(*problem);
      continue;
    }
    auto estimate = screen_estimate(sc, cost, screen, s);
    if (const auto* problem = std::get_if<StrategyProblem>(&estimate)) {
      prune(*problem);
      continue;
    }
    ++r.screened;
    Scored x{.strategy = s, .estimate = std::get<Estimate>(estimate)};
    if (!limit.fits(x.estimate.memory)) {
      if (s.parallelism.zero >= 1 && !s.parallelism.offload.any()) {
        offloadable.push_back(x);
        keep_smallest(offloadable, OFFLOAD_TRIES);
      }
      too_big.push_back(x);
      keep_best(too_big, keep_pruned);
      continue;
    }
    ++r.fitting;
    auto& list = best[s.gpus()];
    list.push_back(x);
    keep_best(list, per_count);
  }
  r.offload_variants = add_offload_variants(sc, cost, limit, std::move(offloadable), best);
  r.fitting += r.offload_variants;
  r.shapes = screen.shapes();
  r.screen_seconds = seconds_since(t0);

  // Stage 2: the best few hundred at fast fidelity, shared out over the GPU counts.
  const std::size_t counts = std::max<std::size_t>(1, best.size());
  const std::size_t share = options.fast < 0 ? std::size_t(range ? FAST_PER_GPU_COUNT : FAST_ONE_GPU_COUNT)
                                             : std::size_t(options.fast) / counts;
  std::vector<PlanRow> rows;
  for (auto& [gpus, list] : best) {
    std::stable_sort(list.begin(), list.end(), faster);
    std::vector<const Scored*> taken;
    for (const Scored& x : list) {
      if (taken.size() >= std::max<std::size_t>(share, 1)) break;
      if (std::any_of(taken.begin(), taken.end(), [&](const Scored* t) { return same_but_zero(*t, x); }))
        continue;
      taken.push_back(&x);
      rows.push_back(analytical_row(sc, cost, limit, x));
    }
  }
  // The scenario's own strategy is always simulated when its GPU count is searched: the search
  // does not enumerate uneven stage layouts (first_stage_layers / last_stage_layers), and the
  // answer must never be worse than the plan the user started from.
  const Strategy own{.parallelism = sc.parallelism, .micro_batch = sc.training.micro_batch};
  if (own.gpus() >= r.min_gpus && own.gpus() <= r.max_gpus &&
      !check_strategy(sc.model, sc.training, own.parallelism, job_capacity(sc.machine))) {
    auto same = std::find_if(rows.begin(), rows.end(),
                             [&](const PlanRow& row) { return describe(row.strategy) == describe(own); });
    const bool uneven = own.parallelism.first_stage_layers > 0 || own.parallelism.last_stage_layers > 0;
    if (same == rows.end() || uneven) {
      auto estimate = screen_estimate(sc, cost, screen, own);
      if (const auto* e = std::get_if<Estimate>(&estimate)) {
        rows.push_back(analytical_row(sc, cost, limit, Scored{.strategy = own, .estimate = *e}));
        same = rows.end() - 1;
      }
    }
    if (same != rows.end()) same->scenario_plan = true;
  }

  const auto t1 = std::chrono::steady_clock::now();
  if (options.fast != 0) {
    simulate_rows(sc, cost, limit, rows, Fidelity::FAST, options.jobs);
    for (const PlanRow& row : rows) r.fast_runs += row.fidelity == "fast";
  }
  r.fast_seconds = seconds_since(t1);

  // The best of each GPU count, and for a deadline the fewest GPUs that meet it.
  auto best_of_counts = [&] {
    std::map<long, const PlanRow*> by_count;
    for (const PlanRow& row : rows) {
      if (!row.pruned.empty()) continue;
      const PlanRow*& b = by_count[row.strategy.gpus()];
      if (b == nullptr || fidelity_rank(row) < fidelity_rank(*b) ||
          (fidelity_rank(row) == fidelity_rank(*b) && row.tokens_per_s > b->tokens_per_s))
        b = &row;
    }
    std::vector<PlanRow> out;
    for (const auto& [gpus, row] : by_count) out.push_back(*row);
    return out;
  };

  // Stage 3: the best few at full fidelity: the fastest overall, or with a deadline the plans
  // of the fewest GPUs that meet it (a full run that misses it moves on to the next count).
  const auto t2 = std::chrono::steady_clock::now();
  rank_rows(rows);
  // The time a row is held to the deadline: failure-free, or with failures at P90.
  auto deadline_time = [&](const PlanRow& b) -> std::optional<Seconds> {
    if (!b.time_to_train || !options.deadline_p90) return b.time_to_train;
    return scenario_time_to_train_p90(sc, b.strategy.gpus(), *b.time_to_train);
  };
  auto meets_deadline = [&](const PlanRow& b) {
    const auto t = deadline_time(b);
    return t && t->value() <= *options.deadline_days * 86400.0;
  };
  if (options.deadline_days && sc.training.tokens) {
    for (const PlanRow& b : best_of_counts()) {
      if (r.full_runs >= full) break;
      if (!meets_deadline(b)) continue;
      for (PlanRow& row : rows) {
        if (row.strategy.gpus() != b.strategy.gpus() || describe(row.strategy) != describe(b.strategy))
          continue;
        std::vector<PlanRow> one{row};
        r.full_runs += simulate_rows(sc, cost, limit, one, Fidelity::FULL, options.jobs);
        row = one.front();
        break;
      }
      const std::vector<PlanRow> now = best_of_counts();
      if (std::any_of(now.begin(), now.end(),
                      [&](const PlanRow& x) { return x.fidelity == "full" && meets_deadline(x); }))
        break;
    }
  } else {
    // A row the screen let through may need more memory once its stages are laid out: it is
    // pruned without a run, and the next row takes its place.
    std::vector<char> tried(rows.size(), 0);
    for (;;) {
      std::vector<std::size_t> chosen;
      std::vector<PlanRow> top;
      for (std::size_t i = 0; i < rows.size() && r.full_runs + long(chosen.size()) < full; ++i)
        if (rows[i].pruned.empty() && tried[i] == 0) {
          tried[i] = 1;
          chosen.push_back(i);
          top.push_back(rows[i]);
        }
      if (chosen.empty()) break;
      r.full_runs += simulate_rows(sc, cost, limit, top, Fidelity::FULL, options.jobs);
      for (std::size_t k = 0; k < chosen.size(); ++k) rows[chosen[k]] = top[k];
    }
  }
  r.full_seconds = seconds_since(t2);
  rank_rows(rows);

  for (PlanRow& row : rows) {
    if (row.pruned.empty())
      r.ranked.push_back(row);
    else
      r.pruned_memory.push_back(row);
  }
  if (range) r.best_per_gpus = best_of_counts();
  sort_best(too_big, keep_pruned);
  for (const Scored& x : too_big) {
    PlanRow row = analytical_row(sc, cost, limit, x);
    row.pruned = over_limit(x.estimate.memory, limit, sc.machine.gpu.type, " (analytical)");
    r.pruned_memory.push_back(row);
  }
  if (options.deadline_days && sc.training.tokens) {
    for (const PlanRow& b : best_of_counts())
      if (meets_deadline(b)) {
        r.deadline_answer = b;
        break;
      }
    std::optional<Seconds> closest;
    if (!r.deadline_answer)
      for (const PlanRow& b : best_of_counts())
        if (const auto t = deadline_time(b); t && (!closest || *t < *closest)) {
          r.deadline_closest = b;
          closest = t;
        }
    for (auto* row : {&r.deadline_answer, &r.deadline_closest})
      if (*row && options.deadline_p90) (*row)->time_to_train_p90 = deadline_time(**row);
  }
  return r;
}

// ---- rendering ------------------------------------------------------------------------------------

namespace {

std::string table_header() {
  return fmt::format(
      "  {:>4} {:>6} {:>3} {:>3} {:>4} {:>3} {:>3} {:>3}  {:<19} {:>4} {:<9} {:>2} {:>11} {:>10} {:>6} "
      "{:>8} {:>10}\n",
      "rank", "gpus", "tp", "pp", "dp", "cp", "ep", "mb", "schedule", "zero", "recompute", "sp", "iteration",
      "tokens/s", "MFU", "mem/GPU", "fidelity");
}

std::string table_row(int rank, const PlanRow& r) {
  const ParallelismSpec& p = r.strategy.parallelism;
  const std::string schedule = p.virtual_stages > 1
                                   ? fmt::format("{} v{}", to_string(p.schedule), p.virtual_stages)
                                   : to_string(p.schedule);
  return fmt::format(
      "  {:>4} {:>6} {:>3} {:>3} {:>4} {:>3} {:>3} {:>3}  {:<19} {:>4} {:<9} {:>2} {:>9.3f} s {:>10.0f} "
      "{:>5.1f}% {:>4.1f} GiB {:>10}\n",
      rank, r.strategy.gpus(), p.tp, p.pp, p.dp, p.cp, p.ep, r.strategy.micro_batch, schedule,
      // "2+o": ZeRO-2 with the optimizer offloaded to the host.
      fmt::format("{}{}", p.zero, p.offload.optimizer != OffloadDevice::NONE ? "+o" : ""),
      to_string(p.recompute), p.sequence_parallel ? "y" : "n", r.iteration.value(), r.tokens_per_s,
      100 * r.mfu, r.memory.value() / (1 << 30), r.fidelity + (r.scenario_plan ? " *" : ""));
}

/// A span of time in days, or in hours under a day: "30 days", "1.5 days", "12 hours".
std::string span(double seconds) {
  const double days = seconds / 86400;
  if (days >= 1)
    return fmt::format("{:.3g} {}", days, noun_for(std::stod(fmt::format("{:.3g}", days)), "day"));
  const double hours = seconds / 3600;
  return fmt::format("{:.3g} {}", hours, noun_for(std::stod(fmt::format("{:.3g}", hours)), "hour"));
}

std::string days(const Seconds& s) {
  return span(s.value());
}

/// " (P90 with failures: 14.4 days)" for a row held to the deadline with failures.
std::string with_failures(const PlanRow& r) {
  return r.time_to_train_p90 ? fmt::format(" (P90 with failures: {})", days(*r.time_to_train_p90)) : "";
}

/// The simulated plan of highest MFU (among the ranked and the best of each GPU count; the
/// screen's rows only when nothing was simulated): what the published comparison is about.
const PlanRow* highest_mfu(const PlanResult& r) {
  const PlanRow* best = nullptr;
  for (const bool simulated_only : {true, false}) {
    for (const auto* rows : {&r.ranked, &r.best_per_gpus})
      for (const PlanRow& row : *rows)
        if ((!simulated_only || row.fidelity != "analytical") && (!best || row.mfu > best->mfu)) best = &row;
    if (best) return best;
  }
  return best;
}

/// The plans' best MFU against the best published for the GPU (one paragraph; empty without a
/// published row or a plan).
std::string published_mfu_text(const PlanResult& r) {
  const PlanRow* best = highest_mfu(r);
  if (!r.published_mfu || !best) return "";
  const PublishedMfuRow& pub = *r.published_mfu;
  const MfuAgainstPublished a = mfu_against_published(pub, best->mfu, best->breakdown, best->iteration);
  std::string out =
      fmt::format("published MFU: the plans here reach up to {:.1f}% ({} on {}, {} fidelity); the best "
                  "MFU published on {} is {}\n",
                  best->mfu * 100, describe(best->strategy), counted(best->strategy.gpus(), "GPU"),
                  best->fidelity, pub.gpu, describe_published_mfu(pub));
  if (!a.above()) return out + "  the plans stay below it\n";
  return out + fmt::format(
                   "  {:.2f}x it: that plan computes {:.0f}% of its iteration and runs the model's FLOPs at "
                   "{:.0f}% of peak while it does, with kernels priced by {} ({}). A plan above a published "
                   "run gains from its layout (less pipeline bubble or exposed communication than that run "
                   "had) or from kernel prices faster than that run's kernels ran (README: How accurate it "
                   "is)\n",
                   a.ratio, a.compute_share * 100, a.compute_mfu * 100, r.profile, to_string(r.profile_kind));
}

nlohmann::json row_json(const PlanRow& r) {
  const ParallelismSpec& p = r.strategy.parallelism;
  nlohmann::json j{{"strategy", describe(r.strategy)},
                   {"gpus", r.strategy.gpus()},
                   {"tp", p.tp},
                   {"pp", p.pp},
                   {"dp", p.dp},
                   {"cp", p.cp},
                   {"ep", p.ep},
                   {"micro_batch", r.strategy.micro_batch},
                   {"schedule", to_string(p.schedule)},
                   {"virtual_stages", p.virtual_stages},
                   {"zero", p.zero},
                   {"recompute", to_string(p.recompute)},
                   {"sequence_parallel", p.sequence_parallel},
                   {"fidelity", r.fidelity},
                   {"iteration_time_s", r.iteration.value()},
                   {"analytical_iteration_time_s", r.analytical.value()},
                   {"tokens_per_s", r.tokens_per_s},
                   {"mfu", r.mfu},
                   {"memory_per_gpu_bytes", r.memory.value()},
                   {"fits_memory", r.fits},
                   {"breakdown", nlohmann::json::object()}};
  for (const BreakdownPart& part : breakdown_parts())
    j["breakdown"][std::string(part.key)] = (r.breakdown.*part.member).value();
  if (r.time_to_train_p90) j["time_to_train_p90_s"] = r.time_to_train_p90->value();
  if (r.time_to_train) {
    j["time_to_train_s"] = r.time_to_train->value();
    j["gpu_hours"] = r.time_to_train->value() / 3600.0 * double(r.strategy.gpus());
  }
  if (!r.pruned.empty()) j["pruned"] = r.pruned;
  if (r.scenario_plan) j["scenario_plan"] = true;
  if (!r.memory_per_stage.empty()) {
    j["memory_per_stage"] = nlohmann::json::array();
    for (const MemoryBreakdown& m : r.memory_per_stage)
      j["memory_per_stage"].push_back({{"weights", m.weights.value()},
                                       {"gradients", m.gradients.value()},
                                       {"optimizer_states", m.optimizer_states.value()},
                                       {"activations", m.activations.value()},
                                       {"workspace", m.workspace.value()},
                                       {"total", m.total().value()}});
  }
  return j;
}

} // namespace

std::string render_plan_text(const PlanResult& r, int top) {
  constexpr double GIB = 1 << 30;
  std::string out = fmt::format(
      "plan: {} on {} of {}\n  {} enumerated, {} within the rules, {} in memory; {} priced\n"
      "  memory limit {:.2f} GiB per GPU: {:.0f} GiB less a {:.3g}% margin (--memory-margin)\n"
      "  screen {:.2f} s ({:.0f} candidates/s), fast fidelity {} in {:.1f} s, full fidelity {} in {:.1f} "
      "s\n\n",
      r.model,
      r.min_gpus == r.max_gpus ? counted(r.min_gpus, "GPU")
                               : fmt::format("{} to {} GPUs", r.min_gpus, r.max_gpus),
      r.machine, counted(r.candidates, "strategy", "strategies"), r.screened,
      (r.fitting == 1 ? std::string("fits") : fmt::format("{} fit", r.fitting)) +
          (r.offload_variants > 0
               ? fmt::format(" ({} with the optimizer offloaded to the host)", r.offload_variants)
               : std::string()),
      counted(long(r.shapes), "operation shape"), r.memory_limit.usable().value() / GIB,
      r.memory_limit.gpu.value() / GIB, r.memory_limit.margin * 100, r.screen_seconds,
      r.screen_seconds > 0 ? double(r.candidates) / r.screen_seconds : 0.0, counted(r.fast_runs, "run"),
      r.fast_seconds, counted(r.full_runs, "run"), r.full_seconds);
  if (r.deadline_days) {
    if (r.deadline_answer) {
      const PlanRow& a = *r.deadline_answer;
      out += fmt::format("deadline {} for {:.3g} tokens: fewest GPUs {} ({}), {} to train, {:.0f} GPU-hours "
                         "({} fidelity)\n\n",
                         span(*r.deadline_days * 86400), r.tokens.value_or(0), a.strategy.gpus(),
                         describe(a.strategy), days(*a.time_to_train) + with_failures(a),
                         a.time_to_train->value() / 3600 * double(a.strategy.gpus()), a.fidelity);
    } else {
      const std::string counts =
          r.min_gpus == r.max_gpus
              ? fmt::format("{} does not meet it", counted(r.min_gpus, "GPU"))
              : fmt::format("no GPU count from {} to {} meets it", r.min_gpus, r.max_gpus);
      out += fmt::format("deadline {} for {:.3g} tokens: {}", span(*r.deadline_days * 86400),
                         r.tokens.value_or(0), counts);
      if (r.deadline_closest) {
        const PlanRow& c = *r.deadline_closest;
        out += fmt::format(
            "; the closest, {} ({}), trains in {}: {:.2f}x the deadline ({} fidelity)",
            counted(c.strategy.gpus(), "GPU"), describe(c.strategy),
            days(*c.time_to_train) + with_failures(c),
            c.time_to_train_p90.value_or(*c.time_to_train).value() / (*r.deadline_days * 86400), c.fidelity);
      }
      out += "\n\n";
    }
  }
  if (!r.best_per_gpus.empty()) {
    out += "best plan of each GPU count\n" + table_header();
    for (const PlanRow& row : r.best_per_gpus) {
      out += table_row(int(&row - r.best_per_gpus.data()) + 1, row);
      if (row.time_to_train) out.insert(out.size() - 1, "  " + days(*row.time_to_train));
    }
    out += "\n";
  }
  out += "ranked (simulated first: full, then fast fidelity)\n" + table_header();
  for (int i = 0; i < std::min<int>(top, int(r.ranked.size())); ++i)
    out += table_row(i + 1, r.ranked[size_t(i)]);
  if (r.ranked.empty()) out += "  no strategy fits\n";
  if (std::any_of(r.ranked.begin(), r.ranked.end(), [](const PlanRow& row) { return row.scenario_plan; }))
    out += "  * the scenario's own strategy\n";
  if (const std::string published = published_mfu_text(r); !published.empty()) out += "\n" + published;
  if (!r.pruned_by_rule.empty()) {
    out += "\npruned by the rules\n";
    for (const auto& [key, count] : r.pruned_by_rule)
      out += fmt::format("  {:>9} {:<30} e.g. {}\n", count, key, r.rule_example.at(key));
  }
  if (!r.pruned_memory.empty()) {
    out += "\npruned by memory (the fastest of them)\n";
    for (int i = 0; i < std::min<int>(top, int(r.pruned_memory.size())); ++i)
      out += fmt::format("  {}: {}\n", describe(r.pruned_memory[size_t(i)].strategy),
                         r.pruned_memory[size_t(i)].pruned);
  }
  return out;
}

std::string render_plan_json(const PlanResult& r, int top) {
  nlohmann::json j;
  j["scenario"] = r.scenario;
  j["model"] = r.model;
  j["machine"] = r.machine;
  j["gpus"] = {r.min_gpus, r.max_gpus};
  j["candidates"] = r.candidates;
  j["screened"] = r.screened;
  j["fitting"] = r.fitting;
  j["offload_variants"] = r.offload_variants;
  j["shapes"] = r.shapes;
  j["screen_seconds"] = r.screen_seconds;
  j["fast_runs"] = r.fast_runs;
  j["fast_seconds"] = r.fast_seconds;
  j["full_runs"] = r.full_runs;
  j["full_seconds"] = r.full_seconds;
  j["gpu_memory_bytes"] = r.memory_limit.gpu.value();
  j["memory_limit_bytes"] = r.memory_limit.usable().value();
  j["memory_margin"] = r.memory_limit.margin;
  if (r.tokens) j["tokens"] = *r.tokens;
  j["ranked"] = nlohmann::json::array();
  for (int i = 0; i < std::min<int>(top, int(r.ranked.size())); ++i)
    j["ranked"].push_back(row_json(r.ranked[size_t(i)]));
  j["best_per_gpus"] = nlohmann::json::array();
  for (const PlanRow& row : r.best_per_gpus) j["best_per_gpus"].push_back(row_json(row));
  j["pruned_by_rule"] = nlohmann::json::object();
  for (const auto& [key, count] : r.pruned_by_rule)
    j["pruned_by_rule"][key] = {{"candidates", count}, {"example", r.rule_example.at(key)}};
  j["pruned_by_memory"] = nlohmann::json::array();
  for (int i = 0; i < std::min<int>(top, int(r.pruned_memory.size())); ++i)
    j["pruned_by_memory"].push_back(row_json(r.pruned_memory[size_t(i)]));
  j["published_mfu"] = nullptr;
  if (const PlanRow* best = highest_mfu(r); best && r.published_mfu) {
    j["published_mfu"] =
        published_mfu_json(*r.published_mfu, mfu_against_published(*r.published_mfu, best->mfu,
                                                                   best->breakdown, best->iteration));
    j["published_mfu"]["plan"] = row_json(*best);
  }
  j["profile"] = {{"name", r.profile}, {"kind", to_string(r.profile_kind)}};
  if (r.deadline_days) {
    j["deadline_days"] = *r.deadline_days;
    j["deadline_answer"] = r.deadline_answer ? row_json(*r.deadline_answer) : nlohmann::json(nullptr);
    j["deadline_closest"] = r.deadline_closest ? row_json(*r.deadline_closest) : nlohmann::json(nullptr);
  }
  return j.dump(2) + "\n";
}

std::string render_plan_csv(const PlanResult& r) {
  std::string out =
      "status,gpus,tp,pp,dp,cp,ep,micro_batch,schedule,virtual_stages,zero,recompute,sequence_parallel,"
      "fidelity,iteration_time_s,tokens_per_s,mfu,memory_per_gpu_bytes,fits_memory,reason\n";
  auto line = [&](const char* status, const PlanRow& row) {
    const ParallelismSpec& p = row.strategy.parallelism;
    out += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.6g},{:.6g},{:.4f},{:.0f},{},\"{}\"\n",
                       status, row.strategy.gpus(), p.tp, p.pp, p.dp, p.cp, p.ep, row.strategy.micro_batch,
                       to_string(p.schedule), p.virtual_stages, p.zero, to_string(p.recompute),
                       p.sequence_parallel, row.fidelity, row.iteration.value(), row.tokens_per_s, row.mfu,
                       row.memory.value(), row.fits, row.pruned);
  };
  for (const PlanRow& row : r.ranked) line("ranked", row);
  for (const PlanRow& row : r.best_per_gpus) line("best-of-gpu-count", row);
  for (const PlanRow& row : r.pruned_memory) line("pruned", row);
  return out;
}

} // namespace odyssey
