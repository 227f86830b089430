// The child-process runner that simulations, sweeps and plans share.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>

#include <catch2/catch.hpp>
#include <xbt/asserts.h>

#include "sim/isolation.hpp"

using namespace odyssey;

TEST_CASE("sim::run_in_processes: every task's text or failure, by index", "[isolation]") {
  std::map<std::size_t, std::string> text, error;
  run_in_processes(
      5, 2,
      [](std::size_t i) -> std::string {
        if (i == 3) throw std::runtime_error("task 3 refused");
        if (i == 4) std::raise(SIGKILL);
        return "result " + std::to_string(i);
      },
      [&](std::size_t i, const std::string& out, const std::string& failure) {
        CHECK(text.count(i) == 0);
        text[i] = out;
        error[i] = failure;
      });
  REQUIRE(text.size() == 5);
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(text[i] == "result " + std::to_string(i));
    CHECK(error[i].empty());
  }
  CHECK(error[3] == "task 3 refused");
  CHECK(error[4] == "the process running it died with signal 9");
}

TEST_CASE("sim::run_isolated: the child's text, or its failure as an exception", "[isolation]") {
  CHECK(sim::run_isolated([] { return std::string("done"); }) == "done");
  CHECK_THROWS_WITH(sim::run_isolated([]() -> std::string { throw std::runtime_error("engine failed"); }),
                    "engine failed");
  CHECK_THROWS_WITH(sim::run_isolated([]() -> std::string {
                      std::signal(SIGABRT, SIG_DFL); // not Catch2's handler, which the child inherits
                      std::abort();
                    }),
                    "the process running it died with signal 6");
}

namespace {

/// Whether process `pid` still runs (a zombie waiting for its reaper does not).
bool running(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto paren = text.rfind(')');
  return paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] != 'Z' &&
         text[paren + 2] != 'X';
}

} // namespace

TEST_CASE("sim::run_in_processes: a child dies with its parent, even one killed by SIGKILL", "[isolation]") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t parent = ::fork();
  REQUIRE(parent >= 0);
  if (parent == 0) {
    ::close(fds[0]);
    run_in_processes(
        1, 1,
        [&](std::size_t) {
          const pid_t me = ::getpid();
          [[maybe_unused]] const ssize_t n = ::write(fds[1], &me, sizeof me);
          ::sleep(30);
          return std::string();
        },
        [](std::size_t, const std::string&, const std::string&) {});
    ::_exit(0);
  }
  ::close(fds[1]);
  pid_t child = 0;
  const ssize_t got = ::read(fds[0], &child, sizeof child);
  ::close(fds[0]);
  REQUIRE(got == sizeof child);
  ::kill(parent, SIGKILL);
  ::waitpid(parent, nullptr, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (running(child) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const bool orphan_left = running(child);
  if (orphan_left) ::kill(child, SIGKILL); // leave nothing behind, even when the test fails
  CHECK_FALSE(orphan_left);
}

namespace {

/// What the calling process writes to stderr while `f` runs.
std::string stderr_of(const std::function<void()>& f) {
  std::fflush(stderr);
  char path[] = "/tmp/odyssey-stderr-XXXXXX";
  const int file = ::mkstemp(path);
  REQUIRE(file >= 0);
  ::unlink(path);
  const int saved = ::dup(STDERR_FILENO);
  ::dup2(file, STDERR_FILENO);
  try {
    f();
  } catch (...) {
    std::fflush(stderr);
    ::dup2(saved, STDERR_FILENO);
    ::close(saved);
    ::close(file);
    throw;
  }
  std::fflush(stderr);
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  std::string text(static_cast<std::size_t>(::lseek(file, 0, SEEK_END)), '\0');
  ::pread(file, text.data(), text.size(), 0);
  ::close(file);
  return text;
}

} // namespace

TEST_CASE("sim::run_isolated: SimGrid's fatal error is one line, its backtrace kept back", "[isolation]") {
  std::string died;
  const std::string seen = stderr_of([&] {
    try {
      sim::run_isolated([]() -> std::string {
        std::fprintf(stderr, "a warning the child prints\n");
        std::fflush(stderr);
        std::signal(SIGABRT, SIG_DFL); // Catch2's handler, inherited, would report the abort itself
        // SimGrid's own fatal path: a CRITICAL line, the backtrace, abort().
        xbt_die("the solver gave up on a constraint");
      });
    } catch (const sim::ProcessDied& e) {
      died = e.what();
    }
  });
  INFO(seen);
  CHECK(died.find("SimGrid stopped the simulation") == 0);
  CHECK(died.find("the solver gave up on a constraint") != std::string::npos);
  CHECK(died.find('\n') == std::string::npos);
  CHECK(seen.find("a warning the child prints") != std::string::npos); // passed on as it came
  CHECK(seen.find("Backtrace") == std::string::npos);
  CHECK(seen.find("the solver gave up") == std::string::npos);
}

TEST_CASE("sim::run_isolated: the body's exception is a runtime_error, a killed child ProcessDied",
          "[isolation]") {
  CHECK_THROWS_MATCHES(sim::run_isolated([]() -> std::string { throw std::runtime_error("refused"); }),
                       std::runtime_error, Catch::Message("refused"));
  CHECK_THROWS_AS(sim::run_isolated([]() -> std::string {
                    std::raise(SIGKILL);
                    return "";
                  }),
                  sim::ProcessDied);
  CHECK(sim::run_isolated([] { return std::string("text"); }) == "text");
}
