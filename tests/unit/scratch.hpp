// Helpers for tests that write files or expect input errors.
#pragma once

#include <filesystem>
#include <string>
#include <system_error>

#include <unistd.h>

#include "models/input/diagnostics.hpp"

namespace odyssey::test {

/// This test process's folder under the system temp dir: two test runs on one machine (two
/// checkouts, CI beside a developer) never write to each other's scratch files.
inline std::filesystem::path process_temp_dir() {
  return std::filesystem::temp_directory_path() / ("odyssey-tests-" + std::to_string(::getpid()));
}

/// A scratch directory in process_temp_dir(), removed when the test ends (and the process's
/// folder with it once empty).
struct ScratchDir {
  explicit ScratchDir(const std::string& name) : path(process_temp_dir() / name) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
    std::filesystem::remove(path.parent_path(), ignored); // only when no other scratch is left in it
  }
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
