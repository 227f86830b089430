// Helpers for tests that write files or expect input errors.
#pragma once

#include <filesystem>
#include <string>

#include "models/input/diagnostics.hpp"

namespace odyssey::test {

/// A scratch directory under the system temp dir, removed when the test ends.
struct ScratchDir {
  explicit ScratchDir(const std::string& name)
      : path(std::filesystem::temp_directory_path() / ("odyssey-" + name)) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~ScratchDir() { std::filesystem::remove_all(path); }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::filesystem::path path;
};

/// Message of the InputError `f` throws, or "" when it throws none.
template <class F> std::string input_error(F f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

} // namespace odyssey::test
