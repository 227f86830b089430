// Strict YAML reading: positions from yaml-cpp marks (0-based, reported 1-based), key paths,
// unknown and duplicate keys rejected, typed accessors with messages that name what was expected.
#include "models/input/yaml_reader.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>

#include <fmt/format.h>

namespace odyssey {
namespace {

SourceLocation location_of(const YAML::Mark& mark, const std::string& file) {
  if (mark.is_null() || mark.line < 0) return SourceLocation{.file = file};
  return SourceLocation{.file = file, .line = mark.line + 1, .column = mark.column + 1};
}

std::string child_path(const std::string& parent, std::string_view key) {
  return parent.empty() ? std::string(key) : fmt::format("{}.{}", parent, key);
}

const char* kind_name(const YAML::Node& node) {
  switch (node.Type()) {
  case YAML::NodeType::Map: return "a mapping";
  case YAML::NodeType::Sequence: return "a list";
  case YAML::NodeType::Null:
  case YAML::NodeType::Undefined: return "nothing";
  case YAML::NodeType::Scalar: return "a value";
  }
  return "nothing";
}

/// Rejects a key that appears twice in one mapping, anywhere in the document.
void check_duplicates(const YAML::Node& node, const std::string& file, const std::string& path) {
  if (node.IsSequence()) {
    std::size_t i = 0;
    for (const auto& item : node) check_duplicates(item, file, fmt::format("{}[{}]", path, i++));
    return;
  }
  if (!node.IsMap()) return;
  std::set<std::string> seen;
  for (const auto& entry : node) {
    const std::string key = entry.first.Scalar();
    const std::string here = child_path(path, key);
    if (!seen.insert(key).second)
      throw InputError(location_of(entry.first.Mark(), file), here, fmt::format("duplicate key '{}'", key));
    check_duplicates(entry.second, file, here);
  }
}

YamlValue checked_root(const YAML::Node& root, const std::string& file) {
  check_duplicates(root, file, "");
  return YamlValue(root, file, "");
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and transpositions of
/// neighbours each cost 1, so "layres" is one edit from "layers".
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                        std::tolower(static_cast<unsigned char>(b[j - 1]));
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (same ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

bool parse_integer(const std::string& text, long& value) {
  const char* first = text.data();
  const char* last = text.data() + text.size();
  if (first != last && *first == '+') ++first;
  const auto [end, ec] = std::from_chars(first, last, value);
  if (ec == std::errc() && end == last) return true;
  // Scientific notation that names a whole number ("1e3") is an integer too.
  double d = 0;
  const auto [dend, dec] = std::from_chars(first, last, d);
  if (dec != std::errc() || dend != last || !std::isfinite(d) || d != std::floor(d) ||
      std::fabs(d) > static_cast<double>(std::numeric_limits<long>::max()))
    return false;
  value = static_cast<long>(d);
  return true;
}

} // namespace

YamlValue::YamlValue(YAML::Node node, std::string file, std::string path)
    : node_(std::move(node)), file_(std::move(file)), path_(std::move(path)) {}

SourceLocation YamlValue::where() const {
  return location_of(node_.Mark(), file_);
}

bool YamlValue::is_map() const {
  return node_.IsMap();
}
bool YamlValue::is_sequence() const {
  return node_.IsSequence();
}
bool YamlValue::is_scalar() const {
  return node_.IsScalar();
}
bool YamlValue::is_null() const {
  return !node_.IsDefined() || node_.IsNull();
}

void YamlValue::fail(const std::string& message) const {
  throw InputError(where(), path_, message);
}

void YamlValue::fail_choice(const std::string& got, const std::vector<std::string>& names) const {
  const std::string suggestion = did_you_mean(got, names);
  if (!suggestion.empty())
    fail(fmt::format("unknown value '{}' (did you mean '{}'? expected one of {})", got, suggestion,
                     join(names)));
  fail(fmt::format("unknown value '{}' (expected one of {})", got, join(names)));
}

void YamlValue::require_map() const {
  if (!is_map()) fail(fmt::format("expected a mapping, got {}", kind_name(node_)));
}

void YamlValue::check_keys(std::initializer_list<std::string_view> allowed) const {
  check_keys(std::vector<std::string>(allowed.begin(), allowed.end()));
}

void YamlValue::check_keys(const std::vector<std::string>& allowed) const {
  require_map();
  for (const auto& entry : node_) {
    const std::string key = entry.first.Scalar();
    if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
    const SourceLocation at = location_of(entry.first.Mark(), file_);
    const std::string suggestion = did_you_mean(key, allowed);
    if (!suggestion.empty())
      throw InputError(at, child_path(path_, key),
                       fmt::format("unknown key '{}' (did you mean '{}'?)", key, suggestion));
    throw InputError(at, child_path(path_, key),
                     fmt::format("unknown key '{}' (expected one of {})", key, join(allowed)));
  }
}

std::optional<YamlValue> YamlValue::get(std::string_view key) const {
  if (!is_map()) return std::nullopt;
  for (const auto& entry : node_) {
    if (entry.first.Scalar() == key) return YamlValue(entry.second, file_, child_path(path_, key));
  }
  return std::nullopt;
}

YamlValue YamlValue::require(std::string_view key) const {
  require_map();
  auto value = get(key);
  if (!value) fail(fmt::format("missing required key '{}'", key));
  return *value;
}

std::vector<YamlValue> YamlValue::items() const {
  if (!is_sequence()) fail(fmt::format("expected a list, got {}", kind_name(node_)));
  std::vector<YamlValue> out;
  std::size_t i = 0;
  for (const auto& item : node_) out.emplace_back(item, file_, fmt::format("{}[{}]", path_, i++));
  return out;
}

std::vector<std::pair<std::string, YamlValue>> YamlValue::entries() const {
  require_map();
  std::vector<std::pair<std::string, YamlValue>> out;
  for (const auto& entry : node_) {
    const std::string key = entry.first.Scalar();
    out.emplace_back(key, YamlValue(entry.second, file_, child_path(path_, key)));
  }
  return out;
}

std::string YamlValue::as_string() const {
  if (!is_scalar()) fail(fmt::format("expected a value, got {}", kind_name(node_)));
  return node_.Scalar();
}

bool YamlValue::as_bool() const {
  const std::string s = as_string();
  if (s == "true") return true;
  if (s == "false") return false;
  fail(fmt::format("expected true or false, got '{}'", s));
}

double YamlValue::as_number() const {
  const std::string s = as_string();
  try {
    return parse_count(s);
  } catch (const UnitError& e) {
    fail(e.what());
  }
}

long YamlValue::as_positive_count() const {
  const long v = as_count_or_negative();
  if (v < 1) fail(fmt::format("must be a positive integer, got {}", v));
  return v;
}

long YamlValue::as_count() const {
  const long v = as_count_or_negative();
  if (v < 0) fail(fmt::format("must be zero or a positive integer, got {}", v));
  return v;
}

long YamlValue::as_count_or_negative() const {
  const std::string s = as_string();
  long v = 0;
  if (!parse_integer(s, v)) fail(fmt::format("expected a positive integer, got '{}'", s));
  return v;
}

double YamlValue::as_quantity(Dimension dim) const {
  const std::string s = as_string();
  double v = 0;
  try {
    v = parse_quantity(s, dim);
  } catch (const UnitError& e) {
    fail(e.what());
  }
  if (!(v > 0)) fail(fmt::format("must be greater than zero, got '{}'", s));
  return v;
}

YamlValue load_yaml_file(const std::string& path) {
  // A folder opens as a stream on Linux and fails only when read, from inside yaml-cpp's buffer,
  // which does not catch the failure: refuse it here, and turn any other read failure into an error.
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw InputError(SourceLocation{.file = path}, "", "is a folder, not a file");
  std::ifstream in(path);
  if (!in) throw InputError(SourceLocation{.file = path}, "", "cannot open file");
  try {
    return checked_root(YAML::Load(in), path);
  } catch (const YAML::ParserException& e) {
    throw InputError(location_of(e.mark, path), "", e.msg);
  } catch (const std::ios_base::failure& e) {
    throw InputError(SourceLocation{.file = path}, "", fmt::format("cannot read file: {}", e.what()));
  }
}

YamlValue load_yaml_string(const std::string& text, const std::string& name) {
  try {
    return checked_root(YAML::Load(text), name);
  } catch (const YAML::ParserException& e) {
    throw InputError(location_of(e.mark, name), "", e.msg);
  }
}

std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_distance = std::numeric_limits<std::size_t>::max();
  for (const auto& c : candidates) {
    const std::size_t d = edit_distance(word, c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  // Close enough to be a typo: at most a third of the word's letters, and never the whole word.
  const std::size_t limit = std::max<std::size_t>(1, word.size() / 3);
  if (best.empty() || best_distance > limit || best_distance >= word.size()) return {};
  return best;
}

} // namespace odyssey
