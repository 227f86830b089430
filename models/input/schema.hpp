// Self-describing schema tables (SST's ELI parameter documentation, SimGrid's config::Flag): each
// key of a YAML section declared once, with its type, default, help text and the functions that
// parse it into, and render it from, the value it describes. The tables live beside the specs they
// describe (topologies/machine_schema, models/model_schema); the scenario loader walks them.
#pragma once

#include <string>
#include <string_view>

#include "models/input/units_parse.hpp"
#include "models/input/yaml_reader.hpp"

namespace odyssey {

/// The `default_text` of a key that has no default and must be given.
inline constexpr std::string_view REQUIRED = "required";

/// One documented key of a table. `key` is dotted inside its table ("server.nic_bandwidth").
template <class T> struct Field {
  std::string_view key;
  std::string_view type;
  std::string_view default_text; ///< REQUIRED when the key has no default
  std::string_view help;
  void (*parse)(T&, const YamlValue&);
  std::string (*render)(const T&);
};

// ---- parsing values the tables share ------------------------------------------------------------

/// An integer >= 1 that fits an int ("must be at most 2147483647, got ..." otherwise).
int positive_int(const YamlValue& v);
/// An integer >= 0 that fits an int.
int count_int(const YamlValue& v);

// ---- rendering values as YAML scalars -----------------------------------------------------------

/// A string as a YAML scalar: plain when it is safe, double-quoted otherwise.
std::string yaml_string(const std::string& s);
/// A quantity with its unit, double-quoted ("\"80 GiB\"").
std::string quoted_quantity(double v, Dimension dim);
/// A plain number, up to 12 significant digits.
std::string yaml_number(double v);
std::string yaml_bool(bool b);

} // namespace odyssey
