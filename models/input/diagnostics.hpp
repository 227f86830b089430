// The one error type for user input: file, line, column, key path and message, printed as
// `file:line:col: error: key.path: message` (LLVM style: lower case, no trailing period).
#pragma once

#include <stdexcept>
#include <string>

namespace odyssey {

/// Where in an input file a value was found. Lines and columns are 1-based; 0 means unknown.
struct SourceLocation {
  std::string file;
  int line = 0;
  int column = 0;
};

/// A problem with the user's input (scenario, preset, profile, flag, file). Exit code 2.
class InputError : public std::runtime_error {
public:
  InputError(SourceLocation where, std::string key_path, std::string message);

  [[nodiscard]] const SourceLocation& where() const { return where_; }
  [[nodiscard]] const std::string& key_path() const { return key_path_; }
  [[nodiscard]] const std::string& message() const { return message_; }

private:
  SourceLocation where_;
  std::string key_path_;
  std::string message_;
};

/// A warning about the input, in the errors' form: `file:line:col: warning: key.path: message`.
std::string warning_text(const SourceLocation& where, const std::string& key_path,
                         const std::string& message);

/// A count with thousands separators, for messages: 10240 -> "10,240".
std::string grouped(long v);

} // namespace odyssey
