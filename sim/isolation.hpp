// Running a SimGrid simulation in a child process. Internal to sim/.
#pragma once

#include <functional>
#include <string>

namespace odyssey::sim {

/// Runs `body` in a forked child and returns the text it produced. SimGrid allows one Engine
/// per process, ever, and aborts the process on internal errors; isolating each simulation gives
/// many simulations per process (tests, planner) and turns a SimGrid failure into an exception.
/// Throws std::runtime_error when the child fails or dies.
std::string run_isolated(const std::function<std::string()>& body);

/// Peak resident memory of the calling process, in bytes.
double peak_memory_bytes();

} // namespace odyssey::sim
