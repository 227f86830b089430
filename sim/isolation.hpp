// Work in child processes: each simulation (SimGrid allows one Engine per process, ever, and aborts
// the process on internal errors) and the pools of simulations that `sweep` and `plan` run.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace odyssey {

/// Runs `task(i)` for every i in [0, n) in forked child processes, at most `jobs` at once
/// (0: one per core), and hands each result to `done(i, text, error)` in the parent, in the
/// order they finish; `error` is empty on success, else the child's exception message or how it
/// died. The parent stays single-threaded, so forking is safe.
void run_in_processes(std::size_t n, int jobs, const std::function<std::string(std::size_t)>& task,
                      const std::function<void(std::size_t, const std::string&, const std::string&)>& done);

namespace sim {

/// Runs `body` in one forked child and returns the text it produced: many simulations per process
/// (tests, planner), and a SimGrid failure becomes an exception. Throws std::runtime_error with the
/// child's exception message, or saying how it died.
std::string run_isolated(const std::function<std::string()>& body);

/// Peak resident memory of the calling process, in bytes.
double peak_memory_bytes();

} // namespace sim
} // namespace odyssey
