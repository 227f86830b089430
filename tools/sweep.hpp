// `odyssey sweep`: a grid (or list) of points over any scenario keys, each point simulated and
// written as one row. Points run in parallel processes (SimGrid allows one engine per process),
// are sharded over MPI ranks or Slurm array tasks, and are appended atomically to the output so
// that a re-run of an interrupted sweep skips the finished ones.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace odyssey {

/// One point of a sweep: its number and the `--set` overrides that make it.
struct SweepPoint {
  std::size_t index = 0;
  std::vector<std::string> overrides; ///< KEY=VALUE, in the sweep file's key order
  std::string label() const;          ///< "key=value; key=value"
};

struct SweepSpec {
  std::string file;
  std::string scenario;          ///< the base scenario (resolved against the sweep file's folder)
  std::vector<std::string> keys; ///< the swept keys, in order
  std::vector<SweepPoint> points;
  std::string out;        ///< output without --out: the sweep's `out`, else <sweep file's stem>.csv
  bool out_named = false; ///< `out` came from the sweep file
};

/// Reads a sweep file: `scenario`, and `grid` (a mapping of key -> list or range, every
/// combination, the first key varying slowest) or `points` (a list of mappings), optional `out`
/// (relative to the sweep file's folder; without it, the sweep file's name with .csv, in the
/// working directory).
/// Ranges: {from: A, to: B, step: S} or {from: A, to: B, times: K}. Every key and value is checked
/// against the scenario schema before anything runs; errors point into the sweep file.
SweepSpec load_sweep(const std::string& path, const std::string& data_dir);

struct SweepOptions {
  std::string out;      ///< .csv, or .json / .jsonl (one JSON object per line)
  int jobs = 0;         ///< processes at once (0: every core)
  int shard = 0;        ///< this shard, 0-based
  int shards = 1;       ///< of this many
  bool mpi = false;     ///< ranks of MPI_COMM_WORLD take shards; rank 0 writes
  bool progress = true; ///< a progress bar on stderr when it is a terminal
};

struct SweepRun {
  std::size_t points = 0; ///< points this process ran
  bool writer = true;     ///< this process wrote the output (under MPI: rank 0 only)
};

/// Runs the points of `sweep` that belong to this shard and are not in `options.out` yet, then
/// leaves the output's rows in point order.
SweepRun run_sweep(const SweepSpec& sweep, const SweepOptions& options, const std::string& data_dir);

struct SweepMerge {
  std::size_t rows = 0;             ///< rows in the merged output
  std::size_t duplicates = 0;       ///< identical rows of one point met again (resumed shards)
  std::size_t damaged = 0;          ///< lines cut short by an interrupted run, left out
  std::vector<std::size_t> missing; ///< points of the sweep in no input
};

/// Merges the outputs of a sweep's shards (Slurm array tasks, each with its own --out) into `out`,
/// rows in point order; rows already in `out` stay. Every input must be in `out`'s format, every
/// row must be a point of `sweep` (number and overrides), and two rows of one point must agree.
/// Throws InputError at the offending file and line otherwise; writes nothing then.
SweepMerge merge_sweep(const SweepSpec& sweep, const std::vector<std::string>& inputs,
                       const std::string& out);

/// Whether this build has MPI support.
bool sweep_has_mpi();

} // namespace odyssey
