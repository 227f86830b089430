// The failure and recovery model and its Monte Carlo over a whole run: the failure-free limit,
// Young/Daly where it holds, rates that scale with the job, seeds that reproduce, and the time
// of a trial accounted for to the second.
#include <catch2/catch.hpp>

#include <cmath>

#include "models/reliability.hpp"
#include "tools/run.hpp"
#include "tools/scenario.hpp"

using namespace odyssey;

namespace {

constexpr double DAY = 86400.0;

/// Llama 3's H100 rates (reference/reliability.yaml): counts over 16,384 GPUs (2,048 servers,
/// 16,384 NICs) and 54 days.
ReliabilitySpec llama3_rates() {
  const double gpu_days = 16384 * 54.0 * DAY;
  return ReliabilitySpec{.gpu_mtbf = Seconds(gpu_days / 196),
                         .hbm_mtbf = Seconds(gpu_days / 72),
                         .host_mtbf = Seconds(2048 * 54.0 * DAY / 46),
                         .nic_mtbf = Seconds(gpu_days / 7),
                         .network_mtbf = Seconds(gpu_days / 35),
                         .software_mtbf = Seconds(gpu_days / 63),
                         .planned_interval = Seconds(54.0 * DAY / 47),
                         .repair = Seconds(DAY)};
}

constexpr JobComponents LLAMA3_JOB{.gpus = 16384, .servers = 2048, .nics = 16384};

RecoveryPolicy quick_recovery(CheckpointMode mode) {
  return RecoveryPolicy{.checkpoint_interval = Seconds(600),
                        .mode = mode,
                        .checkpoint_write = Seconds(3),
                        .checkpoint_load = Seconds(3),
                        .detection = Seconds(120),
                        .restart = Seconds(300),
                        .spares = 1000};
}

} // namespace

TEST_CASE("models::Reliability: with no failures the run takes its failure-free time", "[reliability]") {
  const FailureModel none = failure_model(ReliabilitySpec{}, LLAMA3_JOB);
  CHECK(none.total_rate() == 0.0);
  const RunLength run{.work = Seconds(13.4 * DAY)};
  const MonteCarloResult r = simulate_run(none, quick_recovery(CheckpointMode::ASYNC), run, 1, 50);
  CHECK(r.wall_p50.value() == run.work.value());
  CHECK(r.wall_p90.value() == run.work.value());
  CHECK(r.goodput_mean == 1.0);
  CHECK(r.interruptions_mean == 0.0);
  // A synchronous checkpoint still stalls: every full interval before the end, one write each.
  const MonteCarloResult s = simulate_run(none, quick_recovery(CheckpointMode::SYNC), run, 1, 5);
  const double checkpoints = std::ceil(run.work.value() / 600) - 1;
  CHECK(s.wall_p50.value() == Approx(run.work.value() + 3 * checkpoints).epsilon(1e-12));
  CHECK(time_to_train(300e9, 1e6).value() == Approx(3e5));
}

TEST_CASE("models::Reliability: doubling the job doubles its failure rate", "[reliability]") {
  const ReliabilitySpec spec = llama3_rates();
  const JobComponents twice{
      .gpus = 2 * LLAMA3_JOB.gpus, .servers = 2 * LLAMA3_JOB.servers, .nics = 2 * LLAMA3_JOB.nics};
  CHECK(failure_rate(spec, twice) == Approx(2 * failure_rate(spec, LLAMA3_JOB)).epsilon(1e-12));
  for (const FailureCause c : ALL_FAILURE_CAUSES)
    CHECK(failure_rate(spec, twice, c) == Approx(2 * failure_rate(spec, LLAMA3_JOB, c)).epsilon(1e-12));
  // The rates come back to the published counts: 419 unexpected interruptions in 54 days.
  CHECK(failure_rate(spec, LLAMA3_JOB) * 54 * DAY == Approx(419).epsilon(1e-9));
}

TEST_CASE("models::Reliability: a seed reproduces its trials, another seed does not", "[reliability]") {
  const FailureModel m = failure_model(llama3_rates(), LLAMA3_JOB);
  const RunLength run{.work = Seconds(30 * DAY)};
  const auto policy = quick_recovery(CheckpointMode::SYNC);
  const MonteCarloResult a = simulate_run(m, policy, run, 7, 200);
  const MonteCarloResult b = simulate_run(m, policy, run, 7, 200);
  const MonteCarloResult c = simulate_run(m, policy, run, 8, 200);
  CHECK(a.wall_p50.value() == b.wall_p50.value());
  CHECK(a.wall_p90.value() == b.wall_p90.value());
  CHECK(a.goodput_mean == b.goodput_mean);
  CHECK(a.interruptions_mean == b.interruptions_mean);
  CHECK(a.wall_mean.value() != c.wall_mean.value());
  // A trial does not depend on how many run beside it.
  const Trial t = simulate_trial(m, policy, run, 7, 3);
  const Trial u = simulate_trial(m, policy, run, 7, 3);
  CHECK(t.wall.value() == u.wall.value());
}

TEST_CASE("models::Reliability: a trial's wall time is useful time plus what was lost", "[reliability]") {
  const FailureModel m = failure_model(llama3_rates(), LLAMA3_JOB);
  for (const CheckpointMode mode : {CheckpointMode::SYNC, CheckpointMode::ASYNC}) {
    for (const RunLength run : {RunLength{.work = Seconds(20 * DAY)},
                                RunLength{.work = Seconds(1e9), .horizon = Seconds(54 * DAY)}}) {
      for (int i = 0; i < 20; ++i) {
        RecoveryPolicy p = quick_recovery(mode);
        p.spares = i % 2; // with few spares, some failures wait for a repair
        const Trial t = simulate_trial(m, p, run, 3, i);
        double sum = t.useful.value() + t.lost.planned.value() + t.lost.checkpoints.value();
        for (const Seconds s : t.lost.by_cause) sum += s.value();
        CHECK(sum == Approx(t.wall.value()).epsilon(1e-9));
        if (run.horizon.value() == 0) {
          CHECK(t.useful.value() == Approx(run.work.value()).epsilon(1e-12));
        }
      }
    }
  }
}

TEST_CASE("models::Reliability: the simulated optimum interval meets Young/Daly where it holds",
          "[reliability]") {
  // Young/Daly's assumptions: a checkpoint cost far below the MTBF, a long run, no restart cost
  // beyond the lost work. MTBF 4 h, a 20 s synchronous checkpoint: sqrt(2 x 20 x 14400) = 759 s.
  FailureModel m;
  m.rate[0] = 1.0 / (4 * 3600.0);
  RecoveryPolicy p{.checkpoint_interval = Seconds(3600),
                   .mode = CheckpointMode::SYNC,
                   .checkpoint_write = Seconds(20),
                   .spares = 1};
  const RunLength run{.work = Seconds(60 * DAY)};
  const Seconds yd = young_daly_interval(Seconds(20), Seconds(4 * 3600.0));
  CHECK(yd.value() == Approx(758.9).epsilon(1e-3));
  const IntervalSearch best = best_checkpoint_interval(m, p, run, 11, 400);
  CHECK(best.best.value() > yd.value() / 1.5);
  CHECK(best.best.value() < yd.value() * 1.5);
  // At the optimum the overhead is about sqrt(2 C / M) (first order): 5.3%.
  CHECK(1 / best.at_best.goodput_mean - 1 == Approx(std::sqrt(2 * 20 / (4 * 3600.0))).epsilon(0.15));
}

TEST_CASE("models::Reliability: Llama 3 405B's 54-day snapshot", "[reliability]") {
  // 16,384 GPUs over 54 days of wall time: the rates derived from the published counts give the
  // published 419 unexpected interruptions on average (a Poisson spread of about +-26), and with a
  // 10-minute checkpoint interval, 2 min detection and 5 min restart (assumptions) about 90% of
  // the time trains.
  const FailureModel m = failure_model(llama3_rates(), LLAMA3_JOB);
  const RunLength snapshot{.work = Seconds(1e12), .horizon = Seconds(54 * DAY)};
  const MonteCarloResult r = simulate_run(m, quick_recovery(CheckpointMode::ASYNC), snapshot, 1, 500);
  CHECK(r.interruptions_mean > 380);
  CHECK(r.interruptions_mean < 420);
  CHECK(r.goodput_mean > 0.9);
}

TEST_CASE("models::Rng: our own generator and exponential draw are portable", "[reliability]") {
  Rng a(42);
  Rng b(42);
  for (int i = 0; i < 10; ++i) CHECK(a.next() == b.next());
  Rng r(1);
  double sum = 0;
  constexpr int N = 200000;
  for (int i = 0; i < N; ++i) sum += r.exponential(2.0);
  CHECK(sum / N == Approx(0.5).epsilon(0.01));
  CHECK(std::isinf(r.exponential(0.0)));
}

TEST_CASE("tools::Run: a scenario's recovery policy and its run with failures", "[reliability]") {
  const std::string data = ODYSSEY_DATA_DIR;
  const Scenario s = load_scenario(data + "/scenarios/llama3-405b-h100-roce.yaml", {.data_dir = data});
  const long gpus = s.parallelism.gpus();
  const RecoveryPolicy p = scenario_recovery_policy(s, gpus);
  // 16,384 GPUs on 2,048 of the machine's 3,072 servers: 1,024 idle servers are the spares.
  CHECK(p.spares == 1024);
  // Weights in bf16 and Adam's fp32 states and master copy: 14 bytes a parameter, at 2 TB/s.
  CHECK(p.checkpoint_write.value() == Approx(14 * 405e9 / 2e12).epsilon(0.02));
  CHECK(p.checkpoint_write.value() == p.checkpoint_load.value());
  const auto study = scenario_failures(s, gpus, Seconds(70 * DAY));
  REQUIRE(study);
  CHECK(study->run.trials == s.simulation.trials);
  CHECK(study->run.wall_p90 >= study->run.wall_p50);
  CHECK(study->run.wall_p50.value() > 70 * DAY);
  // The planner's P90 is the same run's.
  CHECK(scenario_time_to_train_p90(s, gpus, Seconds(70 * DAY)).value() == study->run.wall_p90.value());
  // A machine without failure rates: no study, and the P90 is the failure-free time.
  const Scenario quiet = load_scenario(
      data + "/scenarios/llama3-405b-h100-roce.yaml",
      {.data_dir = data,
       .overrides = {"machine.reliability.gpu_mtbf=none", "machine.reliability.hbm_mtbf=none",
                     "machine.reliability.host_mtbf=none", "machine.reliability.nic_mtbf=none",
                     "machine.reliability.network_mtbf=none", "machine.reliability.software_mtbf=none",
                     "machine.reliability.planned_interval=none"}});
  CHECK_FALSE(scenario_failures(quiet, gpus, Seconds(70 * DAY)));
  CHECK(scenario_time_to_train_p90(quiet, gpus, Seconds(70 * DAY)).value() == 70 * DAY);
}
