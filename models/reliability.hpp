// Failures over a whole training run: what interrupts a job (per-component failure rates scaled by
// the job's component counts, planned maintenance), what an interruption costs (detection,
// restart, checkpoint load, work lost since the last checkpoint, waiting for a server), what
// checkpoints cost, and a seeded Monte Carlo over the run that turns these into distributions of
// time-to-train and goodput. Pure C++: the iteration time comes from the engine once, and the run
// is simulated as events over weeks, not as iterations.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "models/units.hpp"

namespace odyssey {

/// Time to train `tokens` at `tokens_per_s` with nothing failing: the one definition the report,
/// the planner and the Monte Carlo use.
Seconds time_to_train(double tokens, double tokens_per_s);

/// What fails. Each kind scales with its own count in the job (see `JobComponents`).
enum class FailureCause { GPU, HBM, HOST, NIC, NETWORK, SOFTWARE };
inline constexpr std::size_t FAILURE_CAUSES = 6;
inline constexpr std::array<FailureCause, FAILURE_CAUSES> ALL_FAILURE_CAUSES{
    FailureCause::GPU, FailureCause::HBM,     FailureCause::HOST,
    FailureCause::NIC, FailureCause::NETWORK, FailureCause::SOFTWARE};
/// "gpu", "hbm", "host", "nic", "network", "software": the key of the cause in YAML and JSON.
const char* to_string(FailureCause cause);
/// Whether the failure takes a server out of the job until it is repaired or replaced by a spare
/// (GPU, HBM, host, NIC); a switch, cable or software failure only restarts the job.
bool needs_server(FailureCause cause);

/// Failure rates of one machine, as the mean time between failures of ONE unit of each kind
/// (zero: that kind never fails), and its planned interruptions and repairs.
struct ReliabilitySpec {
  Seconds gpu_mtbf;      ///< per GPU: the GPU itself (SRAM, system processor, SDC, thermal)
  Seconds hbm_mtbf;      ///< per GPU: its HBM
  Seconds host_mtbf;     ///< per server: CPU, memory, SSD, power, chassis, host maintenance
  Seconds nic_mtbf;      ///< per NIC
  Seconds network_mtbf;  ///< per NIC link: its cable and its share of the switches
  Seconds software_mtbf; ///< per GPU (one rank process each): software bugs, NCCL timeouts
  /// Mean time between planned interruptions of a job (maintenance); zero: none.
  Seconds planned_interval;
  Seconds repair; ///< a failed server's time to repair (or replacement) before it serves again
  [[nodiscard]] Seconds mtbf(FailureCause cause) const;
  /// Whether any kind fails or any maintenance is planned.
  [[nodiscard]] bool any() const;
};

/// The units of each kind a job runs on.
struct JobComponents {
  long gpus = 0;
  long servers = 0;
  long nics = 0; ///< also the NIC links (cables) of the job
};

/// Failures per second of `cause` on the job: its unit count over one unit's MTBF.
double failure_rate(const ReliabilitySpec& spec, const JobComponents& job, FailureCause cause);
/// Unplanned failures per second of the whole job (every cause).
double failure_rate(const ReliabilitySpec& spec, const JobComponents& job);

/// How a checkpoint is written: SYNC stalls training for the whole write; ASYNC copies the state
/// to host memory (training stalls for that copy) and writes it to storage while training goes
/// on, so it is durable only once the write completes and a failure before that falls back to the
/// checkpoint before.
enum class CheckpointMode { SYNC, ASYNC };
const char* to_string(CheckpointMode mode);

/// Training time a checkpoint stalls: the whole `write` (GPU -> host -> storage) when SYNC, the
/// GPU -> host `copy` when ASYNC. The one rule the Monte Carlo, Young/Daly and the report use; the
/// write and copy times come from the storage model (sim/storage.hpp, plan_checkpoint).
Seconds checkpoint_stall(CheckpointMode mode, Seconds write, Seconds copy);

/// Bytes of a checkpoint of `parameters` parameters: the weights in their dtype plus Adam's states
/// and the FP32 master copy (the gradients are not saved).
Bytes checkpoint_size(double parameters, double weight_bytes_per_parameter,
                      double optimizer_bytes_per_parameter);

/// Where an ASYNC checkpoint lands before it drains to the storage system: the servers' HOST_MEMORY
/// (held until written), or their local NVME (a second level that survives a process restart, as
/// Nebula and ByteCheckpoint stage to local disks).
enum class CheckpointLevel { HOST_MEMORY, NVME };
const char* to_string(CheckpointLevel level);

/// The scenario's `checkpoint:` block.
struct CheckpointSpec {
  Seconds interval = Seconds(1800); ///< training time between checkpoints (ASSUMPTION default: 30 min)
  CheckpointMode mode = CheckpointMode::SYNC;
  CheckpointLevel first_level = CheckpointLevel::HOST_MEMORY; ///< ASYNC only
  /// ASYNC only: a cap on each server's drain to storage; zero ("none"): as fast as its path allows.
  BytesPerSecond drain_bandwidth;
};

/// The scenario's `recovery:` block.
struct RecoverySpec {
  /// From a failure to the job stopped: heartbeats and collective timeouts (ASSUMPTION default: 2 min).
  Seconds detection = Seconds(120);
  /// Scheduler, process start and NCCL communicator set-up at scale (ASSUMPTION default: 5 min).
  Seconds restart = Seconds(300);
  long spares = -1; ///< hot spare servers; -1: every server of the machine the job does not use
};

/// What recovers a job after an interruption, and how often it checkpoints.
struct RecoveryPolicy {
  Seconds checkpoint_interval; ///< training time between two checkpoints
  CheckpointMode mode = CheckpointMode::SYNC;
  Seconds checkpoint_write; ///< GPU -> host -> storage, until the checkpoint is durable
  Seconds checkpoint_load;  ///< storage -> host -> GPU after a restart
  Seconds checkpoint_copy;  ///< GPU -> host part of the write: what an async checkpoint stalls
  Seconds detection;        ///< from the failure to the job being stopped
  Seconds restart;          ///< scheduler, process start, NCCL communicators at scale
  long spares = 0;          ///< hot spare servers; without one a failed server is waited for
  [[nodiscard]] Seconds stall() const { return checkpoint_stall(mode, checkpoint_write, checkpoint_copy); }
};

/// The run the Monte Carlo simulates: `work` of failure-free training, stopped early at `horizon`
/// of wall time when that is set (a snapshot of a run, as published failure statistics are).
struct RunLength {
  Seconds work;
  Seconds horizon; ///< zero: run until the work is done
};

/// Bins of wall time a run spends, besides useful training.
struct TimeLost {
  std::array<Seconds, FAILURE_CAUSES> by_cause{}; ///< lost work, detection, restart, load, waiting
  Seconds planned;                                ///< planned interruptions: final write, restart, load
  Seconds checkpoints;                            ///< stalls of checkpoints that were kept
};

/// One trial of the run.
struct Trial {
  Seconds wall;           ///< wall time of the run (the horizon when it stopped there)
  Seconds useful;         ///< training time that counted
  long interruptions = 0; ///< unplanned
  long planned = 0;
  TimeLost lost;
};

/// Distributions over the trials of one policy.
struct MonteCarloResult {
  int trials = 0;
  Seconds wall_p50;
  Seconds wall_p90;
  Seconds wall_mean;
  double goodput_mean = 0.0; ///< mean over trials of useful / wall
  double goodput_p10 = 0.0;  ///< the goodput 90% of trials beat
  double interruptions_mean = 0.0;
  double interruptions_p10 = 0.0;
  double interruptions_p90 = 0.0;
  double planned_mean = 0.0;
  TimeLost lost_mean;
};

/// The machine's failures as the job sees them.
struct FailureModel {
  std::array<double, FAILURE_CAUSES> rate{}; ///< per second, by cause
  double planned_rate = 0.0;                 ///< planned interruptions per second
  Seconds repair;
  [[nodiscard]] double total_rate() const;
};
FailureModel failure_model(const ReliabilitySpec& spec, const JobComponents& job);

/// One trial, drawn from its own generator seeded by (seed, trial index): a trial's draws do not
/// depend on how many trials run or on which policy, so policies compare on the same failures.
Trial simulate_trial(const FailureModel& failures, const RecoveryPolicy& policy, const RunLength& run,
                     std::uint64_t seed, int trial);

/// `trials` trials of the run, summarised. Deterministic for a seed.
MonteCarloResult simulate_run(const FailureModel& failures, const RecoveryPolicy& policy,
                              const RunLength& run, std::uint64_t seed, int trials);

/// Young (1974) / Daly (2006) first-order optimum checkpoint interval, sqrt(2 x cost x MTBF), for a
/// checkpoint that costs `cost` of stalled training and failures `mtbf` apart; zero when either is.
Seconds young_daly_interval(Seconds cost, Seconds mtbf);

/// The checkpoint interval that minimises the mean wall time over a geometric grid (`trials`
/// each, the same failures for every interval), from the write time (or a minute) to two days:
/// two intervals per doubling, then a quarter-doubling either side of the best.
struct IntervalSearch {
  Seconds best;
  MonteCarloResult at_best;
};
IntervalSearch best_checkpoint_interval(const FailureModel& failures, const RecoveryPolicy& policy,
                                        const RunLength& run, std::uint64_t seed, int trials);

/// What a report says about failures over the run: the job's failures, the recovery policy, the
/// run at the scenario's checkpoint interval, and that interval against the simulated optimum and
/// Young/Daly's.
struct FailureStudy {
  JobComponents job;
  FailureModel failures;
  RecoveryPolicy policy;
  Bytes checkpoint_size;
  Seconds failure_free; ///< time to train with nothing failing (and no checkpoint stalls)
  std::uint64_t seed = 0;
  MonteCarloResult run; ///< the scenario's `trials` at its interval
  /// The scenario's interval with the search's trials: what the optimum is compared with.
  MonteCarloResult run_as_searched;
  IntervalSearch best;
  Seconds young_daly; ///< zero when a checkpoint stalls nothing
  [[nodiscard]] Seconds job_mtbf() const;
};

/// Trials per interval the optimum search runs (at most the scenario's own).
inline constexpr int SEARCH_TRIALS = 200;

/// The run of `failure_free` training time on `job` under `spec`'s failures and `policy`,
/// `trials` times from `seed`, and the search for its best checkpoint interval.
FailureStudy study_failures(const ReliabilitySpec& spec, const JobComponents& job,
                            const RecoveryPolicy& policy, Bytes checkpoint_size, Seconds failure_free,
                            std::uint64_t seed, int trials);

/// Small, fast, portable generator (xoshiro256**, seeded through splitmix64) and our own
/// distributions, so results are the same to the bit whatever the standard library.
class Rng {
public:
  explicit Rng(std::uint64_t seed);
  std::uint64_t next();
  /// Uniform in [0, 1), 53 bits.
  double uniform();
  /// Exponential with `rate` per unit (inverse CDF); infinity for a zero rate.
  double exponential(double rate);

private:
  std::array<std::uint64_t, 4> s_{};
};

} // namespace odyssey
