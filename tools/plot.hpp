// Plots of sweep and plan results as SVG, written by a small SVG writer of our own: throughput
// against GPUs, the time breakdown as stacked bars, and memory per pipeline stage. Every series is
// a <g class="series" data-name="..."> group, so tests (and scripts) can find it.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace odyssey {

/// A line chart's series: (x, y) points, drawn in x order.
struct LineSeries {
  std::string name;
  std::vector<std::pair<double, double>> points;
};

/// Stacked bars: one bar per label, one segment per part (values[bar][part]).
struct StackedBars {
  std::vector<std::string> labels;
  std::vector<std::string> parts;
  std::vector<std::vector<double>> values;
};

/// One SVG document of charts stacked vertically.
class SvgDocument {
public:
  void line_chart(const std::string& title, const std::string& x_label, const std::string& y_label,
                  const std::vector<LineSeries>& series);
  void stacked_bars(const std::string& title, const std::string& y_label, const StackedBars& bars);
  [[nodiscard]] std::string str() const;

private:
  std::string body_;
  double height_ = 0.0;
};

/// The charts of a sweep's rows (the JSON objects `odyssey sweep` writes): tokens/s against GPUs
/// (one series per value of the keys that do not just set the GPU count), the breakdown per point, memory per
/// GPU per point (and per stage of the first point that has it).
std::string plot_sweep(const std::vector<nlohmann::json>& rows);
/// The charts of a plan (`odyssey plan --json`): tokens/s of the best plan per GPU count (or of
/// the ranked plans), their breakdown, and memory per stage of the best plan.
std::string plot_plan(const nlohmann::json& plan);
/// Reads a sweep output (.csv, or JSON lines) or a plan's JSON and plots it.
std::string plot_file(const std::string& path);

} // namespace odyssey
