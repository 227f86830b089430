// One table-driven parser for every unit string in Odyssey's YAML ("400 Gb/s", "80 GiB", "1.5 us").
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

#include "models/units.hpp"

namespace odyssey {

enum class Dimension { BYTES, BYTE_RATE, TIME, FLOP_RATE, FLOPS };

/// Thrown by parse_quantity; the caller adds file, line and key path.
class UnitError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Parses "<number> <unit>" (space optional) into SI base units of `dim` (bytes, bytes/s, seconds,
/// FLOP/s, FLOP). `b` is bits, `B` bytes; k/M/G/T/P are powers of 1000, Ki/Mi/Gi/Ti powers of 1024.
/// A missing or unknown unit throws UnitError naming the units `dim` accepts.
double parse_quantity(std::string_view text, Dimension dim);

/// Parses a plain count such as "300e9" or "1536" (no unit); throws UnitError otherwise.
double parse_count(std::string_view text);

/// Human-readable rendering with a unit, e.g. "80 GiB", "400 Gb/s", "1.5 us" (round-trips through
/// parse_quantity to within printing precision).
/// Rule: BYTES use binary units (KiB..PiB) when that needs fewer significant digits than decimal
/// units ("80 GiB", but "160 MB"); other dimensions use their decimal units (B/s for rates). The
/// largest unit keeping the number >= 1 is chosen; up to 12 significant digits are printed.
std::string format_quantity(double si_value, Dimension dim);

/// Renders `si_value` in the named unit, e.g. format_quantity(25e9, "Gb/s") == "200 Gb/s".
/// Throws UnitError for a unit not in the table.
std::string format_quantity(double si_value, std::string_view unit);

/// The unit strings `dim` accepts, comma separated (for messages and the schema).
std::string accepted_units(Dimension dim);

} // namespace odyssey
