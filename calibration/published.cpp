// Readers of published tables: a small text-proto parser for OpenXLA's matmul table (only the
// syntax that table uses: fields, nested messages, strings, numbers, comments) and a CSV reader.
#include "calibration/published.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "models/input/yaml_reader.hpp"

namespace odyssey {

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError({.file = path}, "", "cannot open the file");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// ---- text-proto ----

/// A text-proto field: `name: scalar` or `name { ... }` (`name: { ... }` too).
struct ProtoField {
  std::string name;
  SourceLocation where; ///< of the name
  bool is_message = false;
  bool is_string = false;
  std::string scalar; ///< the token's text; strings without their quotes
  SourceLocation scalar_where;
  std::vector<ProtoField> fields;
};

class ProtoParser {
public:
  ProtoParser(std::string text, std::string file) : text_(std::move(text)), file_(std::move(file)) {}

  std::vector<ProtoField> parse() {
    std::vector<ProtoField> top = fields("");
    skip_space();
    if (pos_ < text_.size()) fail("", fmt::format("unexpected '{}'", text_[pos_]));
    return top;
  }

private:
  SourceLocation here() const { return {.file = file_, .line = line_, .column = column_}; }

  [[noreturn]] void fail(const std::string& path, const std::string& message) const {
    throw InputError(here(), path, message);
  }

  void advance() {
    if (text_[pos_] == '\n') {
      ++line_;
      column_ = 1;
    } else {
      ++column_;
    }
    ++pos_;
  }

  void skip_space() {
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == '#') {
        while (pos_ < text_.size() && text_[pos_] != '\n') advance();
      } else if (std::isspace(static_cast<unsigned char>(c))) {
        advance();
      } else {
        return;
      }
    }
  }

  bool peek(char c) {
    skip_space();
    return pos_ < text_.size() && text_[pos_] == c;
  }

  static bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

  std::string token_text() const {
    if (pos_ >= text_.size()) return "end of file";
    std::size_t end = pos_;
    while (end < text_.size() && !std::isspace(static_cast<unsigned char>(text_[end])) && end - pos_ < 20)
      ++end;
    return "'" + text_.substr(pos_, std::max<std::size_t>(end - pos_, 1)) + "'";
  }

  /// Fields until a closing brace (not consumed) or the end of the text.
  std::vector<ProtoField> fields(const std::string& path) {
    std::vector<ProtoField> out;
    while (true) {
      skip_space();
      if (pos_ >= text_.size() || text_[pos_] == '}') return out;
      ProtoField f;
      f.where = here();
      if (!std::isalpha(static_cast<unsigned char>(text_[pos_])) && text_[pos_] != '_')
        fail(path, "expected a field name, got " + token_text());
      while (pos_ < text_.size() && ident_char(text_[pos_])) f.name += text_[pos_], advance();
      const std::string field_path = path.empty() ? f.name : path + "." + f.name;
      const bool colon = peek(':');
      if (colon) advance();
      if (peek('{')) {
        advance();
        f.is_message = true;
        f.fields = fields(field_path);
        if (!peek('}')) fail(field_path, "expected '}' to close '" + f.name + "', got " + token_text());
        advance();
      } else if (!colon) {
        fail(field_path, "expected ':' or '{' after '" + f.name + "', got " + token_text());
      } else {
        skip_space();
        f.scalar_where = here();
        if (pos_ < text_.size() && text_[pos_] == '"') {
          f.is_string = true;
          advance();
          while (pos_ < text_.size() && text_[pos_] != '"' && text_[pos_] != '\n') {
            if (text_[pos_] == '\\' && pos_ + 1 < text_.size()) advance();
            f.scalar += text_[pos_];
            advance();
          }
          if (pos_ >= text_.size() || text_[pos_] != '"') fail(field_path, "unterminated string");
          advance();
        } else {
          while (pos_ < text_.size() &&
                 (ident_char(text_[pos_]) || text_[pos_] == '.' || text_[pos_] == '-' || text_[pos_] == '+'))
            f.scalar += text_[pos_], advance();
          if (f.scalar.empty()) fail(field_path, "expected a value after ':', got " + token_text());
        }
      }
      out.push_back(std::move(f));
    }
  }

  std::string text_;
  std::string file_;
  std::size_t pos_ = 0;
  int line_ = 1;
  int column_ = 1;
};

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

/// Rejects a field not in `allowed`, with a did-you-mean.
void check_fields(const ProtoField& message, const std::string& path,
                  const std::vector<std::string>& allowed) {
  for (const ProtoField& f : message.fields) {
    if (std::find(allowed.begin(), allowed.end(), f.name) != allowed.end()) continue;
    const std::string suggestion = did_you_mean(f.name, allowed);
    throw InputError(f.where, path + "." + f.name,
                     suggestion.empty()
                         ? fmt::format("unknown field '{}' (expected {})", f.name, join_names(allowed))
                         : fmt::format("unknown field '{}' (did you mean '{}'?)", f.name, suggestion));
  }
}

const ProtoField& only(const ProtoField& message, const std::string& path, const std::string& name,
                       bool message_kind) {
  const ProtoField* found = nullptr;
  for (const ProtoField& f : message.fields) {
    if (f.name != name) continue;
    if (found) throw InputError(f.where, path + "." + name, "appears twice");
    found = &f;
  }
  if (!found) throw InputError(message.where, path, "missing field '" + name + "'");
  if (found->is_message != message_kind)
    throw InputError(found->where, path + "." + name,
                     message_kind ? "expected a message { ... }" : "expected a value");
  return *found;
}

std::string string_field(const ProtoField& message, const std::string& path, const std::string& name) {
  const ProtoField& f = only(message, path, name, false);
  if (!f.is_string)
    throw InputError(f.scalar_where, path + "." + name, "expected a quoted string, got " + f.scalar);
  return f.scalar;
}

long positive_integer(const ProtoField& f, const std::string& path) {
  long v = 0;
  const char* end = f.scalar.data() + f.scalar.size();
  const auto [ptr, ec] = std::from_chars(f.scalar.data(), end, v);
  if (f.is_string || ec != std::errc() || ptr != end || v <= 0)
    throw InputError(f.scalar_where, path, "expected a positive integer, got " + f.scalar);
  return v;
}

double positive_number(const ProtoField& f, const std::string& path) {
  double v = 0;
  const char* end = f.scalar.data() + f.scalar.size();
  const auto [ptr, ec] = std::from_chars(f.scalar.data(), end, v);
  if (f.is_string || ec != std::errc() || ptr != end || !(v > 0))
    throw InputError(f.scalar_where, path, "expected a positive number, got " + f.scalar);
  return v;
}

// ---- CSV ----

struct CsvField {
  std::string text;
  int column = 1;
};

/// Splits one CSV line; a field may be quoted with "..." ("" inside is a quote).
std::vector<CsvField> split_csv(const std::string& line, const SourceLocation& where) {
  std::vector<CsvField> out;
  std::size_t i = 0;
  while (true) {
    CsvField f{.column = static_cast<int>(i) + 1};
    if (i < line.size() && line[i] == '"') {
      ++i;
      while (true) {
        if (i >= line.size())
          throw InputError({.file = where.file, .line = where.line, .column = f.column}, "",
                           "unterminated quote");
        if (line[i] == '"' && i + 1 < line.size() && line[i + 1] == '"') {
          f.text += '"';
          i += 2;
        } else if (line[i] == '"') {
          ++i;
          break;
        } else {
          f.text += line[i++];
        }
      }
      if (i < line.size() && line[i] != ',')
        throw InputError({.file = where.file, .line = where.line, .column = static_cast<int>(i) + 1}, "",
                         "expected ',' after a quoted field");
    } else {
      while (i < line.size() && line[i] != ',') f.text += line[i++];
    }
    out.push_back(std::move(f));
    if (i >= line.size()) return out;
    ++i; // the comma
  }
}

/// The citation of a copied text-proto table: its `# source: ...` comment line, which must come in
/// the leading comment block, so that the file carries its own origin.
std::string source_line(const std::string& text, const std::string& path) {
  std::istringstream lines(text);
  std::string line;
  constexpr std::string_view TAG = "# source:";
  while (std::getline(lines, line) && (line.empty() || line[0] == '#')) {
    if (line.rfind(TAG, 0) != 0) continue;
    std::string source = line.substr(TAG.size());
    source.erase(0, source.find_first_not_of(' '));
    if (!source.empty()) return source;
  }
  throw InputError({.file = path, .line = 1, .column = 1}, "",
                   "name the table's origin in a '# source: ...' comment line before the first entry");
}

} // namespace

XlaMatmulTable read_xla_matmul_table(const std::string& path) {
  const std::string text = read_text(path);
  XlaMatmulTable table{.source = source_line(text, path), .entries = {}};
  const std::vector<ProtoField> top = ProtoParser(text, path).parse();
  std::vector<XlaMatmulEntry>& out = table.entries;
  if (top.empty()) throw InputError({.file = path, .line = 1, .column = 1}, "entries", "no entries");
  for (const ProtoField& arch : top) {
    if (arch.name != "entries")
      throw InputError(arch.where, arch.name, "unknown field '" + arch.name + "' (expected entries)");
    if (!arch.is_message) throw InputError(arch.where, "entries", "expected a message { ... }");
    check_fields(arch, "entries", {"key", "value"});
    const std::string key = string_field(arch, "entries", "key");
    const ProtoField& value = only(arch, "entries", "value", true);
    check_fields(value, "entries.value", {"entries"});
    for (const ProtoField& e : value.fields) {
      const std::string p = "entries.value.entries";
      if (!e.is_message) throw InputError(e.where, p, "expected a message { ... }");
      check_fields(e, p, {"b", "m", "n", "k", "flops"});
      XlaMatmulEntry entry{.arch = key, .where = e.where};
      entry.b = positive_integer(only(e, p, "b", false), p + ".b");
      entry.m = positive_integer(only(e, p, "m", false), p + ".m");
      entry.n = positive_integer(only(e, p, "n", false), p + ".n");
      entry.k = positive_integer(only(e, p, "k", false), p + ".k");
      for (const ProtoField& f : e.fields) {
        if (f.name != "flops") continue;
        if (!f.is_message)
          throw InputError(f.where, p + ".flops", "expected a message { key: ... value: ... }");
        check_fields(f, p + ".flops", {"key", "value"});
        const std::string dtypes = string_field(f, p + ".flops", "key");
        for (const XlaMatmulRate& r : entry.rates)
          if (r.dtypes == dtypes) throw InputError(f.where, p + ".flops", "'" + dtypes + "' appears twice");
        entry.rates.push_back(
            {.dtypes = dtypes,
             .flops_per_second = positive_number(only(f, p + ".flops", "value", false), p + ".flops.value"),
             .where = f.where});
      }
      if (entry.rates.empty()) throw InputError(e.where, p, "has no flops");
      out.push_back(std::move(entry));
    }
  }
  return table;
}

namespace {

/// Bytes per element of the XLA primitive types a collective table may time.
const std::map<std::string, int, std::less<>> XLA_ELEMENT_BYTES = {
    {"F64", 8}, {"F32", 4}, {"BF16", 2}, {"F16", 2},      {"S32", 4},
    {"U32", 4}, {"S8", 1},  {"U8", 1},   {"F8E4M3FN", 1}, {"F8E5M2", 1}};

const std::vector<std::string> XLA_COLLECTIVE_OPCODES = {"all-reduce", "all-gather", "reduce-scatter",
                                                         "all-to-all", "collective-permute"};

/// A device index that may be absent: text-proto leaves zeros out.
long optional_index(const ProtoField& message, const std::string& path, const std::string& name) {
  for (const ProtoField& f : message.fields) {
    if (f.name != name) continue;
    const ProtoField& v = only(message, path, name, false);
    long x = -1;
    const char* end = v.scalar.data() + v.scalar.size();
    const auto [ptr, ec] = std::from_chars(v.scalar.data(), end, x);
    if (v.is_string || ec != std::errc() || ptr != end || x < 0)
      throw InputError(v.scalar_where, path + "." + name,
                       "expected a device index (0 or more), got " + v.scalar);
    return x;
  }
  return 0;
}

} // namespace

Bytes XlaCollectiveEntry::counted_bytes() const {
  double elements = 1.0;
  for (long d : dimensions) elements *= double(d);
  const auto size = XLA_ELEMENT_BYTES.find(element_type);
  const double bytes = elements * (size == XLA_ELEMENT_BYTES.end() ? 0 : size->second);
  return Bytes(opcode == "reduce-scatter" ? bytes * devices_per_group : bytes);
}

XlaCollectiveTable read_xla_collective_table(const std::string& path) {
  const std::string text = read_text(path);
  XlaCollectiveTable table{.source = source_line(text, path), .arch = {}, .entries = {}};
  const std::vector<ProtoField> top = ProtoParser(text, path).parse();
  ProtoField root;
  root.where = {.file = path, .line = 1, .column = 1};
  root.fields = top;
  check_fields(root, "", {"key", "entry"});
  table.arch = string_field(root, "", "key");
  for (const ProtoField& e : top) {
    if (e.name != "entry") continue;
    const std::string p = "entry";
    if (!e.is_message) throw InputError(e.where, p, "expected a message { ... }");
    check_fields(e, p,
                 {"opcode", "element_type", "dimensions", "num_replica_groups", "num_devices_per_group",
                  "source_target_pairs", "throughput"});
    XlaCollectiveEntry entry{.where = e.where};
    entry.opcode = string_field(e, p, "opcode");
    if (std::find(XLA_COLLECTIVE_OPCODES.begin(), XLA_COLLECTIVE_OPCODES.end(), entry.opcode) ==
        XLA_COLLECTIVE_OPCODES.end())
      throw InputError(only(e, p, "opcode", false).scalar_where, p + ".opcode",
                       fmt::format("unknown opcode '{}' (expected one of {})", entry.opcode,
                                   join_names(XLA_COLLECTIVE_OPCODES)));
    const ProtoField& type = only(e, p, "element_type", false);
    if (type.is_string || !XLA_ELEMENT_BYTES.contains(type.scalar))
      throw InputError(type.scalar_where, p + ".element_type",
                       "unknown element type '" + type.scalar +
                           "' (expected an XLA primitive type such as F32)");
    entry.element_type = type.scalar;
    for (const ProtoField& f : e.fields) {
      if (f.name == "dimensions") entry.dimensions.push_back(positive_integer(f, p + ".dimensions"));
      if (f.name != "source_target_pairs") continue;
      if (!f.is_message) throw InputError(f.where, p + ".source_target_pairs", "expected a message { ... }");
      check_fields(f, p + ".source_target_pairs", {"source", "target"});
      const long source = optional_index(f, p + ".source_target_pairs", "source");
      const long target = optional_index(f, p + ".source_target_pairs", "target");
      if (source == target)
        throw InputError(f.where, p + ".source_target_pairs", "a pair from a device to itself");
      ++entry.pairs;
    }
    if (entry.dimensions.empty()) throw InputError(e.where, p, "missing field 'dimensions'");
    if (entry.opcode == "collective-permute") {
      if (entry.pairs == 0) throw InputError(e.where, p, "a collective-permute needs source_target_pairs");
      for (const char* groups : {"num_replica_groups", "num_devices_per_group"})
        for (const ProtoField& f : e.fields)
          if (f.name == groups)
            throw InputError(f.where, p + "." + groups,
                             "a collective-permute has source_target_pairs, not groups");
    } else {
      if (entry.pairs > 0)
        throw InputError(e.where, p + ".source_target_pairs",
                         "only a collective-permute has source_target_pairs");
      entry.groups =
          int(positive_integer(only(e, p, "num_replica_groups", false), p + ".num_replica_groups"));
      entry.devices_per_group =
          int(positive_integer(only(e, p, "num_devices_per_group", false), p + ".num_devices_per_group"));
    }
    entry.throughput = positive_number(only(e, p, "throughput", false), p + ".throughput");
    table.entries.push_back(std::move(entry));
  }
  if (table.entries.empty()) throw InputError(root.where, "entry", "no entries");
  return table;
}

namespace {

/// One data row of a CSV table, with typed access to its fields that fails at the field's column.
class CsvRow {
public:
  CsvRow(std::vector<CsvField> fields, std::string path, int line)
      : f_(std::move(fields)), path_(std::move(path)), line_(line) {}

  [[nodiscard]] SourceLocation where() const { return {.file = path_, .line = line_, .column = 1}; }
  [[nodiscard]] SourceLocation at(int i) const {
    return {.file = path_, .line = line_, .column = f_[i].column};
  }
  [[nodiscard]] const std::string& text(int i) const { return f_[i].text; }
  /// A non-empty field; `what` says what it must hold.
  [[nodiscard]] const std::string& required(int i, const char* column, const char* what) const {
    if (f_[i].text.empty()) throw InputError(at(i), column, what);
    return f_[i].text;
  }
  [[nodiscard]] const std::string& one_of(int i, const char* column,
                                          const std::vector<std::string>& allowed) const {
    if (std::find(allowed.begin(), allowed.end(), f_[i].text) == allowed.end())
      throw InputError(
          at(i), column,
          fmt::format("unknown value '{}' (expected one of {})", f_[i].text, join_names(allowed)));
    return f_[i].text;
  }
  [[nodiscard]] double number(int i, const char* column) const {
    double v = 0;
    const std::string& s = f_[i].text;
    const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || ptr != s.data() + s.size() || !(v > 0))
      throw InputError(at(i), column, "expected a positive number, got '" + s + "'");
    return v;
  }
  [[nodiscard]] long integer(int i, const char* column) const {
    const double v = number(i, column);
    if (v != static_cast<double>(static_cast<long>(v)))
      throw InputError(at(i), column, "expected a positive integer, got '" + f_[i].text + "'");
    return static_cast<long>(v);
  }

private:
  std::vector<CsvField> f_;
  std::string path_;
  int line_;
};

/// The data rows of a CSV table whose first non-comment line must be `header`; `#` lines are
/// comments. A row with another number of fields than the header is an InputError.
std::vector<CsvRow> read_csv(const std::string& path, const std::string& header) {
  std::istringstream in(read_text(path));
  const std::size_t columns = static_cast<std::size_t>(std::count(header.begin(), header.end(), ',')) + 1;
  std::vector<CsvRow> rows;
  std::string line;
  int line_no = 0;
  bool seen_header = false;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    const SourceLocation where{.file = path, .line = line_no, .column = 1};
    if (!seen_header) {
      if (line != header) throw InputError(where, "", fmt::format("expected the header '{}'", header));
      seen_header = true;
      continue;
    }
    std::vector<CsvField> f = split_csv(line, where);
    if (f.size() != columns)
      throw InputError(where, "", fmt::format("expected {} fields, got {}", columns, f.size()));
    rows.emplace_back(std::move(f), path, line_no);
  }
  if (!seen_header) throw InputError({.file = path, .line = 1, .column = 1}, "", "empty table (no header)");
  return rows;
}

} // namespace

std::vector<FlashAttentionRow> read_flash_attention_table(const std::string& path) {
  std::vector<FlashAttentionRow> rows;
  for (const CsvRow& c : read_csv(path, FLASH_ATTENTION_HEADER)) {
    FlashAttentionRow r{.gpu = c.required(0, "gpu", "must name a GPU type, e.g. H100-SXM5-80GB"),
                        .kernel = c.required(1, "kernel", "must name the kernel, e.g. FlashAttention-2"),
                        .where = c.where()};
    r.pass = c.one_of(2, "pass", {"forward", "backward"});
    r.dtype = c.one_of(3, "dtype", {"fp16", "bf16", "fp8"});
    r.head_dim = static_cast<int>(c.integer(4, "head_dim"));
    r.seq = c.integer(5, "seq");
    r.causal = c.one_of(6, "causal", {"true", "false"}) == "true";
    r.tflops = c.number(7, "tflops");
    r.source = c.required(8, "source", "every row must cite its source");
    rows.push_back(std::move(r));
  }
  return rows;
}

std::vector<LayerTimeRow> read_layer_time_table(const std::string& path) {
  std::vector<LayerTimeRow> rows;
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  for (const CsvRow& c : read_csv(path, LAYER_TIME_HEADER)) {
    LayerTimeRow r{.gpu = c.required(0, "gpu", "must name a GPU type, e.g. A100-SXM4-80GB"),
                   .where = c.where()};
    const std::string& scenario =
        c.required(1, "scenario", "must name the scenario that sets up the measured layer");
    r.scenario = (dir / scenario).string();
    r.scenario_where = c.at(1);
    r.sequence_parallel = c.one_of(2, "sequence_parallel", {"true", "false"}) == "true";
    r.recompute = c.one_of(3, "recompute", {"none", "selective", "full"});
    r.forward = Seconds(c.number(4, "forward_ms") * 1e-3);
    r.backward = Seconds(c.number(5, "backward_ms") * 1e-3);
    r.experiment = c.required(6, "experiment", "must name the row as its source does");
    r.source = c.required(7, "source", "every row must cite its source");
    rows.push_back(std::move(r));
  }
  if (rows.empty()) throw InputError({.file = path, .line = 1, .column = 1}, "", "the table has no rows");
  return rows;
}

std::vector<PublishedMfuRow> read_published_mfu_table(const std::string& path) {
  std::vector<PublishedMfuRow> rows;
  for (const CsvRow& c : read_csv(path, PUBLISHED_MFU_HEADER)) {
    PublishedMfuRow r{.gpu = c.required(0, "gpu", "must name a GPU type, e.g. H100-SXM5-80GB"),
                      .where = c.where()};
    r.precision = c.one_of(1, "precision", {"fp32", "fp16", "bf16", "fp8"});
    const double percent = c.number(2, "mfu_percent");
    if (percent > 100) throw InputError(c.at(2), "mfu_percent", fmt::format("{} is above 100", c.text(2)));
    r.mfu = percent / 100;
    r.gpus = c.integer(3, "gpus");
    r.run = c.required(4, "run", "must say what trained, e.g. 'GPT 1T'");
    r.source = c.required(5, "source", "every row must cite its source");
    rows.push_back(std::move(r));
  }
  if (rows.empty()) throw InputError({.file = path, .line = 1, .column = 1}, "", "the table has no rows");
  return rows;
}

std::optional<PublishedMfuRow> best_published_mfu(const std::vector<PublishedMfuRow>& rows,
                                                  std::string_view gpu, std::string_view precision) {
  const auto sixteen_bit = [](std::string_view p) { return p == "fp16" || p == "bf16"; };
  const auto same_peak = [&](std::string_view a, std::string_view b) {
    return a == b || (sixteen_bit(a) && sixteen_bit(b));
  };
  std::optional<PublishedMfuRow> best;
  for (const PublishedMfuRow& r : rows)
    if (r.gpu == gpu && same_peak(r.precision, precision) && (!best || r.mfu > best->mfu)) best = r;
  return best;
}

} // namespace odyssey
