#include "tools/regress.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "models/input/files.hpp"
#include "models/input/yaml_reader.hpp"
#include "models/wording.hpp"
#include "sim/isolation.hpp"
#include "sim/report.hpp"

// Last: <signal.h> (through <sys/wait.h>) defines `si_value` as a macro, a parameter name above.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace odyssey {

const std::vector<RegressMetric>& regress_metrics() {
  // Time and throughput move together; memory comes from the closed-form memory model, so any
  // change there is a model change.
  static const std::vector<RegressMetric> METRICS = [] {
    std::vector<RegressMetric> metrics;
    for (const auto& [key, tolerance] :
         {std::pair{"iteration_time_s", 0.005}, std::pair{"tokens_per_s", 0.005}, std::pair{"mfu", 0.005},
          std::pair{"memory_per_gpu_bytes", 0.001}}) {
      const ReportMetric& m = report_metric(key);
      metrics.push_back({.key = m.key,
                         .worse = m.better == Better::HIGHER ? Worse::LOWER : Worse::HIGHER,
                         .default_tolerance = tolerance});
    }
    return metrics;
  }();
  return METRICS;
}

namespace {

std::vector<std::string> metric_keys() {
  std::vector<std::string> keys;
  for (const RegressMetric& m : regress_metrics()) keys.emplace_back(m.key);
  return keys;
}

double non_negative(const YamlValue& v) {
  const double x = v.as_number();
  if (x < 0) v.fail(fmt::format("must not be negative, got {}", x));
  return x;
}

/// Where the scenario files of a baseline live: paths are relative to the working directory,
/// like the command's arguments.
bool scenario_exists(const std::string& file) {
  return std::filesystem::is_regular_file(file);
}

} // namespace

Baseline load_baseline(const std::string& path, bool must_exist) {
  Baseline b;
  for (const RegressMetric& m : regress_metrics()) b.tolerances.push_back(m.default_tolerance);
  if (!std::filesystem::exists(path)) {
    if (!must_exist) return b;
    // A relative path starts from the working directory, the default one included: name both.
    std::error_code ec;
    const std::filesystem::path p(path);
    const std::string looked =
        p.is_relative()
            ? fmt::format(": looked for {} (relative to the working directory{})",
                          (std::filesystem::current_path(ec) / p).lexically_normal().string(),
                          path == RegressOptions{}.baseline
                              ? "; run odyssey regress from the repository root, or give --baseline FILE"
                              : "")
            : "";
    throw InputError({.file = path}, "",
                     fmt::format("no such baseline{}; odyssey regress --update writes one", looked));
  }
  const YamlValue root = load_yaml_file(path);
  root.require_map();
  root.check_keys({"schema", "tolerances", "scenarios"});
  const YamlValue schema = root.require("schema");
  const long version = schema.as_positive_count();
  if (version != REGRESS_SCHEMA)
    schema.fail(
        fmt::format("baseline has schema version {} but this odyssey reads version {}; remove the file and "
                    "record a new baseline with odyssey regress --update",
                    version, REGRESS_SCHEMA));
  const std::vector<std::string> keys = metric_keys();
  if (auto tol = root.get("tolerances")) {
    tol->require_map();
    tol->check_keys(keys);
    for (size_t i = 0; i < keys.size(); ++i)
      if (auto t = tol->get(keys[i])) b.tolerances[i] = non_negative(*t);
  }
  std::vector<std::string> entry_keys = keys;
  entry_keys.insert(entry_keys.begin(), "file");
  entry_keys.emplace_back(FITS_MEMORY);
  if (auto list = root.get("scenarios")) {
    if (!list->is_sequence()) list->fail("expected a list of scenarios");
    for (const YamlValue& item : list->items()) {
      item.require_map();
      item.check_keys(entry_keys);
      const YamlValue file = item.require("file");
      ScenarioMetrics s{.file = std::filesystem::path(file.as_string()).lexically_normal().string(),
                        .values = {},
                        .fits_memory = std::nullopt,
                        .where = item.where()};
      if (!scenario_exists(s.file))
        file.fail(fmt::format(
            "scenario '{}' no longer exists; restore it or remove its entry from the baseline", s.file));
      if (std::any_of(b.scenarios.begin(), b.scenarios.end(),
                      [&](const ScenarioMetrics& o) { return o.file == s.file; }))
        file.fail(fmt::format("scenario '{}' is listed twice", s.file));
      for (const std::string& k : keys) s.values.push_back(non_negative(item.require(k)));
      if (auto fits = item.get(std::string(FITS_MEMORY))) s.fits_memory = fits->as_bool();
      b.scenarios.push_back(std::move(s));
    }
  }
  std::sort(b.scenarios.begin(), b.scenarios.end(),
            [](const auto& x, const auto& y) { return x.file < y.file; });
  return b;
}

std::string render_baseline(const Baseline& b) {
  const auto& metrics = regress_metrics();
  std::string out =
      "# Predicted metrics per scenario, checked by `odyssey regress` and rewritten by\n"
      "# `odyssey regress --update`. Tolerances are the relative change allowed in the worse direction\n"
      "# (0.005 = 0.5%); edit them by hand, --update keeps them.\n";
  out += fmt::format("schema: {}\ntolerances:\n", REGRESS_SCHEMA);
  for (size_t i = 0; i < metrics.size(); ++i)
    out += fmt::format("  {}: {}\n", metrics[i].key, b.tolerances[i]);
  out += "scenarios:\n";
  for (const ScenarioMetrics& s : b.scenarios) {
    out += fmt::format("  - file: {}\n", s.file);
    // fmt's shortest round-trip form: the file reads back to the same doubles, digit for digit.
    for (size_t i = 0; i < metrics.size(); ++i)
      out += fmt::format("    {}: {}\n", metrics[i].key, s.values[i]);
    if (s.fits_memory) out += fmt::format("    {}: {}\n", FITS_MEMORY, *s.fits_memory);
  }
  return out;
}

std::vector<MetricChange> compare(const Baseline& baseline, const std::vector<ScenarioMetrics>& current) {
  const auto& metrics = regress_metrics();
  std::vector<MetricChange> rows;
  for (const ScenarioMetrics& now : current) {
    auto old = std::find_if(baseline.scenarios.begin(), baseline.scenarios.end(),
                            [&](const ScenarioMetrics& s) { return s.file == now.file; });
    for (size_t i = 0; i < metrics.size(); ++i) {
      MetricChange c{.file = now.file,
                     .metric = metrics[i].key,
                     .old_value = std::nullopt,
                     .new_value = now.values[i],
                     .delta = 0.0,
                     .tolerance = baseline.tolerances[i],
                     .verdict = Verdict::NEW};
      if (old != baseline.scenarios.end()) {
        const double before = old->values[i];
        c.old_value = before;
        c.delta = before != 0        ? (c.new_value - before) / before
                  : c.new_value == 0 ? 0.0
                                     : std::numeric_limits<double>::infinity();
        const double worse = metrics[i].worse == Worse::HIGHER ? c.delta : -c.delta;
        c.verdict = c.new_value == before  ? Verdict::SAME
                    : worse > c.tolerance  ? Verdict::REGRESSED
                    : -worse > c.tolerance ? Verdict::IMPROVED
                                           : Verdict::WITHIN;
      }
      rows.push_back(c);
    }
    if (!now.fits_memory) continue;
    // Fitting is a yes or a no: 1 or 0, no tolerance. Fitting no longer is a regression.
    MetricChange c{.file = now.file,
                   .metric = FITS_MEMORY,
                   .old_value = std::nullopt,
                   .new_value = *now.fits_memory ? 1.0 : 0.0,
                   .delta = 0.0,
                   .tolerance = 0.0,
                   .verdict = Verdict::NEW};
    if (old != baseline.scenarios.end() && old->fits_memory) {
      c.old_value = *old->fits_memory ? 1.0 : 0.0;
      c.delta = c.new_value - *c.old_value;
      c.verdict = c.delta == 0 ? Verdict::SAME : c.delta < 0 ? Verdict::REGRESSED : Verdict::IMPROVED;
    }
    rows.push_back(c);
  }
  return rows;
}

namespace {

std::string metric_value(std::string_view metric, double v) {
  if (metric == FITS_MEMORY) return v != 0 ? "fits" : "does not fit";
  if (metric == "iteration_time_s") return fmt::format("{:.6g} s", v);
  if (metric == "tokens_per_s") return fmt::format("{:.0f}", v);
  if (metric == "mfu") return fmt::format("{:.3f}%", v * 100);
  return fmt::format("{:.3f} GiB", v / 1073741824.0);
}

std::string_view verdict_text(Verdict v) {
  switch (v) {
  case Verdict::SAME: return "same";
  case Verdict::WITHIN: return "within tolerance";
  case Verdict::IMPROVED: return "improved";
  case Verdict::REGRESSED: return "**REGRESSION**";
  case Verdict::NEW: return "**no baseline**";
  }
  return "";
}

} // namespace

std::string render_changes(const std::vector<MetricChange>& rows) {
  std::string out = "| scenario | metric | baseline | current | delta | tolerance | verdict |\n"
                    "|---|---|---:|---:|---:|---:|---|\n";
  int regressed = 0;
  int missing = 0;
  int improved = 0;
  std::vector<std::string> scenarios;
  for (const MetricChange& c : rows) {
    const std::string name = std::filesystem::path(c.file).stem().string();
    if (scenarios.empty() || scenarios.back() != c.file) scenarios.push_back(c.file);
    const bool fits = c.metric == FITS_MEMORY;
    out += fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n", name, c.metric,
                       c.old_value ? metric_value(c.metric, *c.old_value) : "-",
                       metric_value(c.metric, c.new_value),
                       c.old_value && !fits ? fmt::format("{:+.3f}%", c.delta * 100) : "-",
                       fits ? "-" : fmt::format("{:.2f}%", c.tolerance * 100), verdict_text(c.verdict));
    regressed += c.verdict == Verdict::REGRESSED;
    improved += c.verdict == Verdict::IMPROVED;
    missing += c.verdict == Verdict::NEW;
  }
  out += fmt::format(
      "\n{}: {}, {}, {} without a baseline{}\n", counted(long(scenarios.size()), "scenario"),
      counted(regressed, "regression"), counted(improved, "improvement"), counted(missing, "metric"),
      regressed + missing + improved > 0 ? " (odyssey regress --update records the new figures)" : "");
  return out;
}

namespace {

/// The outcome of one `odyssey run --json` child.
struct ChildRun {
  int status = -1; ///< exit code, or -1 when it did not exit normally
  std::string out;
  std::string err;
};

/// An anonymous temporary file (unlinked at once: nothing is left behind, however regress ends);
/// -1 when none can be made.
int anonymous_file() {
  std::error_code ec;
  std::string path = (std::filesystem::temp_directory_path(ec) / "odyssey-regress-XXXXXX").string();
  const int fd = mkostemp(path.data(), O_CLOEXEC);
  if (fd >= 0) ::unlink(path.c_str());
  return fd;
}

std::string slurp(int fd) {
  std::string text;
  char buffer[65536];
  for (off_t at = 0;;) {
    const ssize_t got = ::pread(fd, buffer, sizeof buffer, at);
    if (got <= 0) break;
    text.append(buffer, static_cast<size_t>(got));
    at += got;
  }
  return text;
}

ChildRun run_child(const std::string& odyssey, const std::string& scenario) {
  ChildRun r;
  const int out = anonymous_file();
  const int err = anonymous_file();
  if (out < 0 || err < 0) {
    if (out >= 0) ::close(out);
    if (err >= 0) ::close(err);
    r.err = fmt::format("cannot create a temporary file: {}", std::strerror(errno));
    return r;
  }
  std::vector<std::string> args = {odyssey, "run", scenario, "--json"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // fork() and exec() rather than posix_spawn(): the child must die with this process (a killed
  // regress leaves no simulation running), which it arranges between the two. Only
  // async-signal-safe calls in the child: the parent has other threads.
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    die_with_parent(parent);
    if (::dup2(out, STDOUT_FILENO) < 0 || ::dup2(err, STDERR_FILENO) < 0) ::_exit(127);
    ::execve(odyssey.c_str(), argv.data(), environ);
    ::_exit(127);
  }
  if (pid < 0) {
    r.err = fmt::format("cannot start {}: {}", odyssey, std::strerror(errno));
  } else {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127 && r.err.empty())
      r.err = fmt::format("cannot start {}", odyssey);
  }
  ::close(out);
  ::close(err);
  return r;
}

std::vector<std::string> scenario_files(const RegressOptions& o) {
  if (!o.scenarios.empty()) {
    // Normalised ("./scenarios/x.yaml" is "scenarios/x.yaml"), as the directory listing is.
    std::vector<std::string> files;
    for (const std::string& s : o.scenarios) {
      if (!scenario_exists(s)) throw InputError({.file = s}, "", "cannot open file");
      files.push_back(std::filesystem::path(s).lexically_normal().string());
    }
    return files;
  }
  std::error_code ec;
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(o.scenario_dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".yaml")
      files.push_back(e.path().lexically_normal().string());
  if (ec) {
    const std::filesystem::path dir(o.scenario_dir);
    std::error_code cwd;
    throw InputError(
        {.file = o.scenario_dir}, "",
        dir.is_relative()
            ? fmt::format("cannot read scenario directory {} (relative to the working directory): {}",
                          (std::filesystem::current_path(cwd) / dir).lexically_normal().string(),
                          ec.message())
            : "cannot read scenario directory: " + ec.message());
  }
  if (files.empty())
    throw InputError({.file = o.scenario_dir}, "", "no scenarios (*.yaml) in this directory");
  std::sort(files.begin(), files.end());
  return files;
}

} // namespace

int regress(const RegressOptions& o) {
  // Everything that can be wrong with the input is found before any simulation runs.
  Baseline baseline = load_baseline(o.baseline, /*must_exist=*/!o.update);
  const std::vector<std::string> files = scenario_files(o);
  if (o.update) check_writable(o.baseline); // not after minutes of simulation

  std::vector<ChildRun> runs(files.size());
  std::atomic<size_t> next{0};
  const int jobs =
      std::max(1, std::min<int>(o.jobs > 0 ? o.jobs : static_cast<int>(std::thread::hardware_concurrency()),
                                static_cast<int>(files.size())));
  {
    std::vector<std::jthread> workers;
    for (int j = 0; j < jobs; ++j)
      workers.emplace_back([&] {
        for (size_t i = next++; i < files.size(); i = next++) runs[i] = run_child(o.odyssey, files[i]);
      });
  }

  std::vector<ScenarioMetrics> current;
  int worst = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    const ChildRun& r = runs[i];
    if (r.status != 0) {
      // The child already wrote `file:line:col: error: ...` for bad input; pass it on as is.
      std::cerr << r.err << (r.err.empty() || r.err.back() != '\n' ? "\n" : "");
      worst = std::max(worst, r.status == 2 ? 2 : 1);
      continue;
    }
    const nlohmann::json report = nlohmann::json::parse(r.out);
    ScenarioMetrics m{.file = files[i],
                      .values = {},
                      .fits_memory = report.at(std::string(FITS_MEMORY)).get<bool>(),
                      .where = {}};
    for (const RegressMetric& metric : regress_metrics())
      m.values.push_back(report.at(std::string(metric.key)).get<double>());
    current.push_back(std::move(m));
  }
  if (worst != 0) return worst; // nothing compared, nothing written

  const std::vector<MetricChange> changes = compare(baseline, current);
  std::cout << render_changes(changes);
  if (o.update) {
    for (ScenarioMetrics& now : current) {
      auto old = std::find_if(baseline.scenarios.begin(), baseline.scenarios.end(),
                              [&](const ScenarioMetrics& s) { return s.file == now.file; });
      if (old != baseline.scenarios.end()) {
        old->values = now.values;
        old->fits_memory = now.fits_memory;
      } else {
        baseline.scenarios.push_back(now);
      }
    }
    std::sort(baseline.scenarios.begin(), baseline.scenarios.end(),
              [](const auto& x, const auto& y) { return x.file < y.file; });
    write_file_atomically(o.baseline, render_baseline(baseline));
    std::cout << fmt::format("updated {}\n", o.baseline);
    return 0;
  }
  const bool failed = std::any_of(changes.begin(), changes.end(), [](const MetricChange& c) {
    return c.verdict == Verdict::REGRESSED || c.verdict == Verdict::NEW;
  });
  return failed ? 1 : 0;
}

} // namespace odyssey
