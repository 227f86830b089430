#include "sim/isolation.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
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

namespace {

/// What a child writes to stderr, passed on line by line as it comes. SimGrid reports a fatal
/// error as a "[time] file:line: [category/CRITICAL] message" line followed by a backtrace, then
/// aborts: from such a line on the text is held back, and a child that dies with it gets the
/// message as its one-line failure instead of the backtrace.
struct ChildStderr {
  int fd = -1;
  std::string partial; ///< the line being read
  std::string held;    ///< from a CRITICAL line on
  void take(const char* data, std::size_t size) {
    partial.append(data, size);
    std::size_t end = 0;
    while ((end = partial.find('\n')) != std::string::npos) {
      line(partial.substr(0, end + 1));
      partial.erase(0, end + 1);
    }
  }
  void line(const std::string& text) {
    if (held.empty() && text.find("/CRITICAL] ") == std::string::npos)
      write_all(STDERR_FILENO, text);
    else
      held += text;
  }
  /// Reads what is there without waiting; false at the end of the stream.
  bool drain() {
    char buffer[65536];
    for (;;) {
      const ssize_t got = ::read(fd, buffer, sizeof buffer);
      if (got > 0) {
        take(buffer, std::size_t(got));
        continue;
      }
      if (got < 0 && (errno == EAGAIN || errno == EINTR)) return true;
      return false;
    }
  }
  void close() {
    if (fd >= 0) {
      drain();
      ::close(fd);
      fd = -1;
    }
    if (!partial.empty()) line(partial + "\n");
    partial.clear();
  }
  /// The held SimGrid failure as one line ("SimGrid stopped the simulation at 4.583 s of simulated
  /// time: <message>"), or "" when there is none.
  [[nodiscard]] std::string failure() const {
    const std::size_t tag = held.find("/CRITICAL] ");
    if (tag == std::string::npos) return "";
    std::string message = held.substr(tag + 11, held.find('\n', tag) - tag - 11);
    std::string when;
    if (held.front() == '[') when = " at " + held.substr(1, held.find(']') - 1) + " s of simulated time";
    return "SimGrid stopped the simulation" + when + ": " + message;
  }
  /// Text held back from a child that then ended normally is passed on as it was.
  void release() {
    write_all(STDERR_FILENO, held);
    held.clear();
  }
};

} // namespace

void run_in_processes(std::size_t n, int jobs, const std::function<std::string(std::size_t)>& task,
                      const std::function<void(std::size_t, const std::string&, const std::string&)>& done) {
  if (jobs <= 0) jobs = int(std::max(1U, std::thread::hardware_concurrency()));
  struct Child {
    pid_t pid;
    int fd;
    std::size_t index;
    std::string text;
    ChildStderr err;
  };
  std::vector<Child> running;
  std::size_t next = 0;
  std::fflush(nullptr); // nothing buffered may be written twice
  const pid_t parent = ::getpid();
  const sigset_t blocked = interrupts();
  while (next < n || !running.empty()) {
    while (next < n && int(running.size()) < jobs) {
      int fds[2];
      int errs[2];
      if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("cannot create a pipe");
      if (::pipe2(errs, O_CLOEXEC) != 0) {
        ::close(fds[0]);
        ::close(fds[1]);
        throw std::runtime_error("cannot create a pipe");
      }
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
        ::close(errs[0]);
        ::dup2(errs[1], STDERR_FILENO); // the copy is inherited by what this child starts
        ::close(errs[1]);
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
        for (int fd : {fds[0], fds[1], errs[0], errs[1]}) ::close(fd);
        throw std::runtime_error("cannot fork");
      }
      ::close(fds[1]);
      ::close(errs[1]);
      ::fcntl(errs[0], F_SETFL, ::fcntl(errs[0], F_GETFL) | O_NONBLOCK);
      running.push_back({pid, fds[0], next, {}, {}});
      running.back().err.fd = errs[0];
      ++next;
    }
    // Each child's result pipe, then its stderr where still open.
    std::vector<pollfd> polls;
    std::vector<std::pair<std::size_t, bool>> owner; // (child, stderr)
    for (std::size_t k = 0; k < running.size(); ++k) {
      polls.push_back({running[k].fd, POLLIN, 0});
      owner.emplace_back(k, false);
      if (running[k].err.fd >= 0) {
        polls.push_back({running[k].err.fd, POLLIN, 0});
        owner.emplace_back(k, true);
      }
    }
    if (::poll(polls.data(), polls.size(), -1) < 0) continue;
    std::vector<std::size_t> finished_children;
    for (std::size_t p = 0; p < polls.size(); ++p) {
      if (polls[p].revents == 0) continue;
      Child& c = running[owner[p].first];
      if (owner[p].second) {
        if (!c.err.drain()) c.err.close();
        continue;
      }
      char buffer[65536];
      const ssize_t got = ::read(c.fd, buffer, sizeof buffer);
      if (got > 0) {
        c.text.append(buffer, std::size_t(got));
        continue;
      }
      finished_children.push_back(owner[p].first);
    }
    std::sort(finished_children.rbegin(), finished_children.rend());
    for (const std::size_t k : finished_children) {
      Child& c = running[k];
      ::close(c.fd);
      int status = 0;
      ::waitpid(c.pid, &status, 0);
      c.err.close();
      Child finished = std::move(c);
      running.erase(running.begin() + long(k));
      const std::string simgrid = finished.err.failure();
      const bool failed = WIFSIGNALED(status) || finished.text.empty() || !WIFEXITED(status);
      if (!failed) finished.err.release();
      if (failed && !simgrid.empty())
        done(finished.index, "", simgrid);
      else if (WIFSIGNALED(status))
        done(finished.index, "", fmt::format("the process running it died with signal {}", WTERMSIG(status)));
      else if (failed)
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
  std::string died;
  run_in_processes(
      1, 1,
      [&](std::size_t) {
        // The body's exception travels as text, so that any failure run_in_processes reports is
        // the child's death.
        try {
          return "R" + body();
        } catch (const std::exception& e) {
          return "X" + std::string(e.what());
        }
      },
      [&](std::size_t, const std::string& out, const std::string& failure) {
        text = out;
        died = failure;
      });
  if (!died.empty()) throw ProcessDied(died);
  if (text.front() == 'X') throw std::runtime_error(text.substr(1));
  return text.substr(1);
}

double peak_memory_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) * 1024.0; // Linux reports KiB
}

} // namespace sim
} // namespace odyssey
