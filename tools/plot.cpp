#include "tools/plot.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "models/input/diagnostics.hpp"

namespace odyssey {

namespace {

constexpr double WIDTH = 900;
constexpr double CHART_HEIGHT = 360;
constexpr double LEFT = 90, RIGHT = 200, TOP = 40, BOTTOM = 60;
/// Colour-blind-safe palette (Okabe and Ito 2008).
constexpr const char* COLOURS[] = {"#0072B2", "#E69F00", "#009E73", "#D55E00",
                                   "#CC79A7", "#56B4E9", "#F0E442", "#000000"};

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
    case '&': out += "&amp;"; break;
    case '<': out += "&lt;"; break;
    case '>': out += "&gt;"; break;
    case '"': out += "&quot;"; break;
    default: out += c;
    }
  }
  return out;
}

std::string short_number(double v) {
  const double a = std::abs(v);
  if (a >= 1e12) return fmt::format("{:.3g}T", v / 1e12);
  if (a >= 1e9) return fmt::format("{:.3g}G", v / 1e9);
  if (a >= 1e6) return fmt::format("{:.3g}M", v / 1e6);
  if (a >= 1e3) return fmt::format("{:.3g}k", v / 1e3);
  return fmt::format("{:.3g}", v);
}

/// A "nice" upper bound for an axis.
double nice_max(double v) {
  if (v <= 0) return 1;
  const double p = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * p >= v) return m * p;
  return 10 * p;
}

/// Opens a chart's group at height `y0`: title, axes, y ticks up to `y_hi` and the y label.
std::string chart_frame(const std::string& title, const std::string& y_label, double y0, double y_hi) {
  const double pw = WIDTH - LEFT - RIGHT, ph = CHART_HEIGHT - TOP - BOTTOM;
  auto py = [&](double y) { return y0 + TOP + ph - y / y_hi * ph; };
  std::string o = fmt::format("<g class=\"chart\" data-title=\"{}\">\n", escape(title));
  o += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"16\" text-anchor=\"middle\">{}</text>\n",
                   LEFT + pw / 2, y0 + 24, escape(title));
  o += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"black\"/>\n", LEFT, py(0),
                   py(y_hi));
  o += fmt::format("<line x1=\"{0}\" y1=\"{2}\" x2=\"{1}\" y2=\"{2}\" stroke=\"black\"/>\n", LEFT, LEFT + pw,
                   py(0));
  for (int k = 0; k <= 4; ++k)
    o += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>\n", LEFT - 6,
                     py(y_hi * k / 4) + 4, short_number(y_hi * k / 4));
  o += fmt::format(
      "<text x=\"20\" y=\"{0}\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 20 {0})\">"
      "{1}</text>\n",
      y0 + TOP + ph / 2, escape(y_label));
  return o;
}

} // namespace

void SvgDocument::line_chart(const std::string& title, const std::string& x_label, const std::string& y_label,
                             const std::vector<LineSeries>& series) {
  double x_lo = INFINITY, x_hi = -INFINITY, y_hi = 0;
  for (const LineSeries& s : series)
    for (const auto& [x, y] : s.points) {
      x_lo = std::min(x_lo, x);
      x_hi = std::max(x_hi, x);
      y_hi = std::max(y_hi, y);
    }
  if (!(x_lo <= x_hi)) x_lo = 0, x_hi = 1;
  if (x_hi == x_lo) x_lo -= 1, x_hi += 1;
  y_hi = nice_max(y_hi);
  const double y0 = height_;
  const double pw = WIDTH - LEFT - RIGHT, ph = CHART_HEIGHT - TOP - BOTTOM;
  auto px = [&](double x) { return LEFT + (x - x_lo) / (x_hi - x_lo) * pw; };
  auto py = [&](double y) { return y0 + TOP + ph - y / y_hi * ph; };
  std::string& o = body_;
  o += chart_frame(title, y_label, y0, y_hi);
  for (int k = 0; k <= 4; ++k)
    o +=
        fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>\n",
                    px(x_lo + (x_hi - x_lo) * k / 4), py(0) + 16, short_number(x_lo + (x_hi - x_lo) * k / 4));
  o += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}</text>\n",
                   LEFT + pw / 2, py(0) + 40, escape(x_label));
  for (std::size_t i = 0; i < series.size(); ++i) {
    const LineSeries& s = series[i];
    const char* colour = COLOURS[i % std::size(COLOURS)];
    std::vector<std::pair<double, double>> pts = s.points;
    std::sort(pts.begin(), pts.end());
    o += fmt::format("<g class=\"series\" data-name=\"{}\">\n", escape(s.name));
    std::string path;
    for (const auto& [x, y] : pts)
      path += fmt::format("{}{:.1f},{:.1f} ", path.empty() ? "M" : "L", px(x), py(y));
    if (!path.empty())
      o += fmt::format("<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>\n", path, colour);
    for (const auto& [x, y] : pts)
      o += fmt::format(
          "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"><title>{}: {}</title></circle>\n", px(x),
          py(y), colour, short_number(x), short_number(y));
    o += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{}\">{}</text>\n", LEFT + pw + 10,
                     y0 + TOP + 14 * double(i), colour, escape(s.name));
    o += "</g>\n";
  }
  o += "</g>\n";
  height_ += CHART_HEIGHT;
}

void SvgDocument::stacked_bars(const std::string& title, const std::string& y_label,
                               const StackedBars& bars) {
  double y_hi = 0;
  for (const auto& row : bars.values) {
    double sum = 0;
    for (double v : row) sum += std::max(0.0, v);
    y_hi = std::max(y_hi, sum);
  }
  y_hi = nice_max(y_hi);
  const double y0 = height_;
  const double pw = WIDTH - LEFT - RIGHT, ph = CHART_HEIGHT - TOP - BOTTOM;
  const double slot = bars.labels.empty() ? pw : pw / double(bars.labels.size());
  auto py = [&](double y) { return y0 + TOP + ph - y / y_hi * ph; };
  std::string& o = body_;
  o += chart_frame(title, y_label, y0, y_hi);
  for (std::size_t b = 0; b < bars.labels.size(); ++b)
    o += fmt::format("<text x=\"{:.1f}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{}</text>\n",
                     LEFT + slot * (double(b) + 0.5), py(0) + 14, escape(bars.labels[b]));
  for (std::size_t part = 0; part < bars.parts.size(); ++part) {
    const char* colour = COLOURS[part % std::size(COLOURS)];
    o += fmt::format("<g class=\"series\" data-name=\"{}\">\n", escape(bars.parts[part]));
    for (std::size_t b = 0; b < bars.labels.size(); ++b) {
      double below = 0;
      for (std::size_t q = 0; q < part; ++q) below += std::max(0.0, bars.values[b][q]);
      const double v = std::max(0.0, bars.values[b][part]);
      o += fmt::format(
          "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\"><title>{} {}: "
          "{}</title></rect>\n",
          LEFT + slot * (double(b) + 0.15), py(below + v), slot * 0.7, py(below) - py(below + v), colour,
          escape(bars.labels[b]), escape(bars.parts[part]), short_number(v));
    }
    o += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{}\">{}</text>\n", LEFT + pw + 10,
                     y0 + TOP + 14 * double(part), colour, escape(bars.parts[part]));
    o += "</g>\n";
  }
  o += "</g>\n";
  height_ += CHART_HEIGHT;
}

std::string SvgDocument::str() const {
  return fmt::format("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
                     "width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" font-family=\"sans-serif\">\n"
                     "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{2}</svg>\n",
                     WIDTH, std::max(height_, 1.0), body_);
}

// ---- sweep and plan charts ------------------------------------------------------------------------

namespace {

const std::vector<std::string> BREAKDOWN = {"compute",         "tp_comm_exposed", "cp_comm_exposed",
                                            "ep_comm_exposed", "pp_bubble",       "pp_comm_exposed",
                                            "dp_comm_exposed", "optimizer"};
const std::vector<std::string> MEMORY = {"weights", "gradients", "optimizer_states", "activations",
                                         "workspace"};

double number(const nlohmann::json& row, const std::string& key) {
  const nlohmann::json* v = nullptr;
  if (row.contains(key))
    v = &row.at(key);
  else if (row.contains("breakdown") && row.at("breakdown").contains(key))
    v = &row.at("breakdown").at(key);
  if (v == nullptr || v->is_null()) return 0.0;
  if (v->is_number()) return v->get<double>();
  if (v->is_string()) {
    try {
      return std::stod(v->get<std::string>());
    } catch (const std::exception&) {
      return 0.0;
    }
  }
  return 0.0;
}

bool usable(const nlohmann::json& row) {
  return (!row.contains("status") || row.at("status") == "ok") && number(row, "tokens_per_s") > 0;
}

StackedBars breakdown_bars(const std::vector<nlohmann::json>& rows, const std::vector<std::string>& labels) {
  StackedBars bars;
  bars.parts = BREAKDOWN;
  for (std::size_t i = 0; i < rows.size() && i < 24; ++i) {
    bars.labels.push_back(labels[i]);
    std::vector<double> v;
    for (const std::string& k : BREAKDOWN) v.push_back(number(rows[i], k));
    bars.values.push_back(v);
  }
  return bars;
}

void memory_per_stage(SvgDocument& doc, const nlohmann::json& row, const std::string& what) {
  if (!row.contains("memory_per_stage") || !row.at("memory_per_stage").is_array()) return;
  StackedBars bars;
  bars.parts = MEMORY;
  int s = 0;
  for (const auto& stage : row.at("memory_per_stage")) {
    bars.labels.push_back(std::to_string(s++));
    std::vector<double> v;
    for (const std::string& k : MEMORY) v.push_back(number(stage, k) / (1 << 30));
    bars.values.push_back(v);
  }
  doc.stacked_bars("memory per GPU of each pipeline stage (" + what + ")", "GiB", bars);
}

} // namespace

std::string plot_sweep(const std::vector<nlohmann::json>& all) {
  std::vector<nlohmann::json> rows;
  for (const auto& r : all)
    if (usable(r)) rows.push_back(r);
  SvgDocument doc;
  // Series: the values of the swept keys, but for those that only change the GPU count (one
  // value per count and one count per value), which run along x.
  std::map<std::string, std::map<std::string, std::set<double>>> gpus_of;   // key -> value -> GPU counts
  std::map<std::string, std::map<double, std::set<std::string>>> values_of; // key -> GPU count -> values
  auto text_of = [](const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); };
  for (const auto& r : rows)
    if (r.contains("values"))
      for (const auto& [k, v] : r.at("values").items()) {
        gpus_of[k][text_of(v)].insert(number(r, "gpus"));
        values_of[k][number(r, "gpus")].insert(text_of(v));
      }
  auto along_x = [&](const std::string& k) {
    if (gpus_of[k].size() < 2) return false;
    for (const auto& [value, counts] : gpus_of[k])
      if (counts.size() != 1) return false;
    for (const auto& [count, values] : values_of[k])
      if (values.size() != 1) return false;
    return true;
  };
  std::map<std::string, LineSeries> series;
  std::vector<std::string> labels;
  for (const auto& r : rows) {
    std::string name;
    std::string label;
    if (r.contains("values"))
      for (const auto& [k, v] : r.at("values").items()) {
        label += (label.empty() ? "" : " ") + text_of(v);
        if (!along_x(k)) name += (name.empty() ? "" : ", ") + k + "=" + text_of(v);
      }
    if (name.empty()) name = "tokens/s";
    series[name].name = name;
    series[name].points.emplace_back(number(r, "gpus"), number(r, "tokens_per_s"));
    labels.push_back(label.empty() ? std::to_string(labels.size()) : label);
  }
  std::vector<LineSeries> lines;
  for (auto& [name, s] : series) lines.push_back(s);
  doc.line_chart("throughput against GPUs", "GPUs", "tokens/s", lines);
  doc.stacked_bars("where the time goes, per point", "seconds per iteration", breakdown_bars(rows, labels));
  StackedBars memory;
  memory.parts = {"memory per GPU"};
  for (std::size_t i = 0; i < rows.size() && i < 24; ++i) {
    memory.labels.push_back(labels[i]);
    memory.values.push_back({number(rows[i], "memory_per_gpu_bytes") / (1 << 30)});
  }
  doc.stacked_bars("peak memory per GPU, per point", "GiB", memory);
  for (const auto& r : rows)
    if (r.contains("memory_per_stage")) {
      memory_per_stage(doc, r, r.value("overrides", std::string("first point")));
      break;
    }
  return doc.str();
}

std::string plot_plan(const nlohmann::json& plan) {
  SvgDocument doc;
  std::vector<nlohmann::json> ranked;
  for (const auto& r : plan.value("ranked", nlohmann::json::array())) ranked.push_back(r);
  const nlohmann::json per_count = plan.value("best_per_gpus", nlohmann::json::array());
  LineSeries best{.name = "best plan", .points = {}};
  if (!per_count.empty()) {
    for (const auto& r : per_count) best.points.emplace_back(number(r, "gpus"), number(r, "tokens_per_s"));
  } else {
    for (const auto& r : ranked) best.points.emplace_back(number(r, "gpus"), number(r, "tokens_per_s"));
  }
  doc.line_chart("throughput against GPUs", "GPUs", "tokens/s", {best});
  std::vector<std::string> labels;
  for (std::size_t i = 0; i < ranked.size(); ++i) labels.push_back("#" + std::to_string(i + 1));
  doc.stacked_bars("where the time goes, ranked plans", "seconds per iteration",
                   breakdown_bars(ranked, labels));
  if (!ranked.empty())
    memory_per_stage(doc, ranked.front(), "best plan: " + ranked.front().value("strategy", ""));
  return doc.str();
}

namespace {

/// Splits one CSV line (fields quoted with "" escapes).
std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        out.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        out.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.emplace_back();
    } else {
      out.back() += c;
    }
  }
  return out;
}

} // namespace

std::string plot_file(const std::string& path) {
  if (std::error_code ec; std::filesystem::is_directory(path, ec))
    throw InputError({.file = path}, "", "is a folder, not a file");
  std::ifstream in(path);
  if (!in) throw InputError({.file = path}, "", "cannot open file");
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  std::vector<nlohmann::json> rows;
  if (path.ends_with(".csv")) {
    std::istringstream lines(text);
    std::string line;
    std::vector<std::string> header;
    while (std::getline(lines, line)) {
      const std::vector<std::string> fields = csv_fields(line);
      if (header.empty()) {
        header = fields;
        continue;
      }
      nlohmann::json row = nlohmann::json::object();
      nlohmann::json values = nlohmann::json::object();
      const auto status = std::find(header.begin(), header.end(), "message");
      const auto gpus = std::find(header.begin(), header.end(), "gpus");
      for (std::size_t i = 0; i < fields.size() && i < header.size(); ++i) {
        const auto at = header.begin() + long(i);
        if (at > status && at < gpus)
          values[header[i]] = fields[i];
        else
          row[header[i]] = fields[i];
      }
      row["values"] = values;
      rows.push_back(row);
    }
    return plot_sweep(rows);
  }
  try {
    const nlohmann::json whole = nlohmann::json::parse(text);
    if (whole.is_object() && whole.contains("ranked")) return plot_plan(whole);
    if (whole.is_object()) rows.push_back(whole);
  } catch (const nlohmann::json::parse_error&) {
    std::istringstream lines(text);
    std::string line;
    int n = 0;
    while (std::getline(lines, line)) {
      ++n;
      if (line.empty()) continue;
      try {
        rows.push_back(nlohmann::json::parse(line));
      } catch (const nlohmann::json::parse_error& e) {
        throw InputError({.file = path, .line = n, .column = 1}, "",
                         "not a sweep row (JSON lines) or a plan (JSON)");
      }
    }
  }
  return plot_sweep(rows);
}

} // namespace odyssey
