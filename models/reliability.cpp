#include "models/reliability.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace odyssey {
namespace {

constexpr double INF = std::numeric_limits<double>::infinity();

std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

std::uint64_t rotl(std::uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

/// `q` quantile of sorted values, interpolated between ranks.
double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0.0;
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const std::size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - static_cast<double>(lo));
}

/// Without a horizon a trial stops here anyway: failures so frequent that checkpoints never
/// commit would otherwise never end it. Its wall time then reads as this cap.
constexpr double RUNAWAY_FACTOR = 100.0;

} // namespace

Seconds time_to_train(double tokens, double tokens_per_s) {
  return Seconds(tokens / tokens_per_s);
}

const char* to_string(FailureCause cause) {
  switch (cause) {
  case FailureCause::GPU: return "gpu";
  case FailureCause::HBM: return "hbm";
  case FailureCause::HOST: return "host";
  case FailureCause::NIC: return "nic";
  case FailureCause::NETWORK: return "network";
  case FailureCause::SOFTWARE: return "software";
  }
  return "?";
}

bool needs_server(FailureCause cause) {
  return cause == FailureCause::GPU || cause == FailureCause::HBM || cause == FailureCause::HOST ||
         cause == FailureCause::NIC;
}

const char* to_string(CheckpointMode mode) {
  return mode == CheckpointMode::SYNC ? "sync" : "async";
}

const char* to_string(CheckpointLevel level) {
  return level == CheckpointLevel::HOST_MEMORY ? "host-memory" : "nvme";
}

Seconds ReliabilitySpec::mtbf(FailureCause cause) const {
  switch (cause) {
  case FailureCause::GPU: return gpu_mtbf;
  case FailureCause::HBM: return hbm_mtbf;
  case FailureCause::HOST: return host_mtbf;
  case FailureCause::NIC: return nic_mtbf;
  case FailureCause::NETWORK: return network_mtbf;
  case FailureCause::SOFTWARE: return software_mtbf;
  }
  return Seconds(0);
}

bool ReliabilitySpec::any() const {
  return std::any_of(ALL_FAILURE_CAUSES.begin(), ALL_FAILURE_CAUSES.end(),
                     [&](FailureCause c) { return mtbf(c).value() > 0; }) ||
         planned_interval.value() > 0;
}

double failure_rate(const ReliabilitySpec& spec, const JobComponents& job, FailureCause cause) {
  const double mtbf = spec.mtbf(cause).value();
  if (!(mtbf > 0)) return 0.0;
  long units = 0;
  switch (cause) {
  case FailureCause::GPU:
  case FailureCause::HBM:
  case FailureCause::SOFTWARE: units = job.gpus; break;
  case FailureCause::HOST: units = job.servers; break;
  case FailureCause::NIC:
  case FailureCause::NETWORK: units = job.nics; break;
  }
  return static_cast<double>(units) / mtbf;
}

double failure_rate(const ReliabilitySpec& spec, const JobComponents& job) {
  double total = 0.0;
  for (const FailureCause c : ALL_FAILURE_CAUSES) total += failure_rate(spec, job, c);
  return total;
}

Seconds checkpoint_stall(CheckpointMode mode, Seconds write, Seconds copy) {
  return mode == CheckpointMode::SYNC ? write : copy;
}

Bytes checkpoint_size(double parameters, double weight_bytes_per_parameter,
                      double optimizer_bytes_per_parameter) {
  return Bytes(parameters * (weight_bytes_per_parameter + optimizer_bytes_per_parameter));
}

double FailureModel::total_rate() const {
  double total = 0.0;
  for (const double r : rate) total += r;
  return total;
}

FailureModel failure_model(const ReliabilitySpec& spec, const JobComponents& job) {
  FailureModel m;
  for (std::size_t i = 0; i < FAILURE_CAUSES; ++i) m.rate[i] = failure_rate(spec, job, ALL_FAILURE_CAUSES[i]);
  m.planned_rate = spec.planned_interval.value() > 0 ? 1.0 / spec.planned_interval.value() : 0.0;
  m.repair = spec.repair;
  return m;
}

Rng::Rng(std::uint64_t seed) {
  std::uint64_t x = seed;
  for (auto& word : s_) word = splitmix64(x);
}

std::uint64_t Rng::next() {
  const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() {
  return static_cast<double>(next() >> 11) * 0x1.0p-53;
}

double Rng::exponential(double rate) {
  if (!(rate > 0)) return INF;
  // 1 - u is in (0, 1]: the logarithm is finite.
  return -std::log1p(-uniform()) / rate;
}

Trial simulate_trial(const FailureModel& failures, const RecoveryPolicy& policy, const RunLength& run,
                     std::uint64_t seed, int trial) {
  std::uint64_t mix = seed ^ (0xD1B54A32D192ED03ULL * (static_cast<std::uint64_t>(trial) + 1));
  Rng rng(splitmix64(mix));
  const double work = run.work.value();
  const double horizon = run.horizon.value() > 0 ? run.horizon.value() : RUNAWAY_FACTOR * work + 30 * 86400.0;
  const double tau = policy.checkpoint_interval.value();
  const double write = policy.checkpoint_write.value();
  const bool sync = policy.mode == CheckpointMode::SYNC;
  const double stall = policy.stall().value();
  const double durable_after = sync ? 0.0 : write; // after the checkpoint's place in training
  const double cycle = tau + stall;
  const double unplanned = failures.total_rate();
  const double all_events = unplanned + failures.planned_rate;
  const double recovery = policy.detection.value() + policy.restart.value() + policy.checkpoint_load.value();

  Trial out;
  double t = 0.0;
  double committed = 0.0;
  long free_spares = policy.spares;
  std::vector<double> in_repair; // when each failed server serves again
  auto add_lost = [&](Seconds& bin, double from, double span) {
    const double kept = std::min(span, horizon - from);
    bin += Seconds(std::max(0.0, kept));
    return from + span;
  };

  while (committed < work && t < horizon) {
    const double remaining = work - committed;
    const double boundaries = std::ceil(remaining / tau) - 1; // checkpoints before the end
    const double end = t + remaining + boundaries * stall;
    const double event = t + rng.exponential(all_events);
    if (end <= event && end <= horizon) {
      out.useful += Seconds(remaining);
      out.lost.checkpoints += Seconds(boundaries * stall);
      committed = work;
      t = end;
      break;
    }
    if (horizon <= event) { // the snapshot ends while training
      const double span = horizon - t;
      const double k = std::floor(span / cycle);
      const double done = k * tau + std::min(span - k * cycle, tau);
      out.useful += Seconds(done);
      out.lost.checkpoints += Seconds(span - done);
      t = horizon;
      break;
    }
    const double span = event - t;
    const double passed = std::min(std::floor(span / cycle), boundaries);
    const double pick = rng.uniform() * all_events;
    if (pick >= unplanned) { // planned: the job writes a checkpoint, stops and restarts
      const double done = std::min(passed * tau + std::min(span - passed * cycle, tau), remaining);
      out.useful += Seconds(done);
      out.lost.checkpoints += Seconds(span - done);
      committed += done;
      ++out.planned;
      t = add_lost(out.lost.planned, event, write + recovery - policy.detection.value());
      continue;
    }
    const double durable = durable_after > 0
                               ? std::max(0.0, std::min(passed, std::floor((span - durable_after) / cycle)))
                               : passed;
    out.useful += Seconds(durable * tau);
    out.lost.checkpoints += Seconds(durable * stall);
    committed += durable * tau;
    ++out.interruptions;
    std::size_t cause = 0;
    for (double acc = failures.rate[0]; cause + 1 < FAILURE_CAUSES && pick >= acc;
         acc += failures.rate[cause])
      ++cause;
    Seconds& bin = out.lost.by_cause[cause];
    bin += Seconds(span - durable * cycle);
    double wait = 0.0;
    if (needs_server(ALL_FAILURE_CAUSES[cause])) {
      const double found = event + policy.detection.value();
      in_repair.push_back(found + failures.repair.value());
      for (auto it = in_repair.begin(); it != in_repair.end();) {
        if (*it <= found) {
          ++free_spares;
          it = in_repair.erase(it);
        } else {
          ++it;
        }
      }
      if (free_spares > 0) {
        --free_spares;
      } else {
        const auto first = std::min_element(in_repair.begin(), in_repair.end());
        wait = *first - found;
        in_repair.erase(first);
      }
    }
    t = add_lost(bin, event, recovery + wait);
  }
  out.wall = Seconds(std::min(t, horizon));
  return out;
}

MonteCarloResult simulate_run(const FailureModel& failures, const RecoveryPolicy& policy,
                              const RunLength& run, std::uint64_t seed, int trials) {
  MonteCarloResult r;
  r.trials = trials;
  if (trials <= 0) return r;
  std::vector<double> walls;
  std::vector<double> goodputs;
  std::vector<double> interruptions;
  walls.reserve(static_cast<std::size_t>(trials));
  goodputs.reserve(static_cast<std::size_t>(trials));
  interruptions.reserve(static_cast<std::size_t>(trials));
  double wall_sum = 0.0;
  double goodput_sum = 0.0;
  double interruption_sum = 0.0;
  double planned_sum = 0.0;
  for (int i = 0; i < trials; ++i) {
    const Trial t = simulate_trial(failures, policy, run, seed, i);
    walls.push_back(t.wall.value());
    const double g = t.wall.value() > 0 ? t.useful / t.wall : 1.0;
    goodputs.push_back(g);
    interruptions.push_back(static_cast<double>(t.interruptions));
    wall_sum += t.wall.value();
    goodput_sum += g;
    interruption_sum += static_cast<double>(t.interruptions);
    planned_sum += static_cast<double>(t.planned);
    for (std::size_t c = 0; c < FAILURE_CAUSES; ++c) r.lost_mean.by_cause[c] += t.lost.by_cause[c];
    r.lost_mean.planned += t.lost.planned;
    r.lost_mean.checkpoints += t.lost.checkpoints;
  }
  const double n = trials;
  std::sort(walls.begin(), walls.end());
  std::sort(goodputs.begin(), goodputs.end());
  std::sort(interruptions.begin(), interruptions.end());
  r.wall_p50 = Seconds(quantile(walls, 0.5));
  r.wall_p90 = Seconds(quantile(walls, 0.9));
  r.wall_mean = Seconds(wall_sum / n);
  r.goodput_mean = goodput_sum / n;
  r.goodput_p10 = quantile(goodputs, 0.1);
  r.interruptions_mean = interruption_sum / n;
  r.interruptions_p10 = quantile(interruptions, 0.1);
  r.interruptions_p90 = quantile(interruptions, 0.9);
  r.planned_mean = planned_sum / n;
  for (auto& s : r.lost_mean.by_cause) s = s / n;
  r.lost_mean.planned = r.lost_mean.planned / n;
  r.lost_mean.checkpoints = r.lost_mean.checkpoints / n;
  return r;
}

Seconds young_daly_interval(Seconds cost, Seconds mtbf) {
  if (!(cost.value() > 0) || !(mtbf.value() > 0) || !std::isfinite(mtbf.value())) return Seconds(0);
  return Seconds(std::sqrt(2.0 * cost.value() * mtbf.value()));
}

IntervalSearch best_checkpoint_interval(const FailureModel& failures, const RecoveryPolicy& policy,
                                        const RunLength& run, std::uint64_t seed, int trials) {
  // A coarse pass, two intervals per doubling, then the quarter-doublings either side of its best.
  constexpr double COARSE = 1.4142135623730951; // 2^(1/2)
  constexpr double FINE = 1.189207115002721;    // 2^(1/4)
  constexpr double LONGEST = 2 * 86400.0;
  IntervalSearch best;
  bool first = true;
  RecoveryPolicy p = policy;
  auto consider = [&](double tau) {
    p.checkpoint_interval = Seconds(tau);
    const MonteCarloResult r = simulate_run(failures, p, run, seed, trials);
    // With a horizon every trial lasts as long: goodput decides; without one, the wall time.
    const bool better = run.horizon.value() > 0 ? r.goodput_mean > best.at_best.goodput_mean
                                                : r.wall_mean < best.at_best.wall_mean;
    if (first || better) {
      best = {.best = Seconds(tau), .at_best = r};
      first = false;
    }
  };
  const double shortest = std::max(60.0, policy.checkpoint_write.value());
  for (double tau = shortest; tau <= LONGEST * 1.0001; tau *= COARSE) consider(tau);
  const double coarse_best = best.best.value();
  consider(coarse_best * FINE);
  if (coarse_best / FINE >= shortest) consider(coarse_best / FINE);
  return best;
}

Seconds FailureStudy::job_mtbf() const {
  const double rate = failures.total_rate();
  return Seconds(rate > 0 ? 1.0 / rate : 0.0);
}

FailureStudy study_failures(const ReliabilitySpec& spec, const JobComponents& job,
                            const RecoveryPolicy& policy, Bytes checkpoint_size, Seconds failure_free,
                            std::uint64_t seed, int trials) {
  FailureStudy s{.job = job,
                 .failures = failure_model(spec, job),
                 .policy = policy,
                 .checkpoint_size = checkpoint_size,
                 .failure_free = failure_free,
                 .seed = seed};
  const RunLength run{.work = failure_free};
  s.run = simulate_run(s.failures, policy, run, seed, trials);
  const int search = std::min(trials, SEARCH_TRIALS);
  s.run_as_searched = simulate_run(s.failures, policy, run, seed, search);
  s.best = best_checkpoint_interval(s.failures, policy, run, seed, search);
  s.young_daly = young_daly_interval(policy.stall(), s.job_mtbf());
  return s;
}

} // namespace odyssey
