// Plots of sweep and plan results as SVG, written by a small SVG writer of our own: throughput
// against GPUs, the time breakdown as stacked bars, and memory per GPU against the GPU's capacity.
// Every series is a <g class="series" data-name="..."> group, so tests (and scripts) can find it.
//
// The writer lays text out itself, from an estimate of each string's width in the widest common
// sans-serif face: titles and labels wrap or end in an ellipsis, and a chart grows (taller for a
// long legend or many bars, wider for long labels) rather than clip. tests/plots/ checks the result
// in a browser.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace odyssey {

/// A labelled line across a chart at one value of its value axis (a GPU's memory capacity, the
/// throughput a deadline needs), drawn dashed and named in the legend.
struct Reference {
  double value = 0.0;
  std::string colour; ///< empty: the text's ink; a palette colour tells a second line apart
  std::string label;
};

/// A line chart's series: (x, y) points, drawn in x order.
struct LineSeries {
  std::string name;
  std::vector<std::pair<double, double>> points;
};

/// A line chart of y against x. x runs on a log2 axis when every x is a power of two or the x
/// values span a factor of 16 or more (GPU counts), else on a linear one; y starts at 0.
struct LineChart {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::string legend_title;          ///< what the series' names are values of, e.g. the swept key
  std::vector<LineSeries> series;    ///< in legend order
  std::vector<Reference> references; ///< horizontal lines, at a y value
};

/// One segment kind of stacked bars: `key` names its series group, `label` is what the legend says.
struct BarPart {
  std::string key;
  std::string label;
};

/// Horizontal stacked bars: one bar per label (top to bottom), one segment per part
/// (values[bar][part]). Parts that are zero in every bar are left out of the legend.
struct StackedBars {
  std::string title;
  std::string value_label;
  std::vector<std::string> labels;
  std::vector<BarPart> parts;
  std::vector<std::vector<double>> values;
  std::vector<Reference> references; ///< vertical lines, at a value
};

/// One SVG document of charts stacked vertically; as wide as its widest chart (900 px at least).
class SvgDocument {
public:
  void line_chart(const LineChart& chart);
  void stacked_bars(const StackedBars& bars);
  [[nodiscard]] std::string str() const;

private:
  std::string body_;
  double width_ = 0.0;
  double height_ = 0.0;
};

/// Estimated width in pixels of `text` set in a sans-serif face at `size` px (DejaVu Sans's
/// advance widths, the widest of the usual faces, so that the estimate errs on the wide side).
double text_width(const std::string& text, double size);

/// The charts of a sweep's rows (the JSON objects `odyssey sweep` writes): tokens/s against GPUs
/// (one series per value of the keys that do not just set the GPU count, in numeric order, the keys
/// in the legend's title), the breakdown per point, memory per GPU per point (and per stage of the
/// first point that has it) against the GPU's memory.
std::string plot_sweep(const std::vector<nlohmann::json>& rows);
/// The charts of a plan (`odyssey plan --json`): tokens/s of the best plan per GPU count (or of
/// the ranked plans) with the throughput a deadline needs, the ranked plans' breakdown, each bar
/// named by its strategy, and memory per stage of the best plan against the GPU's memory.
std::string plot_plan(const nlohmann::json& plan);
/// Reads a sweep output (.csv, or JSON lines) or a plan's JSON and plots it.
std::string plot_file(const std::string& path);

} // namespace odyssey
