#include "tools/sweep.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "calibration/cost_model.hpp"
#include "calibration/profile.hpp"
#include "models/input/diagnostics.hpp"
#include "models/input/files.hpp"
#include "models/input/yaml_reader.hpp"
#include "models/workload.hpp"
#include "sim/engine.hpp"
#include "sim/isolation.hpp"
#include "sim/report.hpp"
#include "tools/run.hpp"
#include "tools/scenario.hpp"

#include <fcntl.h>
#include <unistd.h>

#ifdef ODYSSEY_HAVE_MPI
#include <mpi.h>
#endif

namespace odyssey {

namespace fs = std::filesystem;

// ---- the sweep file -------------------------------------------------------------------------------

std::string SweepPoint::label() const {
  std::string out;
  for (const std::string& o : overrides) out += (out.empty() ? "" : "; ") + o;
  return out;
}

namespace {

std::string number_text(double x) {
  if (std::abs(x - std::round(x)) < 1e-9 && std::abs(x) < 1e15)
    return fmt::format("{}", static_cast<long>(std::round(x)));
  return fmt::format("{}", x);
}

/// The values of one swept key: a list of scalars or a range. `where` gets each value's position.
std::vector<std::string> key_values(const YamlValue& v, std::vector<SourceLocation>& where) {
  std::vector<std::string> out;
  if (v.is_sequence()) {
    for (const YamlValue& item : v.items()) {
      if (!item.is_scalar())
        item.fail("expected a scalar value (a number, a word or a quantity with its unit)");
      out.push_back(item.as_string());
      where.push_back(item.where());
    }
    if (out.empty()) v.fail("empty list of values");
    return out;
  }
  if (v.is_scalar()) {
    where.push_back(v.where());
    return {v.as_string()};
  }
  if (!v.is_map()) v.fail("expected a list of values or a range {from, to, step | times}");
  v.check_keys({"from", "to", "step", "times"});
  const double from = v.require("from").as_number();
  const double to = v.require("to").as_number();
  const auto step = v.get("step");
  const auto times = v.get("times");
  if (step.has_value() == times.has_value()) v.fail("a range needs exactly one of 'step' or 'times'");
  if (from > to)
    v.fail(fmt::format("empty range: from ({}) is greater than to ({})", number_text(from), number_text(to)));
  if (step) {
    const double s = step->as_number();
    if (s <= 0) step->fail(fmt::format("step must be positive, got {}", number_text(s)));
    for (double x = from; x <= to * (1 + 1e-12); x += s) out.push_back(number_text(x));
  } else {
    const double k = times->as_number();
    if (k <= 1) times->fail(fmt::format("times must be greater than 1, got {}", number_text(k)));
    if (from <= 0) v.require("from").fail("a range with 'times' needs a positive start");
    for (double x = from; x <= to * (1 + 1e-12); x *= k) out.push_back(number_text(x));
  }
  where.assign(out.size(), v.where());
  return out;
}

} // namespace

SweepSpec load_sweep(const std::string& path, const std::string& data_dir) {
  const YamlValue root = load_yaml_file(path);
  root.require_map();
  root.check_keys({"scenario", "grid", "points", "out"});
  SweepSpec spec;
  spec.file = path;
  const YamlValue scenario = root.require("scenario");
  spec.scenario = (fs::path(path).parent_path() / scenario.as_string()).lexically_normal().string();
  if (!fs::is_regular_file(spec.scenario))
    scenario.fail(fmt::format("cannot open scenario '{}'", scenario.as_string()));
  if (auto out = root.get("out")) {
    spec.out = (fs::path(path).parent_path() / out->as_string()).string();
    spec.out_named = true;
  } else {
    spec.out = fs::path(path).stem().string() + ".csv";
  }

  // Where each key=value came from, to point errors into the sweep file, and where each key is.
  std::map<std::string, SourceLocation> where;
  std::map<std::string, SourceLocation> key_at;
  auto note_keys = [&](const YamlValue& map) {
    for (auto it = map.node().begin(); it != map.node().end(); ++it)
      key_at.emplace(it->first.as<std::string>(), SourceLocation{.file = path,
                                                                 .line = it->first.Mark().line + 1,
                                                                 .column = it->first.Mark().column + 1});
  };
  const auto grid = root.get("grid");
  const auto points = root.get("points");
  if (grid.has_value() == points.has_value()) root.fail("a sweep needs exactly one of 'grid' or 'points'");
  if (grid) {
    grid->require_map();
    note_keys(*grid);
    std::vector<std::vector<std::string>> values;
    for (const auto& [key, v] : grid->entries()) {
      spec.keys.push_back(key);
      std::vector<SourceLocation> at;
      values.push_back(key_values(v, at));
      for (std::size_t i = 0; i < at.size(); ++i) where.emplace(key + "=" + values.back()[i], at[i]);
    }
    if (values.empty()) grid->fail("empty grid: no keys");
    std::vector<std::size_t> at(values.size(), 0);
    for (;;) {
      SweepPoint p{.index = spec.points.size(), .overrides = {}};
      for (std::size_t k = 0; k < values.size(); ++k)
        p.overrides.push_back(spec.keys[k] + "=" + values[k][at[k]]);
      spec.points.push_back(std::move(p));
      std::size_t k = values.size();
      while (k > 0 && ++at[k - 1] == values[k - 1].size()) at[--k] = 0;
      if (k == 0) break;
    }
  } else {
    if (!points->is_sequence() || points->items().empty())
      points->fail("expected a non-empty list of points");
    for (const YamlValue& item : points->items()) {
      item.require_map();
      note_keys(item);
      SweepPoint p{.index = spec.points.size(), .overrides = {}};
      for (const auto& [key, v] : item.entries()) {
        if (!v.is_scalar()) v.fail("expected a scalar value");
        if (std::find(spec.keys.begin(), spec.keys.end(), key) == spec.keys.end()) spec.keys.push_back(key);
        p.overrides.push_back(key + "=" + v.as_string());
        where.emplace(p.overrides.back(), v.where());
      }
      spec.points.push_back(std::move(p));
    }
  }

  // Every key and value on its own against the scenario schema, before anything runs.
  for (const auto& [text, at] : where) {
    try {
      check_overrides(spec.scenario, {.data_dir = data_dir, .overrides = {text}});
    } catch (const InputError& e) {
      if (!e.where().file.starts_with("--set ")) throw;
      // A problem with the key itself points at the key, one with the value at the value.
      const std::string key = text.substr(0, text.find('='));
      const bool about_key = e.message().starts_with("unknown key") ||
                             e.message().starts_with("is a group") ||
                             e.message().find("is a single value") != std::string::npos;
      throw InputError(about_key && key_at.contains(key) ? key_at.at(key) : at, e.key_path(), e.message());
    }
  }
  return spec;
}

// ---- one point ------------------------------------------------------------------------------------

namespace {

/// The figures of each row, after the point's own keys: the report's metrics, its fit, its
/// breakdown, and how the point was simulated.
const std::vector<std::string>& metric_columns() {
  static const std::vector<std::string> columns = [] {
    std::vector<std::string> c = {"gpus"};
    for (const ReportMetric& m : report_metrics())
      if (m.in_rows) c.emplace_back(m.key);
    c.emplace_back("fits_memory");
    c.emplace_back("gpu_memory_bytes");
    for (const BreakdownPart& part : breakdown_parts()) c.emplace_back(part.key);
    for (const char* key : {"time_to_train_s", "fidelity", "sim_wall_s"}) c.emplace_back(key);
    return c;
  }();
  return columns;
}

/// The row of one point as a JSON object (status ok, invalid or failed).
nlohmann::json run_point(const SweepSpec& sweep, const SweepPoint& point, const std::string& data_dir) {
  nlohmann::json row{{"point", point.index}, {"overrides", point.label()}, {"status", "ok"}, {"message", ""}};
  nlohmann::json values = nlohmann::json::object();
  for (const std::string& o : point.overrides) values[o.substr(0, o.find('='))] = o.substr(o.find('=') + 1);
  row["values"] = values;
  Scenario sc;
  std::optional<CostModel> cost;
  try {
    sc = load_scenario(sweep.scenario, {.data_dir = data_dir, .overrides = point.overrides});
    cost.emplace(scenario_cost_model(sc));
  } catch (const InputError& e) {
    row["status"] = "invalid";
    row["message"] = e.what();
    return row;
  }
  const Report report = run_scenario(sc, *cost);
  row["gpus"] = report.gpus;
  for (const ReportMetric& m : report_metrics())
    if (m.in_rows) row[std::string(m.key)] = m.read(report);
  row["fits_memory"] = report.fits_memory;
  row["gpu_memory_bytes"] = report.gpu_memory.value();
  for (const BreakdownPart& part : breakdown_parts())
    row[std::string(part.key)] = (report.breakdown.*part.member).value();
  if (report.time_to_train) row["time_to_train_s"] = report.time_to_train->value();
  row["fidelity"] = to_string(sc.simulation.fidelity);
  row["sim_wall_s"] = report.simulation.wall_seconds;
  row["memory_per_stage"] = nlohmann::json::parse(render_json(report)).at("memory_per_stage");
  return row;
}

std::string csv_field(const nlohmann::json& v) {
  std::string text = v.is_string() ? v.get<std::string>() : v.is_null() ? "" : v.dump();
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

bool is_csv(const std::string& path) {
  return fs::path(path).extension() == ".csv";
}

std::string csv_header(const SweepSpec& sweep) {
  std::string out = "point,overrides,status,message";
  for (const std::string& k : sweep.keys) out += "," + csv_field(k);
  for (const std::string& c : metric_columns()) out += "," + c;
  return out + "\n";
}

std::string render_row(const SweepSpec& sweep, const nlohmann::json& row, bool csv) {
  if (!csv) {
    nlohmann::json copy = row;
    return copy.dump() + "\n";
  }
  std::string out =
      fmt::format("{},{},{},{}", row.at("point").get<std::size_t>(), csv_field(row.at("overrides")),
                  csv_field(row.at("status")), csv_field(row.at("message")));
  for (const std::string& k : sweep.keys)
    out += "," + (row.at("values").contains(k) ? csv_field(row.at("values").at(k)) : std::string());
  for (const std::string& c : metric_columns())
    out += "," + (row.contains(c) ? csv_field(row.at(c)) : std::string());
  return out + "\n";
}

/// The first two fields of a CSV line: the point number and its overrides.
std::pair<std::string, std::string> csv_point(const std::string& line) {
  const std::size_t comma = line.find(',');
  if (comma == std::string::npos) return {};
  std::string label;
  std::size_t i = comma + 1;
  if (i < line.size() && line[i] == '"') {
    for (++i; i < line.size(); ++i) {
      if (line[i] == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        label += '"';
        ++i;
      } else if (line[i] == '"') {
        break;
      } else {
        label += line[i];
      }
    }
  } else {
    label = line.substr(i, line.find(',', i) - i);
  }
  return {line.substr(0, comma), label};
}

/// Points already in the output: "number|overrides" of every complete row.
std::set<std::string> finished_points(const std::string& path) {
  std::set<std::string> done;
  std::ifstream in(path);
  std::string line;
  const bool csv = is_csv(path);
  bool header = csv;
  while (std::getline(in, line)) {
    if (in.eof()) break; // a last line without its newline was cut short: run that point again
    if (header) {
      header = false;
      continue;
    }
    if (csv) {
      const auto [number, label] = csv_point(line);
      done.insert(number + "|" + label);
      continue;
    }
    try {
      const nlohmann::json j = nlohmann::json::parse(line);
      done.insert(std::to_string(j.at("point").get<std::size_t>()) + "|" +
                  j.at("overrides").get<std::string>());
    } catch (const std::exception&) {
      // a damaged line: its point runs again
    }
  }
  return done;
}

/// Appends `text` to `path` in one write with O_APPEND and syncs it, so that a row is in the file
/// whole or not at all, whatever interrupts the sweep.
void append_atomically(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (fd < 0) throw InputError({.file = path}, "", "cannot write file");
  const ssize_t n = ::write(fd, text.data(), text.size());
  ::fsync(fd);
  ::close(fd);
  if (n != ssize_t(text.size())) throw InputError({.file = path}, "", "cannot write file");
}

/// Replaces `path` with `header` and the given rows (each ending in a newline), through a
/// temporary file and a rename, so that a reader never sees half a file.
template <class Rows, class Text>
void replace_rows(const std::string& path, const std::string& header, const Rows& rows, Text text_of) {
  std::string text = header;
  for (const auto& row : rows) text += text_of(row);
  write_file_atomically(path, text);
}

/// Rewrites `path` with its complete rows in point order (the header first), through a temporary
/// file and a rename: rows arrive in the order points finish, the finished file is deterministic.
void sort_rows(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::string header;
  std::vector<std::pair<std::size_t, std::string>> rows;
  const bool csv = is_csv(path);
  while (std::getline(in, line)) {
    if (in.eof()) break; // cut short: dropped, its point runs again next time
    if (csv && header.empty()) {
      header = line + "\n";
      continue;
    }
    try {
      const std::size_t point = csv ? std::stoul(line.substr(0, line.find(',')))
                                    : nlohmann::json::parse(line).at("point").get<std::size_t>();
      rows.emplace_back(point, line + "\n");
    } catch (const std::exception&) {
      // a damaged line: dropped, its point runs again next time
    }
  }
  std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  replace_rows(path, header, rows, [](const auto& row) -> const std::string& { return row.second; });
}

/// A progress bar with the time left, redrawn on one terminal line of stderr.
class ProgressBar {
public:
  ProgressBar(std::size_t total, bool enabled) : total_(total), enabled_(enabled && ::isatty(2) != 0) {}
  void step() {
    ++done_;
    if (!enabled_) return;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double left = done_ > 0 ? elapsed / double(done_) * double(total_ - done_) : 0.0;
    const int width = 30;
    const int filled = total_ > 0 ? int(double(width) * double(done_) / double(total_)) : width;
    std::fprintf(stderr, "\r[%s%s] %zu/%zu points, %s left   ", std::string(size_t(filled), '#').c_str(),
                 std::string(size_t(width - filled), ' ').c_str(), done_, total_,
                 left >= 60 ? fmt::format("{}m{:02d}s", int(left) / 60, int(left) % 60).c_str()
                            : fmt::format("{}s", int(std::ceil(left))).c_str());
    if (done_ == total_) std::fprintf(stderr, "\n");
  }

private:
  std::size_t total_;
  std::size_t done_ = 0;
  bool enabled_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

#ifdef ODYSSEY_HAVE_MPI
constexpr int TAG_ROW = 1;
constexpr int TAG_DONE = 2;

/// Receives rows from the other ranks; returns when none is waiting (or, `block`, when every rank
/// has said it is done).
void receive_rows(const std::function<void(const std::string&)>& write, int* ranks_done, int ranks,
                  bool block) {
  while (*ranks_done < ranks) {
    int waiting = 0;
    MPI_Status status;
    if (block)
      MPI_Probe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &status);
    else
      MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &waiting, &status);
    if (!block && waiting == 0) return;
    int size = 0;
    MPI_Get_count(&status, MPI_CHAR, &size);
    std::string text(std::size_t(size), '\0');
    MPI_Recv(text.data(), size, MPI_CHAR, status.MPI_SOURCE, status.MPI_TAG, MPI_COMM_WORLD,
             MPI_STATUS_IGNORE);
    if (status.MPI_TAG == TAG_DONE)
      ++*ranks_done;
    else
      write(text);
  }
}
#endif

} // namespace

bool sweep_has_mpi() {
#ifdef ODYSSEY_HAVE_MPI
  return true;
#else
  return false;
#endif
}

SweepRun run_sweep(const SweepSpec& sweep, const SweepOptions& options, const std::string& data_dir) {
  // Not after the first point's simulation: every rank checks, before MPI starts.
  check_writable(options.out.empty() ? sweep.out : options.out);
  int shard = options.shard;
  int shards = options.shards;
  int rank = 0;
  if (options.mpi) {
#ifdef ODYSSEY_HAVE_MPI
    // A rank dies with the process that launched it (mpirun, orted, slurmstepd), as its own
    // children die with it: a killed mpirun leaves no rank simulating.
    die_with_parent(::getppid());
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized == 0) MPI_Init(nullptr, nullptr);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &shards);
    shard = rank;
#else
    throw InputError({.file = "--mpi"}, "",
                     "this odyssey was built without MPI (install libopenmpi-dev and rebuild)");
#endif
  }
  const std::string out = options.out.empty() ? sweep.out : options.out;
  const bool csv = is_csv(out);
  const std::set<std::string> done = finished_points(out);
  std::vector<const SweepPoint*> todo;
  for (const SweepPoint& p : sweep.points)
    if (int(p.index % std::size_t(shards)) == shard &&
        !done.contains(std::to_string(p.index) + "|" + p.label()))
      todo.push_back(&p);

  auto write = [&](const std::string& row_json) {
    if (csv && (!fs::exists(out) || fs::file_size(out) == 0)) append_atomically(out, csv_header(sweep));
    append_atomically(out, render_row(sweep, nlohmann::json::parse(row_json), csv));
  };
  ProgressBar bar(todo.size(), options.progress && rank == 0);
#ifdef ODYSSEY_HAVE_MPI
  int ranks_done = 1;
#endif
  run_in_processes(
      todo.size(), options.jobs, [&](std::size_t k) { return run_point(sweep, *todo[k], data_dir).dump(); },
      [&](std::size_t k, const std::string& text, const std::string& error) {
        std::string row = text;
        if (!error.empty())
          row = nlohmann::json{{"point", todo[k]->index},
                               {"overrides", todo[k]->label()},
                               {"status", "failed"},
                               {"message", error},
                               {"values", nlohmann::json::object()}}
                    .dump();
#ifdef ODYSSEY_HAVE_MPI
        if (options.mpi && rank != 0) {
          MPI_Send(row.data(), int(row.size()), MPI_CHAR, 0, TAG_ROW, MPI_COMM_WORLD);
        } else {
          write(row);
          if (options.mpi) receive_rows(write, &ranks_done, shards, false);
        }
#else
        write(row);
#endif
        bar.step();
      });
#ifdef ODYSSEY_HAVE_MPI
  if (options.mpi) {
    if (rank != 0) {
      MPI_Send(nullptr, 0, MPI_CHAR, 0, TAG_DONE, MPI_COMM_WORLD);
    } else {
      receive_rows(write, &ranks_done, shards, true);
    }
    MPI_Finalize();
  }
#endif
  if (rank == 0 && fs::exists(out)) sort_rows(out);
  return SweepRun{.points = todo.size(), .writer = rank == 0};
}

namespace {

/// The point number and overrides of one output row; nullopt for a damaged line.
std::optional<std::pair<std::size_t, std::string>> row_point(const std::string& line, bool csv) {
  if (csv) {
    const auto [number, label] = csv_point(line);
    std::size_t point = 0;
    const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), point);
    if (number.empty() || ec != std::errc() || end != number.data() + number.size()) return std::nullopt;
    return std::pair{point, label};
  }
  try {
    const nlohmann::json j = nlohmann::json::parse(line);
    return std::pair{j.at("point").get<std::size_t>(), j.at("overrides").get<std::string>()};
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

/// A row without its simulator wall time (`sim_wall_s`, the last column), the one value that
/// differs between two runs of the same point.
std::string deterministic_part(const std::string& line, bool csv) {
  if (csv) return line.substr(0, line.rfind(','));
  nlohmann::json j = nlohmann::json::parse(line);
  j.erase("sim_wall_s");
  return j.dump();
}

} // namespace

SweepMerge merge_sweep(const SweepSpec& sweep, const std::vector<std::string>& inputs,
                       const std::string& out) {
  if (inputs.empty()) throw InputError({.file = "--merge"}, "", "no shard outputs given");
  const bool csv = is_csv(out);
  // Rows already in the output stay, so shards can be merged as they finish.
  std::vector<std::string> files;
  std::error_code ec;
  if (fs::is_regular_file(out, ec)) files.push_back(out);
  for (const std::string& f : inputs)
    if (std::none_of(files.begin(), files.end(),
                     [&](const std::string& g) { return fs::equivalent(f, g, ec); }))
      files.push_back(f);

  struct Row {
    std::string line; ///< without its newline
    SourceLocation where;
  };
  std::map<std::size_t, Row> rows;
  SweepMerge merge;
  for (const std::string& file : files) {
    if (fs::is_directory(file, ec)) throw InputError({.file = file}, "", "is a folder, not a file");
    if (is_csv(file) != csv)
      throw InputError({.file = file}, "",
                       fmt::format("cannot merge into {}: the shard outputs and the output must all "
                                   "be CSV or all JSON lines",
                                   out));
    std::ifstream in(file);
    if (!in) throw InputError({.file = file}, "", "cannot open file");
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
      const SourceLocation where{.file = file, .line = number, .column = 1};
      if (in.eof()) { // a last line without its newline was cut short: its point runs again
        ++merge.damaged;
        break;
      }
      if (csv && number == 1) {
        if (line + "\n" != csv_header(sweep))
          throw InputError(where, "",
                           fmt::format("the columns differ from those of {}: the file comes from another "
                                       "sweep or another version of odyssey",
                                       sweep.file));
        continue;
      }
      const auto point = row_point(line, csv);
      if (!point) {
        ++merge.damaged;
        continue;
      }
      const auto& [index, label] = *point;
      if (index >= sweep.points.size() || sweep.points[index].label() != label)
        throw InputError(where, "",
                         fmt::format("point {} ({}) is not a point of {}: the file comes from another sweep",
                                     index, label, sweep.file));
      const auto [it, inserted] = rows.emplace(index, Row{line, where});
      if (inserted) continue;
      if (deterministic_part(it->second.line, csv) != deterministic_part(line, csv))
        throw InputError(where, "",
                         fmt::format("point {} differs from its row at {}:{}; rows of one point must agree "
                                     "(the same build and profile give the same row)",
                                     index, it->second.where.file, it->second.where.line));
      ++merge.duplicates;
    }
  }

  replace_rows(out, csv ? csv_header(sweep) : std::string(), rows,
               [](const auto& entry) { return entry.second.line + "\n"; });
  merge.rows = rows.size();
  for (const SweepPoint& p : sweep.points)
    if (!rows.contains(p.index)) merge.missing.push_back(p.index);
  return merge;
}

} // namespace odyssey
