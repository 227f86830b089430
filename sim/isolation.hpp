// Work in child processes: each simulation (SimGrid allows one Engine per process, ever, and aborts
// the process on internal errors) and the pools of simulations that `sweep` and `plan` run. Every
// child dies with the process that started it, however that one ends (SIGKILL included), so that a
// killed `odyssey` (scancel, a CI timeout, `timeout 300 odyssey run`) leaves nothing running.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <stdexcept>
#include <string>

namespace odyssey {

/// Makes the calling process die (SIGKILL) when `parent` ends, and exits at once when it has
/// ended already (a child forked from `parent` that it no longer has). Call it first thing in a
/// child, with the parent's pid taken before fork(); only async-signal-safe calls, so it may run
/// between fork() and exec() in a multithreaded process.
void die_with_parent(pid_t parent) noexcept;

/// SIGTERM and SIGINT end the process at once with one line on stderr ("odyssey: stopped by
/// SIGTERM; ...") and exit code 128 + the signal; its children die with it (die_with_parent). A
/// signal ignored when the process started (nohup, a shell's background job) stays ignored.
void stop_on_interrupt();

/// Runs `task(i)` for every i in [0, n) in forked child processes, at most `jobs` at once
/// (0: one per core), and hands each result to `done(i, text, error)` in the parent, in the
/// order they finish; `error` is empty on success, else the child's exception message or how it
/// died. The parent stays single-threaded, so forking is safe. Each child dies with the parent.
void run_in_processes(std::size_t n, int jobs, const std::function<std::string(std::size_t)>& task,
                      const std::function<void(std::size_t, const std::string&, const std::string&)>& done);

namespace sim {

/// The child process died before it produced a result: SimGrid aborted it (the message is
/// SimGrid's, on one line) or a signal killed it.
class ProcessDied : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Runs `body` in one forked child and returns the text it produced: many simulations per process
/// (tests, planner), and a SimGrid failure becomes an exception. Throws ProcessDied when the child
/// died, std::runtime_error with the message of an exception `body` threw.
std::string run_isolated(const std::function<std::string()>& body);

/// Peak resident memory of the calling process, in bytes.
double peak_memory_bytes();

} // namespace sim
} // namespace odyssey
