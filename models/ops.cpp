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
