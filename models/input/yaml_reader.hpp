// Strict YAML reading for scenarios, presets and profiles. Every value knows its file, position
// and key path, so any problem becomes `file:line:col: error: key.path: message`. Unknown keys
// are rejected with a did-you-mean.
#pragma once

#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "models/input/diagnostics.hpp"
#include "models/input/units_parse.hpp"
#include "models/units.hpp"

namespace odyssey {

/// A node of a loaded YAML document.
class YamlValue {
public:
  YamlValue(YAML::Node node, std::string file, std::string path);

  [[nodiscard]] const std::string& path() const { return path_; } ///< dotted key path, "" for the root
  [[nodiscard]] const std::string& file() const { return file_; }
  [[nodiscard]] SourceLocation where() const; ///< 1-based line and column
  [[nodiscard]] const YAML::Node& node() const { return node_; }

  [[nodiscard]] bool is_map() const;
  [[nodiscard]] bool is_sequence() const;
  [[nodiscard]] bool is_scalar() const;
  [[nodiscard]] bool is_null() const;

  /// Rejects any key not in `allowed`, with a did-you-mean when one is close.
  void check_keys(std::initializer_list<std::string_view> allowed) const;
  void check_keys(const std::vector<std::string>& allowed) const;
  /// Requires a mapping (error "expected a mapping" otherwise).
  void require_map() const;

  [[nodiscard]] std::optional<YamlValue> get(std::string_view key) const;
  /// Throws "missing required key 'k'" at this node when absent.
  [[nodiscard]] YamlValue require(std::string_view key) const;
  [[nodiscard]] std::vector<YamlValue> items() const;                           ///< sequence elements
  [[nodiscard]] std::vector<std::pair<std::string, YamlValue>> entries() const; ///< mapping in file order

  [[nodiscard]] std::string as_string() const;
  [[nodiscard]] bool as_bool() const;
  [[nodiscard]] double as_number() const;       ///< plain number, no unit
  [[nodiscard]] long as_positive_count() const; ///< integer >= 1 ("must be a positive integer, got 0")
  [[nodiscard]] long as_count() const;          ///< integer >= 0
  [[nodiscard]] double as_quantity(Dimension dim) const; ///< unit string -> SI value, > 0
  [[nodiscard]] Seconds as_seconds() const { return Seconds(as_quantity(Dimension::TIME)); }
  [[nodiscard]] Bytes as_bytes() const { return Bytes(as_quantity(Dimension::BYTES)); }
  [[nodiscard]] BytesPerSecond as_byte_rate() const {
    return BytesPerSecond(as_quantity(Dimension::BYTE_RATE));
  }
  [[nodiscard]] FlopsPerSecond as_flop_rate() const {
    return FlopsPerSecond(as_quantity(Dimension::FLOP_RATE));
  }

  /// Maps a scalar through `choices`; error lists the accepted names (with did-you-mean).
  template <class E> E as_enum(std::initializer_list<std::pair<std::string_view, E>> choices) const {
    std::vector<std::string> names;
    const std::string s = as_string();
    for (const auto& [name, value] : choices) {
      if (s == name) return value;
      names.emplace_back(name);
    }
    fail_choice(s, names);
  }

  /// Throws InputError at this value's position and key path.
  [[noreturn]] void fail(const std::string& message) const;
  /// "unknown value 'got' (expected one of ...)", with a did-you-mean, at this value.
  [[noreturn]] void fail_choice(const std::string& got, const std::vector<std::string>& names) const;

private:
  [[nodiscard]] long as_count_or_negative() const; ///< any integer; "expected a positive integer" otherwise
  YAML::Node node_;
  std::string file_;
  std::string path_;
};

/// Loads a YAML file; a missing file or a syntax error is an InputError with its position.
YamlValue load_yaml_file(const std::string& path);
/// Parses YAML text; `name` is used as the file in messages.
YamlValue load_yaml_string(const std::string& text, const std::string& name);

/// The closest candidate by edit distance, or "" when none is close enough to suggest.
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

} // namespace odyssey
