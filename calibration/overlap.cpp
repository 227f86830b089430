#include "calibration/overlap.hpp"

#include <map>
#include <string>

#include "calibration/cost_model.hpp"
#include "calibration/profile.hpp"

namespace odyssey {

int nccl_kernel_sms(int ranks_per_server, int servers, int nics_per_server, int nvlink_ring_channels) {
  if (servers <= 1 && nvlink_ring_channels > 0) return std::min(NCCL_MAX_CHANNELS, nvlink_ring_channels);
  const int rings = nccl_net_channels(ranks_per_server, std::max(1, nics_per_server));
  return std::min(NCCL_MAX_CHANNELS, 2 * rings);
}

double nccl_overlap_share(int ranks_per_server, int servers, int nics_per_server, const Profile& profile) {
  return overlap_sm_share(
      nccl_kernel_sms(ranks_per_server, servers, nics_per_server, profile.nvlink.ring_channels), profile.sms);
}

double overlap_sm_share(int comm_sms, int gpu_sms) {
  if (gpu_sms <= 0 || comm_sms <= 0) return 0.0;
  return std::min(1.0, double(comm_sms) / double(gpu_sms));
}

Seconds beside_exposed(const std::vector<ComputeOp>& compute, const std::vector<CollectiveOp>& overlapped,
                       const CostModel& cost, const std::function<Seconds(const CollectiveOp&)>& comm_time) {
  std::map<std::string, std::vector<const ComputeOp*>> by_name;
  for (const ComputeOp& op : compute) by_name[op.name].push_back(&op);
  std::map<std::string, size_t> taken;
  Seconds exposed;
  for (const CollectiveOp& op : overlapped) {
    if (op.beside.empty()) continue;
    const auto it = by_name.find(op.beside);
    const size_t k = taken[op.beside]++;
    if (it == by_name.end() || k >= it->second.size()) continue;
    exposed += std::max(Seconds(0), comm_time(op) - cost.compute_time(*it->second[k]));
  }
  return exposed;
}

Seconds compute_under_overlap(Seconds compute, Seconds overlap, double share) {
  if (share <= 0 || compute.value() <= 0 || overlap.value() <= 0) return compute;
  // Work done while the kernel runs: (1 - share) x X; a kernel that takes every SM stalls the
  // compute until it ends.
  if (share >= 1) return compute + overlap;
  const Seconds slowed = compute / (1 - share);
  return compute + share * std::min(overlap, slowed);
}

} // namespace odyssey
