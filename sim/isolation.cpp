#include "sim/isolation.hpp"

#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
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

void on_interrupt(int signal) {
  // Only async-signal-safe calls: write() and _exit().
  static constexpr char TERM[] = "odyssey: stopped by SIGTERM; its child processes stop with it\n";
  static constexpr char INT[] = "odyssey: stopped by SIGINT; its child processes stop with it\n";
  const bool term = signal == SIGTERM;
  [[maybe_unused]] const ssize_t written =
      ::write(STDERR_FILENO, term ? TERM : INT, term ? sizeof TERM - 1 : sizeof INT - 1);
  ::_exit(128 + signal); // the children get SIGKILL from die_with_parent as this process ends
}

/// SIGINT and SIGTERM, the signals stop_on_interrupt handles.
sigset_t interrupts() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

/// In a child: the terminal's SIGINT (sent to the whole process group) or a SIGTERM kills it
/// quietly; the parent alone says why it stopped.
void quiet_interrupts() noexcept {
  for (const int signal : {SIGINT, SIGTERM}) {
    struct sigaction now {};
    if (::sigaction(signal, nullptr, &now) == 0 && now.sa_handler == on_interrupt) ::signal(signal, SIG_DFL);
  }
}

} // namespace

void die_with_parent(pid_t parent) noexcept {
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) ::_exit(127);
  // The parent may have died between fork() and prctl(): then it will never send the signal.
  if (::getppid() != parent) ::_exit(127);
}

void stop_on_interrupt() {
  for (const int signal : {SIGINT, SIGTERM}) {
    struct sigaction before {};
    if (::sigaction(signal, nullptr, &before) == 0 && before.sa_handler == SIG_IGN) continue;
    struct sigaction action {};
    action.sa_handler = on_interrupt;
    sigemptyset(&action.sa_mask);
    ::sigaction(signal, &action, nullptr);
  }
}

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
  const pid_t parent = ::getpid();
  const sigset_t blocked = interrupts();
  while (next < n || !running.empty()) {
    while (next < n && int(running.size()) < jobs) {
      int fds[2];
      if (::pipe(fds) != 0) throw std::runtime_error("cannot create a pipe");
      // SIGINT and SIGTERM wait until the child has its own handling of them: the parent's
      // handler must not run in the child.
      sigset_t before;
      ::sigprocmask(SIG_BLOCK, &blocked, &before);
      const pid_t pid = ::fork();
      if (pid == 0) {
        die_with_parent(parent);
        quiet_interrupts();
        ::sigprocmask(SIG_SETMASK, &before, nullptr);
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
      ::sigprocmask(SIG_SETMASK, &before, nullptr);
      if (pid < 0) {
        ::close(fds[0]);
        ::close(fds[1]);
        throw std::runtime_error("cannot fork");
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
