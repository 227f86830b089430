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
#include "models/input/units_parse.hpp"
#include "sim/report.hpp"

namespace odyssey {

namespace {

constexpr double MIN_WIDTH = 900;        ///< px; a chart with long labels or a long legend is wider
constexpr double PAD = 14;               ///< px around a chart and between its parts
constexpr double MIN_PLOT_WIDTH = 420;   ///< px of plot area a chart keeps beside its labels and legend
constexpr double LINE_PLOT_HEIGHT = 280; ///< px; more when the legend is taller
constexpr double LEGEND_TEXT = 240;      ///< px: a longer legend entry ends in an ellipsis
constexpr double BAR_LABEL = 340;        ///< px: a longer bar label wraps, on two lines at most
constexpr double SWATCH = 28;            ///< px: a legend entry's line or block and the gap after it
constexpr const char* INK = "#222222";   ///< every text: dark on white, whatever the series' colour
constexpr const char* GRID = "#e4e4e4";
/// Okabe and Ito's colour-blind-safe palette (2008), yellow last: it is faint as a line on white.
constexpr const char* COLOURS[] = {"#0072B2", "#E69F00", "#009E73", "#D55E00",
                                   "#CC79A7", "#56B4E9", "#000000", "#F0E442"};

/// A face size and weight; bold DejaVu Sans runs up to 15% wider than the book weight.
struct Font {
  double size;
  bool bold = false;
  [[nodiscard]] double width(const std::string& text) const {
    return text_width(text, size) * (bold ? 1.15 : 1.0);
  }
  [[nodiscard]] double line() const { return std::ceil(size * 1.35); }
};

constexpr Font TITLE{.size = 15, .bold = true};
constexpr Font LABEL{.size = 12};
constexpr Font LEGEND_TITLE{.size = 12, .bold = true};
constexpr Font TICK{.size = 11};

/// Advance width of an ASCII character in DejaVu Sans, in em.
double advance(char c) {
  if (c >= '0' && c <= '9') return 0.637;
  if (c >= 'A' && c <= 'Z') return c == 'I' ? 0.295 : c == 'M' ? 0.863 : c == 'W' ? 0.989 : 0.77;
  switch (c) {
  case ' ':
  case '.':
  case ',': return 0.318;
  case 'i':
  case 'j':
  case 'l':
  case '\'': return 0.278;
  case ':':
  case ';':
  case '/':
  case '\\':
  case '|': return 0.337;
  case 'f': return 0.352;
  case '-': return 0.361;
  case '(':
  case ')':
  case '[':
  case ']':
  case '{':
  case '}': return 0.39;
  case 't': return 0.392;
  case 'r': return 0.411;
  case '"': return 0.46;
  case '_':
  case '*': return 0.5;
  case 's': return 0.521;
  case 'z': return 0.525;
  case 'c': return 0.55;
  case 'k':
  case 'v':
  case 'x':
  case 'y': return 0.592;
  case '&': return 0.78;
  case 'w': return 0.818;
  case '=':
  case '+':
  case '#':
  case '<':
  case '>':
  case '~': return 0.838;
  case '%': return 0.95;
  case 'm': return 0.974;
  case '@': return 1.0;
  default: return 0.64; // the other lower-case letters
  }
}

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

/// `text`, cut to `width` px with an ellipsis when it is wider.
std::string ellipsize(const std::string& text, double width, Font font) {
  if (font.width(text) <= width) return text;
  const std::string dots = "\u2026";
  std::string out = text;
  while (!out.empty() && font.width(out + dots) > width) {
    unsigned char last = 0;
    do { // a whole UTF-8 character: its continuation bytes, then its first byte
      last = static_cast<unsigned char>(out.back());
      out.pop_back();
    } while (!out.empty() && (last & 0xC0) == 0x80);
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out + dots;
}

/// `text` in lines of at most `width` px, `max_lines` at most (the last one then ends in an
/// ellipsis). Lines break at spaces and, inside a word wider than a line (a key such as
/// "training.gradient_accumulation_fusion"), after a '.', '_', '/' or '-'.
std::vector<std::string> wrap(const std::string& text, double width, Font font, std::size_t max_lines = 3) {
  struct Piece {
    std::string text;
    bool after_space;
  };
  std::vector<Piece> pieces;
  std::istringstream words(text);
  for (std::string word; words >> word;) {
    if (font.width(word) <= width) {
      pieces.push_back({word, true});
      continue;
    }
    bool first = true;
    for (std::size_t at = 0; at < word.size();) {
      const std::size_t end = std::min(word.find_first_of("._/-", at), word.size() - 1) + 1;
      pieces.push_back({word.substr(at, end - at), first});
      first = false;
      at = end;
    }
  }
  std::vector<std::string> lines;
  std::string line;
  for (const Piece& p : pieces) {
    const std::string longer = line.empty() ? p.text : line + (p.after_space ? " " : "") + p.text;
    if (line.empty() || font.width(longer) <= width) {
      line = longer;
    } else {
      lines.push_back(line);
      line = p.text;
    }
  }
  if (!line.empty() || lines.empty()) lines.push_back(line);
  if (lines.size() > max_lines) {
    std::string rest;
    for (std::size_t i = max_lines - 1; i < lines.size(); ++i) rest += (rest.empty() ? "" : " ") + lines[i];
    lines.resize(max_lines);
    lines.back() = rest;
  }
  for (std::string& l : lines) l = ellipsize(l, width, font);
  return lines;
}

std::string short_number(double v) {
  const double a = std::abs(v);
  if (a >= 1e12) return fmt::format("{:.3g}T", v / 1e12);
  if (a >= 1e9) return fmt::format("{:.3g}G", v / 1e9);
  if (a >= 1e6) return fmt::format("{:.3g}M", v / 1e6);
  if (a >= 1e3) return fmt::format("{:.3g}k", v / 1e3);
  return fmt::format("{:.3g}", v);
}

/// A GPU count as it is ("1024"), other values short ("1.5M").
std::string tick_number(double v) {
  if (v == std::round(v) && std::abs(v) < 1e6) return fmt::format("{:.0f}", v);
  return short_number(v);
}

/// A "nice" upper bound for an axis from 0.
double nice_max(double v) {
  if (v <= 0) return 1;
  const double p = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0})
    if (m * p >= v) return m * p;
  return 10 * p;
}

/// A round step that cuts `span` into about `steps` parts.
double nice_step(double span, int steps) {
  const double raw = span / steps;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 2.5, 5.0})
    if (m * p >= raw) return m * p;
  return 10 * p;
}

/// Ticks from 0 to `hi` (a nice_max).
std::vector<double> ticks_from_zero(double hi) {
  const double step = nice_step(hi, 5);
  std::vector<double> ticks;
  for (int k = 0; k * step <= hi * (1 + 1e-9); ++k) ticks.push_back(k * step);
  return ticks;
}

std::string svg_text(double x, double y, Font font, const std::string& content, const char* anchor = "start",
                     const std::string& extra = "") {
  return fmt::format(
      "<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"{}\"{} text-anchor=\"{}\" fill=\"{}\"{}>{}</text>\n", x, y,
      font.size, font.bold ? " font-weight=\"bold\"" : "", anchor, INK, extra, escape(content));
}

/// Text that may have been cut: the whole of it as the tooltip.
std::string cut_text(double x, double y, Font font, const std::string& shown, const std::string& whole,
                     const char* anchor = "start") {
  if (shown == whole) return svg_text(x, y, font, shown, anchor);
  return fmt::format("<g><title>{}</title>{}</g>\n", escape(whole), svg_text(x, y, font, shown, anchor));
}

/// A point's marker: a circle, square, diamond or triangle by series, so that series differ in
/// shape as well as colour.
std::string marker(std::size_t series, double x, double y, const std::string& colour,
                   const std::string& tooltip) {
  const std::string title = "<title>" + escape(tooltip) + "</title>";
  switch (series % 4) {
  case 0:
    return fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" fill=\"{}\">{}</circle>\n", x, y, colour,
                       title);
  case 1:
    return fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"7\" height=\"7\" fill=\"{}\">{}</rect>\n",
                       x - 3.5, y - 3.5, colour, title);
  case 2:
    return fmt::format("<polygon points=\"{:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f}\" "
                       "fill=\"{}\">{}</polygon>\n",
                       x, y - 5, x + 5, y, x, y + 5, x - 5, y, colour, title);
  default:
    return fmt::format(
        "<polygon points=\"{:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f}\" fill=\"{}\">{}</polygon>\n", x, y - 5,
        x + 4.5, y + 4, x - 4.5, y + 4, colour, title);
  }
}

/// A reference line's colour: the text's ink unless it has one of its own.
std::string colour_of(const Reference& r) {
  return r.colour.empty() ? INK : r.colour;
}

std::string dashed_line(double x1, double y1, double x2, double y2, const std::string& colour) {
  return fmt::format(
      "<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"1.5\" "
      "stroke-dasharray=\"6 4\"/>\n",
      x1, y1, x2, y2, colour);
}

std::string solid_line(double x1, double y1, double x2, double y2, const char* colour) {
  return fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\"/>\n", x1,
                     y1, x2, y2, colour);
}

/// A legend: its title (wrapped) above one entry per series or reference (cut to LEGEND_TEXT).
struct Legend {
  enum class Mark { LINE, BLOCK, DASHED };
  struct Entry {
    std::string label;
    std::string colour;
    Mark mark;
    std::size_t shape; ///< the marker of a LINE entry
  };
  std::string title;
  std::vector<Entry> entries;

  [[nodiscard]] bool empty() const { return title.empty() && entries.empty(); }
  /// Inner width: the widest entry, or the title up to the widest an entry may be.
  [[nodiscard]] double inner_width() const {
    double w = std::min(SWATCH + LEGEND_TEXT, LEGEND_TITLE.width(title));
    for (const Entry& e : entries) w = std::max(w, SWATCH + std::min(LEGEND_TEXT, LABEL.width(e.label)));
    return w;
  }
  /// Width taken beside a plot, the gap before it included.
  [[nodiscard]] double width() const { return empty() ? 0.0 : PAD + inner_width(); }
  [[nodiscard]] std::vector<std::string> title_lines() const {
    return title.empty() ? std::vector<std::string>{} : wrap(title, inner_width(), LEGEND_TITLE);
  }
  [[nodiscard]] double height() const {
    return double(title_lines().size()) * LEGEND_TITLE.line() + double(entries.size()) * ENTRY + 4;
  }
  /// Draws the legend with its top left corner at (x, y).
  [[nodiscard]] std::string draw(double x, double y) const {
    std::string o = "<g class=\"legend\">\n";
    for (const std::string& line : title_lines()) {
      o += svg_text(x, y + LEGEND_TITLE.size, LEGEND_TITLE, line);
      y += LEGEND_TITLE.line();
    }
    for (const Entry& e : entries) {
      const double mid = y + ENTRY / 2;
      switch (e.mark) {
      case Mark::LINE:
        o += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" "
                         "stroke-width=\"2\"/>\n",
                         x, mid, x + SWATCH - 8, mid, e.colour);
        o += marker(e.shape, x + (SWATCH - 8) / 2, mid, e.colour, e.label);
        break;
      case Mark::BLOCK:
        o += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{}\" height=\"10\" fill=\"{}\"/>\n", x + 3,
                         mid - 5, SWATCH - 14, e.colour);
        break;
      case Mark::DASHED: o += dashed_line(x, mid, x + SWATCH - 8, mid, e.colour); break;
      }
      o += cut_text(x + SWATCH, mid + LABEL.size * 0.36, LABEL, ellipsize(e.label, LEGEND_TEXT, LABEL),
                    e.label);
      y += ENTRY;
    }
    return o + "</g>\n";
  }

  static constexpr double ENTRY = 19; ///< px per entry
};

/// The title's lines, centred on the chart, from `y`; returns the y below them.
double draw_title(std::string& o, const std::string& title, double width, double y) {
  for (const std::string& line : wrap(title, width - 2 * PAD, TITLE)) {
    o += svg_text(width / 2, y + TITLE.size, TITLE, line, "middle");
    y += TITLE.line() + 2;
  }
  return y;
}

} // namespace

double text_width(const std::string& text, double size) {
  double em = 0;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x80)
      em += advance(c);
    else if ((byte & 0xC0) != 0x80)
      em += 1.0; // the first byte of a character outside ASCII: as wide as the widest letters
  }
  return em * size;
}

void SvgDocument::line_chart(const LineChart& c) {
  double x_lo = INFINITY, x_hi = -INFINITY, y_top = 0;
  bool powers_of_two = true;
  std::set<double> xs;
  for (const LineSeries& s : c.series)
    for (const auto& [x, y] : s.points) {
      x_lo = std::min(x_lo, x);
      x_hi = std::max(x_hi, x);
      y_top = std::max(y_top, y);
      xs.insert(x);
      powers_of_two = powers_of_two && x > 0 && std::exp2(std::round(std::log2(x))) == x;
    }
  for (const Reference& r : c.references) y_top = std::max(y_top, r.value);
  if (xs.empty()) x_lo = 0, x_hi = 1;
  const bool log_x = x_lo > 0 && ((powers_of_two && xs.size() >= 2) || x_hi / x_lo >= 16);
  // The x domain, a little wider than the points, and its ticks: powers of two on a log2 axis.
  double d_lo = 0, d_hi = 1;
  std::vector<double> x_ticks;
  if (log_x) {
    d_lo = std::log2(x_lo) - 0.3;
    d_hi = std::log2(x_hi) + 0.3;
    for (double k = std::ceil(d_lo); k <= d_hi; ++k) x_ticks.push_back(std::exp2(k));
  } else {
    const double span = x_hi > x_lo ? x_hi - x_lo : std::max(1.0, std::abs(x_lo));
    d_lo = x_lo - 0.05 * span;
    d_hi = x_hi + 0.05 * span;
    const double step = nice_step(d_hi - d_lo, 5);
    for (double t = std::ceil(d_lo / step) * step; t <= d_hi; t += step) x_ticks.push_back(t);
  }
  const double y_hi = nice_max(y_top * 1.02);
  const std::vector<double> y_ticks = ticks_from_zero(y_hi);

  Legend legend{.title = c.legend_title, .entries = {}};
  if (c.series.size() > 1 || !c.legend_title.empty() || !c.references.empty()) {
    for (std::size_t i = 0; i < c.series.size(); ++i)
      legend.entries.push_back({c.series[i].name, COLOURS[i % std::size(COLOURS)], Legend::Mark::LINE, i});
    for (const Reference& r : c.references)
      legend.entries.push_back({r.label, colour_of(r), Legend::Mark::DASHED, 0});
  }
  double tick_w = 0;
  for (double t : y_ticks) tick_w = std::max(tick_w, TICK.width(short_number(t)));
  const double left = PAD + LABEL.line() + 8 + tick_w + 8;
  const double width = std::max(MIN_WIDTH, left + MIN_PLOT_WIDTH + legend.width() + PAD);
  const double pw = width - left - legend.width() - PAD;

  std::string& o = body_;
  const double y0 = height_;
  o += fmt::format("<g class=\"chart\" data-title=\"{}\">\n", escape(c.title));
  const double top = draw_title(o, c.title, width, y0 + PAD) + 10;
  const double ph = std::max(LINE_PLOT_HEIGHT, legend.height());
  const double bottom = top + ph;
  auto px = [&](double x) { return left + ((log_x ? std::log2(x) : x) - d_lo) / (d_hi - d_lo) * pw; };
  auto py = [&](double y) { return bottom - y / y_hi * ph; };

  for (double t : y_ticks) {
    o += solid_line(left, py(t), left + pw, py(t), GRID);
    o += svg_text(left - 8, py(t) + TICK.size * 0.36, TICK, short_number(t), "end");
  }
  // Every tick a label where they fit, else every k-th.
  double label_w = 0;
  for (double t : x_ticks) label_w = std::max(label_w, TICK.width(tick_number(t)));
  const double spacing = x_ticks.size() > 1 ? px(x_ticks[1]) - px(x_ticks[0]) : pw;
  const auto every = static_cast<std::size_t>(std::max(1.0, std::ceil((label_w + 10) / spacing)));
  for (std::size_t k = 0; k < x_ticks.size(); ++k) {
    o += solid_line(px(x_ticks[k]), top, px(x_ticks[k]), bottom, GRID);
    if (k % every == 0) o += svg_text(px(x_ticks[k]), bottom + 18, TICK, tick_number(x_ticks[k]), "middle");
  }
  o += solid_line(left, top, left, bottom, INK);
  o += solid_line(left, bottom, left + pw, bottom, INK);
  const std::string x_label = c.x_label + (log_x ? " (log scale)" : "");
  o += cut_text(left + pw / 2, bottom + 40, LABEL, ellipsize(x_label, pw, LABEL), x_label, "middle");
  const double y_mid = top + ph / 2;
  const double y_x = PAD + LABEL.size;
  o += svg_text(y_x, y_mid, LABEL, ellipsize(c.y_label, ph, LABEL), "middle",
                fmt::format(" transform=\"rotate(-90 {:.1f} {:.1f})\"", y_x, y_mid));

  for (const Reference& r : c.references)
    o += dashed_line(left, py(r.value), left + pw, py(r.value), colour_of(r));
  for (std::size_t i = 0; i < c.series.size(); ++i) {
    const LineSeries& s = c.series[i];
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
      o += marker(
          i, px(x), py(y), colour,
          fmt::format("{}: {} {}, {} {}", s.name, tick_number(x), c.x_label, short_number(y), c.y_label));
    o += "</g>\n";
  }
  if (!legend.empty()) o += legend.draw(left + pw + PAD, top);
  o += "</g>\n";
  width_ = std::max(width_, width);
  height_ = bottom + 40 + PAD;
}

void SvgDocument::stacked_bars(const StackedBars& b) {
  double x_top = 0;
  for (const auto& row : b.values) {
    double sum = 0;
    for (double v : row) sum += std::max(0.0, v);
    x_top = std::max(x_top, sum);
  }
  for (const Reference& r : b.references) x_top = std::max(x_top, r.value);
  const double x_hi = nice_max(x_top * 1.02);
  const std::vector<double> x_ticks = ticks_from_zero(x_hi);

  std::vector<std::vector<std::string>> label_lines;
  double label_w = 0;
  std::size_t most_lines = 1;
  for (const std::string& label : b.labels) {
    label_lines.push_back(wrap(label, BAR_LABEL, TICK, 2));
    for (const std::string& line : label_lines.back()) label_w = std::max(label_w, TICK.width(line));
    most_lines = std::max(most_lines, label_lines.back().size());
  }
  Legend legend;
  for (std::size_t part = 0; part < b.parts.size(); ++part) {
    bool drawn = false;
    for (const auto& row : b.values) drawn = drawn || (part < row.size() && row[part] > 0);
    if (drawn)
      legend.entries.push_back(
          {b.parts[part].label, COLOURS[part % std::size(COLOURS)], Legend::Mark::BLOCK, 0});
  }
  for (const Reference& r : b.references)
    legend.entries.push_back({r.label, colour_of(r), Legend::Mark::DASHED, 0});
  if (b.parts.size() == 1 && b.references.empty()) legend.entries.clear(); // the value axis names it

  const double left = PAD + label_w + 10;
  const double width = std::max(MIN_WIDTH, left + MIN_PLOT_WIDTH + legend.width() + PAD);
  const double pw = width - left - legend.width() - PAD;
  const double row_h = std::max(26.0, double(most_lines) * TICK.line() + 12);
  const double ph = std::max({double(b.labels.size()) * row_h, legend.height(), 60.0});
  const double slot = b.labels.empty() ? ph : ph / double(b.labels.size());
  const double thickness = std::min(18.0, slot * 0.62);

  std::string& o = body_;
  const double y0 = height_;
  o += fmt::format("<g class=\"chart\" data-title=\"{}\">\n", escape(b.title));
  const double top = draw_title(o, b.title, width, y0 + PAD) + 10;
  const double bottom = top + ph;
  auto px = [&](double v) { return left + v / x_hi * pw; };

  for (double t : x_ticks) {
    o += solid_line(px(t), top, px(t), bottom, GRID);
    o += svg_text(px(t), bottom + 18, TICK, short_number(t), "middle");
  }
  o += cut_text(left + pw / 2, bottom + 40, LABEL, ellipsize(b.value_label, pw, LABEL), b.value_label,
                "middle");
  for (std::size_t i = 0; i < b.labels.size(); ++i) {
    const std::vector<std::string>& lines = label_lines[i];
    const double centre = top + slot * (double(i) + 0.5);
    double y = centre - (double(lines.size()) - 1) * TICK.line() / 2 + TICK.size * 0.36;
    for (const std::string& line : lines) {
      o += cut_text(left - 10, y, TICK, line, lines.size() == 1 ? b.labels[i] : line, "end");
      y += TICK.line();
    }
  }
  if (b.labels.empty()) o += svg_text(left + pw / 2, top + ph / 2, LABEL, "no points to draw", "middle");
  for (std::size_t part = 0; part < b.parts.size(); ++part) {
    const char* colour = COLOURS[part % std::size(COLOURS)];
    o += fmt::format("<g class=\"series\" data-name=\"{}\">\n", escape(b.parts[part].key));
    for (std::size_t i = 0; i < b.labels.size(); ++i) {
      double below = 0;
      for (std::size_t q = 0; q < part; ++q) below += std::max(0.0, b.values[i][q]);
      const double v = std::max(0.0, b.values[i][part]);
      if (v <= 0) continue;
      o += fmt::format(
          "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\"><title>{}, {}: "
          "{}</title></rect>\n",
          px(below), top + slot * (double(i) + 0.5) - thickness / 2, px(below + v) - px(below), thickness,
          colour, escape(b.labels[i]), escape(b.parts[part].label), short_number(v));
    }
    o += "</g>\n";
  }
  o += solid_line(left, top, left, bottom, INK);
  o += solid_line(left, bottom, left + pw, bottom, INK);
  for (const Reference& r : b.references)
    o += dashed_line(px(r.value), top - 4, px(r.value), bottom, colour_of(r));
  if (!legend.empty()) o += legend.draw(left + pw + PAD, top);
  o += "</g>\n";
  width_ = std::max(width_, width);
  height_ = bottom + 40 + PAD;
}

std::string SvgDocument::str() const {
  return fmt::format("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
                     "width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" font-family=\"sans-serif\">\n"
                     "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{2}</svg>\n",
                     std::max(width_, MIN_WIDTH), std::ceil(std::max(height_, 1.0)), body_);
}

// ---- sweep and plan charts ------------------------------------------------------------------------

namespace {

const std::vector<std::string> MEMORY = {"weights", "gradients", "optimizer_states", "activations",
                                         "workspace"};
constexpr double GIB = double(1 << 30);
constexpr std::size_t MOST_BARS = 24; ///< bars per chart; a title says when there were more

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

std::string joined(const std::vector<std::string>& parts, const std::string& separator) {
  std::string out;
  for (const std::string& p : parts) out += (out.empty() ? "" : separator) + p;
  return out;
}

/// A swept value's place in order: counts and quantities with a unit by their value (50 Gb/s before
/// 100 Gb/s), anything else by its text.
struct ValueOrder {
  int kind = 0; ///< 0: a count; 1 + Dimension: a quantity; after them: text
  double value = 0.0;
  std::string text;
  auto operator<=>(const ValueOrder&) const = default;
};

ValueOrder value_order(const std::string& text) {
  try {
    return {.kind = 0, .value = parse_count(text), .text = text};
  } catch (const std::exception&) {
  }
  int kind = 1;
  for (Dimension d :
       {Dimension::BYTES, Dimension::BYTE_RATE, Dimension::TIME, Dimension::FLOP_RATE, Dimension::FLOPS}) {
    try {
      return {.kind = kind, .value = parse_quantity(text, d), .text = text};
    } catch (const std::exception&) {
    }
    ++kind;
  }
  return {.kind = kind, .value = 0.0, .text = text};
}

std::string value_text(const nlohmann::json& row, const std::string& key) {
  if (!row.contains("values") || !row.at("values").contains(key)) return "";
  const nlohmann::json& v = row.at("values").at(key);
  return v.is_string() ? v.get<std::string>() : v.dump();
}

std::vector<ValueOrder> order_of(const nlohmann::json& row, const std::vector<std::string>& keys) {
  std::vector<ValueOrder> order;
  for (const std::string& k : keys) order.push_back(value_order(value_text(row, k)));
  return order;
}

/// The swept keys in the sweep's order (a row's "overrides" lists them so: "k=v; k2=v2"), then any
/// other key of the rows' values.
std::vector<std::string> swept_keys(const std::vector<nlohmann::json>& rows) {
  std::vector<std::string> keys;
  auto add = [&](const std::string& k) {
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
  };
  for (const auto& r : rows) {
    if (!r.contains("values")) continue;
    if (r.contains("overrides") && r.at("overrides").is_string()) {
      const std::string overrides = r.at("overrides").get<std::string>();
      for (std::size_t at = 0; at < overrides.size();) {
        const std::size_t end = std::min(overrides.find("; ", at), overrides.size());
        const std::string key = overrides.substr(at, overrides.find('=', at) - at);
        if (r.at("values").contains(key)) add(key);
        at = end + 2;
      }
    }
    for (const auto& [k, v] : r.at("values").items()) add(k);
  }
  return keys;
}

/// "dp" for "parallelism.dp": a bar's label names each key by its last part.
std::string short_key(const std::string& key) {
  return key.substr(key.rfind('.') == std::string::npos ? 0 : key.rfind('.') + 1);
}

std::vector<BarPart> breakdown_bar_parts() {
  std::vector<BarPart> parts;
  for (const BreakdownPart& p : breakdown_parts())
    parts.push_back({std::string(p.key), std::string(p.label)});
  return parts;
}

std::string more_than_drawn(std::size_t rows, const char* what) {
  return rows > MOST_BARS ? fmt::format(" (the first {} of {} {})", MOST_BARS, rows, what) : "";
}

StackedBars breakdown_bars(const std::string& title, const std::vector<nlohmann::json>& rows,
                           const std::vector<std::string>& labels) {
  StackedBars bars{.title = title, .value_label = "seconds per iteration", .parts = breakdown_bar_parts()};
  for (std::size_t i = 0; i < rows.size() && i < MOST_BARS; ++i) {
    bars.labels.push_back(labels[i]);
    std::vector<double> v;
    for (const BarPart& part : bars.parts) v.push_back(number(rows[i], part.key));
    bars.values.push_back(v);
  }
  return bars;
}

/// The GPU memory of the rows' machines (one line per capacity), in GiB.
std::vector<Reference> memory_capacity(const std::vector<nlohmann::json>& rows) {
  std::set<double> capacities;
  for (const auto& r : rows)
    if (number(r, "gpu_memory_bytes") > 0) capacities.insert(number(r, "gpu_memory_bytes"));
  std::vector<Reference> lines;
  for (double c : capacities)
    lines.push_back({.value = c / GIB, .label = "GPU memory " + format_quantity(c, Dimension::BYTES)});
  return lines;
}

void memory_per_stage(SvgDocument& doc, const nlohmann::json& row, const std::string& what,
                      const std::vector<Reference>& capacity) {
  if (!row.contains("memory_per_stage") || !row.at("memory_per_stage").is_array()) return;
  StackedBars bars{.title = "memory per GPU of each pipeline stage, " + what,
                   .value_label = "GiB per GPU",
                   .references = capacity};
  for (const std::string& k : MEMORY) {
    std::string label = k;
    std::replace(label.begin(), label.end(), '_', ' ');
    bars.parts.push_back({k, label});
  }
  int s = 0;
  for (const auto& stage : row.at("memory_per_stage")) {
    bars.labels.push_back(fmt::format("stage {}", s++));
    std::vector<double> v;
    for (const std::string& k : MEMORY) v.push_back(number(stage, k) / GIB);
    bars.values.push_back(v);
  }
  doc.stacked_bars(bars);
}

} // namespace

std::string plot_sweep(const std::vector<nlohmann::json>& all) {
  std::vector<nlohmann::json> rows;
  for (const auto& r : all)
    if (usable(r)) rows.push_back(r);
  const std::vector<std::string> keys = swept_keys(rows);
  std::stable_sort(rows.begin(), rows.end(),
                   [&](const auto& a, const auto& b) { return order_of(a, keys) < order_of(b, keys); });
  SvgDocument doc;
  // Series: the values of the swept keys, but for those that only change the GPU count (one
  // value per count and one count per value), which run along x.
  std::map<std::string, std::map<std::string, std::set<double>>> gpus_of;   // key -> value -> GPU counts
  std::map<std::string, std::map<double, std::set<std::string>>> values_of; // key -> GPU count -> values
  for (const auto& r : rows)
    for (const std::string& k : keys) {
      gpus_of[k][value_text(r, k)].insert(number(r, "gpus"));
      values_of[k][number(r, "gpus")].insert(value_text(r, k));
    }
  auto along_x = [&](const std::string& k) {
    if (gpus_of[k].size() < 2) return false;
    for (const auto& [value, counts] : gpus_of[k])
      if (counts.size() != 1) return false;
    for (const auto& [count, values] : values_of[k])
      if (values.size() != 1) return false;
    return true;
  };
  std::vector<std::string> series_keys;
  for (const std::string& k : keys)
    if (!along_x(k)) series_keys.push_back(k);
  std::map<std::vector<ValueOrder>, LineSeries> series; // in the numeric order of the values
  std::vector<std::string> labels;
  for (const auto& r : rows) {
    std::vector<std::string> name, label;
    for (const std::string& k : series_keys) name.push_back(value_text(r, k));
    for (const std::string& k : keys) label.push_back(short_key(k) + " " + value_text(r, k));
    LineSeries& s = series[order_of(r, series_keys)];
    s.name = series_keys.empty() ? "tokens/s" : joined(name, ", ");
    s.points.emplace_back(number(r, "gpus"), number(r, "tokens_per_s"));
    labels.push_back(label.empty() ? fmt::format("point {}", labels.size()) : joined(label, ", "));
  }
  LineChart throughput{.title = "throughput against GPUs",
                       .x_label = "GPUs",
                       .y_label = "tokens/s",
                       .legend_title = joined(series_keys, ", ")};
  for (auto& [order, s] : series) throughput.series.push_back(s);
  doc.line_chart(throughput);
  doc.stacked_bars(breakdown_bars("where the time goes, per point" + more_than_drawn(rows.size(), "points"),
                                  rows, labels));
  const std::vector<Reference> capacity = memory_capacity(rows);
  StackedBars memory{.title = "peak memory per GPU, per point" + more_than_drawn(rows.size(), "points"),
                     .value_label = "GiB per GPU",
                     .parts = {{"memory_per_gpu", "peak memory per GPU"}},
                     .references = capacity};
  for (std::size_t i = 0; i < rows.size() && i < MOST_BARS; ++i) {
    memory.labels.push_back(labels[i]);
    memory.values.push_back({number(rows[i], "memory_per_gpu_bytes") / GIB});
  }
  doc.stacked_bars(memory);
  // Runs with failures: the share of wall time that trains, per point (a checkpoint interval or
  // spares sweep reads here).
  StackedBars goodput{.title = "goodput with failures, per point" + more_than_drawn(rows.size(), "points"),
                      .value_label = "% of wall time training",
                      .parts = {{"goodput", "goodput"}}};
  for (std::size_t i = 0; i < rows.size() && i < MOST_BARS; ++i) {
    if (!rows[i].contains("goodput") || !rows[i].at("goodput").is_number()) continue;
    goodput.labels.push_back(labels[i]);
    goodput.values.push_back({100 * number(rows[i], "goodput")});
  }
  if (!goodput.values.empty()) doc.stacked_bars(goodput);
  for (std::size_t i = 0; i < rows.size(); ++i)
    if (rows[i].contains("memory_per_stage")) {
      memory_per_stage(doc, rows[i], labels[i], capacity);
      break;
    }
  return doc.str();
}

std::string plot_plan(const nlohmann::json& plan) {
  SvgDocument doc;
  std::vector<nlohmann::json> ranked;
  for (const auto& r : plan.value("ranked", nlohmann::json::array())) ranked.push_back(r);
  // Each bar names its strategy, its fidelity and, when the plans differ in size, its GPUs.
  std::set<double> sizes;
  for (const auto& r : ranked) sizes.insert(number(r, "gpus"));
  std::vector<std::string> labels;
  for (std::size_t i = 0; i < ranked.size(); ++i)
    labels.push_back(
        fmt::format("#{} {}{} ({})", i + 1,
                    sizes.size() > 1 ? fmt::format("{:.0f} GPUs: ", number(ranked[i], "gpus")) : "",
                    ranked[i].value("strategy", ""), ranked[i].value("fidelity", "")));
  std::vector<Reference> deadline;
  if (number(plan, "deadline_days") > 0 && number(plan, "tokens") > 0) {
    const double need = number(plan, "tokens") / (number(plan, "deadline_days") * 86400.0);
    deadline.push_back({.value = need,
                        .label = fmt::format("{:g}-day deadline: {} tokens/s", number(plan, "deadline_days"),
                                             short_number(need))});
  }
  const nlohmann::json per_count = plan.value("best_per_gpus", nlohmann::json::array());
  if (!per_count.empty()) {
    LineSeries best{.name = "best plan", .points = {}};
    for (const auto& r : per_count) best.points.emplace_back(number(r, "gpus"), number(r, "tokens_per_s"));
    doc.line_chart({.title = "throughput of the best plan of each GPU count",
                    .x_label = "GPUs",
                    .y_label = "tokens/s",
                    .series = {best},
                    .references = deadline});
  } else {
    StackedBars throughput{.title =
                               "throughput of the ranked plans" + more_than_drawn(ranked.size(), "plans"),
                           .value_label = "tokens/s",
                           .parts = {{"tokens_per_s", "tokens/s"}},
                           .references = deadline};
    for (std::size_t i = 0; i < ranked.size() && i < MOST_BARS; ++i) {
      throughput.labels.push_back(labels[i]);
      throughput.values.push_back({number(ranked[i], "tokens_per_s")});
    }
    doc.stacked_bars(throughput);
  }
  doc.stacked_bars(breakdown_bars(
      "where the time goes, ranked plans" + more_than_drawn(ranked.size(), "plans"), ranked, labels));
  if (!ranked.empty()) {
    std::vector<Reference> lines = memory_capacity(std::vector<nlohmann::json>(1, plan));
    // The planner's limit, when its safety margin puts it below the GPU's memory.
    const double limit = number(plan, "memory_limit_bytes");
    if (limit > 0 && limit < number(plan, "gpu_memory_bytes"))
      lines.push_back(
          {.value = limit / GIB,
           .colour = COLOURS[3],
           .label = fmt::format("plan limit {} ({:g}% margin)", format_quantity(limit, Dimension::BYTES),
                                number(plan, "memory_margin") * 100)});
    memory_per_stage(doc, ranked.front(), "best plan: " + ranked.front().value("strategy", ""), lines);
  }
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
  const std::string content = buffer.str();
  std::vector<nlohmann::json> rows;
  if (path.ends_with(".csv")) {
    std::istringstream lines(content);
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
    const nlohmann::json whole = nlohmann::json::parse(content);
    if (whole.is_object() && whole.contains("ranked")) return plot_plan(whole);
    if (whole.is_object()) rows.push_back(whole);
  } catch (const nlohmann::json::parse_error&) {
    std::istringstream lines(content);
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
