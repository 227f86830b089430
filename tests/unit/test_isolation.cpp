// The child-process runner that simulations, sweeps and plans share.
#include <csignal>
#include <map>
#include <stdexcept>
#include <string>

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
