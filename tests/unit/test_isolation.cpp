// The child-process runner that simulations, sweeps and plans share.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>

#include <catch2/catch.hpp>

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
  CHECK_THROWS_WITH(sim::run_isolated([]() -> std::string { std::abort(); }),
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
