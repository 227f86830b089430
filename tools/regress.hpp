// `odyssey regress`: predicted metrics of scenarios held against a committed baseline, for CI.
// Each scenario runs as its own `odyssey run --json` process (several at once); the baseline is
// YAML read by the strict reader, so a bad baseline is an InputError with its position.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "models/input/diagnostics.hpp"

namespace odyssey {

/// The version of the baseline format this build reads and writes.
inline constexpr int REGRESS_SCHEMA = 1;

/// Which way a metric gets worse.
enum class Worse { HIGHER, LOWER };

struct RegressMetric {
  std::string_view key; ///< key in `odyssey run --json` and in the baseline
  Worse worse;
  double default_tolerance; ///< relative change allowed in the worse direction
};

/// The metrics compared, in table order.
const std::vector<RegressMetric>& regress_metrics();

/// Predicted metrics of one scenario (values in regress_metrics() order).
struct ScenarioMetrics {
  std::string file; ///< scenario path as given (baseline: relative to the working directory)
  std::vector<double> values;
  std::optional<bool> fits_memory; ///< `fits_memory` of the report; none in a baseline without it
  SourceLocation where;            ///< the baseline entry, for messages
};

struct Baseline {
  std::vector<double> tolerances;         ///< in regress_metrics() order
  std::vector<ScenarioMetrics> scenarios; ///< sorted by file
};

/// Reads a baseline. Throws InputError for another schema version, a scenario file that no longer
/// exists, unknown or missing keys; `must_exist` false returns the default (empty) baseline when
/// the file is absent.
Baseline load_baseline(const std::string& path, bool must_exist);
/// The baseline as YAML, numbers with 17 significant digits (read back exactly).
std::string render_baseline(const Baseline& baseline);

enum class Verdict { SAME, WITHIN, IMPROVED, REGRESSED, NEW };

struct MetricChange {
  std::string file;
  std::string_view metric;
  std::optional<double> old_value; ///< none for a scenario without a baseline
  double new_value = 0.0;
  double delta = 0.0; ///< relative, (new - old) / old
  double tolerance = 0.0;
  Verdict verdict = Verdict::SAME;
};

/// The key of the row that holds a scenario to fitting in GPU memory: a scenario that fit in the
/// baseline and no longer does is a regression, whatever the tolerances.
inline constexpr std::string_view FITS_MEMORY = "fits_memory";

/// One row per scenario and metric, then one for `fits_memory`, in `current` order.
std::vector<MetricChange> compare(const Baseline& baseline, const std::vector<ScenarioMetrics>& current);
/// The markdown table of old / new / delta with a closing summary line.
std::string render_changes(const std::vector<MetricChange>& changes);

struct RegressOptions {
  std::vector<std::string> scenarios; ///< empty: every *.yaml of scenario_dir
  std::string scenario_dir = "scenarios";
  std::string baseline = "tests/regress/baseline.yaml";
  bool update = false;
  int jobs = 0;        ///< simulations at once; 0: one per CPU core
  std::string odyssey; ///< the odyssey binary that runs each scenario
};

/// Runs the scenarios, prints the table, and with `update` rewrites the baseline. Returns 0 when
/// nothing regressed (or after an update), 1 when a metric regressed beyond its tolerance, a
/// scenario that fit in GPU memory no longer does, or a scenario has no baseline. Throws
/// InputError for bad input, a baseline `update` could not write included, before any
/// simulation runs (nothing is written then).
int regress(const RegressOptions& options);

} // namespace odyssey
