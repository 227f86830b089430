// The `odyssey calibrate` subcommands on the command line (import, shapes); the work is in
// calibration/import.hpp.
#pragma once

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace odyssey {

class CalibrateCommand {
public:
  /// Registers `calibrate import` and `calibrate shapes` under `app`.
  explicit CalibrateCommand(CLI::App& app);

  [[nodiscard]] bool parsed() const;
  /// Runs the parsed subcommand; throws InputError for bad input.
  [[nodiscard]] int run() const;

private:
  CLI::App* calibrate_ = nullptr;
  CLI::App* import_ = nullptr;
  CLI::App* shapes_ = nullptr;
  std::vector<std::string> raw_files_;
  std::vector<std::string> published_; ///< FORMAT=FILE
  std::string out_;
  std::string gpu_;
  std::string base_;
  std::string scenario_;
  std::vector<std::string> sets_;
};

} // namespace odyssey
