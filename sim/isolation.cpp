#include "sim/isolation.hpp"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

namespace odyssey::sim {

std::string run_isolated(const std::function<std::string()>& body) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("cannot create a pipe for the simulation process");
  std::fflush(nullptr);
  const pid_t child = fork();
  if (child < 0) throw std::runtime_error("cannot fork the simulation process");
  if (child == 0) {
    close(fds[0]);
    int status = 0;
    try {
      const std::string text = body();
      size_t off = 0;
      while (off < text.size()) {
        const ssize_t n = write(fds[1], text.data() + off, text.size() - off);
        if (n <= 0) break;
        off += static_cast<size_t>(n);
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "odyssey: internal error in the simulation: %s\n", e.what());
      status = 1;
    }
    close(fds[1]);
    std::fflush(nullptr);
    _exit(status);
  }
  close(fds[1]);
  std::string text;
  char buffer[1 << 16];
  for (;;) {
    const ssize_t n = read(fds[0], buffer, sizeof buffer);
    if (n <= 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  close(fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || text.empty()) {
    if (WIFSIGNALED(status))
      throw std::runtime_error(fmt::format("the simulation process died with signal {}", WTERMSIG(status)));
    throw std::runtime_error("the simulation process failed");
  }
  return text;
}

double peak_memory_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) * 1024.0;  // Linux reports KiB
}

namespace {

/// Consecutive members of one server, in order.
std::vector<std::vector<long>> group_by_server(const std::vector<long>& members, int gpus_per_server) {
  std::vector<std::vector<long>> by_server;
  for (long g : members) {
    if (by_server.empty() || by_server.back().front() / gpus_per_server != g / gpus_per_server) by_server.emplace_back();
    by_server.back().push_back(g);
  }
  return by_server;
}

} // namespace

std::vector<RingFlow> nccl_rings(const std::vector<long>& members, int gpus_per_server, int nics, double size,
                                 double edge_factor, double eff_intra, double eff_inter) {
  std::vector<RingFlow> edges;
  const int n = static_cast<int>(members.size());
  if (n < 2) return edges;
  const std::vector<std::vector<long>> by_server = group_by_server(members, gpus_per_server);
  const int servers = static_cast<int>(by_server.size());
  const int per_server = static_cast<int>(by_server.front().size());
  const int channels = servers > 1 ? std::max(1, std::min(per_server, nics)) : 1;
  const double per_edge = edge_factor * size / channels;
  std::vector<long> order;
  order.reserve(members.size());
  for (int c = 0; c < channels; ++c) {
    order.clear();
    for (const auto& group : by_server) {
      // Channel c leaves each server through GPU c x k / channels, so the channels' exits are
      // spread over the NICs even where two GPUs share one (GPU i uses NIC i x nics / k).
      const int k = static_cast<int>(group.size());
      const int exit = c * k / channels;
      for (int i = 0; i < k; ++i) order.push_back(group[static_cast<size_t>((i + exit + 1) % k)]);
    }
    for (int i = 0; i < n; ++i) {
      const long a = order[static_cast<size_t>(i)];
      const long b = order[static_cast<size_t>((i + 1) % n)];
      edges.push_back({a, b, per_edge / (a / gpus_per_server == b / gpus_per_server ? eff_intra : eff_inter)});
    }
  }
  return edges;
}

std::vector<RingFlow> nccl_trees(const std::vector<long>& members, int gpus_per_server, int nics, double size,
                                 double /*eff_intra*/, double eff_inter) {
  std::vector<RingFlow> edges;
  if (members.size() < 2) return edges;
  const std::vector<std::vector<long>> by_server = group_by_server(members, gpus_per_server);
  const int servers = static_cast<int>(by_server.size());
  const int per_server = static_cast<int>(by_server.front().size());
  const int channels = std::max(1, std::min(per_server, nics));
  const double tree_bytes = size / 2 / channels;
  for (int c = 0; c < channels; ++c) {
    std::vector<long> head(static_cast<size_t>(servers));
    for (int s = 0; s < servers; ++s) {
      const auto& group = by_server[static_cast<size_t>(s)];
      const int k = static_cast<int>(group.size());
      head[static_cast<size_t>(s)] = group[static_cast<size_t>(c * k / channels)];
    }
    for (int tree = 0; tree < 2; ++tree) {
      for (int i = 1; i < servers; ++i) {
        const int parent = (i - 1) / 2;
        const int child_server = tree == 0 ? i : servers - 1 - i;
        const int parent_server = tree == 0 ? parent : servers - 1 - parent;
        const long a = head[static_cast<size_t>(child_server)];
        const long b = head[static_cast<size_t>(parent_server)];
        edges.push_back({a, b, tree_bytes / eff_inter});
        edges.push_back({b, a, tree_bytes / eff_inter});
      }
    }
  }
  return edges;
}

} // namespace odyssey::sim
