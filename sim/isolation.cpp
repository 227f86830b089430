#include "sim/isolation.hpp"

#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <thread>
#include <vector>

#include <fmt/format.h>

namespace odyssey {

namespace {

void write_all(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n <= 0) return;
    done += std::size_t(n);
  }
}

} // namespace

void run_in_processes(std::size_t n, int jobs, const std::function<std::string(std::size_t)>& task,
                      const std::function<void(std::size_t, const std::string&, const std::string&)>& done) {
  if (jobs <= 0) jobs = int(std::max(1U, std::thread::hardware_concurrency()));
  struct Child {
    pid_t pid;
    int fd;
    std::size_t index;
    std::string text;
  };
  std::vector<Child> running;
  std::size_t next = 0;
  std::fflush(nullptr); // nothing buffered may be written twice
  while (next < n || !running.empty()) {
    while (next < n && int(running.size()) < jobs) {
      int fds[2];
      if (::pipe(fds) != 0) throw std::runtime_error("cannot create a pipe");
      const pid_t pid = ::fork();
      if (pid < 0) throw std::runtime_error("cannot fork");
      if (pid == 0) {
        ::close(fds[0]);
        std::string out;
        try {
          out = "O" + task(next);
        } catch (const std::exception& e) {
          out = std::string("E") + e.what();
        }
        write_all(fds[1], out);
        ::close(fds[1]);
        ::_exit(0);
      }
      ::close(fds[1]);
      running.push_back({pid, fds[0], next, {}});
      ++next;
    }
    std::vector<pollfd> polls;
    for (const Child& c : running) polls.push_back({c.fd, POLLIN, 0});
    if (::poll(polls.data(), polls.size(), -1) < 0) continue;
    for (std::size_t k = polls.size(); k-- > 0;) {
      if (polls[k].revents == 0) continue;
      Child& c = running[k];
      char buffer[65536];
      const ssize_t got = ::read(c.fd, buffer, sizeof buffer);
      if (got > 0) {
        c.text.append(buffer, std::size_t(got));
        continue;
      }
      ::close(c.fd);
      int status = 0;
      ::waitpid(c.pid, &status, 0);
      const Child finished = std::move(c);
      running.erase(running.begin() + long(k));
      if (WIFSIGNALED(status))
        done(finished.index, "", fmt::format("the process running it died with signal {}", WTERMSIG(status)));
      else if (finished.text.empty() || !WIFEXITED(status))
        done(finished.index, "", "the process running it died");
      else if (finished.text[0] == 'E')
        done(finished.index, "", finished.text.substr(1));
      else
        done(finished.index, finished.text.substr(1), "");
    }
  }
}

namespace sim {

std::string run_isolated(const std::function<std::string()>& body) {
  std::string text;
  std::string error;
  run_in_processes(
      1, 1, [&](std::size_t) { return body(); },
      [&](std::size_t, const std::string& out, const std::string& failure) {
        text = out;
        error = failure;
      });
  if (!error.empty()) throw std::runtime_error(error);
  return text;
}

double peak_memory_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) * 1024.0; // Linux reports KiB
}

} // namespace sim
} // namespace odyssey
