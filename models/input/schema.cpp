#include "models/input/schema.hpp"

#include <algorithm>
#include <cctype>
#include <climits>

#include <fmt/format.h>

namespace odyssey {
namespace {

int to_int(long v, const YamlValue& at) {
  if (v > INT_MAX) at.fail(fmt::format("must be at most {}, got {}", INT_MAX, v));
  return static_cast<int>(v);
}

} // namespace

int positive_int(const YamlValue& v) {
  return to_int(v.as_positive_count(), v);
}
int count_int(const YamlValue& v) {
  return to_int(v.as_count(), v);
}

std::string yaml_string(const std::string& s) {
  const bool plain = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '/';
  });
  if (plain) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}
std::string quoted_quantity(double v, Dimension dim) {
  return fmt::format("\"{}\"", format_quantity(v, dim));
}
std::string yaml_number(double v) {
  return fmt::format("{:.12g}", v);
}
std::string yaml_bool(bool b) {
  return b ? "true" : "false";
}

} // namespace odyssey
