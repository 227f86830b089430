// One table of units, in the style of SimGrid's xbt_parse_units.cpp: every unit string Odyssey
// accepts, its dimension and its factor to SI base units. Parsing and formatting both read it.
#include "models/input/units_parse.hpp"

#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <string>

#include <fmt/format.h>

namespace odyssey {
namespace {

/// How a unit takes part in formatting: which family of prefixes it belongs to.
enum class Family { DECIMAL, BINARY, BITS, ALIAS };

struct Unit {
  std::string_view name;
  Dimension dim;
  double factor; ///< SI base units per 1 of this unit
  Family family;
};

constexpr double KIB = 1024.0;
constexpr double MIB = KIB * 1024.0;
constexpr double GIB = MIB * 1024.0;
constexpr double TIB = GIB * 1024.0;
constexpr double PIB = TIB * 1024.0;

// Within a dimension and family the units go from smallest to largest; the order is also the
// order messages list them in. ALIAS units are accepted but neither listed nor chosen for output.
constexpr std::array UNITS{
    Unit{"b", Dimension::BYTES, 1.0 / 8, Family::BITS},
    Unit{"kb", Dimension::BYTES, 1e3 / 8, Family::BITS},
    Unit{"Mb", Dimension::BYTES, 1e6 / 8, Family::BITS},
    Unit{"Gb", Dimension::BYTES, 1e9 / 8, Family::BITS},
    Unit{"Tb", Dimension::BYTES, 1e12 / 8, Family::BITS},
    Unit{"B", Dimension::BYTES, 1.0, Family::DECIMAL},
    Unit{"kB", Dimension::BYTES, 1e3, Family::DECIMAL},
    Unit{"MB", Dimension::BYTES, 1e6, Family::DECIMAL},
    Unit{"GB", Dimension::BYTES, 1e9, Family::DECIMAL},
    Unit{"TB", Dimension::BYTES, 1e12, Family::DECIMAL},
    Unit{"PB", Dimension::BYTES, 1e15, Family::DECIMAL},
    Unit{"KiB", Dimension::BYTES, KIB, Family::BINARY},
    Unit{"MiB", Dimension::BYTES, MIB, Family::BINARY},
    Unit{"GiB", Dimension::BYTES, GIB, Family::BINARY},
    Unit{"TiB", Dimension::BYTES, TIB, Family::BINARY},
    Unit{"PiB", Dimension::BYTES, PIB, Family::BINARY},

    Unit{"b/s", Dimension::BYTE_RATE, 1.0 / 8, Family::BITS},
    Unit{"kb/s", Dimension::BYTE_RATE, 1e3 / 8, Family::BITS},
    Unit{"Mb/s", Dimension::BYTE_RATE, 1e6 / 8, Family::BITS},
    Unit{"Gb/s", Dimension::BYTE_RATE, 1e9 / 8, Family::BITS},
    Unit{"Tb/s", Dimension::BYTE_RATE, 1e12 / 8, Family::BITS},
    Unit{"B/s", Dimension::BYTE_RATE, 1.0, Family::DECIMAL},
    Unit{"kB/s", Dimension::BYTE_RATE, 1e3, Family::DECIMAL},
    Unit{"MB/s", Dimension::BYTE_RATE, 1e6, Family::DECIMAL},
    Unit{"GB/s", Dimension::BYTE_RATE, 1e9, Family::DECIMAL},
    Unit{"TB/s", Dimension::BYTE_RATE, 1e12, Family::DECIMAL},
    Unit{"KiB/s", Dimension::BYTE_RATE, KIB, Family::BINARY},
    Unit{"MiB/s", Dimension::BYTE_RATE, MIB, Family::BINARY},
    Unit{"GiB/s", Dimension::BYTE_RATE, GIB, Family::BINARY},

    Unit{"ps", Dimension::TIME, 1e-12, Family::DECIMAL},
    Unit{"ns", Dimension::TIME, 1e-9, Family::DECIMAL},
    Unit{"us", Dimension::TIME, 1e-6, Family::DECIMAL},
    Unit{"ms", Dimension::TIME, 1e-3, Family::DECIMAL},
    Unit{"s", Dimension::TIME, 1.0, Family::DECIMAL},
    Unit{"min", Dimension::TIME, 60.0, Family::DECIMAL},
    Unit{"h", Dimension::TIME, 3600.0, Family::DECIMAL},
    Unit{"d", Dimension::TIME, 86400.0, Family::DECIMAL},

    Unit{"FLOP/s", Dimension::FLOP_RATE, 1.0, Family::DECIMAL},
    Unit{"kFLOP/s", Dimension::FLOP_RATE, 1e3, Family::DECIMAL},
    Unit{"MFLOP/s", Dimension::FLOP_RATE, 1e6, Family::DECIMAL},
    Unit{"GFLOP/s", Dimension::FLOP_RATE, 1e9, Family::DECIMAL},
    Unit{"TFLOP/s", Dimension::FLOP_RATE, 1e12, Family::DECIMAL},
    Unit{"PFLOP/s", Dimension::FLOP_RATE, 1e15, Family::DECIMAL},
    Unit{"flop/s", Dimension::FLOP_RATE, 1.0, Family::ALIAS},
    Unit{"kflop/s", Dimension::FLOP_RATE, 1e3, Family::ALIAS},
    Unit{"Mflop/s", Dimension::FLOP_RATE, 1e6, Family::ALIAS},
    Unit{"Gflop/s", Dimension::FLOP_RATE, 1e9, Family::ALIAS},
    Unit{"Tflop/s", Dimension::FLOP_RATE, 1e12, Family::ALIAS},
    Unit{"Pflop/s", Dimension::FLOP_RATE, 1e15, Family::ALIAS},

    Unit{"FLOP", Dimension::FLOPS, 1.0, Family::DECIMAL},
    Unit{"GFLOP", Dimension::FLOPS, 1e9, Family::DECIMAL},
    Unit{"TFLOP", Dimension::FLOPS, 1e12, Family::DECIMAL},
    Unit{"PFLOP", Dimension::FLOPS, 1e15, Family::DECIMAL},
    Unit{"EFLOP", Dimension::FLOPS, 1e18, Family::DECIMAL},
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

/// Reads the leading number of `s`; returns the characters consumed (0 when there is none).
std::size_t read_number(std::string_view s, double& value) {
  std::string_view digits = s;
  if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || !std::isfinite(value)) return 0;
  // from_chars accepts "inf" and "nan" spellings; only digits may start a number here.
  const char first = digits.empty() ? '\0' : digits.front();
  if (!std::isdigit(static_cast<unsigned char>(first)) && first != '.' && first != '-') return 0;
  return static_cast<std::size_t>(end - s.data());
}

/// A number printed with up to 12 significant digits and no trailing zeros: 80, 1.5, 0.125.
std::string number_text(double v) {
  return fmt::format("{:.12g}", v);
}

std::size_t significant_digits(const std::string& text) {
  std::size_t n = 0;
  bool leading = true;
  for (char c : text) {
    if (c == 'e' || c == 'E') break;
    if (!std::isdigit(static_cast<unsigned char>(c))) continue;
    if (leading && c == '0') continue;
    leading = false;
    ++n;
  }
  return n;
}

/// `v` in the largest unit of `family` that keeps the number >= 1 (the smallest unit otherwise).
std::string format_in_family(double v, Dimension dim, Family family) {
  const Unit* chosen = nullptr;
  for (const Unit& u : UNITS) {
    if (u.dim != dim || u.family != family) continue;
    if (chosen == nullptr || std::fabs(v) >= u.factor) chosen = &u;
  }
  if (chosen == nullptr) return {};
  return fmt::format("{} {}", number_text(v / chosen->factor), chosen->name);
}

} // namespace

std::string accepted_units(Dimension dim) {
  std::string out;
  for (const Unit& u : UNITS) {
    if (u.dim != dim || u.family == Family::ALIAS) continue;
    if (!out.empty()) out += ", ";
    out += u.name;
  }
  return out;
}

double parse_quantity(std::string_view text, Dimension dim) {
  const std::string_view s = trim(text);
  double value = 0;
  const std::size_t used = read_number(s, value);
  if (used == 0) throw UnitError(fmt::format("expected a number with a unit, got '{}'", text));
  const std::string_view unit = trim(s.substr(used));
  if (unit.empty())
    throw UnitError(fmt::format("missing unit in '{}' (expected one of {})", text, accepted_units(dim)));
  for (const Unit& u : UNITS) {
    if (u.dim == dim && u.name == unit) return value * u.factor;
  }
  throw UnitError(fmt::format("unknown unit '{}' (expected one of {})", unit, accepted_units(dim)));
}

double parse_count(std::string_view text) {
  const std::string_view s = trim(text);
  double value = 0;
  const std::size_t used = read_number(s, value);
  if (used == 0) throw UnitError(fmt::format("expected a number, got '{}'", text));
  const std::string_view rest = trim(s.substr(used));
  if (!rest.empty()) throw UnitError(fmt::format("expected a plain number without a unit, got '{}'", text));
  return value;
}

// Formatting rule: BYTES use binary units (KiB ... PiB) when that needs fewer significant digits
// than decimal units, so memory sizes read "80 GiB" and buffer sizes "160 MB"; every other
// dimension uses its decimal units (B/s family for rates, s-based units for time). In both cases
// the largest unit that keeps the number >= 1 is chosen.
std::string format_quantity(double si_value, Dimension dim) {
  const std::string decimal = format_in_family(si_value, dim, Family::DECIMAL);
  if (dim != Dimension::BYTES) return decimal;
  const std::string binary = format_in_family(si_value, dim, Family::BINARY);
  return significant_digits(binary) < significant_digits(decimal) ? binary : decimal;
}

std::string format_quantity(double si_value, std::string_view unit) {
  for (const Unit& u : UNITS) {
    if (u.name == unit) return fmt::format("{} {}", number_text(si_value / u.factor), u.name);
  }
  throw UnitError(fmt::format("unknown unit '{}'", unit));
}

} // namespace odyssey
