#include "models/ops.hpp"

namespace odyssey {

const char* to_string(OpKind k) {
  switch (k) {
  case OpKind::GEMM: return "gemm";
  case OpKind::ATTENTION: return "attention";
  case OpKind::MEMORY_BOUND: return "memory_bound";
  case OpKind::OPTIMIZER: return "optimizer";
  }
  return "unknown";
}

const char* to_string(Pass p) {
  switch (p) {
  case Pass::FORWARD: return "forward";
  case Pass::BACKWARD_INPUT: return "backward_input";
  case Pass::BACKWARD_WEIGHT: return "backward_weight";
  }
  return "unknown";
}

const char* to_string(CollectiveKind k) {
  switch (k) {
  case CollectiveKind::ALL_REDUCE: return "all_reduce";
  case CollectiveKind::ALL_GATHER: return "all_gather";
  case CollectiveKind::REDUCE_SCATTER: return "reduce_scatter";
  case CollectiveKind::BROADCAST: return "broadcast";
  case CollectiveKind::REDUCE: return "reduce";
  case CollectiveKind::ALL_TO_ALL: return "all_to_all";
  case CollectiveKind::SEND_RECV: return "send_recv";
  }
  return "unknown";
}

const std::vector<std::pair<std::string, CollectiveKind>>& collective_names() {
  static const std::vector<std::pair<std::string, CollectiveKind>> NAMES = {
      {"all-reduce", CollectiveKind::ALL_REDUCE},
      {"all-gather", CollectiveKind::ALL_GATHER},
      {"reduce-scatter", CollectiveKind::REDUCE_SCATTER},
      {"broadcast", CollectiveKind::BROADCAST},
      {"reduce", CollectiveKind::REDUCE},
      {"all-to-all", CollectiveKind::ALL_TO_ALL},
      {"send-recv", CollectiveKind::SEND_RECV}};
  return NAMES;
}

std::string collective_name(CollectiveKind k) {
  for (const auto& [name, kind] : collective_names())
    if (kind == k) return name;
  return to_string(k);
}

std::optional<CollectiveKind> collective_named(std::string_view name) {
  for (const auto& [n, kind] : collective_names())
    if (n == name) return kind;
  return std::nullopt;
}

std::vector<std::string> collective_name_list() {
  std::vector<std::string> names;
  for (const auto& [n, kind] : collective_names()) names.push_back(n);
  return names;
}

double bus_factor(CollectiveKind kind, int n) {
  // nccl-tests' definitions (doc/PERFORMANCE.md): busbw = algbw x factor.
  switch (kind) {
  case CollectiveKind::ALL_REDUCE: return 2.0 * (n - 1) / n;
  case CollectiveKind::ALL_GATHER:
  case CollectiveKind::REDUCE_SCATTER:
  case CollectiveKind::ALL_TO_ALL: return static_cast<double>(n - 1) / n;
  case CollectiveKind::BROADCAST:
  case CollectiveKind::REDUCE:
  case CollectiveKind::SEND_RECV: return 1.0;
  }
  return 1.0;
}

const char* to_string(GroupKind g) {
  switch (g) {
  case GroupKind::TP: return "tp";
  case GroupKind::PP: return "pp";
  case GroupKind::DP: return "dp";
  case GroupKind::CP: return "cp";
  case GroupKind::EP: return "ep";
  case GroupKind::EXPERT_DP: return "expert-dp";
  }
  return "unknown";
}

} // namespace odyssey
