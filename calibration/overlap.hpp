// What a communication kernel that overlaps compute takes from it. NCCL's kernels and Transformer
// Engine's userbuffers kernels run on the GPU's SMs beside the GEMMs: while they run, the compute
// has the remaining SMs. One rule, read by the engine (sim/engine.cpp) and the planner's screen
// (sim/analytical.cpp).
#pragma once

#include <algorithm>
#include <functional>
#include <vector>

#include "models/ops.hpp"
#include "models/units.hpp"

namespace odyssey {

/// NCCL's largest channel count (MAXCHANNELS, src/include/device.h, NCCL 2.x).
inline constexpr int NCCL_MAX_CHANNELS = 32;
/// SMs Transformer Engine's userbuffers take for a tensor-parallel overlap: the default num_sm
/// of its bulk and pipelined methods (transformer_engine/pytorch/module/base.py, initialize_ub's
/// default config; the ring-exchange method takes 1 SM and copies with the copy engines).
inline constexpr int USERBUFFERS_SMS = 16;

/// SMs an NCCL collective's kernel occupies: one CTA per channel (NCCL launches its kernel with
/// one block per channel, src/enqueue.cc). A group inside one NVSwitch server runs on the rings
/// NCCL's NVLink search finds for that GPU, `nvlink_ring_channels` (the profile's
/// `links.nvlink.ring_channels`, from NCCL's logs). A group across servers, or one whose GPU has
/// no such figure: the rings that leave each server, one per rank of the server up to one per NIC
/// (nccl_net_channels), each duplicated into two channels as NCCL's topology post-processing does
/// (ncclTopoPostset, src/graph/connect.cc). At most NCCL_MAX_CHANNELS.
[[nodiscard]] int nccl_kernel_sms(int ranks_per_server, int servers, int nics_per_server,
                                  int nvlink_ring_channels);

struct Profile;
class CostModel;

/// Share of the GPU's SMs an NCCL kernel of a group of `ranks_per_server` ranks on each of
/// `servers` servers takes from the compute beside it: nccl_kernel_sms with the profile's NVLink
/// rings, over the profile's SM count. The engine and the screen both price overlap with it.
[[nodiscard]] double nccl_overlap_share(int ranks_per_server, int servers, int nics_per_server,
                                        const Profile& profile);

/// Fraction of the GPU's `gpu_sms` SMs that a communication kernel of `comm_sms` SMs takes while it
/// runs beside compute (0 when the profile gives no SM count).
[[nodiscard]] double overlap_sm_share(int comm_sms, int gpu_sms);

/// What the overlapped collectives in `overlapped` that each run beside one GEMM of `compute`
/// (CollectiveOp::beside) leave exposed: each hides under its own GEMM only, so the part of its time
/// (`comm_time`) that GEMM's (`cost`) does not cover, summed. The k-th collective naming a GEMM
/// pairs with the k-th op of that name (a block repeats its layers). A collective without one, or
/// whose GEMM the block lacks, adds nothing here: it hides under the block's compute as a whole.
/// The engine stalls the compute by it, and the planner's screen adds it; both call this.
[[nodiscard]] Seconds beside_exposed(const std::vector<ComputeOp>& compute,
                                     const std::vector<CollectiveOp>& overlapped, const CostModel& cost,
                                     const std::function<Seconds(const CollectiveOp&)>& comm_time);

/// Duration of `compute` seconds of work (alone on the GPU) that runs beside a communication
/// kernel taking `share` of the SMs for `overlap` seconds from its start: (1 - share) of the speed
/// while the kernel runs, full speed after. C + share x min(X, C / (1 - share)).
[[nodiscard]] Seconds compute_under_overlap(Seconds compute, Seconds overlap, double share);

} // namespace odyssey
