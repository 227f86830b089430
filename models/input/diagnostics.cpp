#include "models/input/diagnostics.hpp"

#include <fmt/format.h>

namespace odyssey {
namespace {
std::string render(const SourceLocation& where, const std::string& key_path, const std::string& message,
                   const char* severity = "error") {
  std::string out;
  if (!where.file.empty()) {
    out += where.file;
    if (where.line > 0) out += fmt::format(":{}:{}", where.line, where.column);
    out += ": ";
  }
  out += severity;
  out += ": ";
  if (!key_path.empty()) out += key_path + ": ";
  out += message;
  return out;
}
} // namespace

InputError::InputError(SourceLocation where, std::string key_path, std::string message)
    : std::runtime_error(render(where, key_path, message)), where_(std::move(where)),
      key_path_(std::move(key_path)), message_(std::move(message)) {}

std::string warning_text(const SourceLocation& where, const std::string& key_path,
                         const std::string& message) {
  return render(where, key_path, message, "warning");
}

std::string grouped(long v) {
  std::string digits = std::to_string(v < 0 ? -v : v);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return v < 0 ? "-" + out : out;
}

} // namespace odyssey
